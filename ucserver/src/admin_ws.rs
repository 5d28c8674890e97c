//! `GET /api/v1/admin/events`: the admin live channel, a WebSocket on which a console learns at
//! once what other administrators changed anywhere in the cluster (the audit entry) and which
//! server was found dead, so it reloads what it shows instead of polling. It carries no data
//! beyond the audit entry: the console reads the rest over REST, with its role's rights.
//!
//! Any administrator may watch (read-only ones too). The session token is checked again every
//! minute, so a console whose administrator signed out, lost the role or was disabled is
//! closed (4001). A console sends `{"type":"ping"}` (a web page cannot send WebSocket pings)
//! and nothing else; every frame it sends is limited to `MAX_ADMIN_FRAME_BYTES`.

use crate::app::AdminSession;
use crate::error::AppError;
use crate::extract::{AppState, Caller, ClientAddress};
use crate::server::Server;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use shared::api::ErrorCode;
use shared::console::{AdminCommand, AdminEvent, MAX_ADMIN_FRAME_BYTES};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, broadcast};

/// How often the token and role are checked again while the channel is open.
const RECHECK_EVERY: Duration = Duration::from_secs(60);
/// A console that sends nothing (the page pings every 25 s) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Close codes: the session ended (sign in again); a frame that is not a known command.
const CLOSE_SIGNED_OUT: u16 = 4001;
const CLOSE_POLICY: u16 = 1008;

#[utoipa::path(
    get,
    path = "/api/v1/admin/events",
    tag = "admin",
    params(
        ("token" = Option<String>, Query, description = "the admin session token, for browsers that cannot set headers"),
    ),
    responses(
        (status = 101, description = "The WebSocket: `AdminEvent` frames out (`hello` first, then `change`, `server_down`, `resync`, `pong`); `{\"type\":\"ping\"}` in."),
        (status = 503, description = "Too many consoles are connected to this server."),
    )
)]
pub(crate) async fn admin_events(
    State(server): State<AppState>,
    Caller(info, token): Caller,
    ClientAddress(address): ClientAddress,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let admin = AdminSession::open(server.clone(), info, Some(address)).await?;
    admin.may_watch()?;
    let Some((slot, events)) = server.admin_feed.join() else {
        return Err(AppError::new(
            ErrorCode::ServerUnavailable,
            "too many consoles are connected to this server; try again later",
        ));
    };
    Ok(upgrade
        .max_message_size(MAX_ADMIN_FRAME_BYTES)
        .max_frame_size(MAX_ADMIN_FRAME_BYTES)
        .on_upgrade(move |socket| run(server, token, slot, events, socket)))
}

fn frame(event: &AdminEvent) -> Message {
    Message::Text(serde_json::to_string(event).unwrap_or_default().into())
}

async fn run(
    server: Arc<Server>,
    token: String,
    _slot: OwnedSemaphorePermit,
    mut events: broadcast::Receiver<Arc<str>>,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    let hello = AdminEvent::Hello {
        server: server.id.clone(),
    };
    if sink.send(frame(&hello)).await.is_err() {
        return;
    }
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.tick().await;
    let mut idle = Box::pin(tokio::time::sleep(IDLE_TIMEOUT));
    let close = loop {
        tokio::select! {
            event = events.recv() => {
                let message = match event {
                    Ok(text) => Message::Text(text.as_ref().into()),
                    Err(broadcast::error::RecvError::Lagged(_)) => frame(&AdminEvent::Resync),
                    Err(broadcast::error::RecvError::Closed) => break None,
                };
                if sink.send(message).await.is_err() {
                    break None;
                }
            }
            incoming = stream.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if serde_json::from_str::<AdminCommand>(&text).is_err() {
                            break Some((CLOSE_POLICY, "only {\"type\":\"ping\"} is understood here"));
                        }
                        if sink.send(frame(&AdminEvent::Pong)).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break Some((CLOSE_POLICY, "only text frames are understood here"));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
                }
            }
            _ = recheck.tick() => {
                if let Err(error) = still_admin(&server, &token).await
                    && session_over(error.code())
                {
                    break Some((CLOSE_SIGNED_OUT, "the admin session has ended; sign in again"));
                }
            }
            _ = &mut idle => break None,
        }
    };
    if let Some((code, reason)) = close {
        let close = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    }
}

/// Whether a failed check means the administrator may watch no more; anything else (SQL or
/// the cluster away for a moment) keeps the channel: the next check decides.
fn session_over(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden)
}

/// Whether the token still stands for an administrator (not signed out, expired, demoted or
/// disabled).
async fn still_admin(server: &Arc<Server>, token: &str) -> Result<(), AppError> {
    let info = server.token(token).await?;
    AdminSession::open(server.clone(), info, None)
        .await?
        .may_watch()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_ends_a_console_channel() {
        assert!(session_over(ErrorCode::Unauthorized));
        assert!(session_over(ErrorCode::Forbidden));
        // SQL away for a moment: the console stays signed in and live.
        assert!(!session_over(ErrorCode::ServerUnavailable));
        assert!(!session_over(ErrorCode::Internal));
    }
}
