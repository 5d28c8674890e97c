//! Relations read from SQL and cached here: each user's home server, who watches whom
//! (contacts and group mates), the members of each conversation, each user's call
//! forwarding. A change made anywhere is seen everywhere: `RelationsChanged` /
//! `ConversationChanged` / `ForwardingChanged` from any server and a bus resync make entries
//! stale, and a stale entry is read from SQL again on its next use.
//!
//! While SQL cannot be reached a stale entry still answers (the last thing SQL said), so
//! that chat, presence and calls go on through an outage; only what was never read
//! answers `server_unavailable`. Reads then wait for SQL only briefly
//! (`timed::sql_cached_read`), so an outage does not make every lookup wait out the pool. Each cache is bounded ([`MAX_CACHED`]): when full, stale
//! entries go first.

use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::owners::Owners;
use crate::store::{Store, StoreError};
use crate::timed;
use shared::api::ConversationSummary;
use shared::call::ForwardingRules;
use shared::{ConversationId, ServerId, UserId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Entries each cache keeps at most (per kind: homes, watchers, members, forwarding).
pub const MAX_CACHED: usize = 200_000;

/// One bounded cache: values as SQL last gave them, each fresh or stale.
struct Cached<K, V> {
    entries: HashMap<K, Entry<V>>,
}

struct Entry<V> {
    value: V,
    /// False once a change may have made it wrong: read SQL again, use it only if SQL is away.
    fresh: bool,
}

impl<K: Eq + Hash + Clone, V: Clone> Cached<K, V> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn fresh(&self, key: &K) -> Option<V> {
        self.entries
            .get(key)
            .filter(|e| e.fresh)
            .map(|e| e.value.clone())
    }

    fn any(&self, key: &K) -> Option<V> {
        self.entries.get(key).map(|e| e.value.clone())
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= MAX_CACHED && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.fresh);
            if self.entries.len() >= MAX_CACHED
                && let Some(victim) = self.entries.keys().next().cloned()
            {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(key, Entry { value, fresh: true });
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn stale(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.fresh = false;
        }
    }

    fn stale_where(&mut self, mut matches: impl FnMut(&K, &V) -> bool) {
        for (key, entry) in &mut self.entries {
            if matches(key, &entry.value) {
                entry.fresh = false;
            }
        }
    }
}

/// A read from SQL with the cache's answer when SQL is away: the fresh entry without asking
/// SQL, else SQL's answer (cached), else the stale entry if SQL cannot be reached.
async fn read_through<K, V, F>(
    cache: &Mutex<Cached<K, V>>,
    key: &K,
    read: F,
) -> Result<Option<V>, StoreError>
where
    K: Eq + Hash + Clone,
    V: Clone,
    F: std::future::Future<Output = Result<Option<V>, StoreError>>,
{
    if let Some(value) = cache.lock().unwrap().fresh(key) {
        return Ok(Some(value));
    }
    match read.await {
        Ok(Some(value)) => {
            cache.lock().unwrap().insert(key.clone(), value.clone());
            Ok(Some(value))
        }
        Ok(None) => {
            cache.lock().unwrap().remove(key);
            Ok(None)
        }
        Err(error @ StoreError::Unavailable(_)) => match cache.lock().unwrap().any(key) {
            Some(value) => Ok(Some(value)),
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

pub struct Relations {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    owners: Arc<Owners>,
    homes: Mutex<Cached<UserId, ServerId>>,
    members: Mutex<Cached<ConversationId, Arc<Vec<UserId>>>>,
    watchers: Mutex<Cached<UserId, Arc<Vec<UserId>>>>,
    forwarding: Mutex<Cached<UserId, ForwardingRules>>,
    /// Users a server keeps although the view says another serves them now (they are in a
    /// call; they move when it ends), as that server announced, until when.
    held: Mutex<HashMap<UserId, (ServerId, Instant)>>,
}

/// Most users held in calls that are remembered (a server holds at most its calls' parties).
const MAX_HELD: usize = 100_000;

impl Relations {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, owners: Arc<Owners>) -> Self {
        Self {
            store,
            metrics,
            owners,
            homes: Mutex::new(Cached::new()),
            members: Mutex::new(Cached::new()),
            watchers: Mutex::new(Cached::new()),
            forwarding: Mutex::new(Cached::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// `server` keeps `users` until `until` although they are served elsewhere now: what is
    /// for them goes to it.
    pub fn held_by(&self, server: &ServerId, users: &[UserId], until: Instant) {
        let mut held = self.held.lock().unwrap();
        held.retain(|_, (_, expires)| *expires > Instant::now());
        for user in users {
            if held.len() >= MAX_HELD && !held.contains_key(user) {
                break;
            }
            held.insert(user.clone(), (server.clone(), until));
        }
    }

    /// `server` let `users` go (handed them over).
    pub fn released_by(&self, server: &ServerId, users: &[UserId]) {
        let mut held = self.held.lock().unwrap();
        for user in users {
            if held.get(user).is_some_and(|(by, _)| by == server) {
                held.remove(user);
            }
        }
    }

    /// The server keeping `user` for a call although another serves them now.
    fn holder(&self, user: &UserId) -> Option<ServerId> {
        let held = self.held.lock().unwrap();
        held.get(user)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(server, _)| server.clone())
    }

    /// The home server of a user; `NotFound` if there is no such user.
    pub async fn home_of(&self, user: &UserId) -> AppResult<ServerId> {
        let read = async {
            let record = timed::sql_cached_read(&self.metrics, self.store.get_user(user)).await?;
            Ok(record.map(|r| r.home_server))
        };
        read_through(&self.homes, user, read)
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{user}'")))
    }

    /// Takes in a user's home learned elsewhere than SQL (where the user is online, while
    /// SQL is away); SQL's answer replaces it once the entry is stale and SQL answers.
    pub fn learn_home(&self, user: &UserId, home: &ServerId) {
        self.homes
            .lock()
            .unwrap()
            .insert(user.clone(), home.clone());
    }

    /// The server that serves a user now: the home, or while it is dead or draining, its
    /// backup (`owners.rs`). `NotFound` if there is no such user.
    pub async fn server_of(&self, user: &UserId) -> AppResult<ServerId> {
        let home = self.home_of(user).await?;
        if let Some(holder) = self.holder(user) {
            return Ok(holder);
        }
        Ok(self.owners.serving(user, &home).unwrap_or(home))
    }

    /// Users who get live presence events of `user` (contacts holding them, group mates and
    /// the user's delegates), plus the user themselves (their other devices).
    pub async fn watchers_of(&self, user: &UserId) -> AppResult<Arc<Vec<UserId>>> {
        let read = async {
            let mut set: BTreeSet<UserId> =
                timed::sql_cached_read(&self.metrics, self.store.contact_owners(user))
                    .await?
                    .into_iter()
                    .collect();
            set.extend(timed::sql_cached_read(&self.metrics, self.store.group_mates(user)).await?);
            set.extend(timed::sql_cached_read(&self.metrics, self.store.delegates(user)).await?);
            set.insert(user.clone());
            Ok(Some(Arc::new(set.into_iter().collect::<Vec<_>>())))
        };
        let watchers = read_through(&self.watchers, user, read).await?;
        Ok(watchers.unwrap_or_else(|| Arc::new(vec![user.clone()])))
    }

    /// Users whose presence `user` sees live: their contacts, group mates and the users they
    /// act for.
    pub async fn watched_by(&self, user: &UserId) -> AppResult<Vec<UserId>> {
        let mut set: BTreeSet<UserId> = timed::sql(&self.metrics, self.store.contacts(user))
            .await?
            .into_iter()
            .map(|c| c.contact)
            .collect();
        set.extend(timed::sql(&self.metrics, self.store.group_mates(user)).await?);
        set.extend(timed::sql(&self.metrics, self.store.delegated_by(user)).await?);
        Ok(set.into_iter().collect())
    }

    pub async fn members_of(&self, conversation: &ConversationId) -> AppResult<Arc<Vec<UserId>>> {
        let read = async {
            let record =
                timed::sql_cached_read(&self.metrics, self.store.get_conversation(conversation))
                    .await?;
            Ok(record.map(|r| Arc::new(r.members)))
        };
        match read_through(&self.members, conversation, read).await {
            Ok(Some(members)) => Ok(members),
            Ok(None) => Err(AppError::not_found(format!(
                "there is no conversation '{conversation}'"
            ))),
            // While SQL is away a 1:1 conversation's members are still known: they are in its
            // id. Not cached, since whether it exists is not.
            Err(error @ StoreError::Unavailable(_)) => match conversation.direct_members() {
                Some((a, b)) => Ok(Arc::new(vec![a, b])),
                None => Err(error.into()),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// Takes in the members of conversations just read from SQL (a user's conversation list),
    /// so that posting to them works while SQL is away.
    pub fn learn_members(&self, conversations: &[ConversationSummary]) {
        let mut members = self.members.lock().unwrap();
        for conversation in conversations {
            members.insert(
                conversation.id.clone(),
                Arc::new(conversation.members.clone()),
            );
        }
    }

    /// Whether the members of a conversation are cached (it exists, as far as this server
    /// has seen).
    pub fn knows_conversation(&self, conversation: &ConversationId) -> bool {
        self.members.lock().unwrap().any(conversation).is_some()
    }

    /// A user's call forwarding. While SQL is away, rules never read here are
    /// `server_unavailable` (the caller decides what a call does without them).
    pub async fn forwarding_of(&self, user: &UserId) -> AppResult<ForwardingRules> {
        let read = async {
            let rules = timed::sql_cached_read(&self.metrics, self.store.forwarding(user)).await?;
            Ok(Some(rules))
        };
        Ok(read_through(&self.forwarding, user, read)
            .await?
            .unwrap_or_default())
    }

    /// Takes in a user's forwarding as just stored or announced (`ForwardingChanged`).
    pub fn learn_forwarding(&self, user: &UserId, rules: &ForwardingRules) {
        self.forwarding
            .lock()
            .unwrap()
            .insert(user.clone(), rules.clone());
    }

    /// Makes cached relations of these users stale (everything when `users` is empty): read
    /// from SQL again on next use, and used as they are only while SQL cannot be reached.
    pub fn forget(&self, users: &[UserId]) {
        let all = users.is_empty();
        let concerns = |user: &UserId| all || users.contains(user);
        self.homes.lock().unwrap().stale_where(|u, _| concerns(u));
        self.watchers
            .lock()
            .unwrap()
            .stale_where(|u, _| concerns(u));
        self.forwarding
            .lock()
            .unwrap()
            .stale_where(|u, _| concerns(u));
        // Group and contact changes can change any conversation's members of these users.
        self.members
            .lock()
            .unwrap()
            .stale_where(|_, members| all || members.iter().any(|m| users.contains(m)));
    }

    pub fn forget_conversation(&self, conversation: &ConversationId) {
        self.members.lock().unwrap().stale(conversation);
    }

    /// Splits users by the server serving them now, and by their home when that is another
    /// server (users with no home are left out). A server's view of who serves whom can be
    /// a heartbeat behind (a peer just died, a promoted Redis replica holds old heartbeats):
    /// sending to both means the server holding the user's devices gets it either way, and
    /// the other has no device of theirs to show it twice.
    pub async fn by_server(&self, users: &[UserId]) -> BTreeMap<ServerId, Vec<UserId>> {
        let mut groups: BTreeMap<ServerId, Vec<UserId>> = BTreeMap::new();
        for user in users {
            match self.home_of(user).await {
                Ok(home) => {
                    let serving = self.owners.serving(user, &home).unwrap_or(home.clone());
                    let holder = self.holder(user);
                    let mut targets = vec![home, serving];
                    targets.extend(holder);
                    targets.sort();
                    targets.dedup();
                    for server in targets {
                        groups.entry(server).or_default().push(user.clone());
                    }
                }
                Err(error) => tracing::debug!(%user, error = %error.0, "no home for user; skipped"),
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreError {
        StoreError::Unavailable("down".into())
    }

    #[tokio::test]
    async fn a_stale_entry_answers_only_while_sql_is_away() {
        let cache = Mutex::new(Cached::<u32, &str>::new());
        cache.lock().unwrap().insert(1, "old");
        // Fresh: SQL is not asked.
        let answer = read_through(&cache, &1, async { Err(unavailable()) }).await;
        assert_eq!(answer.unwrap(), Some("old"));
        cache.lock().unwrap().stale(&1);
        // Stale: SQL's answer wins when it has one...
        let answer = read_through(&cache, &1, async { Ok(Some("new")) }).await;
        assert_eq!(answer.unwrap(), Some("new"));
        cache.lock().unwrap().stale(&1);
        // ...and the stale value serves when SQL is away.
        let answer = read_through(&cache, &1, async { Err(unavailable()) }).await;
        assert_eq!(answer.unwrap(), Some("new"));
        // Never read: SQL away is the answer.
        let answer = read_through(&cache, &2, async { Err(unavailable()) }).await;
        assert!(matches!(answer, Err(StoreError::Unavailable(_))));
        // Gone in SQL: gone from the cache.
        let answer = read_through(&cache, &1, async { Ok(None) }).await;
        assert_eq!(answer.unwrap(), None);
        assert!(cache.lock().unwrap().any(&1).is_none());
    }

    #[test]
    fn a_full_cache_drops_stale_entries_first() {
        let mut cache = Cached::<usize, usize>::new();
        for n in 0..MAX_CACHED {
            cache.insert(n, n);
        }
        cache.stale(&7);
        cache.insert(MAX_CACHED, 0);
        assert_eq!(cache.entries.len(), MAX_CACHED);
        assert!(cache.any(&7).is_none(), "the stale entry went");
        assert!(cache.fresh(&8).is_some());
        cache.insert(MAX_CACHED + 1, 0);
        assert_eq!(
            cache.entries.len(),
            MAX_CACHED,
            "still bounded with no stale entry"
        );
    }
}
