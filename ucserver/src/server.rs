//! The running UCServer: its local sessions, the caches it keeps of shared state, and the
//! operations that the HTTP and WebSocket handlers and the background tasks call.
//!
//! Ownership: this server is the only writer of its own users' live state (devices,
//! presence). Everything durable goes to SQL first; the bus only notifies. Mutexes here are
//! `std` mutexes held for map lookups only, never across an `.await`.

use crate::auth::TokenInfo;
use crate::calls::Calls;
use crate::cluster::{BusInput, Cluster};
use crate::config::Config;
use crate::core::license::{self, LeaseOutcome};
use crate::core::mdm::{self, DeviceMdm, MdmConfig, Offer};
use crate::core::presence::UserPresence;
use crate::core::visibility::{self, Relation};
use crate::error::{AppError, AppResult};
use crate::media::MediaPool;
use crate::metrics::Metrics;
use crate::store::{ConversationRecord, NewMessage, Store, StoreError};
use shared::api::{ChatMessage, ConversationKind, ErrorCode, ReadMarker};
use shared::bus::{BusBody, BusMessage, Delivery, ServerHeartbeat};
use shared::presence::TelephonyState;
use shared::presence::{
    Availability, Capability, DevicePresence, PresenceSnapshot, PresenceView, Visibility,
};
use shared::ws::ServerEvent;
use shared::{CallId, ConversationId, DeviceId, ServerId, TimestampMs, UserId, now_ms};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Events queued for one device before it counts as too slow and is disconnected.
pub const DEVICE_QUEUE: usize = 1024;
/// A client token unused this long, with no device connected, ends (and returns its seat).
pub const TOKEN_IDLE_MS: i64 = 12 * 60 * 60 * 1000;
/// A session token ends this long after it was issued, used or not.
pub const SESSION_LIFETIME_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Messages stored in one SQL transaction at most.
const CHAT_BATCH: usize = 512;

/// One connected device.
struct DeviceConn {
    /// Tells this connection apart from a later one with the same device id.
    conn: u64,
    /// Serialized events for the device's socket task.
    tx: mpsc::Sender<Arc<str>>,
    mdm: DeviceMdm<Arc<str>>,
}

/// A local user: presence inputs and connected devices.
struct LocalUser {
    presence: UserPresence,
    devices: HashMap<DeviceId, DeviceConn>,
}

#[derive(Default)]
struct Sessions {
    users: HashMap<UserId, LocalUser>,
}

/// Caches of SQL relations, dropped on `RelationsChanged` / `ConversationChanged` and on
/// a bus resync.
#[derive(Default)]
struct Cache {
    homes: HashMap<UserId, ServerId>,
    members: HashMap<ConversationId, Arc<Vec<UserId>>>,
    watchers: HashMap<UserId, Arc<Vec<UserId>>>,
    licenses: Option<HashMap<String, u32>>,
    /// Newest presence version delivered per user, so a late older snapshot is dropped.
    delivered_versions: HashMap<UserId, u64>,
}

/// The cluster store as the heartbeat last saw it.
#[derive(Default)]
struct ClusterState {
    epoch: Option<String>,
    /// The last attempt failed: the next success means an outage ended.
    unreachable: bool,
}

/// A message waiting for the chat writer.
struct ChatJob {
    message: NewMessage,
    reply: oneshot::Sender<AppResult<ChatMessage>>,
}

pub struct Server {
    pub id: ServerId,
    pub url: String,
    /// Random per process start; peers see a restart by its change.
    pub incarnation: String,
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub cluster: Arc<dyn Cluster>,
    pub metrics: Metrics,
    pub mdm: MdmConfig,
    sessions: Mutex<Sessions>,
    /// token -> (what it stands for, when it was last used)
    tokens: Mutex<HashMap<String, (TokenInfo, TimestampMs)>>,
    /// Cluster-wide login throttling and the trusted proxies (`login_guard.rs`).
    pub login_guard: crate::login_guard::LoginGuard,
    /// The bounded password hashing pool (`password.rs`).
    pub passwords: crate::password::PasswordPool,
    /// Per-device limits on sends, typing and new conversations (`rate_limit.rs`).
    pub rate_limits: crate::rate_limit::RateLimits,
    cache: Mutex<Cache>,
    /// What the heartbeat last saw of the cluster store, to notice outages and restarts.
    cluster_state: Mutex<ClusterState>,
    chat_tx: mpsc::Sender<ChatJob>,
    next_conn: AtomicU64,
    /// The calls this server owns, and commands waiting for other servers.
    pub calls: Calls,
    /// The MediaServers this server may place calls on.
    pub media: MediaPool,
    /// Each local user's part in each of their calls (from the calls' owners).
    call_states: Mutex<HashMap<UserId, BTreeMap<CallId, CallPart>>>,
    /// Local users whose every call is forwarded (`always` rule).
    always_forwarded: Mutex<std::collections::HashSet<UserId>>,
}

/// A local user's part in one call, as the call's owner tells it: the telephony state shown
/// in presence, and enough for a journal entry should the owner die before writing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallPart {
    pub state: TelephonyState,
    /// When `state` began.
    pub since_ms: TimestampMs,
    /// Who placed the call (an owner of an older version does not say).
    pub caller: Option<UserId>,
    /// When the user was first told of the call, and when they were first in it.
    pub started_ms: TimestampMs,
    pub answered_ms: Option<TimestampMs>,
}

fn event_text(event: &ServerEvent) -> Arc<str> {
    Arc::from(serde_json::to_string(event).unwrap_or_default())
}

impl Server {
    /// Builds the server state and the receiver its chat writer task consumes.
    pub fn new(
        config: Config,
        url: String,
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
    ) -> (Arc<Self>, ChatWriter) {
        let (chat_tx, chat_rx) = mpsc::channel(16_384);
        let calls = Calls::new(config.ring_timeout_ms);
        let media = MediaPool::new(
            config.media_secret.clone(),
            config.configured_media().unwrap_or_default(),
        );
        let trusted_proxies = config.trusted_proxies().unwrap_or_default();
        let login_guard = crate::login_guard::LoginGuard::new(cluster.clone(), trusted_proxies);
        let passwords = crate::password::PasswordPool::new(config.password_limits());
        let rate_limits = crate::rate_limit::RateLimits::new(config.rate_limits());
        let server = Arc::new(Self {
            id: config.server_id(),
            url,
            incarnation: crate::auth::random_hex(8),
            mdm: MdmConfig {
                buffer_limit: config.mdm_buffer_limit,
                ..MdmConfig::default()
            },
            config,
            store,
            cluster,
            metrics: Metrics::default(),
            sessions: Mutex::new(Sessions::default()),
            tokens: Mutex::new(HashMap::new()),
            login_guard,
            passwords,
            rate_limits,
            cache: Mutex::new(Cache::default()),
            cluster_state: Mutex::new(ClusterState::default()),
            chat_tx,
            next_conn: AtomicU64::new(1),
            calls,
            media,
            call_states: Mutex::new(HashMap::new()),
            always_forwarded: Mutex::new(std::collections::HashSet::new()),
        });
        (server, ChatWriter { rx: chat_rx })
    }

    // ------------------------------------------------------------------ timing helpers

    pub async fn sql<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> AppResult<T> {
        let started = Instant::now();
        let result = operation.await;
        self.metrics.sql_latency.observe(started.elapsed());
        result.map_err(AppError::from)
    }

    /// Runs a cluster operation; a failure is logged and counted, and `None` returned, because
    /// cross-server features may stop while Redis is down but local ones must go on.
    pub async fn bus<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T, crate::cluster::ClusterError>>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = operation.await;
        self.metrics.redis_latency.observe(started.elapsed());
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.metrics.bus_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, what, "cluster operation failed");
                None
            }
        }
    }

    pub(crate) async fn publish(&self, to: &ServerId, body: BusBody) {
        let message = BusMessage::new(self.id.clone(), body);
        if self
            .bus("publish", self.cluster.publish(to, &message))
            .await
            .is_some()
        {
            self.metrics.bus_published.fetch_add(1, Ordering::Relaxed);
        }
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
        self.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), (info, now_ms()));
        Ok(token)
    }

    /// What a token stands for; using it keeps it alive. A token this server issued before
    /// it restarted is found in SQL and taken up again (with the user's seat).
    pub async fn token(&self, token: &str) -> Option<TokenInfo> {
        {
            let mut tokens = self.tokens.lock().unwrap();
            if let Some((info, last_used)) = tokens.get_mut(token) {
                *last_used = now_ms();
                return Some(info.clone());
            }
        }
        if token.len() > 128 {
            return None;
        }
        let hash = crate::auth::token_hash(token);
        let record = self.sql(self.store.get_session(&hash)).await.ok()??;
        let fresh = now_ms() - record.issued_ms < SESSION_LIFETIME_MS;
        let home = self.home_of(&record.user).await.ok()?;
        if !fresh || home != self.id {
            // Expired, or the user moved to another server: the session is over.
            let _ = self.sql(self.store.delete_session(&hash)).await;
            return None;
        }
        if !record.console_only {
            // The seat went back when this server restarted; without one the session is over.
            if let Err(error) = self
                .acquire_license(license::SEAT, record.user.as_str())
                .await
            {
                tracing::warn!(user = %record.user, %error, "restored session refused: no seat");
                return None;
            }
        }
        let info = TokenInfo {
            user: record.user,
            device: record.device,
            admin: record.admin,
            console_only: record.console_only,
            issued_ms: record.issued_ms,
        };
        tracing::info!(user = %info.user, device = %info.device, "session restored from SQL");
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), (info.clone(), now_ms()));
        Some(info)
    }

    /// Forgets sessions older than their lifetime (at start; restored ones are checked too).
    pub async fn expire_stored_sessions(&self) {
        let cutoff = now_ms() - SESSION_LIFETIME_MS;
        match self.sql(self.store.delete_sessions_before(cutoff)).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired stored sessions"),
            Err(error) => tracing::warn!(%error, "stored sessions not expired"),
        }
    }

    /// Ends tokens unused for `idle_ms` whose user has no device connected here, so a client
    /// that vanished without logging out does not hold its seat forever.
    pub async fn expire_tokens(&self, now: TimestampMs, idle_ms: i64) {
        let stale: Vec<String> = {
            let tokens = self.tokens.lock().unwrap();
            tokens
                .iter()
                .filter(|(_, (info, last_used))| {
                    now - last_used > idle_ms && !self.is_local_online(&info.user)
                })
                .map(|(token, _)| token.clone())
                .collect()
        };
        for token in stale {
            self.end_token(&token).await;
        }
    }

    /// Ends a token; when it was the user's last client token here, the seat returns.
    pub async fn end_token(&self, token: &str) {
        let hash = crate::auth::token_hash(token);
        if let Err(error) = self.sql(self.store.delete_session(&hash)).await {
            tracing::warn!(%error, "ended session stays in SQL until it expires");
        }
        let Some((info, _)) = self.tokens.lock().unwrap().remove(token) else {
            return;
        };
        if !info.console_only {
            self.release_seat_if_unused(&info.user).await;
        }
    }

    /// Returns a user's seat unless a client token of theirs is still live on this server
    /// (after their last token ended, or a login that took the seat failed afterwards).
    pub async fn release_seat_if_unused(&self, user: &UserId) {
        let in_use = self
            .tokens
            .lock()
            .unwrap()
            .values()
            .any(|(t, _)| &t.user == user && !t.console_only);
        if !in_use {
            self.bus(
                "release seat",
                self.cluster.lease_release(license::SEAT, user.as_str()),
            )
            .await;
        }
    }

    /// Ends every token of a user (deleted, or moved to another server) and their devices.
    pub async fn end_user(&self, user: &UserId, reason: &str) {
        if let Err(error) = self.sql(self.store.delete_sessions_of(user)).await {
            tracing::warn!(%user, %error, "sessions stay in SQL until they expire");
        }
        let had_client_token = {
            let mut tokens = self.tokens.lock().unwrap();
            let before = tokens.len();
            tokens.retain(|_, (t, _)| &t.user != user);
            before != tokens.len()
        };
        let goodbye = event_text(&ServerEvent::Goodbye {
            reason: reason.to_string(),
        });
        let removed = {
            let mut sessions = self.sessions.lock().unwrap();
            if let Some(local) = sessions.users.get_mut(user) {
                for device in local.devices.values() {
                    let _ = device.tx.try_send(goodbye.clone());
                }
                let count = local.devices.len();
                local.devices.clear();
                count
            } else {
                0
            }
        };
        if removed > 0 {
            self.metrics
                .devices
                .fetch_sub(removed as i64, Ordering::Relaxed);
            self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            self.bus(
                "set offline",
                self.cluster.set_online(&self.id, user, false),
            )
            .await;
            self.publish_presence(user).await;
        }
        if had_client_token {
            self.bus(
                "release seat",
                self.cluster.lease_release(license::SEAT, user.as_str()),
            )
            .await;
        }
    }

    // ------------------------------------------------------------------ licenses

    async fn license_capacities(&self) -> AppResult<HashMap<String, u32>> {
        if let Some(cached) = self.cache.lock().unwrap().licenses.clone() {
            return Ok(cached);
        }
        let records = self.sql(self.store.licenses()).await?;
        let map: HashMap<String, u32> = records.into_iter().map(|r| (r.kind, r.capacity)).collect();
        self.cache.lock().unwrap().licenses = Some(map.clone());
        Ok(map)
    }

    /// The capacity of one license kind (`None`: not limited).
    pub async fn license_capacity(&self, kind: &str) -> AppResult<Option<u32>> {
        Ok(self.license_capacities().await?.get(kind).copied())
    }

    /// Takes a lease of `kind` for `key`, or answers `license_exhausted`.
    pub async fn acquire_license(&self, kind: &str, key: &str) -> AppResult<()> {
        let capacity = self.license_capacities().await?.get(kind).copied();
        let started = Instant::now();
        let outcome = self
            .cluster
            .lease_acquire(kind, key, &self.id, capacity)
            .await;
        self.metrics.redis_latency.observe(started.elapsed());
        match outcome? {
            LeaseOutcome::Granted | LeaseOutcome::AlreadyHeld => Ok(()),
            LeaseOutcome::Exhausted { capacity } => Err(AppError::new(
                ErrorCode::LicenseExhausted,
                format!(
                    "all {capacity} '{kind}' licenses are in use; ask an administrator for more"
                ),
            )),
        }
    }

    /// (kind, capacity, in use) for every kind that has a capacity or leases.
    pub async fn license_usage(&self) -> AppResult<Vec<(String, Option<u32>, u32)>> {
        let capacities = self.license_capacities().await?;
        let mut kinds: BTreeSet<String> = capacities.keys().cloned().collect();
        kinds.insert(license::SEAT.to_string());
        kinds.insert(license::SOFTPHONE.to_string());
        let mut usage = Vec::new();
        for kind in kinds {
            let in_use = self.cluster.lease_count(&kind).await?;
            usage.push((kind.clone(), capacities.get(&kind).copied(), in_use));
        }
        Ok(usage)
    }

    pub fn forget_licenses(&self) {
        self.cache.lock().unwrap().licenses = None;
    }

    // ------------------------------------------------------------------ relations (cached)

    /// The home server of a user; `NotFound` if there is no such user.
    pub async fn home_of(&self, user: &UserId) -> AppResult<ServerId> {
        if let Some(home) = self.cache.lock().unwrap().homes.get(user) {
            return Ok(home.clone());
        }
        let record = self
            .sql(self.store.get_user(user))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{user}'")))?;
        self.cache
            .lock()
            .unwrap()
            .homes
            .insert(user.clone(), record.home_server.clone());
        Ok(record.home_server)
    }

    /// Users who get live presence events of `user` (contacts holding them and group mates),
    /// plus the user themselves (their other devices).
    pub async fn watchers_of(&self, user: &UserId) -> AppResult<Arc<Vec<UserId>>> {
        if let Some(cached) = self.cache.lock().unwrap().watchers.get(user) {
            return Ok(cached.clone());
        }
        let mut set: BTreeSet<UserId> = self
            .sql(self.store.contact_owners(user))
            .await?
            .into_iter()
            .collect();
        set.extend(self.sql(self.store.group_mates(user)).await?);
        set.insert(user.clone());
        let watchers = Arc::new(set.into_iter().collect::<Vec<_>>());
        self.cache
            .lock()
            .unwrap()
            .watchers
            .insert(user.clone(), watchers.clone());
        Ok(watchers)
    }

    /// Users whose presence `user` sees live: their contacts and group mates.
    pub async fn watched_by(&self, user: &UserId) -> AppResult<Vec<UserId>> {
        let mut set: BTreeSet<UserId> = self
            .sql(self.store.contacts(user))
            .await?
            .into_iter()
            .map(|c| c.contact)
            .collect();
        set.extend(self.sql(self.store.group_mates(user)).await?);
        Ok(set.into_iter().collect())
    }

    pub async fn members_of(&self, conversation: &ConversationId) -> AppResult<Arc<Vec<UserId>>> {
        if let Some(cached) = self.cache.lock().unwrap().members.get(conversation) {
            return Ok(cached.clone());
        }
        let record = self
            .sql(self.store.get_conversation(conversation))
            .await?
            .ok_or_else(|| {
                AppError::not_found(format!("there is no conversation '{conversation}'"))
            })?;
        let members = Arc::new(record.members);
        self.cache
            .lock()
            .unwrap()
            .members
            .insert(conversation.clone(), members.clone());
        Ok(members)
    }

    /// Drops cached relations of these users (everything when `users` is empty).
    pub fn forget_relations(&self, users: &[UserId]) {
        let mut cache = self.cache.lock().unwrap();
        if users.is_empty() {
            cache.homes.clear();
            cache.watchers.clear();
            cache.members.clear();
            cache.licenses = None;
            return;
        }
        for user in users {
            cache.homes.remove(user);
            cache.watchers.remove(user);
        }
        // Group and contact changes can change any conversation's members of these users.
        cache
            .members
            .retain(|_, members| !members.iter().any(|m| users.contains(m)));
    }

    pub fn forget_conversation(&self, conversation: &ConversationId) {
        self.cache.lock().unwrap().members.remove(conversation);
    }

    /// Splits users by home server, this server first.
    async fn by_home(&self, users: &[UserId]) -> BTreeMap<ServerId, Vec<UserId>> {
        let mut groups: BTreeMap<ServerId, Vec<UserId>> = BTreeMap::new();
        for user in users {
            match self.home_of(user).await {
                Ok(home) => groups.entry(home).or_default().push(user.clone()),
                Err(error) => tracing::debug!(%user, error = %error.0, "no home for user; skipped"),
            }
        }
        groups
    }

    /// The rule "what may `watcher` see of `user`", with the facts read from SQL.
    pub async fn visibility(&self, watcher: &TokenInfo, user: &UserId) -> AppResult<Visibility> {
        let same_user = &watcher.user == user;
        let mut relation = Relation {
            same_user,
            watcher_is_admin: watcher.admin,
            ..Relation::default()
        };
        if !same_user && !watcher.admin {
            relation.in_watcher_contacts = self
                .sql(self.store.contacts(&watcher.user))
                .await?
                .iter()
                .any(|c| &c.contact == user);
            if !relation.in_watcher_contacts {
                relation.share_group = self
                    .sql(self.store.group_mates(&watcher.user))
                    .await?
                    .contains(user);
            }
        }
        Ok(visibility::visibility(relation))
    }

    pub async fn snapshot_of(&self, user: &UserId) -> PresenceSnapshot {
        if let Some(snapshot) = self.local_snapshot(user) {
            return snapshot;
        }
        self.bus(
            "get presence",
            self.cluster.get_presence(std::slice::from_ref(user)),
        )
        .await
        .and_then(|mut found| found.pop().flatten())
        .unwrap_or_else(|| PresenceSnapshot::offline(user.clone()))
    }

    fn local_snapshot(&self, user: &UserId) -> Option<PresenceSnapshot> {
        let sessions = self.sessions.lock().unwrap();
        let local = sessions.users.get(user)?;
        if local.devices.is_empty() {
            return None;
        }
        Some(local.presence.snapshot(now_ms()))
    }

    // ------------------------------------------------------------------ devices

    /// Registers a connected device; returns its connection number and event queue.
    pub async fn connect_device(
        self: &Arc<Self>,
        user: &UserId,
        device: &DeviceId,
        capabilities: Vec<Capability>,
    ) -> (u64, mpsc::Receiver<Arc<str>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
        let now = now_ms();
        let (first_device, replaced) = {
            let mut sessions = self.sessions.lock().unwrap();
            let local = sessions
                .users
                .entry(user.clone())
                .or_insert_with(|| LocalUser {
                    presence: UserPresence::new(user.clone(), 0),
                    devices: HashMap::new(),
                });
            let first = local.devices.is_empty();
            let replaced = local
                .devices
                .insert(
                    device.clone(),
                    DeviceConn {
                        conn,
                        tx,
                        mdm: DeviceMdm::new(now),
                    },
                )
                .is_some();
            local.presence.devices.insert(
                device.clone(),
                DevicePresence {
                    device: device.clone(),
                    capabilities,
                    active: true,
                    idle: false,
                },
            );
            (first, replaced)
        };
        if !replaced {
            self.metrics.devices.fetch_add(1, Ordering::Relaxed);
        }
        if first_device {
            self.metrics.sessions.fetch_add(1, Ordering::Relaxed);
            // Continue the version from the shared snapshot so watchers never see it go back.
            let previous = self
                .bus(
                    "get presence",
                    self.cluster.get_presence(std::slice::from_ref(user)),
                )
                .await
                .and_then(|mut found| found.pop().flatten());
            if let Some(previous) = previous {
                let mut sessions = self.sessions.lock().unwrap();
                if let Some(local) = sessions.users.get_mut(user)
                    && local.presence.version() < previous.version
                {
                    let mut fresh = UserPresence::new(user.clone(), previous.version);
                    fresh.manual = local.presence.manual;
                    fresh.note = local.presence.note.clone().or(previous.note);
                    fresh.devices = std::mem::take(&mut local.presence.devices);
                    local.presence = fresh;
                }
            }
            self.bus("set online", self.cluster.set_online(&self.id, user, true))
                .await;
            match self.sql(self.store.forwarding(user)).await {
                Ok(rules) => self.set_forwarded(user, rules.always.is_some()).await,
                Err(error) => tracing::warn!(%user, %error, "forwarding not read at connect"),
            }
        }
        self.publish_presence(user).await;
        (conn, rx)
    }

    /// Removes a device if `conn` is still the current connection of that device id.
    pub async fn disconnect_device(self: &Arc<Self>, user: &UserId, device: &DeviceId, conn: u64) {
        let (removed, now_offline, was_quiet) = {
            let mut sessions = self.sessions.lock().unwrap();
            let Some(local) = sessions.users.get_mut(user) else {
                return;
            };
            match local.devices.get(device) {
                Some(current) if current.conn == conn => {
                    let was_quiet = current.mdm.is_quiet();
                    local.devices.remove(device);
                    local.presence.devices.remove(device);
                    (true, local.devices.is_empty(), was_quiet)
                }
                _ => (false, false, false),
            }
        };
        if !removed {
            return;
        }
        self.metrics.devices.fetch_sub(1, Ordering::Relaxed);
        if was_quiet {
            self.metrics
                .mdm_quiet_sessions
                .fetch_sub(1, Ordering::Relaxed);
        }
        if now_offline {
            self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            self.bus(
                "set offline",
                self.cluster.set_online(&self.id, user, false),
            )
            .await;
        }
        self.publish_presence(user).await;
        crate::calls::device_gone(self, user, device).await;
    }

    /// The device sent something: it counts as active for alerts.
    pub fn touch_device(&self, user: &UserId, device: &DeviceId) {
        let now = now_ms();
        let mut sessions = self.sessions.lock().unwrap();
        if let Some(conn) = sessions
            .users
            .get_mut(user)
            .and_then(|u| u.devices.get_mut(device))
        {
            conn.mdm.touch(now);
        }
    }

    /// Quiet mode and idle state of a device.
    pub async fn set_device_state(
        &self,
        user: &UserId,
        device: &DeviceId,
        active: Option<bool>,
        idle: Option<bool>,
    ) {
        let now = now_ms();
        let mut flush = None;
        {
            let mut sessions = self.sessions.lock().unwrap();
            let Some(local) = sessions.users.get_mut(user) else {
                return;
            };
            if let Some(active) = active
                && let Some(conn) = local.devices.get_mut(device)
            {
                let was_quiet = conn.mdm.is_quiet();
                if was_quiet != !active {
                    self.metrics
                        .mdm_quiet_sessions
                        .fetch_add(if active { -1 } else { 1 }, Ordering::Relaxed);
                }
                if let Some(done) = conn.mdm.set_quiet(now, !active) {
                    for packet in &done.packets {
                        let _ = conn.tx.try_send(packet.clone());
                    }
                    flush = Some(done);
                }
            }
            if let Some(presence) = local.presence.devices.get_mut(device) {
                if let Some(active) = active {
                    presence.active = active;
                }
                if let Some(idle) = idle {
                    presence.idle = idle;
                }
            }
        }
        if let Some(flush) = flush {
            self.record_flush(&flush);
        }
        self.publish_presence(user).await;
    }

    fn record_flush(&self, flush: &mdm::Flush<Arc<str>>) {
        self.metrics
            .mdm_buffer_flushes
            .fetch_add(1, Ordering::Relaxed);
        if flush.at_limit {
            self.metrics
                .mdm_buffer_flushes_limit
                .fetch_add(1, Ordering::Relaxed);
        }
        self.metrics
            .mdm_last_flush_packets
            .store(flush.packets.len() as u64, Ordering::Relaxed);
        self.metrics
            .mdm_flushed_packets
            .fetch_add(flush.packets.len() as u64, Ordering::Relaxed);
        self.metrics
            .mdm_held_ms_total
            .fetch_add(flush.held_ms_total.max(0) as u64, Ordering::Relaxed);
    }

    /// Pushes one event to every device of local `users`. `bufferable` events wait while a
    /// device is quiet. With `alert`, the alert copy goes to each user's active device (or all).
    fn deliver(
        &self,
        users: &[UserId],
        event: &ServerEvent,
        bufferable: bool,
        alert: Option<&ServerEvent>,
    ) -> u64 {
        self.deliver_to(users, None, event, bufferable, alert)
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
        self.deliver_to(std::slice::from_ref(user), only, event, false, None)
    }

    fn deliver_to(
        &self,
        users: &[UserId],
        only: Option<&[DeviceId]>,
        event: &ServerEvent,
        bufferable: bool,
        alert: Option<&ServerEvent>,
    ) -> u64 {
        let now = now_ms();
        let plain = event_text(event);
        let alerted = alert.map(event_text);
        let mut delivered = 0;
        let mut flushes = Vec::new();
        let mut too_slow: Vec<DeviceId> = Vec::new();
        {
            let mut sessions = self.sessions.lock().unwrap();
            for user in users {
                let Some(local) = sessions.users.get_mut(user) else {
                    continue;
                };
                if local.devices.is_empty() {
                    continue;
                }
                let targets: Vec<usize> = match alerted {
                    Some(_) => {
                        let states: Vec<(bool, TimestampMs)> = local
                            .devices
                            .values()
                            .map(|d| (d.mdm.is_quiet(), d.mdm.last_active_ms()))
                            .collect();
                        mdm::alert_targets(&states, now, &self.mdm)
                    }
                    None => Vec::new(),
                };
                for (index, (device_id, device)) in local.devices.iter_mut().enumerate() {
                    if only.is_some_and(|only| !only.contains(device_id)) {
                        continue;
                    }
                    let text = match &alerted {
                        Some(alert_text) if targets.contains(&index) => alert_text.clone(),
                        _ => plain.clone(),
                    };
                    let to_send = match device.mdm.offer(now, text, bufferable, &self.mdm) {
                        Offer::Deliver(text) => vec![text],
                        Offer::Held => Vec::new(),
                        Offer::Flush(flush) => {
                            let packets = flush.packets.clone();
                            flushes.push(flush);
                            packets
                        }
                    };
                    for text in to_send {
                        if device.tx.try_send(text).is_err() {
                            // A device that does not read its events is cut off (it resyncs when it
                            // returns): dropping the only sender ends its socket task, which then
                            // disconnects it the usual way (presence, metrics, online set).
                            device.tx = mpsc::channel(1).0;
                            too_slow.push(device_id.clone());
                            break;
                        }
                        delivered += 1;
                    }
                }
            }
        }
        for flush in &flushes {
            self.record_flush(flush);
        }
        if !too_slow.is_empty() {
            self.metrics
                .slow_devices_dropped
                .fetch_add(too_slow.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                count = too_slow.len(),
                "disconnected devices that did not read their events"
            );
        }
        delivered
    }

    pub fn is_local_online(&self, user: &UserId) -> bool {
        self.sessions
            .lock()
            .unwrap()
            .users
            .get(user)
            .is_some_and(|u| !u.devices.is_empty())
    }

    pub fn local_users(&self) -> Vec<UserId> {
        self.sessions
            .lock()
            .unwrap()
            .users
            .iter()
            .filter(|(_, u)| !u.devices.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
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
        {
            let mut states = self.call_states.lock().unwrap();
            let calls = states.entry(user.clone()).or_default();
            if state == TelephonyState::Idle {
                calls.remove(call);
            } else {
                let now = now_ms();
                let part = calls.entry(call.clone()).or_insert_with(|| CallPart {
                    state,
                    since_ms: now,
                    caller: None,
                    started_ms: now,
                    answered_ms: None,
                });
                if part.state != state {
                    part.state = state;
                    part.since_ms = now;
                }
                if state == TelephonyState::InCall {
                    part.answered_ms.get_or_insert(now);
                }
                if caller.is_some() {
                    part.caller = caller;
                }
            }
            if calls.is_empty() {
                states.remove(user);
            }
        }
        self.refresh_telephony(user).await;
    }

    /// Whether a local user forwards every call (presence shows `forwarded` when idle).
    pub(crate) async fn set_forwarded(&self, user: &UserId, always: bool) {
        let changed = {
            let mut forwarded = self.always_forwarded.lock().unwrap();
            if always {
                forwarded.insert(user.clone())
            } else {
                forwarded.remove(user)
            }
        };
        if changed {
            self.refresh_telephony(user).await;
        }
    }

    /// Shows the strongest of a local user's telephony states: their calls, else `forwarded`.
    async fn refresh_telephony(&self, user: &UserId) {
        let in_calls = self
            .call_states
            .lock()
            .unwrap()
            .get(user)
            .and_then(|calls| calls.values().map(|part| part.state).max())
            .unwrap_or_default();
        let forwarded = if self.always_forwarded.lock().unwrap().contains(user) {
            TelephonyState::Forwarded
        } else {
            TelephonyState::Idle
        };
        let strongest = in_calls.max(forwarded);
        {
            let mut sessions = self.sessions.lock().unwrap();
            let local = sessions
                .users
                .entry(user.clone())
                .or_insert_with(|| LocalUser {
                    presence: UserPresence::new(user.clone(), 0),
                    devices: HashMap::new(),
                });
            local.presence.telephony = strongest;
        }
        self.publish_presence(user).await;
    }

    /// The calls a local user is in or rung by.
    pub(crate) fn calls_of(&self, user: &UserId) -> Vec<CallId> {
        self.call_states
            .lock()
            .unwrap()
            .get(user)
            .map(|calls| calls.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The calls ringing at a local user, oldest first.
    pub(crate) fn ringing_calls(&self, user: &UserId) -> Vec<CallId> {
        let states = self.call_states.lock().unwrap();
        let Some(calls) = states.get(user) else {
            return Vec::new();
        };
        let mut ringing: Vec<(TimestampMs, CallId)> = calls
            .iter()
            .filter(|(_, part)| part.state == TelephonyState::Ringing)
            .map(|(call, part)| (part.since_ms, call.clone()))
            .collect();
        ringing.sort();
        ringing.into_iter().map(|(_, call)| call).collect()
    }

    /// (user, call, the user's part) for every local user's call owned by `owner`.
    pub(crate) fn calls_owned_by(&self, owner: &ServerId) -> Vec<(UserId, CallId, CallPart)> {
        let states = self.call_states.lock().unwrap();
        states
            .iter()
            .flat_map(|(user, calls)| {
                calls
                    .iter()
                    .filter(|(call, _)| shared::call::call_owner(call).as_ref() == Some(owner))
                    .map(move |(call, part)| (user.clone(), call.clone(), part.clone()))
            })
            .collect()
    }

    // ------------------------------------------------------------------ presence

    /// Changes a local user's manual availability and note, then publishes.
    pub async fn set_presence(
        &self,
        user: &UserId,
        availability: Option<Availability>,
        note: Option<String>,
    ) {
        {
            let mut sessions = self.sessions.lock().unwrap();
            let local = sessions
                .users
                .entry(user.clone())
                .or_insert_with(|| LocalUser {
                    presence: UserPresence::new(user.clone(), 0),
                    devices: HashMap::new(),
                });
            if let Some(availability) = availability {
                local.presence.manual = availability;
            }
            if let Some(note) = note {
                local.presence.note = if note.is_empty() { None } else { Some(note) };
            }
        }
        self.publish_presence(user).await;
    }

    /// Publishes a local user's presence if it changed.
    pub async fn publish_presence(&self, user: &UserId) {
        let snapshot = {
            let mut sessions = self.sessions.lock().unwrap();
            let Some(local) = sessions.users.get_mut(user) else {
                return;
            };
            local.presence.publish(now_ms())
        };
        if let Some(snapshot) = snapshot {
            self.metrics
                .presence_changes
                .fetch_add(1, Ordering::Relaxed);
            self.fan_out_presence(snapshot).await;
        }
    }

    /// Stores a snapshot in the cluster and sends it to every watcher: locally, and with one
    /// bus message per other server that is home to watchers.
    pub async fn fan_out_presence(&self, snapshot: PresenceSnapshot) {
        self.bus("put presence", self.cluster.put_presence(&snapshot))
            .await;
        let watchers = match self.watchers_of(&snapshot.user).await {
            Ok(watchers) => watchers,
            Err(error) => {
                tracing::warn!(error = %error.0, "cannot read watchers; presence not fanned out");
                return;
            }
        };
        for (home, users) in self.by_home(&watchers).await {
            if home == self.id {
                self.deliver_presence(&snapshot, &users);
            } else {
                self.publish(
                    &home,
                    BusBody::Presence {
                        snapshot: snapshot.clone(),
                        watchers: users,
                    },
                )
                .await;
            }
        }
    }

    fn deliver_presence(&self, snapshot: &PresenceSnapshot, watchers: &[UserId]) {
        {
            let mut cache = self.cache.lock().unwrap();
            let seen = cache
                .delivered_versions
                .entry(snapshot.user.clone())
                .or_insert(0);
            if snapshot.version != 0 && snapshot.version <= *seen {
                return;
            }
            *seen = snapshot.version;
        }
        let event = ServerEvent::Presence {
            presence: PresenceView::of(snapshot, Visibility::Full),
        };
        let delivered = self.deliver(watchers, &event, true, None);
        self.metrics
            .presence_deliveries
            .fetch_add(delivered, Ordering::Relaxed);
    }

    // ------------------------------------------------------------------ chat

    /// Checks that `sender` may post to the conversation (creating a 1:1 on first use) and
    /// returns its id.
    pub async fn conversation_for(
        &self,
        sender: &UserId,
        to: Option<&UserId>,
        conversation: Option<&ConversationId>,
    ) -> AppResult<ConversationId> {
        let id = match (to, conversation) {
            (Some(to), None) => {
                self.home_of(to).await?;
                let id = ConversationId::direct(sender, to);
                let known = self.cache.lock().unwrap().members.contains_key(&id);
                if !known {
                    let now = now_ms();
                    let mut members = vec![sender.clone(), to.clone()];
                    members.sort();
                    members.dedup();
                    let record = ConversationRecord {
                        id: id.clone(),
                        kind: ConversationKind::Direct,
                        name: String::new(),
                        created_by: sender.clone(),
                        created_ms: now,
                        last_seq: 0,
                        members,
                    };
                    self.sql(self.store.ensure_conversation(&record)).await?;
                }
                id
            }
            (None, Some(conversation)) => conversation.clone(),
            _ => {
                return Err(AppError::bad_request(
                    "give either 'to' (a user) or 'conversation', not both or neither",
                ));
            }
        };
        let members = self.members_of(&id).await?;
        if !members.contains(sender) {
            return Err(AppError::new(
                ErrorCode::NotAMember,
                format!("you are not a member of conversation '{id}'"),
            ));
        }
        Ok(id)
    }

    /// Stores and delivers a message; returns it once stored and handed to every server.
    pub async fn send_message(
        &self,
        sender: &UserId,
        conversation: ConversationId,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<ChatMessage> {
        let stored = self
            .enqueue_message(sender, conversation, body, client_id)
            .await?;
        stored.await.map_err(|_| {
            AppError::new(ErrorCode::ServerUnavailable, "the server is shutting down")
        })?
    }

    /// Checks a message and queues it for the chat writer, in order; the returned receiver
    /// answers once it is stored and handed to every server. A device can queue its next
    /// message before the previous one is stored, so one connection is not limited to one
    /// message per write batch.
    pub async fn enqueue_message(
        &self,
        sender: &UserId,
        conversation: ConversationId,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<oneshot::Receiver<AppResult<ChatMessage>>> {
        if body.trim().is_empty() {
            return Err(AppError::bad_request("the message is empty"));
        }
        if body.len() > shared::limits::MAX_MESSAGE_BYTES {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a message may have at most {} bytes",
                    shared::limits::MAX_MESSAGE_BYTES
                ),
            ));
        }
        if client_id.as_ref().is_some_and(|c| c.len() > 128) {
            return Err(AppError::bad_request(
                "client_id may have at most 128 characters",
            ));
        }
        let message = NewMessage {
            conversation,
            id: uuid::Uuid::now_v7().to_string(),
            sender: sender.clone(),
            body,
            sent_ms: now_ms(),
            client_id,
        };
        let (reply, answer) = oneshot::channel();
        self.chat_tx
            .send(ChatJob { message, reply })
            .await
            .map_err(|_| {
                AppError::new(ErrorCode::ServerUnavailable, "the server is shutting down")
            })?;
        Ok(answer)
    }

    /// Delivers stored messages: locally and with one bus message per other home server.
    async fn deliver_messages(&self, messages: &[ChatMessage]) {
        let mut remote: BTreeMap<ServerId, Vec<Delivery>> = BTreeMap::new();
        for message in messages {
            let members = match self.members_of(&message.conversation).await {
                Ok(members) => members,
                Err(error) => {
                    tracing::warn!(error = %error.0, "no members for a stored message");
                    continue;
                }
            };
            for (home, users) in self.by_home(&members).await {
                if home == self.id {
                    self.deliver_message_locally(message, &users, false);
                } else {
                    remote.entry(home).or_default().push(Delivery {
                        message: message.clone(),
                        recipients: users,
                    });
                }
            }
        }
        for (home, deliveries) in remote {
            self.publish(&home, BusBody::Messages { deliveries }).await;
        }
    }

    fn deliver_message_locally(&self, message: &ChatMessage, users: &[UserId], replay: bool) {
        let plain = ServerEvent::Message {
            message: message.clone(),
            alert: false,
            replay,
        };
        // The sender's own devices get no alert for their own message.
        let others: Vec<UserId> = users
            .iter()
            .filter(|u| **u != message.sender)
            .cloned()
            .collect();
        let mut delivered = 0;
        if others.len() != users.len() {
            delivered += self.deliver(std::slice::from_ref(&message.sender), &plain, false, None);
        }
        let alert = ServerEvent::Message {
            message: message.clone(),
            alert: true,
            replay,
        };
        delivered += self.deliver(&others, &plain, false, Some(&alert));
        self.metrics
            .messages_delivered
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// Moves a read marker and tells every device of every member.
    pub async fn mark_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        seq: Option<u64>,
    ) -> AppResult<ReadMarker> {
        let members = self.members_of(conversation).await?;
        if !members.contains(user) {
            return Err(AppError::new(
                ErrorCode::NotAMember,
                format!("you are not a member of conversation '{conversation}'"),
            ));
        }
        let seq = self
            .sql(
                self.store
                    .mark_read(conversation, user, seq.unwrap_or(u64::MAX)),
            )
            .await?;
        let marker = ReadMarker {
            conversation: conversation.clone(),
            user: user.clone(),
            seq,
        };
        for (home, users) in self.by_home(&members).await {
            if home == self.id {
                self.deliver_read(&marker, &users);
            } else {
                self.publish(
                    &home,
                    BusBody::Read {
                        marker: marker.clone(),
                        recipients: users,
                    },
                )
                .await;
            }
        }
        Ok(marker)
    }

    fn deliver_read(&self, marker: &ReadMarker, users: &[UserId]) {
        let event = ServerEvent::Read {
            conversation: marker.conversation.clone(),
            user: marker.user.clone(),
            seq: marker.seq,
        };
        self.deliver(users, &event, false, None);
    }

    pub async fn typing(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        typing: bool,
    ) -> AppResult<()> {
        let members = self.members_of(conversation).await?;
        if !members.contains(user) {
            return Err(AppError::new(
                ErrorCode::NotAMember,
                format!("you are not a member of conversation '{conversation}'"),
            ));
        }
        let others: Vec<UserId> = members.iter().filter(|m| *m != user).cloned().collect();
        for (home, users) in self.by_home(&others).await {
            if home == self.id {
                let event = ServerEvent::Typing {
                    conversation: conversation.clone(),
                    user: user.clone(),
                    typing,
                };
                self.deliver(&users, &event, true, None);
            } else {
                self.publish(
                    &home,
                    BusBody::Typing {
                        conversation: conversation.clone(),
                        user: user.clone(),
                        typing,
                        recipients: users,
                    },
                )
                .await;
            }
        }
        Ok(())
    }

    /// Tells the members of a new or changed conversation about it.
    pub async fn announce_conversation(&self, conversation: &ConversationId) {
        self.forget_conversation(conversation);
        let Ok(members) = self.members_of(conversation).await else {
            return;
        };
        for (home, users) in self.by_home(&members).await {
            if home == self.id {
                self.deliver_conversation(conversation, &users).await;
            } else {
                self.publish(
                    &home,
                    BusBody::ConversationChanged {
                        conversation: conversation.clone(),
                        recipients: users,
                    },
                )
                .await;
            }
        }
    }

    async fn deliver_conversation(&self, conversation: &ConversationId, users: &[UserId]) {
        for user in users {
            if !self.is_local_online(user) {
                continue;
            }
            let Ok(summaries) = self.sql(self.store.conversations_of(user)).await else {
                continue;
            };
            if let Some(summary) = summaries.into_iter().find(|s| &s.id == conversation) {
                self.deliver(
                    std::slice::from_ref(user),
                    &ServerEvent::Conversation {
                        conversation: summary,
                    },
                    false,
                    None,
                );
            }
        }
    }

    /// Replays unread messages of every conversation to one fresh device queue.
    pub async fn replay_unread(&self, user: &UserId, tx: &mpsc::Sender<Arc<str>>) -> AppResult<()> {
        for summary in self.sql(self.store.conversations_of(user)).await? {
            if summary.unread == 0 {
                continue;
            }
            let page = crate::store::HistoryPage::After(summary.last_read_seq);
            for message in self
                .sql(self.store.messages(&summary.id, page, 200))
                .await?
            {
                let event = ServerEvent::Message {
                    message,
                    alert: false,
                    replay: true,
                };
                if tx.send(event_text(&event)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Queues one replayed message for one device (answer to its `sync`).
    pub fn replay_to_device(&self, user: &UserId, device: &DeviceId, message: ChatMessage) {
        let event = event_text(&ServerEvent::Message {
            message,
            alert: false,
            replay: true,
        });
        let sessions = self.sessions.lock().unwrap();
        if let Some(conn) = sessions.users.get(user).and_then(|u| u.devices.get(device)) {
            let _ = conn.tx.try_send(event);
        }
    }

    // ------------------------------------------------------------------ bus input

    pub async fn handle_bus(self: &Arc<Self>, input: BusInput) {
        let message = match input {
            BusInput::Message(message) => message,
            BusInput::Resync => {
                self.resync().await;
                return;
            }
            BusInput::Media(event) => {
                crate::calls::media_event(self, event).await;
                return;
            }
        };
        self.metrics.bus_received.fetch_add(1, Ordering::Relaxed);
        let from_self = message.from == self.id;
        match message.body {
            BusBody::Presence { snapshot, watchers } => self.deliver_presence(&snapshot, &watchers),
            BusBody::Messages { deliveries } => {
                for delivery in deliveries {
                    self.deliver_message_locally(&delivery.message, &delivery.recipients, false);
                }
            }
            BusBody::Read { marker, recipients } => self.deliver_read(&marker, &recipients),
            BusBody::Typing {
                conversation,
                user,
                typing,
                recipients,
            } => {
                let event = ServerEvent::Typing {
                    conversation,
                    user,
                    typing,
                };
                self.deliver(&recipients, &event, true, None);
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
                    self.forget_relations(&users);
                }
                // Watchers of these users may have changed: let them see current presence.
                for user in users.iter().filter(|u| self.is_local_online(u)) {
                    self.send_relations_presence(user, true).await;
                }
            }
            BusBody::ConversationChanged {
                conversation,
                recipients,
            } => {
                self.forget_conversation(&conversation);
                self.deliver_conversation(&conversation, &recipients).await;
            }
            BusBody::LicensesChanged => self.forget_licenses(),
            BusBody::ServerDown { server, .. } => {
                tracing::info!(%server, cleaned_by = %message.from, "peer declared dead");
                crate::calls::owner_gone(self, &server).await;
            }
            BusBody::KickUser { user, reason } => {
                self.forget_relations(std::slice::from_ref(&user));
                self.end_user(&user, &reason).await;
            }
            BusBody::Call(body) => crate::calls::handle_bus(self, body).await,
        }
    }

    /// After relations change, a local user gets the current presence of everyone they watch.
    /// With `include_unknown`, users without any snapshot are sent as offline (a new contact);
    /// without, they are skipped (after a Redis restart their home server re-publishes them).
    async fn send_relations_presence(&self, user: &UserId, include_unknown: bool) {
        let Ok(watched) = self.watched_by(user).await else {
            return;
        };
        let Some(snapshots) = self
            .bus("get presence", self.cluster.get_presence(&watched))
            .await
        else {
            return;
        };
        for (watched_user, snapshot) in watched.iter().zip(snapshots) {
            let snapshot = match snapshot {
                Some(snapshot) => snapshot,
                None if include_unknown => PresenceSnapshot::offline(watched_user.clone()),
                None => continue,
            };
            let event = ServerEvent::Presence {
                presence: PresenceView::of(&snapshot, Visibility::Full),
            };
            self.deliver(std::slice::from_ref(user), &event, true, None);
        }
    }

    /// The bus may have lost messages (or Redis restarted empty): forget caches, re-publish
    /// our own state and re-announce who is online here.
    pub async fn resync(&self) {
        tracing::info!("resyncing cluster state");
        // Subscribed first, so nothing published after the snapshots are read below is lost.
        self.bus("bus subscription", self.cluster.ensure_subscribed(&self.id))
            .await;
        self.forget_relations(&[]);
        self.cache.lock().unwrap().delivered_versions.clear();
        self.heartbeat().await;
        let users = self.local_users();
        for user in &users {
            self.bus("set online", self.cluster.set_online(&self.id, user, true))
                .await;
            let snapshot = {
                let sessions = self.sessions.lock().unwrap();
                sessions
                    .users
                    .get(user)
                    .map(|local| local.presence.snapshot(now_ms()))
            };
            if let Some(snapshot) = snapshot {
                self.fan_out_presence(snapshot).await;
            }
            // Events for our users may have been lost: send them what they watch, as stored now.
            self.send_relations_presence(user, false).await;
            // Seats of signed-in users are taken again if Redis lost them.
            let _ = self
                .cluster
                .lease_acquire(license::SEAT, user.as_str(), &self.id, None)
                .await;
        }
    }

    // ------------------------------------------------------------------ heartbeats and failures

    /// Heartbeat plus outage detection: when the cluster store comes back after failures, or
    /// comes back empty (a new epoch), everything this server owns is re-published.
    pub async fn heartbeat_and_check(&self) {
        let epoch = self.bus("epoch", self.cluster.epoch()).await;
        let resubscribed = self
            .bus("bus subscription", self.cluster.ensure_subscribed(&self.id))
            .await
            .unwrap_or(false);
        let resync_needed = {
            let mut state = self.cluster_state.lock().unwrap();
            match epoch {
                Some(epoch) => {
                    let changed = state
                        .epoch
                        .as_ref()
                        .is_some_and(|previous| *previous != epoch);
                    let needed = changed || state.unreachable;
                    *state = ClusterState {
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
            self.resync().await;
        } else {
            self.heartbeat().await;
        }
    }

    pub async fn heartbeat(&self) {
        let heartbeat = ServerHeartbeat {
            id: self.id.clone(),
            url: self.url.clone(),
            incarnation: self.incarnation.clone(),
            sessions: self.metrics.sessions.load(Ordering::Relaxed).max(0) as u64,
            devices: self.metrics.devices.load(Ordering::Relaxed).max(0) as u64,
            at_ms: now_ms(),
        };
        self.bus("heartbeat", self.cluster.heartbeat(&heartbeat))
            .await;
    }

    /// Finds dead peers and cleans up after each one that no other survivor is cleaning.
    pub async fn sweep_dead_servers(&self) {
        let Some(servers) = self.bus("list servers", self.cluster.servers()).await else {
            return;
        };
        let seen: Vec<(ServerId, TimestampMs)> = servers
            .iter()
            .map(|s| (s.heartbeat.id.clone(), -s.age_ms))
            .collect();
        let dead = crate::core::failure::dead_servers(
            &seen,
            &self.id,
            0,
            self.config.dead_after_ms as i64,
        );
        for server in dead {
            let lock = format!("cleanup:{server}");
            if self
                .bus(
                    "cleanup lock",
                    self.cluster.try_lock(&lock, self.id.as_str(), 30_000),
                )
                .await
                != Some(true)
            {
                continue;
            }
            tracing::warn!(%server, "peer missed its heartbeats; cleaning up after it");
            self.clean_up_after(&server).await;
            self.bus("forget server", self.cluster.forget_server(&server))
                .await;
            self.metrics
                .dead_servers_cleaned
                .fetch_add(1, Ordering::Relaxed);
            self.broadcast(BusBody::ServerDown {
                server,
                at_ms: now_ms(),
            })
            .await;
        }
    }

    /// Marks the users of `server` offline for everyone and returns its leases. Used for a
    /// dead peer and, at start, for this server's own previous incarnation.
    pub async fn clean_up_after(&self, server: &ServerId) {
        // Leases first: by the time watchers see the users go offline, their seats are back.
        let released = self
            .bus("release leases", self.cluster.lease_release_holder(server))
            .await;
        let users = self
            .bus("online users", self.cluster.online_users(server))
            .await
            .unwrap_or_default();
        if !users.is_empty()
            && let Some(snapshots) = self
                .bus("get presence", self.cluster.get_presence(&users))
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
                self.fan_out_presence(offline).await;
            }
        }
        self.bus("clear online", self.cluster.clear_online(server))
            .await;
        tracing::info!(%server, ?released, users = users.len(), "returned leases and marked users offline");
    }

    /// On graceful shutdown: say goodbye to devices, go offline, return leases.
    pub async fn shut_down(&self) {
        crate::calls::end_all(self, std::time::Duration::from_secs(3)).await;
        let goodbye = event_text(&ServerEvent::Goodbye {
            reason: "server shutting down".into(),
        });
        let users = {
            let mut sessions = self.sessions.lock().unwrap();
            let users: Vec<UserId> = sessions.users.keys().cloned().collect();
            for local in sessions.users.values_mut() {
                for device in local.devices.values() {
                    let _ = device.tx.try_send(goodbye.clone());
                }
                local.devices.clear();
                local.presence.devices.clear();
            }
            users
        };
        for user in &users {
            self.publish_presence(user).await;
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

/// The chat writer: batches messages into SQL transactions, then delivers them in order.
pub struct ChatWriter {
    rx: mpsc::Receiver<ChatJob>,
}

/// A stored batch on its way to delivery: the jobs to answer, their results, and the
/// messages that were stored.
struct StoredBatch {
    jobs: Vec<ChatJob>,
    results: Vec<AppResult<ChatMessage>>,
    stored: Vec<ChatMessage>,
}

impl ChatWriter {
    /// Runs until every sender is gone. Two stages in a pipeline: this task writes batch N+1
    /// to SQL while a delivery task (owned here, ended with it) pushes batch N to devices and
    /// peers and answers its senders. Both stages keep batch order, so a conversation's
    /// messages are delivered in sequence order.
    pub async fn run(mut self, server: Arc<Server>) {
        let (stored_tx, mut stored_rx) = mpsc::channel::<StoredBatch>(2);
        let delivery_server = server.clone();
        let delivery = tokio::spawn(async move {
            while let Some(batch) = stored_rx.recv().await {
                delivery_server.deliver_messages(&batch.stored).await;
                for (job, result) in batch.jobs.into_iter().zip(batch.results) {
                    let _ = job.reply.send(result);
                }
            }
        });
        let mut jobs = Vec::with_capacity(CHAT_BATCH);
        while let Some(first) = self.rx.recv().await {
            jobs.push(first);
            while jobs.len() < CHAT_BATCH {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let batch: Vec<NewMessage> = jobs.iter().map(|j| j.message.clone()).collect();
            let stored = server.sql(server.store.append_messages(&batch)).await;
            let results: Vec<AppResult<ChatMessage>> = match stored {
                Ok(results) => results
                    .into_iter()
                    .map(|r| {
                        r.map_err(|error| match error {
                            StoreError::NotFound(what) => AppError::new(
                                ErrorCode::NotAMember,
                                format!(
                                    "cannot post: {what} (not a member, or no such conversation)"
                                ),
                            ),
                            other => AppError::from(other),
                        })
                    })
                    .collect(),
                Err(error) => jobs
                    .iter()
                    .map(|_| Err(AppError(error.0.clone())))
                    .collect(),
            };
            let stored_messages: Vec<ChatMessage> = results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            server
                .metrics
                .messages_stored
                .fetch_add(stored_messages.len() as u64, Ordering::Relaxed);
            let batch = StoredBatch {
                jobs: std::mem::take(&mut jobs),
                results,
                stored: stored_messages,
            };
            if stored_tx.send(batch).await.is_err() {
                break;
            }
        }
        drop(stored_tx);
        let _ = delivery.await;
    }
}
