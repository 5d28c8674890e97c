//! `AppError`: the one error type of the HTTP and WebSocket surfaces. It always carries a
//! typed code and a sentence for people; internals go to the log, not to the client.

use crate::cluster::ClusterError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shared::api::{ApiError, ErrorCode};

#[derive(Clone, Debug)]
pub struct AppError(pub ApiError);

pub type AppResult<T> = Result<T, AppError>;

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ApiError> for AppError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn code(&self) -> ErrorCode {
        self.0.error
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            StoreError::NotFound(what) => Self::not_found(format!("{what} does not exist")),
            StoreError::Stale(what) => Self::new(
                ErrorCode::Conflict,
                format!("{what} was changed meanwhile; load it again"),
            ),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Self::new(
                    ErrorCode::ServerUnavailable,
                    "the database cannot be reached; try again shortly",
                )
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "database error");
                Self::new(
                    ErrorCode::Internal,
                    "a database operation failed; the server log has details",
                )
            }
        }
    }
}

impl From<ClusterError> for AppError {
    fn from(error: ClusterError) -> Self {
        tracing::warn!(%error, "cluster store error");
        Self::new(
            ErrorCode::ServerUnavailable,
            "the cluster store (Redis) cannot be reached; try again shortly",
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}
