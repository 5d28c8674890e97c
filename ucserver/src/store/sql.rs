//! `Store` over sqlx, one implementation for SQLite and PostgreSQL.
//!
//! Every query goes through sqlx's `Any` driver and is written in the SQL both databases
//! understand: `$n` placeholders, plain `INSERT`/`UPDATE`/`DELETE`, `UPDATE ... RETURNING`
//! (SQLite ≥ 3.35), no dialect-specific upserts (an upsert is `UPDATE`, then `INSERT` when
//! no row changed, in one transaction), integers and booleans as `BIGINT`. Only the schema
//! differs, in `migrations/sqlite` and `migrations/postgres` (same version numbers).
//!
//! Invariants that the code below keeps:
//! - **Sequence numbers.** Every writer of a conversation's messages first locks the
//!   conversation row (`UPDATE conversations SET last_seq = last_seq ... RETURNING`), so seqs
//!   are handed out one writer at a time, gap-free; the primary key `(conversation_id, seq)`
//!   backs this up. Batches lock their conversations in id order, so two batches cannot
//!   deadlock.
//! - **Client-id dedup** is checked after that lock, so a resend racing its original finds it
//!   instead of tripping the unique index `messages_client_id`.
//! - **SQLite writes** all go through one connection (`write` pool of size 1, `BEGIN
//!   IMMEDIATE`): writers queue in the pool instead of failing with `SQLITE_BUSY`, while reads
//!   use other connections beside them (WAL).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Connection, Row, Transaction};

mod directory;

use super::{
    AuditRecord, ContactRecord, ConversationRecord, DirectoryWrite, GroupRecord, HistoryPage,
    LicenseRecord, MediaServerRecord, NewMessage, ServerRecord, SessionRecord, SettingRecord,
    SettingsAppliedRecord, SettingsSnapshot, Store, StoreError, StoreResult, UserRecord,
    UserUpdate,
};
use shared::api::{
    AdminRole, AuditFilter, CallResult, ChatMessage, ConversationKind, ConversationSummary,
    Direction, JournalEntry, JournalKind,
};
use shared::call::{ForwardMode, ForwardingRules};
use shared::{ConversationId, DeviceId, GroupId, MediaServerId, ServerId, TimestampMs, UserId};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Messages per multi-row `INSERT` (6 parameters each, far below both databases' limits).
const INSERT_CHUNK: usize = 100;
/// Values per `IN (...)` list.
const IN_CHUNK: usize = 200;
/// Rows changed by one `CASE` update (each row takes 3-4 parameters).
const CASE_CHUNK: usize = 100;
/// Length of a chat journal entry's `summary`, in characters.
const SUMMARY_CHARS: usize = 80;
/// How long a caller waits for a pooled connection before the database counts as unavailable:
/// short, so that a send goes to the outbox and a read answers `server_unavailable` within
/// seconds of the database going away.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The SQL store. Cloning shares the pools.
#[derive(Clone, Debug)]
pub struct SqlStore {
    /// Connections for transactions that write. SQLite: exactly one connection, so writers
    /// queue here instead of meeting `SQLITE_BUSY`; PostgreSQL: the same pool as `read`.
    write: AnyPool,
    /// Connections for plain reads (SQLite: several, which WAL lets run beside the writer).
    read: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects, brings the schema up to date, and returns a ready store.
    ///
    /// `url` is `sqlite:PATH` (also `sqlite://PATH`; the file and its directory are created
    /// when missing; `sqlite::memory:` for a throw-away database) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else {
            Err(StoreError::Backend(format!(
                "unsupported database URL '{}': use sqlite:PATH or postgres://...",
                crate::config::mask_url(url)
            )))
        }
    }

    async fn connect_sqlite(url: &str) -> Result<SqlStore, StoreError> {
        let rest = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let (path, params) = match rest.split_once('?') {
            Some((path, params)) => (path, Some(params)),
            None => (rest, None),
        };
        let in_memory = path == ":memory:" || params.is_some_and(|p| p.contains("mode=memory"));
        let url = if in_memory || params.is_some_and(|p| p.contains("mode=")) {
            url.to_string()
        } else {
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            match params {
                Some(params) => format!("sqlite:{path}?{params}&mode=rwc"),
                None => format!("sqlite:{path}?mode=rwc"),
            }
        };

        let options = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(if in_memory { 1 } else { 0 })
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .max_lifetime(None)
                .idle_timeout(None)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL makes NORMAL safe against corruption; only the newest commits
                        // can be lost on power failure, never on a process crash.
                        sqlx::raw_sql("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
        };

        if in_memory {
            // Every connection to `:memory:` would be a database of its own: one connection.
            let pool = options(1).connect(&url).await.map_err(map_error)?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .map_err(map_migrate_error)?;
            return Ok(SqlStore {
                write: pool.clone(),
                read: pool,
                backend: Backend::Sqlite,
            });
        }

        // WAL is a property of the file: set it once, before the pools open.
        let mut setup = AnyConnection::connect(&url).await.map_err(map_error)?;
        sqlx::raw_sql("PRAGMA journal_mode = WAL")
            .execute(&mut setup)
            .await
            .map_err(map_error)?;
        SQLITE_MIGRATIONS
            .run(&mut setup)
            .await
            .map_err(map_migrate_error)?;
        setup.close().await.map_err(map_error)?;

        let write = options(1).connect(&url).await.map_err(map_error)?;
        let read = options(4).connect(&url).await.map_err(map_error)?;
        Ok(SqlStore {
            write,
            read,
            backend: Backend::Sqlite,
        })
    }

    async fn connect_postgres(url: &str) -> Result<SqlStore, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(map_error)?;
        // sqlx serializes concurrent migrators (several UCServers starting at once) with an
        // advisory lock.
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .map_err(map_migrate_error)?;
        Ok(SqlStore {
            write: pool.clone(),
            read: pool,
            backend: Backend::Postgres,
        })
    }

    /// A PostgreSQL store whose pool connects on first use, without bringing the schema up to
    /// date: for a server that has run against this database before (it has a settings
    /// cache) and starts while the database cannot be reached. Every call answers
    /// `Unavailable` until the database is back; the schema is checked at the next start.
    pub fn connect_later(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)
            .map_err(map_error)?;
        Ok(SqlStore {
            write: pool.clone(),
            read: pool,
            backend: Backend::Postgres,
        })
    }

    /// Closes every connection; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// The user ids (column `id`) a read by one user id answers, in its order.
    async fn user_ids(&self, sql: &'static str, user: &UserId) -> StoreResult<Vec<UserId>> {
        let rows = sqlx::query(sql)
            .bind(user.as_str())
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| Ok(UserId(decode(row, "id")?)))
            .collect()
    }

    /// A transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a read inside it can never need an upgrade that fails.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => self
                .write
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(map_error),
            Backend::Postgres => self.write.begin().await.map_err(map_error),
        }
    }

    /// Deletes a user and everything that names them, in one transaction; with `version`,
    /// only while the user is at that version.
    async fn delete_user_checked(&self, id: &UserId, version: Option<u64>) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        if let Some(version) = version {
            // Locks the row, so that no update slips in between the check and the delete.
            let at_version =
                sqlx::query("UPDATE users SET version = version WHERE id = $1 AND version = $2")
                    .bind(id.as_str())
                    .bind(version as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?
                    .rows_affected();
            if at_version == 0 {
                let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_error)?
                    .is_some();
                return Err(if exists {
                    StoreError::Stale(format!("user {id}"))
                } else {
                    StoreError::NotFound(format!("user {id}"))
                });
            }
        }
        for sql in [
            "DELETE FROM contacts WHERE owner_id = $1 OR contact_id = $1",
            "DELETE FROM delegates WHERE owner_id = $1 OR delegate_id = $1",
            "DELETE FROM forwarding WHERE user_id = $1 OR target_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM group_members WHERE user_id = $1",
            "DELETE FROM conversation_members WHERE user_id = $1",
            "DELETE FROM journal WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        tx.commit().await.map_err(map_error)
    }

    /// `UPDATE` then, when no row matched, `INSERT`, in one transaction. On PostgreSQL two
    /// callers can both find no row and both insert; the loser retries once and updates.
    async fn upsert(
        &self,
        update: &'static str,
        update_args: &[Arg],
        insert: &'static str,
        insert_args: &[Arg],
    ) -> StoreResult<()> {
        let mut attempt = 0;
        loop {
            let result: StoreResult<()> = async {
                let mut tx = self.begin_write().await?;
                let changed = bind(sqlx::query(update), update_args)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?
                    .rows_affected();
                if changed == 0 {
                    bind(sqlx::query(insert), insert_args)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_error)?;
                }
                tx.commit().await.map_err(map_error)
            }
            .await;
            match result {
                Err(StoreError::Conflict(_)) if attempt == 0 => attempt += 1,
                other => return other,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// errors and values

/// Turns a sqlx error into a `StoreError`: connection trouble is `Unavailable`, a unique
/// violation `Conflict`, a foreign key violation `NotFound`.
fn map_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.is_unique_violation() {
                StoreError::Conflict("a record with the same key".to_string())
            } else if db.is_foreign_key_violation() {
                StoreError::NotFound("a record this one refers to".to_string())
            } else if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                // connection exceptions, admin/crash shutdown, too many connections
                StoreError::Unavailable(db.message().to_string())
            } else {
                StoreError::Backend(err.to_string())
            }
        }
        _ => StoreError::Backend(err.to_string()),
    }
}

/// `map_error`, naming the thing that already exists on a unique violation.
fn map_conflict(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match map_error(err) {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

/// A user's forwarding rules, read on any connection or transaction.
async fn read_forwarding<'e, E>(executor: E, user: &UserId) -> StoreResult<ForwardingRules>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT mode, target_id FROM forwarding WHERE user_id = $1")
        .bind(user.as_str())
        .fetch_all(executor)
        .await
        .map_err(map_error)?;
    let mut rules = ForwardingRules::default();
    for row in rows {
        let mode: String = row.try_get("mode").map_err(map_error)?;
        let target: String = row.try_get("target_id").map_err(map_error)?;
        let mode: ForwardMode = mode
            .parse()
            .map_err(|e: String| StoreError::Backend(format!("forwarding row: {e}")))?;
        rules.set(mode, Some(UserId::new(target)));
    }
    Ok(rules)
}

fn map_migrate_error(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(inner) => map_error(inner),
        other => StoreError::Backend(format!("migration failed: {other}")),
    }
}

/// A value bound to a placeholder, for helpers that take their arguments as a slice.
#[derive(Clone, Debug)]
enum Arg {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    args: &[Arg],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Text(v) => query.bind(v.clone()),
            Arg::Int(v) => query.bind(*v),
            Arg::OptText(v) => query.bind(v.clone()),
            Arg::OptInt(v) => query.bind(*v),
        };
    }
    query
}

/// A `LIKE` pattern matching what starts with `prefix` (`\\` escapes its `%` and `_`).
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `$from, $from+1, ...` for `count` values.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn seq_to_db(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_db(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn decode<T>(row: &AnyRow, column: &str) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(map_error)
}

fn setting_from_row(row: &AnyRow) -> StoreResult<SettingRecord> {
    Ok(SettingRecord {
        scope: decode(row, "scope")?,
        key: decode(row, "key")?,
        value: decode(row, "value")?,
        version: seq_from_db(decode(row, "version")?),
        revision: seq_from_db(decode(row, "revision")?),
        changed_by: decode::<Option<String>>(row, "changed_by")?.map(UserId),
        changed_ms: decode(row, "changed_ms")?,
    })
}

/// Takes the next settings revision, locking its row until the transaction ends.
async fn next_settings_revision(tx: &mut Transaction<'static, Any>) -> StoreResult<u64> {
    let revision: i64 = sqlx::query(
        "UPDATE settings_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(map_error)?
    .try_get("revision")
    .map_err(map_error)?;
    Ok(seq_from_db(revision))
}

/// The version of `key` in `scope`, `None` when it is not set there.
async fn setting_version(
    tx: &mut Transaction<'static, Any>,
    scope: &str,
    key: &str,
) -> StoreResult<Option<u64>> {
    let row = sqlx::query("SELECT version FROM settings WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_error)?;
    row.map(|row| decode::<i64>(&row, "version").map(seq_from_db))
        .transpose()
}

fn kind_to_db(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
    }
}

fn kind_from_db(kind: &str) -> StoreResult<ConversationKind> {
    match kind {
        "direct" => Ok(ConversationKind::Direct),
        "group" => Ok(ConversationKind::Group),
        other => Err(StoreError::Backend(format!(
            "unknown conversation kind '{other}' in database"
        ))),
    }
}

fn journal_kind_to_db(kind: JournalKind) -> &'static str {
    match kind {
        JournalKind::Chat => "chat",
        JournalKind::Call => "call",
    }
}

fn journal_kind_from_db(kind: &str) -> StoreResult<JournalKind> {
    match kind {
        "chat" => Ok(JournalKind::Chat),
        "call" => Ok(JournalKind::Call),
        other => Err(StoreError::Backend(format!(
            "unknown journal kind '{other}' in database"
        ))),
    }
}

fn direction_to_db(direction: Direction) -> &'static str {
    match direction {
        Direction::Incoming => "incoming",
        Direction::Outgoing => "outgoing",
    }
}

fn direction_from_db(direction: &str) -> StoreResult<Direction> {
    match direction {
        "incoming" => Ok(Direction::Incoming),
        "outgoing" => Ok(Direction::Outgoing),
        other => Err(StoreError::Backend(format!(
            "unknown journal direction '{other}' in database"
        ))),
    }
}

const CALL_RESULTS: [(CallResult, &str); 7] = [
    (CallResult::Answered, "answered"),
    (CallResult::Missed, "missed"),
    (CallResult::Rejected, "rejected"),
    (CallResult::Busy, "busy"),
    (CallResult::Forwarded, "forwarded"),
    (CallResult::PickedUp, "picked_up"),
    (CallResult::Failed, "failed"),
];

fn result_to_db(result: CallResult) -> &'static str {
    CALL_RESULTS
        .iter()
        .find(|(r, _)| *r == result)
        .map(|(_, s)| *s)
        .unwrap_or("failed")
}

fn result_from_db(result: &str) -> StoreResult<CallResult> {
    CALL_RESULTS
        .iter()
        .find(|(_, s)| *s == result)
        .map(|(r, _)| *r)
        .ok_or_else(|| StoreError::Backend(format!("unknown call result '{result}' in database")))
}

/// The first `SUMMARY_CHARS` characters of a message body.
fn summary_of(body: &str) -> String {
    body.chars().take(SUMMARY_CHARS).collect()
}

/// The id of `user`'s chat journal entry for a conversation: one entry per (member,
/// conversation), so the id is derived from both and joining twice finds it.
fn chat_journal_id(user: &str, conversation: &str) -> String {
    format!("chat:{user}:{conversation}")
}

const USER_COLUMNS: &str = "id, password_hash, display_name, home_server, admin, created_ms, \
     admin_role, disabled, version, changed_by, changed_ms";

fn user_from_row(row: &AnyRow) -> StoreResult<UserRecord> {
    let admin = decode::<i64>(row, "admin")? != 0;
    let role = match decode::<Option<String>>(row, "admin_role")? {
        Some(text) => Some(AdminRole::parse(&text).ok_or_else(|| {
            StoreError::Backend(format!("unknown admin role '{text}' in the users table"))
        })?),
        None => None,
    };
    Ok(UserRecord {
        id: UserId(decode(row, "id")?),
        password_hash: decode(row, "password_hash")?,
        display_name: decode(row, "display_name")?,
        home_server: ServerId(decode(row, "home_server")?),
        admin,
        created_ms: decode(row, "created_ms")?,
        // An administrator without a recorded role is a full one (as before roles existed).
        role: admin.then(|| role.unwrap_or(AdminRole::Full)),
        disabled: decode::<i64>(row, "disabled")? != 0,
        version: decode::<i64>(row, "version")?.max(0) as u64,
        changed_by: decode::<Option<String>>(row, "changed_by")?.map(UserId),
        changed_ms: decode(row, "changed_ms")?,
    })
}

/// The `admin_role` column for a user.
fn role_to_db(admin: bool, role: Option<AdminRole>) -> Option<&'static str> {
    admin.then(|| role.unwrap_or(AdminRole::Full).as_str())
}

const MESSAGE_COLUMNS: &str = "seq, id, sender, body, sent_ms, client_id";

fn message_from_row(conversation: &ConversationId, row: &AnyRow) -> StoreResult<ChatMessage> {
    Ok(ChatMessage {
        conversation: conversation.clone(),
        seq: seq_from_db(decode(row, "seq")?),
        id: decode(row, "id")?,
        sender: UserId(decode(row, "sender")?),
        body: decode(row, "body")?,
        sent_ms: decode(row, "sent_ms")?,
        client_id: decode(row, "client_id")?,
    })
}

const JOURNAL_COLUMNS: &str = "id, user_id, kind, direction, party, conversation_id, started_ms, \
     answered_ms, ended_ms, result, messages, summary";

fn journal_from_row(row: &AnyRow) -> StoreResult<JournalEntry> {
    Ok(JournalEntry {
        id: decode(row, "id")?,
        user: UserId(decode(row, "user_id")?),
        kind: journal_kind_from_db(&decode::<String>(row, "kind")?)?,
        direction: direction_from_db(&decode::<String>(row, "direction")?)?,
        party: decode(row, "party")?,
        conversation: decode::<Option<String>>(row, "conversation_id")?.map(ConversationId),
        started_ms: decode(row, "started_ms")?,
        answered_ms: decode(row, "answered_ms")?,
        ended_ms: decode(row, "ended_ms")?,
        result: decode::<Option<String>>(row, "result")?
            .map(|r| result_from_db(&r))
            .transpose()?,
        messages: seq_from_db(decode(row, "messages")?),
        summary: decode(row, "summary")?,
    })
}

// ---------------------------------------------------------------------------------------
// helpers that run inside a caller's transaction

/// Users among `ids` that do not exist, sorted.
async fn missing_users(conn: &mut AnyConnection, ids: &[&str]) -> StoreResult<Vec<String>> {
    let wanted: BTreeSet<&str> = ids.iter().copied().collect();
    let wanted: Vec<&str> = wanted.into_iter().collect();
    let mut found = HashSet::new();
    for chunk in wanted.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT id FROM users WHERE id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == 1);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(map_error)? {
            found.insert(decode::<String>(&row, "id")?);
        }
    }
    Ok(wanted
        .into_iter()
        .filter(|id| !found.contains(*id))
        .map(str::to_string)
        .collect())
}

async fn require_users(conn: &mut AnyConnection, ids: &[&str]) -> StoreResult<()> {
    match missing_users(conn, ids).await?.first() {
        Some(missing) => Err(StoreError::NotFound(format!("user {missing}"))),
        None => Ok(()),
    }
}

/// A conversation row, locked for the rest of the transaction (see the module doc).
struct LockedConversation {
    kind: ConversationKind,
    name: String,
    created_by: String,
    created_ms: TimestampMs,
    last_seq: i64,
}

async fn lock_conversation(
    conn: &mut AnyConnection,
    id: &str,
) -> StoreResult<Option<LockedConversation>> {
    let row = sqlx::query(
        "UPDATE conversations SET last_seq = last_seq WHERE id = $1 \
         RETURNING kind, name, created_by, created_ms, last_seq",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(LockedConversation {
        kind: kind_from_db(&decode::<String>(&row, "kind")?)?,
        name: decode(&row, "name")?,
        created_by: decode(&row, "created_by")?,
        created_ms: decode(&row, "created_ms")?,
        last_seq: decode(&row, "last_seq")?,
    }))
}

/// Who `user` talks to in a conversation: the other member of a 1:1, else its name.
fn journal_party(
    id: &str,
    kind: ConversationKind,
    name: &str,
    user: &str,
    members: &[&str],
) -> String {
    if kind == ConversationKind::Direct {
        if let Some((a, b)) = ConversationId(id.to_string()).direct_members() {
            if a.as_str() == user {
                return b.0;
            }
            if b.as_str() == user {
                return a.0;
            }
        }
        if let Some(other) = members.iter().find(|m| **m != user) {
            return other.to_string();
        }
    }
    name.to_string()
}

/// Makes `user` a member of a locked conversation with its chat journal entry; a member
/// stays as they are. A member who joins later starts with the read marker at `last_seq`
/// (nothing unread) and a journal entry that counts the messages from then on.
async fn join_conversation(
    conn: &mut AnyConnection,
    id: &str,
    conversation: &LockedConversation,
    user: &str,
    started_ms: TimestampMs,
    party: &str,
) -> StoreResult<()> {
    let member = sqlx::query(
        "SELECT 1 AS one FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    if member.is_none() {
        sqlx::query("INSERT INTO conversation_members (conversation_id, user_id, last_read_seq) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(user)
            .bind(conversation.last_seq)
            .execute(&mut *conn)
            .await
            .map_err(|e| map_conflict(e, || format!("member {user} of {id}")))?;
    }
    let journal_id = chat_journal_id(user, id);
    let entry = sqlx::query("SELECT 1 AS one FROM journal WHERE id = $1")
        .bind(&journal_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
    if entry.is_none() {
        let direction = if conversation.created_by == user {
            Direction::Outgoing
        } else {
            Direction::Incoming
        };
        sqlx::query(
            "INSERT INTO journal (id, user_id, kind, direction, party, conversation_id, started_ms, \
             answered_ms, ended_ms, result, messages, summary, changed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, 0, NULL, $7)",
        )
        .bind(&journal_id)
        .bind(user)
        .bind(journal_kind_to_db(JournalKind::Chat))
        .bind(direction_to_db(direction))
        .bind(party)
        .bind(id)
        .bind(started_ms)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_conflict(e, || format!("journal entry {journal_id}")))?;
    }
    Ok(())
}

/// Takes `user` out of a group and its group chat, inside the caller's transaction.
async fn leave_group(conn: &mut AnyConnection, group: &GroupId, user: &UserId) -> StoreResult<()> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group.as_str())
        .bind(user.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    sqlx::query("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
        .bind(ConversationId::group(group).as_str())
        .bind(user.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// Members of a conversation, sorted.
async fn members_of_conversation(conn: &mut AnyConnection, id: &str) -> StoreResult<Vec<UserId>> {
    let rows = sqlx::query(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    rows.iter()
        .map(|row| Ok(UserId(decode(row, "user_id")?)))
        .collect()
}

/// Stores a whole batch with a fixed number of statements per chunk of rows, whatever the
/// number of conversations in it: lock the conversations (in id order, so two servers'
/// batches cannot deadlock), check membership and client ids, insert the messages, then
/// move `last_seq`, the senders' read markers and the members' chat journal entries with
/// one `CASE` update each. Writes each message's outcome into `results`.
async fn append_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &[NewMessage],
    results: &mut [Option<StoreResult<ChatMessage>>],
) -> StoreResult<()> {
    let conversation_ids: Vec<&str> = batch
        .iter()
        .map(|m| m.conversation.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // 1. Lock the conversations and read their last sequence numbers.
    let mut last_seq: BTreeMap<String, i64> = BTreeMap::new();
    for chunk in conversation_ids.chunks(IN_CHUNK) {
        let lock = match backend {
            // The transaction already holds SQLite's single write lock.
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!(
            "SELECT id, last_seq FROM conversations WHERE id IN ({}) ORDER BY id{lock}",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(map_error)? {
            last_seq.insert(decode(&row, "id")?, decode(&row, "last_seq")?);
        }
    }

    // 2. Which (conversation, sender) pairs are memberships.
    let senders: Vec<&str> = batch
        .iter()
        .map(|m| m.sender.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut members: HashSet<(String, String)> = HashSet::new();
    for conversations in conversation_ids.chunks(IN_CHUNK / 2) {
        for users in senders.chunks(IN_CHUNK / 2) {
            let sql = format!(
                "SELECT conversation_id, user_id FROM conversation_members \
                 WHERE conversation_id IN ({}) AND user_id IN ({})",
                placeholders(1, conversations.len()),
                placeholders(1 + conversations.len(), users.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for id in conversations {
                query = query.bind(*id);
            }
            for user in users {
                query = query.bind(*user);
            }
            for row in query.fetch_all(&mut *conn).await.map_err(map_error)? {
                members.insert((decode(&row, "conversation_id")?, decode(&row, "user_id")?));
            }
        }
    }

    // 3. Messages already stored under the batch's client ids (a resend finds its original),
    //    looked up by exact (conversation, sender, client id) so the unique index answers.
    let triples: Vec<(&str, &str, &str)> = batch
        .iter()
        .filter_map(|m| {
            Some((
                m.conversation.as_str(),
                m.sender.as_str(),
                m.client_id.as_deref()?,
            ))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // (conversation, sender, client id) -> stored message
    let mut by_client_id: HashMap<(String, String, String), ChatMessage> = HashMap::new();
    for chunk in triples.chunks(IN_CHUNK / 2) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", placeholders(1 + r * 3, 3)))
            .collect();
        let sql = format!(
            "SELECT conversation_id, {MESSAGE_COLUMNS} FROM messages \
             WHERE client_id IS NOT NULL AND (conversation_id, sender, client_id) IN ({})",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for (conversation, sender, client_id) in chunk {
            query = query.bind(*conversation).bind(*sender).bind(*client_id);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(map_error)? {
            let conversation = ConversationId(decode(&row, "conversation_id")?);
            let message = message_from_row(&conversation, &row)?;
            let key = (
                conversation.0.clone(),
                message.sender.0.clone(),
                message.client_id.clone().unwrap_or_default(),
            );
            by_client_id.insert(key, message);
        }
    }

    // 4. Sequence numbers, in batch order per conversation.
    let mut new: Vec<ChatMessage> = Vec::new();
    for (i, message) in batch.iter().enumerate() {
        let id = message.conversation.as_str();
        let Some(seq) = last_seq.get_mut(id) else {
            results[i] = Some(Err(StoreError::NotFound(format!("conversation {id}"))));
            continue;
        };
        if !members.contains(&(id.to_string(), message.sender.0.clone())) {
            results[i] = Some(Err(StoreError::NotFound(format!(
                "member {} of conversation {id}",
                message.sender
            ))));
            continue;
        }
        let key = message
            .client_id
            .as_ref()
            .map(|c| (id.to_string(), message.sender.0.clone(), c.clone()));
        if let Some(original) = key.as_ref().and_then(|k| by_client_id.get(k)) {
            results[i] = Some(Ok(original.clone()));
            continue;
        }
        *seq += 1;
        let stored = ChatMessage {
            conversation: message.conversation.clone(),
            seq: seq_from_db(*seq),
            id: message.id.clone(),
            sender: message.sender.clone(),
            body: message.body.clone(),
            sent_ms: message.sent_ms,
            client_id: message.client_id.clone(),
        };
        if let Some(key) = key {
            by_client_id.insert(key, stored.clone());
        }
        new.push(stored.clone());
        results[i] = Some(Ok(stored));
    }
    if new.is_empty() {
        return Ok(());
    }

    // 5. The messages, many rows per statement.
    for chunk in new.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", placeholders(1 + r * 7, 7)))
            .collect();
        let sql = format!(
            "INSERT INTO messages (conversation_id, seq, id, sender, body, sent_ms, client_id) VALUES {}",
            rows.join(", ")
        );
        let persistent = chunk.len() == INSERT_CHUNK;
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(persistent);
        for message in chunk {
            query = query
                .bind(message.conversation.as_str())
                .bind(seq_to_db(message.seq))
                .bind(message.id.as_str())
                .bind(message.sender.as_str())
                .bind(message.body.as_str())
                .bind(message.sent_ms)
                .bind(message.client_id.as_deref());
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| map_conflict(e, || "a message of the batch".to_string()))?;
    }

    // Per conversation: newest message and count; per (conversation, sender): newest seq.
    let mut newest: BTreeMap<&str, (&ChatMessage, i64)> = BTreeMap::new();
    let mut read_up_to: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for message in &new {
        let entry = newest
            .entry(message.conversation.as_str())
            .or_insert((message, 0));
        *entry = (message, entry.1 + 1);
        read_up_to.insert(
            (message.conversation.as_str(), message.sender.as_str()),
            message.seq,
        );
    }
    let touched: Vec<(&str, (&ChatMessage, i64))> = newest.into_iter().collect();

    // 6. last_seq and activity of every touched conversation.
    for chunk in touched.chunks(CASE_CHUNK) {
        let mut seq_case = String::new();
        let mut activity_case = String::new();
        for r in 0..chunk.len() {
            let base = 1 + r * 3;
            seq_case.push_str(&format!(" WHEN ${base} THEN ${}", base + 1));
            activity_case.push_str(&format!(" WHEN ${base} THEN ${}", base + 2));
        }
        let ids = (0..chunk.len())
            .map(|r| format!("${}", 1 + r * 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE conversations SET last_seq = CASE id{seq_case} ELSE last_seq END, \
             last_activity_ms = CASE id{activity_case} ELSE last_activity_ms END WHERE id IN ({ids})"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for (id, (message, _)) in chunk {
            query = query
                .bind(*id)
                .bind(seq_to_db(message.seq))
                .bind(message.sent_ms);
        }
        query.execute(&mut *conn).await.map_err(map_error)?;
    }

    // 7. Each sender has read up to their own newest message (markers never move back).
    let markers: Vec<((&str, &str), u64)> = read_up_to.into_iter().collect();
    for chunk in markers.chunks(CASE_CHUNK) {
        let mut case = String::new();
        let mut pairs = Vec::new();
        for r in 0..chunk.len() {
            let base = 1 + r * 3;
            case.push_str(&format!(
                " WHEN conversation_id = ${base} AND user_id = ${} THEN ${}",
                base + 1,
                base + 2
            ));
            pairs.push(format!(
                "(conversation_id = ${base} AND user_id = ${})",
                base + 1
            ));
        }
        let sql = format!(
            "UPDATE conversation_members SET last_read_seq = CASE{case} ELSE last_read_seq END \
             WHERE ({}) AND last_read_seq < CASE{case} ELSE last_read_seq END",
            pairs.join(" OR ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for ((conversation, sender), seq) in chunk {
            query = query
                .bind(*conversation)
                .bind(*sender)
                .bind(seq_to_db(*seq));
        }
        query.execute(&mut *conn).await.map_err(map_error)?;
    }

    // 8. The members' chat journal entries: one statement for all touched conversations.
    for chunk in touched.chunks(CASE_CHUNK) {
        let mut ended = String::new();
        let mut count = String::new();
        let mut summary = String::new();
        for r in 0..chunk.len() {
            let base = 1 + r * 4;
            ended.push_str(&format!(" WHEN ${base} THEN ${}", base + 1));
            count.push_str(&format!(" WHEN ${base} THEN ${}", base + 2));
            summary.push_str(&format!(" WHEN ${base} THEN ${}", base + 3));
        }
        let ids = (0..chunk.len())
            .map(|r| format!("${}", 1 + r * 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE journal SET ended_ms = CASE conversation_id{ended} ELSE ended_ms END, \
             changed_ms = CASE conversation_id{ended} ELSE changed_ms END, \
             messages = messages + CASE conversation_id{count} ELSE 0 END, \
             summary = CASE conversation_id{summary} ELSE summary END \
             WHERE kind = 'chat' AND conversation_id IN ({ids}) \
             AND EXISTS (SELECT 1 FROM conversation_members m \
                         WHERE m.conversation_id = journal.conversation_id AND m.user_id = journal.user_id)"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for (id, (message, added)) in chunk {
            query = query
                .bind(*id)
                .bind(message.sent_ms)
                .bind(*added)
                .bind(summary_of(&message.body));
        }
        query.execute(&mut *conn).await.map_err(map_error)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1 AS one")
            .fetch_one(&self.read)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    // ---- users ----

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, password_hash, display_name, home_server, admin, created_ms, \
             admin_role, disabled, version, changed_by, changed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user.id.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.display_name.as_str())
        .bind(user.home_server.as_str())
        .bind(i64::from(user.admin))
        .bind(user.created_ms)
        .bind(role_to_db(user.admin, user.role))
        .bind(i64::from(user.disabled))
        .bind(user.version.max(1) as i64)
        .bind(user.changed_by.as_ref().map(UserId::as_str))
        .bind(user.changed_ms)
        .execute(&self.write)
        .await
        .map_err(|e| map_conflict(e, || format!("user {}", user.id)))?;
        Ok(())
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(map_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn search_users(&self, text: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let mut pattern = String::from("%");
        for c in text.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE LOWER(id) LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\' \
             ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, id: &UserId, update: &UserUpdate) -> StoreResult<UserRecord> {
        let mut tx = self.begin_write().await?;
        // Locks the row first (both databases), so that the version read below is the one
        // this change replaces.
        sqlx::query("UPDATE users SET version = version WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("user {id}")));
        };
        let mut user = user_from_row(&row)?;
        if let Some(expected) = update.expected_version
            && expected != user.version
        {
            return Err(StoreError::Stale(format!("user {id}")));
        }
        if let Some(hash) = &update.password_hash {
            user.password_hash = hash.clone();
        }
        if let Some(name) = &update.display_name {
            user.display_name = name.clone();
        }
        if let Some(home) = &update.home_server {
            user.home_server = home.clone();
        }
        if let Some(role) = update.role {
            user.admin = role.is_some();
            user.role = role;
        }
        if let Some(disabled) = update.disabled {
            user.disabled = disabled;
        }
        user.version += 1;
        user.changed_by = update.changed_by.clone();
        user.changed_ms = update.changed_ms;
        sqlx::query(
            "UPDATE users SET password_hash = $2, display_name = $3, home_server = $4, \
             admin = $5, admin_role = $6, disabled = $7, version = $8, changed_by = $9, \
             changed_ms = $10 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.display_name.as_str())
        .bind(user.home_server.as_str())
        .bind(i64::from(user.admin))
        .bind(role_to_db(user.admin, user.role))
        .bind(i64::from(user.disabled))
        .bind(user.version as i64)
        .bind(user.changed_by.as_ref().map(UserId::as_str))
        .bind(user.changed_ms)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(user)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        self.delete_user_checked(id, None).await
    }

    async fn delete_user_at(&self, id: &UserId, version: u64) -> StoreResult<()> {
        self.delete_user_checked(id, Some(version)).await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.read)
            .await
            .map_err(map_error)?;
        Ok(decode::<i64>(&row, "n")?.max(0) as u64)
    }

    // ---- groups ----

    async fn create_group(
        &self,
        id: &GroupId,
        display_name: &str,
        created_by: &UserId,
        now: TimestampMs,
    ) -> StoreResult<()> {
        let conversation = ConversationId::group(id);
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO user_groups (id, display_name, created_by, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(id.as_str())
            .bind(display_name)
            .bind(created_by.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_conflict(e, || format!("group {id}")))?;
        sqlx::query(
            "INSERT INTO conversations (id, kind, name, created_by, created_ms, last_seq, last_activity_ms) \
             VALUES ($1, $2, $3, $4, $5, 0, $5)",
        )
        .bind(conversation.as_str())
        .bind(kind_to_db(ConversationKind::Group))
        .bind(display_name)
        .bind(created_by.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, || format!("conversation {conversation}")))?;
        tx.commit().await.map_err(map_error)
    }

    async fn get_group(&self, id: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let mut conn = self.read.acquire().await.map_err(map_error)?;
        let row = sqlx::query("SELECT id, display_name FROM user_groups WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let members =
            sqlx::query("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
                .bind(id.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(map_error)?
                .iter()
                .map(|row| Ok(UserId(decode(row, "user_id")?)))
                .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(GroupRecord {
            id: GroupId(decode(&row, "id")?),
            display_name: decode(&row, "display_name")?,
            members,
        }))
    }

    async fn list_groups(&self) -> StoreResult<Vec<GroupRecord>> {
        let mut conn = self.read.acquire().await.map_err(map_error)?;
        let groups = sqlx::query("SELECT id, display_name FROM user_groups ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .map_err(map_error)?;
        let mut members: HashMap<String, Vec<UserId>> = HashMap::new();
        for row in
            sqlx::query("SELECT group_id, user_id FROM group_members ORDER BY group_id, user_id")
                .fetch_all(&mut *conn)
                .await
                .map_err(map_error)?
        {
            members
                .entry(decode(&row, "group_id")?)
                .or_default()
                .push(UserId(decode(&row, "user_id")?));
        }
        groups
            .iter()
            .map(|row| {
                let id: String = decode(row, "id")?;
                Ok(GroupRecord {
                    members: members.remove(&id).unwrap_or_default(),
                    id: GroupId(id),
                    display_name: decode(row, "display_name")?,
                })
            })
            .collect()
    }

    async fn add_group_member(&self, group: &GroupId, user: &UserId) -> StoreResult<()> {
        let conversation_id = ConversationId::group(group);
        let mut tx = self.begin_write().await?;
        // Locking the group conversation first also serializes concurrent adds of the group.
        let conversation = lock_conversation(&mut tx, conversation_id.as_str()).await?;
        let exists = sqlx::query("SELECT 1 AS one FROM user_groups WHERE id = $1")
            .bind(group.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("group {group}")));
        }
        require_users(&mut tx, &[user.as_str()]).await?;
        let member =
            sqlx::query("SELECT 1 AS one FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?;
        if member.is_none() {
            sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
                .bind(group.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| map_conflict(e, || format!("member {user} of group {group}")))?;
        }
        let Some(conversation) = conversation else {
            return Err(StoreError::NotFound(format!(
                "conversation {conversation_id}"
            )));
        };
        // No clock is passed in: the entry starts when the group chat did.
        let started_ms = conversation.created_ms;
        let party = conversation.name.clone();
        join_conversation(
            &mut tx,
            conversation_id.as_str(),
            &conversation,
            user.as_str(),
            started_ms,
            &party,
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn remove_group_member(&self, group: &GroupId, user: &UserId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        leave_group(&mut tx, group, user).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn group_mates(&self, user: &UserId) -> StoreResult<Vec<UserId>> {
        let rows = sqlx::query(
            "SELECT DISTINCT other.user_id FROM group_members mine \
             JOIN group_members other ON other.group_id = mine.group_id \
             WHERE mine.user_id = $1 AND other.user_id <> $1 ORDER BY other.user_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| Ok(UserId(decode(row, "user_id")?)))
            .collect()
    }

    // ---- contacts and delegation ----

    async fn put_contact(&self, owner: &UserId, contact: &UserId, group: &str) -> StoreResult<()> {
        {
            let mut conn = self.read.acquire().await.map_err(map_error)?;
            require_users(&mut conn, &[contact.as_str()]).await?;
            require_users(&mut conn, &[owner.as_str()]).await?;
        }
        // A user deleted meanwhile trips the foreign key: `NotFound` too.
        let args = [
            Arg::Text(owner.0.clone()),
            Arg::Text(contact.0.clone()),
            Arg::Text(group.to_string()),
        ];
        self.upsert(
            "UPDATE contacts SET label = $3 WHERE owner_id = $1 AND contact_id = $2",
            &args,
            "INSERT INTO contacts (owner_id, contact_id, label) VALUES ($1, $2, $3)",
            &args,
        )
        .await
    }

    async fn delete_contact(&self, owner: &UserId, contact: &UserId) -> StoreResult<()> {
        sqlx::query("DELETE FROM contacts WHERE owner_id = $1 AND contact_id = $2")
            .bind(owner.as_str())
            .bind(contact.as_str())
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn contacts(&self, owner: &UserId) -> StoreResult<Vec<ContactRecord>> {
        // A contact is always a user (foreign key), so the join loses no row.
        let rows = sqlx::query(
            "SELECT c.contact_id, c.label, u.display_name FROM contacts c \
             JOIN users u ON u.id = c.contact_id \
             WHERE c.owner_id = $1 ORDER BY c.contact_id",
        )
        .bind(owner.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(ContactRecord {
                    contact: UserId(decode(row, "contact_id")?),
                    group: decode(row, "label")?,
                    display_name: decode(row, "display_name")?,
                })
            })
            .collect()
    }

    async fn contact_owners(&self, user: &UserId) -> StoreResult<Vec<UserId>> {
        self.user_ids(
            "SELECT owner_id AS id FROM contacts WHERE contact_id = $1 ORDER BY owner_id",
            user,
        )
        .await
    }

    async fn put_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_users(&mut tx, &[owner.as_str()]).await?;
        require_users(&mut tx, &[delegate.as_str()]).await?;
        let exists =
            sqlx::query("SELECT 1 AS one FROM delegates WHERE owner_id = $1 AND delegate_id = $2")
                .bind(owner.as_str())
                .bind(delegate.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?;
        if exists.is_none() {
            let inserted =
                sqlx::query("INSERT INTO delegates (owner_id, delegate_id) VALUES ($1, $2)")
                    .bind(owner.as_str())
                    .bind(delegate.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error);
            match inserted {
                // Someone else made the same delegation meanwhile: that is what was asked.
                Err(StoreError::Conflict(_)) => return Ok(()),
                other => {
                    other?;
                }
            }
        }
        tx.commit().await.map_err(map_error)
    }

    async fn put_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, device_id, admin, console_only, issued_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.token_hash.as_str())
        .bind(session.user.as_str())
        .bind(session.device.as_str())
        .bind(i64::from(session.admin))
        .bind(i64::from(session.console_only))
        .bind(session.issued_ms)
        .execute(&self.write)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT token_hash, user_id, device_id, admin, console_only, issued_ms \
             FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            Ok(SessionRecord {
                token_hash: decode(&row, "token_hash")?,
                user: UserId::new(decode::<String>(&row, "user_id")?),
                device: DeviceId::new(decode::<String>(&row, "device_id")?),
                admin: decode::<i64>(&row, "admin")? != 0,
                console_only: decode::<i64>(&row, "console_only")? != 0,
                issued_ms: decode(&row, "issued_ms")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delete_sessions_of(&self, user: &UserId) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected())
    }

    async fn delete_sessions_of_device(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND device_id = $2")
            .bind(user.as_str())
            .bind(device.as_str())
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected())
    }

    async fn delete_sessions_before(&self, issued_before: TimestampMs) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE issued_ms < $1")
            .bind(issued_before)
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(done.rows_affected())
    }

    async fn forwarding(&self, user: &UserId) -> StoreResult<ForwardingRules> {
        read_forwarding(&self.read, user).await
    }

    async fn set_forwarding(
        &self,
        user: &UserId,
        mode: ForwardMode,
        target: Option<&UserId>,
    ) -> StoreResult<ForwardingRules> {
        let mut tx = self.begin_write().await?;
        require_users(&mut tx, &[user.as_str()]).await?;
        sqlx::query("DELETE FROM forwarding WHERE user_id = $1 AND mode = $2")
            .bind(user.as_str())
            .bind(mode.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if let Some(target) = target {
            require_users(&mut tx, &[target.as_str()]).await?;
            sqlx::query("INSERT INTO forwarding (user_id, mode, target_id) VALUES ($1, $2, $3)")
                .bind(user.as_str())
                .bind(mode.as_str())
                .bind(target.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let rules = read_forwarding(&mut *tx, user).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(rules)
    }

    async fn delete_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<()> {
        sqlx::query("DELETE FROM delegates WHERE owner_id = $1 AND delegate_id = $2")
            .bind(owner.as_str())
            .bind(delegate.as_str())
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delegates(&self, owner: &UserId) -> StoreResult<Vec<UserId>> {
        self.user_ids(
            "SELECT delegate_id AS id FROM delegates WHERE owner_id = $1 ORDER BY delegate_id",
            owner,
        )
        .await
    }

    async fn delegated_by(&self, delegate: &UserId) -> StoreResult<Vec<UserId>> {
        self.user_ids(
            "SELECT owner_id AS id FROM delegates WHERE delegate_id = $1 ORDER BY owner_id",
            delegate,
        )
        .await
    }

    async fn is_delegate(&self, owner: &UserId, delegate: &UserId) -> StoreResult<bool> {
        let row =
            sqlx::query("SELECT 1 AS one FROM delegates WHERE owner_id = $1 AND delegate_id = $2")
                .bind(owner.as_str())
                .bind(delegate.as_str())
                .fetch_optional(&self.read)
                .await
                .map_err(map_error)?;
        Ok(row.is_some())
    }

    // ---- conversations and messages ----

    async fn ensure_conversation(&self, conversation: &ConversationRecord) -> StoreResult<()> {
        let id = conversation.id.as_str();
        let mut attempt = 0;
        loop {
            let result: StoreResult<()> = async {
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 AS one FROM conversations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_error)?;
                if exists.is_some() {
                    return Ok(());
                }
                let members: Vec<&str> =
                    conversation.members.iter().map(UserId::as_str).collect::<BTreeSet<_>>().into_iter().collect();
                require_users(&mut tx, &members).await?;
                sqlx::query(
                    "INSERT INTO conversations (id, kind, name, created_by, created_ms, last_seq, last_activity_ms) \
                     VALUES ($1, $2, $3, $4, $5, 0, $5)",
                )
                .bind(id)
                .bind(kind_to_db(conversation.kind))
                .bind(conversation.name.as_str())
                .bind(conversation.created_by.as_str())
                .bind(conversation.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_conflict(e, || format!("conversation {id}")))?;
                let locked = LockedConversation {
                    kind: conversation.kind,
                    name: conversation.name.clone(),
                    created_by: conversation.created_by.0.clone(),
                    created_ms: conversation.created_ms,
                    last_seq: 0,
                };
                for member in &members {
                    let party = journal_party(id, locked.kind, &locked.name, member, &members);
                    join_conversation(&mut tx, id, &locked, member, conversation.created_ms, &party).await?;
                }
                tx.commit().await.map_err(map_error)
            }
            .await;
            match result {
                // Created by someone else meanwhile (PostgreSQL): the next round sees it.
                Err(StoreError::Conflict(_)) if attempt == 0 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn get_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        let mut conn = self.read.acquire().await.map_err(map_error)?;
        let row = sqlx::query(
            "SELECT kind, name, created_by, created_ms, last_seq FROM conversations WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let members = members_of_conversation(&mut conn, id.as_str()).await?;
        Ok(Some(ConversationRecord {
            id: id.clone(),
            kind: kind_from_db(&decode::<String>(&row, "kind")?)?,
            name: decode(&row, "name")?,
            created_by: UserId(decode(&row, "created_by")?),
            created_ms: decode(&row, "created_ms")?,
            last_seq: seq_from_db(decode(&row, "last_seq")?),
            members,
        }))
    }

    async fn add_conversation_member(
        &self,
        id: &ConversationId,
        user: &UserId,
        now: TimestampMs,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let Some(conversation) = lock_conversation(&mut tx, id.as_str()).await? else {
            return Err(StoreError::NotFound(format!("conversation {id}")));
        };
        require_users(&mut tx, &[user.as_str()]).await?;
        let members = members_of_conversation(&mut tx, id.as_str()).await?;
        let members: Vec<&str> = members.iter().map(UserId::as_str).collect();
        let party = journal_party(
            id.as_str(),
            conversation.kind,
            &conversation.name,
            user.as_str(),
            &members,
        );
        join_conversation(
            &mut tx,
            id.as_str(),
            &conversation,
            user.as_str(),
            now,
            &party,
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn conversations_of(&self, user: &UserId) -> StoreResult<Vec<ConversationSummary>> {
        let mut conn = self.read.acquire().await.map_err(map_error)?;
        let rows = sqlx::query(
            "SELECT c.id AS conversation_id, c.kind, c.name, c.last_seq, m.last_read_seq, \
                    msg.seq, msg.id, msg.sender, msg.body, msg.sent_ms, msg.client_id \
             FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN messages msg ON msg.conversation_id = c.id AND msg.seq = c.last_seq \
             WHERE m.user_id = $1 \
             ORDER BY c.last_activity_ms DESC, c.id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(map_error)?;
        let mut members: HashMap<String, Vec<UserId>> = HashMap::new();
        for row in sqlx::query(
            "SELECT other.conversation_id, other.user_id FROM conversation_members mine \
             JOIN conversation_members other ON other.conversation_id = mine.conversation_id \
             WHERE mine.user_id = $1 ORDER BY other.conversation_id, other.user_id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(map_error)?
        {
            members
                .entry(decode(&row, "conversation_id")?)
                .or_default()
                .push(UserId(decode(&row, "user_id")?));
        }
        rows.iter()
            .map(|row| {
                let id = ConversationId(decode(row, "conversation_id")?);
                let last_seq = seq_from_db(decode(row, "last_seq")?);
                let last_read_seq = seq_from_db(decode(row, "last_read_seq")?).min(last_seq);
                let last_message = match decode::<Option<i64>>(row, "seq")? {
                    Some(_) => Some(message_from_row(&id, row)?),
                    None => None,
                };
                Ok(ConversationSummary {
                    members: members.remove(id.as_str()).unwrap_or_default(),
                    kind: kind_from_db(&decode::<String>(row, "kind")?)?,
                    name: decode(row, "name")?,
                    last_seq,
                    last_read_seq,
                    unread: last_seq - last_read_seq,
                    last_message,
                    id,
                })
            })
            .collect()
    }

    async fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<StoreResult<ChatMessage>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut results: Vec<Option<StoreResult<ChatMessage>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut tx = self.begin_write().await?;
        append_batch(&mut tx, self.backend, batch, &mut results).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StoreError::Backend("message was not handled".to_string())))
            })
            .collect())
    }

    async fn messages(
        &self,
        id: &ConversationId,
        page: HistoryPage,
        limit: u32,
    ) -> StoreResult<Vec<ChatMessage>> {
        let limit = i64::from(limit);
        let query = match page {
            HistoryPage::Latest => sqlx::query(
                "SELECT seq, id, sender, body, sent_ms, client_id FROM messages \
                 WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(id.as_str())
            .bind(limit),
            HistoryPage::Before(seq) => sqlx::query(
                "SELECT seq, id, sender, body, sent_ms, client_id FROM messages \
                 WHERE conversation_id = $1 AND seq < $3 ORDER BY seq DESC LIMIT $2",
            )
            .bind(id.as_str())
            .bind(limit)
            .bind(seq_to_db(seq)),
            HistoryPage::After(seq) => sqlx::query(
                "SELECT seq, id, sender, body, sent_ms, client_id FROM messages \
                 WHERE conversation_id = $1 AND seq > $3 ORDER BY seq ASC LIMIT $2",
            )
            .bind(id.as_str())
            .bind(limit)
            .bind(seq_to_db(seq)),
        };
        let rows = query.fetch_all(&self.read).await.map_err(map_error)?;
        let mut messages = rows
            .iter()
            .map(|row| message_from_row(id, row))
            .collect::<StoreResult<Vec<_>>>()?;
        if !matches!(page, HistoryPage::After(_)) {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn read_markers(&self, id: &ConversationId) -> StoreResult<Vec<(UserId, u64)>> {
        let rows = sqlx::query(
            "SELECT m.user_id, m.last_read_seq, c.last_seq FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = $1 ORDER BY m.user_id",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let last_seq = seq_from_db(decode(row, "last_seq")?);
                let read = seq_from_db(decode(row, "last_read_seq")?).min(last_seq);
                Ok((UserId::new(decode::<String>(row, "user_id")?), read))
            })
            .collect()
    }

    async fn mark_read(&self, id: &ConversationId, user: &UserId, seq: u64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT c.last_seq, m.last_read_seq FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = $1 AND m.user_id = $2",
        )
        .bind(id.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!(
                "member {user} of conversation {id}"
            )));
        };
        let last_seq: i64 = decode(&row, "last_seq")?;
        let current: i64 = decode(&row, "last_read_seq")?;
        let target = seq_to_db(seq).min(last_seq);
        if target <= current {
            return Ok(seq_from_db(current));
        }
        let changed = sqlx::query(
            "UPDATE conversation_members SET last_read_seq = $3 \
             WHERE conversation_id = $1 AND user_id = $2 AND last_read_seq < $3",
        )
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(target)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .rows_affected();
        let marker = if changed == 1 {
            target
        } else {
            // Moved further by someone else meanwhile (PostgreSQL): report where it is.
            let row = sqlx::query("SELECT last_read_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2")
                .bind(id.as_str())
                .bind(user.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(map_error)?;
            decode(&row, "last_read_seq")?
        };
        tx.commit().await.map_err(map_error)?;
        Ok(seq_from_db(marker))
    }

    // ---- journal ----

    async fn add_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        let changed_ms = [Some(entry.started_ms), entry.answered_ms, entry.ended_ms]
            .into_iter()
            .flatten()
            .max();
        let args = [
            Arg::Text(entry.id.clone()),
            Arg::Text(entry.user.0.clone()),
            Arg::Text(journal_kind_to_db(entry.kind).to_string()),
            Arg::Text(direction_to_db(entry.direction).to_string()),
            Arg::Text(entry.party.clone()),
            Arg::OptText(entry.conversation.as_ref().map(|c| c.0.clone())),
            Arg::Int(entry.started_ms),
            Arg::OptInt(entry.answered_ms),
            Arg::OptInt(entry.ended_ms),
            Arg::OptText(entry.result.map(|r| result_to_db(r).to_string())),
            Arg::Int(seq_to_db(entry.messages)),
            Arg::OptText(entry.summary.clone()),
            Arg::Int(changed_ms.unwrap_or(entry.started_ms)),
        ];
        self.upsert(
            "UPDATE journal SET user_id = $2, kind = $3, direction = $4, party = $5, conversation_id = $6, \
             started_ms = $7, answered_ms = $8, ended_ms = $9, result = $10, messages = $11, summary = $12, \
             changed_ms = $13 WHERE id = $1",
            &args,
            "INSERT INTO journal (id, user_id, kind, direction, party, conversation_id, started_ms, \
             answered_ms, ended_ms, result, messages, summary, changed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &args,
        )
        .await
    }

    async fn journal(&self, user: &UserId, limit: u32) -> StoreResult<Vec<JournalEntry>> {
        let sql = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE user_id = $1 \
             ORDER BY started_ms DESC, changed_ms DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(user.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter().map(journal_from_row).collect()
    }

    // ---- licenses, servers, media servers, audit ----

    async fn set_license(&self, kind: &str, capacity: u32) -> StoreResult<()> {
        let args = [Arg::Text(kind.to_string()), Arg::Int(i64::from(capacity))];
        self.upsert(
            "UPDATE licenses SET capacity = $2 WHERE kind = $1",
            &args,
            "INSERT INTO licenses (kind, capacity) VALUES ($1, $2)",
            &args,
        )
        .await
    }

    async fn licenses(&self) -> StoreResult<Vec<LicenseRecord>> {
        let rows = sqlx::query("SELECT kind, capacity FROM licenses ORDER BY kind")
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let capacity: i64 = decode(row, "capacity")?;
                Ok(LicenseRecord {
                    kind: decode(row, "kind")?,
                    capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn settings(&self) -> StoreResult<SettingsSnapshot> {
        // One transaction, so that the rows and the revision belong together.
        let mut tx = self.read.begin().await.map_err(map_error)?;
        let revision: i64 = sqlx::query("SELECT revision FROM settings_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_error)?
            .try_get("revision")
            .map_err(map_error)?;
        let rows = sqlx::query(
            "SELECT scope, key, value, version, revision, changed_by, changed_ms \
             FROM settings ORDER BY key, scope",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(SettingsSnapshot {
            revision: seq_from_db(revision),
            rows: rows
                .iter()
                .map(setting_from_row)
                .collect::<StoreResult<_>>()?,
        })
    }

    async fn put_setting(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
        changed_by: &UserId,
        now: TimestampMs,
    ) -> StoreResult<SettingRecord> {
        let mut tx = self.begin_write().await?;
        // Taking the next revision locks its row: setting writes go one at a time.
        let revision = next_settings_revision(&mut tx).await?;
        let current = setting_version(&mut tx, scope, key).await?;
        if let Some(expected) = expected_version
            && expected != current.unwrap_or(0)
        {
            return Err(StoreError::Stale(format!("setting {key} ({scope})")));
        }
        let version = current.unwrap_or(0) + 1;
        let sql = if current.is_some() {
            "UPDATE settings SET value = $3, version = $4, revision = $5, changed_by = $6, \
             changed_ms = $7 WHERE scope = $1 AND key = $2"
        } else {
            "INSERT INTO settings (scope, key, value, version, revision, changed_by, changed_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        };
        sqlx::query(sql)
            .bind(scope)
            .bind(key)
            .bind(value)
            .bind(version as i64)
            .bind(revision as i64)
            .bind(changed_by.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(SettingRecord {
            scope: scope.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            version,
            revision,
            changed_by: Some(changed_by.clone()),
            changed_ms: now,
        })
    }

    async fn delete_setting(
        &self,
        scope: &str,
        key: &str,
        expected_version: Option<u64>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let revision = next_settings_revision(&mut tx).await?;
        let Some(current) = setting_version(&mut tx, scope, key).await? else {
            return Err(StoreError::NotFound(format!("setting {key} ({scope})")));
        };
        if expected_version.is_some_and(|expected| expected != current) {
            return Err(StoreError::Stale(format!("setting {key} ({scope})")));
        }
        sqlx::query("DELETE FROM settings WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(revision)
    }

    async fn put_settings_applied(&self, record: &SettingsAppliedRecord) -> StoreResult<()> {
        let args = [
            Arg::Text(record.server.0.clone()),
            Arg::Int(record.revision as i64),
            Arg::Int(record.applied_ms),
            Arg::Text(record.report.clone()),
        ];
        self.upsert(
            "UPDATE settings_applied SET revision = $2, applied_ms = $3, report = $4 \
             WHERE server_id = $1",
            &args,
            "INSERT INTO settings_applied (server_id, revision, applied_ms, report) \
             VALUES ($1, $2, $3, $4)",
            &args,
        )
        .await
    }

    async fn settings_applied(&self) -> StoreResult<Vec<SettingsAppliedRecord>> {
        let rows = sqlx::query(
            "SELECT server_id, revision, applied_ms, report FROM settings_applied \
             ORDER BY server_id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(SettingsAppliedRecord {
                    server: ServerId::new(decode::<String>(row, "server_id")?),
                    revision: seq_from_db(decode(row, "revision")?),
                    applied_ms: decode(row, "applied_ms")?,
                    report: decode(row, "report")?,
                })
            })
            .collect()
    }

    async fn register_server(&self, server: &ServerRecord) -> StoreResult<()> {
        self.upsert(
            "UPDATE servers SET url = $2 WHERE id = $1",
            &[
                Arg::Text(server.id.0.clone()),
                Arg::Text(server.url.clone()),
            ],
            "INSERT INTO servers (id, url, registered_ms) VALUES ($1, $2, $3)",
            &[
                Arg::Text(server.id.0.clone()),
                Arg::Text(server.url.clone()),
                Arg::Int(server.registered_ms),
            ],
        )
        .await
    }

    async fn list_servers(&self) -> StoreResult<Vec<ServerRecord>> {
        let rows = sqlx::query("SELECT id, url, registered_ms FROM servers ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(ServerRecord {
                    id: ServerId(decode(row, "id")?),
                    url: decode(row, "url")?,
                    registered_ms: decode(row, "registered_ms")?,
                })
            })
            .collect()
    }

    async fn add_media_server(&self, media: &MediaServerRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO media_servers (id, control_url, added_ms) VALUES ($1, $2, $3)")
            .bind(media.id.as_str())
            .bind(media.control_url.as_str())
            .bind(media.added_ms)
            .execute(&self.write)
            .await
            .map_err(|e| map_conflict(e, || format!("media server {}", media.id)))?;
        Ok(())
    }

    async fn remove_media_server(&self, id: &MediaServerId) -> StoreResult<()> {
        sqlx::query("DELETE FROM media_servers WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.write)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn list_media_servers(&self) -> StoreResult<Vec<MediaServerRecord>> {
        let rows = sqlx::query("SELECT id, control_url, added_ms FROM media_servers ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(MediaServerRecord {
                    id: MediaServerId(decode(row, "id")?),
                    control_url: decode(row, "control_url")?,
                    added_ms: decode(row, "added_ms")?,
                })
            })
            .collect()
    }

    async fn audit(&self, record: &AuditRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, action, detail, client) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(record.at_ms)
        .bind(record.actor.as_str())
        .bind(record.action.as_str())
        .bind(record.detail.as_str())
        .bind(record.client.as_deref())
        .execute(&self.write)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn audit_log(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        // Only the conditions set, numbered as they come, so one query serves every filter.
        let mut conditions: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        let mut add = |condition: &str, arg: Arg| {
            args.push(arg);
            conditions.push(condition.replace('?', &format!("${}", args.len())));
        };
        if let Some(since) = filter.since_ms {
            add("at_ms >= ?", Arg::Int(since));
        }
        if let Some(until) = filter.until_ms {
            add("at_ms < ?", Arg::Int(until));
        }
        if let Some(actor) = &filter.actor {
            add("actor = ?", Arg::Text(actor.to_string()));
        }
        if let Some(prefix) = &filter.action {
            add(r"action LIKE ? ESCAPE '\'", Arg::Text(like_prefix(prefix)));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT at_ms, actor, action, detail, client FROM audit {filter_sql} \
             ORDER BY at_ms DESC, id DESC LIMIT ${}",
            args.len() + 1
        );
        let query = bind(sqlx::query(AssertSqlSafe(sql)).persistent(false), &args);
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at_ms: decode(row, "at_ms")?,
                    actor: UserId(decode(row, "actor")?),
                    action: decode(row, "action")?,
                    detail: decode(row, "detail")?,
                    client: decode(row, "client")?,
                })
            })
            .collect()
    }

    // ---- users from outside ----

    async fn user_sources(&self) -> StoreResult<Vec<(UserId, String)>> {
        directory::user_sources(self).await
    }

    async fn all_contacts(&self) -> StoreResult<Vec<(UserId, UserId, String)>> {
        directory::all_contacts(self).await
    }

    async fn apply_directory(&self, write: &DirectoryWrite) -> StoreResult<()> {
        directory::apply(self, write).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_url_is_refused_with_its_password_masked() {
        let refused = tokio_test_block_on(SqlStore::connect("mysql://u:secret@host/db?password=x"));
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("unsupported database URL"), "{message}");
        assert!(
            !message.contains("secret") && !message.contains("=x"),
            "{message}"
        );
    }

    fn tokio_test_block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn summary_counts_characters_not_bytes() {
        let body = "é".repeat(100);
        assert_eq!(summary_of(&body).chars().count(), 80);
    }

    #[test]
    fn party_of_a_direct_conversation_is_the_other_user() {
        let id = "d:alice:bob";
        assert_eq!(
            journal_party(id, ConversationKind::Direct, "x", "alice", &[]),
            "bob"
        );
        assert_eq!(
            journal_party(id, ConversationKind::Direct, "x", "bob", &[]),
            "alice"
        );
        assert_eq!(
            journal_party("g:team", ConversationKind::Group, "Team", "bob", &[]),
            "Team"
        );
    }
}
