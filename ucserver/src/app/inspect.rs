//! The administrator's look into live state: a user's connected devices and the kick of one
//! device (answered by the server that serves the user, wherever that is: `inspect.rs`), and
//! the presence viewer: what a watcher sees of a user and which rule decided it, taken from
//! the same decision every client's presence goes through (`authz::visibility_rule`, that is
//! `core::visibility::decide`), and who watches a user now.

use super::AdminSession;
use super::authz::{self, AdminAction};
use crate::error::{AppError, AppResult};
use crate::inspect::{self, Question};
use shared::api::ErrorCode;
use shared::inspect::{
    DeviceKicked, InspectAnswer, PresenceInspection, PresenceWatcher, PresenceWatchers,
    UserSessions,
};
use shared::presence::{Availability, PresenceView};
use shared::{DeviceId, UserId, validate_name};

/// At most this many watchers in one answer of [`AdminSession::presence_watchers`].
pub const MAX_WATCHERS_LISTED: usize = 200;

impl AdminSession {
    /// The devices of `user` connected now, as the server serving them knows them.
    pub async fn user_sessions(&self, user: &UserId) -> AppResult<UserSessions> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let home = server.relations.home_of(user).await?;
        let serving = server.relations.server_of(user).await?;
        let question = Question::Devices { user: user.clone() };
        match inspect::ask(server, &serving, question).await? {
            InspectAnswer::Devices(devices) => Ok(UserSessions {
                user: user.clone(),
                home_server: home,
                server: serving,
                devices,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Ends one device's session (its connection and tokens) on the server serving `user`;
    /// the user's other devices stay. Audited.
    pub async fn kick_device(&self, user: &UserId, device: &DeviceId) -> AppResult<DeviceKicked> {
        self.require(AdminAction::ChangeUsers)?;
        validate_name(device.as_str())
            .map_err(|error| AppError::bad_request(format!("device: {error}")))?;
        let server = &self.server;
        let serving = server.relations.server_of(user).await?;
        let question = Question::Kick {
            user: user.clone(),
            device: device.clone(),
            by: self.actor.user.clone(),
        };
        match inspect::ask(server, &serving, question).await? {
            InspectAnswer::Kicked(kicked) => {
                self.audit(
                    "user.kick",
                    format!("{user} device={device} server={}", kicked.server),
                )
                .await;
                Ok(kicked)
            }
            InspectAnswer::NoSuchDevice => Err(AppError::not_found(format!(
                "'{user}' has no device '{device}' signed in on '{serving}', the server serving them"
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// What `watcher` sees of `user` now (exactly what their client gets from
    /// `GET /presence/{user}`), and the rule that decided it.
    pub async fn presence_inspection(
        &self,
        user: &UserId,
        watcher: &UserId,
    ) -> AppResult<PresenceInspection> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        server.relations.home_of(user).await?;
        let watcher_record = self.user_record(watcher).await?;
        let (visibility, rule) =
            authz::visibility_rule(server, watcher, watcher_record.admin, user).await?;
        let snapshot = server.presence.snapshot_of(user).await;
        let live = server.relations.watchers_of(user).await?.contains(watcher);
        Ok(PresenceInspection {
            user: user.clone(),
            watcher: watcher.clone(),
            visibility,
            rule,
            explanation: rule.explain().to_string(),
            live,
            presence: PresenceView::of(&snapshot, visibility),
        })
    }

    /// Who gets `user`'s live presence events (their contacts' owners and group mates),
    /// each with the rule that makes them a watcher, whether they are online now on any
    /// server (the cluster's presence snapshots) and which server serves them.
    pub async fn presence_watchers(&self, user: &UserId) -> AppResult<PresenceWatchers> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        server.relations.home_of(user).await?;
        let mut ids: Vec<UserId> = server
            .relations
            .watchers_of(user)
            .await?
            .iter()
            .filter(|watcher| *watcher != user)
            .cloned()
            .collect();
        let truncated = ids.len() > MAX_WATCHERS_LISTED;
        ids.truncate(MAX_WATCHERS_LISTED);
        let snapshots = server
            .bus("get presence", server.cluster.get_presence(&ids))
            .await
            .unwrap_or_default();
        let mut watchers = Vec::with_capacity(ids.len());
        for (index, id) in ids.into_iter().enumerate() {
            let admin = server
                .sql(server.store.get_user(&id))
                .await?
                .is_some_and(|record| record.admin);
            let (_, rule) = authz::visibility_rule(server, &id, admin, user).await?;
            let snapshot = snapshots.get(index).cloned().flatten();
            let online = snapshot
                .as_ref()
                .is_some_and(|s| s.availability != Availability::Offline);
            let serving = if online {
                Some(server.relations.server_of(&id).await?)
            } else {
                None
            };
            watchers.push(PresenceWatcher {
                user: id,
                rule,
                online,
                devices: snapshot.map_or(0, |s| s.devices.len() as u32),
                server: serving,
            });
        }
        Ok(PresenceWatchers {
            user: user.clone(),
            watching_now: watchers.iter().filter(|w| w.online).count() as u32,
            watchers,
            truncated,
        })
    }
}

fn unexpected(answer: &InspectAnswer) -> AppError {
    tracing::warn!(?answer, "an admin question got an answer of another kind");
    AppError::new(
        ErrorCode::Internal,
        "the serving server answered another question; try again",
    )
}
