//! The application layer: the one protocol-neutral API that every front end drives.
//!
//! - [`Session`]: one signed-in device acting for one user (presence, contacts, delegates,
//!   directory, chat, catch-up, journal, calls and forwarding).
//! - [`AdminSession`]: an administrator acting on the cluster (users, groups, licenses,
//!   servers, MediaServers, the overview, runtime settings in `settings.rs`, the audit log
//!   read and exported in `audit.rs`),
//!   within the administrator's role.
//! - [`directory`]: users from outside for an administrator: bulk import/export with a dry
//!   run, and the LDAP / Active Directory sync, both through one planner (`core::directory`).
//! - [`login`]: signing in and out; [`operations`]: health, readiness and metrics.
//! - [`authz`]: every access rule, called by the layer and by nothing else.
//!
//! Layering: front ends (`http.rs`, `ws.rs`) decode, call into this layer and encode; this
//! layer checks access and calls the components (`server.rs`, `calls.rs`, `media.rs`); the
//! components use the cores, the store and the cluster. Nothing below imports this module.

pub mod admin;
pub mod audit;
pub mod authz;
pub mod delegates;
pub mod directory;
pub mod inspect;
pub mod login;
pub mod operations;
pub mod session;
pub mod settings;

pub use admin::AdminSession;
pub use session::{CatchUp, Session};

use crate::server::Server;
use crate::store::UserRecord;
use shared::UserId;
use shared::api::UserInfo;
use shared::presence::Availability;

/// Users as clients see them, with whether each is online now.
async fn user_infos(server: &Server, users: Vec<UserRecord>) -> Vec<UserInfo> {
    let online = online_flags(server, &users).await;
    users
        .into_iter()
        .zip(online)
        .map(|(user, online)| UserInfo {
            id: user.id,
            display_name: user.display_name,
            home_server: user.home_server,
            admin: user.admin,
            online,
        })
        .collect()
}

/// Whether each of `users` has a device connected now, on any server (all `false` while
/// the cluster store cannot be read).
async fn online_flags(server: &Server, users: &[UserRecord]) -> Vec<bool> {
    let ids: Vec<UserId> = users.iter().map(|u| u.id.clone()).collect();
    let snapshots = server
        .bus("get presence", server.cluster.get_presence(&ids))
        .await
        .unwrap_or_default();
    (0..users.len())
        .map(|index| {
            snapshots
                .get(index)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.availability != Availability::Offline)
        })
        .collect()
}
