//! The settings task of a server: reads the runtime settings from SQL, puts them in force in
//! the components, keeps them in the local cache and reports to SQL what it applied, so that
//! the admin API shows per server "applied revision N" (or what it refused).
//!
//! It reads SQL when woken (bus `SettingsChanged`, or an admin's change on this server) and
//! every [`RECHECK_EVERY`] besides, so a lost notification or an SQL outage leaves no server
//! stale for longer than that. While SQL cannot be reached it keeps what it applied last; at
//! start it runs on the cache file when SQL cannot be read. Its own task, so that a slow
//! database never holds up the heartbeat.

use super::{Applied, Values};
use crate::rate_limit::{Limit, RateLimitConfig};
use crate::server::Server;
use crate::store::SettingRecord;
use shared::api::{SettingValue, SettingsCache, SettingsReport};
use std::sync::Arc;
use std::time::Duration;

/// How often SQL is read again without a notification.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// A stored row as the wire shows it (a value that is not JSON shows as its text, which the
/// check then refuses).
pub fn stored_value(record: &SettingRecord) -> SettingValue {
    SettingValue {
        scope: record.scope.clone(),
        key: record.key.clone(),
        value: serde_json::from_str(&record.value)
            .unwrap_or_else(|_| serde_json::Value::String(record.value.clone())),
        version: record.version,
        changed_by: record.changed_by.clone(),
        changed_ms: record.changed_ms,
    }
}

/// What the task remembers between two reads.
#[derive(Default)]
struct Progress {
    /// The revision whose report SQL has (reporting again after SQL came back).
    reported: Option<u64>,
    /// SQL could not be read last time (log once per outage).
    sql_away: bool,
}

/// Applies the settings before the server serves anyone: from SQL, or from the cache when
/// SQL cannot be reached.
pub async fn load_at_start(server: &Arc<Server>) {
    let mut progress = Progress::default();
    if sync(server, &mut progress).await {
        return;
    }
    match super::read_cache(&server.config.data_dir) {
        Ok(cache) => {
            apply(server, cache.revision, &cache.values, true);
            tracing::warn!(
                revision = cache.revision,
                "SQL cannot be reached: running on the cached settings"
            );
        }
        Err(error) => tracing::warn!(
            %error,
            "SQL cannot be reached and there are no cached settings: running on the configuration's values"
        ),
    }
}

/// The task: reads SQL when woken and every [`RECHECK_EVERY`], until `stop`.
pub async fn run(server: Arc<Server>, mut stop: tokio::sync::broadcast::Receiver<()>) {
    let mut progress = Progress::default();
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = server.settings.woken() => {}
            _ = stop.recv() => break,
        }
        sync(&server, &mut progress).await;
    }
}

/// Reads SQL and applies what changed; returns false when SQL could not be read.
async fn sync(server: &Server, progress: &mut Progress) -> bool {
    // A cached read: the applied values answer meanwhile, so while SQL is known away this
    // waits briefly instead of the pool's timeout (a start without the database is prompt).
    let read = crate::timed::sql_cached_read(&server.metrics, server.store.settings()).await;
    let snapshot = match read {
        Ok(snapshot) => snapshot,
        Err(error) => {
            if !progress.sql_away {
                let applied = server.settings.applied();
                tracing::warn!(
                    %error,
                    revision = ?applied.revision,
                    "settings cannot be read from SQL: keeping the ones applied"
                );
            }
            progress.sql_away = true;
            return false;
        }
    };
    if std::mem::take(&mut progress.sql_away) {
        tracing::info!(revision = snapshot.revision, "settings read from SQL again");
    }
    let applied = server.settings.applied();
    if applied.revision == Some(snapshot.revision)
        && !applied.from_cache
        && progress.reported == Some(snapshot.revision)
    {
        return true;
    }
    let values: Vec<SettingValue> = snapshot.rows.iter().map(stored_value).collect();
    let report = apply(server, snapshot.revision, &values, false);
    let cache = SettingsCache {
        revision: snapshot.revision,
        values: super::concerning(&values, &server.id).cloned().collect(),
    };
    if let Err(error) = super::write_cache(&server.config.data_dir, &cache) {
        tracing::warn!(%error, "cannot write the settings cache");
    }
    let record = crate::store::SettingsAppliedRecord {
        server: server.id.clone(),
        revision: snapshot.revision,
        applied_ms: shared::now_ms(),
        report: serde_json::to_string(&report).unwrap_or_default(),
    };
    if server
        .sql(server.store.put_settings_applied(&record))
        .await
        .is_ok()
    {
        progress.reported = Some(snapshot.revision);
    }
    true
}

/// Puts the values for this server in force and returns the report of what it runs with.
fn apply(
    server: &Server,
    revision: u64,
    values: &[SettingValue],
    from_cache: bool,
) -> SettingsReport {
    let defaults = super::defaults(&server.config);
    let previous = server.settings.applied().values;
    let (resolved, refused) = super::resolve(values, &server.id, &defaults, &previous);
    put_in_force(server, &resolved);
    for refusal in &refused {
        tracing::warn!(key = %refusal.key, reason = %refusal.reason, "setting refused: the previous value stays");
    }
    for (key, value) in &resolved {
        if previous.get(key) != Some(value) {
            tracing::info!(%key, value, revision, "setting applied");
        }
    }
    let json = |values: &Values| {
        values
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::from(*value)))
            .collect()
    };
    let report = SettingsReport {
        values: json(&resolved),
        defaults: json(&defaults),
        refused: refused.clone(),
    };
    server.settings.set_applied(Applied {
        revision: Some(revision),
        values: resolved,
        refused,
        from_cache,
    });
    report
}

/// Hands each value to the component that uses it; each reads it on its next use.
fn put_in_force(server: &Server, values: &Values) {
    let value = |key: &str| values.get(key).copied().unwrap_or(0);
    let small = |key: &str| u32::try_from(value(key)).unwrap_or(u32::MAX);
    server.calls.set_ring_timeout(value("ring_timeout_ms"));
    server
        .devices
        .set_mdm_buffer_limit(usize::try_from(value("mdm_buffer_limit")).unwrap_or(usize::MAX));
    server.rate_limits.reconfigure(RateLimitConfig {
        send: Limit {
            per_minute: small("rate_send_per_minute"),
            burst: small("rate_send_burst"),
        },
        typing: Limit {
            per_minute: small("rate_typing_per_minute"),
            burst: small("rate_typing_burst"),
        },
        create_conversation: Limit {
            per_minute: small("rate_conversations_per_minute"),
            burst: small("rate_conversations_burst"),
        },
    });
    server
        .chat
        .outbox()
        .set_limits(crate::outbox::OutboxLimits {
            max_messages: usize::try_from(value("outbox_max_messages")).unwrap_or(usize::MAX),
            max_age_ms: i64::try_from(value("outbox_max_age_ms")).unwrap_or(i64::MAX),
        });
}
