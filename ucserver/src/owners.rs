//! Who serves each user now, as this server sees the cluster (high availability).
//!
//! Every heartbeat refreshes the view: each UCServer's last beat and since when it has beaten
//! without lapsing, its redundancy group, and the cluster-wide settings (`away:<server>`: its
//! users were taken over while it was dead; `drain:`, `hold:`, `fallback:`: an admin's
//! commands). From that view the core (`core::ownership::serving`) answers who serves a user
//! whose home is given; every server computes the same answer without asking anyone, so
//! messages and presence go to the right server and a client knocking at the wrong one is
//! sent on. The view is at most a heartbeat old; the ownership records in the cluster store
//! (`Cluster::claim_owner`) decide who actually holds a user.
//!
//! The view also keeps this server's own lease honest: a small task ticks it several times a
//! second, with no IO. A tick that comes later than the failure detector's window after the
//! one before means the process was paused (or starved) long enough for its peers to take its
//! users; so does a tick that has not come for that long. Either way the server must not act
//! for its users until its next heartbeat has checked what it still owns ([`Owners::may_act`],
//! [`Owners::resume`]).

use crate::cluster::SeenServer;
use crate::core::ownership::{NodeStatus, OwnershipConfig, ServerView, Topology, serving};
use shared::api::ServerLink;
use shared::{ServerId, TimestampMs, UserId};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The settings' field names in the cluster store's high-availability hash.
pub const AWAY: &str = "away";
pub const DRAIN: &str = "drain";
pub const HOLD: &str = "hold";
pub const FALLBACK: &str = "fallback";

/// The field of `setting` for `server`, e.g. `away:s1`.
pub fn field(setting: &str, server: &ServerId) -> String {
    format!("{setting}:{server}")
}

pub struct Owners {
    me: ServerId,
    config: OwnershipConfig,
    dead_after_ms: i64,
    view: Mutex<View>,
    /// When the ticker last ticked, by this process's monotonic clock, and whether a gap was
    /// seen that the heartbeat has not checked yet.
    tick: Mutex<Tick>,
    /// Users taken over from another server, and when their devices learn where their
    /// conversations stand.
    settling: Mutex<Vec<(UserId, Instant)>>,
    /// When each peer was last probed (`probe.rs`): at most one probe per peer per
    /// [`PROBE_EVERY`].
    probed: Mutex<BTreeMap<ServerId, Instant>>,
    /// Users handed to this server whose devices must arrive by then (else they go offline).
    arrivals: Mutex<BTreeMap<UserId, Instant>>,
    /// Set by a graceful stop that handed its users over: no more beats.
    leaving: std::sync::atomic::AtomicBool,
}

/// How often one peer may be probed.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Most users waiting to settle (a takeover of more is settled by the devices' own gap
/// detection on their next message).
const MAX_SETTLING: usize = 100_000;

/// How long after a takeover a user's devices are told where their conversations stand:
/// by then every server routes to this one.
const SETTLE_AFTER: Duration = Duration::from_secs(2);

struct Tick {
    last: Instant,
    suspended: bool,
}

/// How often the ticker ticks.
pub const TICK_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct View {
    topology: Topology,
    urls: BTreeMap<ServerId, String>,
    /// When each server was last seen alive, by this process's clock: a server missing from
    /// the store (restarted empty, or forgotten as dead) counts as alive for the failure
    /// detector's window after that, so that a store restart moves nobody. After an outage
    /// every server alive before it counts as seen when the store answers again: an outage
    /// longer than the window must not make everyone look dead to everyone.
    last_alive: BTreeMap<ServerId, Instant>,
    /// Each server's beat at the refresh: how old it was and which run of the server beat.
    beats: BTreeMap<ServerId, (i64, String)>,
    /// The cluster store's clock at the refresh, and this process's clock then.
    store_now_ms: TimestampMs,
    refreshed: Option<Instant>,
    /// A read of the store failed since the last refresh: the next one follows an outage,
    /// during which not seeing a server proved nothing ([`Owners::refresh_failed`]).
    missed: bool,
    /// Until then, a server alive before the store was away counts as alive although its
    /// beat is missing (a store back empty) or old (one back with its data): each server
    /// gets the window to beat into it again before anyone takes its users.
    outage_grace_until: Option<Instant>,
}

impl Owners {
    pub fn new(me: ServerId, config: OwnershipConfig, dead_after_ms: u64) -> Self {
        Self {
            me,
            config,
            dead_after_ms: dead_after_ms as i64,
            view: Mutex::new(View::default()),
            tick: Mutex::new(Tick {
                last: Instant::now(),
                suspended: false,
            }),
            settling: Mutex::new(Vec::new()),
            probed: Mutex::new(BTreeMap::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            arrivals: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes in what the heartbeat read: every server's beat and the high-availability
    /// settings. A server forgotten as dead stays in the view (dead, with its group), so
    /// its users' backups are still found.
    pub fn refresh(&self, seen: &[SeenServer], settings: &[(String, String)]) {
        let store_now_ms = seen
            .iter()
            .map(|s| s.last_seen_ms + s.age_ms)
            .max()
            .unwrap_or_else(shared::now_ms);
        let set = |setting: &str, server: &ServerId| {
            let field = field(setting, server);
            settings.iter().any(|(f, _)| *f == field)
        };
        let mut view = self.view.lock().unwrap();
        let window = std::time::Duration::from_millis(self.dead_after_ms.max(0) as u64);
        let missed = std::mem::take(&mut view.missed);
        if missed || view.refreshed.is_some_and(|at| at.elapsed() > window) {
            // Back after an outage (a read failed, or none for longer than the window: it
            // hung): whoever was alive before counts as seen now.
            let now = Instant::now();
            let alive: Vec<ServerId> = view
                .topology
                .servers
                .iter()
                .filter(|(_, server)| server.alive)
                .map(|(id, _)| id.clone())
                .collect();
            for id in alive {
                view.last_alive.insert(id, now);
            }
            view.outage_grace_until = Some(now + window);
        }
        let in_outage_grace = view
            .outage_grace_until
            .is_some_and(|until| until > Instant::now());
        let mut topology = Topology::default();
        for (id, old) in &view.topology.servers {
            let recently = view
                .last_alive
                .get(id)
                .is_some_and(|at| at.elapsed() <= window);
            topology.servers.insert(
                id.clone(),
                ServerView {
                    alive: recently,
                    ..old.clone()
                },
            );
        }
        for server in seen {
            let id = &server.heartbeat.id;
            let recently = view
                .last_alive
                .get(id)
                .is_some_and(|at| at.elapsed() <= window);
            topology.servers.insert(
                id.clone(),
                ServerView {
                    group: server.heartbeat.group.clone(),
                    alive: server.age_ms <= self.dead_after_ms || (in_outage_grace && recently),
                    alive_since_ms: server.alive_since_ms,
                    draining: false,
                    hold: false,
                    fallback_now: false,
                    users_away: false,
                    older: server.heartbeat.ha_protocol < shared::bus::HA_PROTOCOL,
                },
            );
            view.urls.insert(id.clone(), server.heartbeat.url.clone());
            view.beats.insert(
                id.clone(),
                (server.age_ms, server.heartbeat.incarnation.clone()),
            );
            if server.age_ms <= self.dead_after_ms {
                view.last_alive.insert(id.clone(), Instant::now());
            }
        }
        for (id, server_view) in &mut topology.servers {
            server_view.users_away = set(AWAY, id);
            server_view.draining = set(DRAIN, id);
            server_view.hold = set(HOLD, id);
            server_view.fallback_now = set(FALLBACK, id);
        }
        view.topology = topology;
        view.store_now_ms = store_now_ms;
        view.refreshed = Some(Instant::now());
    }

    /// The store could not be read: the next refresh that succeeds follows an outage.
    pub fn refresh_failed(&self) {
        self.view.lock().unwrap().missed = true;
    }

    /// Now by the cluster store's clock, as far as this server can tell.
    fn now(view: &View) -> TimestampMs {
        match view.refreshed {
            Some(at) => view.store_now_ms + at.elapsed().as_millis() as i64,
            None => shared::now_ms(),
        }
    }

    /// Who serves `user` (home `home`) now; `None` when no live server can. Before the first
    /// refresh (or with no peers) the home serves its users.
    pub fn serving(&self, user: &UserId, home: &ServerId) -> Option<ServerId> {
        let view = self.view.lock().unwrap();
        if view.topology.servers.is_empty() {
            return Some(home.clone());
        }
        serving(&view.topology, user, home, Self::now(&view), &self.config)
    }

    /// Whether `server` beat within the failure detector's window at the last refresh.
    pub fn is_alive(&self, server: &ServerId) -> bool {
        let view = self.view.lock().unwrap();
        view.topology
            .servers
            .get(server)
            .is_some_and(|server| server.alive)
    }

    /// `users` were handed to this server: their devices should arrive within the window.
    pub fn expect_arrivals(&self, users: Vec<UserId>) {
        let mut arrivals = self.arrivals.lock().unwrap();
        let due = Instant::now() + self.window();
        for user in users {
            if arrivals.len() < MAX_SETTLING {
                arrivals.insert(user, due);
            }
        }
    }

    /// `user` is no longer expected here: their devices arrived (this server claimed them),
    /// or this server handed them on.
    pub fn arrived(&self, user: &UserId) {
        self.arrivals.lock().unwrap().remove(user);
    }

    /// Every batch of users handed to this server since the last call, with its deadline.
    pub fn take_arrivals(&self) -> Vec<(Vec<UserId>, Instant)> {
        let now = Instant::now();
        let mut arrivals = self.arrivals.lock().unwrap();
        let due: Vec<UserId> = arrivals
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(user, _)| user.clone())
            .collect();
        for user in &due {
            arrivals.remove(user);
        }
        if due.is_empty() {
            Vec::new()
        } else {
            vec![(due, now)]
        }
    }

    /// This server is stopping and hands its users over: it beats no more.
    pub fn set_leaving(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this server is stopping (see [`Owners::set_leaving`]).
    pub fn leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the view was read from the cluster store within `within`.
    pub fn refreshed_within(&self, within: Duration) -> bool {
        let view = self.view.lock().unwrap();
        view.refreshed.is_some_and(|at| at.elapsed() <= within)
    }

    /// A peer the view holds alive whose beat is at least `late_ms` old by now, with its URL
    /// and the run that beat last: it may have died since (`probe.rs` tells a killed one).
    pub fn late_peer(&self, server: &ServerId, late_ms: i64) -> Option<(String, String)> {
        if *server == self.me || !self.is_alive(server) {
            return None;
        }
        let view = self.view.lock().unwrap();
        let since_refresh = view
            .refreshed
            .map_or(0, |at| at.elapsed().as_millis() as i64);
        let (age_ms, incarnation) = view.beats.get(server)?;
        (age_ms + since_refresh >= late_ms)
            .then(|| Some((view.urls.get(server)?.clone(), incarnation.clone())))
            .flatten()
    }

    /// Every peer whose beat is at least `late_ms` old by now.
    pub fn late_peers(&self, late_ms: i64) -> Vec<ServerId> {
        let peers: Vec<ServerId> = self.view.lock().unwrap().beats.keys().cloned().collect();
        peers
            .into_iter()
            .filter(|peer| self.late_peer(peer, late_ms).is_some())
            .collect()
    }

    /// Whether `peer` may be probed now (none in the last [`PROBE_EVERY`]); counts this one.
    pub fn may_probe(&self, peer: &ServerId) -> bool {
        let mut probed = self.probed.lock().unwrap();
        if probed
            .get(peer)
            .is_some_and(|at| at.elapsed() < PROBE_EVERY)
        {
            return false;
        }
        probed.insert(peer.clone(), Instant::now());
        true
    }

    /// Whether an admin drains `server` (its users go to their backups).
    pub fn is_draining(&self, server: &ServerId) -> bool {
        let view = self.view.lock().unwrap();
        view.topology
            .servers
            .get(server)
            .is_some_and(|server| server.draining)
    }

    /// The base URL of a server, as its heartbeat said.
    pub fn url(&self, server: &ServerId) -> Option<String> {
        self.view.lock().unwrap().urls.get(server).cloned()
    }

    /// The live servers, for clients to knock at when theirs cannot be reached.
    pub fn links(&self) -> Vec<ServerLink> {
        let view = self.view.lock().unwrap();
        view.topology
            .servers
            .iter()
            .filter(|(_, server)| server.alive)
            .filter_map(|(id, _)| {
                view.urls.get(id).map(|url| ServerLink {
                    id: id.clone(),
                    url: url.clone(),
                })
            })
            .collect()
    }

    /// Whether this server's users are away on their backups (it is back from a failover
    /// and has not taken them back yet).
    pub fn users_away(&self) -> bool {
        let view = self.view.lock().unwrap();
        view.topology
            .servers
            .get(&self.me)
            .is_some_and(|server| server.users_away)
    }

    /// Whether this server serves its own users now (it is alive, not draining, and back
    /// long enough, or told to take them back).
    pub fn serves_own_users(&self) -> bool {
        let view = self.view.lock().unwrap();
        view.topology.servers.is_empty()
            || view
                .topology
                .serves_its_own(&self.me, Self::now(&view), &self.config)
    }

    /// Every server's state with its reason, given the users of each home.
    pub fn node_states(
        &self,
        homes: &BTreeMap<ServerId, Vec<UserId>>,
    ) -> BTreeMap<ServerId, NodeStatus> {
        let view = self.view.lock().unwrap();
        crate::core::ownership::node_states(&view.topology, homes, Self::now(&view), &self.config)
    }

    /// Tells `user`'s devices where their conversations stand a little later.
    pub fn settle_later(&self, user: UserId) {
        let mut settling = self.settling.lock().unwrap();
        if settling.len() < MAX_SETTLING && !settling.iter().any(|(u, _)| *u == user) {
            settling.push((user, Instant::now() + SETTLE_AFTER));
        }
    }

    /// The users whose settling time has come.
    pub fn settle_due(&self) -> Vec<UserId> {
        let now = Instant::now();
        let mut settling = self.settling.lock().unwrap();
        let (due, later): (Vec<_>, Vec<_>) = settling.drain(..).partition(|(_, at)| *at <= now);
        *settling = later;
        due.into_iter().map(|(user, _)| user).collect()
    }

    /// The ticker's beat: a gap longer than the failure detector's window suspends acting
    /// until the heartbeat has checked what this server still owns.
    pub fn tick(&self) {
        let mut tick = self.tick.lock().unwrap();
        if tick.last.elapsed() >= self.window() {
            tick.suspended = true;
        }
        tick.last = Instant::now();
    }

    /// Whether this server was paused and has not yet checked what it still owns.
    pub fn suspended(&self) -> bool {
        let tick = self.tick.lock().unwrap();
        tick.suspended || tick.last.elapsed() >= self.window()
    }

    /// The heartbeat checked what this server still owns: it may act again.
    pub fn resume(&self) {
        let mut tick = self.tick.lock().unwrap();
        tick.suspended = false;
        tick.last = Instant::now();
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms.max(0) as u64)
    }

    /// Whether this server may act for its users: it was not paused past the failure
    /// detector's window, or it has checked since which users it still owns.
    pub fn may_act(&self) -> bool {
        !self.suspended()
    }
}
