//! The client WebSocket: one task per connected device, one `select!` over the socket and
//! the device's event queue. Every frame is size-limited; a bad frame gets a typed `error`
//! event and the connection stays open.

use crate::auth::TokenInfo;
use crate::error::AppError;
use crate::http::{AppState, Client, apply_presence};
use crate::server::Server;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use shared::api::{ErrorCode, SetPresence, parse_capabilities};
use shared::ws::{ClientCommand, ClientEnvelope, ServerEvent};
use shared::{DeviceId, UserId, validate_name};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A device that sends nothing (not even a ping) for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The server pings a quiet socket this often to notice dead peers.
const PING_EVERY: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct WsQuery {
    device: Option<String>,
    #[serde(default)]
    caps: Option<String>,
}

pub async fn ws_upgrade(
    State(server): State<AppState>,
    Client(info): Client,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let device = match query.device {
        Some(device) => {
            validate_name(&device).map_err(|e| AppError::bad_request(format!("device: {e}")))?;
            DeviceId::new(device)
        }
        None => info.device.clone(),
    };
    let capabilities = match &query.caps {
        Some(text) if text.len() <= 256 => {
            parse_capabilities(text).map_err(AppError::bad_request)?
        }
        Some(_) => return Err(AppError::bad_request("caps is too long")),
        None => vec![shared::presence::Capability::Chat],
    };
    Ok(upgrade
        // A small read buffer keeps an idle session's memory low (axum's default is 128 KiB).
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(shared::limits::MAX_FRAME_BYTES)
        .max_frame_size(shared::limits::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run_session(server, info, device, capabilities, socket)))
}

fn text(event: &ServerEvent) -> Message {
    Message::Text(serde_json::to_string(event).unwrap_or_default().into())
}

async fn run_session(
    server: Arc<Server>,
    info: TokenInfo,
    device: DeviceId,
    capabilities: Vec<shared::presence::Capability>,
    socket: WebSocket,
) {
    let user = info.user.clone();
    let (mut sink, mut stream) = socket.split();
    let (conn, mut events) = server.connect_device(&user, &device, capabilities).await;
    tracing::debug!(%user, %device, conn, "device connected");

    // Hello first: conversations and the presence of everyone the user watches.
    let hello = build_hello(&server, &user, &device).await;
    if sink.send(text(&hello)).await.is_err() {
        server.disconnect_device(&user, &device, conn).await;
        return;
    }
    // Then what the device missed while away, through the same queue as live events.
    let (replay_tx, mut replay_rx) = tokio::sync::mpsc::channel(256);
    let replay_server = server.clone();
    let replay_user = user.clone();
    let replay = tokio::spawn(async move {
        if let Err(error) = replay_server.replay_unread(&replay_user, &replay_tx).await {
            tracing::warn!(error = %error.0, "could not replay unread messages");
        }
    });

    let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    let mut last_heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            // A device with many unanswered sends waits for their answers before more.
            incoming = stream.next(), if pending.len() < MAX_PENDING_REPLIES => {
                let Some(Ok(frame)) = incoming else { break };
                last_heard = tokio::time::Instant::now();
                let reply = match frame {
                    Message::Text(body) => handle_frame(&server, &info, &device, body.as_bytes()).await,
                    Message::Binary(_) => Some(Reply::Now(ServerEvent::Error {
                        reference: None,
                        error: ErrorCode::MalformedFrame,
                        message: "send JSON in text frames".into(),
                        retry_after_ms: None,
                    })),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                match reply {
                    Some(Reply::Now(reply)) => {
                        if sink.send(text(&reply)).await.is_err() {
                            break;
                        }
                    }
                    Some(Reply::Later(reply)) => pending.push_back(reply),
                    None => {}
                }
            }
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if sink.send(text(&reply)).await.is_err() {
                    break;
                }
            }
            event = events.recv() => {
                // The queue ends when the server dropped this device (replaced, too slow, kicked).
                let Some(event) = event else { break };
                if sink.send(Message::Text(event.as_ref().into())).await.is_err() {
                    break;
                }
            }
            Some(event) = replay_rx.recv() => {
                if sink.send(Message::Text(event.as_ref().into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    tracing::info!(%user, %device, "device silent too long; disconnecting");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    replay.abort();
    let _ = sink.close().await;
    server.disconnect_device(&user, &device, conn).await;
    tracing::debug!(%user, %device, conn, "device disconnected");
}

async fn build_hello(server: &Server, user: &UserId, device: &DeviceId) -> ServerEvent {
    let conversations = server
        .sql(server.store.conversations_of(user))
        .await
        .unwrap_or_default();
    let watched = server.watched_by(user).await.unwrap_or_default();
    let snapshots = server
        .bus("get presence", server.cluster.get_presence(&watched))
        .await
        .unwrap_or_default();
    let presence = watched
        .iter()
        .enumerate()
        .map(|(index, watched_user)| {
            let snapshot = snapshots.get(index).cloned().flatten().unwrap_or_else(|| {
                shared::presence::PresenceSnapshot::offline(watched_user.clone())
            });
            shared::presence::PresenceView::of(&snapshot, shared::presence::Visibility::Full)
        })
        .collect();
    ServerEvent::Hello {
        user: user.clone(),
        device: device.clone(),
        server: server.id.clone(),
        conversations,
        presence,
    }
}

/// Handles one text frame; returns the reply to send (ack, error, pong), if any.
/// An answer to a command that arrives once the chat writer stored the message.
type PendingReply = Pin<Box<dyn Future<Output = ServerEvent> + Send>>;

/// Most sends of one device waiting for their answer before its socket is read again.
const MAX_PENDING_REPLIES: usize = 256;

/// The answer to one frame: now, or once a queued message is stored.
enum Reply {
    Now(ServerEvent),
    Later(PendingReply),
}

/// What a command produced.
enum Outcome {
    Done(Option<ServerEvent>),
    Stored(tokio::sync::oneshot::Receiver<Result<shared::api::ChatMessage, AppError>>),
    /// A call command, answered once the call (maybe on another server) took it.
    Call(
        std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Option<shared::CallId>, AppError>> + Send>,
        >,
    ),
}

async fn handle_frame(
    server: &Arc<Server>,
    info: &TokenInfo,
    device: &DeviceId,
    body: &[u8],
) -> Option<Reply> {
    let user = &info.user;
    let envelope: ClientEnvelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            server
                .metrics
                .client_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reference = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("ref").and_then(|r| r.as_u64()));
            let known_type = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)));
            let (code, message) = match known_type {
                Some(kind) if !KNOWN_COMMANDS.contains(&kind.as_str()) => (
                    ErrorCode::UnknownType,
                    format!("unknown command type '{kind}'"),
                ),
                _ => (
                    ErrorCode::MalformedFrame,
                    format!("the frame is not a valid command: {error}"),
                ),
            };
            return Some(Reply::Now(ServerEvent::Error {
                reference,
                error: code,
                message,
                retry_after_ms: None,
            }));
        }
    };
    server.touch_device(user, device);
    let reference = envelope.reference;
    let result = run_command(server, info, device, envelope.command).await;
    let answer = move |result: Result<Option<ServerEvent>, AppError>| match result {
        Ok(Some(ServerEvent::Ack { message, call, .. })) => ServerEvent::Ack {
            reference,
            message,
            call,
        },
        Ok(Some(reply)) => reply,
        Ok(None) => ServerEvent::Ack {
            reference,
            message: None,
            call: None,
        },
        Err(error) => ServerEvent::Error {
            reference,
            error: error.0.error,
            message: error.0.message,
            retry_after_ms: error.0.retry_after_ms,
        },
    };
    match result {
        Ok(Outcome::Stored(stored)) => {
            let server = server.clone();
            Some(Reply::Later(Box::pin(async move {
                let result = match stored.await {
                    Ok(Ok(message)) => Ok(Some(ServerEvent::Ack {
                        reference,
                        message: Some(message),
                        call: None,
                    })),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(AppError::new(
                        ErrorCode::ServerUnavailable,
                        "the server is shutting down",
                    )),
                };
                if result.is_err() {
                    server
                        .metrics
                        .client_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                answer(result)
            })))
        }
        Ok(Outcome::Call(pending)) => {
            let server = server.clone();
            Some(Reply::Later(Box::pin(async move {
                let result = pending.await.map(|call| {
                    Some(ServerEvent::Ack {
                        reference,
                        message: None,
                        call,
                    })
                });
                if result.is_err() {
                    server
                        .metrics
                        .client_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                answer(result)
            })))
        }
        Ok(Outcome::Done(reply)) => Some(Reply::Now(answer(Ok(reply)))),
        Err(error) => {
            server
                .metrics
                .client_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(Reply::Now(answer(Err(error))))
        }
    }
}

const KNOWN_COMMANDS: &[&str] = &[
    "ping",
    "presence_set",
    "device_state",
    "send",
    "read",
    "typing",
    "sync",
    "call_place",
    "call_answer",
    "call_reject",
    "call_hangup",
    "call_pickup",
    "call_invite",
    "forward_set",
    "forward_clear",
];

async fn run_command(
    server: &Arc<Server>,
    info: &TokenInfo,
    device: &DeviceId,
    command: ClientCommand,
) -> Result<Outcome, AppError> {
    let user = &info.user;
    let reply: Result<Option<ServerEvent>, AppError> = match command {
        ClientCommand::Ping => Ok(Some(ServerEvent::Pong)),
        ClientCommand::PresenceSet {
            availability,
            note,
            user: target,
        } => {
            apply_presence(
                server,
                info,
                SetPresence {
                    availability,
                    note,
                    user: target,
                },
            )
            .await?;
            Ok(None)
        }
        ClientCommand::DeviceState { active, idle } => {
            server.set_device_state(user, device, active, idle).await;
            Ok(None)
        }
        ClientCommand::Send {
            to,
            conversation,
            body,
            client_id,
        } => {
            server
                .rate_limits
                .check(crate::rate_limit::Action::Send, user, device)?;
            let conversation = server
                .conversation_for(user, to.as_ref(), conversation.as_ref())
                .await?;
            let stored = server
                .enqueue_message(user, conversation, body, client_id)
                .await?;
            return Ok(Outcome::Stored(stored));
        }
        ClientCommand::Read { conversation, seq } => {
            server.mark_read(user, &conversation, Some(seq)).await?;
            Ok(None)
        }
        ClientCommand::Typing {
            conversation,
            typing,
        } => {
            server
                .rate_limits
                .check(crate::rate_limit::Action::Typing, user, device)?;
            server.typing(user, &conversation, typing).await?;
            Ok(None)
        }
        ClientCommand::Sync { since } => {
            if since.len() > 1000 {
                return Err(AppError::bad_request(
                    "sync at most 1000 conversations at once",
                ));
            }
            // Answered as `message` events with replay=true on the live queue, then the ack.
            for (conversation, after) in since {
                let members = server.members_of(&conversation).await?;
                if !members.contains(user) {
                    return Err(AppError::new(
                        ErrorCode::NotAMember,
                        format!("you are not a member of conversation '{conversation}'"),
                    ));
                }
                let page = crate::store::HistoryPage::After(after);
                for message in server
                    .sql(server.store.messages(
                        &conversation,
                        page,
                        shared::limits::MAX_HISTORY_PAGE,
                    ))
                    .await?
                {
                    server.replay_to_device(user, device, message);
                }
            }
            Ok(None)
        }
        ClientCommand::Call(command) => {
            let server = server.clone();
            let by = crate::core::call::Endpoint::new(user.clone(), device.clone());
            let admin = info.admin;
            return Ok(Outcome::Call(Box::pin(async move {
                crate::calls::run_command(&server, by, admin, command).await
            })));
        }
    };
    reply.map(Outcome::Done)
}
