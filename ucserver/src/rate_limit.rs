//! Per-device rate limits on what a client can make the server (and SQL, and every
//! recipient) do in a loop: chat sends, typing notices, new conversations.
//!
//! Each action has a keyed GCRA limiter (governor) with a sustained rate and a burst; the key
//! is the sending device (`user/device`), so one noisy device slows down neither the user's
//! other devices nor anyone else. A refused action is `rate_limited` (HTTP 429, or an `error`
//! event with the frame's `ref` on the WebSocket) with `retry_after_ms`. The defaults
//! (`UC_RATE_*`, see `config.rs`) are far above what people type and above what `uc-bench`
//! sends per device; a rate of 0 turns a limit off. Limiter state of devices quiet long
//! enough to be back at a full burst is dropped by [`RateLimits::sweep`] on every heartbeat
//! tick, so the maps stay as small as the set of recently active devices. The limits are
//! runtime settings: [`RateLimits::reconfigure`] puts new limiters in place for the limits
//! that changed (their devices start with a full burst), between two checks.

use crate::error::AppError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use shared::api::ErrorCode;
use shared::{DeviceId, UserId};
use std::num::NonZeroU32;

/// A limited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A chat message (WebSocket `send` or `POST /messages`).
    Send,
    /// A typing notice (WebSocket `typing`).
    Typing,
    /// `POST /conversations`.
    CreateConversation,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Send => "messages",
            Action::Typing => "typing notices",
            Action::CreateConversation => "new conversations",
        }
    }
}

/// One limit: `per_minute` actions sustained, up to `burst` at once. `per_minute == 0` is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

/// The limits of every action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub send: Limit,
    pub typing: Limit,
    pub create_conversation: Limit,
}

type Limiter = DefaultKeyedRateLimiter<String>;

/// The limiters of every action; `None` is off.
struct Limiters {
    config: RateLimitConfig,
    send: Option<Limiter>,
    typing: Option<Limiter>,
    create_conversation: Option<Limiter>,
}

pub struct RateLimits {
    /// Replaced whole (or in part) by `reconfigure`; read on every check.
    limiters: std::sync::RwLock<Limiters>,
    clock: DefaultClock,
}

fn limiter(limit: Limit) -> Option<Limiter> {
    let per_minute = NonZeroU32::new(limit.per_minute)?;
    let burst = NonZeroU32::new(limit.burst.max(1))?;
    Some(Limiter::keyed(
        Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            limiters: std::sync::RwLock::new(Limiters {
                config,
                send: limiter(config.send),
                typing: limiter(config.typing),
                create_conversation: limiter(config.create_conversation),
            }),
            clock: DefaultClock::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> RateLimitConfig {
        self.limiters.read().unwrap().config
    }

    /// Puts `config` in force: each limit that changed gets a new limiter at once (every
    /// device starts it with a full burst); unchanged ones keep their state.
    pub fn reconfigure(&self, config: RateLimitConfig) {
        let mut limiters = self.limiters.write().unwrap();
        let old = limiters.config;
        if old.send != config.send {
            limiters.send = limiter(config.send);
        }
        if old.typing != config.typing {
            limiters.typing = limiter(config.typing);
        }
        if old.create_conversation != config.create_conversation {
            limiters.create_conversation = limiter(config.create_conversation);
        }
        limiters.config = config;
    }

    /// Takes one `action` from the device's allowance, or says how long to wait.
    pub fn check(&self, action: Action, user: &UserId, device: &DeviceId) -> Result<(), AppError> {
        let limiters = self.limiters.read().unwrap();
        let limiter = match action {
            Action::Send => limiters.send.as_ref(),
            Action::Typing => limiters.typing.as_ref(),
            Action::CreateConversation => limiters.create_conversation.as_ref(),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let key = format!("{user}/{device}");
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let wait_ms = (wait.as_millis() as u64).max(1);
            let mut error = AppError::new(
                ErrorCode::RateLimited,
                format!(
                    "this device sends {} too fast; try again in {wait_ms} ms",
                    action.describe()
                ),
            );
            error.0.retry_after_ms = Some(wait_ms);
            error
        })
    }

    /// Forgets devices whose allowance is full again (call periodically).
    pub fn sweep(&self) {
        let limiters = self.limiters.read().unwrap();
        for limiter in [
            &limiters.send,
            &limiters.typing,
            &limiters.create_conversation,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Devices with limiter state, over all actions (for tests and metrics).
    pub fn tracked(&self) -> usize {
        let limiters = self.limiters.read().unwrap();
        [
            &limiters.send,
            &limiters.typing,
            &limiters.create_conversation,
        ]
        .into_iter()
        .flatten()
        .map(|limiter| limiter.len())
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(send: Limit) -> RateLimits {
        let off = Limit {
            per_minute: 0,
            burst: 0,
        };
        RateLimits::new(RateLimitConfig {
            send,
            typing: off,
            create_conversation: off,
        })
    }

    #[test]
    fn a_burst_then_a_typed_refusal_per_device() {
        let limits = limits(Limit {
            per_minute: 60,
            burst: 3,
        });
        let (alice, phone, desk) = (
            UserId::from("alice"),
            DeviceId::from("phone"),
            DeviceId::from("desk"),
        );
        for _ in 0..3 {
            limits.check(Action::Send, &alice, &phone).unwrap();
        }
        let refused = limits.check(Action::Send, &alice, &phone).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        let wait = refused.0.retry_after_ms.unwrap();
        assert!((1..=1000).contains(&wait), "{wait}");
        // Another device of the same user has its own allowance; other actions are off.
        limits.check(Action::Send, &alice, &desk).unwrap();
        for _ in 0..100 {
            limits.check(Action::Typing, &alice, &phone).unwrap();
        }
        assert_eq!(limits.tracked(), 2);
    }

    #[test]
    fn a_new_limit_counts_at_once() {
        let limits = limits(Limit {
            per_minute: 60,
            burst: 100,
        });
        let (user, device) = (UserId::from("a"), DeviceId::from("d"));
        for _ in 0..10 {
            limits.check(Action::Send, &user, &device).unwrap();
        }
        let mut config = limits.config();
        config.send.burst = 2;
        limits.reconfigure(config);
        limits.check(Action::Send, &user, &device).unwrap();
        limits.check(Action::Send, &user, &device).unwrap();
        assert_eq!(
            limits
                .check(Action::Send, &user, &device)
                .unwrap_err()
                .code(),
            ErrorCode::RateLimited
        );
        config.send.per_minute = 0;
        limits.reconfigure(config);
        for _ in 0..100 {
            limits.check(Action::Send, &user, &device).unwrap();
        }
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let limits = limits(Limit {
            per_minute: 0,
            burst: 5,
        });
        for _ in 0..1000 {
            limits
                .check(Action::Send, &UserId::from("a"), &DeviceId::from("d"))
                .unwrap();
        }
        assert_eq!(limits.tracked(), 0);
    }
}
