//! Passwords and session tokens.
//!
//! Tokens are opaque random strings held by the server that issued them (a client session
//! lives on its user's home server, so no other server needs to know them); ending a token
//! or restarting the server revokes it. Login throttling is in `login_guard.rs`; the bounded
//! hashing that requests use is in `password.rs` (these plain functions are for start-up).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use shared::{DeviceId, TimestampMs, UserId};

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
}
