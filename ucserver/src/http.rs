//! The HTTP surface: client API, admin API and operations endpoints (see `docs/api.md`).
//! Handlers are codecs and routing only: decode the request, call the application layer
//! ([`Session`], [`AdminSession`]), encode the answer.

use crate::app::{login, operations};
use crate::error::{AppError, AppResult};
use crate::extract::{
    Admin, AnySession, AppState, Body, Caller, ClientAddress, ClientSession, IfMatch, MaybeBody,
};
use crate::store::HistoryPage;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::api::*;
use shared::presence::PresenceView;
use shared::{ConversationId, GroupId, MediaServerId, ServerId, UserId};

pub async fn api_not_found() -> AppError {
    AppError::not_found("no such API route; see docs/api.md")
}

// ---------------------------------------------------------------------------- operations

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process is up.", body = Health))
)]
pub(crate) async fn healthz(State(server): State<AppState>) -> Json<Health> {
    Json(operations::health(&server))
}

/// Readiness: ok or not per backend for anyone; the error text only for an administrator.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "SQL and the bus answer.", body = Health), (status = 503, description = "SQL or the bus does not answer; `checks` says which.", body = Health))
)]
pub(crate) async fn readyz(State(server): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let health = operations::readiness(&server, bearer).await;
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Every series of this server, labelled `server`.", content_type = "application/openmetrics-text", body = String))
)]
pub(crate) async fn metrics(State(server): State<AppState>) -> Response {
    let text = operations::metrics_text(&server).await;
    ([("content-type", crate::metrics::CONTENT_TYPE)], text).into_response()
}

// ---------------------------------------------------------------------------- sessions

#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "client",
    security(()),
    request_body = LoginRequest,
    responses((status = 200, description = "Signed in at the home server.", body = LoginResponse))
)]
pub(crate) async fn session_login(
    State(server): State<AppState>,
    ClientAddress(client): ClientAddress,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    Ok(Json(login::sign_in(&server, request, client).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "client",
    responses((status = 204, description = "The token has ended."))
)]
pub(crate) async fn session_logout(
    State(server): State<AppState>,
    Caller(_, token): Caller,
) -> StatusCode {
    login::sign_out(&server, &token).await;
    StatusCode::NO_CONTENT
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "client",
    responses((status = 200, body = UserInfo))
)]
pub(crate) async fn me_get(AnySession(session): AnySession) -> AppResult<Json<UserInfo>> {
    Ok(Json(session.me().await?))
}

// ---------------------------------------------------------------------------- presence

#[utoipa::path(
    put,
    path = "/api/v1/presence",
    tag = "client",
    request_body = SetPresence,
    responses((status = 200, description = "The presence as the caller now sees it.", body = PresenceView))
)]
pub(crate) async fn presence_put(
    ClientSession(session): ClientSession,
    Body(request): Body<SetPresence>,
) -> AppResult<Json<PresenceView>> {
    Ok(Json(session.set_presence(request).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/presence/{user}",
    tag = "client",
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, description = "What the caller may see of the user (the visibility rule).", body = PresenceView))
)]
pub(crate) async fn presence_get(
    AnySession(session): AnySession,
    Path(user): Path<UserId>,
) -> AppResult<Json<PresenceView>> {
    Ok(Json(session.presence_of(&user).await?))
}

/// A user's call forwarding: for the user, their delegates and admins.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user}/forwarding",
    tag = "client",
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, body = shared::call::ForwardingRules))
)]
pub(crate) async fn forwarding_get(
    AnySession(session): AnySession,
    Path(user): Path<UserId>,
) -> AppResult<Json<shared::call::ForwardingRules>> {
    Ok(Json(session.forwarding_of(&user).await?))
}

// ---------------------------------------------------------------------------- contacts

#[utoipa::path(
    get,
    path = "/api/v1/contacts",
    tag = "client",
    responses((status = 200, body = Vec<Contact>))
)]
pub(crate) async fn contacts_list(
    ClientSession(session): ClientSession,
) -> AppResult<Json<Vec<Contact>>> {
    Ok(Json(session.contacts().await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/contacts/{user}",
    tag = "client",
    request_body = Option<PutContact>,
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, body = Contact))
)]
pub(crate) async fn contacts_put(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
    MaybeBody(body): MaybeBody<PutContact>,
) -> AppResult<Json<Contact>> {
    let group = body.map(|b| b.group).unwrap_or_default();
    Ok(Json(session.add_contact(user, group).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/contacts/{user}",
    tag = "client",
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 204, description = "Removed."))
)]
pub(crate) async fn contacts_delete(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.remove_contact(user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DirectoryQuery {
    #[serde(default)]
    q: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/directory",
    tag = "client",
    params(
        ("q" = Option<String>, Query, description = "text in the id or display name"),
    ),
    responses((status = 200, description = "At most 50 users.", body = Vec<UserInfo>))
)]
pub(crate) async fn directory_search(
    AnySession(session): AnySession,
    Query(query): Query<DirectoryQuery>,
) -> AppResult<Json<Vec<UserInfo>>> {
    Ok(Json(session.directory(&query.q).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/delegates/{user}",
    tag = "client",
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 204, description = "The user may now set the caller's presence and forwarding."))
)]
pub(crate) async fn delegates_put(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.add_delegate(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/delegates/{user}",
    tag = "client",
    params(
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 204, description = "Removed."))
)]
pub(crate) async fn delegates_delete(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.remove_delegate(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------- chat

#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "client",
    responses((status = 200, body = Vec<ConversationSummary>))
)]
pub(crate) async fn conversations_list(
    ClientSession(session): ClientSession,
) -> AppResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(session.conversations().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    tag = "client",
    request_body = CreateConversation,
    responses((status = 200, description = "An ad-hoc group conversation, caller included.", body = ConversationSummary))
)]
pub(crate) async fn conversations_create(
    ClientSession(session): ClientSession,
    Body(request): Body<CreateConversation>,
) -> AppResult<Json<ConversationSummary>> {
    Ok(Json(session.create_conversation(request).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "client",
    request_body = SendMessage,
    responses((status = 200, description = "The stored message.", body = ChatMessage))
)]
pub(crate) async fn messages_send(
    ClientSession(session): ClientSession,
    Body(request): Body<SendMessage>,
) -> AppResult<Json<ChatMessage>> {
    let message = session
        .send_message(
            request.to.as_ref(),
            request.conversation.as_ref(),
            request.body,
            request.client_id,
        )
        .await?;
    Ok(Json(message))
}

#[derive(Deserialize)]
pub(crate) struct HistoryQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    tag = "client",
    params(
        ("id" = ConversationId, Path, description = "a conversation id"),
        ("before" = Option<u64>, Query, description = "only messages before this sequence number"),
        ("after" = Option<u64>, Query, description = "only messages after this sequence number"),
        ("limit" = Option<u32>, Query, description = "at most 500, default 50"),
    ),
    responses((status = 200, description = "Ascending by `seq`.", body = Vec<ChatMessage>))
)]
pub(crate) async fn messages_list(
    ClientSession(session): ClientSession,
    Path(id): Path<ConversationId>,
    Query(query): Query<HistoryQuery>,
) -> AppResult<Json<Vec<ChatMessage>>> {
    let page = match (query.before, query.after) {
        (Some(before), None) => HistoryPage::Before(before),
        (None, Some(after)) => HistoryPage::After(after),
        (None, None) => HistoryPage::Latest,
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request("give 'before' or 'after', not both"));
        }
    };
    let limit = query.limit.unwrap_or(50);
    Ok(Json(session.history(&id, page, limit).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/read",
    tag = "client",
    request_body = Option<MarkRead>,
    params(
        ("id" = ConversationId, Path, description = "a conversation id"),
    ),
    responses((status = 200, description = "The caller's marker; it never moves back.", body = ReadMarker))
)]
pub(crate) async fn conversations_read(
    ClientSession(session): ClientSession,
    Path(id): Path<ConversationId>,
    MaybeBody(body): MaybeBody<MarkRead>,
) -> AppResult<Json<ReadMarker>> {
    let seq = body.and_then(|b| b.seq);
    Ok(Json(session.mark_read(&id, seq).await?))
}

/// Every member's read marker, so a client shows who read what after a reload.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/read",
    tag = "client",
    params(
        ("id" = ConversationId, Path, description = "a conversation id"),
    ),
    responses((status = 200, description = "Every member's marker.", body = Vec<ReadMarker>))
)]
pub(crate) async fn conversations_read_markers(
    ClientSession(session): ClientSession,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<Vec<ReadMarker>>> {
    Ok(Json(session.read_markers(&id).await?))
}

#[derive(Deserialize)]
pub(crate) struct JournalQuery {
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/journal",
    tag = "client",
    params(
        ("limit" = Option<u32>, Query, description = "how many entries"),
    ),
    responses((status = 200, description = "Newest first.", body = Vec<JournalEntry>))
)]
pub(crate) async fn journal_list(
    ClientSession(session): ClientSession,
    Query(query): Query<JournalQuery>,
) -> AppResult<Json<Vec<JournalEntry>>> {
    Ok(Json(session.journal(query.limit.unwrap_or(100)).await?))
}

// ---------------------------------------------------------------------------- admin

#[utoipa::path(
    post,
    path = "/api/v1/admin/login",
    tag = "admin",
    security(()),
    request_body = LoginRequest,
    responses((status = 200, description = "An admin-console session: valid on any server, takes no seat.", body = LoginResponse))
)]
pub(crate) async fn admin_login(
    State(server): State<AppState>,
    ClientAddress(client): ClientAddress,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    Ok(Json(
        login::sign_in_console(&server, request, client).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsersQuery {
    q: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    params(
        ("q" = Option<String>, Query, description = "only users whose id or display name contains this"),
        ("limit" = Option<u32>, Query, description = "at most this many (default and most 10000)"),
    ),
    responses((status = 200, description = "By id.", body = Vec<AdminUser>))
)]
pub(crate) async fn admin_users_list(
    Admin(admin): Admin,
    Query(query): Query<UsersQuery>,
) -> AppResult<Json<Vec<AdminUser>>> {
    let limit = query.limit.unwrap_or(crate::app::admin::MAX_USERS_LISTED);
    Ok(Json(admin.users(query.q.as_deref(), limit).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    request_body = CreateUser,
    responses((status = 200, body = AdminUser, headers(("etag" = String, description = "the user's version, `\"<version>\"`"))))
)]
pub(crate) async fn admin_users_create(
    Admin(admin): Admin,
    Body(request): Body<CreateUser>,
) -> AppResult<Response> {
    Ok(with_etag(admin.create_user(request).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    params(
        ("id" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, body = AdminUser, headers(("etag" = String, description = "the user's version, `\"<version>\"`: send it back in `If-Match` with an edit"))))
)]
pub(crate) async fn admin_users_get(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
) -> AppResult<Response> {
    Ok(with_etag(admin.user(&id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    request_body = UpdateUser,
    params(
        ("id" = UserId, Path, description = "a user id"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"`: change the user only if still at that version, else `409 conflict` with `current`"),
    ),
    responses((status = 200, body = AdminUser, headers(("etag" = String, description = "the new version"))))
)]
pub(crate) async fn admin_users_update(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
    IfMatch(version): IfMatch,
    Body(request): Body<UpdateUser>,
) -> AppResult<Response> {
    Ok(with_etag(admin.update_user(&id, request, version).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{id}/password",
    tag = "admin",
    request_body = ResetPassword,
    params(
        ("id" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, description = "The new password when the server made it up (shown once).", body = PasswordReset))
)]
pub(crate) async fn admin_users_password(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
    MaybeBody(request): MaybeBody<ResetPassword>,
) -> AppResult<Json<PasswordReset>> {
    let password = request.and_then(|r| r.password);
    Ok(Json(admin.reset_password(&id, password).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    params(
        ("id" = UserId, Path, description = "a user id"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"`: delete only if still at that version"),
    ),
    responses((status = 204, description = "Deleted."))
)]
pub(crate) async fn admin_users_delete(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
    IfMatch(version): IfMatch,
) -> AppResult<StatusCode> {
    admin.delete_user(&id, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user with its version as the `ETag`.
fn with_etag(user: AdminUser) -> Response {
    let etag = format!("\"{}\"", user.version);
    ([(axum::http::header::ETAG, etag)], Json(user)).into_response()
}

/// The audit log's query. Its own fields rather than a flattened [`AuditFilter`]: the query
/// decoder reads numbers only from fields named here.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct AuditQuery {
    /// Entries at or after this time (ms since the epoch).
    since_ms: Option<i64>,
    /// Entries before this time (exclusive).
    until_ms: Option<i64>,
    /// Entries of this administrator (`directory`: the scheduled directory sync).
    actor: Option<String>,
    /// Entries whose action starts with this (`user.`: every change of a user).
    action: Option<String>,
    /// How many, newest first: for the list 100 by default and at most 1,000; for an
    /// export all by default and at most 100,000.
    limit: Option<u32>,
    /// `json` or `csv`: an export (a file to download) instead of the list.
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest first. Without `format`, the list; with `format=json` or `format=csv`, an export (`Content-Disposition: attachment`) of every matching entry up to 100,000, with the header `X-Audit-Truncated: true` when more matched. CSV columns: at_ms, time_utc (RFC 3339), actor, action, detail, client.", body = Vec<AuditEntry>, content_type = "application/json"),
        (status = 400, description = "An unknown `format`.", body = ApiError),
    )
)]
pub(crate) async fn admin_audit_list(
    Admin(admin): Admin,
    Query(query): Query<AuditQuery>,
) -> AppResult<Response> {
    let filter = AuditFilter {
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        actor: query
            .actor
            .filter(|actor| !actor.is_empty())
            .map(UserId::new),
        action: query.action.filter(|prefix| !prefix.is_empty()),
    };
    let csv = match query.format.as_deref() {
        None => {
            let entries = admin.audit_log(&filter, query.limit.unwrap_or(100)).await?;
            return Ok(Json(entries).into_response());
        }
        Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "format '{other}': use json or csv"
            )));
        }
    };
    let format = if csv { "csv" } else { "json" };
    let export = admin.audit_export(&filter, query.limit, format).await?;
    let disposition = format!("attachment; filename=\"audit.{format}\"");
    let mut response = if csv {
        (
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            crate::core::csv::audit(&export.entries),
        )
            .into_response()
    } else {
        Json(export.entries).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = disposition.parse() {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    if export.truncated {
        headers.insert(
            AUDIT_TRUNCATED_HEADER,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/overview",
    tag = "admin",
    responses((status = 200, description = "Servers, MediaServers, SQL and bus health, license use, and the caller's role.", body = Overview))
)]
pub(crate) async fn admin_overview(Admin(admin): Admin) -> AppResult<Json<Overview>> {
    Ok(Json(admin.overview().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/history",
    tag = "admin",
    responses((status = 200, description = "Every server's load and counters sampled over the last hour, oldest first.", body = shared::console::History))
)]
pub(crate) async fn admin_history(
    Admin(admin): Admin,
) -> AppResult<Json<shared::console::History>> {
    Ok(Json(admin.history().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/groups",
    tag = "admin",
    responses((status = 200, body = Vec<GroupInfo>))
)]
pub(crate) async fn admin_groups_list(Admin(admin): Admin) -> AppResult<Json<Vec<GroupInfo>>> {
    Ok(Json(admin.groups().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/groups",
    tag = "admin",
    request_body = CreateGroup,
    responses((status = 200, body = GroupInfo))
)]
pub(crate) async fn admin_groups_create(
    Admin(admin): Admin,
    Body(request): Body<CreateGroup>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.create_group(request).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/groups/{id}/members",
    tag = "admin",
    request_body = AddMember,
    params(
        ("id" = GroupId, Path, description = "a group id"),
    ),
    responses((status = 200, body = GroupInfo))
)]
pub(crate) async fn admin_members_add(
    Admin(admin): Admin,
    Path(id): Path<GroupId>,
    Body(request): Body<AddMember>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.add_member(&id, &request.user).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/groups/{id}/members/{user}",
    tag = "admin",
    params(
        ("id" = GroupId, Path, description = "a group id"),
        ("user" = UserId, Path, description = "a user id"),
    ),
    responses((status = 200, body = GroupInfo))
)]
pub(crate) async fn admin_members_remove(
    Admin(admin): Admin,
    Path((id, user)): Path<(GroupId, UserId)>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.remove_member(&id, &user).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}/delegates",
    tag = "admin",
    params(("id" = UserId, Path, description = "a user id")),
    responses((status = 200, description = "The users who act for this user, sorted.", body = Vec<UserId>))
)]
pub(crate) async fn admin_delegates_list(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
) -> AppResult<Json<Vec<UserId>>> {
    Ok(Json(admin.delegates(&id).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{id}/delegates/{delegate}",
    tag = "admin",
    params(
        ("id" = UserId, Path, description = "the user acted for"),
        ("delegate" = UserId, Path, description = "the user who may act for them"),
    ),
    responses((status = 200, description = "The user's delegates now.", body = Vec<UserId>))
)]
pub(crate) async fn admin_delegates_put(
    Admin(admin): Admin,
    Path((id, delegate)): Path<(UserId, UserId)>,
) -> AppResult<Json<Vec<UserId>>> {
    Ok(Json(admin.add_delegate(&id, &delegate).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}/delegates/{delegate}",
    tag = "admin",
    params(
        ("id" = UserId, Path, description = "the user acted for"),
        ("delegate" = UserId, Path, description = "the user who acted for them"),
    ),
    responses((status = 200, description = "The user's delegates now.", body = Vec<UserId>))
)]
pub(crate) async fn admin_delegates_delete(
    Admin(admin): Admin,
    Path((id, delegate)): Path<(UserId, UserId)>,
) -> AppResult<Json<Vec<UserId>>> {
    Ok(Json(admin.remove_delegate(&id, &delegate).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/servers",
    tag = "admin",
    responses((status = 200, body = ServerList))
)]
pub(crate) async fn admin_servers_list(Admin(admin): Admin) -> AppResult<Json<ServerList>> {
    Ok(Json(admin.servers().await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct RebalanceQuery {
    /// Only show what would move.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/servers/rebalance",
    tag = "admin",
    params(RebalanceQuery),
    responses((status = 200, body = Rebalance, description = "the users whose home changes (or would)"))
)]
pub(crate) async fn admin_servers_rebalance(
    Admin(admin): Admin,
    Query(query): Query<RebalanceQuery>,
) -> AppResult<Json<Rebalance>> {
    Ok(Json(admin.rebalance(query.dry_run).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/servers/{id}/{action}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "the UCServer"),
        ("action" = ServerAction, Path, description = "drain, undrain, failover, fallback, hold or recover"),
    ),
    responses((status = 200, body = ServerList, description = "the servers with their states after the change"))
)]
pub(crate) async fn admin_server_action(
    Admin(admin): Admin,
    Path((id, action)): Path<(ServerId, String)>,
) -> AppResult<Json<ServerList>> {
    let action: ServerAction = action.parse().map_err(AppError::bad_request)?;
    Ok(Json(admin.server_action(&id, action).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/licenses",
    tag = "admin",
    responses((status = 200, body = Vec<LicenseInfo>))
)]
pub(crate) async fn admin_licenses_list(Admin(admin): Admin) -> AppResult<Json<Vec<LicenseInfo>>> {
    Ok(Json(admin.licenses().await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/licenses/{kind}",
    tag = "admin",
    request_body = SetLicense,
    params(
        ("kind" = String, Path, description = "a license kind, such as `uc-seat`"),
    ),
    responses((status = 200, body = LicenseInfo))
)]
pub(crate) async fn admin_licenses_set(
    Admin(admin): Admin,
    Path(kind): Path<String>,
    Body(request): Body<SetLicense>,
) -> AppResult<Json<LicenseInfo>> {
    Ok(Json(admin.set_license(kind, request.capacity).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/media",
    tag = "admin",
    responses((status = 200, description = "MediaServers made known to the cluster, with liveness and load.", body = Vec<MediaServerInfo>))
)]
pub(crate) async fn admin_media_list(Admin(admin): Admin) -> AppResult<Json<Vec<MediaServerInfo>>> {
    Ok(Json(admin.media().await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/media",
    tag = "admin",
    request_body = AddMediaServer,
    responses((status = 200, body = MediaServerInfo))
)]
pub(crate) async fn admin_media_add(
    Admin(admin): Admin,
    Body(request): Body<AddMediaServer>,
) -> AppResult<Json<MediaServerInfo>> {
    Ok(Json(admin.add_media(request).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/media/{id}",
    tag = "admin",
    params(
        ("id" = MediaServerId, Path, description = "a MediaServer id"),
    ),
    responses((status = 204, description = "Removed."))
)]
pub(crate) async fn admin_media_remove(
    Admin(admin): Admin,
    Path(id): Path<MediaServerId>,
) -> AppResult<StatusCode> {
    admin.remove_media(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/media/{id}/{action}",
    tag = "admin",
    params(
        ("id" = MediaServerId, Path, description = "a MediaServer id"),
        ("action" = String, Path, description = "`drain` (no new call; running calls go on) or `undrain`"),
    ),
    responses((status = 200, body = MediaServerInfo, description = "the MediaServer after the change"))
)]
pub(crate) async fn admin_media_action(
    Admin(admin): Admin,
    Path((id, action)): Path<(MediaServerId, String)>,
) -> AppResult<Json<MediaServerInfo>> {
    let drain = match action.as_str() {
        "drain" => true,
        "undrain" => false,
        other => {
            return Err(AppError::bad_request(format!(
                "unknown MediaServer action '{other}': drain or undrain"
            )));
        }
    };
    Ok(Json(admin.drain_media(&id, drain).await?))
}

// ---------------------------------------------------------------------- runtime settings

#[utoipa::path(
    get,
    path = "/api/v1/admin/settings",
    tag = "admin",
    responses((status = 200, description = "Every runtime setting: default, global value, per-server overrides, and per server the effective value and whether it applied it.", body = shared::api::SettingsView))
)]
pub(crate) async fn admin_settings_list(
    Admin(admin): Admin,
) -> AppResult<Json<shared::api::SettingsView>> {
    Ok(Json(admin.settings().await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/settings/{key}",
    tag = "admin",
    request_body = shared::api::PutSetting,
    params(
        ("key" = String, Path, description = "a setting, such as `ring_timeout_ms`"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` of the value in that scope (`\"0\"`: not set yet): change it only if still at that version, else `409 conflict` with `current`"),
    ),
    responses((status = 200, description = "Stored and announced; every server applies it live.", body = shared::api::SettingValue))
)]
pub(crate) async fn admin_settings_put(
    Admin(admin): Admin,
    Path(key): Path<String>,
    IfMatch(version): IfMatch,
    Body(request): Body<shared::api::PutSetting>,
) -> AppResult<Json<shared::api::SettingValue>> {
    Ok(Json(admin.put_setting(&key, request, version).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SettingScope {
    scope: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/settings/{key}",
    tag = "admin",
    params(
        ("key" = String, Path, description = "a setting"),
        ("scope" = Option<String>, Query, description = "a server id (its override) or `global` (the default)"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"`: remove only if still at that version"),
    ),
    responses((status = 204, description = "Removed; the servers fall back to the global value or their configuration's."))
)]
pub(crate) async fn admin_settings_delete(
    Admin(admin): Admin,
    Path(key): Path<String>,
    Query(query): Query<SettingScope>,
    IfMatch(version): IfMatch,
) -> AppResult<StatusCode> {
    admin
        .delete_setting(&key, query.scope.as_deref(), version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------- users from outside

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ImportQuery {
    /// Only plan (the default): `false` applies the file, all or nothing.
    dry_run: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/import",
    tag = "admin",
    params(ImportQuery),
    request_body(
        content = shared::directory::DirectoryFile,
        description = "`application/json` (this shape) or `text/csv` with a header line (columns id, display_name, home_server, groups, contacts, disabled, password; lists `;`-separated, a contact's label after `:`); at most 8 MiB and 20,000 users",
        content_type = "application/json"
    ),
    responses((status = 200, body = shared::directory::DirectoryPlan, description = "The plan: counts, each change, each bad row by line. Applied only with `dry_run=false` and no bad row; passwords made up for new users are in it once."))
)]
pub(crate) async fn admin_import(
    Admin(admin): Admin,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Json<shared::directory::DirectoryPlan>> {
    let body = body.map_err(|_| {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "an import file may have at most {} bytes",
                shared::limits::MAX_IMPORT_BYTES
            ),
        )
    })?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let format = crate::app::directory::ImportFormat::from_content_type(content_type)?;
    let dry_run = query.dry_run.unwrap_or(true);
    Ok(Json(admin.import(format, &body, dry_run).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ExportQuery {
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/export",
    tag = "admin",
    params(ExportQuery),
    responses((status = 200, body = shared::directory::DirectoryFile, description = "Every user with display name, home server, groups, contacts, disabled flag and source (never a password), and every group; as JSON or as CSV (`text/csv`, the import's columns without password)", content_type = "application/json"))
)]
pub(crate) async fn admin_export(
    Admin(admin): Admin,
    Query(query): Query<ExportQuery>,
) -> AppResult<Response> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::bad_request(format!(
                "format '{other}': use json or csv"
            )));
        }
    };
    let file = admin.export().await?;
    if !csv {
        return Ok(Json(file).into_response());
    }
    let text = crate::core::directory::write_csv(&file.users);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"users.csv\"",
            ),
        ],
        text,
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/directory/sync",
    tag = "admin",
    params(ImportQuery),
    responses((status = 200, body = shared::directory::DirectoryPlan, description = "The sync's plan (users from the directory: created, updated, deactivated when gone or disabled there; users made here untouched). Applied only with `dry_run=false` and no bad entry. `server_unavailable` when the directory cannot be read: nothing changes."))
)]
pub(crate) async fn admin_directory_sync(
    Admin(admin): Admin,
    Query(query): Query<ImportQuery>,
) -> AppResult<Json<shared::directory::DirectoryPlan>> {
    Ok(Json(
        admin.directory_sync(query.dry_run.unwrap_or(true)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/directory",
    tag = "admin",
    responses((status = 200, body = shared::directory::DirectoryStatus, description = "Whether a directory is configured and reachable (with the error), and the last sync"))
)]
pub(crate) async fn admin_directory_status(
    Admin(admin): Admin,
) -> AppResult<Json<shared::directory::DirectoryStatus>> {
    Ok(Json(admin.directory_status().await?))
}
