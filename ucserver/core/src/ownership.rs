//! High availability: which UCServer serves each user, and the state each UCServer is in.
//!
//! Every user has a home server. While the home is alive and not draining, it serves the
//! user. While it is dead (its heartbeat lapsed) or draining, one live server of the home's
//! redundancy group serves the user instead; without a group, any live server may. The backup
//! is chosen by rendezvous hashing of (user, server): every server computes the same answer
//! without asking anyone, a dead server's users spread evenly over the survivors, and a user
//! moves only when its own choice stops being possible. With no live candidate nobody serves
//! the user (offline, state clear).
//!
//! Fallback: a home that comes back while its users are on backups serves them again once it
//! has been alive for the fallback delay without interruption (automatic fallback), or at once
//! when an admin asks (`fallback_now`); an admin may also hold its users on the backups
//! (`hold`). Until then the backups keep them, so a server that flaps does not drag its users
//! back and forth. A server whose users are not away serves them as soon as it is alive.
//!
//! The names of the node states follow Cisco IM and Presence's high-availability table where
//! it fits. This core decides from a [`Topology`] snapshot and `now`; the shell reads the
//! heartbeats and the admin's settings into it, carries out the moves, and guards each move
//! with the ownership lease (a fencing epoch in the cluster store).

use shared::{ServerId, TimestampMs, UserId};
use std::collections::BTreeMap;

/// A redundancy group's name (e.g. `site-a`).
pub type GroupName = String;

/// Settings of the choice, fixed per cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipConfig {
    /// How long a returning home must have been alive before its users move back (0: at
    /// once). `None`: no automatic fallback, only on an admin's command.
    pub fallback_delay_ms: Option<i64>,
    /// Whether a user whose home has no group may be served by any live server.
    pub any_server_backs_up: bool,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        Self {
            fallback_delay_ms: Some(30_000),
            any_server_backs_up: true,
        }
    }
}

/// What the cluster knows of one UCServer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerView {
    /// Its redundancy group; `None`: not in one.
    pub group: Option<GroupName>,
    /// Heard from within the failure detector's window.
    pub alive: bool,
    /// Since when it has been alive without interruption (its incarnation's first beat).
    pub alive_since_ms: TimestampMs,
    /// An admin is moving every user off it (`ucadmin server drain`).
    pub draining: bool,
    /// An admin keeps its users on their backups although it is back (no fallback).
    pub hold: bool,
    /// An admin asked its users back now (`ucadmin server fallback`), delay or not.
    pub fallback_now: bool,
    /// Its users are served by backups right now (the cluster store's ownership records say
    /// so): it is returning from a failover, and the fallback rules apply.
    pub users_away: bool,
    /// It runs a version from before ownership records (a rolling upgrade is under way): it
    /// serves its own users as it always did, and stands in for no one, since it would
    /// neither claim nor hand over the users it took.
    pub older: bool,
}

impl ServerView {
    /// A live server in its normal role.
    pub fn alive(since_ms: TimestampMs) -> Self {
        Self {
            group: None,
            alive: true,
            alive_since_ms: since_ms,
            draining: false,
            hold: false,
            fallback_now: false,
            users_away: false,
            older: false,
        }
    }

    /// In group `group`.
    pub fn in_group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
        self
    }
}

/// Every UCServer the cluster knows, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub servers: BTreeMap<ServerId, ServerView>,
}

impl Topology {
    /// Whether `server` may serve its own users at `now`.
    pub fn serves_its_own(
        &self,
        server: &ServerId,
        now: TimestampMs,
        config: &OwnershipConfig,
    ) -> bool {
        let Some(view) = self.servers.get(server) else {
            return false;
        };
        if !view.alive || view.draining {
            return false;
        }
        if !view.users_away || view.fallback_now {
            return true;
        }
        if view.hold {
            return false;
        }
        config
            .fallback_delay_ms
            .is_some_and(|delay| now - view.alive_since_ms >= delay)
    }

    /// Whether `server` may take users of others: alive and not draining.
    fn may_back_up(&self, server: &ServerId) -> bool {
        self.servers
            .get(server)
            .is_some_and(|view| view.alive && !view.draining && !view.older)
    }

    /// The servers that may stand in for `home`: the live members of its group, or with no
    /// group (and `any_server_backs_up`) every live server; never `home` itself.
    fn candidates<'a>(
        &'a self,
        home: &'a ServerId,
        config: &'a OwnershipConfig,
    ) -> impl Iterator<Item = &'a ServerId> + 'a {
        let group = self.servers.get(home).and_then(|view| view.group.clone());
        self.servers.iter().filter_map(move |(id, view)| {
            let eligible = match &group {
                Some(group) => view.group.as_ref() == Some(group),
                None => config.any_server_backs_up,
            };
            (id != home && eligible && self.may_back_up(id)).then_some(id)
        })
    }
}

/// Who serves `user`, whose home is `home`, at `now`; `None` when nobody can.
pub fn serving(
    topology: &Topology,
    user: &UserId,
    home: &ServerId,
    now: TimestampMs,
    config: &OwnershipConfig,
) -> Option<ServerId> {
    if topology.serves_its_own(home, now, config) {
        return Some(home.clone());
    }
    let backup = topology
        .candidates(home, config)
        .max_by_key(|server| (rendezvous(user, server), (*server).clone()))
        .cloned();
    // A home that is alive but not yet (or not) taking its users back keeps serving them when
    // no one else can.
    backup.or_else(|| {
        let view = topology.servers.get(home)?;
        (view.alive && !view.draining).then(|| home.clone())
    })
}

/// The home `user` should have among `servers` to spread users evenly (a rebalance after a
/// server was added): the highest rendezvous score, so adding or removing a server moves only
/// the users whose best choice it is or was. `None` with no servers.
pub fn preferred_home<'a>(user: &UserId, servers: &'a [ServerId]) -> Option<&'a ServerId> {
    servers
        .iter()
        .max_by_key(|server| (rendezvous(user, server), (*server).clone()))
}

/// The rendezvous score of (user, server): FNV-1a over both, then a 64-bit finalizer so that
/// near-equal ids still score far apart.
fn rendezvous(user: &UserId, server: &ServerId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user
        .as_str()
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(server.as_str().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A UCServer's state, named as in Cisco IM and Presence's high-availability table where it
/// fits. [`node_states`] gives the steady states; the shell reports the passing ones
/// (`Initializing`, `FailingOver`, `TakingOver`, `FallingBack`) while a move is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    /// Never heard from.
    Unknown,
    /// Started, not yet serving (cleaning up after its previous incarnation, subscribing).
    Initializing,
    /// Its users are being handed to their backups (a drain, an admin's failover).
    FailingOver,
    /// Taking over the users of a server that failed or drains.
    TakingOver,
    /// Handing users back to their returning home.
    FallingBack,
    /// Serving its own users, and only those.
    Normal,
    /// Alive and serving users of a server that failed or drains.
    RunningInBackupMode,
    /// Dead; its users are served by its backups.
    FailedOver,
    /// Dead, and no live server can serve its users: they are offline.
    Failed,
    /// Back, but its users stay on their backups until the fallback delay has passed, or an
    /// admin holds them there.
    TakingBack,
    /// An admin moves its users off it; it serves none of them.
    Draining,
}

impl NodeState {
    /// The state as the admin API and `ucadmin server list` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Initializing => "initializing",
            Self::FailingOver => "failing_over",
            Self::TakingOver => "taking_over",
            Self::FallingBack => "falling_back",
            Self::Normal => "normal",
            Self::RunningInBackupMode => "running_in_backup_mode",
            Self::FailedOver => "failed_over",
            Self::Failed => "failed",
            Self::TakingBack => "taking_back",
            Self::Draining => "draining",
        }
    }
}

/// One server's state with the reason for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub state: NodeState,
    pub reason: String,
}

/// The state of every known server, from who serves the users of each home.
pub fn node_states(
    topology: &Topology,
    homes: &BTreeMap<ServerId, Vec<UserId>>,
    now: TimestampMs,
    config: &OwnershipConfig,
) -> BTreeMap<ServerId, NodeStatus> {
    // For each server: whose users it serves besides its own; for each home: who serves its.
    let mut backing: BTreeMap<ServerId, Vec<ServerId>> = BTreeMap::new();
    let mut served_by: BTreeMap<ServerId, Vec<ServerId>> = BTreeMap::new();
    let mut unserved: BTreeMap<ServerId, usize> = BTreeMap::new();
    for (home, users) in homes {
        for user in users {
            match serving(topology, user, home, now, config) {
                Some(server) if &server == home => {}
                Some(server) => {
                    let homes_backed = backing.entry(server.clone()).or_default();
                    if !homes_backed.contains(home) {
                        homes_backed.push(home.clone());
                    }
                    let servers = served_by.entry(home.clone()).or_default();
                    if !servers.contains(&server) {
                        servers.push(server);
                    }
                }
                None => *unserved.entry(home.clone()).or_default() += 1,
            }
        }
    }
    let list = |servers: &[ServerId]| {
        servers
            .iter()
            .map(ServerId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    topology
        .servers
        .iter()
        .map(|(id, view)| {
            let backs = backing.get(id).map(Vec::as_slice).unwrap_or_default();
            let backed_by = served_by.get(id).map(Vec::as_slice).unwrap_or_default();
            let status = if view.draining && view.alive {
                NodeStatus {
                    state: NodeState::Draining,
                    reason: format!("an admin moves its users off it (to {})", list(backed_by)),
                }
            } else if !view.alive && view.alive_since_ms <= 0 && backed_by.is_empty() {
                NodeStatus {
                    state: NodeState::Unknown,
                    reason: "never heard from".to_string(),
                }
            } else if !view.alive {
                match unserved.get(id) {
                    Some(&count) if count > 0 => NodeStatus {
                        state: NodeState::Failed,
                        reason: format!(
                            "heartbeat lost; no live server can serve its {count} users"
                        ),
                    },
                    _ => NodeStatus {
                        state: NodeState::FailedOver,
                        reason: if backed_by.is_empty() {
                            "heartbeat lost; it has no users".to_string()
                        } else {
                            format!(
                                "heartbeat lost; its users are served by {}",
                                list(backed_by)
                            )
                        },
                    },
                }
            } else if !backed_by.is_empty() {
                NodeStatus {
                    state: NodeState::TakingBack,
                    reason: if view.hold {
                        format!("back; an admin keeps its users on {}", list(backed_by))
                    } else {
                        format!(
                            "back; its users stay on {} until the fallback",
                            list(backed_by)
                        )
                    },
                }
            } else if !backs.is_empty() {
                NodeStatus {
                    state: NodeState::RunningInBackupMode,
                    reason: format!("serving the users of {}", list(backs)),
                }
            } else {
                NodeStatus {
                    state: NodeState::Normal,
                    reason: if view.older {
                        "an older version: serving its own users, standing in for no one"
                            .to_string()
                    } else {
                        "serving its own users".to_string()
                    },
                }
            };
            (id.clone(), status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebalance_spreads_users_and_an_added_server_takes_only_its_share() {
        let three: Vec<ServerId> = ["s1", "s2", "s3"].map(ServerId::from).into();
        let four: Vec<ServerId> = ["s1", "s2", "s3", "s4"].map(ServerId::from).into();
        let users: Vec<UserId> = (0..3000).map(|i| UserId::new(format!("u{i}"))).collect();
        let mut counts = BTreeMap::new();
        let mut moved = 0;
        for user in &users {
            let before = preferred_home(user, &three).unwrap();
            let after = preferred_home(user, &four).unwrap();
            *counts.entry(after.clone()).or_insert(0) += 1;
            if before != after {
                assert_eq!(after.as_str(), "s4", "a user moves only to the new server");
                moved += 1;
            }
        }
        for (server, count) in &counts {
            assert!((600..=900).contains(count), "{server} gets {count} of 3000");
        }
        assert!((600..=900).contains(&moved), "{moved} users moved");
        assert!(preferred_home(&users[0], &[]).is_none());
    }

    const NOW: TimestampMs = 1_000_000;

    fn id(name: &str) -> ServerId {
        ServerId::from(name)
    }

    fn users(prefix: &str, count: usize) -> Vec<UserId> {
        (0..count)
            .map(|n| UserId::new(format!("{prefix}{n}")))
            .collect()
    }

    /// Three servers in one group, alive since long ago.
    fn three() -> Topology {
        let mut topology = Topology::default();
        for name in ["s1", "s2", "s3"] {
            topology
                .servers
                .insert(id(name), ServerView::alive(0).in_group("a"));
        }
        topology
    }

    fn count_by_server(
        topology: &Topology,
        users: &[UserId],
        home: &ServerId,
        config: &OwnershipConfig,
    ) -> BTreeMap<Option<ServerId>, usize> {
        let mut counts = BTreeMap::new();
        for user in users {
            *counts
                .entry(serving(topology, user, home, NOW, config))
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn a_live_home_serves_its_users() {
        let topology = three();
        let config = OwnershipConfig::default();
        let user = UserId::from("alice");
        assert_eq!(
            serving(&topology, &user, &id("s1"), NOW, &config),
            Some(id("s1"))
        );
    }

    #[test]
    fn a_dead_homes_users_spread_evenly_over_its_group_and_move_only_when_they_must() {
        let mut topology = three();
        topology.servers.get_mut(&id("s1")).unwrap().alive = false;
        let config = OwnershipConfig::default();
        let users = users("u", 1_000);
        let counts = count_by_server(&topology, &users, &id("s1"), &config);
        let on_s2 = counts.get(&Some(id("s2"))).copied().unwrap_or(0);
        let on_s3 = counts.get(&Some(id("s3"))).copied().unwrap_or(0);
        assert_eq!(on_s2 + on_s3, 1_000, "{counts:?}");
        assert!((400..=600).contains(&on_s2), "uneven: {counts:?}");

        // s3 dies too: only the users s3 had move, all to s2.
        let before: Vec<Option<ServerId>> = users
            .iter()
            .map(|u| serving(&topology, u, &id("s1"), NOW, &config))
            .collect();
        topology.servers.get_mut(&id("s3")).unwrap().alive = false;
        for (user, was) in users.iter().zip(before) {
            let now = serving(&topology, user, &id("s1"), NOW, &config);
            assert_eq!(now, Some(id("s2")));
            if was == Some(id("s2")) {
                assert_eq!(now, was, "{user} moved without need");
            }
        }
    }

    #[test]
    fn groups_bound_the_backups_and_without_a_live_member_nobody_serves() {
        let mut topology = three();
        topology
            .servers
            .insert(id("s4"), ServerView::alive(0).in_group("b"));
        topology.servers.get_mut(&id("s4")).unwrap().alive = false;
        let config = OwnershipConfig::default();
        // s4's group has no other member: its users are offline, not moved to group a.
        assert_eq!(
            serving(&topology, &UserId::from("dora"), &id("s4"), NOW, &config),
            None
        );
        // Without a group, any live server may take over (unless turned off).
        topology.servers.get_mut(&id("s4")).unwrap().group = None;
        assert!(serving(&topology, &UserId::from("dora"), &id("s4"), NOW, &config).is_some());
        let strict = OwnershipConfig {
            any_server_backs_up: false,
            ..config
        };
        assert_eq!(
            serving(&topology, &UserId::from("dora"), &id("s4"), NOW, &strict),
            None
        );
    }

    #[test]
    fn a_returning_home_takes_its_users_back_after_the_delay_or_on_command() {
        let mut topology = three();
        let config = OwnershipConfig {
            fallback_delay_ms: Some(30_000),
            ..OwnershipConfig::default()
        };
        let user = UserId::from("alice");
        let home = id("s1");
        let view = topology.servers.get_mut(&home).unwrap();
        view.alive_since_ms = NOW - 10_000;
        view.users_away = true;
        let backup = serving(&topology, &user, &home, NOW, &config).unwrap();
        assert_ne!(backup, home, "still on the backup within the delay");
        assert_eq!(
            serving(&topology, &user, &home, NOW + 20_000, &config),
            Some(home.clone())
        );
        // An admin holds them on the backup, or calls them back at once.
        topology.servers.get_mut(&home).unwrap().hold = true;
        assert_eq!(
            serving(&topology, &user, &home, NOW + 20_000, &config),
            Some(backup)
        );
        let view = topology.servers.get_mut(&home).unwrap();
        view.hold = false;
        view.fallback_now = true;
        assert_eq!(serving(&topology, &user, &home, NOW, &config), Some(home));
    }

    #[test]
    fn a_draining_home_hands_its_users_over_and_takes_none() {
        let mut topology = three();
        topology.servers.get_mut(&id("s2")).unwrap().draining = true;
        let config = OwnershipConfig::default();
        for user in users("u", 50) {
            let server = serving(&topology, &user, &id("s2"), NOW, &config);
            assert!(server == Some(id("s1")) || server == Some(id("s3")));
        }
        topology.servers.get_mut(&id("s1")).unwrap().alive = false;
        for user in users("u", 50) {
            assert_eq!(
                serving(&topology, &user, &id("s1"), NOW, &config),
                Some(id("s3")),
                "a draining server is no backup"
            );
        }
    }

    #[test]
    fn a_server_of_an_older_version_serves_its_own_users_and_stands_in_for_no_one() {
        let mut topology = three();
        topology.servers.get_mut(&id("s3")).unwrap().older = true;
        topology.servers.get_mut(&id("s1")).unwrap().alive = false;
        let config = OwnershipConfig::default();
        let users = users("u", 200);
        let by = count_by_server(&topology, &users, &id("s1"), &config);
        assert_eq!(
            by.keys().collect::<Vec<_>>(),
            vec![&Some(id("s2"))],
            "{by:?}"
        );
        assert_eq!(
            serving(&topology, &users[0], &id("s3"), NOW, &config),
            Some(id("s3"))
        );
        let states = node_states(
            &topology,
            &BTreeMap::from([(id("s3"), users.clone())]),
            NOW,
            &config,
        );
        assert!(states[&id("s3")].reason.contains("older version"));
    }

    #[test]
    fn node_states_say_who_serves_whom() {
        let mut topology = three();
        topology.servers.get_mut(&id("s1")).unwrap().alive = false;
        topology
            .servers
            .insert(id("s4"), ServerView::alive(0).in_group("b"));
        topology.servers.get_mut(&id("s4")).unwrap().alive = false;
        topology.servers.get_mut(&id("s4")).unwrap().alive_since_ms = 1;
        let homes = BTreeMap::from([
            (id("s1"), users("a", 20)),
            (id("s2"), users("b", 5)),
            (id("s4"), users("d", 3)),
        ]);
        let config = OwnershipConfig::default();
        let states = node_states(&topology, &homes, NOW, &config);
        assert_eq!(states[&id("s1")].state, NodeState::FailedOver);
        assert!(states[&id("s1")].reason.contains("s2"));
        assert_eq!(states[&id("s2")].state, NodeState::RunningInBackupMode);
        assert_eq!(states[&id("s3")].state, NodeState::RunningInBackupMode);
        assert_eq!(states[&id("s4")].state, NodeState::Failed);
        assert!(states[&id("s4")].reason.contains("3 users"));

        // s1 comes back: taking back during the delay, then normal again everywhere.
        let view = topology.servers.get_mut(&id("s1")).unwrap();
        view.alive = true;
        view.alive_since_ms = NOW;
        view.users_away = true;
        let states = node_states(&topology, &homes, NOW + 1_000, &config);
        assert_eq!(states[&id("s1")].state, NodeState::TakingBack);
        let states = node_states(&topology, &homes, NOW + 60_000, &config);
        assert_eq!(states[&id("s1")].state, NodeState::Normal);
        assert_eq!(states[&id("s2")].state, NodeState::Normal);
    }
}
