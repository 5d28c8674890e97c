//! Rust client of Switchboard's client and admin APIs, used by the `ucclient` and `ucadmin`
//! command-line tools, by the `uc-bench` load generator and by the integration tests.
//!
//! Everything is `async` and typed with the wire types of the `shared` crate, so a test reads
//! like the API document: [`Client::login`] (following `wrong_server` to the home server),
//! then REST calls such as [`Client::send_to_user`], and [`Client::connect`] for the WebSocket
//! ([`Connection`]). Admin routes are on [`AdminClient`]. Every failure is a [`ClientError`]
//! that keeps the server's typed error when there is one.
//!
//! Calls: the call commands are methods of [`Connection`] (`call_place`, `call_answer`, …, see
//! [`calls`]), the media leg is a `peer::ClientPeer` (webrtc-rs), and [`calls::CallSession`]
//! follows one call's events and says what to do next, without IO.
//!
//! The peer (module `peer` and its `PeerError`) is behind the `softphone` feature, on by
//! default; `ucadmin` turns it off and so does not build the WebRTC stack.

mod admin;
pub mod calls;
mod client;
mod connection;
mod error;
pub mod failover;
mod http;
pub mod inbox;
mod login;
pub mod ops;
#[cfg(feature = "softphone")]
pub mod peer;
pub mod text;

pub use admin::{AdminClient, AdminEvents, AuditExport};
pub use client::{Client, capabilities_text, new_client_id, websocket_url};
pub use connection::{Ack, Connection, Hello, event_type};
#[cfg(feature = "softphone")]
pub use error::PeerError;
pub use error::{ClientError, TransportError};
pub use http::{HttpClient, normalize_base_url};
pub use inbox::Inbox;
pub use login::MAX_LOGIN_HOPS;
