//! What the HTTP front ends take from a request before a handler runs: JSON bodies with typed
//! rejections, and the caller's session from its bearer token. Shared by the REST routes
//! (`http.rs`) and the WebSocket upgrade (`ws.rs`).

use crate::app::{AdminSession, Session};
use crate::auth::TokenInfo;
use crate::error::AppError;
use crate::server::Server;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use shared::api::ErrorCode;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub type AppState = Arc<Server>;

/// JSON body extractor whose rejections are typed `bad_request` / `payload_too_large` errors.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AppError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::BytesRejection(rejection))
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the body may have at most {} bytes",
                        shared::limits::MAX_BODY_BYTES
                    ),
                ))
            }
            Err(rejection) => Err(AppError::bad_request(rejection.body_text())),
        }
    }
}

/// An optional JSON body: an empty body is `None`.
pub struct MaybeBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MaybeBody<T> {
    type Rejection = AppError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| {
                AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the body may have at most {} bytes",
                        shared::limits::MAX_BODY_BYTES
                    ),
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|value| MaybeBody(Some(value)))
            .map_err(|e| {
                AppError::bad_request(format!("the body is not valid JSON for this request: {e}"))
            })
    }
}

/// The caller, from `Authorization: Bearer`, or `?token=` on the WebSocket route only
/// (browsers cannot set headers there; anywhere else a token in the URL would end up in
/// logs and histories).
pub struct Caller(pub TokenInfo, pub String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let from_header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |original| original.path());
        let from_query = WS_PATHS
            .contains(&path)
            .then(|| parts.uri.query())
            .flatten()
            .and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("token=").map(str::to_string))
            });
        let token = from_header.or(from_query).ok_or_else(|| {
            AppError::new(
                ErrorCode::Unauthorized,
                "sign in first: no session token was sent",
            )
        })?;
        let info = server.token(&token).await?;
        Ok(Caller(info, token))
    }
}

/// Who the client is, for login throttling: the TCP peer, or the address a trusted proxy
/// (`UC_TRUSTED_PROXIES`) names in `X-Forwarded-For`.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .ok_or_else(|| AppError::new(ErrorCode::Internal, "the peer address is unknown"))?;
        let trusted = &server.login_guard.trusted_proxies;
        Ok(ClientAddress(trusted.client_address(peer, &parts.headers)))
    }
}

/// The routes that take their token from the query string: WebSockets, which a browser
/// cannot give headers.
const WS_PATHS: [&str; 2] = ["/api/v1/ws", "/api/v1/admin/events"];

/// An administrator's session.
pub struct Admin(pub AdminSession);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(info, _) = Caller::from_request_parts(parts, server).await?;
        let client = ClientAddress::from_request_parts(parts, server)
            .await
            .ok()
            .map(|ClientAddress(address)| address);
        Ok(Admin(
            AdminSession::open(server.clone(), info, client).await?,
        ))
    }
}

/// `If-Match: "<version>"` of an edit (`W/"…"` and `*` taken too; `*` and no header mean any
/// version).
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        text.trim_start_matches("W/")
            .trim_matches('"')
            .parse::<u64>()
            .map(|version| IfMatch(Some(version)))
            .map_err(|_| {
                AppError::bad_request(format!(
                    "If-Match must be a version as the ETag gave it, such as \"3\", not '{}'",
                    text.chars().take(40).collect::<String>()
                ))
            })
    }
}

/// The session of a client token's device.
pub struct ClientSession(pub Session);

impl FromRequestParts<AppState> for ClientSession {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(info, _) = Caller::from_request_parts(parts, server).await?;
        let device = info.device.clone();
        Ok(ClientSession(Session::client(
            server.clone(),
            info,
            device,
        )?))
    }
}

/// The session of any token, the admin console's included (reads that both may make).
pub struct AnySession(pub Session);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(info, _) = Caller::from_request_parts(parts, server).await?;
        let device = info.device.clone();
        Ok(AnySession(Session::new(server.clone(), info, device)))
    }
}
