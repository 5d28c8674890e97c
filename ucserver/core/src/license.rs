//! License pool accounting: named kinds with capacities, leases keyed by what they are for
//! (a user for `uc-seat`, a call for `softphone`) and held by a server.
//!
//! This is the single-node implementation and the specification of the Redis one
//! (`cluster::redis`, a Lua script with the same rules): taking a lease one already holds
//! succeeds without counting twice; a kind without a capacity is not limited.

use shared::ServerId;
use std::collections::{BTreeMap, HashMap};

/// The license kind that gates client login, one lease per signed-in user.
pub const SEAT: &str = "uc-seat";
/// The license kind taken by each softphone call.
pub const SOFTPHONE: &str = "softphone";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    Granted,
    AlreadyHeld,
    Exhausted { capacity: u32 },
}

#[derive(Debug, Default)]
pub struct LeaseTable {
    /// kind -> lease key -> holding server
    leases: HashMap<String, BTreeMap<String, ServerId>>,
}

impl LeaseTable {
    pub fn acquire(
        &mut self,
        kind: &str,
        key: &str,
        holder: &ServerId,
        capacity: Option<u32>,
    ) -> LeaseOutcome {
        let held = self.leases.entry(kind.to_string()).or_default();
        if let Some(current) = held.get_mut(key) {
            *current = holder.clone();
            return LeaseOutcome::AlreadyHeld;
        }
        if let Some(capacity) = capacity
            && held.len() as u64 >= capacity as u64
        {
            return LeaseOutcome::Exhausted { capacity };
        }
        held.insert(key.to_string(), holder.clone());
        LeaseOutcome::Granted
    }

    /// Returns whether a lease was released.
    pub fn release(&mut self, kind: &str, key: &str) -> bool {
        self.leases
            .get_mut(kind)
            .is_some_and(|held| held.remove(key).is_some())
    }

    /// Releases every lease a server holds; returns how many.
    pub fn release_holder(&mut self, holder: &ServerId) -> u32 {
        let mut released = 0;
        for held in self.leases.values_mut() {
            let before = held.len();
            held.retain(|_, server| server != holder);
            released += (before - held.len()) as u32;
        }
        released
    }

    /// The keys of `kind` that `holder` holds.
    pub fn held_by(&self, kind: &str, holder: &ServerId) -> Vec<String> {
        self.leases.get(kind).map_or_else(Vec::new, |held| {
            held.iter()
                .filter(|(_, server)| *server == holder)
                .map(|(key, _)| key.clone())
                .collect()
        })
    }

    pub fn in_use(&self, kind: &str) -> u32 {
        self.leases.get(kind).map_or(0, |held| held.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_respect_capacity_and_return() {
        let s1 = ServerId::from("s1");
        let s2 = ServerId::from("s2");
        let mut table = LeaseTable::default();
        assert_eq!(
            table.acquire(SEAT, "alice", &s1, Some(2)),
            LeaseOutcome::Granted
        );
        assert_eq!(
            table.acquire(SEAT, "alice", &s1, Some(2)),
            LeaseOutcome::AlreadyHeld
        );
        assert_eq!(
            table.acquire(SEAT, "bob", &s2, Some(2)),
            LeaseOutcome::Granted
        );
        assert_eq!(
            table.acquire(SEAT, "carol", &s2, Some(2)),
            LeaseOutcome::Exhausted { capacity: 2 }
        );
        assert_eq!(table.in_use(SEAT), 2);
        assert!(table.release(SEAT, "alice"));
        assert!(!table.release(SEAT, "alice"));
        assert_eq!(
            table.acquire(SEAT, "carol", &s2, Some(2)),
            LeaseOutcome::Granted
        );
        assert_eq!(
            table.acquire(SOFTPHONE, "call-1", &s2, None),
            LeaseOutcome::Granted
        );
        assert_eq!(table.release_holder(&s2), 3);
        assert_eq!(table.in_use(SEAT), 0);
        assert_eq!(table.in_use(SOFTPHONE), 0);
        // capacity lowered below use: nothing new until enough return
        table.acquire(SEAT, "a", &s1, None);
        table.acquire(SEAT, "b", &s1, None);
        assert_eq!(
            table.acquire(SEAT, "c", &s1, Some(1)),
            LeaseOutcome::Exhausted { capacity: 1 }
        );
    }
}
