//! Runtime settings: values an administrator changes while the cluster runs, kept in SQL
//! cluster-wide (scope `global`) or for one server (scope = its id), applied live by every
//! server without a restart.
//!
//! This module is the part without IO of its own: the registry of settings ([`DEFINITIONS`]:
//! name, bounds, description, default from the server's file/environment config), the check
//! of a value ([`validate`]), the choice of the value each server runs with ([`resolve`]: its
//! override, else the global value, else its config; a stored value that fails the check is
//! refused and the previous one kept) and the local cache file that a server runs on while
//! SQL cannot be reached ([`read_cache`], [`write_cache`]). [`Live`] is what the server holds:
//! the values it applied and a wake-up for its settings task. Reading SQL, applying to the
//! components and reporting back is `apply.rs` (a layer above: it drives the server).
//!
//! Every setting here applies live: each component reads its value on every use
//! (`Calls::config`, `Devices::deliver`, `RateLimits::check`, `Outbox::push`). A setting that
//! could not would say what to restart in `restart`; the goal is that there are none.

pub mod apply;

use crate::config::Config;
use serde_json::Value;
use shared::ServerId;
use shared::api::{SettingRefusal, SettingValue, SettingsCache};
use std::collections::BTreeMap;
use std::path::Path;

/// The scope of a cluster-wide value.
pub const GLOBAL: &str = "global";
/// The cache file under the data directory.
pub const CACHE_FILE: &str = "settings-cache.json";

/// One runtime setting. All are integers today; `min..=max` are the values allowed.
#[derive(Clone, Copy, Debug)]
pub struct Definition {
    /// Also the config field (`UC_` + upper case in the environment).
    pub key: &'static str,
    pub description: &'static str,
    pub min: u64,
    pub max: u64,
    /// What must restart for a change to count (`None`: applies live).
    pub restart: Option<&'static str>,
    /// The value of this server's configuration (file, then `UC_*`).
    pub default: fn(&Config) -> u64,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Every runtime setting, in the order the console shows them.
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        key: "ring_timeout_ms",
        description: "how long a new call rings before it counts as not answered (ms)",
        min: 1_000,
        max: 600_000,
        restart: None,
        default: |c| c.ring_timeout_ms,
    },
    Definition {
        key: "mdm_buffer_limit",
        description: "events held for a device in quiet mode before it is flushed anyway",
        min: 1,
        max: 100_000,
        restart: None,
        default: |c| c.mdm_buffer_limit as u64,
    },
    Definition {
        key: "rate_send_per_minute",
        description: "chat messages one device may send per minute, sustained (0: no limit)",
        min: 0,
        max: 1_000_000,
        restart: None,
        default: |c| u64::from(c.rate_send_per_minute),
    },
    Definition {
        key: "rate_send_burst",
        description: "chat messages one device may send at once",
        min: 1,
        max: 100_000,
        restart: None,
        default: |c| u64::from(c.rate_send_burst),
    },
    Definition {
        key: "rate_typing_per_minute",
        description: "typing notices per device per minute (0: no limit)",
        min: 0,
        max: 1_000_000,
        restart: None,
        default: |c| u64::from(c.rate_typing_per_minute),
    },
    Definition {
        key: "rate_typing_burst",
        description: "typing notices per device at once",
        min: 1,
        max: 100_000,
        restart: None,
        default: |c| u64::from(c.rate_typing_burst),
    },
    Definition {
        key: "rate_conversations_per_minute",
        description: "new conversations per device per minute (0: no limit)",
        min: 0,
        max: 1_000_000,
        restart: None,
        default: |c| u64::from(c.rate_conversations_per_minute),
    },
    Definition {
        key: "rate_conversations_burst",
        description: "new conversations per device at once",
        min: 1,
        max: 100_000,
        restart: None,
        default: |c| u64::from(c.rate_conversations_burst),
    },
    Definition {
        key: "outbox_max_messages",
        description: "messages the outbox keeps while the database is away; beyond, sends are refused",
        min: 1,
        max: 10_000_000,
        restart: None,
        default: |c| c.outbox_max_messages as u64,
    },
    Definition {
        key: "outbox_max_age_ms",
        description: "the outbox takes no more once its oldest message is this old (ms)",
        min: 1_000,
        max: 7 * DAY_MS,
        restart: None,
        default: |c| c.outbox_max_age_ms,
    },
];

pub fn definition(key: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.key == key)
}

/// The values a server runs with, by key: one for every definition.
pub type Values = BTreeMap<String, u64>;

/// The values of a server's own configuration.
pub fn defaults(config: &Config) -> Values {
    DEFINITIONS
        .iter()
        .map(|d| (d.key.to_string(), (d.default)(config)))
        .collect()
}

/// Checks a value for `key`; the error says why it is refused, to a person.
pub fn validate(key: &str, value: &Value) -> Result<u64, String> {
    let definition = definition(key).ok_or_else(|| format!("there is no setting '{key}'"))?;
    let number = value
        .as_u64()
        .ok_or_else(|| format!("{key} takes a whole number, not {value}"))?;
    if !(definition.min..=definition.max).contains(&number) {
        return Err(format!(
            "{key} must be between {} and {}, not {number}",
            definition.min, definition.max
        ));
    }
    Ok(number)
}

/// The stored values that concern `server`: global ones and its own overrides.
pub fn concerning<'a>(
    values: &'a [SettingValue],
    server: &'a ServerId,
) -> impl Iterator<Item = &'a SettingValue> {
    values
        .iter()
        .filter(move |v| v.scope == GLOBAL || v.scope == server.as_str())
}

/// What `server` runs with, from the stored `values`, its config's `defaults` and what it
/// ran with before (`previous`): for each setting its override, else the global value, else
/// the default. A stored value that fails [`validate`] is refused, with the reason, and the
/// previous value kept.
pub fn resolve(
    values: &[SettingValue],
    server: &ServerId,
    defaults: &Values,
    previous: &Values,
) -> (Values, Vec<SettingRefusal>) {
    let mut resolved = Values::new();
    let mut refused = Vec::new();
    for definition in DEFINITIONS {
        let key = definition.key;
        let chosen = values
            .iter()
            .filter(|v| v.scope == server.as_str() && v.key == key)
            .chain(values.iter().filter(|v| v.scope == GLOBAL && v.key == key))
            .next();
        let fallback = previous
            .get(key)
            .or(defaults.get(key))
            .copied()
            .unwrap_or(0);
        let value = match chosen {
            None => defaults.get(key).copied().unwrap_or(fallback),
            Some(stored) => match validate(key, &stored.value) {
                Ok(value) => value,
                Err(reason) => {
                    refused.push(SettingRefusal {
                        key: key.to_string(),
                        reason,
                    });
                    fallback
                }
            },
        };
        resolved.insert(key.to_string(), value);
    }
    (resolved, refused)
}

/// What the server applied last, and a bell for its settings task.
#[derive(Default)]
pub struct Live {
    state: std::sync::RwLock<Applied>,
    /// Rung when the bus says settings changed (or an admin here changed them).
    wake: tokio::sync::Notify,
}

/// The settings a server runs with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The revision applied (`None`: only the config's values so far).
    pub revision: Option<u64>,
    pub values: Values,
    pub refused: Vec<SettingRefusal>,
    /// Read from the local cache because SQL could not be reached.
    pub from_cache: bool,
}

impl Live {
    pub fn new(defaults: Values) -> Self {
        Self {
            state: std::sync::RwLock::new(Applied {
                values: defaults,
                ..Applied::default()
            }),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn applied(&self) -> Applied {
        self.state.read().unwrap().clone()
    }

    pub fn set_applied(&self, applied: Applied) {
        *self.state.write().unwrap() = applied;
    }

    /// Asks the settings task to read SQL again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// The cache in `dir`, if there is a readable one.
pub fn read_cache(dir: &Path) -> Result<SettingsCache, String> {
    let path = dir.join(CACHE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the cache in `dir` whole or not at all (a temporary file renamed over it).
pub fn write_cache(dir: &Path, cache: &SettingsCache) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(CACHE_FILE);
    let temporary = dir.join(format!("{CACHE_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(cache).map_err(std::io::Error::other)?;
    std::fs::write(&temporary, text)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(scope: &str, key: &str, value: Value) -> SettingValue {
        SettingValue {
            scope: scope.into(),
            key: key.into(),
            value,
            version: 1,
            changed_by: None,
            changed_ms: 0,
        }
    }

    #[test]
    fn override_then_global_then_default_and_a_bad_value_keeps_the_old_one() {
        let config = Config::default();
        let defaults = defaults(&config);
        let s1 = ServerId::from("s1");
        let s2 = ServerId::from("s2");
        let values = vec![
            stored(GLOBAL, "ring_timeout_ms", json!(5_000)),
            stored("s1", "ring_timeout_ms", json!(7_000)),
            stored(GLOBAL, "rate_send_burst", json!("many")),
        ];
        let mut previous = defaults.clone();
        previous.insert("rate_send_burst".into(), 42);
        let (on_s1, refused) = resolve(&values, &s1, &defaults, &previous);
        assert_eq!(on_s1["ring_timeout_ms"], 7_000);
        assert_eq!(
            on_s1["rate_send_burst"], 42,
            "the refused value keeps the old one"
        );
        assert_eq!(on_s1["mdm_buffer_limit"], config.mdm_buffer_limit as u64);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("whole number"),
            "{}",
            refused[0].reason
        );
        let (on_s2, _) = resolve(&values, &s2, &defaults, &defaults);
        assert_eq!(on_s2["ring_timeout_ms"], 5_000);
        assert_eq!(on_s2.len(), DEFINITIONS.len());
    }

    #[test]
    fn validation_names_the_bounds() {
        assert_eq!(validate("ring_timeout_ms", &json!(2_000)), Ok(2_000));
        let error = validate("ring_timeout_ms", &json!(10)).unwrap_err();
        assert!(error.contains("between 1000 and 600000"), "{error}");
        assert!(validate("no_such", &json!(1)).is_err());
        assert!(validate("rate_send_burst", &json!(-1)).is_err());
        for definition in DEFINITIONS {
            let default = (definition.default)(&Config::default());
            assert!(
                (definition.min..=definition.max).contains(&default),
                "{}'s default {default} is out of its own bounds",
                definition.key
            );
        }
    }

    #[test]
    fn the_cache_survives_a_round_trip() {
        let dir = std::env::temp_dir().join(format!("uc-settings-{}", std::process::id()));
        let cache = SettingsCache {
            revision: 7,
            values: vec![stored(GLOBAL, "ring_timeout_ms", json!(3_000))],
        };
        write_cache(&dir, &cache).unwrap();
        assert_eq!(read_cache(&dir).unwrap(), cache);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read_cache(&dir).is_err());
    }
}
