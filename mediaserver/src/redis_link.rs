//! The MediaServer's presence in a cluster: a heartbeat in Redis and the publication of leg
//! events, surviving Redis outages.
//!
//! Every second: `ZADD uc:media:seen <now_ms> <id>`, `HSET uc:media:info <id> <status JSON>`
//! and `SET uc:media:status:<id> <status JSON> PX 5000`. UCServers sweep the sorted set to
//! find dead MediaServers, so nothing depends on key expiry notifications. Leg events go to
//! `uc:media:events` as JSON. While Redis is away, calls keep flowing (the engine does not
//! wait on this task); events wait in a bounded queue and are published on return, the
//! heartbeat simply resumes.

use fred::prelude::*;
use fred::types::Expiration;
use shared::keys;
use shared::media::{MediaEvent, MediaServerStatus};
use shared::url::RedisUrl;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events kept while Redis is unreachable; older ones are dropped past this.
const PENDING_EVENTS_MAX: usize = 10_000;
/// Heartbeat period.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Lifetime of the per-server status key.
const STATUS_KEY_TTL_MS: i64 = 5_000;

/// fred's configuration for `UC_REDIS_URL`: one server, or a primary found through Redis
/// Sentinel (asked again on every reconnect, so a promoted replica is found after a failover).
fn fred_config(url: &str) -> Result<Config, Error> {
    match RedisUrl::parse(url).map_err(|e| Error::new(ErrorKind::Config, e.to_string()))? {
        RedisUrl::Direct(url) => Config::from_url(&url),
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

/// Builds a client that reconnects forever and never lets a command hang.
pub(crate) fn build_client(url: &str) -> Result<Client, Error> {
    let config = fred_config(url)?;
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
            c.unresponsive.max_timeout = Some(Duration::from_secs(3));
            c.unresponsive.interval = Duration::from_secs(1);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(2);
        })
        // At most 1 s between attempts: after Redis returns (empty, if it restarted) no
        // UCServer places a call here until this heartbeat is back in it.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
        .build()
}

/// Runs until the engine stops (its status channel closes).
pub(crate) async fn run_redis_link(
    client: Client,
    mut status: watch::Receiver<MediaServerStatus>,
    mut events: Option<mpsc::Receiver<MediaEvent>>,
) {
    // `connect` spawns fred's own connection task; `quit` below ends it.
    let _connection = client.connect();
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let record = status.borrow().clone();
                match write_heartbeat(&client, &record).await {
                    Ok(()) => {
                        if !healthy {
                            tracing::info!("Redis reachable again; heartbeat resumed");
                        }
                        healthy = true;
                        flush_events(&client, &mut pending).await;
                    }
                    Err(e) => {
                        if healthy {
                            tracing::warn!(error = %e, "Redis heartbeat failed; calls continue, retrying every second");
                        }
                        healthy = false;
                    }
                }
            }
            event = async {
                match events.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            } => match event {
                Some(event) => {
                    match serde_json::to_string(&event) {
                        Ok(json) => {
                            if pending.len() >= PENDING_EVENTS_MAX {
                                pending.pop_front();
                                tracing::warn!("event queue for Redis full; oldest event dropped");
                            }
                            pending.push_back(json);
                        }
                        Err(e) => tracing::error!(error = %e, "media event not serializable"),
                    }
                    if healthy {
                        flush_events(&client, &mut pending).await;
                    }
                }
                None => events = None,
            },
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    flush_events(&client, &mut pending).await;
    let _ = client.quit().await;
}

async fn write_heartbeat(client: &Client, record: &MediaServerStatus) -> Result<(), Error> {
    let json =
        serde_json::to_string(record).map_err(|e| Error::new(ErrorKind::Parse, e.to_string()))?;
    let now = shared::now_ms();
    let id = record.id.as_str();
    let _: () = client
        .zadd(keys::MEDIA_SEEN, None, None, false, false, (now as f64, id))
        .await?;
    let _: () = client.hset(keys::MEDIA_INFO, (id, json.as_str())).await?;
    let _: () = client
        .set(
            keys::media_status(&record.id),
            json.as_str(),
            Some(Expiration::PX(STATUS_KEY_TTL_MS)),
            None,
            false,
        )
        .await?;
    Ok(())
}

async fn flush_events(client: &Client, pending: &mut VecDeque<String>) {
    while let Some(json) = pending.front() {
        let result: Result<i64, Error> = client
            .publish(keys::MEDIA_EVENTS_CHANNEL, json.as_str())
            .await;
        match result {
            Ok(_) => {
                pending.pop_front();
            }
            Err(e) => {
                tracing::debug!(error = %e, "publishing media event failed; will retry");
                return;
            }
        }
    }
}
