//! Server-to-server messages carried by the cluster bus (Redis pub/sub, or in-process).
//! Durable things are in SQL before they are announced here, so a lost bus message loses no
//! data: receivers catch up from SQL or from the presence snapshots.

use crate::api::{ChatMessage, ReadMarker};
use crate::presence::PresenceSnapshot;
use crate::{ConversationId, ServerId, TimestampMs, UserId};
use serde::{Deserialize, Serialize};

/// Version of the bus format; a receiver drops messages of a version it does not know.
pub const BUS_VERSION: u16 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusMessage {
    pub v: u16,
    pub from: ServerId,
    pub body: BusBody,
}

impl BusMessage {
    pub fn new(from: ServerId, body: BusBody) -> Self {
        Self {
            v: BUS_VERSION,
            from,
            body,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusBody {
    /// A user's presence changed; `watchers` are the receiving server's users who watch them.
    Presence {
        snapshot: PresenceSnapshot,
        watchers: Vec<UserId>,
    },
    /// Stored messages, each for its `recipients` who live on the receiving server. One bus
    /// message carries a whole write batch for one destination server.
    Messages { deliveries: Vec<Delivery> },
    /// A read marker moved, for `recipients` on the receiving server.
    Read {
        marker: ReadMarker,
        recipients: Vec<UserId>,
    },
    /// Typing notification for `recipients` on the receiving server.
    Typing {
        conversation: ConversationId,
        user: UserId,
        typing: bool,
        recipients: Vec<UserId>,
    },
    /// Set a user's presence at their home server on behalf of `by` (already authorised).
    SetPresence {
        user: UserId,
        by: UserId,
        availability: Option<crate::presence::Availability>,
        note: Option<String>,
    },
    /// Users, groups, contacts or memberships changed: drop cached relations of these users.
    RelationsChanged { users: Vec<UserId> },
    /// A conversation changed (created, members added); members should learn of it.
    ConversationChanged {
        conversation: ConversationId,
        recipients: Vec<UserId>,
    },
    /// License capacities changed in SQL.
    LicensesChanged,
    /// Runtime settings changed in SQL (`revision`): read them again and apply them.
    SettingsChanged { revision: u64 },
    /// A server was found dead and cleaned up by `from`.
    ServerDown {
        server: ServerId,
        at_ms: TimestampMs,
    },
    /// The sending server keeps `users` for their calls although they are served elsewhere
    /// now (a move waits for the call): what is for them goes to it, for `for_ms` unless
    /// said again or [`BusBody::UsersReleased`] comes first.
    UsersHeld { users: Vec<UserId>, for_ms: u64 },
    /// The sending server handed `users` to the receiving one: unless their devices arrive
    /// there within the failure detector's window, they go offline for their watchers.
    HandedOver { users: Vec<UserId> },
    /// The sending server handed over `users` it had held for their calls.
    UsersReleased { users: Vec<UserId> },
    /// Sessions of `user` must end (user deleted or moved to another home server).
    KickUser { user: UserId, reason: String },
    /// An administrator changed something (the audit entry): open consoles are told.
    AdminChanged { entry: crate::api::AuditEntry },
    /// Call signalling between servers (`call_*`, `forwarding_changed`): see `shared::call`.
    #[serde(untagged)]
    Call(crate::call::CallBusBody),
    /// Admin questions to the server serving a user: see `shared::inspect`.
    #[serde(untagged)]
    Inspect(crate::inspect::InspectBusBody),
}

/// One stored message and the receiving server's users it is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub message: ChatMessage,
    pub recipients: Vec<UserId>,
}

/// The version of the high-availability rules a UCServer follows (ownership records,
/// hand-over): a server whose heartbeat carries a lower one (an older binary, during a rolling
/// upgrade) serves its own users and stands in for no one.
pub const HA_PROTOCOL: u32 = 1;

/// The heartbeat record of a UCServer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerHeartbeat {
    pub id: ServerId,
    pub url: String,
    /// Random per process start.
    pub incarnation: String,
    pub sessions: u64,
    pub devices: u64,
    pub at_ms: TimestampMs,
    /// Its redundancy group (`UC_REDUNDANCY_GROUP`): the servers that stand in for each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The server's software version (admin overview).
    #[serde(default)]
    pub version: String,
    /// Calls this server owns now (admin overview).
    #[serde(default)]
    pub calls: u64,
    /// [`HA_PROTOCOL`] of its binary; absent (0) from binaries older than ownership records.
    #[serde(default)]
    pub ha_protocol: u32,
    /// Its load and counters (admin overview and history); zero from older binaries.
    #[serde(default)]
    pub stats: crate::console::ServerStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_of_an_older_binary_is_understood_and_marked_older() {
        let older = r#"{"id":"s9","url":"http://s9:8080","incarnation":"x","sessions":2,"devices":3,"at_ms":1}"#;
        let beat: ServerHeartbeat = serde_json::from_str(older).expect("parses");
        assert_eq!(beat.id, ServerId::from("s9"));
        assert_eq!((beat.group, beat.calls, beat.ha_protocol), (None, 0, 0));
        assert!(beat.ha_protocol < HA_PROTOCOL);
    }
}
