//! The cluster: everything UCServers share that is not durable. One trait covers the bus
//! (server-to-server messages), the volatile store (presence snapshots, who is online where,
//! heartbeats, MediaServer load) and the license leases.
//!
//! Two implementations pass the same conformance suite (`tests/tests/cluster.rs`):
//! [`LocalCluster`] (in-process; the single-node default, and several servers in one test
//! process) and [`RedisCluster`] (fred; a real multi-server deployment).

mod local;
mod redis;

pub use local::{LOGIN_KEYS_CAP, LocalCluster, LocalHub};
pub use redis::RedisCluster;

use crate::core::license::LeaseOutcome;
use async_trait::async_trait;
use shared::bus::{BusMessage, ServerHeartbeat};
use shared::media::MediaServerStatus;
use shared::presence::PresenceSnapshot;
use shared::{ServerId, TimestampMs, UserId};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster store (Redis) cannot be reached: {0}")]
    Unavailable(String),
    #[error("cluster store error: {0}")]
    Backend(String),
}

pub type ClusterResult<T> = Result<T, ClusterError>;

/// What the bus delivers to a server.
#[derive(Debug)]
pub enum BusInput {
    Message(Box<BusMessage>),
    /// Messages may have been lost (a slow reader, a reconnect): re-read state and
    /// re-publish one's own.
    Resync,
    /// A MediaServer reported something about a leg (`uc:media:events`).
    Media(shared::media::MediaEvent),
}

/// A server's last heartbeat and when it was seen.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenServer {
    pub heartbeat: ServerHeartbeat,
    /// When the heartbeat arrived, by the cluster store's clock.
    pub last_seen_ms: TimestampMs,
    /// How long ago that was, by the same clock (so server clocks may differ).
    pub age_ms: i64,
    /// Since when it has beaten without lapsing, by the same clock.
    pub alive_since_ms: TimestampMs,
}

/// The answer to [`Cluster::claim_owner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerClaim {
    /// The caller owns the user now, under this epoch; `moved`: another server held the
    /// user before (or had handed it over), so messages may have gone there meanwhile.
    Granted { epoch: u64, moved: bool },
    /// A live server owns the user.
    Held { by: ServerId },
}

/// Failed logins remembered for one throttle key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginFailures {
    pub count: u32,
    /// How long ago the last failure was, by the cluster store's clock.
    pub age_ms: i64,
}

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Short name for logs and metrics: "local" or "redis".
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> ClusterResult<()>;
    /// Changes when the cluster store lost its state (Redis restarted: its `run_id`), so a
    /// server knows to re-publish everything.
    async fn epoch(&self) -> ClusterResult<String>;
    /// Makes sure `me` still receives its bus channels (a re-subscription after a reconnect
    /// can fail silently); returns true when it had to subscribe again, so messages may have
    /// been lost meanwhile.
    async fn ensure_subscribed(&self, me: &ServerId) -> ClusterResult<bool>;

    // ---- bus ----
    /// Starts delivery of messages addressed to `me` and of broadcasts. Call once.
    async fn subscribe(&self, me: &ServerId) -> ClusterResult<mpsc::Receiver<BusInput>>;
    async fn publish(&self, to: &ServerId, message: &BusMessage) -> ClusterResult<()>;
    async fn broadcast(&self, message: &BusMessage) -> ClusterResult<()>;

    // ---- heartbeats ----
    /// Records a beat. Returns true when the server had lapsed: the store had no beat of it
    /// younger than `dead_after_ms` (its first beat, or it was silent — paused, cut off — or
    /// forgotten as dead meanwhile); its `alive_since_ms` starts again then.
    async fn heartbeat(
        &self,
        heartbeat: &ServerHeartbeat,
        dead_after_ms: u64,
    ) -> ClusterResult<bool>;
    async fn servers(&self) -> ClusterResult<Vec<SeenServer>>;
    /// Forgets a server's heartbeat (after it was cleaned up as dead).
    async fn forget_server(&self, server: &ServerId) -> ClusterResult<()>;
    /// Makes `server`'s run `incarnation` count as dead at once, as if its last beat were
    /// older than `dead_after_ms`: it stopped gracefully, or its port refuses connections.
    /// Nothing happens when another run of it beats now. Should it be alive after all, its
    /// next beat finds that it lapsed, and it keeps only the users it still owns. Returns
    /// whether the mark was set.
    async fn declare_dead(
        &self,
        server: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<bool>;
    /// Appends one of `server`'s load samples to its history, which keeps the newest `keep`
    /// and is forgotten `ttl_ms` after the last sample.
    async fn push_sample(
        &self,
        server: &ServerId,
        sample: &shared::console::StatsSample,
        keep: usize,
        ttl_ms: u64,
    ) -> ClusterResult<()>;
    /// The history of each of `servers`, in order, oldest sample first.
    async fn samples(
        &self,
        servers: &[ServerId],
    ) -> ClusterResult<Vec<Vec<shared::console::StatsSample>>>;
    /// Takes a named lock for `ttl_ms` unless someone else holds it; the holder renews it
    /// the same way (a lease: `SET NX PX`, or the holder's own key extended).
    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> ClusterResult<bool>;
    /// Who holds a named lock now (`None`: nobody, or it expired).
    async fn lock_holder(&self, name: &str) -> ClusterResult<Option<String>>;

    // ---- high availability ----
    /// Makes `me` (its run `incarnation`) the owner of `user`'s live state unless a live
    /// server owns it: one that beat within `dead_after_ms` and still runs the incarnation
    /// that claimed it. Every change of owner raises the record's epoch.
    async fn claim_owner(
        &self,
        user: &UserId,
        me: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<OwnerClaim>;
    /// Gives up `user` if `me` owns it (the epoch stays, for the next claim to raise).
    async fn release_owner(&self, user: &UserId, me: &ServerId) -> ClusterResult<()>;
    /// The owner of each user, in order (`None`: nobody).
    async fn owners(&self, users: &[UserId]) -> ClusterResult<Vec<Option<ServerId>>>;
    /// Sets (or with `None` clears) a cluster-wide high-availability setting, such as
    /// `away:<server>` (its users were taken over while it was dead).
    async fn ha_set(&self, field: &str, value: Option<&str>) -> ClusterResult<()>;
    /// Every high-availability setting.
    async fn ha_all(&self) -> ClusterResult<Vec<(String, String)>>;

    // ---- presence and who is online where ----
    /// Stores a snapshot unless a newer version is stored already.
    async fn put_presence(&self, snapshot: &PresenceSnapshot) -> ClusterResult<()>;
    /// One answer per user, in order; `None` for users never seen.
    async fn get_presence(&self, users: &[UserId]) -> ClusterResult<Vec<Option<PresenceSnapshot>>>;
    async fn set_online(&self, server: &ServerId, user: &UserId, online: bool)
    -> ClusterResult<()>;
    async fn online_users(&self, server: &ServerId) -> ClusterResult<Vec<UserId>>;
    async fn clear_online(&self, server: &ServerId) -> ClusterResult<()>;

    // ---- license leases ----
    async fn lease_acquire(
        &self,
        kind: &str,
        key: &str,
        holder: &ServerId,
        capacity: Option<u32>,
    ) -> ClusterResult<LeaseOutcome>;
    async fn lease_release(&self, kind: &str, key: &str) -> ClusterResult<bool>;
    /// Releases every lease `holder` has, of every kind; returns how many.
    async fn lease_release_holder(&self, holder: &ServerId) -> ClusterResult<u32>;
    async fn lease_count(&self, kind: &str) -> ClusterResult<u32>;
    /// The keys of `kind` that `holder` holds (to compare with the holder's own truth).
    async fn leases_held(&self, kind: &str, holder: &ServerId) -> ClusterResult<Vec<String>>;

    // ---- login throttling (see `login_guard.rs`) ----
    /// Counts one failed login on `key`, atomically for the whole cluster; the key is
    /// forgotten `forget_after_ms` after its last failure. Returns the count.
    async fn login_failed(&self, key: &str, forget_after_ms: u64) -> ClusterResult<u32>;
    /// What is remembered of each key, in order.
    async fn login_failures(&self, keys: &[String]) -> ClusterResult<Vec<Option<LoginFailures>>>;
    /// Forgets a key's failures (after a successful login).
    async fn login_forget(&self, key: &str) -> ClusterResult<()>;

    // ---- MediaServers ----
    /// Heartbeat records of MediaServers with when they were last seen.
    async fn media_servers(&self) -> ClusterResult<Vec<(MediaServerStatus, TimestampMs)>>;
}
