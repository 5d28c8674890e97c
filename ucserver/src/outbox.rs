//! The outbox: chat messages accepted and journal entries made while SQL could not be
//! reached, kept on this server's own disk until they are stored in SQL, oldest first.
//!
//! A local SQLite file (`<data dir>/outbox.sqlite`) with `synchronous = FULL`: a push returns
//! once the messages are on disk, so the sender's ack comes after that and a kill -9 (or a
//! power cut) loses nothing acknowledged. Entries leave only after SQL has them. Bounded by
//! count and by the age of the oldest entry; at either bound a push is refused (the chat
//! writer then refuses the send with `server_unavailable`: nothing is acknowledged that is not
//! kept).

use crate::store::NewMessage;
use serde::{Deserialize, Serialize};
use shared::api::JournalEntry;
use shared::{ConversationId, TimestampMs, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// What the outbox holds at most, by count and by the age of the oldest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxLimits {
    pub max_messages: usize,
    pub max_age_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is full ({0} messages wait for the database)")]
    Full(usize),
    #[error("the database has been away too long (the oldest waiting message is {0} s old)")]
    TooOld(i64),
    #[error("the outbox cannot be written: {0}")]
    Disk(String),
}

/// One message as kept in the outbox.
#[derive(Serialize, Deserialize)]
struct Kept {
    conversation: ConversationId,
    id: String,
    sender: UserId,
    body: String,
    sent_ms: TimestampMs,
    client_id: Option<String>,
}

pub struct Outbox {
    pool: SqlitePool,
    /// `outbox_max_messages` / `outbox_max_age_ms`, runtime settings (`set_limits`).
    limits: std::sync::RwLock<OutboxLimits>,
    len: AtomicUsize,
    /// When the oldest entry was kept (ms), 0 when empty.
    oldest_ms: AtomicI64,
    /// Journal entries waiting for SQL.
    journal_len: AtomicUsize,
}

fn disk(error: impl std::fmt::Display) -> OutboxError {
    OutboxError::Disk(error.to_string())
}

impl Outbox {
    /// Opens (or creates) the outbox file; what an earlier run left in it is kept.
    pub async fn open(path: &Path, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(disk)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        // One connection: pushes and removals are serialized anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(disk)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, \
             message TEXT NOT NULL, kept_ms INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await
        .map_err(disk)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS journal (n INTEGER PRIMARY KEY AUTOINCREMENT, \
             entry TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .map_err(disk)?;
        let journal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal")
            .fetch_one(&pool)
            .await
            .map_err(disk)?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS count, COALESCE(MIN(kept_ms), 0) AS oldest FROM outbox",
        )
        .fetch_one(&pool)
        .await
        .map_err(disk)?;
        let count: i64 = row.try_get("count").map_err(disk)?;
        let oldest: i64 = row.try_get("oldest").map_err(disk)?;
        if count > 0 {
            tracing::warn!(
                count,
                "the outbox holds messages from an earlier run; they are stored when the database answers"
            );
        }
        Ok(Outbox {
            pool,
            limits: std::sync::RwLock::new(limits),
            len: AtomicUsize::new(count as usize),
            oldest_ms: AtomicI64::new(oldest),
            journal_len: AtomicUsize::new(journal as usize),
        })
    }

    /// Messages waiting for SQL.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// The bounds in force.
    pub fn limits(&self) -> OutboxLimits {
        *self.limits.read().unwrap()
    }

    /// New bounds, for what is kept from now on (nothing kept already is dropped).
    pub fn set_limits(&self, limits: OutboxLimits) {
        *self.limits.write().unwrap() = limits;
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `messages` on disk, in order, before returning; refused at the bounds.
    pub async fn push(&self, messages: &[NewMessage], now: TimestampMs) -> Result<(), OutboxError> {
        let len = self.len();
        let limits = self.limits();
        if len + messages.len() > limits.max_messages {
            return Err(OutboxError::Full(len));
        }
        let oldest = self.oldest_ms.load(Ordering::Acquire);
        if oldest > 0 && now - oldest > limits.max_age_ms {
            return Err(OutboxError::TooOld((now - oldest) / 1000));
        }
        let mut tx = self.pool.begin().await.map_err(disk)?;
        for message in messages {
            let kept = Kept {
                conversation: message.conversation.clone(),
                id: message.id.clone(),
                sender: message.sender.clone(),
                body: message.body.clone(),
                sent_ms: message.sent_ms,
                client_id: message.client_id.clone(),
            };
            let text = serde_json::to_string(&kept).map_err(disk)?;
            sqlx::query("INSERT INTO outbox (message, kept_ms) VALUES (?, ?)")
                .bind(text)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(disk)?;
        }
        tx.commit().await.map_err(disk)?;
        if len == 0 {
            self.oldest_ms.store(now, Ordering::Release);
        }
        self.len.fetch_add(messages.len(), Ordering::AcqRel);
        Ok(())
    }

    /// The oldest `limit` messages, with the position to pass to [`Outbox::remove_through`].
    pub async fn oldest(&self, limit: usize) -> Result<(i64, Vec<NewMessage>), OutboxError> {
        let rows = sqlx::query("SELECT n, message FROM outbox ORDER BY n LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(disk)?;
        let mut last = 0;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            last = row.try_get("n").map_err(disk)?;
            let text: String = row.try_get("message").map_err(disk)?;
            let kept: Kept = serde_json::from_str(&text).map_err(disk)?;
            messages.push(NewMessage {
                conversation: kept.conversation,
                id: kept.id,
                sender: kept.sender,
                body: kept.body,
                sent_ms: kept.sent_ms,
                client_id: kept.client_id,
            });
        }
        Ok((last, messages))
    }

    /// Forgets every message up to position `last` (SQL has them now).
    pub async fn remove_through(&self, last: i64) -> Result<(), OutboxError> {
        let removed = sqlx::query("DELETE FROM outbox WHERE n <= ?")
            .bind(last)
            .execute(&self.pool)
            .await
            .map_err(disk)?
            .rows_affected() as usize;
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT kept_ms FROM outbox ORDER BY n LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(disk)?;
        self.oldest_ms.store(oldest.unwrap_or(0), Ordering::Release);
        self.len.fetch_sub(removed, Ordering::AcqRel);
        Ok(())
    }
}

impl Outbox {
    /// Journal entries waiting for SQL.
    pub fn journal_len(&self) -> usize {
        self.journal_len.load(Ordering::Acquire)
    }

    /// Keeps a journal entry on disk before returning; refused beyond the count bound. An
    /// entry is stored by its id, so a later copy of the same entry replaces an earlier one.
    pub async fn push_journal(&self, entry: &JournalEntry) -> Result<(), OutboxError> {
        let len = self.journal_len();
        if len >= self.limits().max_messages {
            return Err(OutboxError::Full(len));
        }
        let text = serde_json::to_string(entry).map_err(disk)?;
        sqlx::query("INSERT INTO journal (entry) VALUES (?)")
            .bind(text)
            .execute(&self.pool)
            .await
            .map_err(disk)?;
        self.journal_len.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The oldest `limit` journal entries, with the position to pass to
    /// [`Outbox::remove_journal_through`].
    pub async fn oldest_journal(
        &self,
        limit: usize,
    ) -> Result<(i64, Vec<JournalEntry>), OutboxError> {
        let rows = sqlx::query("SELECT n, entry FROM journal ORDER BY n LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(disk)?;
        let mut last = 0;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            last = row.try_get("n").map_err(disk)?;
            let text: String = row.try_get("entry").map_err(disk)?;
            entries.push(serde_json::from_str(&text).map_err(disk)?);
        }
        Ok((last, entries))
    }

    /// Forgets every journal entry up to position `last` (SQL has them now).
    pub async fn remove_journal_through(&self, last: i64) -> Result<(), OutboxError> {
        let removed = sqlx::query("DELETE FROM journal WHERE n <= ?")
            .bind(last)
            .execute(&self.pool)
            .await
            .map_err(disk)?
            .rows_affected() as usize;
        self.journal_len.fetch_sub(removed, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> NewMessage {
        NewMessage {
            conversation: ConversationId::from("d:alice:bob"),
            id: format!("m{n}"),
            sender: UserId::from("alice"),
            body: format!("body {n}"),
            sent_ms: 1,
            client_id: Some(format!("c{n}")),
        }
    }

    fn ids(messages: &[NewMessage]) -> Vec<String> {
        messages.iter().map(|m| m.id.clone()).collect()
    }

    #[tokio::test]
    async fn keeps_order_across_reopening_and_refuses_at_its_bounds() {
        let dir = std::env::temp_dir().join(format!("outbox-test-{}", uuid::Uuid::now_v7()));
        let path = dir.join("outbox.sqlite");
        let limits = OutboxLimits {
            max_messages: 3,
            max_age_ms: 1_000,
        };
        let outbox = Outbox::open(&path, limits).await.unwrap();
        assert!(outbox.is_empty());
        outbox.push(&[message(1), message(2)], 100).await.unwrap();
        assert!(matches!(
            outbox.push(&[message(3), message(4)], 100).await,
            Err(OutboxError::Full(2))
        ));
        drop(outbox);

        // What was kept is there after a restart, in order.
        let outbox = Outbox::open(&path, limits).await.unwrap();
        assert_eq!(outbox.len(), 2);
        assert!(matches!(
            outbox.push(&[message(3)], 1_200).await,
            Err(OutboxError::TooOld(1))
        ));
        outbox.push(&[message(3)], 900).await.unwrap();
        let (first, oldest) = outbox.oldest(2).await.unwrap();
        assert_eq!(ids(&oldest), vec!["m1", "m2"]);
        outbox.remove_through(first).await.unwrap();
        assert_eq!(outbox.len(), 1);
        let (last, rest) = outbox.oldest(10).await.unwrap();
        assert_eq!(ids(&rest), vec!["m3"]);
        outbox.remove_through(last).await.unwrap();
        assert!(outbox.is_empty());
        // Empty again: the age bound starts over.
        outbox.push(&[message(5)], 10_000).await.unwrap();

        // Journal entries: kept across a restart, in order, bounded.
        let entry = |id: &str| JournalEntry {
            id: id.to_string(),
            user: UserId::from("alice"),
            kind: shared::api::JournalKind::Call,
            direction: shared::api::Direction::Outgoing,
            party: "bob".into(),
            conversation: None,
            started_ms: 1,
            answered_ms: None,
            ended_ms: Some(2),
            result: Some(shared::api::CallResult::Failed),
            messages: 0,
            summary: None,
        };
        for id in ["j1", "j2", "j3"] {
            outbox.push_journal(&entry(id)).await.unwrap();
        }
        assert!(matches!(
            outbox.push_journal(&entry("j4")).await,
            Err(OutboxError::Full(3))
        ));
        drop(outbox);
        let outbox = Outbox::open(&path, limits).await.unwrap();
        assert_eq!(outbox.journal_len(), 3);
        let (last, entries) = outbox.oldest_journal(2).await.unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec!["j1", "j2"]);
        outbox.remove_journal_through(last).await.unwrap();
        assert_eq!(outbox.journal_len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
