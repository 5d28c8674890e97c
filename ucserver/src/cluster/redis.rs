//! The cluster over Redis with fred: pub/sub channels per server plus a broadcast channel,
//! and keys for the volatile state. Multi-step changes are Lua scripts, so they are atomic
//! across servers. Times come from Redis's own clock (`TIME`), so servers whose clocks
//! differ still agree on who is dead.
//!
//! fred traps handled here (see DEPENDENCIES.md): only a `SubscriberClient` with
//! `manage_subscriptions` re-subscribes after a reconnect; a reconnect or a lagging reader
//! is reported as [`BusInput::Resync`] so the server re-publishes its state; the broadcast
//! buffer is raised from 32; an unresponsive connection is cut after a timeout.

use super::{
    BusInput, Cluster, ClusterError, ClusterResult, LoginFailures, OwnerClaim, SeenServer,
};
use crate::core::license::LeaseOutcome;
use async_trait::async_trait;
use fred::clients::{SubscriberClient, WithOptions};
use fred::prelude::*;
use shared::bus::{BusBody, BusMessage, ServerHeartbeat};
use shared::keys;
use shared::media::MediaServerStatus;
use shared::presence::PresenceSnapshot;
use shared::url::RedisUrl;
use shared::{ServerId, TimestampMs, UserId};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

const LEASE_KINDS: &str = "uc:leases:kinds";

/// How long a chat delivery's publish may wait for Redis's answer.
const DELIVERY_PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

const ACQUIRE: &str = r#"
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return -2
end
local cap = tonumber(ARGV[3])
if cap >= 0 and redis.call('HLEN', KEYS[1]) >= cap then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 0
"#;

const RELEASE_HOLDER: &str = r#"
local n = 0
for _, kind in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hash = ARGV[2] .. kind
  local all = redis.call('HGETALL', hash)
  for i = 1, #all, 2 do
    if all[i + 1] == ARGV[1] then
      redis.call('HDEL', hash, all[i])
      n = n + 1
    end
  end
end
return n
"#;

/// Returns 1 when the server had lapsed (no beat of it younger than ARGV[3] ms); its
/// alive-since time starts again then.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
local lapsed = 0
if not previous or now - tonumber(previous) > tonumber(ARGV[3])
    or redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[4] then
  lapsed = 1
  redis.call('HSET', KEYS[3], ARGV[1], now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
return lapsed
"#;

/// KEYS: servers seen, incarnations. ARGV: server, its incarnation, dead after (ms). Backdates
/// the server's beat past the window if that run is the one beating; returns 1 then.
const DECLARE_DEAD: &str = r#"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now - tonumber(ARGV[3]) - 1, ARGV[1])
return 1
"#;

/// KEYS: owner record (`<server> <incarnation> <epoch>`), servers seen, incarnations.
/// ARGV: me, my incarnation, dead after (ms). Returns {1, epoch, moved} when granted (moved:
/// 1 when another server or an earlier run of this one held the user, or it had been handed
/// over), {0, holder} when a live server holds the user: one that beat within the window and
/// still runs the incarnation that claimed it.
const CLAIM_OWNER: &str = r#"
local record = redis.call('GET', KEYS[1])
local holder, incarnation, epoch = '', '', 0
if record then
  local a = string.find(record, ' ', 1, true)
  local b = string.find(record, ' ', a + 1, true)
  holder = string.sub(record, 1, a - 1)
  incarnation = string.sub(record, a + 1, b - 1)
  epoch = tonumber(string.sub(record, b + 1))
end
if holder == ARGV[1] and incarnation == ARGV[2] then return {1, epoch, 0} end
if holder ~= '' and redis.call('HGET', KEYS[3], holder) == incarnation then
  local seen = redis.call('ZSCORE', KEYS[2], holder)
  if seen then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if now - tonumber(seen) <= tonumber(ARGV[3]) then return {0, holder} end
  end
end
local moved = 0
if record then moved = 1 end
epoch = epoch + 1
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. epoch)
return {1, epoch, moved}
"#;

/// Keeps the epoch, empties server and incarnation: `  <epoch>`.
const RELEASE_OWNER: &str = r#"
local record = redis.call('GET', KEYS[1])
if not record then return 0 end
local a = string.find(record, ' ', 1, true)
if string.sub(record, 1, a - 1) ~= ARGV[1] then return 0 end
local b = string.find(record, ' ', a + 1, true)
redis.call('SET', KEYS[1], '  ' .. string.sub(record, b + 1))
return 1
"#;

/// Returns {now, id1, score1, json1, since1, id2, ...}.
const SEEN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { tostring(now) }
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  local json = redis.call('HGET', KEYS[2], all[i])
  if json then
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
    table.insert(out, json)
    table.insert(out, redis.call('HGET', KEYS[3], all[i]) or all[i + 1])
  end
end
return out
"#;

const PUT_PRESENCE: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v')
if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'j', ARGV[2])
return 1
"#;

const GET_PRESENCE: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, 'j') end
return out
"#;

/// KEYS[1] a server's samples; ARGV: the sample (JSON), how many to keep, TTL (ms).
const PUSH_SAMPLE: &str = r#"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

const TRY_LOCK: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Counts a failed login: one more in `n`, the time in `t`, and the key expires after the
/// quiet period (ARGV[1] ms), so throttle state never outlives its use.
const LOGIN_FAILED: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 't', now)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"#;

/// Returns {count1, age1, count2, age2, ...}; count -1 for a key with nothing remembered.
const LOGIN_FAILURES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'n', 't')
  if v[1] and v[2] then
    table.insert(out, tonumber(v[1]))
    table.insert(out, now - tonumber(v[2]))
  else
    table.insert(out, -1)
    table.insert(out, 0)
  end
end
return out
"#;

pub struct RedisCluster {
    client: Client,
    subscriber: SubscriberClient,
    /// Tasks that forward pub/sub messages and reconnect notices; aborted on drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn backend(error: fred::error::Error) -> ClusterError {
    use fred::error::ErrorKind;
    match error.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::NotFound => {
            ClusterError::Unavailable(error.to_string())
        }
        _ => ClusterError::Backend(error.to_string()),
    }
}

/// Capacity of the subscriber's broadcast channels: a slow bus reader must not lose messages.
const SUBSCRIBER_BROADCAST_CAPACITY: usize = 65_536;
/// Capacity of the command client's broadcast channels, whose notices (errors, reconnects)
/// nobody reads. fred allocates nine channels of this many slots per client up front: 65,536
/// here cost about 40 MB of resident memory per server for nothing.
const CLIENT_BROADCAST_CAPACITY: usize = 64;

/// fred's configuration for `UC_REDIS_URL`: one server, or a primary found through Sentinel
/// (fred asks a Sentinel for the primary, checks its role, and asks again on every
/// reconnect, so a promoted replica is found after a failover).
fn fred_config(url: &str) -> ClusterResult<Config> {
    let masked = crate::config::mask_url(url);
    let bad = |reason: String| ClusterError::Backend(format!("bad Redis URL {masked}: {reason}"));
    match RedisUrl::parse(url).map_err(|e| bad(e.to_string()))? {
        RedisUrl::Direct(url) => {
            Config::from_url(&url).map_err(|e| bad(e.to_string().replace(&url, &masked)))
        }
        RedisUrl::Sentinel(sentinel) => Ok(Config {
            server: ServerConfig::Sentinel {
                hosts: sentinel
                    .sentinels
                    .into_iter()
                    .map(|(host, port)| Server::new(host, port))
                    .collect(),
                service_name: sentinel.service,
                username: sentinel.sentinel_username,
                password: sentinel.sentinel_password,
            },
            username: sentinel.username,
            password: sentinel.password,
            database: sentinel.database,
            ..Config::default()
        }),
    }
}

fn config(url: &str, broadcast_capacity: usize) -> ClusterResult<Builder> {
    let config = fred_config(url)?;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| {
            perf.broadcast_channel_capacity = broadcast_capacity;
            perf.default_command_timeout = Duration::from_secs(5);
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = Duration::from_secs(3);
            conn.internal_command_timeout = Duration::from_secs(5);
            conn.unresponsive.max_timeout = Some(Duration::from_secs(6));
            conn.unresponsive.interval = Duration::from_secs(1);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

impl RedisCluster {
    /// Connects both clients; fails if Redis cannot be reached within a few seconds.
    pub async fn connect(url: &str) -> ClusterResult<Self> {
        let client = config(url, CLIENT_BROADCAST_CAPACITY)?
            .build()
            .map_err(backend)?;
        let subscriber = config(url, SUBSCRIBER_BROADCAST_CAPACITY)?
            .build_subscriber_client()
            .map_err(backend)?;
        let unreachable = || {
            ClusterError::Unavailable(format!(
                "no answer from Redis at {}",
                crate::config::mask_url(url)
            ))
        };
        let wait = Duration::from_secs(10);
        tokio::time::timeout(wait, client.init())
            .await
            .map_err(|_| unreachable())?
            .map_err(backend)?;
        tokio::time::timeout(wait, subscriber.init())
            .await
            .map_err(|_| unreachable())?
            .map_err(backend)?;
        Ok(Self {
            client,
            subscriber,
            tasks: Mutex::new(Vec::new()),
        })
    }

    async fn eval(
        &self,
        script: &str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> ClusterResult<Value> {
        self.fast().eval(script, keys, args).await.map_err(backend)
    }
}

impl RedisCluster {
    /// The command client, failing at once while it is not connected: a caller (a chat
    /// delivery, a presence change) must not wait out a reconnect. What it could not publish
    /// is made good when the bus is back (`peers::resync`).
    fn fast(&self) -> WithOptions<Client> {
        self.client.with_options(&Options {
            fail_fast: true,
            ..Options::default()
        })
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn as_i64(value: &Value) -> i64 {
    match value {
        Value::Integer(n) => *n,
        other => other.as_string().and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}

#[async_trait]
impl Cluster for RedisCluster {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> ClusterResult<()> {
        let _: Value = self.fast().ping(None).await.map_err(backend)?;
        Ok(())
    }

    async fn epoch(&self) -> ClusterResult<String> {
        let info: String = self
            .fast()
            .info(Some(fred::types::InfoKind::Server))
            .await
            .map_err(backend)?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
            .ok_or_else(|| ClusterError::Backend("INFO server has no run_id".into()))
    }

    async fn ensure_subscribed(&self, me: &ServerId) -> ClusterResult<bool> {
        let channel = keys::server_channel(me);
        let counts: Vec<Value> = self
            .fast()
            .pubsub_numsub(channel.clone())
            .await
            .map_err(backend)?;
        let subscribers = counts.get(1).map(as_i64).unwrap_or(0);
        if subscribers > 0 {
            return Ok(false);
        }
        tracing::warn!(%channel, "no subscription on Redis for this server's channel; subscribing again");
        self.subscriber.resubscribe_all().await.map_err(backend)?;
        Ok(true)
    }

    async fn subscribe(&self, me: &ServerId) -> ClusterResult<mpsc::Receiver<BusInput>> {
        let (sender, receiver) = mpsc::channel(65_536);
        let mut messages = self.subscriber.message_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        let manager = self.subscriber.manage_subscriptions();
        self.subscriber
            .subscribe(vec![
                keys::server_channel(me),
                keys::BROADCAST_CHANNEL.to_string(),
                keys::MEDIA_EVENTS_CHANNEL.to_string(),
            ])
            .await
            .map_err(backend)?;
        let forward = tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = messages.recv() => match received {
                        Ok(message) => {
                            let Some(text) = message.value.as_bytes() else { continue };
                            if text.len() > shared::limits::MAX_BUS_MESSAGE_BYTES {
                                tracing::warn!(bytes = text.len(), "dropped an oversized bus message");
                                continue;
                            }
                            if &*message.channel == keys::MEDIA_EVENTS_CHANNEL {
                                match serde_json::from_slice::<shared::media::MediaEvent>(text) {
                                    Ok(event) => {
                                        if sender.send(BusInput::Media(event)).await.is_err() {
                                            break;
                                        }
                                    }
                                    Err(error) => tracing::warn!(%error, "dropped a malformed media event"),
                                }
                                continue;
                            }
                            match serde_json::from_slice::<BusMessage>(text) {
                                Ok(parsed) if parsed.v == shared::bus::BUS_VERSION => {
                                    if sender.send(BusInput::Message(Box::new(parsed))).await.is_err() {
                                        break;
                                    }
                                }
                                Ok(parsed) => tracing::warn!(version = parsed.v, "dropped a bus message of an unknown version"),
                                Err(error) => tracing::warn!(%error, "dropped a malformed bus message"),
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(lost)) => {
                            tracing::warn!(lost, "bus reader lagged; resyncing");
                            if sender.send(BusInput::Resync).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    reconnected = reconnects.recv() => match reconnected {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            tracing::info!("Redis subscriber reconnected; resyncing");
                            if sender.send(BusInput::Resync).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        let mut tasks = self.tasks.lock().unwrap();
        tasks.push(forward);
        tasks.push(tokio::spawn(async move {
            let _ = manager.await;
        }));
        Ok(receiver)
    }

    async fn publish(&self, to: &ServerId, message: &BusMessage) -> ClusterResult<()> {
        let text =
            serde_json::to_string(message).map_err(|e| ClusterError::Backend(e.to_string()))?;
        // Chat deliveries the bus refuses are published again later (`Chat::republish`), so
        // they need not wait long on a connection that may have just died.
        let client = if matches!(message.body, BusBody::Messages { .. }) {
            self.client.with_options(&Options {
                fail_fast: true,
                timeout: Some(DELIVERY_PUBLISH_TIMEOUT),
                ..Options::default()
            })
        } else {
            self.fast()
        };
        let _: Value = client
            .publish(keys::server_channel(to), text)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn broadcast(&self, message: &BusMessage) -> ClusterResult<()> {
        let text =
            serde_json::to_string(message).map_err(|e| ClusterError::Backend(e.to_string()))?;
        let _: Value = self
            .fast()
            .publish(keys::BROADCAST_CHANNEL, text)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        heartbeat: &ServerHeartbeat,
        dead_after_ms: u64,
    ) -> ClusterResult<bool> {
        let json =
            serde_json::to_string(heartbeat).map_err(|e| ClusterError::Backend(e.to_string()))?;
        let lapsed = self
            .eval(
                HEARTBEAT,
                vec![
                    keys::SERVERS_SEEN.into(),
                    keys::SERVERS_INFO.into(),
                    keys::SERVERS_SINCE.into(),
                    keys::SERVERS_INCARNATION.into(),
                ],
                vec![
                    heartbeat.id.to_string(),
                    json,
                    dead_after_ms.to_string(),
                    heartbeat.incarnation.clone(),
                ],
            )
            .await?;
        Ok(as_i64(&lapsed) == 1)
    }

    async fn servers(&self) -> ClusterResult<Vec<SeenServer>> {
        let value = self
            .eval(
                SEEN,
                vec![
                    keys::SERVERS_SEEN.into(),
                    keys::SERVERS_INFO.into(),
                    keys::SERVERS_SINCE.into(),
                ],
                vec![],
            )
            .await?;
        let items: Vec<Value> = value.into_array();
        let now = items.first().map(as_i64).unwrap_or(0);
        let mut servers = Vec::new();
        for chunk in items[1..].chunks(4) {
            if chunk.len() < 4 {
                break;
            }
            let last_seen_ms = as_i64(&chunk[1]);
            let Some(json) = chunk[2].as_bytes() else {
                continue;
            };
            match serde_json::from_slice::<ServerHeartbeat>(json) {
                Ok(heartbeat) => servers.push(SeenServer {
                    heartbeat,
                    last_seen_ms,
                    age_ms: now - last_seen_ms,
                    alive_since_ms: as_i64(&chunk[3]),
                }),
                Err(error) => tracing::warn!(%error, "skipped a malformed heartbeat record"),
            }
        }
        Ok(servers)
    }

    async fn forget_server(&self, server: &ServerId) -> ClusterResult<()> {
        let _: Value = self
            .fast()
            .zrem(keys::SERVERS_SEEN, server.to_string())
            .await
            .map_err(backend)?;
        let _: Value = self
            .fast()
            .hdel(keys::SERVERS_INFO, server.to_string())
            .await
            .map_err(backend)?;
        let _: Value = self
            .fast()
            .hdel(keys::SERVERS_SINCE, server.to_string())
            .await
            .map_err(backend)?;
        let _: Value = self
            .fast()
            .hdel(keys::SERVERS_INCARNATION, server.to_string())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn declare_dead(
        &self,
        server: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<bool> {
        let done = self
            .eval(
                DECLARE_DEAD,
                vec![keys::SERVERS_SEEN.into(), keys::SERVERS_INCARNATION.into()],
                vec![
                    server.to_string(),
                    incarnation.to_string(),
                    dead_after_ms.to_string(),
                ],
            )
            .await?;
        Ok(as_i64(&done) == 1)
    }

    async fn claim_owner(
        &self,
        user: &UserId,
        me: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<OwnerClaim> {
        let value = self
            .eval(
                CLAIM_OWNER,
                vec![
                    keys::owner(user),
                    keys::SERVERS_SEEN.into(),
                    keys::SERVERS_INCARNATION.into(),
                ],
                vec![
                    me.to_string(),
                    incarnation.to_string(),
                    dead_after_ms.to_string(),
                ],
            )
            .await?;
        let items = value.into_array();
        let granted = items.first().map(as_i64) == Some(1);
        let second = items.get(1).cloned().unwrap_or(Value::Null);
        Ok(if granted {
            OwnerClaim::Granted {
                epoch: as_i64(&second).max(0) as u64,
                moved: items.get(2).map(as_i64) == Some(1),
            }
        } else {
            OwnerClaim::Held {
                by: ServerId::new(second.as_string().unwrap_or_default()),
            }
        })
    }

    async fn release_owner(&self, user: &UserId, me: &ServerId) -> ClusterResult<()> {
        self.eval(RELEASE_OWNER, vec![keys::owner(user)], vec![me.to_string()])
            .await?;
        Ok(())
    }

    async fn owners(&self, users: &[UserId]) -> ClusterResult<Vec<Option<ServerId>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = users.iter().map(keys::owner).collect();
        let records: Vec<Option<String>> = self.fast().mget(keys).await.map_err(backend)?;
        Ok(records
            .into_iter()
            .map(|record| {
                let record = record?;
                let holder = record.split(' ').next().unwrap_or_default();
                (!holder.is_empty()).then(|| ServerId::new(holder.to_string()))
            })
            .collect())
    }

    async fn ha_set(&self, field: &str, value: Option<&str>) -> ClusterResult<()> {
        let _: Value = match value {
            Some(value) => self
                .fast()
                .hset(keys::HA, (field.to_string(), value.to_string()))
                .await
                .map_err(backend)?,
            None => self
                .fast()
                .hdel(keys::HA, field.to_string())
                .await
                .map_err(backend)?,
        };
        Ok(())
    }

    async fn ha_all(&self) -> ClusterResult<Vec<(String, String)>> {
        let all: std::collections::HashMap<String, String> =
            self.fast().hgetall(keys::HA).await.map_err(backend)?;
        let mut all: Vec<(String, String)> = all.into_iter().collect();
        all.sort();
        Ok(all)
    }

    async fn push_sample(
        &self,
        server: &ServerId,
        sample: &shared::console::StatsSample,
        keep: usize,
        ttl_ms: u64,
    ) -> ClusterResult<()> {
        let json =
            serde_json::to_string(sample).map_err(|e| ClusterError::Backend(e.to_string()))?;
        self.eval(
            PUSH_SAMPLE,
            vec![keys::stats_samples(server)],
            vec![json, keep.max(1).to_string(), ttl_ms.to_string()],
        )
        .await?;
        Ok(())
    }

    async fn samples(
        &self,
        servers: &[ServerId],
    ) -> ClusterResult<Vec<Vec<shared::console::StatsSample>>> {
        let mut all = Vec::with_capacity(servers.len());
        for server in servers {
            let texts: Vec<String> = self
                .fast()
                .lrange(keys::stats_samples(server), 0, -1)
                .await
                .map_err(backend)?;
            // A sample of another version that does not parse is left out, not fatal.
            all.push(
                texts
                    .iter()
                    .filter_map(|text| serde_json::from_str(text).ok())
                    .collect(),
            );
        }
        Ok(all)
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> ClusterResult<bool> {
        let value = self
            .eval(
                TRY_LOCK,
                vec![keys::lock(name)],
                vec![holder.to_string(), ttl_ms.to_string()],
            )
            .await?;
        Ok(as_i64(&value) == 1)
    }

    async fn lock_holder(&self, name: &str) -> ClusterResult<Option<String>> {
        self.fast().get(keys::lock(name)).await.map_err(backend)
    }

    async fn put_presence(&self, snapshot: &PresenceSnapshot) -> ClusterResult<()> {
        let json =
            serde_json::to_string(snapshot).map_err(|e| ClusterError::Backend(e.to_string()))?;
        self.eval(
            PUT_PRESENCE,
            vec![keys::presence(&snapshot.user)],
            vec![snapshot.version.to_string(), json],
        )
        .await?;
        Ok(())
    }

    async fn get_presence(&self, users: &[UserId]) -> ClusterResult<Vec<Option<PresenceSnapshot>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(users.len());
        // Bounded key count per script call keeps each call short.
        for chunk in users.chunks(500) {
            let value = self
                .eval(
                    GET_PRESENCE,
                    chunk.iter().map(keys::presence).collect(),
                    vec![],
                )
                .await?;
            let mut items = value.into_array();
            items.resize(chunk.len(), Value::Null);
            for item in items {
                out.push(
                    item.as_bytes()
                        .and_then(|json| serde_json::from_slice(json).ok()),
                );
            }
        }
        Ok(out)
    }

    async fn set_online(
        &self,
        server: &ServerId,
        user: &UserId,
        online: bool,
    ) -> ClusterResult<()> {
        let key = keys::online_users(server);
        let _: Value = if online {
            self.fast().sadd(key, user.to_string()).await
        } else {
            self.fast().srem(key, user.to_string()).await
        }
        .map_err(backend)?;
        Ok(())
    }

    async fn online_users(&self, server: &ServerId) -> ClusterResult<Vec<UserId>> {
        let members: Vec<String> = self
            .fast()
            .smembers(keys::online_users(server))
            .await
            .map_err(backend)?;
        let mut users: Vec<UserId> = members.into_iter().map(UserId).collect();
        users.sort();
        Ok(users)
    }

    async fn clear_online(&self, server: &ServerId) -> ClusterResult<()> {
        let _: Value = self
            .fast()
            .del(keys::online_users(server))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn lease_acquire(
        &self,
        kind: &str,
        key: &str,
        holder: &ServerId,
        capacity: Option<u32>,
    ) -> ClusterResult<LeaseOutcome> {
        let capacity_arg = capacity.map_or(-1, i64::from);
        let value = self
            .eval(
                ACQUIRE,
                vec![keys::leases(kind), LEASE_KINDS.into()],
                vec![
                    key.to_string(),
                    holder.to_string(),
                    capacity_arg.to_string(),
                    kind.to_string(),
                ],
            )
            .await?;
        Ok(match as_i64(&value) {
            -2 => LeaseOutcome::AlreadyHeld,
            -1 => LeaseOutcome::Exhausted {
                capacity: capacity.unwrap_or(0),
            },
            _ => LeaseOutcome::Granted,
        })
    }

    async fn lease_release(&self, kind: &str, key: &str) -> ClusterResult<bool> {
        let removed: i64 = self
            .fast()
            .hdel(keys::leases(kind), key.to_string())
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    async fn lease_release_holder(&self, holder: &ServerId) -> ClusterResult<u32> {
        let prefix = format!("{}:leases:", keys::PREFIX);
        let value = self
            .eval(
                RELEASE_HOLDER,
                vec![LEASE_KINDS.into()],
                vec![holder.to_string(), prefix],
            )
            .await?;
        Ok(as_i64(&value).max(0) as u32)
    }

    async fn lease_count(&self, kind: &str) -> ClusterResult<u32> {
        let count: i64 = self
            .fast()
            .hlen(keys::leases(kind))
            .await
            .map_err(backend)?;
        Ok(count.max(0) as u32)
    }

    async fn leases_held(&self, kind: &str, holder: &ServerId) -> ClusterResult<Vec<String>> {
        let all: std::collections::HashMap<String, String> = self
            .client
            .hgetall(keys::leases(kind))
            .await
            .map_err(backend)?;
        Ok(all
            .into_iter()
            .filter(|(_, server)| server == holder.as_str())
            .map(|(key, _)| key)
            .collect())
    }

    async fn login_failed(&self, key: &str, forget_after_ms: u64) -> ClusterResult<u32> {
        let value = self
            .eval(
                LOGIN_FAILED,
                vec![keys::login_failures(key)],
                vec![forget_after_ms.max(1).to_string()],
            )
            .await?;
        Ok(as_i64(&value).clamp(0, u32::MAX as i64) as u32)
    }

    async fn login_failures(&self, names: &[String]) -> ClusterResult<Vec<Option<LoginFailures>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let value = self
            .eval(
                LOGIN_FAILURES,
                names
                    .iter()
                    .map(|name| keys::login_failures(name))
                    .collect(),
                vec![],
            )
            .await?;
        let items = value.into_array();
        Ok(names
            .iter()
            .enumerate()
            .map(|(index, _)| {
                let count = items.get(2 * index).map(as_i64).unwrap_or(-1);
                let age_ms = items.get(2 * index + 1).map(as_i64).unwrap_or(0);
                (count >= 0).then(|| LoginFailures {
                    count: count.min(u32::MAX as i64) as u32,
                    age_ms,
                })
            })
            .collect())
    }

    async fn login_forget(&self, key: &str) -> ClusterResult<()> {
        let _: Value = self
            .fast()
            .del(keys::login_failures(key))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn media_servers(&self) -> ClusterResult<Vec<(MediaServerStatus, TimestampMs)>> {
        let value = self
            .eval(
                SEEN,
                // MediaServers keep no since-times: the third key names no hash.
                vec![
                    keys::MEDIA_SEEN.into(),
                    keys::MEDIA_INFO.into(),
                    keys::MEDIA_SINCE.into(),
                ],
                vec![],
            )
            .await?;
        let items: Vec<Value> = value.into_array();
        let mut media = Vec::new();
        for chunk in items.get(1..).unwrap_or_default().chunks(4) {
            if chunk.len() < 4 {
                break;
            }
            let Some(json) = chunk[2].as_bytes() else {
                continue;
            };
            if let Ok(status) = serde_json::from_slice::<MediaServerStatus>(json) {
                media.push((status, as_i64(&chunk[1])));
            }
        }
        Ok(media)
    }
}
