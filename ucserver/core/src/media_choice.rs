//! MediaServer choice: which MediaServer carries a new call, and when the calls of one count
//! as lost.
//!
//! A MediaServer is healthy when it is administratively known (config or `ucadmin media
//! add`), marked alive, heard from within the choice's freshness window, not suspect, not
//! already tried by the call being placed, and has room for one more call. Among the healthy
//! ones the lowest load (legs / capacity) wins. Load reports arrive only with heartbeats, so a
//! burst of new calls between two heartbeats would all see the same numbers and pile onto one
//! server; the chooser therefore counts the calls it placed on each server since that server's
//! last heartbeat and adds their legs to the reported ones. Servers with the same estimated
//! load take turns (round-robin by id).
//!
//! Two windows, because the two mistakes cost differently. Passing over a live server for a
//! new call costs nothing while another is healthy, so the choice drops a server early
//! (`fresh_ms`, 2 s: two missed beats). Ending the running calls of a live server cuts people
//! off, so that waits longer (`lost_after_ms`, 5 s). And a server this UCServer could not
//! reach at all (connection refused, reset, timed out) is *suspect*: it gets no new call until
//! it beats after the failure, which takes a dead server out of the choice at the first failed
//! request instead of after the window. A live server that only dropped one request beats
//! within a second and is forgiven. (Heartbeat times and `now` are compared as the freshness
//! check compares them, so the same clock agreement is assumed.)
//!
//! This core makes one decision per call and has no timer, so it is a plain function on a
//! small state (`choose`) rather than the `handle_input`/`poll_output` pair: there is nothing
//! to drain and nothing to re-arm. The shell reads the candidates (from the cluster's
//! MediaServer heartbeats joined with the SQL list of known servers) and passes `now`.

use shared::{MediaServerId, TimestampMs};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Settings of the choice, fixed per server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaChoiceConfig {
    /// A heartbeat older than this keeps the MediaServer out of the choice of new calls.
    /// MediaServers beat every second; the default of 2 s tolerates one lost beat and takes a
    /// dead server out of the choice within 2 s of its death (`UC_MEDIA_FRESH_MS`).
    pub fresh_ms: i64,
    /// A heartbeat older than this means the MediaServer is gone with its calls: the calls
    /// placed on it end (`media_failed`). Longer than `fresh_ms`, since ending a running call
    /// by mistake cuts people off. Default 5 s (four lost beats).
    pub lost_after_ms: i64,
    /// Legs a new call is expected to add (a 1:1 call has two), used for the room check and
    /// for the calls placed since the last heartbeat.
    pub legs_per_call: u32,
}

impl MediaChoiceConfig {
    pub const DEFAULT: Self = Self {
        fresh_ms: 2_000,
        lost_after_ms: 5_000,
        legs_per_call: 2,
    };
}

impl Default for MediaChoiceConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the shell knows of one MediaServer when a call is placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaCandidate {
    pub id: MediaServerId,
    /// Made known by an admin (config or `ucadmin media add`); an unknown server that
    /// happens to beat into Redis never gets calls.
    pub known: bool,
    /// The failure detector's verdict (false after its heartbeat lapsed or the server was
    /// removed); a server is only healthy when this and `last_seen_ms` agree.
    pub alive: bool,
    /// Time of its last heartbeat (`MediaServerStatus::updated_ms`).
    pub last_seen_ms: TimestampMs,
    /// Legs open at the last heartbeat.
    pub legs: u32,
    /// Most legs it accepts.
    pub capacity: u32,
    /// Taken out of service by an admin (`ucadmin media drain`): no new call; its running
    /// calls go on.
    pub draining: bool,
}

/// Why one MediaServer was passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unhealthy {
    /// Not in the admin's list of MediaServers.
    NotKnown,
    /// Taken out of service by an admin.
    Draining,
    /// The failure detector has it as dead.
    NotAlive,
    /// Already tried by the call being placed (its leg set-up failed there).
    Tried,
    /// Its last heartbeat is older than the freshness window.
    Stale { age_ms: i64 },
    /// A control request to it failed at the connection level, and it has not beaten since
    /// the heartbeat it was chosen on.
    Suspect,
    /// No room for another call (reported legs plus the ones placed since).
    Full { legs: u32, capacity: u32 },
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotKnown => f.write_str("not known to the cluster"),
            Self::Draining => f.write_str("taken out of service"),
            Self::NotAlive => f.write_str("not alive"),
            Self::Tried => f.write_str("already tried for this call"),
            Self::Stale { age_ms } => write!(f, "last heard from {age_ms} ms ago"),
            Self::Suspect => f.write_str("unreachable since its last heartbeat"),
            Self::Full { legs, capacity } => write!(f, "full ({legs} of {capacity} legs)"),
        }
    }
}

/// No MediaServer can take a new call; the call fails with `server_unavailable`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no media server available{}", describe(.passed_over))]
pub struct NoMediaServer {
    /// Every candidate and why it was passed over (empty when there were no candidates).
    pub passed_over: Vec<(MediaServerId, Unhealthy)>,
}

fn describe(passed_over: &[(MediaServerId, Unhealthy)]) -> String {
    if passed_over.is_empty() {
        return " (none is configured)".into();
    }
    let parts: Vec<String> = passed_over
        .iter()
        .map(|(id, why)| format!("{id} {why}"))
        .collect();
    format!(": {}", parts.join(", "))
}

/// Calls placed on one server since its heartbeat of `heartbeat_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placed {
    heartbeat_ms: TimestampMs,
    calls: u32,
}

/// The choice with its memory: calls placed since each server's last heartbeat, the servers
/// found unreachable, and the last server chosen (for round-robin among equals). One per
/// UCServer process.
#[derive(Clone, Debug, Default)]
pub struct MediaChooser {
    config: MediaChoiceConfig,
    placed: BTreeMap<MediaServerId, Placed>,
    /// Servers a control request could not reach, with the time it failed: suspect until a
    /// later heartbeat shows them alive. At most one entry per known server.
    suspect: BTreeMap<MediaServerId, TimestampMs>,
    last_chosen: Option<MediaServerId>,
}

impl MediaChooser {
    pub fn new(config: MediaChoiceConfig) -> Self {
        Self {
            config,
            placed: BTreeMap::new(),
            suspect: BTreeMap::new(),
            last_chosen: None,
        }
    }

    pub fn config(&self) -> MediaChoiceConfig {
        self.config
    }

    /// Whether the calls on a server last heard from at `last_seen_ms` are lost at `now`
    /// (its heartbeat is older than `lost_after_ms`), and if so how old it is.
    pub fn calls_lost(&self, now: TimestampMs, last_seen_ms: TimestampMs) -> Option<i64> {
        let age_ms = now - last_seen_ms;
        (age_ms > self.config.lost_after_ms).then_some(age_ms)
    }

    /// A control request to `id` failed at the connection level (refused, reset, timed out)
    /// at `now`: it gets no new call until it beats after `now`. A server that merely refused
    /// a request (it answered) is not suspect.
    pub fn mark_suspect(&mut self, id: &MediaServerId, now: TimestampMs) {
        let entry = self.suspect.entry(id.clone()).or_insert(now);
        *entry = (*entry).max(now);
    }

    /// Legs on `candidate` as far as this process knows: the reported ones plus those of the
    /// calls placed there since that report.
    fn estimated_legs(&self, candidate: &MediaCandidate) -> u32 {
        let placed = match self.placed.get(&candidate.id) {
            Some(p) if p.heartbeat_ms == candidate.last_seen_ms => p.calls,
            _ => 0,
        };
        candidate
            .legs
            .saturating_add(placed.saturating_mul(self.config.legs_per_call))
    }

    /// Whether `candidate` may take a new call at `now`, and why not.
    pub fn health(&self, now: TimestampMs, candidate: &MediaCandidate) -> Result<(), Unhealthy> {
        if !candidate.known {
            return Err(Unhealthy::NotKnown);
        }
        if candidate.draining {
            return Err(Unhealthy::Draining);
        }
        if !candidate.alive {
            return Err(Unhealthy::NotAlive);
        }
        let age_ms = now - candidate.last_seen_ms;
        if age_ms > self.config.fresh_ms {
            return Err(Unhealthy::Stale { age_ms });
        }
        if self
            .suspect
            .get(&candidate.id)
            .is_some_and(|since| candidate.last_seen_ms <= *since)
        {
            return Err(Unhealthy::Suspect);
        }
        let legs = self.estimated_legs(candidate);
        if legs.saturating_add(self.config.legs_per_call) > candidate.capacity {
            return Err(Unhealthy::Full {
                legs,
                capacity: candidate.capacity,
            });
        }
        Ok(())
    }

    /// Picks the MediaServer for a new call and counts the call against it. `tried` are the
    /// servers this call failed on already (empty for a new call); they are passed over.
    pub fn choose(
        &mut self,
        now: TimestampMs,
        candidates: &[MediaCandidate],
        tried: &[MediaServerId],
    ) -> Result<MediaServerId, NoMediaServer> {
        // A suspect that beat again since it was marked is forgiven.
        self.suspect.retain(|id, since| {
            candidates
                .iter()
                .find(|c| c.id == *id)
                .is_some_and(|c| c.last_seen_ms <= *since)
        });
        let mut passed_over = Vec::new();
        // (id, estimated legs, capacity), sorted by id for a stable round-robin order.
        let mut healthy: Vec<(&MediaServerId, u32, u32)> = Vec::new();
        for candidate in candidates {
            let health = if tried.contains(&candidate.id) {
                Err(Unhealthy::Tried)
            } else {
                self.health(now, candidate)
            };
            match health {
                Ok(()) => healthy.push((
                    &candidate.id,
                    self.estimated_legs(candidate),
                    candidate.capacity,
                )),
                Err(why) => passed_over.push((candidate.id.clone(), why)),
            }
        }
        if healthy.is_empty() {
            return Err(NoMediaServer { passed_over });
        }
        healthy.sort_by(|a, b| a.0.cmp(b.0));
        // Lowest legs/capacity, compared without floats: a/ca < b/cb  <=>  a*cb < b*ca.
        let load_cmp = |a: &(&MediaServerId, u32, u32), b: &(&MediaServerId, u32, u32)| {
            (u64::from(a.1) * u64::from(b.2)).cmp(&(u64::from(b.1) * u64::from(a.2)))
        };
        let best = healthy
            .iter()
            .min_by(|a, b| load_cmp(a, b))
            .copied()
            .expect("healthy is not empty");
        let equals: Vec<&MediaServerId> = healthy
            .iter()
            .filter(|c| load_cmp(c, &best) == Ordering::Equal)
            .map(|c| c.0)
            .collect();
        // Round-robin: the first equal after the last chosen id, wrapping around.
        let chosen = match &self.last_chosen {
            Some(last) => equals
                .iter()
                .find(|id| **id > last)
                .copied()
                .unwrap_or(equals[0]),
            None => equals[0],
        }
        .clone();

        let heartbeat_ms = candidates
            .iter()
            .find(|c| c.id == chosen)
            .map(|c| c.last_seen_ms)
            .expect("chosen among candidates");
        let entry = self.placed.entry(chosen.clone()).or_insert(Placed {
            heartbeat_ms,
            calls: 0,
        });
        if entry.heartbeat_ms != heartbeat_ms {
            *entry = Placed {
                heartbeat_ms,
                calls: 0,
            };
        }
        entry.calls += 1;
        self.last_chosen = Some(chosen.clone());
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, last_seen_ms: TimestampMs, legs: u32, capacity: u32) -> MediaCandidate {
        MediaCandidate {
            id: MediaServerId::from(id),
            known: true,
            alive: true,
            last_seen_ms,
            legs,
            capacity,
            draining: false,
        }
    }

    /// Places `calls` calls at `now` and renders how many each server got, e.g. `m1=10 m2=10`.
    fn place(
        chooser: &mut MediaChooser,
        now: TimestampMs,
        candidates: &[MediaCandidate],
        calls: usize,
    ) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..calls {
            let key = match chooser.choose(now, candidates, &[]) {
                Ok(id) => id.0,
                Err(_) => "none".into(),
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn twenty_calls_spread_over_two_equal_servers() {
        let mut chooser = MediaChooser::default();
        let servers = [server("m1", 1_000, 0, 500), server("m2", 1_000, 0, 500)];
        // Between two heartbeats: the counted calls keep them level, so they alternate.
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(chooser.choose(1_500, &servers, &[]).unwrap().0);
        }
        assert_eq!(order, ["m1", "m2", "m1", "m2"]);
        assert_eq!(place(&mut chooser, 1_600, &servers, 16), "m1=8 m2=8");
    }

    #[test]
    fn equal_loads_after_heartbeats_still_take_turns() {
        // Every call comes right after a heartbeat that reports the same load on both.
        let mut chooser = MediaChooser::default();
        let mut counts = BTreeMap::<String, u32>::new();
        for call in 0..20 {
            let beat = 1_000 * (call + 1);
            let servers = [server("m1", beat, 40, 500), server("m2", beat, 40, 500)];
            let id = chooser.choose(beat + 10, &servers, &[]).unwrap();
            *counts.entry(id.0).or_default() += 1;
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10]);
    }

    #[test]
    fn lowest_load_wins_and_capacity_scales_it() {
        let mut chooser = MediaChooser::default();
        // m1: 100/500 = 0.2, m2: 40/100 = 0.4 → m1, until m1's counted calls catch up.
        let servers = [server("m1", 1_000, 100, 500), server("m2", 1_000, 40, 100)];
        assert_eq!(place(&mut chooser, 1_000, &servers, 50), "m1=50");
        // m1 now counts 100 + 100 = 200/500 = 0.4: level with m2, so they take turns.
        assert_eq!(place(&mut chooser, 1_000, &servers, 2), "m1=1 m2=1");
        // A new heartbeat with a lower count resets what m1 counted since the last one.
        let servers = [server("m1", 2_000, 0, 500), server("m2", 1_000, 42, 100)];
        assert_eq!(place(&mut chooser, 2_000, &servers, 3), "m1=3");
    }

    #[test]
    fn a_dead_one_gets_nothing_and_gets_calls_again_when_it_returns() {
        let mut chooser = MediaChooser::default();
        let mut m2 = server("m2", 0, 0, 500);
        m2.alive = false;
        let servers = [server("m1", 10_000, 0, 500), m2.clone()];
        assert_eq!(place(&mut chooser, 10_000, &servers, 10), "m1=10");
        // Alive but silent for longer than the window: still nothing.
        m2.alive = true;
        m2.last_seen_ms = 4_000;
        let servers = [server("m1", 10_000, 0, 500), m2.clone()];
        assert_eq!(
            chooser.health(10_000, &servers[1]),
            Err(Unhealthy::Stale { age_ms: 6_000 })
        );
        assert_eq!(place(&mut chooser, 10_000, &servers, 4), "m1=4");
        // Back with a fresh heartbeat and no load: it takes the new calls until level.
        let servers = [server("m1", 11_000, 28, 500), server("m2", 11_000, 0, 500)];
        assert_eq!(place(&mut chooser, 11_000, &servers, 14), "m2=14");
        assert_eq!(place(&mut chooser, 11_000, &servers, 4), "m1=2 m2=2");
    }

    #[test]
    fn full_one_is_skipped() {
        let mut chooser = MediaChooser::default();
        // m1 has room for exactly one more call (2 legs), m2 is far busier but not full.
        let servers = [server("m1", 1_000, 8, 10), server("m2", 1_000, 900, 1_000)];
        assert_eq!(chooser.choose(1_000, &servers, &[]).unwrap().0, "m1");
        assert_eq!(
            chooser.health(1_000, &servers[0]),
            Err(Unhealthy::Full {
                legs: 10,
                capacity: 10
            })
        );
        assert_eq!(place(&mut chooser, 1_000, &servers, 3), "m2=3");
    }

    #[test]
    fn none_healthy_is_a_typed_outcome() {
        let mut chooser = MediaChooser::default();
        assert_eq!(
            chooser.choose(0, &[], &[]).unwrap_err().to_string(),
            "no media server available (none is configured)"
        );
        let mut unknown = server("rogue", 1_000, 0, 500);
        unknown.known = false;
        let mut dead = server("m1", 1_000, 0, 500);
        dead.alive = false;
        let candidates = [unknown, dead, server("m2", 1_000, 500, 500)];
        let error = chooser.choose(1_000, &candidates, &[]).unwrap_err();
        assert_eq!(
            error.passed_over,
            vec![
                (MediaServerId::from("rogue"), Unhealthy::NotKnown),
                (MediaServerId::from("m1"), Unhealthy::NotAlive),
                (
                    MediaServerId::from("m2"),
                    Unhealthy::Full {
                        legs: 500,
                        capacity: 500
                    }
                ),
            ]
        );
        assert_eq!(
            error.to_string(),
            "no media server available: rogue not known to the cluster, m1 not alive, \
             m2 full (500 of 500 legs)"
        );
    }

    #[test]
    fn the_choice_drops_a_silent_server_before_its_calls_are_ended() {
        // m1's last heartbeat was at 10 000; m2 beats on. The choice lets m1 go after 2 s of
        // silence; its running calls count as lost only after 5 s.
        for (now, placed, lost) in [
            (10_900, "m1=2 m2=2", None),
            (12_000, "m1=2 m2=2", None),
            (12_001, "m2=4", None),
            (15_000, "m2=4", None),
            (15_001, "m2=4", Some(5_001)),
        ] {
            let mut chooser = MediaChooser::default();
            assert_eq!(
                place(&mut chooser, now, &servers_at(now), 4),
                placed,
                "at {now}"
            );
            assert_eq!(chooser.calls_lost(now, 10_000), lost, "at {now}");
        }
        assert_eq!(
            MediaChooser::default().health(12_001, &servers_at(12_001)[0]),
            Err(Unhealthy::Stale { age_ms: 2_001 })
        );

        // Another setting of the choice's window moves only the choice.
        let mut chooser = MediaChooser::new(MediaChoiceConfig {
            fresh_ms: 1_500,
            ..MediaChoiceConfig::default()
        });
        assert_eq!(place(&mut chooser, 11_501, &servers_at(11_501), 2), "m2=2");
        assert_eq!(chooser.calls_lost(11_501, 10_000), None);
    }

    /// m1 silent since 10 000, m2 fresh at `now`.
    fn servers_at(now: TimestampMs) -> [MediaCandidate; 2] {
        [server("m1", 10_000, 0, 500), server("m2", now, 0, 500)]
    }

    #[test]
    fn an_unreachable_server_is_skipped_until_it_beats_again() {
        let mut chooser = MediaChooser::default();
        let m1 = MediaServerId::from("m1");
        let servers = [server("m1", 1_000, 0, 500), server("m2", 1_000, 0, 500)];
        assert_eq!(place(&mut chooser, 1_100, &servers, 2), "m1=1 m2=1");
        // A request to m1 failed at 1 200: no call goes there, though its heartbeat of 1 000
        // is still fresh.
        chooser.mark_suspect(&m1, 1_200);
        assert_eq!(chooser.health(1_200, &servers[0]), Err(Unhealthy::Suspect));
        assert_eq!(place(&mut chooser, 1_200, &servers, 3), "m2=3");
        // A heartbeat from before the failure, read late, changes nothing.
        let servers = [server("m1", 1_150, 0, 500), server("m2", 1_900, 0, 500)];
        assert_eq!(place(&mut chooser, 1_950, &servers, 2), "m2=2");
        // A later one forgives it; a second failure marks it again.
        let servers = [server("m1", 2_000, 0, 500), server("m2", 2_000, 0, 500)];
        assert_eq!(chooser.health(2_050, &servers[0]), Ok(()));
        assert_eq!(place(&mut chooser, 2_050, &servers, 2), "m1=1 m2=1");
        chooser.mark_suspect(&m1, 2_100);
        chooser.mark_suspect(&m1, 2_060);
        assert_eq!(chooser.health(2_100, &servers[0]), Err(Unhealthy::Suspect));
        let servers = [server("m1", 2_080, 0, 500), server("m2", 2_080, 0, 500)];
        assert_eq!(chooser.health(2_100, &servers[0]), Err(Unhealthy::Suspect));
    }

    #[test]
    fn servers_a_call_tried_are_passed_over_for_it_only() {
        let mut chooser = MediaChooser::default();
        let servers = [server("m1", 1_000, 0, 500), server("m2", 1_000, 0, 500)];
        let m1 = MediaServerId::from("m1");
        for _ in 0..3 {
            assert_eq!(
                chooser.choose(1_000, &servers, std::slice::from_ref(&m1)),
                Ok(MediaServerId::from("m2"))
            );
        }
        let tried = [m1, MediaServerId::from("m2")];
        assert_eq!(
            chooser
                .choose(1_000, &servers, &tried)
                .unwrap_err()
                .to_string(),
            "no media server available: m1 already tried for this call, \
             m2 already tried for this call"
        );
        // Other calls still use m1 (which catches up with the three counted on m2).
        assert_eq!(place(&mut chooser, 1_000, &servers, 2), "m1=2");
    }

    #[test]
    fn a_draining_server_gets_no_new_call() {
        let mut chooser = MediaChooser::new(MediaChoiceConfig::default());
        let mut m1 = server("m1", 1_000, 0, 100);
        m1.draining = true;
        let m2 = server("m2", 1_000, 90, 100);
        for _ in 0..3 {
            assert_eq!(
                chooser
                    .choose(1_500, &[m1.clone(), m2.clone()], &[])
                    .unwrap(),
                MediaServerId::from("m2"),
                "the busier server rather than the drained one"
            );
        }
        let error = chooser.choose(1_500, &[m1], &[]).unwrap_err();
        assert_eq!(
            error.passed_over,
            vec![(MediaServerId::from("m1"), Unhealthy::Draining)]
        );
    }
}
