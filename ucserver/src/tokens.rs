//! The session tokens this server holds in memory: what each stands for and when it was last
//! used. SQL keeps them too (hashed, so they outlive a restart); the server's token methods
//! do that IO and the seat bookkeeping, this component only the state and its rules: a token
//! lives `UC_SESSION_LIFETIME_MS` from sign-in, and one unused for long may be ended.

use crate::auth::TokenInfo;
use shared::{DeviceId, TimestampMs, UserId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// A token unused this long, with no device connected, ends (and returns its seat).
pub const TOKEN_IDLE_MS: i64 = 12 * 60 * 60 * 1000;

struct Held {
    info: TokenInfo,
    last_used: TimestampMs,
}

pub struct Tokens {
    held: Mutex<HashMap<String, Held>>,
    /// How long a session lasts from sign-in, used or not.
    lifetime_ms: i64,
}

impl Tokens {
    pub fn new(lifetime_ms: i64) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            lifetime_ms,
        }
    }

    /// Whether a session issued at `issued_ms` is still within its lifetime at `now`.
    pub fn is_fresh(&self, issued_ms: TimestampMs, now: TimestampMs) -> bool {
        now - issued_ms < self.lifetime_ms
    }

    /// Sessions issued before this are over.
    pub fn cutoff(&self, now: TimestampMs) -> TimestampMs {
        now - self.lifetime_ms
    }

    pub fn hold(&self, token: String, info: TokenInfo, now: TimestampMs) {
        self.held.lock().unwrap().insert(
            token,
            Held {
                info,
                last_used: now,
            },
        );
    }

    /// What a held token stands for, marking it used; `None` if it is not held here.
    pub fn use_token(&self, token: &str, now: TimestampMs) -> Option<TokenInfo> {
        let mut held = self.held.lock().unwrap();
        let entry = held.get_mut(token)?;
        entry.last_used = now;
        Some(entry.info.clone())
    }

    pub fn remove(&self, token: &str) -> Option<TokenInfo> {
        self.held.lock().unwrap().remove(token).map(|h| h.info)
    }

    /// Forgets every token of a user; true if there was one.
    pub fn remove_user(&self, user: &UserId) -> bool {
        let mut held = self.held.lock().unwrap();
        let before = held.len();
        held.retain(|_, h| &h.info.user != user);
        before != held.len()
    }

    /// The client tokens held for one device of a user.
    pub fn of_device(&self, user: &UserId, device: &DeviceId) -> Vec<String> {
        self.held
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| {
                &h.info.user == user && &h.info.device == device && !h.info.console_only
            })
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Whether a client (not console) token of the user is held.
    pub fn client_token_held(&self, user: &UserId) -> bool {
        self.held
            .lock()
            .unwrap()
            .values()
            .any(|h| &h.info.user == user && !h.info.console_only)
    }

    /// Every user holding a client (not console) token here: those who hold a seat.
    pub fn client_token_users(&self) -> BTreeSet<UserId> {
        self.held
            .lock()
            .unwrap()
            .values()
            .filter(|h| !h.info.console_only)
            .map(|h| h.info.user.clone())
            .collect()
    }

    /// Tokens unused for `idle_ms` at `now`, with their users.
    pub fn idle(&self, now: TimestampMs, idle_ms: i64) -> Vec<(String, UserId)> {
        self.held
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| now - h.last_used > idle_ms)
            .map(|(token, h)| (token.clone(), h.info.user.clone()))
            .collect()
    }

    /// Tokens past their lifetime at `now`.
    pub fn too_old(&self, now: TimestampMs) -> Vec<(String, TokenInfo)> {
        self.held
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| !self.is_fresh(h.info.issued_ms, now))
            .map(|(token, h)| (token.clone(), h.info.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str, issued_ms: TimestampMs, console_only: bool) -> TokenInfo {
        TokenInfo {
            user: UserId::from(user),
            device: DeviceId::from("d"),
            admin: false,
            console_only,
            issued_ms,
        }
    }

    #[test]
    fn lifetime_counts_from_sign_in_and_use_does_not_extend_it() {
        let tokens = Tokens::new(1_000);
        tokens.hold("t".into(), info("ann", 0, false), 0);
        assert!(tokens.use_token("t", 999).is_some());
        assert!(tokens.too_old(999).is_empty());
        assert_eq!(tokens.too_old(1_000).len(), 1);
        assert!(!tokens.is_fresh(0, 1_000));
    }

    #[test]
    fn idle_and_client_tokens_are_told_apart() {
        let tokens = Tokens::new(1_000_000);
        tokens.hold("a".into(), info("ann", 0, false), 0);
        tokens.hold("b".into(), info("bob", 0, true), 0);
        tokens.use_token("a", 500);
        assert_eq!(
            tokens.idle(600, 200),
            vec![("b".to_string(), UserId::from("bob"))]
        );
        assert!(tokens.client_token_held(&UserId::from("ann")));
        assert!(!tokens.client_token_held(&UserId::from("bob")));
        assert!(tokens.remove_user(&UserId::from("ann")));
        assert!(!tokens.remove_user(&UserId::from("ann")));
    }
}
