//! Delegation: a user's delegates act for them (set their presence, answer and forward their
//! calls) and see everything of them, live (`core::visibility`: the `delegate` rule). A user
//! manages their own delegates (`PUT`/`DELETE /api/v1/delegates/{user}`); an administrator
//! manages anyone's (`/api/v1/admin/users/{id}/delegates`), audited. Either way the relation
//! caches of both users are dropped on every server, so presence follows at once.

use super::admin::AdminSession;
use super::authz::AdminAction;
use super::session::Session;
use crate::error::{AppError, AppResult};
use crate::server::Server;
use shared::UserId;

/// Most delegates one user may have: a secretary pool, not a directory.
pub const MAX_DELEGATES: usize = 50;

/// Adds `delegate` to `owner`'s delegates (nothing if already there).
async fn add(server: &Server, owner: &UserId, delegate: &UserId) -> AppResult<()> {
    if owner == delegate {
        return Err(AppError::bad_request("a user cannot be their own delegate"));
    }
    server.relations.home_of(delegate).await?;
    let current = server.sql(server.store.delegates(owner)).await?;
    if !current.contains(delegate) && current.len() >= MAX_DELEGATES {
        return Err(AppError::bad_request(format!(
            "'{owner}' has {MAX_DELEGATES} delegates already, the most there may be"
        )));
    }
    server
        .sql(server.store.put_delegate(owner, delegate))
        .await?;
    server
        .relations_changed(vec![owner.clone(), delegate.clone()])
        .await;
    Ok(())
}

async fn remove(server: &Server, owner: &UserId, delegate: &UserId) -> AppResult<()> {
    server
        .sql(server.store.delete_delegate(owner, delegate))
        .await?;
    server
        .relations_changed(vec![owner.clone(), delegate.clone()])
        .await;
    Ok(())
}

impl Session {
    /// Makes `user` a delegate of this user: they may then act for them.
    pub async fn add_delegate(&self, user: &UserId) -> AppResult<()> {
        add(&self.server, self.user(), user).await
    }

    pub async fn remove_delegate(&self, user: &UserId) -> AppResult<()> {
        remove(&self.server, self.user(), user).await
    }
}

impl AdminSession {
    /// The users `id` made their delegates.
    pub async fn delegates(&self, id: &UserId) -> AppResult<Vec<UserId>> {
        self.require(AdminAction::Read)?;
        self.user_record(id).await?;
        self.server.sql(self.server.store.delegates(id)).await
    }

    /// Makes `delegate` a delegate of `id`; answers `id`'s delegates now.
    pub async fn add_delegate(&self, id: &UserId, delegate: &UserId) -> AppResult<Vec<UserId>> {
        self.require(AdminAction::ChangeUsers)?;
        self.user_record(id).await?;
        add(&self.server, id, delegate).await?;
        self.audit("user.delegate.add", format!("{id} {delegate}"))
            .await;
        self.server.sql(self.server.store.delegates(id)).await
    }

    /// `delegate` no longer acts for `id`; answers `id`'s delegates now.
    pub async fn remove_delegate(&self, id: &UserId, delegate: &UserId) -> AppResult<Vec<UserId>> {
        self.require(AdminAction::ChangeUsers)?;
        self.user_record(id).await?;
        remove(&self.server, id, delegate).await?;
        self.audit("user.delegate.remove", format!("{id} {delegate}"))
            .await;
        self.server.sql(self.server.store.delegates(id)).await
    }
}
