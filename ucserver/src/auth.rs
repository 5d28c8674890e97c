//! Passwords, session tokens and login throttling.
//!
//! Tokens are opaque random strings held by the server that issued them (a client session
//! lives on its user's home server, so no other server needs to know them); ending a token
//! or restarting the server revokes it. Failed logins are counted per user name and per
//! address, and after a few failures each further attempt must wait, doubling up to a minute.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use shared::{DeviceId, TimestampMs, UserId};
use std::collections::HashMap;

/// Hashes a password with argon2id (slow on purpose: call from `spawn_blocking`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt_bytes)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A random token or password: `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(&mut buffer[..]);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// What SQL keeps of a token: its SHA-256, hex. A token has 192 random bits, so a plain
/// hash suffices (no salt, no stretching); reading the table does not let anyone sign in.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a token stands for.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    pub user: UserId,
    pub device: DeviceId,
    pub admin: bool,
    /// Admin-console tokens may use the admin API only: no WebSocket, no seat.
    pub console_only: bool,
    pub issued_ms: TimestampMs,
}

/// Failed-login bookkeeping for one key (a user name or an address).
#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    last_ms: TimestampMs,
}

/// Slows down repeated failed logins. Pure: time comes in as an argument.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: HashMap<String, Failures>,
}

/// Failures allowed before waits start.
const FREE_FAILURES: u32 = 3;
/// A key's failures are forgotten after this much quiet.
const FORGET_AFTER_MS: i64 = 15 * 60 * 1000;
const MAX_WAIT_MS: i64 = 60_000;

impl LoginThrottle {
    /// How long the caller must still wait before trying `key` again (0 = may try now).
    pub fn wait_ms(&self, key: &str, now: TimestampMs) -> i64 {
        let Some(f) = self.failures.get(key) else {
            return 0;
        };
        if f.count < FREE_FAILURES || now - f.last_ms > FORGET_AFTER_MS {
            return 0;
        }
        let wait = (1000i64 << (f.count - FREE_FAILURES).min(6)).min(MAX_WAIT_MS);
        (f.last_ms + wait - now).max(0)
    }

    pub fn record_failure(&mut self, key: &str, now: TimestampMs) {
        if self.failures.len() > 100_000 {
            self.failures
                .retain(|_, f| now - f.last_ms <= FORGET_AFTER_MS);
        }
        let entry = self.failures.entry(key.to_string()).or_default();
        if now - entry.last_ms > FORGET_AFTER_MS {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last_ms = now;
    }

    pub fn record_success(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn throttle_waits_grow_after_free_failures() {
        let mut throttle = LoginThrottle::default();
        for i in 0..3 {
            assert_eq!(throttle.wait_ms("alice", i), 0);
            throttle.record_failure("alice", i);
        }
        assert_eq!(throttle.wait_ms("alice", 2), 1000);
        assert_eq!(throttle.wait_ms("alice", 1002), 0);
        throttle.record_failure("alice", 1002);
        assert_eq!(throttle.wait_ms("alice", 1002), 2000);
        assert_eq!(throttle.wait_ms("bob", 1002), 0);
        throttle.record_success("alice");
        assert_eq!(throttle.wait_ms("alice", 1003), 0);
    }
}
