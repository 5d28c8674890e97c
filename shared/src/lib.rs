//! Wire types shared by every Switchboard part.
//!
//! Everything that crosses a process boundary (REST bodies, WebSocket frames, bus messages,
//! Redis values) is defined here and only here, so the server, the clients and the admin tool
//! cannot drift apart. Internal state of the server converts to these types at the edge.
//!
//! Feature `schema` adds `utoipa::ToSchema` (REST bodies) and `schemars::JsonSchema` (REST
//! bodies and WebSocket frames) derives, for the documents the UCServer serves; the clients
//! and `ucadmin` leave it off.

pub mod api;
pub mod bus;
pub mod call;
pub mod console;
pub mod directory;
pub mod ids;
pub mod inspect;
pub mod keys;
pub mod limits;
pub mod media;
pub mod presence;
pub mod time;
pub mod url;
pub mod ws;

pub use ids::*;

/// Milliseconds since the Unix epoch: every timestamp on the wire uses this unit.
pub type TimestampMs = i64;

/// The current wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
