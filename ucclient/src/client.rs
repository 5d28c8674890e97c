//! A logged-in user session against its home UCServer: the REST routes of the client API and
//! the door to the WebSocket ([`Client::connect`]).
//!
//! Logging in follows `wrong_server` redirects (see [`crate::login`]), so callers only need the
//! address of *any* server of the cluster; [`Client::base_url`] tells which one took the login.

use crate::connection::Connection;
use crate::error::ClientError;
use crate::http::{Endpoint, HttpClient};
use crate::login::LoginRoute;
use reqwest::Method;
use shared::api::{
    ChatMessage, Contact, ConversationSummary, CreateConversation, JournalEntry, LoginRequest,
    LoginResponse, MarkRead, PutContact, ReadMarker, SendMessage, SetPresence, UserInfo,
};
use shared::call::ForwardingRules;
use shared::presence::{Capability, PresenceView};
use shared::{ConversationId, DeviceId, ServerId, UserId};

/// A user's session: its token, and the base URL of the server that issued it.
/// Cheap to clone (clones share the token and the connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    session: LoginResponse,
}

impl Client {
    /// Logs in at `base_url` (any server of the cluster), following `wrong_server` to the
    /// user's home server at most [`crate::MAX_LOGIN_HOPS`] times. Without `device` the server
    /// picks a device id (see [`Client::device`]).
    pub async fn login(
        base_url: &str,
        user: &UserId,
        password: &str,
        device: Option<DeviceId>,
    ) -> Result<Client, ClientError> {
        Self::login_with(&HttpClient::new()?, base_url, user, password, device).await
    }

    /// [`Client::login`] over a shared connection pool (for programs holding many sessions).
    pub async fn login_with(
        http: &HttpClient,
        base_url: &str,
        user: &UserId,
        password: &str,
        device: Option<DeviceId>,
    ) -> Result<Client, ClientError> {
        let request = LoginRequest {
            user: user.clone(),
            password: password.to_string(),
            device,
        };
        let mut route = LoginRoute::new(base_url)?;
        let mut waits = 0;
        loop {
            let endpoint = Endpoint::new(http.clone(), route.current())?;
            let answer: Result<LoginResponse, ClientError> = endpoint
                .send(Method::POST, &["api", "v1", "login"], Some(&request))
                .await;
            match answer {
                Ok(session) => {
                    let endpoint = endpoint.with_token(session.token.clone()).with_failover();
                    if let Some(servers) = endpoint.servers() {
                        servers.learn(&session.servers);
                    }
                    return Ok(Client { endpoint, session });
                }
                // A server taking the user over from another asks for a moment.
                Err(ClientError::Api(error))
                    if error.error == shared::api::ErrorCode::ServerUnavailable
                        && error.retry_after_ms.is_some()
                        && waits < MAX_LOGIN_WAITS =>
                {
                    waits += 1;
                    let pause = std::time::Duration::from_millis(
                        error.retry_after_ms.unwrap_or_default().min(2_000),
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(ClientError::Api(error)) => {
                    route.redirect(error)?;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// The base URL of the server this session talks to now: the one serving the user
    /// (it changes when that server dies or hands the user over; see `failover.rs`).
    pub fn base_url(&self) -> String {
        self.endpoint.base_url()
    }

    /// Goes to `url` from now on (a `reconnect` event named it).
    pub fn follow(&self, url: &str) {
        if let Some(servers) = self.endpoint.servers() {
            servers.follow(url);
        }
    }

    /// The server talked to now went silent (paused, cut off): knock at the next one first.
    pub fn server_silent(&self) {
        if let Some(servers) = self.endpoint.servers() {
            servers.rotate(&servers.current());
        }
    }

    /// Every server this session has heard of.
    pub fn known_servers(&self) -> Vec<String> {
        self.endpoint
            .servers()
            .map(crate::failover::Servers::known)
            .unwrap_or_default()
    }

    /// The bearer token of this session.
    pub fn token(&self) -> &str {
        &self.session.token
    }

    pub fn user(&self) -> &UserId {
        &self.session.user
    }

    /// The device this session is for (chosen at login, by the caller or by the server).
    pub fn device(&self) -> &DeviceId {
        &self.session.device
    }

    /// The server that issued the token.
    pub fn server(&self) -> &ServerId {
        &self.session.server
    }

    /// Everything the login answered.
    pub fn session(&self) -> &LoginResponse {
        &self.session
    }

    /// Ends the token (`POST /logout`). Clones of this client share the token, so they are
    /// logged out too; further calls answer `unauthorized`.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(Method::POST, &["api", "v1", "logout"], None)
            .await
    }

    /// `GET /me`.
    pub async fn me(&self) -> Result<UserInfo, ClientError> {
        self.endpoint.get(&["api", "v1", "me"], &[]).await
    }

    /// `PUT /presence`: one's own, or `request.user`'s as an admin or delegate.
    pub async fn set_presence(&self, request: SetPresence) -> Result<PresenceView, ClientError> {
        self.endpoint
            .send(Method::PUT, &["api", "v1", "presence"], Some(&request))
            .await
    }

    /// `GET /presence/{user}`: what this user may see of `user`.
    pub async fn get_presence(&self, user: &UserId) -> Result<PresenceView, ClientError> {
        self.endpoint
            .get(&["api", "v1", "presence", user.as_str()], &[])
            .await
    }

    /// `GET /contacts`.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        self.endpoint.get(&["api", "v1", "contacts"], &[]).await
    }

    /// `PUT /contacts/{user}`: adds `user` (or moves them) under contact-list group `group`
    /// (`""` for none).
    pub async fn put_contact(&self, user: &UserId, group: &str) -> Result<Contact, ClientError> {
        let body = PutContact {
            group: group.to_string(),
        };
        self.endpoint
            .send(
                Method::PUT,
                &["api", "v1", "contacts", user.as_str()],
                Some(&body),
            )
            .await
    }

    /// `DELETE /contacts/{user}`.
    pub async fn delete_contact(&self, user: &UserId) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(
                Method::DELETE,
                &["api", "v1", "contacts", user.as_str()],
                None,
            )
            .await
    }

    /// `GET /directory?q=TEXT`: at most 50 users.
    pub async fn directory(&self, query: &str) -> Result<Vec<UserInfo>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "directory"], &[("q", query.to_string())])
            .await
    }

    /// `PUT /delegates/{user}`: lets `user` set this user's presence and forwarding.
    pub async fn put_delegate(&self, user: &UserId) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(
                Method::PUT,
                &["api", "v1", "delegates", user.as_str()],
                None,
            )
            .await
    }

    /// `DELETE /delegates/{user}`.
    pub async fn delete_delegate(&self, user: &UserId) -> Result<(), ClientError> {
        self.endpoint
            .send_no_answer::<()>(
                Method::DELETE,
                &["api", "v1", "delegates", user.as_str()],
                None,
            )
            .await
    }

    /// `GET /users/{user}/forwarding`: `user`'s call forwarding rules (oneself, as their
    /// delegate, or as an admin). Rules are set over the WebSocket
    /// ([`Connection::forward_set`]).
    pub async fn forwarding(&self, user: &UserId) -> Result<ForwardingRules, ClientError> {
        self.endpoint
            .get(&["api", "v1", "users", user.as_str(), "forwarding"], &[])
            .await
    }

    /// `GET /conversations`.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, ClientError> {
        self.endpoint
            .get(&["api", "v1", "conversations"], &[])
            .await
    }

    /// `POST /conversations`: an ad-hoc group conversation, the caller included.
    pub async fn create_conversation(
        &self,
        request: CreateConversation,
    ) -> Result<ConversationSummary, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "conversations"],
                Some(&request),
            )
            .await
    }

    /// `POST /messages`.
    pub async fn send_message(&self, request: SendMessage) -> Result<ChatMessage, ClientError> {
        self.endpoint
            .send(Method::POST, &["api", "v1", "messages"], Some(&request))
            .await
    }

    /// [`Client::send_message`] to a user (1:1), with a fresh `client_id`.
    pub async fn send_to_user(&self, to: &UserId, body: &str) -> Result<ChatMessage, ClientError> {
        self.send_message(SendMessage {
            to: Some(to.clone()),
            conversation: None,
            body: body.to_string(),
            client_id: Some(new_client_id()),
        })
        .await
    }

    /// [`Client::send_message`] to a conversation, with a fresh `client_id`.
    pub async fn send_to_conversation(
        &self,
        conversation: &ConversationId,
        body: &str,
    ) -> Result<ChatMessage, ClientError> {
        self.send_message(SendMessage {
            to: None,
            conversation: Some(conversation.clone()),
            body: body.to_string(),
            client_id: Some(new_client_id()),
        })
        .await
    }

    /// `GET /conversations/{id}/messages`: ascending by `seq`; without `before`/`after` the
    /// latest page. `limit` defaults to 50 on the server, at most 500.
    pub async fn history(
        &self,
        conversation: &ConversationId,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        let mut query = Vec::new();
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.endpoint
            .get(
                &[
                    "api",
                    "v1",
                    "conversations",
                    conversation.as_str(),
                    "messages",
                ],
                &query,
            )
            .await
    }

    /// `POST /conversations/{id}/read`: up to `seq`, or the latest message when `None`.
    pub async fn mark_read(
        &self,
        conversation: &ConversationId,
        seq: Option<u64>,
    ) -> Result<ReadMarker, ClientError> {
        self.endpoint
            .send(
                Method::POST,
                &["api", "v1", "conversations", conversation.as_str(), "read"],
                Some(&MarkRead { seq }),
            )
            .await
    }

    /// `GET /journal`: newest first.
    pub async fn journal(&self, limit: Option<u32>) -> Result<Vec<JournalEntry>, ClientError> {
        let query: Vec<(&str, String)> = limit
            .map(|limit| ("limit", limit.to_string()))
            .into_iter()
            .collect();
        self.endpoint.get(&["api", "v1", "journal"], &query).await
    }

    /// Opens the WebSocket and waits for its `hello` (see [`Connection`]) at the server that
    /// serves the user, finding it as `failover.rs` says when the last one cannot be reached
    /// or sends the client on. Without `device` the session's own device
    /// ([`Client::device`]) is used.
    pub async fn connect(
        &self,
        device: Option<&DeviceId>,
        capabilities: &[Capability],
    ) -> Result<Connection, ClientError> {
        let device = device.unwrap_or(&self.session.device);
        let open = |base: String| async move {
            let url = websocket_url(&base, Some(device), capabilities)?;
            Connection::open_within(&url, Some(&self.session.token), FAILOVER_CONNECT_TIMEOUT).await
        };
        let connection = match self.endpoint.servers() {
            Some(servers) => crate::failover::with_failover(servers, true, open).await?,
            None => open(self.base_url()).await?,
        };
        if let Some(servers) = self.endpoint.servers() {
            servers.learn(&connection.hello().servers);
        }
        Ok(connection)
    }
}

/// Most times a login waits out `server_unavailable` with `retry_after_ms`.
const MAX_LOGIN_WAITS: u32 = 20;

/// How long opening the socket and receiving `hello` may take before the next server is
/// tried: a paused server accepts the TCP connection and then says nothing.
const FAILOVER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// The WebSocket URL of a server: `ws(s)://…/api/v1/ws?device=…&caps=…`.
pub fn websocket_url(
    base_url: &str,
    device: Option<&DeviceId>,
    capabilities: &[Capability],
) -> Result<String, ClientError> {
    let mut url = crate::http::build_url(
        &crate::http::normalize_base_url(base_url)?,
        &["api", "v1", "ws"],
    )?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).map_err(|()| {
        ClientError::protocol(format!("cannot make a WebSocket URL of {base_url}"))
    })?;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(device) = device {
        pairs.push(("device", device.to_string()));
    }
    if !capabilities.is_empty() {
        pairs.push(("caps", capabilities_text(capabilities)));
    }
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    Ok(url.to_string())
}

/// Capabilities as the `caps` query parameter spells them: `chat,audio`.
pub fn capabilities_text(capabilities: &[Capability]) -> String {
    capabilities
        .iter()
        .map(|capability| match capability {
            Capability::Chat => "chat",
            Capability::Audio => "audio",
            Capability::Video => "video",
            Capability::ScreenShare => "screen_share",
            Capability::Softphone => "softphone",
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A fresh idempotency id for [`SendMessage::client_id`].
pub fn new_client_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::parse_capabilities;

    #[test]
    fn websocket_urls() {
        let url = websocket_url(
            "http://127.0.0.1:8080/",
            Some(&DeviceId::from("desk")),
            &[Capability::Chat, Capability::Audio],
        )
        .unwrap();
        assert_eq!(
            url,
            "ws://127.0.0.1:8080/api/v1/ws?device=desk&caps=chat%2Caudio"
        );
        let url = websocket_url("https://uc.example/sb", None, &[]).unwrap();
        assert_eq!(url, "wss://uc.example/sb/api/v1/ws");
    }

    #[test]
    fn capabilities_text_round_trips_with_the_shared_parser() {
        let all = [
            Capability::Chat,
            Capability::Audio,
            Capability::Video,
            Capability::ScreenShare,
            Capability::Softphone,
        ];
        assert_eq!(
            parse_capabilities(&capabilities_text(&all)).unwrap(),
            all.to_vec()
        );
        for capability in all {
            let serde_name = serde_json::to_value(capability).unwrap();
            assert_eq!(
                serde_name.as_str().unwrap(),
                capabilities_text(&[capability])
            );
        }
    }
}
