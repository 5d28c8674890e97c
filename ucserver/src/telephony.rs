//! Each local user's part in each of their calls, as the calls' owners tell it, and who
//! forwards every call. Presence shows the strongest telephony state (`strongest`); the same
//! records tell which calls a user can pick up, which a vanished device leaves, and what to
//! journal should a call's owner die.

use shared::presence::TelephonyState;
use shared::{CallId, ServerId, TimestampMs, UserId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// A local user's part in one call, as the call's owner tells it: the telephony state shown
/// in presence, and enough for a journal entry should the owner die before writing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPart {
    pub state: TelephonyState,
    /// When `state` began.
    pub since_ms: TimestampMs,
    /// Who placed the call (an owner of an older version does not say).
    pub caller: Option<UserId>,
    /// When the user was first told of the call, and when they were first in it.
    pub started_ms: TimestampMs,
    pub answered_ms: Option<TimestampMs>,
}

#[derive(Default)]
pub struct Telephony {
    calls: Mutex<HashMap<UserId, BTreeMap<CallId, CallPart>>>,
    /// Local users whose every call is forwarded (`always` rule).
    always_forwarded: Mutex<HashSet<UserId>>,
}

impl Telephony {
    /// A user's state in one call changed at `now`; `Idle` means they left it.
    pub fn record(
        &self,
        user: &UserId,
        call: &CallId,
        state: TelephonyState,
        caller: Option<UserId>,
        now: TimestampMs,
    ) {
        let mut all = self.calls.lock().unwrap();
        let calls = all.entry(user.clone()).or_default();
        if state == TelephonyState::Idle {
            calls.remove(call);
        } else {
            let part = calls.entry(call.clone()).or_insert_with(|| CallPart {
                state,
                since_ms: now,
                caller: None,
                started_ms: now,
                answered_ms: None,
            });
            if part.state != state {
                part.state = state;
                part.since_ms = now;
            }
            if state == TelephonyState::InCall {
                part.answered_ms.get_or_insert(now);
            }
            if caller.is_some() {
                part.caller = caller;
            }
        }
        if calls.is_empty() {
            all.remove(user);
        }
    }

    /// Whether a user forwards every call; true if that changed.
    pub fn set_forwarded(&self, user: &UserId, always: bool) -> bool {
        let mut forwarded = self.always_forwarded.lock().unwrap();
        if always {
            forwarded.insert(user.clone())
        } else {
            forwarded.remove(user)
        }
    }

    /// What presence shows: the strongest state over the user's calls, else `forwarded`
    /// when they forward every call, else idle.
    pub fn strongest(&self, user: &UserId) -> TelephonyState {
        let in_calls = self
            .calls
            .lock()
            .unwrap()
            .get(user)
            .and_then(|calls| calls.values().map(|part| part.state).max())
            .unwrap_or_default();
        let forwarded = if self.always_forwarded.lock().unwrap().contains(user) {
            TelephonyState::Forwarded
        } else {
            TelephonyState::Idle
        };
        in_calls.max(forwarded)
    }

    /// The calls a user is in or rung by.
    pub fn calls_of(&self, user: &UserId) -> Vec<CallId> {
        self.calls
            .lock()
            .unwrap()
            .get(user)
            .map(|calls| calls.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The calls ringing at a user, oldest first.
    pub fn ringing_calls(&self, user: &UserId) -> Vec<CallId> {
        let all = self.calls.lock().unwrap();
        let Some(calls) = all.get(user) else {
            return Vec::new();
        };
        let mut ringing: Vec<(TimestampMs, CallId)> = calls
            .iter()
            .filter(|(_, part)| part.state == TelephonyState::Ringing)
            .map(|(call, part)| (part.since_ms, call.clone()))
            .collect();
        ringing.sort();
        ringing.into_iter().map(|(_, call)| call).collect()
    }

    /// (user, call, the user's part) for every user's call owned by `owner`.
    pub fn calls_owned_by(&self, owner: &ServerId) -> Vec<(UserId, CallId, CallPart)> {
        let all = self.calls.lock().unwrap();
        all.iter()
            .flat_map(|(user, calls)| {
                calls
                    .iter()
                    .filter(|(call, _)| shared::call::call_owner(call).as_ref() == Some(owner))
                    .map(move |(call, part)| (user.clone(), call.clone(), part.clone()))
            })
            .collect()
    }
}
