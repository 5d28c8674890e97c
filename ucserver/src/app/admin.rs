//! [`AdminSession`]: an administrator acting on the cluster. Every admin operation of every
//! front end (the REST admin API that `ucadmin` and the console use) is a method here; each
//! change is audited (who, what, when, from which address) and announced to the other servers.
//!
//! Several administrators work at once: each has a role (`authz::require_role`), read from
//! SQL on every request so that a changed role counts at once, and edits of a user name the
//! version they were made from (`If-Match`), so that nobody overwrites a change unseen.

use super::authz::{self, AdminAction};
use crate::auth::TokenInfo;
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::{AuditRecord, GroupRecord, MediaServerRecord, UserRecord, UserUpdate};
use shared::api::{
    AddMediaServer, AdminRole, AdminUser, AuditEntry, CreateGroup, CreateUser, ErrorCode,
    GroupInfo, LicenseInfo, MediaServerInfo, Overview, PasswordReset, Rebalance, ServerAction,
    ServerInfo, ServerList, UpdateUser, UserMove, VersionInfo,
};
use shared::bus::BusBody;
use shared::{
    ConversationId, GroupId, MediaServerId, ServerId, TimestampMs, UserId, now_ms, validate_name,
};
use std::net::IpAddr;
use std::sync::Arc;

/// At most this many users in one answer of [`AdminSession::users`].
pub const MAX_USERS_LISTED: u32 = 10_000;

/// The `conflict` answer to an edit of `what` made from version `if_version`: the version it
/// is at now and who made it.
pub(super) fn stale_edit(what: &str, current: VersionInfo, if_version: Option<u64>) -> AppError {
    let by = current
        .changed_by
        .as_ref()
        .map(|who| format!(" by '{who}'"))
        .unwrap_or_default();
    let mut error = AppError::new(
        ErrorCode::Conflict,
        format!(
            "{what} was changed meanwhile{by} (now version {}, your edit was made from version {}); load it again",
            current.version,
            if_version.unwrap_or_default()
        ),
    );
    error.0.current = Some(Box::new(current));
    error
}

/// Writes an administrator's action to the audit log and tells every open console: those
/// connected here at once, the others through the bus.
pub(crate) async fn record_audit(server: &Server, record: AuditRecord) {
    if let Err(error) = server.store.audit(&record).await {
        tracing::warn!(%error, "could not write the audit log");
    }
    let entry = AuditEntry::from(record);
    server
        .admin_feed
        .publish(&shared::console::AdminEvent::Change {
            server: server.id.clone(),
            entry: entry.clone(),
        });
    server.broadcast(BusBody::AdminChanged { entry }).await;
}

/// An administrator's session.
#[derive(Clone)]
pub struct AdminSession {
    pub(super) server: Arc<Server>,
    pub(super) actor: TokenInfo,
    /// The role the administrator has now (from SQL, read when the session was opened).
    role: AdminRole,
    /// Where the request came from, for the audit log.
    client: Option<IpAddr>,
}

impl AdminSession {
    /// Refused unless the token's holder is an administrator now: the token says so, and
    /// the user in SQL is still one and not disabled. While SQL cannot be read, the session
    /// may only read (the overview shows the outage).
    pub async fn open(
        server: Arc<Server>,
        actor: TokenInfo,
        client: Option<IpAddr>,
    ) -> AppResult<Self> {
        authz::require_admin(&actor)?;
        let role = match server.sql(server.store.get_user(&actor.user)).await {
            Ok(record) => authz::admin_role_of(record.as_ref())?,
            Err(error) if error.code() == ErrorCode::ServerUnavailable => AdminRole::ReadOnly,
            Err(error) => return Err(error),
        };
        Ok(Self {
            server,
            actor,
            role,
            client,
        })
    }

    pub fn role(&self) -> AdminRole {
        self.role
    }

    /// Whether the administrator may follow the live channel (every role may).
    pub fn may_watch(&self) -> AppResult<()> {
        self.require(AdminAction::Read)
    }

    pub(super) fn require(&self, action: AdminAction) -> AppResult<()> {
        authz::require_role(self.role, action)
    }

    pub(super) async fn audit(&self, action: &str, detail: String) {
        let record = AuditRecord {
            at_ms: now_ms(),
            actor: self.actor.user.clone(),
            action: action.to_string(),
            detail,
            client: self.client.map(|ip| ip.to_string()),
        };
        record_audit(&self.server, record).await;
    }

    // ------------------------------------------------------------------ users

    /// Users whose id or display name contains `search` (all without), by id.
    pub async fn users(&self, search: Option<&str>, limit: u32) -> AppResult<Vec<AdminUser>> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let limit = limit.clamp(1, MAX_USERS_LISTED);
        let users = match search.map(str::trim).filter(|s| !s.is_empty()) {
            Some(text) => {
                if text.len() > shared::limits::MAX_DISPLAY_NAME_BYTES {
                    return Err(AppError::bad_request("the search text is too long"));
                }
                server.sql(server.store.search_users(text, limit)).await?
            }
            None => {
                let mut all = server.sql(server.store.list_users()).await?;
                all.truncate(limit as usize);
                all
            }
        };
        Ok(admin_users(server, users).await)
    }

    /// One user, with the version an edit must name.
    pub async fn user(&self, id: &UserId) -> AppResult<AdminUser> {
        self.require(AdminAction::Read)?;
        let record = self.user_record(id).await?;
        Ok(admin_users(&self.server, vec![record]).await.remove(0))
    }

    pub(super) async fn user_record(&self, id: &UserId) -> AppResult<UserRecord> {
        self.server
            .sql(self.server.store.get_user(id))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{id}'")))
    }

    pub async fn create_user(&self, request: CreateUser) -> AppResult<AdminUser> {
        let role = request.admin.then_some(AdminRole::Full);
        self.require(if role.is_some() {
            AdminAction::ChangeAdmins
        } else {
            AdminAction::ChangeUsers
        })?;
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
        let now = now_ms();
        let record = UserRecord {
            id: request.id.clone(),
            password_hash,
            display_name,
            home_server: home_server.clone(),
            admin: role.is_some(),
            created_ms: now,
            role,
            disabled: false,
            version: 1,
            changed_by: Some(self.actor.user.clone()),
            changed_ms: now,
        };
        server.sql(server.store.create_user(&record)).await?;
        let role_text = role.map(|r| format!(" role={r}")).unwrap_or_default();
        self.audit(
            "user.create",
            format!("{} home={home_server}{role_text}", request.id),
        )
        .await;
        server.relations_changed(vec![request.id.clone()]).await;
        Ok(admin_users(server, vec![record]).await.remove(0))
    }

    /// Changes a user; with `if_version`, only if nobody changed them since that version.
    pub async fn update_user(
        &self,
        id: &UserId,
        request: UpdateUser,
        if_version: Option<u64>,
    ) -> AppResult<AdminUser> {
        let server = &self.server;
        let before = self.user_record(id).await?;
        let role_change = match (request.admin, request.role) {
            (Some(false), _) => Some(None),
            (_, Some(role)) => Some(Some(role)),
            (Some(true), None) => Some(Some(before.role.unwrap_or(AdminRole::Full))),
            (None, None) => None,
        };
        let touches_admin = before.admin || role_change.is_some_and(|r| r.is_some());
        self.require(if touches_admin || role_change.is_some() {
            AdminAction::ChangeAdmins
        } else {
            AdminAction::ChangeUsers
        })?;
        if id == &self.actor.user && (role_change.is_some() || request.disabled == Some(true)) {
            return Err(AppError::bad_request(
                "you cannot change your own role or disable yourself; ask another administrator",
            ));
        }
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
        let mut changed = Vec::new();
        if password_hash.is_some() {
            changed.push("password".to_string());
        }
        if let Some(name) = &request.display_name {
            changed.push(format!("display_name={name}"));
        }
        if let Some(home) = &request.home_server {
            changed.push(format!("home={home}"));
        }
        if let Some(role) = role_change {
            changed.push(format!(
                "role={}",
                role.map_or("none", |role| role.as_str())
            ));
        }
        if let Some(disabled) = request.disabled {
            changed.push(format!("disabled={disabled}"));
        }
        let update = UserUpdate {
            password_hash,
            display_name: request.display_name,
            home_server: request.home_server,
            role: role_change,
            disabled: request.disabled,
            expected_version: if_version,
            changed_by: Some(self.actor.user.clone()),
            changed_ms: now_ms(),
        };
        let user = match server.sql(server.store.update_user(id, &update)).await {
            Ok(user) => user,
            Err(error) if error.code() == ErrorCode::Conflict => {
                return Err(self.stale(id, if_version).await);
            }
            Err(error) => return Err(error),
        };
        self.audit("user.update", format!("{id} {}", changed.join(" ")))
            .await;
        // Every server forgets the old home; the server serving the user hands them to the
        // new home on its next heartbeat (their devices reconnect there with the same token;
        // a user in a call moves when it ends).
        server.relations_changed(vec![id.clone()]).await;
        if before.home_server != user.home_server {
            tracing::info!(user = %id, from = %before.home_server, to = %user.home_server, "user moved");
        }
        if user.disabled && !before.disabled {
            server
                .broadcast(BusBody::KickUser {
                    user: id.clone(),
                    reason: "account disabled".into(),
                })
                .await;
        }
        Ok(admin_users(server, vec![user]).await.remove(0))
    }

    /// A new password for `id`: `password`, or one made up here and answered once.
    pub async fn reset_password(
        &self,
        id: &UserId,
        password: Option<String>,
    ) -> AppResult<PasswordReset> {
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| crate::auth::random_hex(8));
        let user = self
            .update_user(
                id,
                UpdateUser {
                    password: Some(password.clone()),
                    ..UpdateUser::default()
                },
                None,
            )
            .await?;
        Ok(PasswordReset {
            user,
            password: generated.then_some(password),
        })
    }

    /// Deletes a user; with `if_version`, only if nobody changed them since that version.
    pub async fn delete_user(&self, id: &UserId, if_version: Option<u64>) -> AppResult<()> {
        let server = &self.server;
        if id == &self.actor.user {
            return Err(AppError::bad_request("you cannot delete yourself"));
        }
        let before = self.user_record(id).await?;
        self.require(if before.admin {
            AdminAction::ChangeAdmins
        } else {
            AdminAction::ChangeUsers
        })?;
        let deleted = match if_version {
            Some(version) => server.sql(server.store.delete_user_at(id, version)).await,
            None => server.sql(server.store.delete_user(id)).await,
        };
        match deleted {
            Err(error) if error.code() == ErrorCode::Conflict => {
                return Err(self.stale(id, if_version).await);
            }
            other => other?,
        }
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

    /// The `conflict` answer to an edit of `id` made from an old version: what the user is
    /// at now, and who changed them.
    async fn stale(&self, id: &UserId, if_version: Option<u64>) -> AppError {
        let current = match self.user_record(id).await {
            Ok(user) => user,
            Err(error) => return error,
        };
        stale_edit(
            &format!("user '{id}'"),
            VersionInfo {
                version: current.version,
                changed_by: current.changed_by,
                changed_ms: current.changed_ms,
            },
            if_version,
        )
    }

    // ------------------------------------------------------------------ overview

    /// Every server's samples of the last hour, for the console's charts: read from the
    /// cluster store; while it is away, only this server's own.
    pub async fn history(&self) -> AppResult<shared::console::History> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let now = now_ms();
        let mut ids: Vec<ServerId> = self
            .live_servers()
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        if let Ok(registered) = server.sql(server.store.list_servers()).await {
            ids.extend(registered.into_iter().map(|record| record.id));
        }
        ids.push(server.id.clone());
        ids.sort();
        ids.dedup();
        let (servers, note) = match server
            .bus("read history", server.cluster.samples(&ids))
            .await
        {
            Some(all) => (ids.into_iter().zip(all).collect(), None),
            None => (
                vec![(server.id.clone(), server.history.own())],
                Some("the cluster store cannot be read: only this server's own samples".into()),
            ),
        };
        Ok(shared::console::History {
            server: server.id.clone(),
            at_ms: now,
            sample_ms: server.history.sample_ms,
            servers: servers
                .into_iter()
                .map(|(id, samples)| shared::console::ServerHistory {
                    server: id,
                    samples: crate::history::within_window(samples, now),
                })
                .collect(),
            note,
        })
    }

    /// The cluster at a glance: servers, MediaServers, SQL and bus health as this server
    /// sees them, license use. Parts whose source is away are left empty rather than failing
    /// the whole answer, so the console can show an outage.
    pub async fn overview(&self) -> AppResult<Overview> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let health = super::operations::readiness_details(server).await;
        let servers = match self.servers().await {
            Ok(list) => list,
            Err(_) => ServerList {
                servers: self.live_servers().await,
                media: Vec::new(),
            },
        };
        Ok(Overview {
            server: server.id.clone(),
            at_ms: now_ms(),
            servers: servers.servers,
            media: servers.media,
            checks: health.checks,
            licenses: self.licenses().await.unwrap_or_default(),
            users: server.sql(server.store.count_users()).await.ok(),
            role: self.role,
        })
    }

    // ------------------------------------------------------------------ groups

    pub async fn groups(&self) -> AppResult<Vec<GroupInfo>> {
        self.require(AdminAction::Read)?;
        Ok(self
            .server
            .sql(self.server.store.list_groups())
            .await?
            .into_iter()
            .map(group_info)
            .collect())
    }

    pub async fn create_group(&self, request: CreateGroup) -> AppResult<GroupInfo> {
        self.require(AdminAction::ChangeUsers)?;
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
        self.require(AdminAction::ChangeUsers)?;
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
        self.require(AdminAction::ChangeUsers)?;
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
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let registered = server.sql(server.store.list_servers()).await?;
        let mut servers = self.live_servers().await;
        for record in registered {
            if !servers.iter().any(|s| s.id == record.id) {
                servers.push(ServerInfo {
                    id: record.id,
                    url: record.url,
                    alive: false,
                    sessions: 0,
                    devices: 0,
                    last_seen_ms: 0,
                    version: String::new(),
                    calls: 0,
                    state: String::new(),
                    reason: String::new(),
                    group: None,
                    since_ms: 0,
                    stats: None,
                });
            }
        }
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        self.add_states(&mut servers).await;
        Ok(ServerList {
            servers,
            media: self.media().await?,
        })
    }

    /// Each server's high-availability state and its reason, from who serves the users of
    /// each home now (`core::ownership::node_states`).
    async fn add_states(&self, servers: &mut [ServerInfo]) {
        let server = &self.server;
        // Read afresh: an admin's command a moment ago may not be in the view yet (it is
        // refreshed every heartbeat), and the answer must show it.
        let settings = server.refresh_view().await;
        let users = server
            .sql(server.store.list_users())
            .await
            .unwrap_or_default();
        let mut homes: std::collections::BTreeMap<ServerId, Vec<UserId>> = Default::default();
        for user in users {
            homes.entry(user.home_server).or_default().push(user.id);
        }
        let states = server.owners.node_states(&homes);
        let set_at = |setting: &str, id: &ServerId| {
            let field = crate::owners::field(setting, id);
            settings
                .iter()
                .find(|(f, _)| *f == field)
                .and_then(|(_, at)| at.parse::<TimestampMs>().ok())
        };
        // The newest failover or drain: since then a backup serves others' users.
        let newest_move = settings
            .iter()
            .filter(|(f, _)| {
                f.starts_with(&format!("{}:", crate::owners::AWAY))
                    || f.starts_with(&format!("{}:", crate::owners::DRAIN))
            })
            .filter_map(|(_, at)| at.parse::<TimestampMs>().ok())
            .max();
        for info in servers {
            match states.get(&info.id) {
                Some(status) => {
                    use crate::core::ownership::NodeState;
                    info.state = status.state.as_str().to_string();
                    info.reason = status.reason.clone();
                    info.since_ms = match status.state {
                        NodeState::FailedOver | NodeState::Failed => info.last_seen_ms,
                        NodeState::Draining | NodeState::FailingOver => {
                            set_at(crate::owners::DRAIN, &info.id).unwrap_or(info.since_ms)
                        }
                        NodeState::RunningInBackupMode | NodeState::TakingOver => {
                            info.since_ms.max(newest_move.unwrap_or(0))
                        }
                        _ => info.since_ms,
                    };
                }
                None => {
                    info.state = "unknown".to_string();
                    info.reason = "never heard from".to_string();
                }
            }
        }
    }

    /// Spreads the users over the live servers that are not draining: each user's home
    /// becomes their rendezvous choice among them (`core::ownership::preferred_home`), so an
    /// added server takes about its share and nobody else moves. Online users follow on the
    /// next heartbeat (handed over: no new sign-in). With `dry_run` only the preview.
    pub async fn rebalance(&self, dry_run: bool) -> AppResult<Rebalance> {
        self.require(AdminAction::ChangeCluster)?;
        let server = &self.server;
        let targets: Vec<ServerId> = server
            .owners
            .links()
            .into_iter()
            .map(|link| link.id)
            .filter(|id| !server.owners.is_draining(id))
            .collect();
        if targets.is_empty() {
            return Err(AppError::new(
                ErrorCode::ServerUnavailable,
                "no live server to spread users over",
            ));
        }
        let users = server.sql(server.store.list_users()).await?;
        let mut moves = Vec::new();
        let mut homes: std::collections::BTreeMap<ServerId, u32> = Default::default();
        for user in users {
            let Some(to) = crate::core::ownership::preferred_home(&user.id, &targets) else {
                continue;
            };
            *homes.entry(to.clone()).or_default() += 1;
            if *to != user.home_server {
                moves.push(UserMove {
                    user: user.id,
                    from: user.home_server,
                    to: to.clone(),
                });
            }
        }
        if !dry_run {
            for one in &moves {
                let update = UserUpdate {
                    home_server: Some(one.to.clone()),
                    changed_by: Some(self.actor.user.clone()),
                    changed_ms: now_ms(),
                    ..UserUpdate::default()
                };
                server
                    .sql(server.store.update_user(&one.user, &update))
                    .await?;
            }
            self.audit("server.rebalance", format!("{} users moved", moves.len()))
                .await;
            let moved: Vec<UserId> = moves.iter().map(|m| m.user.clone()).collect();
            if !moved.is_empty() {
                server.relations_changed(moved).await;
            }
        }
        Ok(Rebalance {
            applied: !dry_run,
            moves,
            homes,
        })
    }

    /// Carries out an admin's high-availability command for server `id`: the settings go
    /// to the cluster store, every server sees them on its next heartbeat and moves users
    /// without disconnecting them (each device is told where to reconnect).
    pub async fn server_action(
        &self,
        id: &ServerId,
        action: ServerAction,
    ) -> AppResult<ServerList> {
        use crate::owners::{DRAIN, FALLBACK, HOLD, field};
        self.require(AdminAction::ChangeCluster)?;
        let server = &self.server;
        let known = server
            .sql(server.store.list_servers())
            .await?
            .iter()
            .any(|record| &record.id == id);
        if !known {
            return Err(AppError::not_found(format!("there is no server '{id}'")));
        }
        let now = now_ms().to_string();
        let set: &[(&str, Option<&str>)] = match action {
            ServerAction::Drain | ServerAction::Failover => &[(DRAIN, Some(&now))],
            ServerAction::Undrain => &[(DRAIN, None)],
            ServerAction::Fallback => &[(DRAIN, None), (HOLD, None), (FALLBACK, Some(&now))],
            ServerAction::Hold => &[(HOLD, Some(&now))],
            ServerAction::Recover => &[(DRAIN, None), (HOLD, None), (FALLBACK, None)],
        };
        for (setting, value) in set {
            server
                .cluster
                .ha_set(&field(setting, id), *value)
                .await
                .map_err(|error| {
                    AppError::new(
                        ErrorCode::ServerUnavailable,
                        format!("the cluster store cannot be reached: {error}"),
                    )
                })?;
        }
        self.audit(&format!("server.{}", action.as_str()), id.to_string())
            .await;
        self.servers().await
    }

    /// The UCServers whose heartbeats the cluster holds now (no SQL needed).
    async fn live_servers(&self) -> Vec<ServerInfo> {
        let server = &self.server;
        let seen = server
            .bus("list servers", server.cluster.servers())
            .await
            .unwrap_or_default();
        let dead_after = server.config.dead_after_ms as i64;
        let mut servers: Vec<ServerInfo> = seen
            .into_iter()
            .map(|live| ServerInfo {
                alive: live.age_ms <= dead_after,
                stats: (live.age_ms <= dead_after).then_some(live.heartbeat.stats),
                id: live.heartbeat.id,
                url: live.heartbeat.url,
                sessions: live.heartbeat.sessions,
                devices: live.heartbeat.devices,
                last_seen_ms: live.last_seen_ms,
                version: live.heartbeat.version,
                calls: live.heartbeat.calls,
                state: String::new(),
                reason: String::new(),
                group: live.heartbeat.group,
                since_ms: live.alive_since_ms,
            })
            .collect();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        servers
    }

    pub async fn licenses(&self) -> AppResult<Vec<LicenseInfo>> {
        self.require(AdminAction::Read)?;
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
        self.require(AdminAction::ChangeCluster)?;
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
        self.require(AdminAction::Read)?;
        self.server
            .media
            .infos(&*self.server.store, &*self.server.cluster)
            .await
    }

    pub async fn add_media(&self, request: AddMediaServer) -> AppResult<MediaServerInfo> {
        self.require(AdminAction::ChangeCluster)?;
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

    /// Takes a MediaServer out of service (`drain`: no new call; its running calls go on) or
    /// back (`false`). Every UCServer's next choice sees it.
    pub async fn drain_media(&self, id: &MediaServerId, drain: bool) -> AppResult<MediaServerInfo> {
        self.require(AdminAction::ChangeCluster)?;
        let server = &self.server;
        let known = server.media.infos(&*server.store, &*server.cluster).await?;
        if !known.iter().any(|m| &m.id == id) {
            return Err(AppError::not_found(format!(
                "there is no MediaServer '{id}'"
            )));
        }
        let field = crate::media::drain_field(id);
        let at = now_ms().to_string();
        server
            .cluster
            .ha_set(&field, drain.then_some(at.as_str()))
            .await
            .map_err(|e| {
                AppError::new(
                    ErrorCode::ServerUnavailable,
                    format!("the cluster store cannot be reached: {e}"),
                )
            })?;
        self.audit(
            if drain {
                "media.drain"
            } else {
                "media.undrain"
            },
            id.to_string(),
        )
        .await;
        let after = server.media.infos(&*server.store, &*server.cluster).await?;
        after
            .into_iter()
            .find(|m| &m.id == id)
            .ok_or_else(|| AppError::not_found(format!("there is no MediaServer '{id}'")))
    }

    pub async fn remove_media(&self, id: &MediaServerId) -> AppResult<()> {
        self.require(AdminAction::ChangeCluster)?;
        self.server
            .sql(self.server.store.remove_media_server(id))
            .await?;
        self.audit("media.remove", id.to_string()).await;
        Ok(())
    }
}

/// Users as the admin API shows them, with whether each is online now.
async fn admin_users(server: &Server, users: Vec<UserRecord>) -> Vec<AdminUser> {
    let online = super::online_flags(server, &users).await;
    users
        .into_iter()
        .zip(online)
        .map(|(user, online)| AdminUser {
            id: user.id,
            display_name: user.display_name,
            home_server: user.home_server,
            admin: user.admin,
            role: user.role,
            disabled: user.disabled,
            online,
            created_ms: user.created_ms,
            version: user.version,
            changed_by: user.changed_by,
            changed_ms: user.changed_ms,
        })
        .collect()
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
