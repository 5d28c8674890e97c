//! What the admin console shows besides the REST resources: each server's own counters (carried
//! in its heartbeat), their history over the last hour, and the live channel that tells open
//! consoles what other administrators changed.

use crate::api::AuditEntry;
use crate::{ServerId, TimestampMs};
use serde::{Deserialize, Serialize};

/// A UCServer's load and counters, measured by itself at its last heartbeat. Counters count
/// from the process start (a restart starts them again at 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerStats {
    /// CPU time the process used over the last beat interval, in percent of one core.
    #[serde(default)]
    pub cpu_percent: f32,
    /// Resident memory of the process.
    #[serde(default)]
    pub resident_bytes: u64,
    /// Chat messages stored (accepted and written to SQL).
    #[serde(default)]
    pub messages_stored: u64,
    /// Chat messages handed to devices (one per device).
    #[serde(default)]
    pub messages_delivered: u64,
    /// Presence changes of this server's users.
    #[serde(default)]
    pub presence_changes: u64,
    /// Successful sign-ins.
    #[serde(default)]
    pub logins: u64,
    /// Multi-device messaging: devices in quiet mode now (their events are held and sent
    /// in batches).
    #[serde(default)]
    pub mdm_quiet_sessions: u64,
    /// Multi-device messaging: batches of held events sent to quiet devices.
    #[serde(default)]
    pub mdm_buffer_flushes: u64,
    /// Multi-device messaging: events sent in those batches.
    #[serde(default)]
    pub mdm_flushed_packets: u64,
}

/// One point of a server's history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct StatsSample {
    pub at_ms: TimestampMs,
    /// Users with at least one device connected.
    pub sessions: u64,
    pub devices: u64,
    pub calls: u64,
    pub stats: ServerStats,
}

/// `GET /api/v1/admin/history`: every server's samples of the last hour, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct History {
    /// The server that answered.
    pub server: ServerId,
    pub at_ms: TimestampMs,
    /// How often each server takes a sample.
    pub sample_ms: u64,
    pub servers: Vec<ServerHistory>,
    /// Why some history is missing (the cluster store could not be read: only the
    /// answering server's own samples are shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerHistory {
    pub server: ServerId,
    pub samples: Vec<StatsSample>,
}

/// What the admin live channel (`GET /api/v1/admin/events`, a WebSocket) sends a console.
/// The console sends `{"type":"ping"}` now and then and gets `pong`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminEvent {
    /// The channel is open, on this server.
    Hello {
        server: ServerId,
    },
    /// An administrator (or the directory schedule) changed something: the audit entry,
    /// and the server that made the change.
    Change {
        server: ServerId,
        entry: AuditEntry,
    },
    /// A server was found dead and its users failed over.
    ServerDown {
        server: ServerId,
        by: ServerId,
    },
    /// Events were missed (the console read too slowly): reload what is shown.
    Resync,
    Pong,
}

/// What a console may send on the live channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminCommand {
    Ping,
}

/// Largest frame a console may send on the live channel.
pub const MAX_ADMIN_FRAME_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_without_stats_reads_as_zero() {
        let stats: ServerStats = serde_json::from_str("{}").expect("parses");
        assert_eq!(stats, ServerStats::default());
    }

    #[test]
    fn events_are_tagged_by_type() {
        let event = AdminEvent::ServerDown {
            server: ServerId::from("s2"),
            by: ServerId::from("s1"),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, r#"{"type":"server_down","server":"s2","by":"s1"}"#);
        let ping: AdminCommand = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(ping, AdminCommand::Ping);
    }
}
