//! Names of Redis keys and channels. Every part that touches Redis takes its names from here.

use crate::{MediaServerId, ServerId, UserId};

/// Prefix of every key and channel, so a Redis may be shared with other software.
pub const PREFIX: &str = "uc";

/// Channel a UCServer subscribes to for messages addressed to it.
pub fn server_channel(server: &ServerId) -> String {
    format!("{PREFIX}:to:{server}")
}
/// Channel every UCServer subscribes to.
pub const BROADCAST_CHANNEL: &str = "uc:all";
/// Sorted set of UCServer ids scored by last heartbeat (ms).
pub const SERVERS_SEEN: &str = "uc:servers:seen";
/// Hash server id -> JSON heartbeat record.
pub const SERVERS_INFO: &str = "uc:servers:info";
/// Hash: server id -> since when it has beaten without lapsing (ms, Redis's clock).
pub const SERVERS_SINCE: &str = "uc:servers:since";
/// Hash: server id -> the incarnation (process run) that beats for it now.
pub const SERVERS_INCARNATION: &str = "uc:servers:incarnation";
/// Hash: cluster-wide high-availability settings (`away:<server>`, `drain:<server>` ...).
pub const HA: &str = "uc:ha";

/// String `<server> <incarnation> <epoch>`: who owns a user's live state (server empty once released).
pub fn owner(user: &UserId) -> String {
    format!("{PREFIX}:owner:{user}")
}

/// List of a UCServer's own load samples (JSON [`crate::console::StatsSample`]), oldest
/// first, trimmed to the last hour and expiring when the server stops sampling.
pub fn stats_samples(server: &ServerId) -> String {
    format!("{PREFIX}:stats:{server}")
}

/// Presence snapshot of a user (JSON), written by the server serving them.
pub fn presence(user: &UserId) -> String {
    format!("{PREFIX}:presence:{user}")
}
/// Set of users with at least one device online at a server.
pub fn online_users(server: &ServerId) -> String {
    format!("{PREFIX}:online:{server}")
}
/// Hash lease key -> holding server id, for one license kind.
pub fn leases(kind: &str) -> String {
    format!("{PREFIX}:leases:{kind}")
}
/// Lock taken by the server that cleans up after a dead one.
pub fn cleanup_lock(server: &ServerId) -> String {
    format!("{PREFIX}:cleanup:{server}")
}
/// A named lock (`Cluster::try_lock`): the holder's name, expiring unless renewed.
pub fn lock(name: &str) -> String {
    format!("{PREFIX}:lock:{name}")
}
/// Failed logins of one throttle key (a user name or a client address): a hash with the
/// count `n` and the last failure's time `t` (ms), expiring after a quiet period.
pub fn login_failures(key: &str) -> String {
    format!("{PREFIX}:login:fail:{key}")
}
/// Sorted set of MediaServer ids scored by last heartbeat (ms).
pub const MEDIA_SEEN: &str = "uc:media:seen";
/// Hash media id -> JSON [`crate::media::MediaServerStatus`].
pub const MEDIA_INFO: &str = "uc:media:info";
/// Never written: MediaServers keep no since-time (the heartbeat reader's third key).
pub const MEDIA_SINCE: &str = "uc:media:since";
/// Channel on which MediaServers publish [`crate::media::MediaEvent`]s.
pub const MEDIA_EVENTS_CHANNEL: &str = "uc:media:events";
/// Heartbeat key of one MediaServer (for readers that want one record).
pub fn media_status(media: &MediaServerId) -> String {
    format!("{PREFIX}:media:status:{media}")
}
