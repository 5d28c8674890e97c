//! The HTTP surface: client API, admin API and operations endpoints (see `docs/api.md`).
//! Handlers are codecs and routing only: decode the request, call the application layer
//! ([`Session`], [`AdminSession`]), encode the answer.

use crate::auth::{self, TokenInfo};
use crate::core::license;
use crate::error::{AppError, AppResult};
use crate::extract::{Admin, AnySession, AppState, Body, Caller, ClientSession, MaybeBody};
use crate::server::Server;
use crate::store::{HistoryPage, UserRecord};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use shared::api::*;
use shared::presence::PresenceView;
use shared::{ConversationId, DeviceId, GroupId, MediaServerId, UserId, now_ms, validate_name};
use std::net::SocketAddr;

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

async fn readyz(State(server): State<AppState>) -> Response {
    let sql = server.store.ping().await;
    let bus = server.cluster.ping().await;
    let checks = vec![
        HealthCheck {
            name: "sql".into(),
            ok: sql.is_ok(),
            detail: sql.err().map(|e| e.to_string()),
        },
        HealthCheck {
            name: format!("bus ({})", server.cluster.kind()),
            ok: bus.is_ok(),
            detail: bus.err().map(|e| e.to_string()),
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
    let licenses = server.licenses.usage().await.unwrap_or_default();
    let text = server.metrics.render(server.id.as_str(), &licenses);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

// ---------------------------------------------------------------------------- sessions

/// Checks a password with throttling by user name and by address.
async fn check_password(
    server: &Server,
    request: &LoginRequest,
    address: &str,
) -> AppResult<UserRecord> {
    let now = now_ms();
    let keys = [format!("user:{}", request.user), format!("addr:{address}")];
    let wait = {
        let throttle = server.throttle.lock().unwrap();
        keys.iter()
            .map(|k| throttle.wait_ms(k, now))
            .max()
            .unwrap_or(0)
    };
    if wait > 0 {
        let mut error = AppError::new(
            ErrorCode::TooManyAttempts,
            format!(
                "too many failed sign-ins; try again in {} s",
                (wait + 999) / 1000
            ),
        );
        error.0.retry_after_ms = Some(wait as u64);
        return Err(error);
    }
    if request.password.len() > 1024 {
        return Err(AppError::new(
            ErrorCode::PayloadTooLarge,
            "the password is too long",
        ));
    }
    let user = server.sql(server.store.get_user(&request.user)).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = request.password.clone();
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => auth::verify_password(&password, &hash),
        None => {
            // Same work for unknown users, so timing does not tell which names exist.
            let _ = auth::hash_password(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let mut throttle = server.throttle.lock().unwrap();
    match (ok, user) {
        (true, Some(user)) => {
            for key in &keys[..1] {
                throttle.record_success(key);
            }
            Ok(user)
        }
        _ => {
            for key in &keys {
                throttle.record_failure(key, now);
            }
            server
                .metrics
                .login_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(AppError::new(
                ErrorCode::InvalidCredentials,
                "wrong user name or password",
            ))
        }
    }
}

fn address(headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .or_else(|| peer.map(|p| p.ip().to_string()))
        .unwrap_or_default()
}

async fn session_login(
    State(server): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    let user = check_password(&server, &request, &address(&headers, Some(peer))).await?;
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
        .licenses
        .acquire(license::SEAT, user.id.as_str())
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

async fn me_get(AnySession(session): AnySession) -> AppResult<Json<UserInfo>> {
    Ok(Json(session.me().await?))
}

// ---------------------------------------------------------------------------- presence

async fn presence_put(
    ClientSession(session): ClientSession,
    Body(request): Body<SetPresence>,
) -> AppResult<Json<PresenceView>> {
    Ok(Json(session.set_presence(request).await?))
}

async fn presence_get(
    AnySession(session): AnySession,
    Path(user): Path<UserId>,
) -> AppResult<Json<PresenceView>> {
    Ok(Json(session.presence_of(&user).await?))
}

/// A user's call forwarding: for the user, their delegates and admins.
async fn forwarding_get(
    AnySession(session): AnySession,
    Path(user): Path<UserId>,
) -> AppResult<Json<shared::call::ForwardingRules>> {
    Ok(Json(session.forwarding_of(&user).await?))
}

// ---------------------------------------------------------------------------- contacts

async fn contacts_list(ClientSession(session): ClientSession) -> AppResult<Json<Vec<Contact>>> {
    Ok(Json(session.contacts().await?))
}

async fn contacts_put(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
    MaybeBody(body): MaybeBody<PutContact>,
) -> AppResult<Json<Contact>> {
    let group = body.map(|b| b.group).unwrap_or_default();
    Ok(Json(session.add_contact(user, group).await?))
}

async fn contacts_delete(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.remove_contact(user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DirectoryQuery {
    #[serde(default)]
    q: String,
}

async fn directory_search(
    AnySession(session): AnySession,
    Query(query): Query<DirectoryQuery>,
) -> AppResult<Json<Vec<UserInfo>>> {
    Ok(Json(session.directory(&query.q).await?))
}

async fn delegates_put(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.add_delegate(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delegates_delete(
    ClientSession(session): ClientSession,
    Path(user): Path<UserId>,
) -> AppResult<StatusCode> {
    session.remove_delegate(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------- chat

async fn conversations_list(
    ClientSession(session): ClientSession,
) -> AppResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(session.conversations().await?))
}

async fn conversations_create(
    ClientSession(session): ClientSession,
    Body(request): Body<CreateConversation>,
) -> AppResult<Json<ConversationSummary>> {
    Ok(Json(session.create_conversation(request).await?))
}

async fn messages_send(
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
struct HistoryQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

async fn messages_list(
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

async fn conversations_read(
    ClientSession(session): ClientSession,
    Path(id): Path<ConversationId>,
    MaybeBody(body): MaybeBody<MarkRead>,
) -> AppResult<Json<ReadMarker>> {
    let seq = body.and_then(|b| b.seq);
    Ok(Json(session.mark_read(&id, seq).await?))
}

/// Every member's read marker, so a client shows who read what after a reload.
async fn conversations_read_markers(
    ClientSession(session): ClientSession,
    Path(id): Path<ConversationId>,
) -> AppResult<Json<Vec<ReadMarker>>> {
    Ok(Json(session.read_markers(&id).await?))
}

#[derive(Deserialize)]
struct JournalQuery {
    limit: Option<u32>,
}

async fn journal_list(
    ClientSession(session): ClientSession,
    Query(query): Query<JournalQuery>,
) -> AppResult<Json<Vec<JournalEntry>>> {
    Ok(Json(session.journal(query.limit.unwrap_or(100)).await?))
}

// ---------------------------------------------------------------------------- admin

async fn admin_login(
    State(server): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(request): Body<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    let user = check_password(&server, &request, &address(&headers, Some(peer))).await?;
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

async fn admin_users_list(Admin(admin): Admin) -> AppResult<Json<Vec<UserInfo>>> {
    Ok(Json(admin.users().await?))
}

async fn admin_users_create(
    Admin(admin): Admin,
    Body(request): Body<CreateUser>,
) -> AppResult<Json<UserInfo>> {
    Ok(Json(admin.create_user(request).await?))
}

async fn admin_users_update(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
    Body(request): Body<UpdateUser>,
) -> AppResult<Json<UserInfo>> {
    Ok(Json(admin.update_user(&id, request).await?))
}

async fn admin_users_delete(Admin(admin): Admin, Path(id): Path<UserId>) -> AppResult<StatusCode> {
    admin.delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_groups_list(Admin(admin): Admin) -> AppResult<Json<Vec<GroupInfo>>> {
    Ok(Json(admin.groups().await?))
}

async fn admin_groups_create(
    Admin(admin): Admin,
    Body(request): Body<CreateGroup>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.create_group(request).await?))
}

async fn admin_members_add(
    Admin(admin): Admin,
    Path(id): Path<GroupId>,
    Body(request): Body<AddMember>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.add_member(&id, &request.user).await?))
}

async fn admin_members_remove(
    Admin(admin): Admin,
    Path((id, user)): Path<(GroupId, UserId)>,
) -> AppResult<Json<GroupInfo>> {
    Ok(Json(admin.remove_member(&id, &user).await?))
}

async fn admin_servers_list(Admin(admin): Admin) -> AppResult<Json<ServerList>> {
    Ok(Json(admin.servers().await?))
}

async fn admin_licenses_list(Admin(admin): Admin) -> AppResult<Json<Vec<LicenseInfo>>> {
    Ok(Json(admin.licenses().await?))
}

async fn admin_licenses_set(
    Admin(admin): Admin,
    Path(kind): Path<String>,
    Body(request): Body<SetLicense>,
) -> AppResult<Json<LicenseInfo>> {
    Ok(Json(admin.set_license(kind, request.capacity).await?))
}

async fn admin_media_list(Admin(admin): Admin) -> AppResult<Json<Vec<MediaServerInfo>>> {
    Ok(Json(admin.media().await?))
}

async fn admin_media_add(
    Admin(admin): Admin,
    Body(request): Body<AddMediaServer>,
) -> AppResult<Json<MediaServerInfo>> {
    Ok(Json(admin.add_media(request).await?))
}

async fn admin_media_remove(
    Admin(admin): Admin,
    Path(id): Path<MediaServerId>,
) -> AppResult<StatusCode> {
    admin.remove_media(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as HttpBody;
    use axum::http::Request as HttpRequest;
    use std::sync::Arc;
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
        // The client's modules live in a subfolder and must come back as JavaScript.
        let response = app()
            .await
            .oneshot(
                HttpRequest::get("/js/main.js")
                    .body(HttpBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let (status, body) = get(app().await, "/api/v1/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"not_found\""), "{body}");
        let (status, body) = get(app().await, "/api/v1/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
}
