//! Users from outside: the bulk import/export file (`/api/v1/admin/import`, `/admin/export`)
//! and the directory sync from LDAP / Active Directory (`/api/v1/admin/directory`). Both end
//! in the same [`DirectoryPlan`]: what would change (a dry run) or what changed (an apply),
//! with every bad row named by its line.

use crate::{GroupId, ServerId, TimestampMs, UserId};
use serde::{Deserialize, Serialize};

/// An import or export file in JSON: users with their groups and contacts, and the groups'
/// display names. CSV carries the same users, one per line (see `docs/api.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryFile {
    pub users: Vec<DirectoryUser>,
    /// Groups to create when missing (an existing group keeps its display name).
    #[serde(default)]
    pub groups: Vec<DirectoryGroup>,
}

/// One user of an import or export. On import a field left out leaves that part of an
/// existing user as it is; `groups` and `contacts`, when given, are the whole list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryUser {
    pub id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// For a new user: defaults to the server that receives the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_server: Option<ServerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<DirectoryContact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Import only, used for new users (an existing user's password is never changed by an
    /// import); a new user without one gets a password made up by the server, answered once.
    /// Never exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Export only: where the user comes from (`ldap`); absent for users made here. An
    /// import ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl DirectoryUser {
    /// A user with only an id: every other part left as it is.
    pub fn new(id: UserId) -> Self {
        Self {
            id,
            display_name: None,
            home_server: None,
            groups: None,
            contacts: None,
            disabled: None,
            password: None,
            source: None,
        }
    }
}

/// An entry of a user's contact list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryContact {
    pub user: UserId,
    /// The contact-list group label, "" for none.
    #[serde(default)]
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryGroup {
    pub id: GroupId,
    pub display_name: String,
}

/// What an import or a directory sync changes (or would change: `applied` false).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryPlan {
    /// Whether the changes were made. An apply is all or nothing: with any row in
    /// `errors` nothing is changed.
    pub applied: bool,
    pub counts: PlanCounts,
    /// Users created, updated or deactivated (unchanged ones are only counted).
    pub changes: Vec<PlannedChange>,
    /// Every bad row, by line; empty when the file can be applied.
    pub errors: Vec<RowError>,
    /// Groups that are (or would be) created.
    pub new_groups: Vec<GroupId>,
    /// Passwords made up for new users that had none (applied imports only; shown once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passwords: Vec<NewPassword>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PlanCounts {
    pub create: u32,
    pub update: u32,
    pub deactivate: u32,
    pub unchanged: u32,
    pub errors: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum ChangeKind {
    Create,
    Update,
    /// Disabled because the directory no longer has the user (never deleted by a sync).
    Deactivate,
}

/// One user's change, with each field's old and new value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PlannedChange {
    pub kind: ChangeKind,
    /// The line of the file (CSV: the file's line, the header being line 1; JSON: the
    /// position in `users`, from 1; a sync: the entry's position in the directory's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub user: UserId,
    pub fields: Vec<FieldChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct FieldChange {
    /// `display_name`, `home_server`, `disabled`, `groups`, `contacts`.
    pub field: String,
    /// "" for a new user.
    pub from: String,
    pub to: String,
}

/// A row that cannot be applied, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct RowError {
    /// As in [`PlannedChange::line`]; 0 for the file as a whole or its `groups` list.
    pub line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct NewPassword {
    pub user: UserId,
    pub password: String,
}

/// `GET /api/v1/admin/directory`: whether a directory is configured, whether it answered
/// last time, and what the last sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct DirectoryStatus {
    pub configured: bool,
    /// The directory's URL (credentials masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether the last attempt to read it succeeded (`None`: never tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the directory was last read, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_ms: Option<TimestampMs>,
    /// The last applied sync (scheduled or on demand) and its counts; a newer one applied on
    /// another server (found in the audit log, so one that changed something) without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_ms: Option<TimestampMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_counts: Option<PlanCounts>,
    /// Seconds between scheduled syncs; 0 when only on demand.
    pub interval_secs: u64,
    /// The server that runs the scheduled syncs now (it holds their lease in the cluster
    /// store); `None` with no schedule, before the first round, or while the cluster store
    /// cannot be read. The other servers' statuses have no `last_attempt_ms` of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_on: Option<ServerId>,
    /// Users whose source is the directory.
    pub users: u32,
    /// Whether users from the directory sign in with their directory password.
    pub sign_in: bool,
}
