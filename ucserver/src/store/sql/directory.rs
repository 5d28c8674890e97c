//! Users from outside (an import file, a directory sync) in SQL: the reads a plan starts
//! from, and the write of a whole plan in one transaction, so that a failure anywhere (a
//! user changed since the plan was made, the database gone) leaves nothing half applied.

use super::{
    ConversationKind, INSERT_CHUNK, SqlStore, StoreError, StoreResult, decode, join_conversation,
    kind_to_db, leave_group, lock_conversation, map_conflict, map_error,
};
use crate::store::DirectoryWrite;
use shared::{ConversationId, UserId};
use sqlx::AssertSqlSafe;

pub(super) async fn user_sources(store: &SqlStore) -> StoreResult<Vec<(UserId, String)>> {
    let rows = sqlx::query("SELECT id, source FROM users WHERE source IS NOT NULL ORDER BY id")
        .fetch_all(&store.read)
        .await
        .map_err(map_error)?;
    rows.iter()
        .map(|row| Ok((UserId(decode(row, "id")?), decode(row, "source")?)))
        .collect()
}

pub(super) async fn all_contacts(store: &SqlStore) -> StoreResult<Vec<(UserId, UserId, String)>> {
    let rows = sqlx::query(
        "SELECT owner_id, contact_id, label FROM contacts ORDER BY owner_id, contact_id",
    )
    .fetch_all(&store.read)
    .await
    .map_err(map_error)?;
    rows.iter()
        .map(|row| {
            Ok((
                UserId(decode(row, "owner_id")?),
                UserId(decode(row, "contact_id")?),
                decode(row, "label")?,
            ))
        })
        .collect()
}

/// The order inside the transaction: groups, new users, changed users (version checked),
/// then memberships and contact lists, which may name users made just before.
pub(super) async fn apply(store: &SqlStore, write: &DirectoryWrite) -> StoreResult<()> {
    let changed_by = write.changed_by.as_ref().map(UserId::as_str);
    let mut tx = store.begin_write().await?;
    for (group, display_name) in &write.groups {
        sqlx::query(
            "INSERT INTO user_groups (id, display_name, created_by, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(group.as_str())
        .bind(display_name.as_str())
        .bind(changed_by.unwrap_or("directory"))
        .bind(write.now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, || format!("group {group}")))?;
        let conversation = ConversationId::group(group);
        sqlx::query(
            "INSERT INTO conversations (id, kind, name, created_by, created_ms, last_seq, last_activity_ms) \
             VALUES ($1, $2, $3, $4, $5, 0, $5)",
        )
        .bind(conversation.as_str())
        .bind(kind_to_db(ConversationKind::Group))
        .bind(display_name.as_str())
        .bind(changed_by.unwrap_or("directory"))
        .bind(write.now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_conflict(e, || format!("conversation {conversation}")))?;
    }
    // New users, many rows per statement (8 parameters each).
    let new_users: Vec<_> = write
        .users
        .iter()
        .filter_map(|user| Some((user, user.new_password_hash.as_deref()?)))
        .collect();
    for chunk in new_users.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p = |i: usize| format!("${}", 1 + r * 8 + i);
                format!(
                    "({}, {}, {}, {}, 0, {}, NULL, {}, 1, {}, {}, {})",
                    p(0),
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(4),
                    p(7)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO users (id, password_hash, display_name, home_server, admin, created_ms, \
             admin_role, disabled, version, changed_by, changed_ms, source) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == INSERT_CHUNK);
        for (user, hash) in chunk {
            query = query
                .bind(user.id.as_str())
                .bind(*hash)
                .bind(user.display_name.as_deref().unwrap_or(user.id.as_str()))
                .bind(
                    user.home_server
                        .as_ref()
                        .map(|h| h.as_str())
                        .unwrap_or_default(),
                )
                .bind(write.now)
                .bind(i64::from(user.disabled.unwrap_or(false)))
                .bind(changed_by)
                .bind(user.source.as_deref());
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(|e| map_conflict(e, || "a user of the import".to_string()))?;
    }
    for user in &write.users {
        if user.new_password_hash.is_some() {
            continue;
        }
        let changed = sqlx::query(
            "UPDATE users SET display_name = COALESCE($3, display_name), \
             home_server = COALESCE($4, home_server), disabled = COALESCE($5, disabled), \
             version = version + 1, changed_by = $6, changed_ms = $7 \
             WHERE id = $1 AND version = $2",
        )
        .bind(user.id.as_str())
        .bind(user.version as i64)
        .bind(user.display_name.as_deref())
        .bind(user.home_server.as_ref().map(|h| h.as_str()))
        .bind(user.disabled.map(i64::from))
        .bind(changed_by)
        .bind(write.now)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::Stale(format!("user {}", user.id)));
        }
    }
    for user in &write.users {
        for group in &user.add_groups {
            let conversation_id = ConversationId::group(group);
            let Some(conversation) = lock_conversation(&mut tx, conversation_id.as_str()).await?
            else {
                return Err(StoreError::NotFound(format!("group {group}")));
            };
            sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
                .bind(group.as_str())
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| map_conflict(e, || format!("member {} of group {group}", user.id)))?;
            let started_ms = conversation.created_ms;
            let party = conversation.name.clone();
            join_conversation(
                &mut tx,
                conversation_id.as_str(),
                &conversation,
                user.id.as_str(),
                started_ms,
                &party,
            )
            .await?;
        }
        for group in &user.remove_groups {
            leave_group(&mut tx, group, &user.id).await?;
        }
        if let Some(contacts) = &user.contacts {
            sqlx::query("DELETE FROM contacts WHERE owner_id = $1")
                .bind(user.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
            for (contact, label) in contacts {
                sqlx::query(
                    "INSERT INTO contacts (owner_id, contact_id, label) VALUES ($1, $2, $3)",
                )
                .bind(user.id.as_str())
                .bind(contact.as_str())
                .bind(label.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| match map_error(e) {
                    StoreError::NotFound(_) => StoreError::NotFound(format!("user {contact}")),
                    other => other,
                })?;
            }
        }
    }
    tx.commit().await.map_err(map_error)
}
