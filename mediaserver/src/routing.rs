//! Who hears whom in a call: the SFU's routing table, as plain data with no IO and no str0m.
//!
//! A leg's SDP offer fixes, once, how many m-lines of each kind the server may send on (its
//! "receive slots": every audio/video m-line the client can receive on). There is no
//! renegotiation: 1:1 calls use the one sendrecv m-line each client has anyway, and a client
//! that wants to hear a conference of N people offers N-2 extra recvonly m-lines. Each other
//! sender of the call gets one slot per kind in each receiver, first come first served, in join
//! order; when a leg leaves, its slots are given to senders that had none (a late joiner in a
//! full conference). The engine turns slots into str0m `Mid`s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Engine-wide key of a leg; unique for the life of the process.
pub type LegKey = u64;

/// The two kinds of media the SFU forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKind {
    Audio,
    Video,
}

impl TrackKind {
    pub const ALL: [TrackKind; 2] = [TrackKind::Audio, TrackKind::Video];

    fn index(self) -> usize {
        match self {
            TrackKind::Audio => 0,
            TrackKind::Video => 1,
        }
    }
}

/// What a leg's offer allows, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegMediaShape {
    /// The client sends this kind (it has a sendonly/sendrecv m-line of it).
    pub sends: [bool; 2],
    /// How many m-lines of this kind the client receives on.
    pub receive_slots: [usize; 2],
}

impl LegMediaShape {
    pub fn sends(&self, kind: TrackKind) -> bool {
        self.sends[kind.index()]
    }
    pub fn receive_slots(&self, kind: TrackKind) -> usize {
        self.receive_slots[kind.index()]
    }
}

#[derive(Clone, Debug)]
struct Member {
    leg: LegKey,
    shape: LegMediaShape,
    /// `slots[kind][i]` = the sender whose media goes out on this leg's i-th receive m-line.
    slots: [Vec<Option<LegKey>>; 2],
}

/// The routing of one call. Invariant: a sender occupies at most one slot per kind in each
/// receiver, and never a slot of its own leg.
#[derive(Clone, Debug, Default)]
pub struct CallRouting {
    /// Members in join order (join order decides who gets scarce slots).
    members: Vec<Member>,
}

impl CallRouting {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn contains(&self, leg: LegKey) -> bool {
        self.members.iter().any(|m| m.leg == leg)
    }

    /// Adds a leg and gives it, and everybody else, the slots that are now possible.
    pub fn join(&mut self, leg: LegKey, shape: LegMediaShape) {
        if self.contains(leg) {
            return;
        }
        self.members.push(Member {
            leg,
            shape,
            slots: [
                vec![None; shape.receive_slots[0]],
                vec![None; shape.receive_slots[1]],
            ],
        });
        self.assign_free_slots();
    }

    /// Removes a leg, frees the slots it had in the others, and refills them.
    /// Returns false when the leg was not a member.
    pub fn leave(&mut self, leg: LegKey) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.leg != leg);
        if self.members.len() == before {
            return false;
        }
        for member in &mut self.members {
            for kind_slots in &mut member.slots {
                for slot in kind_slots.iter_mut() {
                    if *slot == Some(leg) {
                        *slot = None;
                    }
                }
            }
        }
        self.assign_free_slots();
        true
    }

    /// Where media of `kind` from `source` goes: (receiving leg, slot index), in join order.
    pub fn destinations(&self, source: LegKey, kind: TrackKind) -> Vec<(LegKey, usize)> {
        let mut out = Vec::new();
        for member in &self.members {
            if let Some(index) = member.slots[kind.index()]
                .iter()
                .position(|s| *s == Some(source))
            {
                out.push((member.leg, index));
            }
        }
        out
    }

    /// Sender/receiver pairs that could not be given a slot (the receiver offered too few
    /// m-lines): these receivers do not hear that sender.
    pub fn unserved(&self) -> usize {
        let mut count = 0;
        for receiver in &self.members {
            for kind in TrackKind::ALL {
                for sender in &self.members {
                    if sender.leg != receiver.leg
                        && sender.shape.sends(kind)
                        && !receiver.slots[kind.index()].contains(&Some(sender.leg))
                    {
                        count += 1;
                    }
                }
            }
        }
        count
    }

    fn assign_free_slots(&mut self) {
        let senders: Vec<(LegKey, LegMediaShape)> =
            self.members.iter().map(|m| (m.leg, m.shape)).collect();
        for receiver in &mut self.members {
            for kind in TrackKind::ALL {
                let slots = &mut receiver.slots[kind.index()];
                for (sender, shape) in &senders {
                    if *sender == receiver.leg
                        || !shape.sends(kind)
                        || slots.contains(&Some(*sender))
                    {
                        continue;
                    }
                    match slots.iter_mut().find(|s| s.is_none()) {
                        Some(free) => *free = Some(*sender),
                        None => break,
                    }
                }
            }
        }
    }

    /// A readable picture of the table, one line per receiver, for tests and debug logs:
    /// `1: audio[2,-] video[]` means leg 1 hears leg 2 on its first audio slot and has a
    /// second, free audio slot.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let _ = write!(out, "{}:", member.leg);
            for (name, kind) in [("audio", TrackKind::Audio), ("video", TrackKind::Video)] {
                let slots: Vec<String> = member.slots[kind.index()]
                    .iter()
                    .map(|s| s.map(|l| l.to_string()).unwrap_or_else(|| "-".into()))
                    .collect();
                let _ = write!(out, " {name}[{}]", slots.join(","));
            }
            out.push('\n');
        }
        out
    }
}

/// The routing tables of all calls, keyed by call id.
#[derive(Debug, Default)]
pub struct RoutingTable {
    calls: BTreeMap<String, CallRouting>,
}

impl RoutingTable {
    pub fn call(&self, call: &str) -> Option<&CallRouting> {
        self.calls.get(call)
    }

    pub fn join(&mut self, call: &str, leg: LegKey, shape: LegMediaShape) {
        self.calls
            .entry(call.to_string())
            .or_default()
            .join(leg, shape);
    }

    /// Removes a leg; drops the call when it was the last one.
    pub fn leave(&mut self, call: &str, leg: LegKey) {
        if let Some(routing) = self.calls.get_mut(call) {
            routing.leave(leg);
            if routing.is_empty() {
                self.calls.remove(call);
            }
        }
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn shape(audio_slots: usize, video_slots: usize, sends_video: bool) -> LegMediaShape {
        LegMediaShape {
            sends: [true, sends_video],
            receive_slots: [audio_slots, video_slots],
        }
    }

    /// Runs a script of `join LEG AUDIO_SLOTS VIDEO_SLOTS [video]` / `leave LEG` lines and
    /// returns the rendered table after the last line.
    fn check(script: &str, expected: &str) {
        let mut routing = CallRouting::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["join", leg, a, v, rest @ ..] => routing.join(
                    leg.parse().unwrap(),
                    shape(
                        a.parse().unwrap(),
                        v.parse().unwrap(),
                        rest.contains(&"video"),
                    ),
                ),
                ["leave", leg] => {
                    routing.leave(leg.parse().unwrap());
                }
                other => panic!("bad script line {other:?}"),
            }
        }
        assert_eq!(routing.render(), trimmed_lines(expected));
    }

    /// An expected rendering written indented in a test: each line trimmed, blank lines
    /// dropped, every line ended by a newline.
    pub(crate) fn trimmed_lines(text: &str) -> String {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn one_to_one_uses_the_single_sendrecv_line() {
        check(
            "join 1 1 0
             join 2 1 0",
            "1: audio[2] video[]
             2: audio[1] video[]",
        );
    }

    #[test]
    fn conference_fills_extra_slots_and_a_latecomer_waits_for_a_free_one() {
        check(
            "join 1 2 0
             join 2 2 0
             join 3 2 0
             join 4 1 0",
            "1: audio[2,3] video[]
             2: audio[1,3] video[]
             3: audio[1,2] video[]
             4: audio[1] video[]",
        );
        check(
            "join 1 2 0
             join 2 2 0
             join 3 2 0
             join 4 1 0
             leave 2",
            "1: audio[4,3] video[]
             3: audio[1,4] video[]
             4: audio[1] video[]",
        );
    }

    #[test]
    fn video_is_routed_only_from_legs_that_send_it() {
        check(
            "join 1 1 1 video
             join 2 1 1
             join 3 2 2 video",
            "1: audio[2] video[3]
             2: audio[1] video[1]
             3: audio[1,2] video[1,-]",
        );
    }

    #[test]
    fn destinations_and_unserved_follow_the_table() {
        let mut routing = CallRouting::new();
        routing.join(1, shape(1, 0, false));
        routing.join(2, shape(1, 0, false));
        routing.join(3, shape(1, 0, false));
        assert_eq!(
            routing.destinations(1, TrackKind::Audio),
            vec![(2, 0), (3, 0)]
        );
        assert_eq!(routing.destinations(3, TrackKind::Audio), vec![]);
        assert_eq!(routing.destinations(1, TrackKind::Video), vec![]);
        // 1 cannot hear 3, 2 cannot hear 3, 3 cannot hear 2.
        assert_eq!(routing.unserved(), 3);
        assert!(routing.leave(1));
        assert!(!routing.leave(1));
        assert_eq!(routing.destinations(3, TrackKind::Audio), vec![(2, 0)]);
        assert_eq!(routing.unserved(), 0);
    }

    /// Architecture invariant: the routing core decides without IO, runtime or WebRTC types.
    #[test]
    fn routing_core_imports_no_io_crates() {
        let source = include_str!("routing.rs");
        for line in source
            .lines()
            .filter(|l| l.trim_start().starts_with("use "))
        {
            for forbidden in [
                "tokio",
                "str0m",
                "axum",
                "fred",
                "std::net",
                "std::time::Instant",
            ] {
                assert!(
                    !line.contains(forbidden),
                    "routing.rs must not import {forbidden}: {line}"
                );
            }
        }
    }

    #[test]
    fn table_drops_empty_calls() {
        let mut table = RoutingTable::default();
        table.join("c1", 1, shape(1, 0, false));
        table.join("c1", 2, shape(1, 0, false));
        table.join("c2", 3, shape(1, 0, false));
        assert_eq!(table.call_count(), 2);
        table.leave("c2", 3);
        assert_eq!(table.call_count(), 1);
        table.leave("c1", 1);
        table.leave("c1", 2);
        assert_eq!(table.call_count(), 0);
    }
}
