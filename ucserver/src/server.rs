//! The running UCServer: its local sessions, the caches it keeps of shared state, and the
//! operations that the HTTP and WebSocket handlers and the background tasks call.
//!
//! Ownership: this server is the only writer of its own users' live state (devices,
//! presence). Everything durable goes to SQL first; the bus only notifies. Mutexes here are
//! `std` mutexes held for map lookups only, never across an `.await`.

use crate::auth::TokenInfo;
use crate::calls::registry::Calls;
use crate::chat::{Chat, ChatWriter};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::core::license;
use crate::core::mdm::MdmConfig;
use crate::devices::Devices;
use crate::error::{AppError, AppResult};
use crate::events::{DeviceEvent, Outgoing};
use crate::licenses::Licenses;
use crate::media::MediaPool;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::relations::Relations;
use crate::store::{Store, StoreError};
use crate::telephony::Telephony;
use crate::tokens::Tokens;
use shared::api::{ErrorCode, JournalEntry};
use shared::bus::{BusBody, BusMessage};
use shared::presence::TelephonyState;
use shared::presence::{Availability, Capability, DevicePresence};
use shared::ws::ServerEvent;
use shared::{CallId, DeviceId, ServerId, TimestampMs, UserId, now_ms};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// How long a client waits before knocking again while another server still holds its user.
pub const CLAIM_RETRY_MS: u64 = 500;

/// Longest a peer's announcement that it holds users for their calls is believed.
const MAX_HOLD_MS: u64 = 60_000;

/// A view older than this is read again before a client is sent to another server.
const FRESH_VIEW: std::time::Duration = std::time::Duration::from_millis(200);

pub struct Server {
    pub id: ServerId,
    pub url: String,
    /// Random per process start; peers see a restart by its change.
    pub incarnation: String,
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub cluster: Arc<dyn Cluster>,
    pub metrics: Arc<Metrics>,
    /// The connected devices of this server's users.
    pub devices: Arc<Devices>,
    /// This server's users' presence, and delivery of everyone's to the watchers here.
    pub presence: Presence,
    /// token -> (what it stands for, when it was last used)
    pub tokens: Tokens,
    /// Cluster-wide login throttling and the trusted proxies (`login_guard.rs`).
    pub login_guard: crate::login_guard::LoginGuard,
    /// The bounded password hashing pool (`password.rs`).
    pub passwords: crate::password::PasswordPool,
    /// The directory users may come from, and what its last read found (`ldap.rs`).
    pub directory: crate::ldap::Directory,
    /// Per-device limits on sends, typing and new conversations (`rate_limit.rs`).
    pub rate_limits: crate::rate_limit::RateLimits,
    /// Chat: checks and queues messages for the writer, delivers stored ones, read markers,
    /// typing, conversation changes.
    pub chat: Arc<Chat>,
    /// The calls this server owns, and commands waiting for other servers.
    pub calls: Calls,
    /// The MediaServers this server may place calls on.
    pub media: MediaPool,
    /// Each local user's part in each of their calls, and who forwards every call.
    pub telephony: Telephony,
    /// Home servers, watchers and conversation members, read from SQL and cached.
    pub relations: Arc<Relations>,
    /// License capacities and leases.
    pub licenses: Licenses,
    /// Who serves each user now (high availability), and whether this server may act.
    pub owners: Arc<crate::owners::Owners>,
    /// The runtime settings this server applied (`settings/`).
    pub settings: crate::settings::Live,
    /// Admin questions sent to other servers, waiting for their answers (`inspect.rs`).
    pub inquiries: crate::inquiries::Inquiries,
    /// This server's samples for the console's charts (`history.rs`).
    pub history: crate::history::History,
    /// The consoles connected here and what they are told live (`admin_feed.rs`).
    pub admin_feed: crate::admin_feed::AdminFeed,
}

impl Server {
    /// Builds the server state and the receiver its chat writer task consumes.
    pub fn new(
        config: Config,
        url: String,
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
        outbox: Arc<crate::outbox::Outbox>,
    ) -> (Arc<Self>, ChatWriter) {
        let calls = Calls::new(config.ring_timeout_ms);
        let metrics = Arc::new(Metrics::new(&config.server_id()));
        let media = MediaPool::new(
            config.media_secret.clone(),
            config.configured_media().unwrap_or_default(),
            config.media_fresh_ms,
            metrics.clone(),
        );
        let owners = Arc::new(crate::owners::Owners::new(
            config.server_id(),
            config.ownership(),
            config.dead_after_ms,
        ));
        let relations = Arc::new(Relations::new(
            store.clone(),
            metrics.clone(),
            owners.clone(),
        ));
        let licenses = Licenses::new(
            config.server_id(),
            store.clone(),
            cluster.clone(),
            metrics.clone(),
        );
        let devices = Arc::new(Devices::new(
            MdmConfig {
                buffer_limit: config.mdm_buffer_limit,
                ..MdmConfig::default()
            },
            metrics.clone(),
        ));
        let (chat, writer) = Chat::new(
            config.server_id(),
            store.clone(),
            cluster.clone(),
            metrics.clone(),
            relations.clone(),
            devices.clone(),
            outbox,
        );
        let presence = Presence::new(
            config.server_id(),
            cluster.clone(),
            metrics.clone(),
            relations.clone(),
            devices.clone(),
        );
        let trusted_proxies = config.trusted_proxies().unwrap_or_default();
        let login_guard = crate::login_guard::LoginGuard::new(cluster.clone(), trusted_proxies);
        let passwords = crate::password::PasswordPool::new(config.password_limits());
        let rate_limits = crate::rate_limit::RateLimits::new(config.rate_limits());
        let tokens = Tokens::new(config.session_lifetime_ms as i64);
        let settings = crate::settings::Live::new(crate::settings::defaults(&config));
        let directory = crate::ldap::Directory::new(config.ldap.clone());
        let history = crate::history::History::new(config.stats_sample_ms);
        let server = Arc::new(Self {
            id: config.server_id(),
            url,
            incarnation: crate::auth::random_hex(8),
            config,
            store,
            cluster,
            metrics,
            devices,
            presence,
            tokens,
            login_guard,
            passwords,
            directory,
            rate_limits,
            chat,
            calls,
            media,
            telephony: Telephony::default(),
            relations,
            licenses,
            owners,
            settings,
            inquiries: Default::default(),
            history,
            admin_feed: Default::default(),
        });
        (server, writer)
    }

    // ------------------------------------------------------------------ timing helpers

    pub async fn sql<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> AppResult<T> {
        crate::timed::sql(&self.metrics, operation).await
    }

    /// Runs a cluster operation; a failure is logged and counted, and `None` returned, because
    /// cross-server features may stop while Redis is down but local ones must go on.
    pub async fn bus<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T, crate::cluster::ClusterError>>,
    ) -> Option<T> {
        crate::timed::bus(&self.metrics, what, operation).await
    }

    pub(crate) async fn publish(&self, to: &ServerId, body: BusBody) {
        let _ = crate::timed::publish(&self.metrics, &*self.cluster, &self.id, to, body).await;
    }

    pub async fn broadcast(&self, body: BusBody) {
        let message = BusMessage::new(self.id.clone(), body);
        if self
            .bus("broadcast", self.cluster.broadcast(&message))
            .await
            .is_some()
        {
            self.metrics.bus_published.fetch_add(1, Ordering::Relaxed);
        }
    }

    // ------------------------------------------------------------------ high availability

    /// Takes `user`'s live state before serving them: granted unless a live server holds
    /// them (then `server_unavailable`: the client tries again in a moment, by when that
    /// server has handed them over or is dead). Returns whether the user came from another
    /// server, whose deliveries may have missed them meanwhile. With the cluster store away
    /// nobody can coordinate, so the user is served.
    pub async fn claim_user(&self, user: &UserId) -> AppResult<bool> {
        match self.claim(user).await {
            Some(crate::cluster::OwnerClaim::Held { by }) => {
                let mut error = crate::error::AppError::new(
                    shared::api::ErrorCode::ServerUnavailable,
                    format!("'{user}' is still served by '{by}'; try again in a moment"),
                );
                error.0.retry_after_ms = Some(CLAIM_RETRY_MS);
                Err(error)
            }
            Some(crate::cluster::OwnerClaim::Granted { moved, .. }) => Ok(moved),
            None => Ok(false),
        }
    }

    /// Claims `user` for this server's run (`Cluster::claim_owner`); `None` when the cluster
    /// store did not answer.
    pub async fn claim(&self, user: &UserId) -> Option<crate::cluster::OwnerClaim> {
        let claim = self
            .bus(
                "claim owner",
                self.cluster.claim_owner(
                    user,
                    &self.id,
                    &self.incarnation,
                    self.config.dead_after_ms,
                ),
            )
            .await;
        if matches!(claim, Some(crate::cluster::OwnerClaim::Granted { .. })) {
            self.owners.arrived(user);
        }
        claim
    }

    /// Returns `user`'s seat to the pool.
    pub async fn return_seat(&self, user: &UserId) {
        self.bus(
            "release seat",
            self.cluster.lease_release(license::SEAT, user.as_str()),
        )
        .await;
    }

    /// Gives `user`'s seat to server `to` (it serves them from now on): the count stays whole.
    pub async fn move_seat(&self, user: &UserId, to: &ServerId) {
        self.bus(
            "move seat",
            self.cluster
                .lease_acquire(license::SEAT, user.as_str(), to, None),
        )
        .await;
    }

    /// Hands `user` to `to`: every device is told where to reconnect and cut off (without
    /// going offline for watchers: `to` publishes their presence next), their tokens here are
    /// forgotten (they stay valid in SQL, so `to` takes them up), their seat moves to `to`,
    /// and last the ownership record is released, so that `to` can claim the user only once
    /// this server has stopped serving them.
    pub async fn hand_over(&self, user: &UserId, to: &ServerId, reason: &str) {
        let url = self.owners.url(to).unwrap_or_default();
        tracing::info!(%user, server = %to, reason, "handing a user over");
        let reconnect = ServerEvent::Reconnect {
            server: to.clone(),
            url,
            reason: reason.to_string(),
        };
        self.devices.drop_user(user, &reconnect);
        self.presence.forget_user(user);
        let had_seat = self.tokens.client_token_held(user);
        self.tokens.remove_user(user);
        self.bus(
            "set offline",
            self.cluster.set_online(&self.id, user, false),
        )
        .await;
        if had_seat {
            self.move_seat(user, to).await;
        }
        self.bus("release owner", self.cluster.release_owner(user, &self.id))
            .await;
        self.owners.arrived(user);
        self.publish(
            to,
            BusBody::HandedOver {
                users: vec![user.clone()],
            },
        )
        .await;
        self.metrics.handovers.fetch_add(1, Ordering::Relaxed);
    }

    // ------------------------------------------------------------------ tokens

    /// A new session token; kept in SQL (hashed) too, so that it outlives a restart.
    pub async fn issue_token(&self, info: TokenInfo) -> AppResult<String> {
        let token = crate::auth::random_hex(24);
        let record = crate::store::SessionRecord {
            token_hash: crate::auth::token_hash(&token),
            user: info.user.clone(),
            device: info.device.clone(),
            admin: info.admin,
            console_only: info.console_only,
            issued_ms: info.issued_ms,
        };
        self.sql(self.store.put_session(&record)).await?;
        self.tokens.hold(token.clone(), info, now_ms());
        Ok(token)
    }

    /// What a token stands for; using it keeps it alive. A token held elsewhere (the user
    /// was served by another server that died or handed them over, or this server restarted)
    /// is found in SQL and taken up here if this server serves the user now (claiming them
    /// and their seat); otherwise the answer is `wrong_server` naming the server that does.
    /// A token older than the session lifetime is refused and ended, on this path and on the
    /// SQL path alike.
    pub async fn token(&self, token: &str) -> AppResult<TokenInfo> {
        let unknown = || {
            AppError::new(
                ErrorCode::Unauthorized,
                "the session token is unknown or has ended; sign in again",
            )
        };
        if !self.owners.may_act() {
            // Paused past the failure detector's window: its users may be served elsewhere
            // now; the next heartbeat tells.
            let mut error = AppError::new(
                ErrorCode::ServerUnavailable,
                "this server is checking which users it still serves; try again in a moment",
            );
            error.0.retry_after_ms = Some(CLAIM_RETRY_MS);
            return Err(error);
        }
        let now = now_ms();
        if let Some(info) = self.tokens.use_token(token, now) {
            if self.tokens.is_fresh(info.issued_ms, now) {
                return Ok(info);
            }
            tracing::info!(user = %info.user, device = %info.device, "session ended: too old");
            self.end_token(token).await;
            // Its open socket ends too, whichever notices first (this request or the sweep).
            self.drop_device(
                &info.user,
                &info.device,
                "your session has ended; sign in again",
            );
            return Err(unknown());
        }
        if token.len() > 128 {
            return Err(unknown());
        }
        let hash = crate::auth::token_hash(token);
        let record = self
            .sql(self.store.get_session(&hash))
            .await?
            .ok_or_else(unknown)?;
        if !self.tokens.is_fresh(record.issued_ms, now) {
            let _ = self.sql(self.store.delete_session(&hash)).await;
            return Err(unknown());
        }
        let user = record.user.clone();
        if !record.console_only {
            let home = self.relations.home_of(&user).await?;
            let serving = self.serving_for_client(&user, &home).await;
            if serving != self.id {
                return Err(self.served_elsewhere(&user, &serving));
            }
            if self.claim_user(&user).await? {
                self.metrics.takeovers.fetch_add(1, Ordering::Relaxed);
                self.settle_after_takeover(&user);
            }
            // The seat went back when this server restarted, or it is the server that held
            // the user before: it moves here. Without one the session is over.
            if let Err(error) = self.licenses.acquire(license::SEAT, user.as_str()).await {
                tracing::warn!(%user, %error, "restored session refused: no seat");
                return Err(error);
            }
        }
        let info = TokenInfo {
            user: record.user,
            device: record.device,
            admin: record.admin,
            console_only: record.console_only,
            issued_ms: record.issued_ms,
        };
        tracing::info!(user = %info.user, device = %info.device, "session taken up from SQL");
        self.tokens.hold(token.to_string(), info.clone(), now_ms());
        Ok(info)
    }

    /// Who serves `user` (home `home`) now, for a client knocking here. When the view names
    /// another server it is looked at again before the client is sent there: read afresh
    /// when older than [`FRESH_VIEW`] (a peer may have stopped, or been found dead, since the
    /// last heartbeat), and a serving server whose beat is late is probed: one whose port
    /// refuses connections is declared dead at once, and its users are served here or by
    /// their backup without waiting out the failure detector's window.
    pub async fn serving_for_client(&self, user: &UserId, home: &ServerId) -> ServerId {
        let serving = || {
            self.owners
                .serving(user, home)
                .unwrap_or_else(|| home.clone())
        };
        let mut now = serving();
        if now == self.id {
            return now;
        }
        if !self.owners.refreshed_within(FRESH_VIEW) {
            self.refresh_view().await;
            now = serving();
        }
        if now != self.id && self.declare_dead_if_killed(&now).await {
            now = serving();
        }
        now
    }

    /// Probes `peer` if its beat is late (by one heartbeat period); a peer whose port refuses
    /// connections is declared dead in the cluster store and the view read again. Returns
    /// whether it was.
    pub async fn declare_dead_if_killed(&self, peer: &ServerId) -> bool {
        let Some((url, incarnation)) = self.owners.late_peer(peer, self.config.heartbeat_ms as i64)
        else {
            return false;
        };
        if !self.owners.may_probe(peer) || !crate::probe::refuses_connections(&url).await {
            return false;
        }
        let declared = self
            .bus(
                "declare dead",
                self.cluster
                    .declare_dead(peer, &incarnation, self.config.dead_after_ms),
            )
            .await
            == Some(true);
        if declared {
            tracing::warn!(server = %peer, %url, "peer missed its beat and refuses connections: declared dead");
            self.metrics
                .peers_found_killed
                .fetch_add(1, Ordering::Relaxed);
            self.refresh_view().await;
        }
        declared
    }

    /// Reads every server's beat and the high-availability settings into the view; returns
    /// the settings as read (empty when the cluster store did not answer).
    pub async fn refresh_view(&self) -> Vec<(String, String)> {
        let Some(seen) = self.bus("list servers", self.cluster.servers()).await else {
            self.owners.refresh_failed();
            return Vec::new();
        };
        let settings = self
            .bus("ha settings", self.cluster.ha_all())
            .await
            .unwrap_or_default();
        self.owners.refresh(&seen, &settings);
        settings
    }

    /// `wrong_server` for a user that `serving` serves: where the client should go. While
    /// `serving` has missed beats (paused, cut off, or dead and not yet found so) the client
    /// is asked to try here again shortly instead: sent there it would wait for an answer
    /// that may never come, and here it is served once the failure detector decides.
    pub fn served_elsewhere(&self, user: &UserId, serving: &ServerId) -> AppError {
        let missed_beats = 2 * self.config.heartbeat_ms as i64;
        if self.owners.late_peer(serving, missed_beats).is_some() {
            let mut error = AppError::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "'{user}' is served by '{serving}', which has stopped answering; try again in a moment"
                ),
            );
            error.0.retry_after_ms = Some(CLAIM_RETRY_MS);
            return error;
        }
        let mut error = AppError::new(
            ErrorCode::WrongServer,
            format!("'{user}' is served by server '{serving}' now; connect there"),
        );
        error.0.home_server = Some(serving.clone());
        error.0.home_url = self.owners.url(serving);
        error
    }

    /// After taking a user over from another server, their devices are told a little later
    /// (by the heartbeat) where their conversations stand: deliveries that went to the other
    /// server while the user moved are fetched from SQL then.
    fn settle_after_takeover(&self, user: &UserId) {
        self.owners.settle_later(user.clone());
    }

    /// Forgets sessions older than their lifetime (at start; restored ones are checked too).
    pub async fn expire_stored_sessions(&self) {
        let cutoff = self.tokens.cutoff(now_ms());
        match self.sql(self.store.delete_sessions_before(cutoff)).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired stored sessions"),
            Err(error) => tracing::warn!(%error, "stored sessions not expired"),
        }
    }

    /// Ends tokens unused for `idle_ms` whose user has no device connected here, so a client
    /// that vanished without logging out does not hold its seat forever.
    /// Tokens past their lifetime end too, and the device they stand for is told and
    /// disconnected: an open socket does not outlive its session.
    pub async fn expire_tokens(&self, now: TimestampMs, idle_ms: i64) {
        let stale: Vec<String> = self
            .tokens
            .idle(now, idle_ms)
            .into_iter()
            .filter(|(_, user)| !self.devices.is_online(user))
            .map(|(token, _)| token)
            .collect();
        let too_old = self.tokens.too_old(now);
        for token in stale {
            self.end_token(&token).await;
        }
        for (token, info) in too_old {
            tracing::info!(user = %info.user, device = %info.device, "session ended: too old");
            self.end_token(&token).await;
            self.drop_device(
                &info.user,
                &info.device,
                "your session has ended; sign in again",
            );
        }
    }

    fn drop_device(&self, user: &UserId, device: &DeviceId, reason: &str) {
        let goodbye = ServerEvent::Goodbye {
            reason: reason.to_string(),
        };
        self.devices.drop_device(user, device, &goodbye);
    }

    /// Ends a token; when it was the user's last client token here, the seat returns.
    pub async fn end_token(&self, token: &str) {
        let hash = crate::auth::token_hash(token);
        if let Err(error) = self.sql(self.store.delete_session(&hash)).await {
            tracing::warn!(%error, "ended session stays in SQL until it expires");
        }
        let Some(info) = self.tokens.remove(token) else {
            return;
        };
        if !info.console_only {
            self.release_seat_if_unused(&info.user).await;
        }
    }

    /// Returns a user's seat unless a client token of theirs is still live on this server
    /// (after their last token ended, or a login that took the seat failed afterwards).
    pub async fn release_seat_if_unused(&self, user: &UserId) {
        if !self.tokens.client_token_held(user) {
            self.return_seat(user).await;
        }
    }

    /// Ends every token of a user (deleted, or moved to another server) and their devices.
    pub async fn end_user(&self, user: &UserId, reason: &str) {
        if let Err(error) = self.sql(self.store.delete_sessions_of(user)).await {
            tracing::warn!(%user, %error, "sessions stay in SQL until they expire");
        }
        let had_client_token = self.tokens.remove_user(user);
        let goodbye = ServerEvent::Goodbye {
            reason: reason.to_string(),
        };
        let removed = self.devices.drop_user(user, &goodbye);
        if removed {
            self.presence.update_known(user, |p| p.devices.clear());
        }
        if removed {
            self.bus(
                "set offline",
                self.cluster.set_online(&self.id, user, false),
            )
            .await;
            self.presence.publish(user).await;
        }
        if had_client_token {
            self.return_seat(user).await;
        }
    }

    /// Relations of `users` changed in SQL (contacts, groups, users): drops what this server
    /// cached of them and tells every peer to do the same.
    pub async fn relations_changed(&self, users: Vec<UserId>) {
        self.relations.forget(&users);
        self.broadcast(BusBody::RelationsChanged { users }).await;
    }

    // ------------------------------------------------------------------ devices

    /// Registers a connected device; returns its connection number and event queue.
    pub async fn connect_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        capabilities: Vec<Capability>,
        origin: crate::devices::DeviceOrigin,
    ) -> (u64, mpsc::Receiver<DeviceEvent>) {
        let connected = self.devices.connect(user, device, origin, now_ms());
        self.presence.update(user, |p| {
            p.devices.insert(
                device.clone(),
                DevicePresence {
                    device: device.clone(),
                    capabilities,
                    active: true,
                    idle: false,
                },
            );
        });
        if connected.first {
            self.presence.continue_from_cluster(user).await;
            self.bus("set online", self.cluster.set_online(&self.id, user, true))
                .await;
            match self.relations.forwarding_of(user).await {
                Ok(rules) => self.set_forwarded(user, rules.always.is_some()).await,
                Err(error) => tracing::warn!(%user, %error, "forwarding not read at connect"),
            }
        }
        self.presence.publish(user).await;
        (connected.conn, connected.events)
    }

    /// Removes a device if `conn` is still the current connection of that device id.
    /// Returns whether it was removed (the device's calls are then the call shell's to end).
    pub async fn disconnect_device(&self, user: &UserId, device: &DeviceId, conn: u64) -> bool {
        let Some(now_offline) = self.devices.disconnect(user, device, conn) else {
            return false;
        };
        self.presence.update_known(user, |p| {
            p.devices.remove(device);
        });
        if now_offline {
            self.bus(
                "set offline",
                self.cluster.set_online(&self.id, user, false),
            )
            .await;
        }
        self.presence.publish(user).await;
        true
    }

    /// Quiet mode and idle state of a device.
    pub async fn set_device_state(
        &self,
        user: &UserId,
        device: &DeviceId,
        active: Option<bool>,
        idle: Option<bool>,
    ) {
        if let Some(active) = active {
            self.devices.set_active(user, device, active, now_ms());
        }
        let mut known = false;
        self.presence.update_known(user, |p| {
            if let Some(flags) = p.devices.get_mut(device) {
                known = true;
                if let Some(active) = active {
                    flags.active = active;
                }
                if let Some(idle) = idle {
                    flags.idle = idle;
                }
            }
        });
        if !known {
            return;
        }
        self.presence.publish(user).await;
    }

    /// Pushes an event at once (never held for quiet mode) to some devices of a local user,
    /// or to all of them when `devices` is empty.
    pub(crate) fn deliver_to_devices(
        &self,
        user: &UserId,
        devices: &[DeviceId],
        event: &ServerEvent,
    ) -> u64 {
        let only = (!devices.is_empty()).then_some(devices);
        self.devices.deliver(
            std::slice::from_ref(user),
            only,
            &Outgoing::new(event.clone()),
            false,
            None,
            now_ms(),
        )
    }

    // ------------------------------------------------------------------ telephony

    /// A local user's state in one call changed (told by the call's owner): their presence
    /// shows the strongest state over their calls.
    pub(crate) async fn set_call_telephony(
        &self,
        user: &UserId,
        call: &CallId,
        state: TelephonyState,
        caller: Option<UserId>,
    ) {
        self.telephony.record(user, call, state, caller, now_ms());
        self.refresh_telephony(user).await;
    }

    /// Whether a local user forwards every call (presence shows `forwarded` when idle).
    pub(crate) async fn set_forwarded(&self, user: &UserId, always: bool) {
        if self.telephony.set_forwarded(user, always) {
            self.refresh_telephony(user).await;
        }
    }

    /// Shows the strongest of a local user's telephony states in their presence.
    async fn refresh_telephony(&self, user: &UserId) {
        let strongest = self.telephony.strongest(user);
        self.presence.update(user, |p| p.telephony = strongest);
        self.presence.publish(user).await;
    }

    // ------------------------------------------------------------------ presence

    /// Changes a local user's manual availability and note, then publishes.
    pub async fn set_presence(
        &self,
        user: &UserId,
        availability: Option<Availability>,
        note: Option<String>,
    ) {
        self.presence.update(user, |local| {
            if let Some(availability) = availability {
                local.manual = availability;
            }
            if let Some(note) = note {
                local.note = if note.is_empty() { None } else { Some(note) };
            }
        });
        self.presence.publish(user).await;
    }

    // ------------------------------------------------------------------ bus input

    /// A bus message for this server's components (the call shell takes its own first, see
    /// `dispatch.rs`).
    /// Writes a journal entry; while SQL cannot be reached it is kept in the outbox and
    /// written when SQL answers (entries are stored by id, so a second write is harmless).
    pub async fn add_journal(&self, entry: &JournalEntry) {
        if let Err(error) = self.chat.add_journal(entry).await {
            tracing::error!(id = %entry.id, user = %entry.user, error = %error.0.message, "journal entry lost");
        }
    }

    pub async fn handle_bus(&self, message: BusMessage) {
        self.metrics.bus_received.fetch_add(1, Ordering::Relaxed);
        let from_self = message.from == self.id;
        match message.body {
            BusBody::Presence { snapshot, watchers } => self.presence.deliver(&snapshot, &watchers),
            BusBody::Messages { deliveries } => {
                for delivery in deliveries {
                    self.chat.deliver_message_locally(
                        &delivery.message,
                        &delivery.recipients,
                        false,
                    );
                }
            }
            BusBody::Read { marker, recipients } => self.chat.deliver_read(&marker, &recipients),
            BusBody::Typing {
                conversation,
                user,
                typing,
                recipients,
            } => {
                self.chat
                    .deliver_typing(&conversation, &user, typing, &recipients);
            }
            BusBody::SetPresence {
                user,
                by,
                availability,
                note,
            } => {
                tracing::info!(%user, %by, "presence set on behalf of the user");
                self.set_presence(&user, availability, note).await;
            }
            BusBody::RelationsChanged { users } => {
                if !from_self {
                    self.relations.forget(&users);
                }
                // Watchers of these users may have changed: let them see current presence.
                for user in users.iter().filter(|u| self.devices.is_online(u)) {
                    self.presence.send_watched(user, true).await;
                }
            }
            BusBody::ConversationChanged {
                conversation,
                recipients,
            } => {
                self.relations.forget_conversation(&conversation);
                self.chat
                    .deliver_conversation(&conversation, &recipients)
                    .await;
            }
            BusBody::LicensesChanged => self.licenses.forget(),
            BusBody::UsersHeld { users, for_ms } => {
                let until = std::time::Instant::now()
                    + std::time::Duration::from_millis(for_ms.min(MAX_HOLD_MS));
                self.relations.held_by(&message.from, &users, until);
            }
            BusBody::HandedOver { users } => self.owners.expect_arrivals(users),
            BusBody::UsersReleased { users } => self.relations.released_by(&message.from, &users),
            BusBody::SettingsChanged { .. } => self.settings.wake(),
            BusBody::ServerDown { server, .. } => {
                tracing::info!(%server, cleaned_by = %message.from, "peer declared dead");
                self.admin_feed
                    .publish(&shared::console::AdminEvent::ServerDown {
                        server,
                        by: message.from.clone(),
                    });
            }
            // Made here, the consoles here were told at once (the bus may be away).
            BusBody::AdminChanged { entry } if !from_self => {
                self.admin_feed
                    .publish(&shared::console::AdminEvent::Change {
                        server: message.from.clone(),
                        entry,
                    });
            }
            BusBody::AdminChanged { .. } => {}
            BusBody::KickUser { user, reason } => {
                self.relations.forget(std::slice::from_ref(&user));
                self.end_user(&user, &reason).await;
            }
            BusBody::Call(_) => tracing::warn!("a call message reached the server's components"),
            BusBody::Inspect(_) => {
                tracing::warn!("an admin question reached the server's components");
            }
        }
    }

    /// On graceful shutdown: say goodbye to devices, go offline, return leases.
    /// Says goodbye to every device and gives back this server's presence, online set and
    /// leases (its calls were ended first, by the shell that owns them).
    pub async fn shut_down(&self) {
        let goodbye = ServerEvent::Goodbye {
            reason: "server shutting down".into(),
        };
        let users = self.devices.drop_all(&goodbye);
        for user in &users {
            self.presence.update_known(user, |p| p.devices.clear());
        }
        for user in &users {
            self.presence.publish(user).await;
        }
        self.bus("clear online", self.cluster.clear_online(&self.id))
            .await;
        self.bus(
            "release leases",
            self.cluster.lease_release_holder(&self.id),
        )
        .await;
    }
}
