//! [`AdminSession`]: an administrator acting on the cluster. Every admin operation of every
//! front end (the REST admin API that `ucadmin` and the console use) is a method here; each
//! change is audited and announced to the other servers.

use super::authz;
use crate::auth::TokenInfo;
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::{AuditRecord, GroupRecord, MediaServerRecord, UserRecord, UserUpdate};
use shared::api::{
    AddMediaServer, CreateGroup, CreateUser, ErrorCode, GroupInfo, LicenseInfo, MediaServerInfo,
    ServerInfo, ServerList, UpdateUser, UserInfo,
};
use shared::bus::BusBody;
use shared::{ConversationId, GroupId, MediaServerId, UserId, now_ms, validate_name};
use std::sync::Arc;

/// An administrator's session.
#[derive(Clone)]
pub struct AdminSession {
    server: Arc<Server>,
    actor: TokenInfo,
}

impl AdminSession {
    /// Refused unless the token's holder is an administrator.
    pub fn new(server: Arc<Server>, actor: TokenInfo) -> AppResult<Self> {
        authz::require_admin(&actor)?;
        Ok(Self { server, actor })
    }

    async fn audit(&self, action: &str, detail: String) {
        let record = AuditRecord {
            at_ms: now_ms(),
            actor: self.actor.user.clone(),
            action: action.to_string(),
            detail,
        };
        if let Err(error) = self.server.store.audit(&record).await {
            tracing::warn!(%error, "could not write the audit log");
        }
    }

    // ------------------------------------------------------------------ users

    pub async fn users(&self) -> AppResult<Vec<UserInfo>> {
        let users = self.server.sql(self.server.store.list_users()).await?;
        Ok(super::user_infos(&self.server, users).await)
    }

    pub async fn create_user(&self, request: CreateUser) -> AppResult<UserInfo> {
        let server = &self.server;
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
        self.audit("user.create", format!("{} home={home_server}", request.id))
            .await;
        server.relations_changed(vec![request.id.clone()]).await;
        Ok(UserInfo {
            id: request.id,
            display_name,
            home_server,
            admin: request.admin,
            online: false,
        })
    }

    pub async fn update_user(&self, id: &UserId, request: UpdateUser) -> AppResult<UserInfo> {
        let server = &self.server;
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
            .sql(server.store.get_user(id))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{id}'")))?;
        let update = UserUpdate {
            password_hash,
            display_name: request.display_name,
            home_server: request.home_server,
        };
        let user = server.sql(server.store.update_user(id, &update)).await?;
        self.audit("user.update", id.to_string()).await;
        // Every server forgets the old home; the server serving the user hands them to the
        // new home on its next heartbeat (their devices reconnect there with the same token;
        // a user in a call moves when it ends).
        server.relations_changed(vec![id.clone()]).await;
        if before.home_server != user.home_server {
            tracing::info!(user = %id, from = %before.home_server, to = %user.home_server, "user moved");
        }
        super::user_infos(server, vec![user])
            .await
            .pop()
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::Internal,
                    "the user was updated but cannot be read back",
                )
            })
    }

    pub async fn delete_user(&self, id: &UserId) -> AppResult<()> {
        let server = &self.server;
        if id == &self.actor.user {
            return Err(AppError::bad_request("you cannot delete yourself"));
        }
        server.sql(server.store.delete_user(id)).await?;
        self.audit("user.delete", id.to_string()).await;
        server.relations_changed(vec![id.clone()]).await;
        server
            .broadcast(BusBody::KickUser {
                user: id.clone(),
                reason: "user deleted".into(),
            })
            .await;
        Ok(())
    }

    // ------------------------------------------------------------------ groups

    pub async fn groups(&self) -> AppResult<Vec<GroupInfo>> {
        Ok(self
            .server
            .sql(self.server.store.list_groups())
            .await?
            .into_iter()
            .map(group_info)
            .collect())
    }

    pub async fn create_group(&self, request: CreateGroup) -> AppResult<GroupInfo> {
        validate_name(request.id.as_str()).map_err(|e| AppError::bad_request(e.to_string()))?;
        let display_name = request
            .display_name
            .unwrap_or_else(|| request.id.to_string());
        check_display_name(&display_name)?;
        self.server
            .sql(self.server.store.create_group(
                &request.id,
                &display_name,
                &self.actor.user,
                now_ms(),
            ))
            .await?;
        self.audit("group.create", request.id.to_string()).await;
        Ok(GroupInfo {
            id: request.id,
            display_name,
            members: Vec::new(),
        })
    }

    async fn group(&self, id: &GroupId) -> AppResult<GroupRecord> {
        self.server
            .sql(self.server.store.get_group(id))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no group '{id}'")))
    }

    pub async fn add_member(&self, id: &GroupId, user: &UserId) -> AppResult<GroupInfo> {
        let server = &self.server;
        self.group(id).await?;
        server.relations.home_of(user).await?;
        server.sql(server.store.add_group_member(id, user)).await?;
        self.audit("group.member.add", format!("{id} {user}")).await;
        let group = self.group(id).await?;
        server.relations_changed(group.members.clone()).await;
        server
            .chat
            .announce_conversation(&ConversationId::group(id))
            .await;
        Ok(group_info(group))
    }

    pub async fn remove_member(&self, id: &GroupId, user: &UserId) -> AppResult<GroupInfo> {
        let server = &self.server;
        let before = self.group(id).await?;
        server
            .sql(server.store.remove_group_member(id, user))
            .await?;
        self.audit("group.member.remove", format!("{id} {user}"))
            .await;
        server.relations_changed(before.members).await;
        server
            .relations
            .forget_conversation(&ConversationId::group(id));
        Ok(group_info(self.group(id).await?))
    }

    // ------------------------------------------------------------------ servers, licenses, media

    /// Every UCServer known (registered in SQL or beating now) and every MediaServer.
    pub async fn servers(&self) -> AppResult<ServerList> {
        let server = &self.server;
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
        Ok(ServerList {
            servers,
            media: self.media().await?,
        })
    }

    pub async fn licenses(&self) -> AppResult<Vec<LicenseInfo>> {
        Ok(self
            .server
            .licenses
            .usage()
            .await?
            .into_iter()
            .map(|(kind, capacity, in_use)| LicenseInfo {
                kind,
                capacity,
                in_use,
            })
            .collect())
    }

    pub async fn set_license(&self, kind: String, capacity: u32) -> AppResult<LicenseInfo> {
        let server = &self.server;
        validate_name(&kind).map_err(|e| AppError::bad_request(format!("license kind: {e}")))?;
        server
            .sql(server.store.set_license(&kind, capacity))
            .await?;
        self.audit("license.set", format!("{kind}={capacity}"))
            .await;
        server.licenses.forget();
        server.broadcast(BusBody::LicensesChanged).await;
        let in_use = server.cluster.lease_count(&kind).await?;
        Ok(LicenseInfo {
            kind,
            capacity: Some(capacity),
            in_use,
        })
    }

    pub async fn media(&self) -> AppResult<Vec<MediaServerInfo>> {
        self.server
            .media
            .infos(&*self.server.store, &*self.server.cluster)
            .await
    }

    pub async fn add_media(&self, request: AddMediaServer) -> AppResult<MediaServerInfo> {
        let server = &self.server;
        validate_name(request.id.as_str()).map_err(|e| AppError::bad_request(e.to_string()))?;
        if !(request.control_url.starts_with("http://")
            || request.control_url.starts_with("https://"))
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
        self.audit(
            "media.add",
            format!("{} {}", request.id, request.control_url),
        )
        .await;
        self.media()
            .await?
            .into_iter()
            .find(|m| m.id == request.id)
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::Internal,
                    "the MediaServer was added but cannot be read back",
                )
            })
    }

    pub async fn remove_media(&self, id: &MediaServerId) -> AppResult<()> {
        self.server
            .sql(self.server.store.remove_media_server(id))
            .await?;
        self.audit("media.remove", id.to_string()).await;
        Ok(())
    }
}

fn group_info(record: GroupRecord) -> GroupInfo {
    GroupInfo {
        id: record.id,
        display_name: record.display_name,
        members: record.members,
    }
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
