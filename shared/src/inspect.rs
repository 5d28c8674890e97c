//! What administrators look at in the live cluster: a user's connected devices (and the kick
//! that ends one of them), and the presence viewer (what one user sees of another, and the
//! rule that decided it). The REST bodies of `/api/v1/admin/users/{id}/sessions` and
//! `/api/v1/admin/presence/...`, and the bus messages that ask the server serving a user.

use crate::call::ReplyTo;
use crate::presence::{PresenceView, Visibility};
use crate::{DeviceId, ServerId, TimestampMs, UserId};
use serde::{Deserialize, Serialize};

/// At most this many bytes of a device's client name (its `User-Agent`) are kept.
pub const MAX_CLIENT_NAME_BYTES: usize = 200;

/// One connected device of a user, as the server it is connected to knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DeviceSession {
    pub device: DeviceId,
    /// The client program, from its `User-Agent` (cut to [`MAX_CLIENT_NAME_BYTES`]);
    /// empty when it sent none.
    pub client: String,
    /// The client's address (behind a trusted proxy: the address the proxy names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When this connection was made.
    pub since_ms: TimestampMs,
    /// The device declared itself inactive (quiet mode): presence and typing wait for it.
    pub quiet: bool,
    /// When the device last did something (sent, or became active).
    pub last_active_ms: TimestampMs,
}

/// `GET /api/v1/admin/users/{id}/sessions`: a user's devices on the server that serves them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct UserSessions {
    pub user: UserId,
    pub home_server: ServerId,
    /// The server that serves the user now (the home, or its backup) and answered.
    pub server: ServerId,
    pub devices: Vec<DeviceSession>,
}

/// `DELETE /api/v1/admin/users/{id}/sessions/{device}`: one device's session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DeviceKicked {
    pub user: UserId,
    pub device: DeviceId,
    /// The server the device was connected to.
    pub server: ServerId,
    /// Whether a connection of the device was open (and was closed).
    pub was_connected: bool,
    /// Session tokens of the device that were ended.
    pub tokens_ended: u32,
    /// The user's devices still connected there.
    pub devices_left: Vec<DeviceId>,
}

/// Which rule decided what a watcher sees of a user (`core::visibility`), first match wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum VisibilityRule {
    /// The watcher is the user.
    SameUser,
    /// The watcher is an administrator.
    Admin,
    /// The watcher is the user's delegate: they act for the user.
    Delegate,
    /// The user is in the watcher's contact list.
    Contact,
    /// The watcher and the user share a group.
    GroupMate,
    /// None of the above: any signed-in user sees availability only.
    Basic,
}

impl VisibilityRule {
    pub fn as_str(self) -> &'static str {
        match self {
            VisibilityRule::SameUser => "same_user",
            VisibilityRule::Admin => "admin",
            VisibilityRule::Delegate => "delegate",
            VisibilityRule::Contact => "contact",
            VisibilityRule::GroupMate => "group_mate",
            VisibilityRule::Basic => "basic",
        }
    }

    /// The rule in words, for people.
    pub fn explain(self) -> &'static str {
        match self {
            VisibilityRule::SameUser => "the watcher is the user: everything",
            VisibilityRule::Admin => "the watcher is an administrator: everything",
            VisibilityRule::Delegate => {
                "the watcher is the user's delegate and acts for them: everything, with live updates"
            }
            VisibilityRule::Contact => {
                "the user is in the watcher's contacts: everything, with live updates"
            }
            VisibilityRule::GroupMate => {
                "the watcher shares a group with the user: everything, with live updates"
            }
            VisibilityRule::Basic => {
                "no contact, group, delegation or administrator role: availability only, on request"
            }
        }
    }
}

/// `GET /api/v1/admin/presence/{user}?watcher=W`: what W sees of the user now, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PresenceInspection {
    pub user: UserId,
    pub watcher: UserId,
    pub visibility: Visibility,
    pub rule: VisibilityRule,
    /// The rule in words.
    pub explanation: String,
    /// Whether W gets live presence events of the user (W is one of the user's watchers).
    pub live: bool,
    /// Exactly what W's client gets from `GET /api/v1/presence/{user}` now.
    pub presence: PresenceView,
}

/// One user who watches another (gets their live presence events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PresenceWatcher {
    pub user: UserId,
    pub rule: VisibilityRule,
    /// Whether the watcher has a device online now, on any server (from the cluster's
    /// presence snapshots).
    pub online: bool,
    /// Their devices online now.
    pub devices: u32,
    /// The server that serves them now, while online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerId>,
}

/// `GET /api/v1/admin/presence/{user}/watchers`: who gets the user's live presence events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PresenceWatchers {
    pub user: UserId,
    /// Everyone who watches the user (contacts holding them, group mates), by id.
    pub watchers: Vec<PresenceWatcher>,
    /// How many of them are online now: those a change of the user reaches this moment.
    pub watching_now: u32,
    /// The list was cut at this many.
    pub truncated: bool,
}

/// Admin questions to the server that serves a user (spliced into `bus::BusBody`, tag
/// `kind`); the answer goes to `reply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InspectBusBody {
    /// Which devices of `user` are connected there?
    SessionsQuery { user: UserId, reply: ReplyTo },
    /// End the sessions of one device of `user` (already authorised and audited by `by`).
    KickDevice {
        user: UserId,
        device: DeviceId,
        by: UserId,
        reply: ReplyTo,
    },
    /// The answer to a [`InspectBusBody::SessionsQuery`] or [`InspectBusBody::KickDevice`].
    InspectReply { token: u64, answer: InspectAnswer },
}

/// What a server answers an admin question with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InspectAnswer {
    Devices(Vec<DeviceSession>),
    Kicked(DeviceKicked),
    /// The device has neither a connection nor a session token there.
    NoSuchDevice,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{BusBody, BusMessage};

    #[test]
    fn questions_and_answers_cross_the_bus_as_themselves() {
        let reply = ReplyTo {
            server: ServerId::from("s1"),
            token: 7,
        };
        let bodies = [
            InspectBusBody::SessionsQuery {
                user: UserId::from("bob"),
                reply: reply.clone(),
            },
            InspectBusBody::KickDevice {
                user: UserId::from("bob"),
                device: DeviceId::from("phone"),
                by: UserId::from("admin"),
                reply,
            },
            InspectBusBody::InspectReply {
                token: 7,
                answer: InspectAnswer::NoSuchDevice,
            },
        ];
        for body in bodies {
            let message = BusMessage::new(ServerId::from("s2"), BusBody::Inspect(body));
            let text = serde_json::to_string(&message).unwrap();
            let back: BusMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(back, message, "{text}");
        }
    }
}
