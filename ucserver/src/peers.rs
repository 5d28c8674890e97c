//! Peers and heartbeats: this server's heartbeat in the cluster store, noticing when the
//! store was away or came back empty (then everything this server owns is re-published:
//! `resync`), finding peers that stopped beating and cleaning up after them (one survivor per
//! dead peer, chosen by a lock: their users go offline for every watcher, their leases
//! return), and the same cleanup after this server's own previous incarnation at start.
//!
//! [`Peers`] is owned by the heartbeat task, the only one that beats: what it last saw of
//! the store needs no lock.

use crate::core::license;
use crate::server::Server;
use futures_util::StreamExt;
use shared::bus::{BusBody, ServerHeartbeat};
use shared::presence::{Availability, PresenceSnapshot};
use shared::{ServerId, TimestampMs, UserId, now_ms};
use std::sync::atomic::Ordering;

/// The cluster store as the heartbeat last saw it.
#[derive(Default)]
struct SeenStore {
    epoch: Option<String>,
    /// The last attempt failed: the next success means an outage ended.
    unreachable: bool,
}

/// What the heartbeat task keeps between beats.
#[derive(Default)]
pub struct Peers {
    seen: SeenStore,
    /// Seats the store says this server holds, found after a resync, for users holding no
    /// client token here: a release lost while the store was away, or one a promoted replica
    /// never received. Returned on the next beat unless the user has signed in meanwhile (a
    /// beat apart, so that a sign-in between taking its seat and holding its token is
    /// not mistaken for a stale seat).
    stale_seats: Vec<UserId>,
}

impl Peers {
    /// Heartbeat plus outage detection: when the cluster store comes back after failures, or
    /// comes back empty (a new epoch), everything this server owns is re-published.
    pub async fn beat(&mut self, server: &Server) {
        let epoch = server.bus("epoch", server.cluster.epoch()).await;
        let resubscribed = server
            .bus(
                "bus subscription",
                server.cluster.ensure_subscribed(&server.id),
            )
            .await
            .unwrap_or(false);
        let resync_needed = {
            let state = &mut self.seen;
            match epoch {
                Some(epoch) => {
                    let changed = state
                        .epoch
                        .as_ref()
                        .is_some_and(|previous| *previous != epoch);
                    let needed = changed || state.unreachable;
                    *state = SeenStore {
                        epoch: Some(epoch),
                        unreachable: false,
                    };
                    needed
                }
                None => {
                    state.unreachable = true;
                    false
                }
            }
        };
        if resync_needed || resubscribed {
            tracing::info!("the cluster store is back (or restarted empty); re-publishing state");
            resync(server).await;
            self.stale_seats = seats_without_token(server).await;
        } else {
            heartbeat(server).await;
            server.chat.republish().await;
            return_stale_seats(server, std::mem::take(&mut self.stale_seats)).await;
        }
    }
}

/// Seats the store has for this server whose users hold no client token here.
async fn seats_without_token(server: &Server) -> Vec<UserId> {
    let held = server
        .bus(
            "seats held",
            server.cluster.leases_held(license::SEAT, &server.id),
        )
        .await
        .unwrap_or_default();
    held.into_iter()
        .map(UserId::new)
        .filter(|user| !server.tokens.client_token_held(user))
        .collect()
}

/// Returns the seats found stale a beat ago whose users have still not signed in here. A
/// sign-in that took the seat again just now gets it back.
async fn return_stale_seats(server: &Server, stale: Vec<UserId>) {
    for user in stale {
        if server.tokens.client_token_held(&user) {
            continue;
        }
        tracing::info!(%user, "returning a seat held without a signed-in user");
        server
            .bus(
                "release seat",
                server.cluster.lease_release(license::SEAT, user.as_str()),
            )
            .await;
        if server.tokens.client_token_held(&user) {
            let _ = server
                .cluster
                .lease_acquire(license::SEAT, user.as_str(), &server.id, None)
                .await;
        }
    }
}

/// The bus may have lost messages (or Redis restarted empty): forget caches, re-publish
/// our own state and re-announce who is online here.
pub async fn resync(server: &Server) {
    tracing::info!("resyncing cluster state");
    // Subscribed first, so nothing published after the snapshots are read below is lost.
    server
        .bus(
            "bus subscription",
            server.cluster.ensure_subscribed(&server.id),
        )
        .await;
    server.relations.forget(&[]);
    server.licenses.forget();
    server.presence.forget_delivered();
    heartbeat(server).await;
    let users = server.devices.online_users();
    for user in &users {
        server
            .bus(
                "set online",
                server.cluster.set_online(&server.id, user, true),
            )
            .await;
        let snapshot = server.presence.current(user, now_ms());
        if let Some(snapshot) = snapshot {
            server.presence.fan_out(snapshot).await;
        }
        // Events for our users may have been lost: send them what they watch, as stored now.
        server.presence.send_watched(user, false).await;
    }
    // Seats of signed-in users (connected or not) are taken again if Redis lost them: a
    // restarted Redis is empty, a promoted replica may miss the last writes.
    for user in server.tokens.client_token_users() {
        let _ = server
            .cluster
            .lease_acquire(license::SEAT, user.as_str(), &server.id, None)
            .await;
    }
    // Deliveries to other servers that the bus refused go out now.
    server.chat.republish().await;
    // Messages stored while the bus was away never reached our users' devices: each device
    // learns where its conversations stand and fetches what it lacks.
    futures_util::stream::iter(&users)
        .for_each_concurrent(HEADS_AT_ONCE, |user| async move {
            if let Err(error) = server.chat.announce_heads(user).await {
                tracing::warn!(%user, error = %error.0.message, "could not tell a user's devices where their conversations stand");
            }
        })
        .await;
}

/// Users whose conversation heads are read from SQL at once after the bus came back.
const HEADS_AT_ONCE: usize = 8;

pub async fn heartbeat(server: &Server) {
    let heartbeat = ServerHeartbeat {
        id: server.id.clone(),
        url: server.url.clone(),
        incarnation: server.incarnation.clone(),
        sessions: server.metrics.sessions.load(Ordering::Relaxed).max(0) as u64,
        devices: server.metrics.devices.load(Ordering::Relaxed).max(0) as u64,
        at_ms: now_ms(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        calls: server.metrics.calls_active.load(Ordering::Relaxed).max(0) as u64,
    };
    server
        .bus("heartbeat", server.cluster.heartbeat(&heartbeat))
        .await;
}

/// Finds dead peers and cleans up after each one that no other survivor is cleaning.
pub async fn sweep_dead_servers(server: &Server) {
    let Some(servers) = server.bus("list servers", server.cluster.servers()).await else {
        return;
    };
    let seen: Vec<(ServerId, TimestampMs)> = servers
        .iter()
        .map(|s| (s.heartbeat.id.clone(), -s.age_ms))
        .collect();
    let dead_servers = crate::core::failure::dead_servers(
        &seen,
        &server.id,
        0,
        server.config.dead_after_ms as i64,
    );
    for dead in dead_servers {
        let lock = format!("cleanup:{dead}");
        if server
            .bus(
                "cleanup lock",
                server.cluster.try_lock(&lock, server.id.as_str(), 30_000),
            )
            .await
            != Some(true)
        {
            continue;
        }
        tracing::warn!(server = %dead, "peer missed its heartbeats; cleaning up after it");
        clean_up_after(server, &dead).await;
        server
            .bus("forget server", server.cluster.forget_server(&dead))
            .await;
        server
            .metrics
            .dead_servers_cleaned
            .fetch_add(1, Ordering::Relaxed);
        server
            .broadcast(BusBody::ServerDown {
                server: dead,
                at_ms: now_ms(),
            })
            .await;
    }
}

/// Marks the users of `dead` offline for everyone and returns its leases. Used for a
/// dead peer and, at start, for this server's own previous incarnation.
pub async fn clean_up_after(server: &Server, dead: &ServerId) {
    // Leases first: by the time watchers see the users go offline, their seats are back.
    let released = server
        .bus("release leases", server.cluster.lease_release_holder(dead))
        .await;
    let users = server
        .bus("online users", server.cluster.online_users(dead))
        .await
        .unwrap_or_default();
    if !users.is_empty()
        && let Some(snapshots) = server
            .bus("get presence", server.cluster.get_presence(&users))
            .await
    {
        for (user, snapshot) in users.iter().zip(snapshots) {
            let previous = snapshot.unwrap_or_else(|| PresenceSnapshot::offline(user.clone()));
            if previous.availability == Availability::Offline && previous.version > 0 {
                continue;
            }
            let offline = PresenceSnapshot {
                availability: Availability::Offline,
                telephony: shared::presence::TelephonyState::Idle,
                capabilities: Vec::new(),
                devices: Vec::new(),
                version: previous.version + 1,
                since_ms: now_ms(),
                ..previous
            };
            server.presence.fan_out(offline).await;
        }
    }
    server
        .bus("clear online", server.cluster.clear_online(dead))
        .await;
    tracing::info!(server = %dead, ?released, users = users.len(), "returned leases and marked users offline");
}
