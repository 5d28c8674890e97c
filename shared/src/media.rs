//! MediaServer wire types: its control API (spoken by UCServers) and its heartbeat record.

use crate::{CallId, MediaServerId, TimestampMs};
use serde::{Deserialize, Serialize};

/// Heartbeat record a MediaServer refreshes (in Redis, or in-process when embedded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaServerStatus {
    pub id: MediaServerId,
    /// Base URL of the control API, e.g. `http://10.0.0.5:7100`.
    pub control_url: String,
    /// Address put into ICE candidates, `ip:port`.
    pub media_addr: String,
    /// Most legs this server accepts.
    pub capacity: u32,
    /// Legs (peer connections) currently open.
    pub legs: u32,
    /// Calls (rooms) currently open.
    pub calls: u32,
    /// Random per process start: a new value means the server restarted and lost its calls.
    pub incarnation: String,
    pub updated_ms: TimestampMs,
}

/// `POST /v1/calls/{call}/legs`: add a participant's peer connection to a call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegOffer {
    /// Chosen by the UCServer, unique within the call (usually `<user>/<device>`).
    pub leg: String,
    /// The client's SDP offer.
    pub sdp: String,
}

/// Answer to a [`LegOffer`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LegAnswer {
    pub call: CallId,
    pub leg: String,
    pub sdp: String,
}

/// Per-leg counters, from `GET /v1/calls/{call}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LegStats {
    pub leg: String,
    pub connected: bool,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Something that happened to a leg, reported by the MediaServer to the UCServers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaEvent {
    Connected {
        media: MediaServerId,
        call: CallId,
        leg: String,
    },
    Failed {
        media: MediaServerId,
        call: CallId,
        leg: String,
        reason: String,
    },
    Closed {
        media: MediaServerId,
        call: CallId,
        leg: String,
    },
}
