//! REST handlers of the administrator's look into live state (`app/inspect.rs`): a user's
//! devices and the kick of one, the presence viewer and a user's watchers. Codecs only.

use crate::error::AppResult;
use crate::extract::Admin;
use axum::Json;
use axum::extract::{Path, Query};
use serde::Deserialize;
use shared::inspect::{DeviceKicked, PresenceInspection, PresenceWatchers, UserSessions};
use shared::{DeviceId, UserId};

#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}/sessions",
    tag = "admin",
    params(("id" = UserId, Path, description = "a user id")),
    responses((status = 200, body = UserSessions, description = "the user's connected devices, from the server serving them (wherever that is)"))
)]
pub(crate) async fn admin_user_sessions(
    Admin(admin): Admin,
    Path(id): Path<UserId>,
) -> AppResult<Json<UserSessions>> {
    Ok(Json(admin.user_sessions(&id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}/sessions/{device}",
    tag = "admin",
    params(
        ("id" = UserId, Path, description = "a user id"),
        ("device" = DeviceId, Path, description = "one of the user's devices"),
    ),
    responses((status = 200, body = DeviceKicked, description = "the device's connection is closed (`goodbye`) and its tokens ended; the user's other devices stay"))
)]
pub(crate) async fn admin_user_kick(
    Admin(admin): Admin,
    Path((id, device)): Path<(UserId, DeviceId)>,
) -> AppResult<Json<DeviceKicked>> {
    Ok(Json(admin.kick_device(&id, &device).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct WatcherQuery {
    /// The user whose view is shown.
    watcher: UserId,
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/presence/{user}",
    tag = "admin",
    params(("user" = UserId, Path, description = "the user watched"), WatcherQuery),
    responses((status = 200, body = PresenceInspection, description = "what the watcher sees of the user now, and the rule that decided it"))
)]
pub(crate) async fn admin_presence_show(
    Admin(admin): Admin,
    Path(user): Path<UserId>,
    Query(query): Query<WatcherQuery>,
) -> AppResult<Json<PresenceInspection>> {
    Ok(Json(
        admin.presence_inspection(&user, &query.watcher).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/presence/{user}/watchers",
    tag = "admin",
    params(("user" = UserId, Path, description = "the user watched")),
    responses((status = 200, body = PresenceWatchers, description = "who gets the user's live presence events, and who of them is online now"))
)]
pub(crate) async fn admin_presence_watchers(
    Admin(admin): Admin,
    Path(user): Path<UserId>,
) -> AppResult<Json<PresenceWatchers>> {
    Ok(Json(admin.presence_watchers(&user).await?))
}
