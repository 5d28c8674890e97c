//! The admin live channel (`GET /api/v1/admin/events`, a WebSocket): what other
//! administrators change anywhere in the cluster, as it happens (`ucadmin watch`).

use super::AdminClient;
use crate::error::{ClientError, TransportError};
use futures_util::{SinkExt, StreamExt};
use shared::api::ApiError;
use shared::console::{AdminCommand, AdminEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest event accepted from the server (an audit entry's detail is bounded far below).
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// An open live channel.
pub struct AdminEvents {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AdminClient {
    /// Opens the live channel; its first event is `hello`. Refused (`forbidden`,
    /// `unauthorized`, `server_unavailable`) like any admin request.
    pub async fn events(&self) -> Result<AdminEvents, ClientError> {
        let mut url = crate::http::build_url(&self.base_url(), &["api", "v1", "admin", "events"])?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| ClientError::protocol("cannot make a WebSocket URL"))?;
        let mut request = url.as_str().into_client_request()?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token()))
            .map_err(|_| ClientError::protocol("the token is not a valid header value"))?;
        request.headers_mut().insert("authorization", bearer);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_EVENT_BYTES))
            .max_frame_size(Some(MAX_EVENT_BYTES));
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok((socket, _)) => Ok(AdminEvents { socket }),
            Err(tungstenite::Error::Http(response)) => Err(refusal(
                response.status().as_u16(),
                response.body().as_deref(),
            )),
            Err(error) => Err(error.into()),
        }
    }
}

/// The server's typed refusal of the upgrade, when it sent one.
fn refusal(status: u16, body: Option<&[u8]>) -> ClientError {
    match body.and_then(|body| serde_json::from_slice::<ApiError>(body).ok()) {
        Some(error) => ClientError::Api(error),
        None => ClientError::protocol(format!("the live channel was refused with HTTP {status}")),
    }
}

impl AdminEvents {
    /// The next event; `None` when the server closed the channel.
    pub async fn next(&mut self) -> Result<Option<AdminEvent>, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).map(Some).map_err(|error| {
                        ClientError::protocol(format!("an event that does not parse: {error}"))
                    });
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// Asks for a `pong`: keeps a quiet channel open through proxies.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let text = serde_json::to_string(&AdminCommand::Ping).unwrap_or_default();
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|error| ClientError::Transport(TransportError::WebSocket(Box::new(error))))
    }

    /// Sends a raw text frame (for tests of what the server refuses).
    pub async fn send_raw(&mut self, text: &str) -> Result<(), ClientError> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|error| ClientError::Transport(TransportError::WebSocket(Box::new(error))))
    }
}
