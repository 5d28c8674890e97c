//! One device's WebSocket to its UCServer: typed events in, typed commands out.
//!
//! The server speaks first with `hello`; [`Connection::open`] waits for it, so once a
//! `Connection` exists the device is registered (online for presence) and its initial state is
//! in [`Connection::hello`]. After that, [`Connection::next_event`] yields every event in order.
//! [`Connection::request`] sends a command and waits for the `ack` or `error` carrying its
//! `ref`; events that arrive meanwhile are queued and later returned by `next_event`, so a
//! test that asks and listens on one connection loses nothing. That matters for calls: the
//! events a `call_place` causes (`call_placed`, `call_media_answer`) may come before its `ack`.
//! The call commands themselves are in [`crate::calls`].
//!
//! `next_event` is cancel-safe (usable in `tokio::select!` and under `tokio::time::timeout`):
//! an event is either returned or left in the socket.

use crate::error::{ClientError, TransportError};
use crate::http::snippet;
use futures_util::{SinkExt, StreamExt};
use shared::api::{ApiError, ChatMessage, ConversationSummary, ServerLink};
use shared::limits::{MAX_EVENT_BYTES, MAX_FRAME_BYTES};
use shared::presence::PresenceView;
use shared::ws::{ClientCommand, ClientEnvelope, ServerEvent};
use shared::{CallId, DeviceId, ServerId, UserId};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long opening the socket and receiving `hello` may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait of [`Connection::request`] for its `ack` or `error`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Connection::close`] waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer of the socket. tungstenite's default is 128 KiB per connection, which a load
/// generator holding thousands of connections cannot afford; frames are small.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The content of the server's first event, `hello`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    pub user: UserId,
    pub device: DeviceId,
    pub server: ServerId,
    pub conversations: Vec<ConversationSummary>,
    /// Presence of everyone the user watches, as the user may see it.
    pub presence: Vec<PresenceView>,
    /// Every live server of the cluster.
    pub servers: Vec<ServerLink>,
}

impl Hello {
    /// The `hello` event as it arrived (for printing it like any other event).
    pub fn to_event(&self) -> ServerEvent {
        ServerEvent::Hello {
            user: self.user.clone(),
            device: self.device.clone(),
            server: self.server.clone(),
            conversations: self.conversations.clone(),
            presence: self.presence.clone(),
            servers: self.servers.clone(),
        }
    }
}

/// What an `ack` carried besides its `ref`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ack {
    /// `send`: the message as stored.
    pub message: Option<ChatMessage>,
    /// `call_place` and `call_pickup`: the call.
    pub call: Option<CallId>,
}

/// An open WebSocket of one device.
pub struct Connection {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    hello: Hello,
    /// Events read while [`Connection::request`] waited for its answer; returned first.
    queued: VecDeque<ServerEvent>,
    /// The `ref` of the next command; starts at 1 and grows.
    next_reference: u64,
    request_timeout: Duration,
    /// Set once the socket ended (close frame, error); then `next_event` returns `None`.
    closed: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("user", &self.hello.user)
            .field("device", &self.hello.device)
            .field("server", &self.hello.server)
            .field("queued", &self.queued.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Connection {
    /// Opens a WebSocket at `url` (see [`crate::websocket_url`]) with an optional bearer token
    /// and waits for `hello`. Most callers use [`crate::Client::connect`].
    pub async fn open(url: &str, token: Option<&str>) -> Result<Connection, ClientError> {
        Self::open_within(url, token, CONNECT_TIMEOUT).await
    }

    /// [`Connection::open`] with its own limit for the socket and `hello`.
    pub async fn open_within(
        url: &str,
        token: Option<&str>,
        limit: Duration,
    ) -> Result<Connection, ClientError> {
        let mut request = url.into_client_request()?;
        // Names the client to administrators (`ucadmin user sessions`).
        request.headers_mut().insert(
            "user-agent",
            HeaderValue::from_static(concat!("ucclient/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::protocol("the token is not a valid header value"))?;
            request.headers_mut().insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(MAX_EVENT_BYTES))
            .max_frame_size(Some(MAX_EVENT_BYTES));
        let deadline = Instant::now() + limit;
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _response) = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => return Err(TransportError::Timeout(limit).into()),
            Ok(Err(WsError::Http(response))) => {
                let status = response.status().as_u16();
                let body = response.body().clone().unwrap_or_default();
                return Err(match serde_json::from_slice::<ApiError>(&body) {
                    Ok(api) => ClientError::Api(api),
                    Err(_) => ClientError::protocol(format!(
                        "HTTP {status} instead of a WebSocket: {}",
                        snippet(&body)
                    )),
                });
            }
            Ok(Err(error)) => return Err(error.into()),
            Ok(Ok(pair)) => pair,
        };
        let mut connection = Connection {
            socket,
            hello: Hello {
                user: UserId::from(""),
                device: DeviceId::from(""),
                server: ServerId::from(""),
                conversations: Vec::new(),
                presence: Vec::new(),
                servers: Vec::new(),
            },
            queued: VecDeque::new(),
            next_reference: 1,
            request_timeout: REQUEST_TIMEOUT,
            closed: false,
        };
        let first = match tokio::time::timeout_at(deadline, connection.read_event()).await {
            Err(_) => return Err(TransportError::Timeout(limit).into()),
            Ok(None) => return Err(TransportError::Closed.into()),
            Ok(Some(result)) => result?,
        };
        match first {
            ServerEvent::Hello {
                user,
                device,
                server,
                conversations,
                presence,
                servers,
            } => {
                connection.hello = Hello {
                    user,
                    device,
                    server,
                    conversations,
                    presence,
                    servers,
                };
                Ok(connection)
            }
            ServerEvent::Error { error, message, .. } => {
                Err(ClientError::Api(ApiError::new(error, message)))
            }
            other => Err(ClientError::protocol(format!(
                "expected hello as the first event, got {}",
                event_type(&other)
            ))),
        }
    }

    /// What the server said in `hello` (it is not returned again by `next_event`).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Changes how long [`Connection::request`] waits (default [`REQUEST_TIMEOUT`]).
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// The next event: queued ones first, then from the socket. `None` once the connection
    /// is closed; `Some(Err(_))` for a frame that is not a valid event (too large, not JSON)
    /// or a broken socket. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Result<ServerEvent, ClientError>> {
        if let Some(event) = self.queued.pop_front() {
            return Some(Ok(event));
        }
        self.read_event().await
    }

    /// Waits up to `timeout` for an event that `wanted` accepts and returns it. Events it
    /// rejects are **dropped**: use it when only one kind of event matters.
    pub async fn next_matching(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&ServerEvent) -> bool,
    ) -> Result<ServerEvent, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => return Err(TransportError::Timeout(timeout).into()),
                Ok(None) => return Err(TransportError::Closed.into()),
                Ok(Some(Err(error))) => return Err(error),
                Ok(Some(Ok(event))) if wanted(&event) => return Ok(event),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends a command with a fresh `ref` and returns that `ref` without waiting. Its `ack` or
    /// `error` will come through [`Connection::next_event`]. A command larger than
    /// [`MAX_FRAME_BYTES`] is refused here, as the server would.
    pub async fn send(&mut self, command: ClientCommand) -> Result<u64, ClientError> {
        let reference = self.next_reference;
        self.next_reference += 1;
        let envelope = ClientEnvelope {
            reference: Some(reference),
            command,
        };
        let text = serde_json::to_string(&envelope)
            .map_err(|error| ClientError::protocol(format!("cannot encode a command: {error}")))?;
        if text.len() > MAX_FRAME_BYTES {
            return Err(ClientError::protocol(format!(
                "a command of {} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit",
                text.len()
            )));
        }
        self.socket.send(Message::text(text)).await?;
        Ok(reference)
    }

    /// Sends one text frame as is, unchecked: for tests of how the server treats bad input.
    pub async fn send_raw(&mut self, text: String) -> Result<(), ClientError> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a command and waits for the `ack` or `error` with its `ref`: `Ok` with the ack's
    /// message (for `send`), or the server's error as [`ClientError::Api`]. `ping` waits for
    /// `pong`. Other events arriving meanwhile are kept for `next_event`.
    pub async fn request(
        &mut self,
        command: ClientCommand,
    ) -> Result<Option<ChatMessage>, ClientError> {
        Ok(self.request_ack(command).await?.message)
    }

    /// [`Connection::request`], returning all the `ack` carried (the call id of `call_place`
    /// and `call_pickup`). Events arriving before the answer, such as the `call_placed` and
    /// `call_media_answer` a `call_place` causes, are kept in order for `next_event`.
    pub async fn request_ack(&mut self, command: ClientCommand) -> Result<Ack, ClientError> {
        let is_ping = matches!(command, ClientCommand::Ping);
        let reference = self.send(command).await?;
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.read_event()).await {
                Err(_) => return Err(TransportError::Timeout(self.request_timeout).into()),
                Ok(None) => return Err(TransportError::Closed.into()),
                Ok(Some(result)) => result?,
            };
            match event {
                ServerEvent::Ack {
                    reference: Some(answered),
                    message,
                    call,
                } if answered == reference => {
                    return Ok(Ack { message, call });
                }
                ServerEvent::Error {
                    reference: Some(answered),
                    error,
                    message,
                    retry_after_ms,
                } if answered == reference => {
                    let mut api = ApiError::new(error, message);
                    api.retry_after_ms = retry_after_ms;
                    return Err(ClientError::Api(api));
                }
                ServerEvent::Pong if is_ping => return Ok(Ack::default()),
                other => self.queued.push_back(other),
            }
        }
    }

    /// Closes the WebSocket politely and waits briefly for the server's close frame.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        match self.socket.close(None).await {
            Ok(()) => {}
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
        Ok(())
    }

    /// Reads frames until one is an event (control frames are handled by tungstenite).
    async fn read_event(&mut self) -> Option<Result<ServerEvent, ClientError>> {
        loop {
            if self.closed {
                return None;
            }
            let message = match self.socket.next().await {
                None => {
                    self.closed = true;
                    return None;
                }
                Some(Err(error)) => {
                    self.closed = true;
                    return classify_read_error(error);
                }
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => return Some(parse_event(text.as_str())),
                Message::Binary(bytes) => {
                    return Some(Err(ClientError::protocol(format!(
                        "unexpected binary frame of {} bytes",
                        bytes.len()
                    ))));
                }
                Message::Close(_) => {
                    self.closed = true;
                    return None;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// A read error: the normal ends of a socket are `None`, an oversized frame is a protocol
/// error, the rest is the network.
fn classify_read_error(error: WsError) -> Option<Result<ServerEvent, ClientError>> {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => None,
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Some(Err(ClientError::protocol(format!(
                "the server sent a frame of {size} bytes, more than the {max_size}-byte limit"
            ))))
        }
        other => Some(Err(other.into())),
    }
}

/// One text frame as an event. The size check duplicates tungstenite's on purpose: the limit
/// is part of the protocol, not a buffer setting.
pub(crate) fn parse_event(text: &str) -> Result<ServerEvent, ClientError> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(ClientError::protocol(format!(
            "the server sent a frame of {} bytes, more than the {MAX_EVENT_BYTES}-byte limit",
            text.len()
        )));
    }
    serde_json::from_str(text).map_err(|error| {
        ClientError::protocol(format!(
            "not a server event: {error}: {}",
            snippet(text.as_bytes())
        ))
    })
}

/// The `type` of an event as the wire spells it.
pub fn event_type(event: &ServerEvent) -> &'static str {
    match event {
        ServerEvent::Hello { .. } => "hello",
        ServerEvent::Ack { .. } => "ack",
        ServerEvent::Error { .. } => "error",
        ServerEvent::Pong => "pong",
        ServerEvent::Presence { .. } => "presence",
        ServerEvent::Message { .. } => "message",
        ServerEvent::Read { .. } => "read",
        ServerEvent::Typing { .. } => "typing",
        ServerEvent::Conversation { .. } => "conversation",
        ServerEvent::ConversationHeads { .. } => "conversation_heads",
        ServerEvent::Goodbye { .. } => "goodbye",
        ServerEvent::Reconnect { .. } => "reconnect",
        ServerEvent::Call(event) => event.type_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_oversized_frames_are_refused() {
        let event = parse_event(r#"{"type":"ack","ref":7}"#).unwrap();
        assert_eq!(
            event,
            ServerEvent::Ack {
                reference: Some(7),
                message: None,
                call: None,
            }
        );
        assert_eq!(event_type(&event), "ack");

        let padding = "x".repeat(MAX_EVENT_BYTES);
        let frame = format!(r#"{{"type":"goodbye","reason":"{padding}"}}"#);
        let error = parse_event(&frame).unwrap_err();
        assert_eq!(error.code(), "protocol");

        let error = parse_event(r#"{"type":"no_such_event"}"#).unwrap_err();
        assert_eq!(error.code(), "protocol");
    }

    #[test]
    fn event_type_matches_the_serde_tag() {
        let events = [
            ServerEvent::Pong,
            ServerEvent::Goodbye {
                reason: "restart".into(),
            },
            ServerEvent::Ack {
                reference: None,
                message: None,
                call: None,
            },
        ];
        for event in events {
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(value["type"], event_type(&event));
        }
    }
}
