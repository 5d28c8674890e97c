//! The client WebSocket front end: one task per connected device, one `select!` over the
//! socket, the device's event queue and its catch-up streams. It decodes frames into
//! commands for the device's [`Session`] and encodes the session's answers and events as JSON
//! text frames. Every frame is size-limited; a bad frame gets a typed `error` event and the
//! connection stays open, except an oversized frame (closed with 1009) and a text frame that
//! is not UTF-8 (closed with 1007), after their `error` event.

use crate::app::Session;
use crate::devices::DeviceOrigin;
use crate::error::AppError;
use crate::events::DeviceEvent;
use crate::extract::{AppState, Caller, ClientAddress};
use crate::server::Server;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use shared::api::{ErrorCode, SetPresence, parse_capabilities};
use shared::ws::{ClientCommand, ClientEnvelope, ServerEvent};
use shared::{DeviceId, validate_name};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A device that sends nothing (not even a ping) for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The server pings a quiet socket this often to notice dead peers.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Replayed events buffered between a catch-up's SQL reads and the socket: the reader waits
/// when it is full, so a catch-up of any size arrives complete without filling memory.
const CATCH_UP_QUEUE: usize = 256;
/// Catch-ups (`sync`) one device may have running at once.
const MAX_CATCH_UPS: usize = 4;
/// RFC 6455 close codes for the two frames that end a session.
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Deserialize)]
pub struct WsQuery {
    device: Option<String>,
    #[serde(default)]
    caps: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/ws",
    tag = "client",
    params(
        ("device" = Option<String>, Query, description = "the device id; default: the token's"),
        ("caps" = Option<String>, Query, description = "capabilities, such as `chat,audio`"),
        ("token" = Option<String>, Query, description = "the session token, for browsers that cannot set headers"),
    ),
    responses((status = 101, description = "The WebSocket: `ClientEnvelope` frames in, `ServerEvent` frames out (GET /api/v1/ws-schema.json); the first is `hello`."))
)]
pub async fn ws_upgrade(
    State(server): State<AppState>,
    Caller(info, token): Caller,
    ClientAddress(address): ClientAddress,
    headers: axum::http::HeaderMap,
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
    let client = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let origin = DeviceOrigin::new(client, Some(address), Some(token));
    let session = Session::client(server, info, device)?;
    Ok(upgrade
        // A small read buffer keeps an idle session's memory low (axum's default is 128 KiB).
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(shared::limits::MAX_FRAME_BYTES)
        .max_frame_size(shared::limits::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run_session(session, capabilities, origin, socket)))
}

/// The JSON text frame of an event made here (answers, hello): encoded once, for this device.
fn text(event: &ServerEvent) -> Message {
    Message::Text(crate::events::encode_json(event).into())
}

/// The JSON text frame of a queued event, whose encoding is shared by every device it goes to.
fn queued(event: &DeviceEvent) -> Message {
    Message::Text(event.json().as_ref().into())
}

/// Why a read from the socket ended the session, when the peer should be told: the error,
/// what to tell a person, and the close code.
fn read_failure(error: axum::Error) -> Option<(ErrorCode, String, u16)> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *error {
        tungstenite::Error::Capacity(_) => Some((
            ErrorCode::PayloadTooLarge,
            format!(
                "a frame may have at most {} bytes",
                shared::limits::MAX_FRAME_BYTES
            ),
            CLOSE_TOO_BIG,
        )),
        tungstenite::Error::Utf8(_) => Some((
            ErrorCode::MalformedFrame,
            "a text frame must be valid UTF-8".into(),
            CLOSE_INVALID_DATA,
        )),
        _ => None,
    }
}

async fn run_session(
    session: Session,
    capabilities: Vec<shared::presence::Capability>,
    origin: DeviceOrigin,
    socket: WebSocket,
) {
    let server = session.server().clone();
    let user = session.user().clone();
    let device = session.device().clone();
    let (mut sink, mut stream) = socket.split();
    let (conn, mut events) = session.connect(capabilities, origin).await;
    tracing::debug!(%user, %device, conn, "device connected");

    // Hello first: conversations and the presence of everyone the user watches.
    let hello = session.hello().await;
    if sink.send(text(&hello)).await.is_err() {
        session.disconnect(conn).await;
        return;
    }
    // Then what the device missed while away, and later every `sync`, through one bounded
    // queue that its readers wait on: catch-ups are never cut short by a full queue.
    let (catch_up_tx, mut catch_up_rx) = mpsc::channel::<DeviceEvent>(CATCH_UP_QUEUE);
    let mut catch_ups: JoinSet<()> = JoinSet::new();
    {
        let session = session.clone();
        let out = catch_up_tx.clone();
        catch_ups.spawn(async move {
            if let Err(error) = session.replay_unread(&out).await {
                tracing::warn!(error = %error.0, "could not replay unread messages");
            }
        });
    }

    let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    let mut last_heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            // A device with many unanswered sends waits for their answers before more.
            incoming = stream.next(), if pending.len() < MAX_PENDING_REPLIES => {
                let frame = match incoming {
                    Some(Ok(frame)) => frame,
                    Some(Err(error)) => {
                        if let Some((error, message, code)) = read_failure(error) {
                            count_error(&server);
                            let event = ServerEvent::Error {
                                reference: None,
                                error,
                                message: message.clone(),
                                retry_after_ms: None,
                            };
                            let _ = sink.send(text(&event)).await;
                            let close = CloseFrame { code, reason: message.into() };
                            let _ = sink.send(Message::Close(Some(close))).await;
                            linger_before_close().await;
                        }
                        break;
                    }
                    None => break,
                };
                last_heard = tokio::time::Instant::now();
                let reply = match frame {
                    Message::Text(body) => {
                        handle_frame(&session, body.as_bytes(), &catch_up_tx, &mut catch_ups).await
                    }
                    Message::Binary(_) => Some(Reply::Now(Box::new(ServerEvent::Error {
                        reference: None,
                        error: ErrorCode::MalformedFrame,
                        message: "send JSON in text frames".into(),
                        retry_after_ms: None,
                    }))),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                match reply {
                    Some(Reply::Now(reply)) if sink.send(text(&reply)).await.is_err() => break,
                    Some(Reply::Now(_)) | None => {}
                    Some(Reply::Later(reply)) => pending.push_back(reply),
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
                if sink.send(queued(&event)).await.is_err() {
                    break;
                }
            }
            Some(event) = catch_up_rx.recv() => {
                if sink.send(queued(&event)).await.is_err() {
                    break;
                }
            }
            Some(_) = catch_ups.join_next(), if !catch_ups.is_empty() => {}
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
    catch_ups.abort_all();
    let _ = sink.close().await;
    session.disconnect(conn).await;
    tracing::debug!(%user, %device, conn, "device disconnected");
}

/// Keeps the socket open briefly after the close frame before it is dropped. The frame that
/// ended the session may be partly unread, and closing a TCP socket with unread input resets
/// it: a reset sent at once can overtake the `error` event and close frame just written, so
/// the peer would never learn why. The read side has ended (tungstenite stops after an
/// error), so this waits rather than reads.
async fn linger_before_close() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn count_error(server: &Server) {
    server
        .metrics
        .client_errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// An answer to a command that arrives once the chat writer stored the message.
type PendingReply = Pin<Box<dyn Future<Output = ServerEvent> + Send>>;

/// Most sends of one device waiting for their answer before its socket is read again.
const MAX_PENDING_REPLIES: usize = 256;

/// The answer to one frame: now, or once a queued message is stored.
enum Reply {
    Now(Box<ServerEvent>),
    Later(PendingReply),
}

/// What a command produced.
enum Outcome {
    Done(Option<Box<ServerEvent>>),
    Stored(crate::app::session::Stored),
    /// A call command, answered once the call (maybe on another server) took it.
    Call(Pin<Box<dyn Future<Output = Result<Option<shared::CallId>, AppError>> + Send>>),
    /// A catch-up now streaming; its last event is the answer.
    Streaming,
}

/// Decodes one text frame and runs it; returns the reply to send (ack, error, pong), if any.
async fn handle_frame(
    session: &Session,
    body: &[u8],
    catch_up: &mpsc::Sender<DeviceEvent>,
    catch_ups: &mut JoinSet<()>,
) -> Option<Reply> {
    let server = session.server();
    let envelope: ClientEnvelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            count_error(server);
            let reference = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("ref").and_then(|r| r.as_u64()));
            let known_type = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)));
            let (code, message) = match known_type {
                Some(kind) if !KNOWN_COMMANDS.contains(&kind) => (
                    ErrorCode::UnknownType,
                    format!("unknown command type '{kind}'"),
                ),
                _ => (
                    ErrorCode::MalformedFrame,
                    format!("the frame is not a valid command: {error}"),
                ),
            };
            return Some(Reply::Now(Box::new(ServerEvent::Error {
                reference,
                error: code,
                message,
                retry_after_ms: None,
            })));
        }
    };
    session.touch();
    let reference = envelope.reference;
    if !server.owners.may_act() && !matches!(envelope.command, ClientCommand::Ping) {
        // Paused past the failure detector's window: this user may be served elsewhere
        // now. The next heartbeat tells; until then nothing is done for them here.
        return Some(Reply::Now(Box::new(ServerEvent::Error {
            reference,
            error: ErrorCode::ServerUnavailable,
            message: "this server is checking which users it still serves; try again".into(),
            retry_after_ms: Some(crate::server::CLAIM_RETRY_MS),
        })));
    }
    let result = run_command(session, envelope.command, reference, catch_up, catch_ups).await;
    let answer = move |result: Result<Option<ServerEvent>, AppError>| match result {
        Ok(Some(ServerEvent::Ack { message, call, .. })) => ServerEvent::Ack {
            reference,
            message,
            call,
        },
        Ok(Some(reply)) => reply,
        Ok(None) => ack(reference),
        Err(error) => error_event(reference, error),
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
                    count_error(&server);
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
                    count_error(&server);
                }
                answer(result)
            })))
        }
        Ok(Outcome::Streaming) => None,
        Ok(Outcome::Done(reply)) => Some(Reply::Now(Box::new(answer(Ok(reply.map(|r| *r)))))),
        Err(error) => {
            count_error(server);
            Some(Reply::Now(Box::new(answer(Err(error)))))
        }
    }
}

fn ack(reference: Option<u64>) -> ServerEvent {
    ServerEvent::Ack {
        reference,
        message: None,
        call: None,
    }
}

fn error_event(reference: Option<u64>, error: AppError) -> ServerEvent {
    ServerEvent::Error {
        reference,
        error: error.0.error,
        message: error.0.message,
        retry_after_ms: error.0.retry_after_ms,
    }
}

/// The `type` of every command, read from the commands' own JSON Schema, so the list follows
/// the serde tags by itself (an unknown `type` is answered `unknown_type`, a known one with bad
/// fields `malformed_frame`).
static KNOWN_COMMANDS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let schema = serde_json::to_value(schemars::schema_for!(ClientCommand)).unwrap_or_default();
    let mut found = BTreeSet::new();
    type_constants(&schema, &mut found);
    found
});

/// Collects the constant values of every `type` property in a schema.
fn type_constants(schema: &serde_json::Value, found: &mut BTreeSet<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(kind) = map.get("properties").and_then(|p| p.get("type")) {
                let constants = kind.get("const").into_iter().chain(
                    kind.get("enum")
                        .and_then(|e| e.as_array())
                        .into_iter()
                        .flatten(),
                );
                found.extend(constants.filter_map(|c| c.as_str().map(str::to_string)));
            }
            for value in map.values() {
                type_constants(value, found);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                type_constants(item, found);
            }
        }
        _ => {}
    }
}

async fn run_command(
    session: &Session,
    command: ClientCommand,
    reference: Option<u64>,
    catch_up: &mpsc::Sender<DeviceEvent>,
    catch_ups: &mut JoinSet<()>,
) -> Result<Outcome, AppError> {
    let reply = match command {
        ClientCommand::Ping => Some(Box::new(ServerEvent::Pong)),
        ClientCommand::PresenceSet {
            availability,
            note,
            user,
        } => {
            session
                .set_presence(SetPresence {
                    availability,
                    note,
                    user,
                })
                .await?;
            None
        }
        ClientCommand::DeviceState { active, idle } => {
            session.set_device_state(active, idle).await;
            None
        }
        ClientCommand::Send {
            to,
            conversation,
            body,
            client_id,
        } => {
            let stored = session
                .queue_message(to.as_ref(), conversation.as_ref(), body, client_id)
                .await?;
            return Ok(Outcome::Stored(stored));
        }
        ClientCommand::Read { conversation, seq } => {
            session.mark_read(&conversation, Some(seq)).await?;
            None
        }
        ClientCommand::Typing {
            conversation,
            typing,
        } => {
            session.typing(&conversation, typing).await?;
            None
        }
        ClientCommand::Sync { since } => {
            if catch_ups.len() >= MAX_CATCH_UPS {
                return Err(AppError::new(
                    ErrorCode::TooManyAttempts,
                    format!("at most {MAX_CATCH_UPS} syncs may run at once; wait for an answer"),
                ));
            }
            // Answered as `message` events with replay=true, then the ack, on the catch-up
            // queue: complete however many there are, and the ack only after all of them.
            let stream = session.catch_up(since).await?;
            let out = catch_up.clone();
            catch_ups.spawn(async move {
                stream
                    .run(out, ack(reference), move |error| {
                        error_event(reference, error)
                    })
                    .await;
            });
            return Ok(Outcome::Streaming);
        }
        ClientCommand::Call(command) => {
            let pending = session.call(command).await?;
            return Ok(Outcome::Call(Box::pin(pending)));
        }
    };
    Ok(Outcome::Done(reply))
}

#[cfg(test)]
mod tests {
    use super::KNOWN_COMMANDS;

    #[test]
    fn the_known_commands_are_read_from_the_wire_types() {
        for kind in [
            "ping",
            "send",
            "sync",
            "device_state",
            "call_place",
            "forward_clear",
        ] {
            assert!(
                KNOWN_COMMANDS.contains(kind),
                "{kind}: {:?}",
                *KNOWN_COMMANDS
            );
        }
        assert!(!KNOWN_COMMANDS.contains("hello"), "{:?}", *KNOWN_COMMANDS);
        assert_eq!(KNOWN_COMMANDS.len(), 15, "{:?}", *KNOWN_COMMANDS);
    }
}
