//! What can go wrong with a request to the media engine, said so that the UCServer (and the
//! person reading its log) knows what to do. The HTTP shell maps each to an `ErrorCode`.

use shared::api::ErrorCode;

/// A refused or failed media-engine operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The SDP offer could not be parsed or negotiated; nothing was kept of it.
    #[error("the SDP offer was refused: {reason}")]
    BadOffer { reason: String },
    /// The leg or call name is empty, too long or has control characters.
    #[error("invalid {what} '{value}': use 1-128 printable characters")]
    InvalidName { what: &'static str, value: String },
    /// A leg of that name is already in the call.
    #[error("leg '{leg}' is already in call '{call}'")]
    DuplicateLeg { call: String, leg: String },
    /// The server carries as many legs as it is configured for.
    #[error("this MediaServer is full ({capacity} legs); place the call on another one")]
    CapacityReached { capacity: u32 },
    #[error("no call '{call}' on this MediaServer")]
    CallNotFound { call: String },
    #[error("no leg '{leg}' in call '{call}'")]
    LegNotFound { call: String, leg: String },
    /// The engine task has stopped (shutdown or crash); nothing can be done any more.
    #[error("the media engine has stopped")]
    EngineStopped,
}

impl MediaError {
    /// The API error code that goes with this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            MediaError::BadOffer { .. } | MediaError::InvalidName { .. } => ErrorCode::BadRequest,
            MediaError::DuplicateLeg { .. } => ErrorCode::Conflict,
            MediaError::CapacityReached { .. } | MediaError::EngineStopped => {
                ErrorCode::ServerUnavailable
            }
            MediaError::CallNotFound { .. } | MediaError::LegNotFound { .. } => ErrorCode::NotFound,
        }
    }
}
