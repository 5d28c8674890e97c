//! Runtime settings in the admin API: every setting with its scopes and, per server, the
//! value it should run with and whether it confirmed it does; changes by full administrators
//! only, checked before they are stored (a refused value changes nothing anywhere), made
//! from a version (`If-Match`), audited and announced to every server, which applies them
//! live (`settings/apply.rs`).

use super::AdminSession;
use super::authz::AdminAction;
use crate::error::{AppError, AppResult};
use crate::settings::{self, GLOBAL};
use crate::store::{SettingsAppliedRecord, StoreError};
use shared::ServerId;
use shared::api::{
    ErrorCode, PutSetting, ServerSetting, ServerSettings, SettingValue, SettingView,
    SettingsReport, SettingsView, VersionInfo,
};
use shared::bus::BusBody;
use shared::now_ms;
use std::collections::BTreeMap;

impl AdminSession {
    /// Every setting, its stored values and where each server stands.
    pub async fn settings(&self) -> AppResult<SettingsView> {
        self.require(AdminAction::Read)?;
        let server = &self.server;
        let snapshot = server.sql(server.store.settings()).await?;
        let applied = server.sql(server.store.settings_applied()).await?;
        let mut ids: Vec<ServerId> = server
            .sql(server.store.list_servers())
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        ids.sort();
        let alive: Vec<ServerId> = server
            .bus("servers", server.cluster.servers())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.age_ms <= server.config.dead_after_ms as i64)
            .map(|s| s.heartbeat.id)
            .collect();
        let reports: BTreeMap<ServerId, (SettingsAppliedRecord, SettingsReport)> = applied
            .into_iter()
            .map(|record| {
                let report = serde_json::from_str(&record.report).unwrap_or_default();
                (record.server.clone(), (record, report))
            })
            .collect();
        let stored: Vec<SettingValue> = snapshot
            .rows
            .iter()
            .map(settings::apply::stored_value)
            .collect();
        let my_defaults = settings::defaults(&server.config);
        let settings = settings::DEFINITIONS
            .iter()
            .map(|definition| {
                let key = definition.key;
                let in_scope =
                    |scope: &str| stored.iter().find(|v| v.key == key && v.scope == scope);
                let global = in_scope(GLOBAL);
                let servers = ids
                    .iter()
                    .map(|id| {
                        let report = reports.get(id);
                        let default = report
                            .and_then(|(_, r)| r.defaults.get(key).cloned())
                            .unwrap_or_else(|| my_defaults[key].into());
                        let (effective, source, written) = match (in_scope(id.as_str()), global) {
                            (Some(own), _) => (
                                own.value.clone(),
                                "server",
                                own_revision(&snapshot.rows, key, id.as_str()),
                            ),
                            (None, Some(global)) => (
                                global.value.clone(),
                                GLOBAL,
                                own_revision(&snapshot.rows, key, GLOBAL),
                            ),
                            (None, None) => (default, "default", 0),
                        };
                        let running = report.and_then(|(_, r)| r.values.get(key).cloned());
                        let caught_up =
                            report.is_some_and(|(record, _)| record.revision >= written);
                        ServerSetting {
                            server: id.clone(),
                            applied: caught_up && running.as_ref() == Some(&effective),
                            effective,
                            source: source.to_string(),
                            running,
                        }
                    })
                    .collect();
                SettingView {
                    key: key.to_string(),
                    description: definition.description.to_string(),
                    min: definition.min,
                    max: definition.max,
                    applies_live: definition.restart.is_none(),
                    restart: definition.restart.map(str::to_string),
                    default: my_defaults[key].into(),
                    global: global.cloned(),
                    overrides: stored
                        .iter()
                        .filter(|v| v.key == key && v.scope != GLOBAL)
                        .cloned()
                        .collect(),
                    servers,
                }
            })
            .collect();
        let servers = ids
            .iter()
            .map(|id| {
                let report = reports.get(id);
                ServerSettings {
                    server: id.clone(),
                    alive: alive.contains(id),
                    revision: report.map(|(record, _)| record.revision),
                    applied_ms: report.map(|(record, _)| record.applied_ms),
                    refused: report.map(|(_, r)| r.refused.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(SettingsView {
            revision: snapshot.revision,
            settings,
            servers,
        })
    }

    /// Sets `key` in a scope (`global` unless named). The value is checked first: a refused
    /// one is `bad_request` with the reason and changes nothing.
    pub async fn put_setting(
        &self,
        key: &str,
        request: PutSetting,
        if_version: Option<u64>,
    ) -> AppResult<SettingValue> {
        self.require(AdminAction::ChangeCluster)?;
        known_key(key)?;
        let scope = self.scope(request.scope.as_deref()).await?;
        settings::validate(key, &request.value).map_err(AppError::bad_request)?;
        let server = &self.server;
        let value = request.value.to_string();
        let stored = match server
            .sql(server.store.put_setting(
                &scope,
                key,
                &value,
                if_version,
                &self.actor.user,
                now_ms(),
            ))
            .await
        {
            Err(error) if error.code() == ErrorCode::Conflict => {
                return Err(self.setting_stale(key, &scope, if_version).await);
            }
            other => other?,
        };
        self.audit("setting.set", format!("{key} = {value} ({scope})"))
            .await;
        self.announce(stored.revision).await;
        Ok(settings::apply::stored_value(&stored))
    }

    /// Removes `key`'s value from a scope (a server's override, or the global value).
    pub async fn delete_setting(
        &self,
        key: &str,
        scope: Option<&str>,
        if_version: Option<u64>,
    ) -> AppResult<()> {
        self.require(AdminAction::ChangeCluster)?;
        known_key(key)?;
        let scope = self.scope(scope).await?;
        let server = &self.server;
        let revision = match server.store.delete_setting(&scope, key, if_version).await {
            Ok(revision) => revision,
            Err(StoreError::Stale(_)) => {
                return Err(self.setting_stale(key, &scope, if_version).await);
            }
            Err(StoreError::NotFound(_)) => {
                return Err(AppError::not_found(format!(
                    "{key} has no value of its own in scope '{scope}'"
                )));
            }
            Err(error) => return Err(error.into()),
        };
        self.audit("setting.unset", format!("{key} ({scope})"))
            .await;
        self.announce(revision).await;
        Ok(())
    }

    /// `global`, or the id of a known server.
    async fn scope(&self, scope: Option<&str>) -> AppResult<String> {
        let scope = scope.unwrap_or(GLOBAL);
        if scope == GLOBAL {
            return Ok(scope.to_string());
        }
        let server = &self.server;
        let known = server.sql(server.store.list_servers()).await?;
        if !known.iter().any(|s| s.id.as_str() == scope) {
            return Err(AppError::bad_request(format!(
                "the scope is 'global' or a server's id; there is no server '{}'",
                scope.chars().take(64).collect::<String>()
            )));
        }
        Ok(scope.to_string())
    }

    /// Every server reads the settings again (this one at once, even without the bus).
    async fn announce(&self, revision: u64) {
        self.server.settings.wake();
        self.server
            .broadcast(BusBody::SettingsChanged { revision })
            .await;
    }

    /// The `conflict` answer to an edit made from an old version: the version now and who
    /// made it.
    async fn setting_stale(&self, key: &str, scope: &str, if_version: Option<u64>) -> AppError {
        let server = &self.server;
        let current = match server.sql(server.store.settings()).await {
            Ok(snapshot) => snapshot
                .rows
                .into_iter()
                .find(|row| row.key == key && row.scope == scope),
            Err(error) => return error,
        };
        let current = current.map_or(
            VersionInfo {
                version: 0,
                changed_by: None,
                changed_ms: 0,
            },
            |row| VersionInfo {
                version: row.version,
                changed_by: row.changed_by,
                changed_ms: row.changed_ms,
            },
        );
        super::admin::stale_edit(&format!("{key} ({scope})"), current, if_version)
    }
}

/// `not_found` unless `key` names a setting (a long key is not repeated in the answer).
fn known_key(key: &str) -> AppResult<()> {
    if settings::definition(key).is_none() {
        let shown: String = key.chars().take(64).collect();
        return Err(AppError::not_found(format!(
            "there is no setting '{shown}'"
        )));
    }
    Ok(())
}

/// The revision in which `key`'s value in `scope` was written.
fn own_revision(rows: &[crate::store::SettingRecord], key: &str, scope: &str) -> u64 {
    rows.iter()
        .find(|row| row.key == key && row.scope == scope)
        .map_or(0, |row| row.revision)
}
