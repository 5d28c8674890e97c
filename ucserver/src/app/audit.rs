//! The audit log for an administrator: a page of it to look at, filtered, and an export of a
//! whole range for another tool. Both are reads, so every role may do them (a helpdesk
//! account reviews what was done); an export is itself audited, as the user export is,
//! because it takes the log (client addresses included) out of the system.

use super::AdminSession;
use super::authz::AdminAction;
use crate::error::AppResult;
use shared::api::{AuditEntry, AuditFilter};

/// At most this many audit entries in one answer of the list.
pub const MAX_AUDIT_ENTRIES: u32 = 1_000;
/// At most this many entries in one export: a bound on the server's memory and on the
/// answer's size (about 150 bytes an entry). A longer range is read in parts, each ending
/// (`until_ms`) where the previous one was cut.
pub const MAX_AUDIT_EXPORT: u32 = 100_000;

/// What an export read: the entries, newest first, and whether more matched than it holds.
#[derive(Clone, Debug)]
pub struct AuditExport {
    pub entries: Vec<AuditEntry>,
    /// More entries matched the filter than `limit` (or [`MAX_AUDIT_EXPORT`]): the oldest
    /// were left out.
    pub truncated: bool,
}

impl AdminSession {
    /// The newest `limit` (at most [`MAX_AUDIT_ENTRIES`]) entries `filter` lets through,
    /// newest first.
    pub async fn audit_log(&self, filter: &AuditFilter, limit: u32) -> AppResult<Vec<AuditEntry>> {
        self.require(AdminAction::Read)?;
        self.read_audit(filter, limit.clamp(1, MAX_AUDIT_ENTRIES))
            .await
    }

    /// Every entry `filter` lets through, newest first, up to `limit` (at most and by
    /// default [`MAX_AUDIT_EXPORT`]); says whether some were left out. Audited as
    /// `audit.export` with its filter and size.
    pub async fn audit_export(
        &self,
        filter: &AuditFilter,
        limit: Option<u32>,
        format: &str,
    ) -> AppResult<AuditExport> {
        self.require(AdminAction::Read)?;
        let limit = limit.unwrap_or(MAX_AUDIT_EXPORT).clamp(1, MAX_AUDIT_EXPORT);
        // One more than asked tells whether the range was cut.
        let mut entries = self.read_audit(filter, limit + 1).await?;
        let truncated = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        self.audit(
            "audit.export",
            format!(
                "format={format} entries={}{}{}",
                entries.len(),
                if truncated { " truncated" } else { "" },
                describe(filter)
            ),
        )
        .await;
        Ok(AuditExport { entries, truncated })
    }

    async fn read_audit(&self, filter: &AuditFilter, limit: u32) -> AppResult<Vec<AuditEntry>> {
        let records = self
            .server
            .sql(self.server.store.audit_log(filter, limit))
            .await?;
        Ok(records.into_iter().map(AuditEntry::from).collect())
    }
}

/// The conditions of a filter for the audit detail: ` since_ms=… actor=…`, empty for none.
fn describe(filter: &AuditFilter) -> String {
    let mut out = String::new();
    let conditions = [
        ("since_ms", filter.since_ms.map(|ms| ms.to_string())),
        ("until_ms", filter.until_ms.map(|ms| ms.to_string())),
        ("actor", filter.actor.as_ref().map(ToString::to_string)),
        ("action", filter.action.clone()),
    ];
    for (name, value) in conditions {
        if let Some(value) = value {
            out.push_str(&format!(" {name}={value}"));
        }
    }
    out
}
