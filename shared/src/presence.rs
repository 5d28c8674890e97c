//! Presence as it travels: the aggregated snapshot a home server publishes, and the view a
//! particular watcher is allowed to see of it.

use crate::{DeviceId, TimestampMs, UserId};
use serde::{Deserialize, Serialize};

/// What a person chose (or what their devices say) about being reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum Availability {
    #[default]
    Available,
    Away,
    Busy,
    Dnd,
    Offline,
}

impl std::str::FromStr for Availability {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "available" => Ok(Self::Available),
            "away" => Ok(Self::Away),
            "busy" => Ok(Self::Busy),
            "dnd" | "do-not-disturb" => Ok(Self::Dnd),
            "offline" => Ok(Self::Offline),
            other => Err(format!(
                "unknown availability '{other}': use available, away, busy, dnd or offline"
            )),
        }
    }
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Dnd => "dnd",
            Self::Offline => "offline",
        }
    }
}

/// The phone side of presence.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum TelephonyState {
    #[default]
    Idle,
    Forwarded,
    Ringing,
    InCall,
}

/// What a device can do; a watcher uses it to offer only what will work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum Capability {
    Chat,
    Audio,
    Video,
    ScreenShare,
    Softphone,
}

/// One online device as presence shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DevicePresence {
    pub device: DeviceId,
    pub capabilities: Vec<Capability>,
    /// False while the device is in quiet mode (a phone in the background).
    pub active: bool,
    /// True when the device reports its user idle (no input for a while).
    #[serde(default)]
    pub idle: bool,
}

/// The aggregated presence of one user, written only by the user's home server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    pub user: UserId,
    pub availability: Availability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub telephony: TelephonyState,
    /// Union of the capabilities of all online devices.
    pub capabilities: Vec<Capability>,
    pub devices: Vec<DevicePresence>,
    /// Grows with every change; a receiver ignores a snapshot older than the one it holds.
    pub version: u64,
    /// When the availability last changed.
    pub since_ms: TimestampMs,
}

impl PresenceSnapshot {
    /// The presence of a user nobody has seen online.
    pub fn offline(user: UserId) -> Self {
        Self {
            user,
            availability: Availability::Offline,
            note: None,
            telephony: TelephonyState::Idle,
            capabilities: Vec::new(),
            devices: Vec::new(),
            version: 0,
            since_ms: 0,
        }
    }
}

/// How much of a user's presence a watcher may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum Visibility {
    /// Nothing: the watcher sees the user as offline.
    None,
    /// Availability only (directory view).
    Basic,
    /// Availability, note, telephony state, capabilities and devices.
    Full,
}

/// What one watcher sees of one user: a snapshot filtered by the visibility rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PresenceView {
    pub user: UserId,
    pub visibility: Visibility,
    pub availability: Availability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephony: Option<TelephonyState>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub devices: Vec<DevicePresence>,
    pub version: u64,
    pub since_ms: TimestampMs,
}

impl PresenceView {
    /// Filters a snapshot down to what `visibility` allows.
    pub fn of(snapshot: &PresenceSnapshot, visibility: Visibility) -> Self {
        match visibility {
            Visibility::None => Self {
                user: snapshot.user.clone(),
                visibility,
                availability: Availability::Offline,
                note: None,
                telephony: None,
                capabilities: Vec::new(),
                devices: Vec::new(),
                version: 0,
                since_ms: 0,
            },
            Visibility::Basic => Self {
                user: snapshot.user.clone(),
                visibility,
                availability: snapshot.availability,
                note: None,
                telephony: None,
                capabilities: Vec::new(),
                devices: Vec::new(),
                version: snapshot.version,
                since_ms: snapshot.since_ms,
            },
            Visibility::Full => Self {
                user: snapshot.user.clone(),
                visibility,
                availability: snapshot.availability,
                note: snapshot.note.clone(),
                telephony: Some(snapshot.telephony),
                capabilities: snapshot.capabilities.clone(),
                devices: snapshot.devices.clone(),
                version: snapshot.version,
                since_ms: snapshot.since_ms,
            },
        }
    }
}
