//! The in-process cluster: plain maps behind one mutex, and mpsc channels as the bus.
//! Several servers in one process share a [`LocalHub`]; a single-node server has its own.

use super::{BusInput, Cluster, ClusterResult, LoginFailures, OwnerClaim, SeenServer};
use crate::core::license::{LeaseOutcome, LeaseTable};
use async_trait::async_trait;
use shared::bus::{BusMessage, ServerHeartbeat};
use shared::console::StatsSample;
use shared::media::MediaServerStatus;
use shared::presence::PresenceSnapshot;
use shared::{MediaServerId, ServerId, TimestampMs, UserId};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Bus queue per server; a full queue means the reader is too slow, and it gets `Resync`.
const QUEUE: usize = 65_536;
/// Most login throttle keys held. Expired keys are swept when the map is full; if it is still
/// full, the tenth of the keys whose last failure is oldest goes at once, so the cost of a
/// sweep is spread over many inserts (Redis bounds its keys by their TTL).
pub const LOGIN_KEYS_CAP: usize = 100_000;

/// Failed logins of one key.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last_ms: TimestampMs,
    forget_at_ms: TimestampMs,
}

#[derive(Default)]
struct HubState {
    subscribers: HashMap<ServerId, mpsc::Sender<BusInput>>,
    servers: HashMap<ServerId, SeenServer>,
    locks: HashMap<String, (String, TimestampMs)>,
    presence: HashMap<UserId, PresenceSnapshot>,
    online: HashMap<ServerId, BTreeSet<UserId>>,
    leases: LeaseTable,
    media: HashMap<MediaServerId, (MediaServerStatus, TimestampMs)>,
    /// Owner (server and incarnation) and epoch of each user's live state (no owner once
    /// released).
    owners: HashMap<UserId, (Option<(ServerId, String)>, u64)>,
    ha: std::collections::BTreeMap<String, String>,
    login_failures: HashMap<String, Failures>,
    /// Each server's load samples and when they are forgotten.
    samples: HashMap<ServerId, (VecDeque<StatsSample>, TimestampMs)>,
    /// Bound of `login_failures` (`LOGIN_KEYS_CAP` unless a test sets a smaller one).
    login_keys_cap: Option<usize>,
}

impl HubState {
    /// Makes room for one more login key: drops expired keys, then the oldest one.
    fn make_room_for_login_key(&mut self, now: TimestampMs) {
        let cap = self.login_keys_cap.unwrap_or(LOGIN_KEYS_CAP).max(1);
        if self.login_failures.len() < cap {
            return;
        }
        self.login_failures.retain(|_, f| f.forget_at_ms > now);
        if self.login_failures.len() < cap {
            return;
        }
        let evict = (cap / 10).max(1);
        let mut ages: Vec<TimestampMs> = self.login_failures.values().map(|f| f.last_ms).collect();
        let (_, newest_evicted, _) = ages.select_nth_unstable(evict - 1);
        let newest_evicted = *newest_evicted;
        let mut left = evict;
        self.login_failures.retain(|_, f| {
            if left > 0 && f.last_ms <= newest_evicted {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// State shared by every [`LocalCluster`] handle made from it.
#[derive(Clone, Default)]
pub struct LocalHub {
    state: Arc<Mutex<HubState>>,
}

impl LocalHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub that holds at most `cap` login throttle keys (tests of the bound).
    pub fn with_login_keys_cap(cap: usize) -> Self {
        let hub = Self::default();
        hub.state.lock().unwrap().login_keys_cap = Some(cap);
        hub
    }

    /// Login throttle keys held now.
    pub fn login_keys(&self) -> usize {
        self.state.lock().unwrap().login_failures.len()
    }

    /// Records a MediaServer heartbeat (the embedded MediaServer of a single node).
    pub fn media_heartbeat(&self, status: MediaServerStatus) {
        let now = shared::now_ms();
        self.state
            .lock()
            .unwrap()
            .media
            .insert(status.id.clone(), (status, now));
    }
}

/// One server's handle on a [`LocalHub`].
#[derive(Clone)]
pub struct LocalCluster {
    hub: LocalHub,
}

impl LocalCluster {
    pub fn new(hub: LocalHub) -> Self {
        Self { hub }
    }

    fn deliver(sender: &mpsc::Sender<BusInput>, message: &BusMessage) {
        if sender
            .try_send(BusInput::Message(Box::new(message.clone())))
            .is_err()
        {
            let _ = sender.try_send(BusInput::Resync);
        }
    }
}

#[async_trait]
impl Cluster for LocalCluster {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ping(&self) -> ClusterResult<()> {
        Ok(())
    }

    async fn epoch(&self) -> ClusterResult<String> {
        Ok("local".into())
    }

    async fn ensure_subscribed(&self, _me: &ServerId) -> ClusterResult<bool> {
        Ok(false)
    }

    async fn subscribe(&self, me: &ServerId) -> ClusterResult<mpsc::Receiver<BusInput>> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        self.hub
            .state
            .lock()
            .unwrap()
            .subscribers
            .insert(me.clone(), sender);
        Ok(receiver)
    }

    async fn publish(&self, to: &ServerId, message: &BusMessage) -> ClusterResult<()> {
        let state = self.hub.state.lock().unwrap();
        if let Some(sender) = state.subscribers.get(to) {
            Self::deliver(sender, message);
        }
        Ok(())
    }

    async fn broadcast(&self, message: &BusMessage) -> ClusterResult<()> {
        let state = self.hub.state.lock().unwrap();
        for sender in state.subscribers.values() {
            Self::deliver(sender, message);
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        heartbeat: &ServerHeartbeat,
        dead_after_ms: u64,
    ) -> ClusterResult<bool> {
        let now = shared::now_ms();
        let mut state = self.hub.state.lock().unwrap();
        let previous = state.servers.get(&heartbeat.id);
        let lapsed = previous.is_none_or(|seen| now - seen.last_seen_ms > dead_after_ms as i64);
        let alive_since_ms = match previous {
            Some(seen) if !lapsed => seen.alive_since_ms,
            _ => now,
        };
        let seen = SeenServer {
            heartbeat: heartbeat.clone(),
            last_seen_ms: now,
            age_ms: 0,
            alive_since_ms,
        };
        state.servers.insert(heartbeat.id.clone(), seen);
        Ok(lapsed)
    }

    async fn servers(&self) -> ClusterResult<Vec<SeenServer>> {
        let now = shared::now_ms();
        let mut servers: Vec<SeenServer> = self
            .hub
            .state
            .lock()
            .unwrap()
            .servers
            .values()
            .cloned()
            .collect();
        for server in &mut servers {
            server.age_ms = now - server.last_seen_ms;
        }
        servers.sort_by(|a, b| a.heartbeat.id.cmp(&b.heartbeat.id));
        Ok(servers)
    }

    async fn forget_server(&self, server: &ServerId) -> ClusterResult<()> {
        let mut state = self.hub.state.lock().unwrap();
        state.servers.remove(server);
        state.subscribers.remove(server);
        Ok(())
    }

    async fn declare_dead(
        &self,
        server: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<bool> {
        let mut state = self.hub.state.lock().unwrap();
        let Some(seen) = state.servers.get_mut(server) else {
            return Ok(false);
        };
        if seen.heartbeat.incarnation != incarnation {
            return Ok(false);
        }
        seen.last_seen_ms = shared::now_ms() - dead_after_ms as i64 - 1;
        Ok(true)
    }

    async fn claim_owner(
        &self,
        user: &UserId,
        me: &ServerId,
        incarnation: &str,
        dead_after_ms: u64,
    ) -> ClusterResult<OwnerClaim> {
        let now = shared::now_ms();
        let mut state = self.hub.state.lock().unwrap();
        let record = state.owners.get(user).cloned();
        let moved = record.is_some();
        let (holder, epoch) = record.unwrap_or((None, 0));
        if let Some((server, run)) = holder {
            if &server == me && run == incarnation {
                return Ok(OwnerClaim::Granted {
                    epoch,
                    moved: false,
                });
            }
            let alive = state.servers.get(&server).is_some_and(|seen| {
                seen.heartbeat.incarnation == run && now - seen.last_seen_ms <= dead_after_ms as i64
            });
            if alive {
                return Ok(OwnerClaim::Held { by: server });
            }
        }
        state.owners.insert(
            user.clone(),
            (Some((me.clone(), incarnation.to_string())), epoch + 1),
        );
        Ok(OwnerClaim::Granted {
            epoch: epoch + 1,
            moved,
        })
    }

    async fn release_owner(&self, user: &UserId, me: &ServerId) -> ClusterResult<()> {
        let mut state = self.hub.state.lock().unwrap();
        if let Some((holder, _)) = state.owners.get_mut(user)
            && holder.as_ref().is_some_and(|(server, _)| server == me)
        {
            *holder = None;
        }
        Ok(())
    }

    async fn owners(&self, users: &[UserId]) -> ClusterResult<Vec<Option<ServerId>>> {
        let state = self.hub.state.lock().unwrap();
        Ok(users
            .iter()
            .map(|user| {
                state
                    .owners
                    .get(user)
                    .and_then(|(holder, _)| holder.as_ref().map(|(server, _)| server.clone()))
            })
            .collect())
    }

    async fn ha_set(&self, field: &str, value: Option<&str>) -> ClusterResult<()> {
        let mut state = self.hub.state.lock().unwrap();
        match value {
            Some(value) => state.ha.insert(field.to_string(), value.to_string()),
            None => state.ha.remove(field),
        };
        Ok(())
    }

    async fn ha_all(&self) -> ClusterResult<Vec<(String, String)>> {
        let state = self.hub.state.lock().unwrap();
        Ok(state
            .ha
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn push_sample(
        &self,
        server: &ServerId,
        sample: &StatsSample,
        keep: usize,
        ttl_ms: u64,
    ) -> ClusterResult<()> {
        let now = shared::now_ms();
        let mut state = self.hub.state.lock().unwrap();
        state.samples.retain(|_, (_, forget_at)| *forget_at > now);
        let (history, forget_at) = state.samples.entry(server.clone()).or_default();
        history.push_back(sample.clone());
        while history.len() > keep {
            history.pop_front();
        }
        *forget_at = now + ttl_ms as i64;
        Ok(())
    }

    async fn samples(&self, servers: &[ServerId]) -> ClusterResult<Vec<Vec<StatsSample>>> {
        let now = shared::now_ms();
        let state = self.hub.state.lock().unwrap();
        Ok(servers
            .iter()
            .map(|server| match state.samples.get(server) {
                Some((history, forget_at)) if *forget_at > now => history.iter().cloned().collect(),
                _ => Vec::new(),
            })
            .collect())
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> ClusterResult<bool> {
        let now = shared::now_ms();
        let mut state = self.hub.state.lock().unwrap();
        match state.locks.get(name) {
            Some((owner, until)) if *until > now && owner != holder => Ok(false),
            _ => {
                state
                    .locks
                    .insert(name.to_string(), (holder.to_string(), now + ttl_ms as i64));
                Ok(true)
            }
        }
    }

    async fn lock_holder(&self, name: &str) -> ClusterResult<Option<String>> {
        let now = shared::now_ms();
        let state = self.hub.state.lock().unwrap();
        Ok(state
            .locks
            .get(name)
            .filter(|(_, until)| *until > now)
            .map(|(holder, _)| holder.clone()))
    }

    async fn put_presence(&self, snapshot: &PresenceSnapshot) -> ClusterResult<()> {
        let mut state = self.hub.state.lock().unwrap();
        let newer = state
            .presence
            .get(&snapshot.user)
            .is_none_or(|held| held.version < snapshot.version);
        if newer {
            state
                .presence
                .insert(snapshot.user.clone(), snapshot.clone());
        }
        Ok(())
    }

    async fn get_presence(&self, users: &[UserId]) -> ClusterResult<Vec<Option<PresenceSnapshot>>> {
        let state = self.hub.state.lock().unwrap();
        Ok(users
            .iter()
            .map(|user| state.presence.get(user).cloned())
            .collect())
    }

    async fn set_online(
        &self,
        server: &ServerId,
        user: &UserId,
        online: bool,
    ) -> ClusterResult<()> {
        let mut state = self.hub.state.lock().unwrap();
        let users = state.online.entry(server.clone()).or_default();
        if online {
            users.insert(user.clone());
        } else {
            users.remove(user);
        }
        Ok(())
    }

    async fn online_users(&self, server: &ServerId) -> ClusterResult<Vec<UserId>> {
        let state = self.hub.state.lock().unwrap();
        Ok(state
            .online
            .get(server)
            .map(|users| users.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn clear_online(&self, server: &ServerId) -> ClusterResult<()> {
        self.hub.state.lock().unwrap().online.remove(server);
        Ok(())
    }

    async fn lease_acquire(
        &self,
        kind: &str,
        key: &str,
        holder: &ServerId,
        capacity: Option<u32>,
    ) -> ClusterResult<LeaseOutcome> {
        Ok(self
            .hub
            .state
            .lock()
            .unwrap()
            .leases
            .acquire(kind, key, holder, capacity))
    }

    async fn lease_release(&self, kind: &str, key: &str) -> ClusterResult<bool> {
        Ok(self.hub.state.lock().unwrap().leases.release(kind, key))
    }

    async fn lease_release_holder(&self, holder: &ServerId) -> ClusterResult<u32> {
        Ok(self.hub.state.lock().unwrap().leases.release_holder(holder))
    }

    async fn lease_count(&self, kind: &str) -> ClusterResult<u32> {
        Ok(self.hub.state.lock().unwrap().leases.in_use(kind))
    }

    async fn leases_held(&self, kind: &str, holder: &ServerId) -> ClusterResult<Vec<String>> {
        Ok(self.hub.state.lock().unwrap().leases.held_by(kind, holder))
    }

    async fn login_failed(&self, key: &str, forget_after_ms: u64) -> ClusterResult<u32> {
        let now = shared::now_ms();
        let mut state = self.hub.state.lock().unwrap();
        let live = state
            .login_failures
            .get(key)
            .is_some_and(|f| f.forget_at_ms > now);
        if !live {
            state.login_failures.remove(key);
            state.make_room_for_login_key(now);
        }
        let entry = state
            .login_failures
            .entry(key.to_string())
            .or_insert(Failures {
                count: 0,
                last_ms: now,
                forget_at_ms: now,
            });
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now;
        entry.forget_at_ms = now + forget_after_ms as i64;
        Ok(entry.count)
    }

    async fn login_failures(&self, keys: &[String]) -> ClusterResult<Vec<Option<LoginFailures>>> {
        let now = shared::now_ms();
        let state = self.hub.state.lock().unwrap();
        Ok(keys
            .iter()
            .map(|key| {
                state
                    .login_failures
                    .get(key)
                    .filter(|f| f.forget_at_ms > now)
                    .map(|f| LoginFailures {
                        count: f.count,
                        age_ms: now - f.last_ms,
                    })
            })
            .collect())
    }

    async fn login_forget(&self, key: &str) -> ClusterResult<()> {
        self.hub.state.lock().unwrap().login_failures.remove(key);
        Ok(())
    }

    async fn media_servers(&self) -> ClusterResult<Vec<(MediaServerStatus, TimestampMs)>> {
        let state = self.hub.state.lock().unwrap();
        let mut media: Vec<_> = state.media.values().cloned().collect();
        media.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(media)
    }
}
