//! The HTTP control API: a thin shell over [`MediaHandle`], spoken by UCServers.
//!
//! Every `/v1` route needs `Authorization: Bearer <UC_MEDIA_SECRET>`. Errors are
//! `shared::api::ApiError` bodies with the status of their code, never internals.

use crate::engine::MediaHandle;
use crate::error::MediaError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use shared::CallId;
use shared::api::{ApiError, ErrorCode};
use shared::media::{LegAnswer, LegOffer, LegStats, MediaServerStatus};
use std::sync::Arc;

/// Largest request body: an SDP plus its JSON envelope.
const MAX_REQUEST_BYTES: usize = shared::limits::MAX_SDP_BYTES + 4 * 1024;

#[derive(Clone)]
struct AppState {
    handle: MediaHandle,
    /// The bearer secret every `/v1` request must present.
    secret: Arc<str>,
}

/// The one error type of this HTTP surface.
#[derive(Debug)]
pub struct AppError(ApiError);

impl AppError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }
}

impl From<MediaError> for AppError {
    fn from(error: MediaError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds {MAX_REQUEST_BYTES} bytes"),
            );
        }
        Self::new(
            ErrorCode::BadRequest,
            format!(
                "the body is not a valid LegOffer: {}",
                rejection.body_text()
            ),
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// The control API router over an engine.
pub fn router(handle: MediaHandle, secret: &str) -> Router {
    let state = AppState {
        handle,
        secret: Arc::from(secret),
    };
    let v1 = Router::new()
        .route("/calls/{call}/legs", post(legs_create))
        .route("/calls/{call}/legs/{leg}", delete(legs_delete))
        .route("/calls/{call}", delete(calls_delete).get(calls_get))
        .route("/status", get(status_get))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health_get))
        .route("/metrics", get(metrics_get))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state)
}

async fn require_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_equal(presented.as_bytes(), state.secret.as_bytes()) {
        return Err(AppError::new(
            ErrorCode::Unauthorized,
            "missing or wrong control API secret",
        ));
    }
    Ok(next.run(request).await)
}

/// Compares without an early exit, so the secret cannot be guessed byte by byte from timing.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn legs_create(
    State(state): State<AppState>,
    Path(call): Path<String>,
    body: Result<Json<LegOffer>, JsonRejection>,
) -> Result<Json<LegAnswer>, AppError> {
    let Json(offer) = body?;
    let answer = state.handle.add_leg(CallId::new(call), offer).await?;
    Ok(Json(answer))
}

async fn legs_delete(
    State(state): State<AppState>,
    Path((call, leg)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    state.handle.remove_leg(CallId::new(call), leg).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn calls_delete(
    State(state): State<AppState>,
    Path(call): Path<String>,
) -> Result<StatusCode, AppError> {
    state.handle.end_call(CallId::new(call)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn calls_get(
    State(state): State<AppState>,
    Path(call): Path<String>,
) -> Result<Json<Vec<LegStats>>, AppError> {
    Ok(Json(state.handle.call_stats(CallId::new(call)).await?))
}

async fn status_get(State(state): State<AppState>) -> Result<Json<MediaServerStatus>, AppError> {
    Ok(Json(state.handle.status().await?))
}

async fn health_get(State(state): State<AppState>) -> Response {
    match state.handle.status().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

async fn metrics_get(State(state): State<AppState>) -> Response {
    match state.handle.metrics().await {
        Ok(snapshot) => (
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            snapshot.render_prometheus(state.handle.id().as_str()),
        )
            .into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}
