//! Peers and heartbeats: this server's heartbeat in the cluster store, noticing when the
//! store was away or came back empty (then everything this server owns is re-published:
//! `resync`), keeping the view of who serves whom fresh (`owners.rs`) and acting on it (users
//! served elsewhere now are handed over; a server back from a failover takes its users back
//! when the fallback is due), noticing that this server itself lapsed (paused, cut off) and
//! keeping only the users it still owns, finding peers that stopped beating and failing over
//! from them (one survivor per dead peer, chosen by a lock: their seats move to the users'
//! backups, their other leases return, and users no backup claims within the grace go
//! offline), and the cleanup after this server's own previous incarnation at start.
//!
//! [`Peers`] is owned by the heartbeat task, the only one that beats: what it last saw of
//! the store needs no lock.

use crate::core::license;
use crate::owners;
use crate::server::Server;
use futures_util::StreamExt;
use shared::bus::{BusBody, ServerHeartbeat};
use shared::presence::{Availability, PresenceSnapshot};
use shared::{ServerId, TimestampMs, UserId, now_ms};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Beats between two checks for seats held with no signed-in user.
const STALE_SEAT_CHECK_EVERY: u64 = 30;

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
    /// Beats so far.
    beats: u64,
    /// Users of dead peers that no backup had claimed at the failover, and users handed to
    /// this server whose devices have not arrived (due now: `Owners::take_arrivals`), with
    /// when they go offline for their watchers unless a live server claims them by then.
    unclaimed: Vec<(Vec<UserId>, Instant)>,
    /// No peer is declared dead before this: the store was away or changed (a restart, a
    /// promoted replica whose heartbeats may be seconds old) and every server needs a window
    /// to beat into it again.
    quiet_until: Option<Instant>,
    /// Softphone leases the store says this server holds, found after a resync, for no call
    /// of this server (a release lost or never replicated); returned on the next beat unless
    /// a call took them meanwhile.
    stale_softphones: Vec<String>,
    /// Users kept here for their calls although served elsewhere now (announced each beat).
    held_in_calls: BTreeSet<UserId>,
}

impl Peers {
    /// Heartbeat plus outage detection: when the cluster store comes back after failures, or
    /// comes back empty (a new epoch), everything this server owns is re-published. Then the
    /// high-availability duties (see the module's documentation).
    pub async fn beat(&mut self, server: &Server) {
        if server.owners.leaving() {
            return;
        }
        let paused = server.owners.suspended();
        let lapsed = heartbeat(server).await;
        server.refresh_view().await;
        // A peer a beat and a half late whose port refuses connections was killed: it is
        // declared dead now rather than after the failure detector's window.
        let late_ms = (server.config.heartbeat_ms * 3 / 2) as i64;
        for peer in server.owners.late_peers(late_ms) {
            server.declare_dead_if_killed(&peer).await;
        }
        if paused || (self.beats > 0 && lapsed == Some(true)) {
            tracing::warn!(
                paused,
                "this server lapsed (paused or cut off): keeping only the users it still owns"
            );
            keep_only_owned(server).await;
        }
        if paused {
            server.owners.resume();
        }
        self.beats += 1;
        self.resync_if_needed(server).await;
        hand_over_served_elsewhere(server, &mut self.held_in_calls).await;
        take_back_when_due(server).await;
        for user in server.owners.settle_due() {
            if let Err(error) = server.chat.announce_heads(&user).await {
                tracing::warn!(%user, error = %error.0.message, "could not tell a user's devices where their conversations stand");
            }
        }
        self.mark_unclaimed_offline(server).await;
        if self.beats.is_multiple_of(STALE_SEAT_CHECK_EVERY) && self.stale_seats.is_empty() {
            self.stale_seats = seats_without_token(server).await;
        }
    }

    /// The store-outage half of a beat.
    async fn resync_if_needed(&mut self, server: &Server) {
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
            self.quiet_until =
                Some(Instant::now() + Duration::from_millis(server.config.dead_after_ms));
            resync(server).await;
            self.stale_seats = seats_without_token(server).await;
            self.stale_softphones = softphones_without_call(server).await;
        } else {
            server.chat.republish().await;
            return_stale_seats(server, std::mem::take(&mut self.stale_seats)).await;
            let in_calls = server.calls.softphone_leases();
            for key in std::mem::take(&mut self.stale_softphones) {
                if !in_calls.contains(&key) {
                    tracing::info!(lease = %key, "returning a softphone lease held for no call");
                    server.licenses.release(license::SOFTPHONE, &key).await;
                }
            }
        }
    }

    /// Users of a dead peer that no backup claimed within the grace go offline for their
    /// watchers (their devices did not come back).
    async fn mark_unclaimed_offline(&mut self, server: &Server) {
        self.unclaimed.extend(server.owners.take_arrivals());
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unclaimed)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.unclaimed = later;
        for (users, _) in due {
            let Some(owners) = server.bus("owners", server.cluster.owners(&users)).await else {
                continue;
            };
            let offline: Vec<UserId> = users
                .into_iter()
                .zip(owners)
                .filter(|(_, owner)| !owner.as_ref().is_some_and(|o| server.owners.is_alive(o)))
                .map(|(user, _)| user)
                .collect();
            if !offline.is_empty() {
                tracing::info!(
                    users = offline.len(),
                    "users of a dead server did not come back; offline"
                );
                for user in &offline {
                    server.return_seat(user).await;
                }
                mark_offline(server, &offline).await;
            }
        }
    }
}

/// Everyone this server has something of: users with devices or client tokens here.
fn local_users(server: &Server) -> Vec<UserId> {
    let mut users: BTreeSet<UserId> = server.devices.online_users().into_iter().collect();
    users.extend(server.tokens.client_token_users());
    users.into_iter().collect()
}

/// Claims every local user again (the records may be gone: Redis restarted) and hands over
/// those another live server holds now (this server was paused or cut off meanwhile).
async fn keep_only_owned(server: &Server) {
    for user in local_users(server) {
        if let Some(crate::cluster::OwnerClaim::Held { by }) = server.claim(&user).await {
            server
                .hand_over(
                    &user,
                    &by,
                    "another server took over while this one was away",
                )
                .await;
        }
    }
}

/// Marks `of`'s users away on their backups since now: its return is a fallback.
async fn mark_away(server: &Server, of: &ServerId) {
    let field = owners::field(owners::AWAY, of);
    server
        .bus(
            "mark away",
            server.cluster.ha_set(&field, Some(&now_ms().to_string())),
        )
        .await;
}

/// A graceful stop in a cluster: this server counts as dead for every server at once and
/// hands each of its users to the server that serves them now (their backup): devices are
/// told where to reconnect, seats move, nobody signs in again or goes offline. Its users are
/// marked away, so that it takes them back once it is back for the fallback delay (or on an
/// admin's command). Users nobody else can serve (no live peer, or none in their redundancy
/// group) stay for the goodbye that follows, as on a single node.
pub async fn leave(server: &Server) {
    let users = local_users(server);
    let peers_alive = server
        .owners
        .links()
        .iter()
        .any(|link| link.id != server.id);
    if users.is_empty() || !peers_alive {
        return;
    }
    server.owners.set_leaving();
    mark_away(server, &server.id).await;
    server
        .bus(
            "declare this server dead",
            server.cluster.declare_dead(
                &server.id,
                &server.incarnation,
                server.config.dead_after_ms,
            ),
        )
        .await;
    server.refresh_view().await;
    let mut handed = 0;
    for user in users {
        let Ok(serving) = server.relations.server_of(&user).await else {
            continue;
        };
        if serving != server.id && server.owners.is_alive(&serving) {
            server
                .hand_over(&user, &serving, "their server is stopping")
                .await;
            handed += 1;
        }
    }
    tracing::info!(
        users = handed,
        "stopping: users handed over to their backups"
    );
}

/// Hands over every local user whom another live server serves now (their home is back and
/// the fallback is due, or an admin drains this server), except users in a call: they move
/// when it ends. Meanwhile every server is told (each beat) that they are still here, so
/// that what is for them comes here; once handed over, that they are not.
async fn hand_over_served_elsewhere(server: &Server, held_in_calls: &mut BTreeSet<UserId>) {
    let mut still_held = BTreeSet::new();
    for user in local_users(server) {
        // Who serves them by the view (not `server_of`, which names this server while it
        // holds them for a call).
        let Ok(home) = server.relations.home_of(&user).await else {
            continue;
        };
        let Some(to) = server
            .owners
            .serving(&user, &home)
            .filter(|to| *to != server.id && server.owners.is_alive(to))
        else {
            continue;
        };
        if !server.telephony.calls_of(&user).is_empty() {
            still_held.insert(user);
            continue;
        }
        server
            .hand_over(&user, &to, "their server serves them again")
            .await;
    }
    let released: Vec<UserId> = held_in_calls.difference(&still_held).cloned().collect();
    if !released.is_empty() {
        server.relations.released_by(&server.id, &released);
        server
            .broadcast(BusBody::UsersReleased { users: released })
            .await;
    }
    if !still_held.is_empty() {
        let users: Vec<UserId> = still_held.iter().cloned().collect();
        let for_ms = 3 * server.config.heartbeat_ms;
        let until = Instant::now() + Duration::from_millis(for_ms);
        server.relations.held_by(&server.id, &users, until);
        server.broadcast(BusBody::UsersHeld { users, for_ms }).await;
    }
    *held_in_calls = still_held;
}

/// A server back from a failover takes its users back once the fallback is due: it clears
/// its `away` mark, so that every server sees it serve its own users again.
async fn take_back_when_due(server: &Server) {
    if server.owners.users_away() && server.owners.serves_own_users() {
        tracing::info!("taking this server's users back from their backups");
        for setting in [owners::AWAY, owners::FALLBACK] {
            let field = owners::field(setting, &server.id);
            server
                .bus("clear setting", server.cluster.ha_set(&field, None))
                .await;
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

/// Softphone leases the store has for this server that none of its calls holds.
async fn softphones_without_call(server: &Server) -> Vec<String> {
    let held = server
        .bus(
            "softphone leases held",
            server.cluster.leases_held(license::SOFTPHONE, &server.id),
        )
        .await
        .unwrap_or_default();
    let in_calls = server.calls.softphone_leases();
    held.into_iter()
        .filter(|key| !in_calls.contains(key))
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
        server.return_seat(&user).await;
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
    keep_only_owned(server).await;
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
    // So are the softphone leases of this server's calls.
    for key in server.calls.softphone_leases() {
        let _ = server
            .cluster
            .lease_acquire(license::SOFTPHONE, &key, &server.id, None)
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

/// Beats; returns whether this server had lapsed (`None`: the store did not answer).
pub async fn heartbeat(server: &Server) -> Option<bool> {
    let heartbeat = ServerHeartbeat {
        id: server.id.clone(),
        url: server.url.clone(),
        incarnation: server.incarnation.clone(),
        sessions: server.metrics.sessions.load(Ordering::Relaxed).max(0) as u64,
        devices: server.metrics.devices.load(Ordering::Relaxed).max(0) as u64,
        at_ms: now_ms(),
        group: server.config.redundancy_group.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        calls: server.metrics.calls_active.load(Ordering::Relaxed).max(0) as u64,
        ha_protocol: shared::bus::HA_PROTOCOL,
        stats: server.metrics.stats(&server.metrics.beat_cpu),
    };
    server
        .bus(
            "heartbeat",
            server
                .cluster
                .heartbeat(&heartbeat, server.config.dead_after_ms),
        )
        .await
}

/// Takes one sample of this server's load and counters for the console's charts, keeps it,
/// and appends it to the server's history in the cluster store (`history.rs`).
pub async fn record_sample(server: &Server) {
    let sample = shared::console::StatsSample {
        at_ms: now_ms(),
        sessions: server.metrics.sessions.load(Ordering::Relaxed).max(0) as u64,
        devices: server.metrics.devices.load(Ordering::Relaxed).max(0) as u64,
        calls: server.metrics.calls_active.load(Ordering::Relaxed).max(0) as u64,
        stats: server.metrics.stats(&server.history.cpu),
    };
    server.history.record(sample.clone());
    let history = &server.history;
    server
        .bus(
            "stats sample",
            server
                .cluster
                .push_sample(&server.id, &sample, history.keep(), history.ttl_ms()),
        )
        .await;
}

impl Peers {
    /// Finds dead peers and fails over from each one that no other survivor is handling.
    pub async fn sweep_dead_servers(&mut self, server: &Server) {
        if server.owners.leaving() || self.quiet_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
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
            tracing::warn!(server = %dead, "peer missed its heartbeats; failing over from it");
            let unclaimed = fail_over_from(server, &dead).await;
            if !unclaimed.is_empty() {
                let grace = Duration::from_millis(server.config.dead_after_ms);
                self.unclaimed.push((unclaimed, Instant::now() + grace));
            }
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
}

/// A peer died: its users are away (its return is a fallback), each seat it held moves to
/// the user's backup (so the count stays whole while the devices reconnect there), its other
/// leases return, and it is no longer online anywhere. Returns the users no live server has
/// claimed yet: they go offline for their watchers unless one claims them within the grace.
async fn fail_over_from(server: &Server, dead: &ServerId) -> Vec<UserId> {
    mark_away(server, dead).await;
    // The view must see the peer dead before the backups are chosen.
    server.refresh_view().await;
    let seats = server
        .bus(
            "seats held",
            server.cluster.leases_held(license::SEAT, dead),
        )
        .await
        .unwrap_or_default();
    for user in seats.into_iter().map(UserId::new) {
        match server.relations.server_of(&user).await {
            Ok(backup) if &backup != dead && server.owners.is_alive(&backup) => {
                server.move_seat(&user, &backup).await;
            }
            _ => {
                server.return_seat(&user).await;
            }
        }
    }
    let released = server
        .bus("release leases", server.cluster.lease_release_holder(dead))
        .await;
    let users = server
        .bus("online users", server.cluster.online_users(dead))
        .await
        .unwrap_or_default();
    let owners = server
        .bus("owners", server.cluster.owners(&users))
        .await
        .unwrap_or_else(|| vec![None; users.len()]);
    let unclaimed: Vec<UserId> = users
        .into_iter()
        .zip(owners)
        .filter(|(_, owner)| owner.as_ref().is_none_or(|o| o == dead))
        .map(|(user, _)| user)
        .collect();
    server
        .bus("clear online", server.cluster.clear_online(dead))
        .await;
    tracing::info!(server = %dead, ?released, unclaimed = unclaimed.len(), "failed over from a dead server");
    unclaimed
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
    mark_offline(server, &users).await;
    server
        .bus("clear online", server.cluster.clear_online(dead))
        .await;
    tracing::info!(server = %dead, ?released, users = users.len(), "returned leases and marked users offline");
}

/// Publishes `users` offline (a version above the last one) for every watcher.
async fn mark_offline(server: &Server, users: &[UserId]) {
    if !users.is_empty()
        && let Some(snapshots) = server
            .bus("get presence", server.cluster.get_presence(users))
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
}
