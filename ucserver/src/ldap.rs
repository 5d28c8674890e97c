//! The directory (LDAP / Active Directory) as a source of users: its configuration, one read
//! of its users as rows for the planner (`core::directory`), and what the last read found
//! (reachable or not, and why), which the console shows. The sync itself (plan, apply) is
//! `app::directory`; this module only talks LDAP (`ldap3`, async on tokio).
//!
//! Attribute mapping, AD's names by default: the user id from `sAMAccountName` (lowercased),
//! the display name from `displayName`, disabled from `userAccountControl` (bit 2,
//! ACCOUNTDISABLE) or from any other attribute that reads `true`/`1`, groups from the first
//! RDN value of each `memberOf` DN (`CN=Night Shift,OU=…` → `night-shift`).

use crate::core::directory::Row;
use shared::directory::{DirectoryStatus, PlanCounts, RowError};
use shared::{GroupId, TimestampMs, UserId};
use std::sync::Mutex;
use std::time::Duration;

/// The source name of users a sync makes (`users.source`).
pub const SOURCE: &str = "ldap";
/// How long one connection attempt or operation may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// `userAccountControl` bit of a disabled account.
const ACCOUNT_DISABLED: i64 = 0x2;

/// `UC_LDAP_*`: where the directory is and how its entries map to users. Without a URL there
/// is no directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `UC_LDAP_URL`: `ldap://host:389` or `ldaps://host:636`. Default none (no directory).
    pub url: Option<String>,
    /// `UC_LDAP_BIND_DN` / `UC_LDAP_BIND_PASSWORD`: the account the sync reads with.
    pub bind_dn: String,
    pub bind_password: String,
    /// `UC_LDAP_BASE_DN`: where the users are searched (subtree).
    pub base_dn: String,
    /// `UC_LDAP_FILTER`: which entries are users. Default `(objectClass=user)`.
    pub filter: String,
    /// `UC_LDAP_ID_ATTRIBUTE`: the user id. Default `sAMAccountName` (`uid` for OpenLDAP).
    pub id_attribute: String,
    /// `UC_LDAP_NAME_ATTRIBUTE`: the display name. Default `displayName`.
    pub name_attribute: String,
    /// `UC_LDAP_DISABLED_ATTRIBUTE`: `userAccountControl` (bit 2) or an attribute that
    /// reads `true`/`1` when disabled. Default `userAccountControl`.
    pub disabled_attribute: String,
    /// `UC_LDAP_GROUPS_ATTRIBUTE`: DNs of the user's groups. Default `memberOf`.
    pub groups_attribute: String,
    /// `UC_LDAP_SYNC_SECS`: seconds between scheduled syncs; 0 = only on demand. Default 0.
    pub sync_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: None,
            bind_dn: String::new(),
            bind_password: String::new(),
            base_dn: String::new(),
            filter: "(objectClass=user)".to_string(),
            id_attribute: "sAMAccountName".to_string(),
            name_attribute: "displayName".to_string(),
            disabled_attribute: "userAccountControl".to_string(),
            groups_attribute: "memberOf".to_string(),
            sync_secs: 0,
        }
    }
}

impl LdapConfig {
    /// Overrides fields from `UC_LDAP_*` variables.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let text = [
            ("UC_LDAP_BIND_DN", &mut self.bind_dn),
            ("UC_LDAP_BIND_PASSWORD", &mut self.bind_password),
            ("UC_LDAP_BASE_DN", &mut self.base_dn),
            ("UC_LDAP_FILTER", &mut self.filter),
            ("UC_LDAP_ID_ATTRIBUTE", &mut self.id_attribute),
            ("UC_LDAP_NAME_ATTRIBUTE", &mut self.name_attribute),
            ("UC_LDAP_DISABLED_ATTRIBUTE", &mut self.disabled_attribute),
            ("UC_LDAP_GROUPS_ATTRIBUTE", &mut self.groups_attribute),
        ];
        for (name, field) in text {
            if let Some(value) = var(name) {
                *field = value;
            }
        }
        if let Some(url) = var("UC_LDAP_URL") {
            self.url = Some(url).filter(|u| !u.is_empty());
        }
        if let Some(value) = var("UC_LDAP_SYNC_SECS") {
            self.sync_secs = value.parse().map_err(|_| {
                anyhow::anyhow!("UC_LDAP_SYNC_SECS must be a whole number, not '{value}'")
            })?;
        }
        if let Some(url) = &self.url
            && !(url.starts_with("ldap://") || url.starts_with("ldaps://"))
        {
            anyhow::bail!("UC_LDAP_URL must start with ldap:// or ldaps://");
        }
        Ok(())
    }

    /// For the start-up log: the URL (masked) and base, never the password.
    pub fn describe(&self) -> String {
        match &self.url {
            None => "(none)".to_string(),
            Some(url) => format!(
                "{} base={} bind={} sync_secs={}",
                shared::url::mask_url(url),
                self.base_dn,
                self.bind_dn,
                self.sync_secs
            ),
        }
    }
}

/// The configured directory and what its last read found. One per server.
pub struct Directory {
    pub config: LdapConfig,
    status: Mutex<DirectoryStatus>,
}

impl Directory {
    pub fn new(config: LdapConfig) -> Self {
        let status = DirectoryStatus {
            configured: config.url.is_some(),
            url: config.url.as_deref().map(shared::url::mask_url),
            interval_secs: config.sync_secs,
            ..DirectoryStatus::default()
        };
        Self {
            config,
            status: Mutex::new(status),
        }
    }

    pub fn status(&self) -> DirectoryStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut DirectoryStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Reads every user entry as a row for the planner, and notes whether it worked.
    pub async fn read(&self, now: TimestampMs) -> Result<Vec<Row>, String> {
        let result = match tokio::time::timeout(TIMEOUT * 6, read_entries(&self.config)).await {
            Ok(result) => result,
            Err(_) => Err("the directory did not answer in time".to_string()),
        };
        self.update(|status| {
            status.last_attempt_ms = Some(now);
            status.reachable = Some(result.is_ok());
            status.error = result.as_ref().err().cloned();
        });
        result.map(|entries| rows(&self.config, entries))
    }

    /// Whether `password` is the directory password of user `id` (found by the id attribute
    /// under the base, then bound as). `Err` when the directory cannot be asked.
    pub async fn check_password(&self, id: &str, password: &str) -> Result<bool, String> {
        if password.is_empty() {
            // An empty password would be an unauthenticated bind, which succeeds.
            return Ok(false);
        }
        match tokio::time::timeout(TIMEOUT * 3, bind_as_user(&self.config, id, password)).await {
            Ok(result) => result,
            Err(_) => Err("the directory did not answer in time".to_string()),
        }
    }

    /// Notes an applied sync.
    pub fn synced(&self, now: TimestampMs, counts: PlanCounts) {
        self.update(|status| {
            status.last_sync_ms = Some(now);
            status.last_counts = Some(counts);
        });
    }
}

/// One directory entry: its DN and attributes.
struct Entry {
    dn: String,
    attrs: std::collections::HashMap<String, Vec<String>>,
}

/// A connection bound as the sync's account. Its own task (`drive!`) ends when the handle
/// is unbound or dropped.
async fn connect(config: &LdapConfig) -> Result<ldap3::Ldap, String> {
    use ldap3::{LdapConnAsync, LdapConnSettings};
    let url = config.url.as_deref().ok_or("no directory is configured")?;
    let settings = LdapConnSettings::new().set_conn_timeout(TIMEOUT);
    let (connection, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", shared::url::mask_url(url)))?;
    ldap3::drive!(connection);
    ldap.with_timeout(TIMEOUT)
        .simple_bind(&config.bind_dn, &config.bind_password)
        .await
        .and_then(|answer| answer.success())
        .map_err(|e| format!("cannot bind as '{}': {e}", config.bind_dn))?;
    Ok(ldap)
}

async fn bind_as_user(config: &LdapConfig, id: &str, password: &str) -> Result<bool, String> {
    use ldap3::Scope;
    let mut ldap = connect(config).await?;
    let filter = format!(
        "(&{}({}={}))",
        config.filter,
        config.id_attribute,
        ldap3::ldap_escape(id)
    );
    let (entries, _) = ldap
        .with_timeout(TIMEOUT)
        .search(&config.base_dn, Scope::Subtree, &filter, vec!["1.1"])
        .await
        .and_then(|answer| answer.success())
        .map_err(|e| format!("the search for '{id}' failed: {e}"))?;
    let [entry] = entries.as_slice() else {
        let _ = ldap.unbind().await;
        return Ok(false);
    };
    let dn = ldap3::SearchEntry::construct(entry.clone()).dn;
    let answer = ldap
        .with_timeout(TIMEOUT)
        .simple_bind(&dn, password)
        .await
        .map_err(|e| format!("cannot check the password: {e}"))?;
    let _ = ldap.unbind().await;
    // 49: invalidCredentials.
    Ok(answer.rc == 0)
}

async fn read_entries(config: &LdapConfig) -> Result<Vec<Entry>, String> {
    use ldap3::{Scope, SearchEntry};
    let mut ldap = connect(config).await?;
    let attributes = [
        config.id_attribute.as_str(),
        config.name_attribute.as_str(),
        config.disabled_attribute.as_str(),
        config.groups_attribute.as_str(),
    ];
    let (entries, _) = ldap
        .with_timeout(TIMEOUT * 4)
        .search(
            &config.base_dn,
            Scope::Subtree,
            &config.filter,
            attributes.to_vec(),
        )
        .await
        .and_then(|answer| answer.success())
        .map_err(|e| format!("the search under '{}' failed: {e}", config.base_dn))?;
    let _ = ldap.unbind().await;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let entry = SearchEntry::construct(entry);
            Entry {
                dn: entry.dn,
                attrs: entry.attrs,
            }
        })
        .collect())
}

/// Attribute names compare without case, as LDAP's do.
fn first<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    all(entry, name).first().map(String::as_str)
}

fn all<'a>(entry: &'a Entry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map_or(&[], |(_, values)| values.as_slice())
}

fn rows(config: &LdapConfig, entries: Vec<Entry>) -> Vec<Row> {
    let mut sorted = entries;
    sorted.sort_by(|a, b| a.dn.cmp(&b.dn));
    sorted
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let line = index as u32 + 1;
            let Some(id) = first(entry, &config.id_attribute) else {
                return Row {
                    line,
                    user: Err(RowError {
                        line,
                        user: None,
                        reason: format!("{} has no {}", entry.dn, config.id_attribute),
                    }),
                };
            };
            let disabled = first(entry, &config.disabled_attribute).is_some_and(|value| {
                if config
                    .disabled_attribute
                    .eq_ignore_ascii_case("userAccountControl")
                {
                    value
                        .trim()
                        .parse::<i64>()
                        .is_ok_and(|flags| flags & ACCOUNT_DISABLED != 0)
                } else {
                    matches!(
                        value.trim().to_ascii_lowercase().as_str(),
                        "true" | "1" | "yes"
                    )
                }
            });
            let mut user = shared::directory::DirectoryUser::new(UserId::new(id.to_lowercase()));
            user.display_name = first(entry, &config.name_attribute).map(str::to_string);
            user.disabled = Some(disabled);
            user.groups = Some(
                all(entry, &config.groups_attribute)
                    .iter()
                    .map(|dn| GroupId::new(group_of(dn)))
                    .collect(),
            );
            Row {
                line,
                user: Ok(user),
            }
        })
        .collect()
}

/// `CN=Night Shift,OU=Groups,DC=example` → `night-shift`.
fn group_of(dn: &str) -> String {
    let rdn = dn.split(',').next().unwrap_or(dn);
    let value = rdn.split_once('=').map_or(rdn, |(_, value)| value);
    value.trim().to_lowercase().replace(' ', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_map_to_users_as_in_active_directory() {
        let entry = |dn: &str, attrs: &[(&str, &[&str])]| Entry {
            dn: dn.to_string(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        };
        let config = LdapConfig::default();
        let rows = rows(
            &config,
            vec![
                entry(
                    "cn=Ann,dc=x",
                    &[
                        ("samaccountname", &["Ann"]),
                        ("displayName", &["Ann A."]),
                        ("userAccountControl", &["514"]),
                        ("memberOf", &["CN=Night Shift,OU=Groups,DC=x"]),
                    ],
                ),
                entry("cn=NoId,dc=x", &[]),
            ],
        );
        let ann = rows[0].user.as_ref().unwrap();
        assert_eq!(ann.id.as_str(), "ann");
        assert_eq!(ann.display_name.as_deref(), Some("Ann A."));
        assert_eq!(ann.disabled, Some(true));
        assert_eq!(ann.groups.as_ref().unwrap()[0].as_str(), "night-shift");
        assert!(rows[1].user.is_err());
    }
}
