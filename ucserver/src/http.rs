//! The HTTP surface: client API, admin API and operations endpoints (see `docs/api.md`).
//! Handlers stay thin: parse, authorise, call into [`Server`], answer.

use crate::auth::{self, TokenInfo};
use crate::core::license;
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::{
    AuditRecord, ConversationRecord, HistoryPage, MediaServerRecord, UserRecord, UserUpdate,
};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use shared::api::*;
use shared::bus::BusBody;
use shared::presence::{PresenceView, Visibility};
use shared::{ConversationId, DeviceId, GroupId, MediaServerId, UserId, now_ms, validate_name};
use std::net::SocketAddr;
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
        let from_query = (path == WS_PATH)
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
        let info = server.token(&token).await.ok_or_else(|| {
            AppError::new(
                ErrorCode::Unauthorized,
                "the session token is unknown or has ended; sign in again",
            )
        })?;
        Ok(Caller(info, token))
    }
}

/// The one route that takes its token from the query string.
const WS_PATH: &str = "/api/v1/ws";

/// Whether the request carries an administrator's bearer token (never an error).
async fn is_admin_request(server: &Server, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    server.token(token).await.is_some_and(|info| info.admin)
}

/// A caller who must be an administrator.
pub struct Admin(pub TokenInfo);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(info, _) = Caller::from_request_parts(parts, server).await?;
        if !info.admin {
            return Err(AppError::forbidden("this needs an administrator"));
        }
        Ok(Admin(info))
    }
}

/// A caller with a client session (not an admin-console token).
pub struct Client(pub TokenInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        server: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(info, _) = Caller::from_request_parts(parts, server).await?;
        if info.console_only {
            return Err(AppError::forbidden(
                "an admin-console session cannot use the client API; sign in with /api/v1/login",
            ));
        }
        Ok(Client(info))
    }
}

pub fn router(server: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(session_login))
        .route("/logout", post(session_logout))
        .route("/me", get(me_get))
        .route("/ws", get(crate::ws::ws_upgrade))
        .route("/presence", put(presence_put))
        .route("/presence/{user}", get(presence_get))
        .route("/contacts", get(contacts_list))
        .route(
            "/contacts/{user}",
            put(contacts_put).delete(contacts_delete),
        )
        .route("/directory", get(directory_search))
        .route(
            "/delegates/{user}",
            put(delegates_put).delete(delegates_delete),
        )
        .route(
            "/conversations",
            get(conversations_list).post(conversations_create),
        )
        .route("/conversations/{id}/messages", get(messages_list))
        .route(
            "/conversations/{id}/read",
            post(conversations_read).get(conversations_read_markers),
        )
        .route("/messages", post(messages_send))
        .route("/journal", get(journal_list))
        .route("/users/{user}/forwarding", get(forwarding_get))
        .route("/admin/login", post(admin_login))
        .route(
            "/admin/users",
            get(admin_users_list).post(admin_users_create),
        )
        .route(
            "/admin/users/{id}",
            patch(admin_users_update).delete(admin_users_delete),
        )
        .route(
            "/admin/groups",
            get(admin_groups_list).post(admin_groups_create),
        )
        .route("/admin/groups/{id}/members", post(admin_members_add))
        .route(
            "/admin/groups/{id}/members/{user}",
            delete(admin_members_remove),
        )
        .route("/admin/servers", get(admin_servers_list))
        .route("/admin/licenses", get(admin_licenses_list))
        .route("/admin/licenses/{kind}", put(admin_licenses_set))
        .route("/admin/media", get(admin_media_list).post(admin_media_add))
        .route("/admin/media/{id}", delete(admin_media_remove))
        .route("/{*rest}", axum::routing::any(api_not_found));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Everything else is the web client, served from the binary itself.
        .merge(ucweb::client_router())
        .layer(axum::extract::DefaultBodyLimit::max(
            shared::limits::MAX_BODY_BYTES,
        ))
        .with_state(server)
}

async fn api_not_found() -> AppError {
    AppError::not_found("no such API route; see docs/api.md")
}

// ---------------------------------------------------------------------------- operations

async fn healthz(State(server): State<AppState>) -> Json<Health> {
    Json(Health {
        server: server.id.clone(),
        ok: true,
        checks: Vec::new(),
    })
}

/// Readiness: ok or not per backend for anyone; the error text only for an administrator.
async fn readyz(State(server): State<AppState>, headers: HeaderMap) -> Response {
    let sql = server.store.ping().await;
    let bus = server.cluster.ping().await;
    let detailed = is_admin_request(&server, &headers).await;
    let checks = vec![
        HealthCheck {
            name: "sql".into(),
            ok: sql.is_ok(),
            detail: sql.err().filter(|_| detailed).map(|e| e.to_string()),
        },
        HealthCheck {
            name: format!("bus ({})", server.cluster.kind()),
            ok: bus.is_ok(),
            detail: bus.err().filter(|_| detailed).map(|e| e.to_string()),
        },
    ];
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            server: server.id.clone(),
            ok,
            checks,
        }),
    )
        .into_response()
}

async fn metrics(State(server): State<AppState>) -> Response {
    let licenses = server.license_usage().await.unwrap_or_default();
    let text = server.metrics.render(server.id.as_str(), &licenses);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

// ---------------------------------------------------------------------------- sessions

async fn session_login(
    State(server): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    let user = crate::login_guard::check_password(&server, &request, peer.ip(), &headers).await?;
    if user.home_server != server.id {
        let url = server_url(&server, &user.home_server).await;
        let mut error = AppError::new(
            ErrorCode::WrongServer,
            format!(
                "'{}' is served by server '{}'; sign in there",
                user.id, user.home_server
            ),
        );
        error.0.home_server = Some(user.home_server.clone());
        error.0.home_url = url;
        return Err(error);
    }
    let device = match request.device {
        Some(device) => {
            validate_name(device.as_str())
                .map_err(|e| AppError::bad_request(format!("device: {e}")))?;
            device
        }
        None => DeviceId::new(format!("d-{}", auth::random_hex(4))),
    };
    server
        .acquire_license(license::SEAT, user.id.as_str())
        .await?;
    let issued = server
        .issue_token(TokenInfo {
            user: user.id.clone(),
            device: device.clone(),
            admin: user.admin,
            console_only: false,
            issued_ms: now_ms(),
        })
        .await;
    let token = match issued {
        Ok(token) => token,
        Err(error) => {
            // The session could not be stored (SQL down): the seat taken for it goes back.
            server.release_seat_if_unused(&user.id).await;
            return Err(error);
        }
    };
    server
        .metrics
        .logins
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(LoginResponse {
        token,
        user: user.id,
        device,
        display_name: user.display_name,
        server: server.id.clone(),
        admin: user.admin,
    }))
}

/// The public URL of a server: its heartbeat first, else what it registered in SQL.
async fn server_url(server: &Server, id: &shared::ServerId) -> Option<String> {
    if let Some(seen) = server.bus("list servers", server.cluster.servers()).await
        && let Some(found) = seen.into_iter().find(|s| &s.heartbeat.id == id)
    {
        return Some(found.heartbeat.url);
    }
    let registered = server.sql(server.store.list_servers()).await.ok()?;
    registered.into_iter().find(|s| &s.id == id).map(|s| s.url)
}

async fn session_logout(State(server): State<AppState>, Caller(_, token): Caller) -> StatusCode {
    server.end_token(&token).await;
    StatusCode::NO_CONTENT
}

async fn me_get(
    State(server): State<AppState>,
    Caller(info, _): Caller,
) -> AppResult<Json<UserInfo>> {
    let user = server
        .sql(server.store.get_user(&info.user))
        .await?
        .ok_or_else(|| AppError::not_found("your user no longer exists"))?;
    Ok(Json(UserInfo {
        id: user.id,
        display_name: user.display_name,
        home_server: user.home_server,
        admin: user.admin,
        online: server.is_local_online(&info.user),
    }))
}

// ---------------------------------------------------------------------------- presence

/// Whether `actor` may set `user`'s presence or forwarding: self, an admin, or a delegate.
pub async fn may_act_for(server: &Server, actor: &TokenInfo, user: &UserId) -> AppResult<()> {
    if &actor.user == user || actor.admin {
        return Ok(());
    }
    if server
        .sql(server.store.is_delegate(user, &actor.user))
        .await?
    {
        return Ok(());
    }
    Err(AppError::forbidden(format!(
        "you may not act for '{user}': ask them to make you a delegate"
    )))
}

/// Sets presence for the caller or, with `user`, for someone else (checked), wherever they live.
pub async fn apply_presence(
    server: &Server,
    actor: &TokenInfo,
    request: SetPresence,
) -> AppResult<PresenceView> {
    if let Some(note) = &request.note
        && note.len() > shared::limits::MAX_NOTE_BYTES
    {
        return Err(AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "a note may have at most {} bytes",
                shared::limits::MAX_NOTE_BYTES
            ),
        ));
    }
    if request.availability == Some(shared::presence::Availability::Offline) {
        return Err(AppError::bad_request(
            "'offline' is not something to set: sign out instead, or choose dnd",
        ));
    }
    let target = request.user.clone().unwrap_or_else(|| actor.user.clone());
    may_act_for(server, actor, &target).await?;
    let home = server.home_of(&target).await?;
    if home == server.id {
        server
            .set_presence(&target, request.availability, request.note)
            .await;
    } else {
        let message = shared::bus::BusMessage::new(
            server.id.clone(),
            BusBody::SetPresence {
                user: target.clone(),
                by: actor.user.clone(),
                availability: request.availability,
                note: request.note,
            },
        );
        server.cluster.publish(&home, &message).await.map_err(|_| {
            AppError::new(
                ErrorCode::ServerUnavailable,
                format!("the home server of '{target}' cannot be reached now"),
            )
        })?;
    }
    let snapshot = server.snapshot_of(&target).await;
    Ok(PresenceView::of(&snapshot, Visibility::Full))
}

async fn presence_put(
    State(server): State<AppState>,
    Client(info): Client,
    Body(request): Body<SetPresence>,
) -> AppResult<Json<PresenceView>> {
    Ok(Json(apply_presence(&server, &info, request).await?))
}

async fn presence_get(
    State(server): State<AppState>,
    Caller(info, _): Caller,
    Path(user): Path<UserId>,
) -> AppResult<Json<PresenceView>> {
    server.home_of(&user).await?;
    let visibility = server.visibility(&info, &user).await?;
    let snapshot = server.snapshot_of(&user).await;
    Ok(Json(PresenceView::of(&snapshot, visibility)))
}

/// A user's call forwarding: for the user, their delegates and admins.
async fn forwarding_get(
    State(server): State<AppState>,
    Caller(info, _): Caller,
    Path(user): Path<UserId>,
) -> AppResult<Json<shared::call::ForwardingRules>> {
    if info.user != user
        && !info.admin
        && !server
            .sql(server.store.is_delegate(&user, &info.user))
            .await?
    {
        return Err(AppError::forbidden(format!(
            "you may not read the forwarding of '{user}'"
        )));
    }
    if server.sql(server.store.get_user(&user)).await?.is_none() {
        return Err(AppError::not_found(format!("no user '{user}'")));
    }
    Ok(Json(server.sql(server.store.forwarding(&user)).await?))
}

// ---------------------------------------------------------------------------- contacts

async fn contacts_list(
    State(server): State<AppState>,
    Client(info): Client,
) -> AppResult<Json<Vec<Contact>>> {
    let records = server.sql(server.store.contacts(&info.user)).await?;
    let users: Vec<UserId> = records.iter().map(|r| r.contact.clone()).collect();
    let snapshots = server
        .bus("get presence", server.cluster.get_presence(&users))
        .await
        .unwrap_or_default();
    let mut contacts = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        let snapshot =
            snapshots.get(index).cloned().flatten().unwrap_or_else(|| {
                shared::presence::PresenceSnapshot::offline(record.contact.clone())
            });
        contacts.push(Contact {
            user: record.contact,
            display_name: record.display_name,
            group: record.group,
            presence: PresenceView::of(&snapshot, Visibility::Full),
        });
    }
    Ok(Json(contacts))
}

async fn contacts_put(
    State(server): State<AppState>,
    Client(info): Client,
    Path(user): Path<UserId>,
    MaybeBody(body): MaybeBody<PutContact>,
) -> AppResult<Json<Contact>> {
    let group = body.map(|b| b.group).unwrap_or_default();
    if group.len() > 64 {
        return Err(AppError::bad_request(
            "a contact group name may have at most 64 bytes",
        ));
    }
    if user == info.user {
        return Err(AppError::bad_request(
            "you cannot add yourself as a contact",
        ));
    }
    let record = server
        .sql(server.store.get_user(&user))
        .await?
        .ok_or_else(|| AppError::not_found(format!("there is no user '{user}'")))?;
    server
        .sql(server.store.put_contact(&info.user, &user, &group))
        .await?;
    relations_changed(&server, vec![info.user.clone(), user.clone()]).await;
    let snapshot = server.snapshot_of(&user).await;
    Ok(Json(Contact {
        user,
        display_name: record.display_name,
        group,
        presence: PresenceView::of(&snapshot, Visibility::Full),
    }))
}

async fn contacts_delete(
    State(server): State<AppState>,
    Client(info): Client,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    server
        .sql(server.store.delete_contact(&info.user, &user))
        .await?;
    relations_changed(&server, vec![info.user.clone(), user]).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops cached relations here and on every peer.
async fn relations_changed(server: &Server, users: Vec<UserId>) {
    server.forget_relations(&users);
    server.broadcast(BusBody::RelationsChanged { users }).await;
}

#[derive(Deserialize)]
struct DirectoryQuery {
    #[serde(default)]
    q: String,
}

async fn directory_search(
    State(server): State<AppState>,
    Caller(_, _): Caller,
    Query(query): Query<DirectoryQuery>,
) -> AppResult<Json<Vec<UserInfo>>> {
    if query.q.len() > 64 {
        return Err(AppError::bad_request(
            "the search text may have at most 64 bytes",
        ));
    }
    let users = server.sql(server.store.search_users(&query.q, 50)).await?;
    Ok(Json(user_infos(&server, users).await))
}

async fn user_infos(server: &Server, users: Vec<UserRecord>) -> Vec<UserInfo> {
    let ids: Vec<UserId> = users.iter().map(|u| u.id.clone()).collect();
    let snapshots = server
        .bus("get presence", server.cluster.get_presence(&ids))
        .await
        .unwrap_or_default();
    users
        .into_iter()
        .enumerate()
        .map(|(index, user)| {
            let online = snapshots
                .get(index)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.availability != shared::presence::Availability::Offline);
            UserInfo {
                id: user.id,
                display_name: user.display_name,
                home_server: user.home_server,
                admin: user.admin,
                online,
            }
        })
        .collect()
}

async fn delegates_put(
    State(server): State<AppState>,
    Client(info): Client,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    server.home_of(&user).await?;
    server
        .sql(server.store.put_delegate(&info.user, &user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delegates_delete(
    State(server): State<AppState>,
    Client(info): Client,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    server
        .sql(server.store.delete_delegate(&info.user, &user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------- chat

async fn conversations_list(
    State(server): State<AppState>,
    Client(info): Client,
) -> AppResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(
        server
            .sql(server.store.conversations_of(&info.user))
            .await?,
    ))
}

async fn conversations_create(
    State(server): State<AppState>,
    Client(info): Client,
    Body(request): Body<CreateConversation>,
) -> AppResult<Json<ConversationSummary>> {
    use crate::rate_limit::Action;
    server
        .rate_limits
        .check(Action::CreateConversation, &info.user, &info.device)?;
    let name = request.name.trim().to_string();
    if name.is_empty() || name.len() > 128 {
        return Err(AppError::bad_request(
            "a conversation needs a name of 1 to 128 bytes",
        ));
    }
    if request.members.len() > 500 {
        return Err(AppError::bad_request(
            "a conversation may have at most 500 members",
        ));
    }
    let mut members = request.members;
    members.push(info.user.clone());
    members.sort();
    members.dedup();
    for member in &members {
        server.home_of(member).await?;
    }
    let id = ConversationId::new(format!("c:{}", uuid::Uuid::now_v7()));
    let record = ConversationRecord {
        id: id.clone(),
        kind: ConversationKind::Group,
        name,
        created_by: info.user.clone(),
        created_ms: now_ms(),
        last_seq: 0,
        members,
    };
    server
        .sql(server.store.ensure_conversation(&record))
        .await?;
    server.announce_conversation(&id).await;
    let summaries = server
        .sql(server.store.conversations_of(&info.user))
        .await?;
    summaries
        .into_iter()
        .find(|s| s.id == id)
        .map(Json)
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::Internal,
                "the conversation was created but cannot be read back",
            )
        })
}

async fn messages_send(
    State(server): State<AppState>,
    Client(info): Client,
    Body(request): Body<SendMessage>,
) -> AppResult<Json<ChatMessage>> {
    server
        .rate_limits
        .check(crate::rate_limit::Action::Send, &info.user, &info.device)?;
    let conversation = server
        .conversation_for(
            &info.user,
            request.to.as_ref(),
            request.conversation.as_ref(),
        )
        .await?;
    Ok(Json(
        server
            .send_message(&info.user, conversation, request.body, request.client_id)
            .await?,
    ))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

async fn messages_list(
    State(server): State<AppState>,
    Client(info): Client,
    Path(id): Path<ConversationId>,
    Query(query): Query<HistoryQuery>,
) -> AppResult<Json<Vec<ChatMessage>>> {
    let members = server.members_of(&id).await?;
    if !members.contains(&info.user) {
        return Err(AppError::new(
            ErrorCode::NotAMember,
            format!("you are not a member of conversation '{id}'"),
        ));
    }
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > shared::limits::MAX_HISTORY_PAGE {
        return Err(AppError::bad_request(format!(
            "limit must be 1 to {}",
            shared::limits::MAX_HISTORY_PAGE
        )));
    }
    let page = match (query.before, query.after) {
        (Some(before), None) => HistoryPage::Before(before),
        (None, Some(after)) => HistoryPage::After(after),
        (None, None) => HistoryPage::Latest,
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request("give 'before' or 'after', not both"));
        }
    };
    Ok(Json(
        server.sql(server.store.messages(&id, page, limit)).await?,
    ))
}

async fn conversations_read(
    State(server): State<AppState>,
    Client(info): Client,
    Path(id): Path<ConversationId>,
    MaybeBody(body): MaybeBody<MarkRead>,
) -> AppResult<Json<ReadMarker>> {
    let seq = body.and_then(|b| b.seq);
    Ok(Json(server.mark_read(&info.user, &id, seq).await?))
}

/// Every member's read marker, so a client shows who read what after a reload.
async fn conversations_read_markers(
    State(server): State<AppState>,
    Client(info): Client,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<Vec<ReadMarker>>> {
    let members = server.members_of(&id).await?;
    if !members.contains(&info.user) {
        return Err(AppError::new(
            ErrorCode::NotAMember,
            format!("you are not a member of conversation '{id}'"),
        ));
    }
    let markers = server.sql(server.store.read_markers(&id)).await?;
    Ok(Json(
        markers
            .into_iter()
            .map(|(user, seq)| ReadMarker {
                conversation: id.clone(),
                user,
                seq,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct JournalQuery {
    limit: Option<u32>,
}

async fn journal_list(
    State(server): State<AppState>,
    Client(info): Client,
    Query(query): Query<JournalQuery>,
) -> AppResult<Json<Vec<JournalEntry>>> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        server.sql(server.store.journal(&info.user, limit)).await?,
    ))
}

// ---------------------------------------------------------------------------- admin

async fn admin_login(
    State(server): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    let user = crate::login_guard::check_password(&server, &request, peer.ip(), &headers).await?;
    if !user.admin {
        return Err(AppError::forbidden(format!(
            "'{}' is not an administrator",
            user.id
        )));
    }
    let device = DeviceId::new("console");
    let token = server
        .issue_token(TokenInfo {
            user: user.id.clone(),
            device: device.clone(),
            admin: true,
            console_only: true,
            issued_ms: now_ms(),
        })
        .await?;
    Ok(Json(LoginResponse {
        token,
        user: user.id,
        device,
        display_name: user.display_name,
        server: server.id.clone(),
        admin: true,
    }))
}

async fn audit(server: &Server, actor: &TokenInfo, action: &str, detail: String) {
    let record = AuditRecord {
        at_ms: now_ms(),
        actor: actor.user.clone(),
        action: action.to_string(),
        detail,
    };
    if let Err(error) = server.store.audit(&record).await {
        tracing::warn!(%error, "could not write the audit log");
    }
}

async fn admin_users_list(
    State(server): State<AppState>,
    Admin(_): Admin,
) -> AppResult<Json<Vec<UserInfo>>> {
    let users = server.sql(server.store.list_users()).await?;
    Ok(Json(user_infos(&server, users).await))
}

fn check_display_name(name: &str) -> AppResult<()> {
    if name.len() > shared::limits::MAX_DISPLAY_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(AppError::bad_request(format!(
            "a display name may have at most {} bytes and no control characters",
            shared::limits::MAX_DISPLAY_NAME_BYTES
        )));
    }
    Ok(())
}

fn check_password_rules(password: &str) -> AppResult<()> {
    if password.len() < 8 || password.len() > 1024 {
        return Err(AppError::bad_request("a password needs 8 to 1024 bytes"));
    }
    Ok(())
}

async fn admin_users_create(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Body(request): Body<CreateUser>,
) -> AppResult<Json<UserInfo>> {
    validate_name(request.id.as_str()).map_err(|e| AppError::bad_request(e.to_string()))?;
    check_password_rules(&request.password)?;
    let display_name = request
        .display_name
        .unwrap_or_else(|| request.id.to_string());
    check_display_name(&display_name)?;
    let home_server = request.home_server.unwrap_or_else(|| server.id.clone());
    validate_name(home_server.as_str())
        .map_err(|e| AppError::bad_request(format!("home server: {e}")))?;
    let password_hash = server.passwords.hash(request.password).await?;
    let record = UserRecord {
        id: request.id.clone(),
        password_hash,
        display_name: display_name.clone(),
        home_server: home_server.clone(),
        admin: request.admin,
        created_ms: now_ms(),
    };
    server.sql(server.store.create_user(&record)).await?;
    audit(
        &server,
        &actor,
        "user.create",
        format!("{} home={home_server}", request.id),
    )
    .await;
    relations_changed(&server, vec![request.id.clone()]).await;
    Ok(Json(UserInfo {
        id: request.id,
        display_name,
        home_server,
        admin: request.admin,
        online: false,
    }))
}

async fn admin_users_update(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<UserId>,
    Body(request): Body<UpdateUser>,
) -> AppResult<Json<UserInfo>> {
    let password_hash = match request.password {
        Some(password) => {
            check_password_rules(&password)?;
            Some(server.passwords.hash(password).await?)
        }
        None => None,
    };
    if let Some(name) = &request.display_name {
        check_display_name(name)?;
    }
    if let Some(home) = &request.home_server {
        validate_name(home.as_str())
            .map_err(|e| AppError::bad_request(format!("home server: {e}")))?;
    }
    let before = server
        .sql(server.store.get_user(&id))
        .await?
        .ok_or_else(|| AppError::not_found(format!("there is no user '{id}'")))?;
    let update = UserUpdate {
        password_hash,
        display_name: request.display_name,
        home_server: request.home_server,
    };
    let user = server.sql(server.store.update_user(&id, &update)).await?;
    audit(&server, &actor, "user.update", format!("{id}")).await;
    relations_changed(&server, vec![id.clone()]).await;
    if before.home_server != user.home_server {
        // Sessions at the old home end; the user signs in at the new one.
        server
            .broadcast(BusBody::KickUser {
                user: id.clone(),
                reason: format!("moved to server '{}'", user.home_server),
            })
            .await;
    }
    let info = user_infos(&server, vec![user]).await.pop();
    info.map(Json).ok_or_else(|| {
        AppError::new(
            ErrorCode::Internal,
            "the user was updated but cannot be read back",
        )
    })
}

async fn admin_users_delete(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<UserId>,
) -> AppResult<StatusCode> {
    if id == actor.user {
        return Err(AppError::bad_request("you cannot delete yourself"));
    }
    server.sql(server.store.delete_user(&id)).await?;
    audit(&server, &actor, "user.delete", id.to_string()).await;
    relations_changed(&server, vec![id.clone()]).await;
    server
        .broadcast(BusBody::KickUser {
            user: id,
            reason: "user deleted".into(),
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn group_info(record: crate::store::GroupRecord) -> GroupInfo {
    GroupInfo {
        id: record.id,
        display_name: record.display_name,
        members: record.members,
    }
}

async fn admin_groups_list(
    State(server): State<AppState>,
    Admin(_): Admin,
) -> AppResult<Json<Vec<GroupInfo>>> {
    Ok(Json(
        server
            .sql(server.store.list_groups())
            .await?
            .into_iter()
            .map(group_info)
            .collect(),
    ))
}

async fn admin_groups_create(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Body(request): Body<CreateGroup>,
) -> AppResult<Json<GroupInfo>> {
    validate_name(request.id.as_str()).map_err(|e| AppError::bad_request(e.to_string()))?;
    let display_name = request
        .display_name
        .unwrap_or_else(|| request.id.to_string());
    check_display_name(&display_name)?;
    server
        .sql(
            server
                .store
                .create_group(&request.id, &display_name, &actor.user, now_ms()),
        )
        .await?;
    audit(&server, &actor, "group.create", request.id.to_string()).await;
    Ok(Json(GroupInfo {
        id: request.id,
        display_name,
        members: Vec::new(),
    }))
}

async fn load_group(server: &Server, id: &GroupId) -> AppResult<crate::store::GroupRecord> {
    server
        .sql(server.store.get_group(id))
        .await?
        .ok_or_else(|| AppError::not_found(format!("there is no group '{id}'")))
}

async fn admin_members_add(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<GroupId>,
    Body(request): Body<AddMember>,
) -> AppResult<Json<GroupInfo>> {
    load_group(&server, &id).await?;
    server.home_of(&request.user).await?;
    server
        .sql(server.store.add_group_member(&id, &request.user))
        .await?;
    audit(
        &server,
        &actor,
        "group.member.add",
        format!("{id} {}", request.user),
    )
    .await;
    let group = load_group(&server, &id).await?;
    relations_changed(&server, group.members.clone()).await;
    server
        .announce_conversation(&ConversationId::group(&id))
        .await;
    Ok(Json(group_info(group)))
}

async fn admin_members_remove(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path((id, user)): Path<(GroupId, UserId)>,
) -> AppResult<Json<GroupInfo>> {
    let before = load_group(&server, &id).await?;
    server
        .sql(server.store.remove_group_member(&id, &user))
        .await?;
    audit(
        &server,
        &actor,
        "group.member.remove",
        format!("{id} {user}"),
    )
    .await;
    relations_changed(&server, before.members).await;
    server.forget_conversation(&ConversationId::group(&id));
    Ok(Json(group_info(load_group(&server, &id).await?)))
}

async fn admin_servers_list(
    State(server): State<AppState>,
    Admin(_): Admin,
) -> AppResult<Json<ServerList>> {
    let registered = server.sql(server.store.list_servers()).await?;
    let seen = server
        .bus("list servers", server.cluster.servers())
        .await
        .unwrap_or_default();
    let dead_after = server.config.dead_after_ms as i64;
    let mut servers: Vec<ServerInfo> = registered
        .into_iter()
        .map(|record| {
            let live = seen.iter().find(|s| s.heartbeat.id == record.id);
            ServerInfo {
                id: record.id.clone(),
                url: live.map(|s| s.heartbeat.url.clone()).unwrap_or(record.url),
                alive: live.is_some_and(|s| s.age_ms <= dead_after),
                sessions: live.map_or(0, |s| s.heartbeat.sessions),
                devices: live.map_or(0, |s| s.heartbeat.devices),
                last_seen_ms: live.map_or(0, |s| s.last_seen_ms),
            }
        })
        .collect();
    for live in &seen {
        if !servers.iter().any(|s| s.id == live.heartbeat.id) {
            servers.push(ServerInfo {
                id: live.heartbeat.id.clone(),
                url: live.heartbeat.url.clone(),
                alive: live.age_ms <= dead_after,
                sessions: live.heartbeat.sessions,
                devices: live.heartbeat.devices,
                last_seen_ms: live.last_seen_ms,
            });
        }
    }
    servers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(ServerList {
        servers,
        media: media_infos(&server).await?,
    }))
}

async fn media_infos(server: &Server) -> AppResult<Vec<MediaServerInfo>> {
    server.media.infos(server).await
}

async fn admin_licenses_list(
    State(server): State<AppState>,
    Admin(_): Admin,
) -> AppResult<Json<Vec<LicenseInfo>>> {
    let usage = server.license_usage().await?;
    Ok(Json(
        usage
            .into_iter()
            .map(|(kind, capacity, in_use)| LicenseInfo {
                kind,
                capacity,
                in_use,
            })
            .collect(),
    ))
}

async fn admin_licenses_set(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path(kind): Path<String>,
    Body(request): Body<SetLicense>,
) -> AppResult<Json<LicenseInfo>> {
    validate_name(&kind).map_err(|e| AppError::bad_request(format!("license kind: {e}")))?;
    server
        .sql(server.store.set_license(&kind, request.capacity))
        .await?;
    audit(
        &server,
        &actor,
        "license.set",
        format!("{kind}={}", request.capacity),
    )
    .await;
    server.forget_licenses();
    server.broadcast(BusBody::LicensesChanged).await;
    let in_use = server.cluster.lease_count(&kind).await?;
    Ok(Json(LicenseInfo {
        kind,
        capacity: Some(request.capacity),
        in_use,
    }))
}

async fn admin_media_list(
    State(server): State<AppState>,
    Admin(_): Admin,
) -> AppResult<Json<Vec<MediaServerInfo>>> {
    Ok(Json(media_infos(&server).await?))
}

async fn admin_media_add(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Body(request): Body<AddMediaServer>,
) -> AppResult<Json<MediaServerInfo>> {
    validate_name(request.id.as_str()).map_err(|e| AppError::bad_request(e.to_string()))?;
    if !(request.control_url.starts_with("http://") || request.control_url.starts_with("https://"))
        || request.control_url.len() > 512
    {
        return Err(AppError::bad_request(
            "control_url must be an http:// or https:// URL",
        ));
    }
    let record = MediaServerRecord {
        id: request.id.clone(),
        control_url: request.control_url.clone(),
        added_ms: now_ms(),
    };
    server.sql(server.store.add_media_server(&record)).await?;
    audit(
        &server,
        &actor,
        "media.add",
        format!("{} {}", request.id, request.control_url),
    )
    .await;
    media_infos(&server)
        .await?
        .into_iter()
        .find(|m| m.id == request.id)
        .map(Json)
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::Internal,
                "the MediaServer was added but cannot be read back",
            )
        })
}

async fn admin_media_remove(
    State(server): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<MediaServerId>,
) -> AppResult<StatusCode> {
    server.sql(server.store.remove_media_server(&id)).await?;
    audit(&server, &actor, "media.remove", id.to_string()).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as HttpBody;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    async fn app() -> Router {
        let store = crate::store::SqlStore::connect("sqlite::memory:")
            .await
            .unwrap();
        let cluster = crate::cluster::LocalCluster::new(crate::cluster::LocalHub::new());
        let (server, _writer) = Server::new(
            crate::config::Config::default(),
            "http://localhost:0".into(),
            Arc::new(store),
            Arc::new(cluster),
        );
        router(server)
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(HttpRequest::get(path).body(HttpBody::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_web_client_is_served_beside_the_api() {
        let (status, body) = get(app().await, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"),
            "{body}"
        );
        assert_eq!(get(app().await, "/app.js").await.0, StatusCode::OK);
        let (status, body) = get(app().await, "/api/v1/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"not_found\""), "{body}");
        let (status, body) = get(app().await, "/api/v1/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
}
