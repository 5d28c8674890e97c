//! The one error type of the client library.
//!
//! A caller (a test, a CLI) mostly wants to know one thing: did the *server* refuse, and with
//! which code, or did the request never get a proper answer? So the server's typed
//! [`ApiError`] is kept intact in [`ClientError::Api`], and everything else is either the network
//! ([`ClientError::Transport`]) or an answer we could not make sense of
//! ([`ClientError::Protocol`]). `Display` always reads `<code>: <message>`, which is what the
//! command-line tools print after `error: `.
//!
//! The softphone's media leg is not the server's business, so its failures have their own
//! type, `PeerError` (feature `softphone`).

use shared::api::{ApiError, ErrorCode};
use std::time::Duration;

/// What went wrong talking to a Switchboard server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its typed error (`{"error": code, "message": ...}`), over REST
    /// or as a WebSocket `error` event.
    #[error("{0}")]
    Api(ApiError),
    /// The request or the WebSocket failed below the API: connection refused, reset, timed
    /// out, TLS, or the socket closed while an answer was awaited.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The server answered something that is not the API: an unexpected status without an
    /// error body, JSON of the wrong shape, an oversized frame, a broken login redirect.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// The network-level reasons behind [`ClientError::Transport`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection is closed")]
    Closed,
}

impl ClientError {
    /// A short stable code: the server's error code for [`ClientError::Api`], else
    /// `transport` or `protocol`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Api(api) => api.error.as_str(),
            Self::Transport(_) => "transport",
            Self::Protocol(_) => "protocol",
        }
    }

    /// The server's typed error, when the server answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(api) => Some(api),
            _ => None,
        }
    }

    /// True when the server refused with this code: `assert!(err.is(ErrorCode::Forbidden))`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.api().is_some_and(|api| api.error == code)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(error: reqwest::Error) -> Self {
        Self::Transport(TransportError::Http(error))
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::Transport(TransportError::WebSocket(Box::new(error)))
    }
}

/// What went wrong with a WebRTC peer ([`crate::peer::ClientPeer`]): building it, gathering
/// its candidates, applying the MediaServer's answer, connecting, or sending media.
#[cfg(feature = "softphone")]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("ICE gathering did not complete within {0:?}")]
    GatheringTimeout(Duration),
    #[error("the peer connection did not connect within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the peer connection failed")]
    ConnectionFailed,
    /// The peer cannot do what was asked (no negotiated codec, no video track, no SDP).
    #[error("{0}")]
    Protocol(String),
}

/// reqwest's own message is terse ("error sending request for url"); the cause (connection
/// refused, timed out) is in its source chain, which a person needs to see.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_the_server_code_and_message() {
        let error = ClientError::Api(ApiError::new(ErrorCode::NotAMember, "you are not in g:ops"));
        assert_eq!(error.to_string(), "not_a_member: you are not in g:ops");
        assert_eq!(error.code(), "not_a_member");
        assert!(error.is(ErrorCode::NotAMember));
        assert!(!error.is(ErrorCode::Forbidden));
    }

    #[test]
    fn other_errors_have_stable_codes() {
        let error = ClientError::protocol("bad JSON");
        assert_eq!(error.to_string(), "protocol: bad JSON");
        assert_eq!(error.code(), "protocol");
        let error = ClientError::Transport(TransportError::Timeout(Duration::from_secs(2)));
        assert_eq!(error.to_string(), "transport: no answer within 2s");
        assert_eq!(error.code(), "transport");
        assert!(error.api().is_none());
    }
}
