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
    /// When the call's owner last said something of it, or was last asked whether it is on.
    pub heard_ms: TimestampMs,
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
                heard_ms: now,
            });
            part.heard_ms = now;
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

    /// (user, call, its owner) for every part in a call owned by another server than `here`
    /// that nothing was heard of for `quiet_ms`; each counts as heard now (asked about).
    pub fn parts_to_check(
        &self,
        here: &ServerId,
        now: TimestampMs,
        quiet_ms: TimestampMs,
    ) -> Vec<(UserId, CallId, ServerId)> {
        let mut all = self.calls.lock().unwrap();
        let mut due = Vec::new();
        for (user, calls) in all.iter_mut() {
            for (call, part) in calls.iter_mut() {
                let Some(owner) = shared::call::call_owner(call) else {
                    continue;
                };
                if owner != *here && now.saturating_sub(part.heard_ms) >= quiet_ms {
                    part.heard_ms = now;
                    due.push((user.clone(), call.clone(), owner));
                }
            }
        }
        due
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_in_calls_owned_elsewhere_are_due_for_a_check_after_a_quiet_while() {
        let telephony = Telephony::default();
        let (here, elsewhere) = (CallId::from("s1~aaa"), CallId::from("s2~bbb"));
        let user = UserId::from("alice");
        telephony.record(&user, &here, TelephonyState::InCall, None, 1_000);
        telephony.record(&user, &elsewhere, TelephonyState::Ringing, None, 1_000);
        let s1 = ServerId::from("s1");
        assert!(telephony.parts_to_check(&s1, 10_999, 10_000).is_empty());
        // News of the call resets the quiet time.
        telephony.record(&user, &elsewhere, TelephonyState::InCall, None, 5_000);
        assert!(telephony.parts_to_check(&s1, 14_999, 10_000).is_empty());
        let due = telephony.parts_to_check(&s1, 15_000, 10_000);
        assert_eq!(
            due,
            vec![(user.clone(), elsewhere.clone(), ServerId::from("s2"))]
        );
        // Asked once per quiet period; its own calls never.
        assert!(telephony.parts_to_check(&s1, 24_999, 10_000).is_empty());
        assert_eq!(telephony.parts_to_check(&s1, 25_000, 10_000).len(), 1);
        // The owner's answer ends the part.
        telephony.record(&user, &elsewhere, TelephonyState::Idle, None, 25_100);
        assert!(telephony.parts_to_check(&s1, 99_000, 10_000).is_empty());
        assert_eq!(telephony.strongest(&user), TelephonyState::InCall);
    }
}
