//! Durable state: one storage trait, implemented over SQL (SQLite for the single-node
//! default, PostgreSQL in a cluster). Every implementation passes the same conformance
//! suite (`tests/tests/storage.rs`).
//!
//! Ids and timestamps are made in Rust and passed in, so every backend stores exactly what
//! it is given and no dialect-specific defaults or upserts are needed.

mod sql;

pub use sql::SqlStore;

use async_trait::async_trait;
use shared::api::{
    AdminRole, AuditFilter, ChatMessage, ConversationKind, ConversationSummary, JournalEntry,
};
use shared::call::{ForwardMode, ForwardingRules};
use shared::{ConversationId, DeviceId, GroupId, MediaServerId, ServerId, TimestampMs, UserId};

/// What went wrong in storage, in words for the person who sees the error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Backend(String),
    /// An edit named a version the thing is no longer at (someone changed it meanwhile).
    #[error("{0} was changed meanwhile")]
    Stale(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub display_name: String,
    pub home_server: ServerId,
    pub admin: bool,
    pub created_ms: TimestampMs,
    /// The administrator's role: `Some` exactly when `admin` is set.
    pub role: Option<AdminRole>,
    /// Cannot sign in.
    pub disabled: bool,
    /// 1 at creation, one more with every [`Store::update_user`].
    pub version: u64,
    /// Who made the current version (`None`: the server, at creation or before versions).
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

/// Changes to a user; `None` leaves a field as it is. Every update makes a new version.
#[derive(Clone, Debug, Default)]
pub struct UserUpdate {
    pub password_hash: Option<String>,
    pub display_name: Option<String>,
    pub home_server: Option<ServerId>,
    /// `Some(Some(role))` makes the user an administrator with that role, `Some(None)` takes
    /// the role away.
    pub role: Option<Option<AdminRole>>,
    pub disabled: Option<bool>,
    /// Change only a user at this version, else [`StoreError::Stale`].
    pub expected_version: Option<u64>,
    /// Who makes the change, and when (recorded with the new version).
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: GroupId,
    pub display_name: String,
    /// Sorted by id.
    pub members: Vec<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRecord {
    pub contact: UserId,
    /// Contact-list group label, "" for none.
    pub group: String,
    /// The contact's display name (read with the list, so listing takes one query).
    pub display_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: String,
    pub created_by: UserId,
    pub created_ms: TimestampMs,
    /// Sequence number of the newest message, 0 when empty.
    pub last_seq: u64,
    /// Sorted by id.
    pub members: Vec<UserId>,
}

/// A message to store; the store assigns `seq`.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub conversation: ConversationId,
    /// UUIDv7 made by the caller.
    pub id: String,
    pub sender: UserId,
    pub body: String,
    pub sent_ms: TimestampMs,
    /// When set, a second message with the same (conversation, sender, client_id) is not
    /// stored again: the first one is returned instead.
    pub client_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseRecord {
    pub kind: String,
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRecord {
    pub id: ServerId,
    pub url: String,
    pub registered_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaServerRecord {
    pub id: MediaServerId,
    pub control_url: String,
    pub added_ms: TimestampMs,
}

/// A signed-in client session; the token itself is never stored, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: String,
    pub user: UserId,
    pub device: DeviceId,
    pub admin: bool,
    pub console_only: bool,
    pub issued_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: TimestampMs,
    pub actor: UserId,
    pub action: String,
    pub detail: String,
    /// The client address the action came from, when known.
    pub client: Option<String>,
}

impl From<AuditRecord> for shared::api::AuditEntry {
    fn from(record: AuditRecord) -> Self {
        Self {
            at_ms: record.at_ms,
            actor: record.actor,
            action: record.action,
            detail: record.detail,
            client: record.client,
        }
    }
}

/// A runtime setting's value in one scope (`settings/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingRecord {
    /// `global` or a server id.
    pub scope: String,
    pub key: String,
    /// JSON text.
    pub value: String,
    /// 1 at creation, one more with every change.
    pub version: u64,
    /// The settings revision this value was written in.
    pub revision: u64,
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

/// Every stored setting and the revision they make up together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsSnapshot {
    /// Grows by one with every change of any setting.
    pub revision: u64,
    /// Sorted by key, then scope.
    pub rows: Vec<SettingRecord>,
}

/// What a server applied last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsAppliedRecord {
    pub server: ServerId,
    pub revision: u64,
    pub applied_ms: TimestampMs,
    /// JSON: see `settings::Report`.
    pub report: String,
}

/// Users from outside (an import file or a directory sync), written in one transaction:
/// all of it or, when any part fails, nothing.
#[derive(Clone, Debug, Default)]
pub struct DirectoryWrite {
    /// Who makes the change (`None`: the server itself, a scheduled sync).
    pub changed_by: Option<UserId>,
    pub now: TimestampMs,
    /// Groups to create first, with their display names.
    pub groups: Vec<(GroupId, String)>,
    pub users: Vec<DirectoryUserWrite>,
}

/// One user of a [`DirectoryWrite`]; `None` leaves a field as it is.
#[derive(Clone, Debug)]
pub struct DirectoryUserWrite {
    pub id: UserId,
    /// `Some`: a new user with this password hash (and `display_name`, `home_server` set);
    /// `None`: an existing user, changed only while still at `version` (else `Stale`).
    pub new_password_hash: Option<String>,
    pub version: u64,
    pub display_name: Option<String>,
    pub home_server: Option<ServerId>,
    pub disabled: Option<bool>,
    /// A new user's source (`ldap`).
    pub source: Option<String>,
    pub add_groups: Vec<GroupId>,
    pub remove_groups: Vec<GroupId>,
    /// The whole new contact list: (contact, label).
    pub contacts: Option<Vec<(UserId, String)>>,
}

/// Where a page of history starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryPage {
    /// The newest `limit` messages.
    Latest,
    /// The `limit` messages right before `seq` (exclusive).
    Before(u64),
    /// The `limit` messages right after `seq` (exclusive).
    After(u64),
}

/// The durable store. Cheap to clone behind `Arc<dyn Store>`; every method is one short
/// transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Round trip to the database, for readiness checks and latency metrics.
    async fn ping(&self) -> StoreResult<()>;

    // ---- users ----
    /// `Conflict` when the id exists.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, id: &UserId) -> StoreResult<Option<UserRecord>>;
    /// Sorted by id.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Users whose id or display name contains `text` (case-insensitive), sorted by id.
    async fn search_users(&self, text: &str, limit: u32) -> StoreResult<Vec<UserRecord>>;
    /// `NotFound` when the user does not exist. Returns the user after the change.
    async fn update_user(&self, id: &UserId, update: &UserUpdate) -> StoreResult<UserRecord>;
    /// Removes the user with their contacts, delegations and memberships (messages stay).
    async fn delete_user(&self, id: &UserId) -> StoreResult<()>;
    /// [`Store::delete_user`], only while the user is at `version`, else [`StoreError::Stale`].
    async fn delete_user_at(&self, id: &UserId, version: u64) -> StoreResult<()>;
    /// How many users there are.
    async fn count_users(&self) -> StoreResult<u64>;

    // ---- groups ----
    /// Creates the group and its (empty) group conversation `g:<id>`. `Conflict` if it exists.
    async fn create_group(
        &self,
        id: &GroupId,
        display_name: &str,
        created_by: &UserId,
        now: TimestampMs,
    ) -> StoreResult<()>;
    async fn get_group(&self, id: &GroupId) -> StoreResult<Option<GroupRecord>>;
    async fn list_groups(&self) -> StoreResult<Vec<GroupRecord>>;
    /// Adds the user to the group and to its conversation; adding twice is not an error.
    async fn add_group_member(&self, group: &GroupId, user: &UserId) -> StoreResult<()>;
    async fn remove_group_member(&self, group: &GroupId, user: &UserId) -> StoreResult<()>;
    /// Users who share at least one group with `user`, without `user`, sorted, no repeats.
    async fn group_mates(&self, user: &UserId) -> StoreResult<Vec<UserId>>;

    // ---- contacts and delegation ----
    /// Adds or re-files a contact. `NotFound` if the contact user does not exist.
    async fn put_contact(&self, owner: &UserId, contact: &UserId, group: &str) -> StoreResult<()>;
    async fn delete_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()>;
    /// Sorted by contact id.
    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<ContactRecord>>;
    /// Users who have `user` in their contact list, sorted.
    async fn contact_owners(&self, user: &UserId) -> StoreResult<Vec<UserId>>;
    async fn put_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<()>;
    async fn delete_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<()>;
    async fn is_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<bool>;
    /// The users `owner` made their delegates, sorted.
    async fn delegates(&self, owner: &UserId) -> StoreResult<Vec<UserId>>;
    /// The users who made `delegate` their delegate, sorted.
    async fn delegated_by(&self, delegate: &UserId) -> StoreResult<Vec<UserId>>;

    // ---- sessions
    async fn put_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Ends every session of a user; returns how many there were.
    async fn delete_sessions_of(&self, user: &UserId) -> StoreResult<u64>;
    /// Ends every session of one device of a user (an administrator's kick); returns how
    /// many there were.
    async fn delete_sessions_of_device(&self, user: &UserId, device: &DeviceId)
    -> StoreResult<u64>;
    /// Ends sessions issued before `issued_before`; returns how many there were.
    async fn delete_sessions_before(&self, issued_before: TimestampMs) -> StoreResult<u64>;

    // ---- call forwarding
    /// A user's forwarding rules (empty when none are set).
    async fn forwarding(&self, user: &UserId) -> StoreResult<ForwardingRules>;
    /// Sets (`Some`) or clears (`None`) one rule; `NotFound` when either user does not exist.
    async fn set_forwarding(
        &self,
        user: &UserId,
        mode: ForwardMode,
        target: Option<&UserId>,
    ) -> StoreResult<ForwardingRules>;

    // ---- conversations and messages ----
    /// Creates the conversation with its members, or does nothing if the id exists.
    /// Each member gets a chat journal entry (`JournalKind::Chat`, outgoing for the creator).
    async fn ensure_conversation(&self, conversation: &ConversationRecord) -> StoreResult<()>;
    async fn get_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>>;
    async fn add_conversation_member(
        &self,
        id: &ConversationId,
        user: &UserId,
        now: TimestampMs,
    ) -> StoreResult<()>;
    /// The user's conversations with their read marker, unread count and newest message,
    /// newest activity first.
    async fn conversations_of(&self, user: &UserId) -> StoreResult<Vec<ConversationSummary>>;
    /// Stores a batch in one transaction. Each message gets the next `seq` of its
    /// conversation; the sender's read marker moves to it; the chat journal entries of the
    /// conversation's members count it. One result per input, in order: a message to an
    /// unknown conversation or from a non-member fails alone (`NotFound`), the others are
    /// stored.
    async fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<StoreResult<ChatMessage>>>;
    /// Ascending by seq.
    async fn messages(
        &self,
        id: &ConversationId,
        page: HistoryPage,
        limit: u32,
    ) -> StoreResult<Vec<ChatMessage>>;
    /// Moves the read marker to `min(seq, last_seq)` unless it is already further.
    /// Returns the marker after the call. `NotFound` if the user is not a member.
    async fn mark_read(&self, id: &ConversationId, user: &UserId, seq: u64) -> StoreResult<u64>;
    /// Every member's read marker of a conversation, by user.
    async fn read_markers(&self, id: &ConversationId) -> StoreResult<Vec<(UserId, u64)>>;

    // ---- journal ----
    async fn add_journal(&self, entry: &JournalEntry) -> StoreResult<()>;
    /// Newest first (by `started_ms`, then by last change).
    async fn journal(&self, user: &UserId, limit: u32) -> StoreResult<Vec<JournalEntry>>;

    // ---- licenses, servers, media servers, audit ----
    async fn set_license(&self, kind: &str, capacity: u32) -> StoreResult<()>;
    async fn licenses(&self) -> StoreResult<Vec<LicenseRecord>>;
    /// Inserts or updates the server's URL.
    async fn register_server(&self, server: &ServerRecord) -> StoreResult<()>;
    async fn list_servers(&self) -> StoreResult<Vec<ServerRecord>>;
    /// `Conflict` if the id exists.
    async fn add_media_server(&self, media: &MediaServerRecord) -> StoreResult<()>;
    async fn remove_media_server(&self, id: &MediaServerId) -> StoreResult<()>;
    async fn list_media_servers(&self) -> StoreResult<Vec<MediaServerRecord>>;
    async fn audit(&self, record: &AuditRecord) -> StoreResult<()>;

    // ---- runtime settings ----
    /// Every stored setting with the current revision, read together.
    async fn settings(&self) -> StoreResult<SettingsSnapshot>;
    /// Sets `key` in `scope` to `value` (JSON text) as the next revision. With
    /// `expected_version` only while the value is at that version (0: not set), else
    /// [`StoreError::Stale`]. Returns the stored value.
    async fn put_setting(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
        changed_by: &UserId,
        now: TimestampMs,
    ) -> StoreResult<SettingRecord>;
    /// Removes `key` from `scope` as the next revision (returned). `NotFound` when it is not
    /// set there; with `expected_version`, [`StoreError::Stale`] unless it is at that version.
    async fn delete_setting(
        &self,
        scope: &str,
        key: &str,
        expected_version: Option<u64>,
    ) -> StoreResult<u64>;
    /// Records what a server applied (replacing its previous record).
    async fn put_settings_applied(&self, record: &SettingsAppliedRecord) -> StoreResult<()>;
    /// Every server's record, sorted by server.
    async fn settings_applied(&self) -> StoreResult<Vec<SettingsAppliedRecord>>;
    /// The newest `limit` entries that `filter` lets through, newest first.
    async fn audit_log(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditRecord>>;

    // ---- users from outside (import, directory sync) ----
    /// The users that have a source (`ldap`), sorted by id.
    async fn user_sources(&self) -> StoreResult<Vec<(UserId, String)>>;
    /// Every contact-list entry as (owner, contact, label), sorted.
    async fn all_contacts(&self) -> StoreResult<Vec<(UserId, UserId, String)>>;
    /// Writes an import or a sync in one transaction: groups, new users, changed users,
    /// memberships (with their group chats) and whole contact lists. Nothing is written
    /// when any part fails (`Stale`: a user changed since the plan was made).
    async fn apply_directory(&self, write: &DirectoryWrite) -> StoreResult<()>;
}
