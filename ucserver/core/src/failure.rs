//! Failure detection from heartbeats: which servers are dead at `now`.

use shared::{ServerId, TimestampMs};

/// How long a heartbeat may be missing before its server counts as dead. With a 1 s beat,
/// 4 s leaves room for three lost beats, and a dead server's users are served again by their
/// backups within 5 s.
pub const DEAD_AFTER_MS: i64 = 4_000;

/// Servers whose last heartbeat is older than `dead_after_ms`, except `me`.
pub fn dead_servers(
    seen: &[(ServerId, TimestampMs)],
    me: &ServerId,
    now: TimestampMs,
    dead_after_ms: i64,
) -> Vec<ServerId> {
    seen.iter()
        .filter(|(id, last)| id != me && now - last > dead_after_ms)
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_silent_peers_are_dead() {
        let now = 100_000;
        let seen = vec![
            (ServerId::from("me"), 0),
            (ServerId::from("fresh"), now - DEAD_AFTER_MS / 2),
            (ServerId::from("edge"), now - DEAD_AFTER_MS),
            (ServerId::from("gone"), now - 2 * DEAD_AFTER_MS),
        ];
        let dead = dead_servers(&seen, &ServerId::from("me"), now, DEAD_AFTER_MS);
        assert_eq!(dead, vec![ServerId::from("gone")]);
    }
}
