//! Who may do what: every authorization rule of the client and admin operations, in one
//! place. The application layer ([`super::Session`], [`super::AdminSession`]) calls these
//! before it acts; front ends and components never decide access themselves. Each rule reads
//! its facts (delegations, memberships, groups) from SQL through the server's caches, and
//! answers with a typed error that tells a person what is missing.

use crate::auth::TokenInfo;
use crate::core::visibility::{self, Relation};
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::UserRecord;
use shared::api::{AdminRole, ErrorCode};
use shared::inspect::VisibilityRule;
use shared::presence::Visibility;
use shared::{ConversationId, UserId};
use std::sync::Arc;

/// The caller must be an administrator.
pub fn require_admin(actor: &TokenInfo) -> AppResult<()> {
    if actor.admin {
        Ok(())
    } else {
        Err(AppError::forbidden("this needs an administrator"))
    }
}

/// What an administrator's request does, for [`require_role`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAction {
    /// Reads anything of the admin API.
    Read,
    /// Changes users who are not administrators, groups and their members.
    ChangeUsers,
    /// Changes administrators (creates one, changes or removes one, grants or takes a role).
    ChangeAdmins,
    /// Changes the cluster: licenses, MediaServers.
    ChangeCluster,
}

/// Whether an administrator with `role` may do `action`: a full admin everything, a user
/// admin reads everything and changes users and groups, a read-only admin (helpdesk) reads.
pub fn require_role(role: AdminRole, action: AdminAction) -> AppResult<()> {
    let allowed = match action {
        AdminAction::Read => true,
        AdminAction::ChangeUsers => matches!(role, AdminRole::Full | AdminRole::Users),
        AdminAction::ChangeAdmins | AdminAction::ChangeCluster => role == AdminRole::Full,
    };
    if allowed {
        return Ok(());
    }
    let what = match action {
        AdminAction::Read => "read",
        AdminAction::ChangeUsers => "change users or groups",
        AdminAction::ChangeAdmins => "change administrators",
        AdminAction::ChangeCluster => "change licenses or servers",
    };
    Err(AppError::forbidden(format!(
        "your administrator role '{role}' may not {what}"
    )))
}

/// The administrator as stored now, for an admin request: still there, still an
/// administrator, not disabled. Returns the role to act with.
pub fn admin_role_of(record: Option<&UserRecord>) -> AppResult<AdminRole> {
    match record {
        Some(user) if user.disabled => Err(AppError::forbidden(format!(
            "the account '{}' is disabled",
            user.id
        ))),
        Some(user) => user
            .role
            .ok_or_else(|| AppError::forbidden("this needs an administrator")),
        None => Err(AppError::forbidden("the administrator no longer exists")),
    }
}

/// A disabled user cannot sign in, whatever the password.
pub fn require_enabled(user: &UserRecord) -> AppResult<()> {
    if user.disabled {
        Err(AppError::forbidden(format!(
            "the account '{}' is disabled; ask an administrator",
            user.id
        )))
    } else {
        Ok(())
    }
}

/// The caller must hold a client session, not an admin-console token.
pub fn require_client(actor: &TokenInfo) -> AppResult<()> {
    if actor.console_only {
        Err(AppError::forbidden(
            "an admin-console session cannot use the client API; sign in with /api/v1/login",
        ))
    } else {
        Ok(())
    }
}

/// Whether `actor` may act for `user` (set presence, read or change forwarding): the user
/// themself, an administrator, or a delegate the user named.
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

/// Whether `picker` may pick up calls ringing for `user`: an administrator, a delegate of the
/// user, or a member of a group with them (groups are pickup groups).
pub async fn may_pick_up(server: &Server, picker: &TokenInfo, user: &UserId) -> AppResult<()> {
    if picker.admin
        || server
            .sql(server.store.is_delegate(user, &picker.user))
            .await?
        || server
            .sql(server.store.group_mates(&picker.user))
            .await?
            .contains(user)
    {
        return Ok(());
    }
    Err(AppError::forbidden(format!(
        "you may not pick up calls of '{user}': you are neither their delegate nor in a group with them"
    )))
}

/// The caller must be a member of the conversation; returns its members.
pub async fn require_member(
    server: &Server,
    user: &UserId,
    conversation: &ConversationId,
) -> AppResult<Arc<Vec<UserId>>> {
    let members = server.relations.members_of(conversation).await?;
    if members.contains(user) {
        Ok(members)
    } else {
        Err(AppError::new(
            ErrorCode::NotAMember,
            format!("you are not a member of conversation '{conversation}'"),
        ))
    }
}

/// What `watcher` may see of `user`'s presence (the presence viewer uses the same rule).
pub async fn visibility(
    server: &Server,
    watcher: &TokenInfo,
    user: &UserId,
) -> AppResult<Visibility> {
    Ok(visibility_rule(server, &watcher.user, watcher.admin, user)
        .await?
        .0)
}

/// What `watcher` (an administrator or not) may see of `user`, and the rule that decided
/// it: the facts from SQL, the decision by `core::visibility::decide`.
pub async fn visibility_rule(
    server: &Server,
    watcher: &UserId,
    watcher_is_admin: bool,
    user: &UserId,
) -> AppResult<(Visibility, VisibilityRule)> {
    let same_user = watcher == user;
    let mut relation = Relation {
        same_user,
        watcher_is_admin,
        ..Relation::default()
    };
    if !same_user && !watcher_is_admin {
        relation.watcher_is_delegate = server.sql(server.store.is_delegate(user, watcher)).await?;
    }
    if !same_user && !watcher_is_admin && !relation.watcher_is_delegate {
        relation.in_watcher_contacts = server
            .sql(server.store.contacts(watcher))
            .await?
            .iter()
            .any(|c| &c.contact == user);
        if !relation.in_watcher_contacts {
            relation.share_group = server
                .sql(server.store.group_mates(watcher))
                .await?
                .contains(user);
        }
    }
    Ok(visibility::decide(relation))
}
