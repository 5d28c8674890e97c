//! Relations read from SQL and cached here: each user's home server, who watches whom
//! (contacts and group mates), the members of each conversation. The caches are dropped on
//! `RelationsChanged` / `ConversationChanged` from any server and on a bus resync, so a
//! change made anywhere is seen everywhere.

use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::owners::Owners;
use crate::store::{Store, StoreError};
use crate::timed;
use shared::api::ConversationSummary;
use shared::{ConversationId, ServerId, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

pub struct Relations {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    owners: Arc<Owners>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    homes: HashMap<UserId, ServerId>,
    members: HashMap<ConversationId, Arc<Vec<UserId>>>,
    watchers: HashMap<UserId, Arc<Vec<UserId>>>,
}

impl Relations {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, owners: Arc<Owners>) -> Self {
        Self {
            store,
            metrics,
            owners,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The home server of a user; `NotFound` if there is no such user.
    pub async fn home_of(&self, user: &UserId) -> AppResult<ServerId> {
        if let Some(home) = self.cache.lock().unwrap().homes.get(user) {
            return Ok(home.clone());
        }
        let record = timed::sql(&self.metrics, self.store.get_user(user))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{user}'")))?;
        self.cache
            .lock()
            .unwrap()
            .homes
            .insert(user.clone(), record.home_server.clone());
        Ok(record.home_server)
    }

    /// The server that serves a user now: the home, or while it is dead or draining, its
    /// backup (`owners.rs`). `NotFound` if there is no such user.
    pub async fn server_of(&self, user: &UserId) -> AppResult<ServerId> {
        let home = self.home_of(user).await?;
        Ok(self.owners.serving(user, &home).unwrap_or(home))
    }

    /// Whether this server serves `user` now.
    pub async fn is_mine(&self, user: &UserId, me: &ServerId) -> bool {
        matches!(self.server_of(user).await, Ok(server) if &server == me)
    }

    /// Users who get live presence events of `user` (contacts holding them and group mates),
    /// plus the user themselves (their other devices).
    pub async fn watchers_of(&self, user: &UserId) -> AppResult<Arc<Vec<UserId>>> {
        if let Some(cached) = self.cache.lock().unwrap().watchers.get(user) {
            return Ok(cached.clone());
        }
        let mut set: BTreeSet<UserId> = timed::sql(&self.metrics, self.store.contact_owners(user))
            .await?
            .into_iter()
            .collect();
        set.extend(timed::sql(&self.metrics, self.store.group_mates(user)).await?);
        set.insert(user.clone());
        let watchers = Arc::new(set.into_iter().collect::<Vec<_>>());
        self.cache
            .lock()
            .unwrap()
            .watchers
            .insert(user.clone(), watchers.clone());
        Ok(watchers)
    }

    /// Users whose presence `user` sees live: their contacts and group mates.
    pub async fn watched_by(&self, user: &UserId) -> AppResult<Vec<UserId>> {
        let mut set: BTreeSet<UserId> = timed::sql(&self.metrics, self.store.contacts(user))
            .await?
            .into_iter()
            .map(|c| c.contact)
            .collect();
        set.extend(timed::sql(&self.metrics, self.store.group_mates(user)).await?);
        Ok(set.into_iter().collect())
    }

    pub async fn members_of(&self, conversation: &ConversationId) -> AppResult<Arc<Vec<UserId>>> {
        if let Some(cached) = self.cache.lock().unwrap().members.get(conversation) {
            return Ok(cached.clone());
        }
        let record = match timed::sql_store(
            &self.metrics,
            self.store.get_conversation(conversation),
        )
        .await
        {
            Ok(record) => record,
            // While SQL is away a 1:1 conversation's members are still known: they are in its
            // id. Not cached, since whether it exists is not.
            Err(error @ StoreError::Unavailable(_)) => match conversation.direct_members() {
                Some((a, b)) => return Ok(Arc::new(vec![a, b])),
                None => return Err(error.into()),
            },
            Err(error) => return Err(error.into()),
        }
        .ok_or_else(|| AppError::not_found(format!("there is no conversation '{conversation}'")))?;
        let members = Arc::new(record.members);
        self.cache
            .lock()
            .unwrap()
            .members
            .insert(conversation.clone(), members.clone());
        Ok(members)
    }

    /// Takes in the members of conversations just read from SQL (a user's conversation list),
    /// so that posting to them works while SQL is away.
    pub fn learn_members(&self, conversations: &[ConversationSummary]) {
        let mut cache = self.cache.lock().unwrap();
        for conversation in conversations {
            cache.members.insert(
                conversation.id.clone(),
                Arc::new(conversation.members.clone()),
            );
        }
    }

    /// Whether the members of a conversation are cached (it exists, as far as this server
    /// has seen).
    pub fn knows_conversation(&self, conversation: &ConversationId) -> bool {
        self.cache
            .lock()
            .unwrap()
            .members
            .contains_key(conversation)
    }

    /// Drops cached relations of these users (everything when `users` is empty).
    pub fn forget(&self, users: &[UserId]) {
        let mut cache = self.cache.lock().unwrap();
        if users.is_empty() {
            *cache = Cache::default();
            return;
        }
        for user in users {
            cache.homes.remove(user);
            cache.watchers.remove(user);
        }
        // Group and contact changes can change any conversation's members of these users.
        cache
            .members
            .retain(|_, members| !members.iter().any(|m| users.contains(m)));
    }

    pub fn forget_conversation(&self, conversation: &ConversationId) {
        self.cache.lock().unwrap().members.remove(conversation);
    }

    /// Splits users by the server serving them now (users with no home are left out).
    pub async fn by_server(&self, users: &[UserId]) -> BTreeMap<ServerId, Vec<UserId>> {
        let mut groups: BTreeMap<ServerId, Vec<UserId>> = BTreeMap::new();
        for user in users {
            match self.server_of(user).await {
                Ok(home) => groups.entry(home).or_default().push(user.clone()),
                Err(error) => tracing::debug!(%user, error = %error.0, "no home for user; skipped"),
            }
        }
        groups
    }
}
