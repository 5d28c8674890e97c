//! The state machine of one call, with no IO and no clock.
//!
//! A call is owned by the UCServer that placed it. It starts by *preparing*: the caller's leg
//! is put on a MediaServer, and only once that MediaServer answered is the call offered to
//! anyone, so that no device rings for a call whose media cannot be set up; a MediaServer that
//! fails the leg is replaced by another (a bounded number of tries) before the call fails.
//! A callee the call cannot reach (unknown user, offline, busy, no forwarding) ends it at
//! once, without a leg. Then it is in *setup*: the callee's devices ring (or forwarding sends
//! the call on to another user). The first device to answer wins, or a colleague picks the
//! call up; then the call is *active* with two or more connected parties, and connected
//! parties may ring more users into it (a conference). When fewer than two parties are left, or the media fails, it
//! is *ended*, and nothing more happens to it.
//!
//! The core decides; the shell looks things up and carries out the outputs:
//! - what it knows of a user (devices online, in a call, forwarding rules) comes in as a
//!   [`Callee`]: in [`Call::new`], after a [`CallOutput::Redirect`] as [`CallInput::Target`],
//!   and with [`CallInput::Invite`];
//! - device commands (answer, reject, hangup, pickup, invite) come in as inputs; the shell
//!   has already checked authorisation (pickup rights, licenses) and parsed the SDP;
//! - what the MediaServer says comes in as [`CallInput::LegAnswered`],
//!   [`CallInput::LegFailed`] and [`CallInput::MediaFailed`]; which MediaServer the call uses
//!   is the shell's (`core::media_choice` decides), the core only says when to move
//!   ([`CallOutput::MoveMedia`]).
//!
//! Telephony states ([`CallOutput::Telephony`]) are per call: a user in two calls has one state
//! in each, and the shell shows the strongest (as `core::presence` expects).

use shared::api::{CallResult, Direction};
use shared::call::{EndReason, ForwardMode, ForwardingRules, Refusal, StopReason};
use shared::presence::TelephonyState;
use shared::{CallId, DeviceId, TimestampMs, UserId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Timers and limits of calls, fixed per server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallConfig {
    /// How long a user's devices ring before the call counts as not answered (then it is
    /// forwarded on no answer, or missed). Default 30 s.
    pub ring_timeout_ms: i64,
    /// How long the shell may take to look up a forwarding target after a `Redirect` before
    /// the call fails with `setup_failed`. Default 5 s.
    pub lookup_timeout_ms: i64,
    /// Most forwarding hops of one call; a rule past the limit is ignored. Default 5.
    pub max_forwards: usize,
    /// Most parties of one call, connected and invited together. Default 8.
    pub max_parties: usize,
    /// MediaServers tried for the caller's leg before anyone is rung; when the last one fails
    /// too, the call fails (`media_failed`). Default 3.
    pub media_tries: usize,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ring_timeout_ms: 30_000,
            lookup_timeout_ms: 5_000,
            max_forwards: 5,
            max_parties: 8,
            media_tries: 3,
        }
    }
}

/// One device of one user: who sends a command, or who holds a leg of the call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub user: UserId,
    pub device: DeviceId,
}

impl Endpoint {
    pub fn new(user: UserId, device: DeviceId) -> Self {
        Self { user, device }
    }

    /// The MediaServer leg name of this endpoint (`<user>/<device>`, see `LegOffer::leg`).
    pub fn leg(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.device)
    }
}

/// Whether a user can be rung now, as the shell found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// No such user.
    Unknown,
    /// No device that takes calls is online.
    Offline,
    /// The user is in another call (telephony state `in_call`).
    Busy,
    /// These devices are online and take calls. An empty set counts as `Offline`.
    Online(BTreeSet<DeviceId>),
}

/// What the shell looked up about a user the call is offered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callee {
    pub user: UserId,
    pub reach: Reach,
    /// The user's forwarding rules (ignored for conference invitations).
    pub forwarding: ForwardingRules,
}

/// Something that happened to the call, fed in by the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallInput {
    /// The lookup of the user named by the last [`CallOutput::Redirect`]. A lookup of anyone
    /// else (a late answer to an earlier redirect) is ignored.
    Target(Callee),
    /// A device answers a call ringing at it; `offer` is its SDP offer for its leg.
    Answer { by: Endpoint, offer: String },
    /// A device declines a call ringing at it.
    Reject { by: Endpoint },
    /// A device leaves the call. From the caller before anyone answered: the call is
    /// cancelled. From a ringing device: the same as `Reject`.
    Hangup { by: Endpoint },
    /// An authorised colleague's device takes the call ringing at the callee.
    PickUp { by: Endpoint, offer: String },
    /// A connected device rings another user into the call (a conference).
    Invite { by: Endpoint, invitee: Callee },
    /// A device's session ended (it went offline): it stops ringing, or leaves the call.
    DeviceGone { by: Endpoint },
    /// The MediaServer took this endpoint's leg (the shell sent the answer to the device).
    /// The caller's leg answered proves the MediaServer: the call is offered to the callee.
    LegAnswered { party: Endpoint },
    /// The MediaServer reported one leg failed (bad SDP, ICE or DTLS failure, or it could not
    /// be reached): that party leaves with result `failed`; with fewer than two parties left
    /// the call ends. The caller's leg failing before anyone was rung moves the call to
    /// another MediaServer instead, while tries are left.
    LegFailed { party: Endpoint, reason: String },
    /// The call's MediaServer failed (died, or lost the call): the call ends for all with
    /// result `failed`.
    MediaFailed { reason: String },
}

/// How one party's part in the call ended, for its `call_ended` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyResult {
    pub endpoint: Endpoint,
    pub result: CallResult,
}

/// One journal line for one user, to be stored as a `JournalEntry` of kind `call`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    pub user: UserId,
    pub direction: Direction,
    /// The other party: for the caller the user who answered (or, unanswered, the user they
    /// dialled); for everyone else the caller (or the inviter of a conference).
    pub party: UserId,
    /// When the call reached this user (placed, started ringing, or was picked up).
    pub started_ms: TimestampMs,
    pub answered_ms: Option<TimestampMs>,
    pub ended_ms: TimestampMs,
    pub result: CallResult,
}

/// What the shell must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutput {
    /// Ring these devices of `user` (`call_incoming`), and tell `from` (the caller, or the
    /// inviter of a conference) that `user` rings (`call_ringing`). `parties` is who is
    /// connected already (empty unless this is a conference invitation).
    Ring {
        user: UserId,
        devices: Vec<DeviceId>,
        from: Endpoint,
        forwarded_from: Option<UserId>,
        parties: Vec<UserId>,
    },
    /// These devices of `user` stop ringing (`call_ringing_stopped`); never empty.
    StopRinging {
        user: UserId,
        devices: Vec<DeviceId>,
        reason: StopReason,
        by: Option<UserId>,
    },
    /// The call goes on to another user: tell the caller (`call_redirected`), look `to` up
    /// and feed it back as [`CallInput::Target`].
    Redirect {
        from: UserId,
        to: UserId,
        mode: ForwardMode,
    },
    /// Add this endpoint's leg on the call's MediaServer with its SDP offer, and send the
    /// answer to that device (`call_media_answer`). On failure feed [`CallInput::LegFailed`].
    AddLeg { party: Endpoint, offer: String },
    /// The call's MediaServer failed the caller's leg before anyone was rung: choose another
    /// one, none this call tried before (`attempt` counts the MediaServers tried, this one
    /// included), make it the call's, and add the leg there as for [`CallOutput::AddLeg`].
    /// When none is left, feed [`CallInput::MediaFailed`].
    MoveMedia {
        party: Endpoint,
        offer: String,
        attempt: usize,
    },
    /// Remove this endpoint's leg from the MediaServer (the call itself goes on).
    RemoveLeg { party: Endpoint },
    /// `joined` is connected; `parties` are all connected endpoints, in join order
    /// (`call_connected` to each of them).
    Connected {
        joined: Endpoint,
        parties: Vec<Endpoint>,
    },
    /// `left` left a call that goes on: tell it `call_ended` with its result, and the others
    /// `call_party_left`.
    PartyLeft {
        left: PartyResult,
        parties: Vec<Endpoint>,
    },
    /// An invitation into the conference failed: tell the inviter (`call_invite_failed`).
    InviteFailed {
        inviter: Endpoint,
        invitee: UserId,
        reason: EndReason,
    },
    /// A device's command was refused; the call is unchanged (an `error` frame).
    Refused { to: Endpoint, reason: Refusal },
    /// `user`'s telephony state in this call changed (`idle` when the call no longer
    /// concerns them). Goes to the user's home server, which publishes presence.
    Telephony { user: UserId, state: TelephonyState },
    /// Write this journal line. Every user the call reached gets exactly one.
    Journal(JournalRecord),
    /// The call is over; always the last output. Tell each of `parties` `call_ended` with
    /// its result, delete the call on the MediaServer, return its license leases and forget
    /// the call.
    Ended {
        reason: EndReason,
        parties: Vec<PartyResult>,
    },
}

/// A user whose devices ring for this call.
#[derive(Clone, Debug)]
struct Ringing {
    user: UserId,
    /// Never empty: when the last device goes, the ringing ends.
    devices: BTreeSet<DeviceId>,
    since_ms: TimestampMs,
    deadline_ms: TimestampMs,
}

/// Where the call has been offered so far; guards forwarding against loops.
#[derive(Clone, Debug)]
struct Route {
    /// The user the caller dialled: the caller's journal party when nobody answers.
    dialled: UserId,
    /// The caller and every user the call was offered to; forwarding never returns to one.
    visited: Vec<UserId>,
    forwards: usize,
}

#[derive(Clone, Debug)]
enum SetupTarget {
    /// `ringing.user`'s devices ring.
    Ringing {
        ringing: Ringing,
        forwarded_from: Option<UserId>,
        /// The no-answer forwarding target, from the rules when ringing started.
        no_answer: Option<UserId>,
    },
    /// Waiting for the shell's lookup of `to` after a redirect.
    Lookup {
        from: UserId,
        to: UserId,
        deadline_ms: TimestampMs,
    },
}

/// Where offering the call to one user leads.
enum OfferOutcome {
    /// Forwarding sends it on to this user.
    Redirect(UserId, ForwardMode),
    /// These devices ring.
    Ring(BTreeSet<DeviceId>),
    /// The call ends: the callee's journal line (if any), the caller's result and the reason.
    Fail {
        journal: Option<CallResult>,
        result: CallResult,
        reason: EndReason,
    },
}

#[derive(Clone, Debug)]
struct Member {
    endpoint: Endpoint,
    direction: Direction,
    party: UserId,
    started_ms: TimestampMs,
    answered_ms: TimestampMs,
}

#[derive(Clone, Debug)]
struct Invitation {
    ringing: Ringing,
    inviter: Endpoint,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Placed, nobody rung yet: waiting for the caller's leg on a MediaServer. `callee` is
    /// offered the call once it stands; `offer` is kept to try the next MediaServer.
    Preparing {
        route: Route,
        callee: Callee,
        offer: String,
        /// MediaServers tried so far, the current one included.
        tries: usize,
    },
    /// Not answered yet; exactly one user is rung or looked up.
    Setup {
        route: Route,
        target: SetupTarget,
    },
    /// Answered: two or more connected members, and the users rung into the conference.
    Active {
        members: Vec<Member>,
        invitations: Vec<Invitation>,
    },
    Ended,
}

/// One call. Sans-IO: feed it with `handle_input(now, …)` and `handle_timeout(now)`.
///
/// After every input, drain poll_output until None, then re-arm the timer from poll_timeout.
/// (`Call::new` queues outputs too: drain them before the first input.) `now` is
/// milliseconds since the epoch and must not go back.
#[derive(Clone, Debug)]
pub struct Call {
    id: CallId,
    config: CallConfig,
    caller: Endpoint,
    started_ms: TimestampMs,
    phase: Phase,
    /// Telephony state each user has in this call; a user absent here is idle.
    telephony: BTreeMap<UserId, TelephonyState>,
    outputs: VecDeque<CallOutput>,
}

impl Call {
    /// `caller` places a call to `callee` (as the shell found them) with `offer`, the
    /// caller's SDP offer for its leg. The caller counts as in a call from now on.
    pub fn new(
        config: CallConfig,
        id: CallId,
        caller: Endpoint,
        offer: String,
        callee: Callee,
        now: TimestampMs,
    ) -> Self {
        let route = Route {
            dialled: callee.user.clone(),
            visited: vec![caller.user.clone(), callee.user.clone()],
            forwards: 0,
        };
        let mut call = Self {
            id,
            config,
            caller: caller.clone(),
            started_ms: now,
            phase: Phase::Ended,
            telephony: BTreeMap::new(),
            outputs: VecDeque::new(),
        };
        if matches!(
            call.offer_outcome(&route, &callee),
            OfferOutcome::Fail { .. }
        ) {
            // Nobody to reach: the call ends now, without a leg.
            call.phase = call.offer(now, route, callee, None);
            return call;
        }
        call.set_telephony(&caller.user, TelephonyState::InCall);
        call.outputs.push_back(CallOutput::AddLeg {
            party: caller,
            offer: offer.clone(),
        });
        call.phase = Phase::Preparing {
            route,
            callee,
            offer,
            tries: 1,
        };
        call
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }

    pub fn caller(&self) -> &Endpoint {
        &self.caller
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// The user whose devices ring before anyone answered: whom a pickup takes the call from.
    pub fn ringing_user(&self) -> Option<&UserId> {
        match &self.phase {
            Phase::Setup {
                target: SetupTarget::Ringing { ringing, .. },
                ..
            } => Some(&ringing.user),
            _ => None,
        }
    }

    /// The connected endpoints (the caller alone during setup; none once ended).
    pub fn parties(&self) -> Vec<Endpoint> {
        match &self.phase {
            Phase::Preparing { .. } | Phase::Setup { .. } => vec![self.caller.clone()],
            Phase::Active { members, .. } => members.iter().map(|m| m.endpoint.clone()).collect(),
            Phase::Ended => Vec::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must be called next (`None`: no timer).
    pub fn poll_timeout(&self) -> Option<TimestampMs> {
        match &self.phase {
            Phase::Setup {
                target: SetupTarget::Ringing { ringing, .. },
                ..
            } => Some(ringing.deadline_ms),
            Phase::Setup {
                target: SetupTarget::Lookup { deadline_ms, .. },
                ..
            } => Some(*deadline_ms),
            Phase::Active { invitations, .. } => {
                invitations.iter().map(|i| i.ringing.deadline_ms).min()
            }
            // The shell answers every leg request (its control requests time out).
            Phase::Preparing { .. } | Phase::Ended => None,
        }
    }

    /// Fires every timer due at `now` (early calls do nothing).
    pub fn handle_timeout(&mut self, now: TimestampMs) {
        let phase = std::mem::replace(&mut self.phase, Phase::Ended);
        self.phase = match phase {
            Phase::Setup {
                route,
                target:
                    SetupTarget::Ringing {
                        ringing,
                        forwarded_from,
                        no_answer,
                    },
            } => {
                if now >= ringing.deadline_ms {
                    self.not_answered(now, route, ringing, no_answer)
                } else {
                    Phase::Setup {
                        route,
                        target: SetupTarget::Ringing {
                            ringing,
                            forwarded_from,
                            no_answer,
                        },
                    }
                }
            }
            Phase::Setup {
                route,
                target: SetupTarget::Lookup { deadline_ms, .. },
            } if now >= deadline_ms => self.end_setup(
                now,
                &route.dialled,
                CallResult::Failed,
                EndReason::SetupFailed,
            ),
            Phase::Active {
                members,
                mut invitations,
            } => {
                while let Some(index) = invitations
                    .iter()
                    .position(|i| now >= i.ringing.deadline_ms)
                {
                    let invitation = invitations.remove(index);
                    self.invitation_failed(
                        now,
                        invitation,
                        None,
                        StopReason::NoAnswer,
                        CallResult::Missed,
                        EndReason::NoAnswer,
                    );
                }
                Phase::Active {
                    members,
                    invitations,
                }
            }
            other => other,
        };
    }

    pub fn handle_input(&mut self, now: TimestampMs, input: CallInput) {
        let phase = std::mem::replace(&mut self.phase, Phase::Ended);
        self.phase = match phase {
            Phase::Preparing {
                route,
                callee,
                offer,
                tries,
            } => self.preparing_input(now, route, callee, offer, tries, input),
            Phase::Setup { route, target } => self.setup_input(now, route, target, input),
            Phase::Active {
                members,
                invitations,
            } => self.active_input(now, members, invitations, input),
            Phase::Ended => {
                if let Some(by) = input_endpoint(&input) {
                    self.refuse(by, Refusal::CallEnded);
                }
                Phase::Ended
            }
        };
    }

    // ---- preparing ---------------------------------------------------------------------

    fn preparing_input(
        &mut self,
        now: TimestampMs,
        route: Route,
        callee: Callee,
        offer: String,
        tries: usize,
        input: CallInput,
    ) -> Phase {
        match input {
            CallInput::LegAnswered { party } if party == self.caller => {
                return self.offer(now, route, callee, None);
            }
            CallInput::LegFailed { party, .. }
                if party == self.caller && tries < self.config.media_tries =>
            {
                self.outputs.push_back(CallOutput::MoveMedia {
                    party,
                    offer: offer.clone(),
                    attempt: tries + 1,
                });
                return Phase::Preparing {
                    route,
                    callee,
                    offer,
                    tries: tries + 1,
                };
            }
            CallInput::LegFailed { party, .. } if party == self.caller => {
                return self.end_setup(
                    now,
                    &route.dialled,
                    CallResult::Failed,
                    EndReason::MediaFailed,
                );
            }
            CallInput::MediaFailed { .. } => {
                return self.end_setup(
                    now,
                    &route.dialled,
                    CallResult::Failed,
                    EndReason::MediaFailed,
                );
            }
            CallInput::Hangup { by } | CallInput::DeviceGone { by } if by == self.caller => {
                return self.end_setup(
                    now,
                    &route.dialled,
                    CallResult::Missed,
                    EndReason::Cancelled,
                );
            }
            CallInput::Answer { by, .. }
            | CallInput::Reject { by }
            | CallInput::PickUp { by, .. } => self.refuse(by, Refusal::NotRinging),
            CallInput::Hangup { by } | CallInput::Invite { by, .. } => {
                self.refuse(by, Refusal::NotAParty);
            }
            CallInput::Target(_)
            | CallInput::DeviceGone { .. }
            | CallInput::LegAnswered { .. }
            | CallInput::LegFailed { .. } => {}
        }
        Phase::Preparing {
            route,
            callee,
            offer,
            tries,
        }
    }

    // ---- setup -------------------------------------------------------------------------

    fn setup_input(
        &mut self,
        now: TimestampMs,
        route: Route,
        target: SetupTarget,
        input: CallInput,
    ) -> Phase {
        let ringing_user = match &target {
            SetupTarget::Ringing { ringing, .. } => Some(ringing.user.clone()),
            SetupTarget::Lookup { .. } => None,
        };
        let rings_for = |by: &Endpoint| ringing_user.as_ref() == Some(&by.user);
        match input {
            CallInput::Target(callee) => match target {
                SetupTarget::Lookup { from, to, .. } if callee.user == to => {
                    self.offer(now, route, callee, Some(from))
                }
                target => Phase::Setup { route, target },
            },
            CallInput::Answer { by, offer } if rings_for(&by) => {
                let SetupTarget::Ringing { ringing, .. } = target else {
                    unreachable!("rings_for holds only while ringing")
                };
                self.silence(
                    &ringing,
                    Some(&by.device),
                    StopReason::AnsweredElsewhere,
                    Some(&by.user),
                );
                let callee = Member {
                    endpoint: by,
                    direction: Direction::Incoming,
                    party: self.caller.user.clone(),
                    started_ms: ringing.since_ms,
                    answered_ms: now,
                };
                self.connect_first(now, callee, offer)
            }
            CallInput::Reject { by } | CallInput::Hangup { by } if rings_for(&by) => {
                let SetupTarget::Ringing { ringing, .. } = target else {
                    unreachable!("rings_for holds only while ringing")
                };
                self.stop_ringing(
                    &ringing,
                    Some(&by.device),
                    StopReason::Rejected,
                    Some(&by.user),
                );
                self.callee_journal(&ringing, now, CallResult::Rejected);
                self.end_setup(
                    now,
                    &route.dialled,
                    CallResult::Rejected,
                    EndReason::Rejected,
                )
            }
            CallInput::Hangup { by } | CallInput::DeviceGone { by } if by == self.caller => {
                if let SetupTarget::Ringing { ringing, .. } = &target {
                    let caller = self.caller.user.clone();
                    self.stop_ringing(ringing, None, StopReason::Cancelled, Some(&caller));
                    self.callee_journal(ringing, now, CallResult::Missed);
                }
                self.end_setup(
                    now,
                    &route.dialled,
                    CallResult::Missed,
                    EndReason::Cancelled,
                )
            }
            CallInput::PickUp { by, offer } => match target {
                SetupTarget::Ringing { ringing, .. }
                    if by.user != self.caller.user && by.user != ringing.user =>
                {
                    self.stop_ringing(&ringing, None, StopReason::PickedUp, Some(&by.user));
                    self.callee_journal(&ringing, now, CallResult::PickedUp);
                    let picker = Member {
                        endpoint: by,
                        direction: Direction::Incoming,
                        party: self.caller.user.clone(),
                        started_ms: now,
                        answered_ms: now,
                    };
                    self.connect_first(now, picker, offer)
                }
                SetupTarget::Ringing { .. } => {
                    self.refuse(by, Refusal::OwnCall);
                    Phase::Setup { route, target }
                }
                SetupTarget::Lookup { .. } => {
                    self.refuse(by, Refusal::NotRinging);
                    Phase::Setup { route, target }
                }
            },
            CallInput::DeviceGone { by } if rings_for(&by) => {
                let SetupTarget::Ringing {
                    mut ringing,
                    forwarded_from,
                    no_answer,
                } = target
                else {
                    unreachable!("rings_for holds only while ringing")
                };
                ringing.devices.remove(&by.device);
                if ringing.devices.is_empty() {
                    self.not_answered(now, route, ringing, no_answer)
                } else {
                    Phase::Setup {
                        route,
                        target: SetupTarget::Ringing {
                            ringing,
                            forwarded_from,
                            no_answer,
                        },
                    }
                }
            }
            CallInput::LegFailed { party, .. } if party == self.caller => {
                self.fail_setup(now, route, target)
            }
            CallInput::MediaFailed { .. } => self.fail_setup(now, route, target),
            CallInput::Answer { by, .. } | CallInput::Reject { by } => {
                self.refuse(by, Refusal::NotRinging);
                Phase::Setup { route, target }
            }
            CallInput::Hangup { by } | CallInput::Invite { by, .. } => {
                self.refuse(by, Refusal::NotAParty);
                Phase::Setup { route, target }
            }
            CallInput::DeviceGone { .. }
            | CallInput::LegFailed { .. }
            | CallInput::LegAnswered { .. } => Phase::Setup { route, target },
        }
    }

    /// What offering the call to `callee` leads to (`route` already names `callee`).
    fn offer_outcome(&self, route: &Route, callee: &Callee) -> OfferOutcome {
        if let Some(to) = self.forward_target(route, &callee.forwarding, ForwardMode::Always) {
            return OfferOutcome::Redirect(to, ForwardMode::Always);
        }
        match &callee.reach {
            Reach::Online(devices) if !devices.is_empty() => OfferOutcome::Ring(devices.clone()),
            Reach::Online(_) | Reach::Offline => {
                match self.forward_target(route, &callee.forwarding, ForwardMode::NoAnswer) {
                    Some(to) => OfferOutcome::Redirect(to, ForwardMode::NoAnswer),
                    None => OfferOutcome::Fail {
                        journal: Some(CallResult::Missed),
                        result: CallResult::Failed,
                        reason: EndReason::Offline,
                    },
                }
            }
            Reach::Busy => {
                match self.forward_target(route, &callee.forwarding, ForwardMode::Busy) {
                    Some(to) => OfferOutcome::Redirect(to, ForwardMode::Busy),
                    None => OfferOutcome::Fail {
                        journal: Some(CallResult::Busy),
                        result: CallResult::Busy,
                        reason: EndReason::Busy,
                    },
                }
            }
            Reach::Unknown => OfferOutcome::Fail {
                journal: None,
                result: CallResult::Failed,
                reason: EndReason::UnknownUser,
            },
        }
    }

    /// Offers the call to `callee`: forward it, ring it, or end the call.
    fn offer(
        &mut self,
        now: TimestampMs,
        mut route: Route,
        callee: Callee,
        forwarded_from: Option<UserId>,
    ) -> Phase {
        let user = callee.user.clone();
        if !route.visited.contains(&user) {
            route.visited.push(user.clone());
        }
        let devices = match self.offer_outcome(&route, &callee) {
            OfferOutcome::Redirect(to, mode) => {
                self.journal_line(&user, now, None, CallResult::Forwarded);
                return self.redirect(now, route, user, to, mode);
            }
            OfferOutcome::Fail {
                journal,
                result,
                reason,
            } => {
                if let Some(journal) = journal {
                    self.journal_line(&user, now, None, journal);
                }
                return self.end_setup(now, &route.dialled, result, reason);
            }
            OfferOutcome::Ring(devices) => devices,
        };
        let ringing = Ringing {
            user: user.clone(),
            devices,
            since_ms: now,
            deadline_ms: now + self.config.ring_timeout_ms,
        };
        self.outputs.push_back(CallOutput::Ring {
            user: user.clone(),
            devices: ringing.devices.iter().cloned().collect(),
            from: self.caller.clone(),
            forwarded_from: forwarded_from.clone(),
            parties: Vec::new(),
        });
        self.set_telephony(&user, TelephonyState::Ringing);
        Phase::Setup {
            route,
            target: SetupTarget::Ringing {
                ringing,
                forwarded_from,
                no_answer: callee.forwarding.no_answer,
            },
        }
    }

    /// The forwarding target of `mode`, unless it would revisit a user or pass the hop limit.
    fn forward_target(
        &self,
        route: &Route,
        rules: &ForwardingRules,
        mode: ForwardMode,
    ) -> Option<UserId> {
        let to = rules.get(mode)?;
        if route.visited.contains(to) || route.forwards >= self.config.max_forwards {
            return None;
        }
        Some(to.clone())
    }

    fn redirect(
        &mut self,
        now: TimestampMs,
        mut route: Route,
        from: UserId,
        to: UserId,
        mode: ForwardMode,
    ) -> Phase {
        route.forwards += 1;
        self.outputs.push_back(CallOutput::Redirect {
            from: from.clone(),
            to: to.clone(),
            mode,
        });
        Phase::Setup {
            route,
            target: SetupTarget::Lookup {
                from,
                to,
                deadline_ms: now + self.config.lookup_timeout_ms,
            },
        }
    }

    /// The ring timeout passed, or the last ringing device went away.
    fn not_answered(
        &mut self,
        now: TimestampMs,
        route: Route,
        ringing: Ringing,
        no_answer: Option<UserId>,
    ) -> Phase {
        let forwarding = ForwardingRules {
            no_answer,
            ..ForwardingRules::default()
        };
        if let Some(to) = self.forward_target(&route, &forwarding, ForwardMode::NoAnswer) {
            self.stop_ringing(&ringing, None, StopReason::Forwarded, None);
            self.callee_journal(&ringing, now, CallResult::Forwarded);
            return self.redirect(now, route, ringing.user, to, ForwardMode::NoAnswer);
        }
        self.stop_ringing(&ringing, None, StopReason::NoAnswer, None);
        self.callee_journal(&ringing, now, CallResult::Missed);
        self.end_setup(now, &route.dialled, CallResult::Missed, EndReason::NoAnswer)
    }

    fn fail_setup(&mut self, now: TimestampMs, route: Route, target: SetupTarget) -> Phase {
        if let SetupTarget::Ringing { ringing, .. } = &target {
            self.stop_ringing(ringing, None, StopReason::Failed, None);
            self.callee_journal(ringing, now, CallResult::Failed);
        }
        self.end_setup(
            now,
            &route.dialled,
            CallResult::Failed,
            EndReason::MediaFailed,
        )
    }

    /// The first answer (or pickup): the call becomes active with the caller and `member`.
    fn connect_first(&mut self, now: TimestampMs, member: Member, offer: String) -> Phase {
        let caller = Member {
            endpoint: self.caller.clone(),
            direction: Direction::Outgoing,
            party: member.endpoint.user.clone(),
            started_ms: self.started_ms,
            answered_ms: now,
        };
        self.join(vec![caller], Vec::new(), member, offer)
    }

    /// Ends a call nobody answered: the caller's journal line (with `party`) and `Ended`.
    fn end_setup(
        &mut self,
        now: TimestampMs,
        party: &UserId,
        result: CallResult,
        reason: EndReason,
    ) -> Phase {
        self.journal(JournalRecord {
            user: self.caller.user.clone(),
            direction: Direction::Outgoing,
            party: party.clone(),
            started_ms: self.started_ms,
            answered_ms: None,
            ended_ms: now,
            result,
        });
        let caller = self.caller.user.clone();
        self.set_telephony(&caller, TelephonyState::Idle);
        self.finish(
            reason,
            vec![PartyResult {
                endpoint: self.caller.clone(),
                result,
            }],
        )
    }

    // ---- active ------------------------------------------------------------------------

    fn active_input(
        &mut self,
        now: TimestampMs,
        members: Vec<Member>,
        mut invitations: Vec<Invitation>,
        input: CallInput,
    ) -> Phase {
        let member_index = |by: &Endpoint| members.iter().position(|m| m.endpoint == *by);
        let invited_index =
            |by: &Endpoint| invitations.iter().position(|i| i.ringing.user == by.user);
        let is_member_user = |user: &UserId| members.iter().any(|m| m.endpoint.user == *user);
        match input {
            CallInput::Target(_) | CallInput::LegAnswered { .. } => {}
            CallInput::Answer { by, offer } => {
                if let Some(index) = invited_index(&by) {
                    let invitation = invitations.remove(index);
                    self.silence(
                        &invitation.ringing,
                        Some(&by.device),
                        StopReason::AnsweredElsewhere,
                        Some(&by.user),
                    );
                    let member = Member {
                        endpoint: by,
                        direction: Direction::Incoming,
                        party: invitation.inviter.user,
                        started_ms: invitation.ringing.since_ms,
                        answered_ms: now,
                    };
                    return self.join(members, invitations, member, offer);
                }
                let reason = if is_member_user(&by.user) {
                    Refusal::AlreadyAnswered
                } else {
                    Refusal::NotRinging
                };
                self.refuse(by, reason);
            }
            CallInput::Reject { by } => match invited_index(&by) {
                Some(index) => {
                    let invitation = invitations.remove(index);
                    self.invitation_failed(
                        now,
                        invitation,
                        Some(&by),
                        StopReason::Rejected,
                        CallResult::Rejected,
                        EndReason::Rejected,
                    );
                }
                None => self.refuse(by, Refusal::NotRinging),
            },
            CallInput::Hangup { by } | CallInput::DeviceGone { by }
                if member_index(&by).is_some() =>
            {
                let index = member_index(&by).expect("checked above");
                return self.leave(
                    now,
                    members,
                    invitations,
                    index,
                    CallResult::Answered,
                    EndReason::HungUp,
                );
            }
            CallInput::Hangup { by } => match invited_index(&by) {
                Some(index) => {
                    let invitation = invitations.remove(index);
                    self.invitation_failed(
                        now,
                        invitation,
                        Some(&by),
                        StopReason::Rejected,
                        CallResult::Rejected,
                        EndReason::Rejected,
                    );
                }
                None => self.refuse(by, Refusal::NotAParty),
            },
            CallInput::DeviceGone { by } => {
                if let Some(index) = invited_index(&by) {
                    invitations[index].ringing.devices.remove(&by.device);
                    if invitations[index].ringing.devices.is_empty() {
                        let invitation = invitations.remove(index);
                        self.invitation_failed(
                            now,
                            invitation,
                            None,
                            StopReason::NoAnswer,
                            CallResult::Missed,
                            EndReason::NoAnswer,
                        );
                    }
                }
            }
            CallInput::PickUp { by, .. } => self.refuse(by, Refusal::AlreadyAnswered),
            CallInput::Invite { by, invitee } => {
                if member_index(&by).is_none() {
                    self.refuse(by, Refusal::NotAParty);
                } else if is_member_user(&invitee.user)
                    || invitations.iter().any(|i| i.ringing.user == invitee.user)
                {
                    self.refuse(by, Refusal::AlreadyInCall);
                } else if members.len() + invitations.len() >= self.config.max_parties {
                    self.refuse(by, Refusal::CallFull);
                } else if let Some(invitation) = self.invite(now, &members, by, invitee) {
                    invitations.push(invitation);
                }
            }
            CallInput::LegFailed { party, .. } => {
                if let Some(index) = member_index(&party) {
                    return self.leave(
                        now,
                        members,
                        invitations,
                        index,
                        CallResult::Failed,
                        EndReason::MediaFailed,
                    );
                }
            }
            CallInput::MediaFailed { .. } => {
                return self.end_active(
                    now,
                    members,
                    invitations,
                    Vec::new(),
                    CallResult::Failed,
                    EndReason::MediaFailed,
                );
            }
        }
        Phase::Active {
            members,
            invitations,
        }
    }

    /// Rings `invitee` into the conference, or reports why not.
    fn invite(
        &mut self,
        now: TimestampMs,
        members: &[Member],
        inviter: Endpoint,
        invitee: Callee,
    ) -> Option<Invitation> {
        let user = invitee.user;
        let failed = match invitee.reach {
            Reach::Online(devices) if !devices.is_empty() => {
                let ringing = Ringing {
                    user: user.clone(),
                    devices,
                    since_ms: now,
                    deadline_ms: now + self.config.ring_timeout_ms,
                };
                self.outputs.push_back(CallOutput::Ring {
                    user: user.clone(),
                    devices: ringing.devices.iter().cloned().collect(),
                    from: inviter.clone(),
                    forwarded_from: None,
                    parties: members.iter().map(|m| m.endpoint.user.clone()).collect(),
                });
                self.set_telephony(&user, TelephonyState::Ringing);
                return Some(Invitation { ringing, inviter });
            }
            Reach::Online(_) | Reach::Offline => Some((CallResult::Missed, EndReason::Offline)),
            Reach::Busy => Some((CallResult::Busy, EndReason::Busy)),
            Reach::Unknown => None,
        };
        let reason = match failed {
            Some((result, reason)) => {
                self.journal(JournalRecord {
                    user: user.clone(),
                    direction: Direction::Incoming,
                    party: inviter.user.clone(),
                    started_ms: now,
                    answered_ms: None,
                    ended_ms: now,
                    result,
                });
                reason
            }
            None => EndReason::UnknownUser,
        };
        self.outputs.push_back(CallOutput::InviteFailed {
            inviter,
            invitee: user,
            reason,
        });
        None
    }

    /// `member` is connected: its leg, its state, and `Connected` for everyone.
    fn join(
        &mut self,
        mut members: Vec<Member>,
        invitations: Vec<Invitation>,
        member: Member,
        offer: String,
    ) -> Phase {
        let joined = member.endpoint.clone();
        self.set_telephony(&joined.user, TelephonyState::InCall);
        self.outputs.push_back(CallOutput::AddLeg {
            party: joined.clone(),
            offer,
        });
        members.push(member);
        self.outputs.push_back(CallOutput::Connected {
            joined,
            parties: members.iter().map(|m| m.endpoint.clone()).collect(),
        });
        Phase::Active {
            members,
            invitations,
        }
    }

    /// Member `index` leaves with `result`; the call ends (with `reason`) below two members.
    fn leave(
        &mut self,
        now: TimestampMs,
        mut members: Vec<Member>,
        invitations: Vec<Invitation>,
        index: usize,
        result: CallResult,
        reason: EndReason,
    ) -> Phase {
        let member = members.remove(index);
        self.member_journal(&member, now, result);
        self.set_telephony(&member.endpoint.user, TelephonyState::Idle);
        let left = PartyResult {
            endpoint: member.endpoint,
            result,
        };
        if members.len() >= 2 {
            self.outputs.push_back(CallOutput::RemoveLeg {
                party: left.endpoint.clone(),
            });
            self.outputs.push_back(CallOutput::PartyLeft {
                left,
                parties: members.iter().map(|m| m.endpoint.clone()).collect(),
            });
            return Phase::Active {
                members,
                invitations,
            };
        }
        self.end_active(now, members, invitations, vec![left], result, reason)
    }

    /// Ends an active call: the remaining members get `result`, invitations are withdrawn.
    /// `gone` are parties that left in the same step (they are told `call_ended` too).
    fn end_active(
        &mut self,
        now: TimestampMs,
        members: Vec<Member>,
        invitations: Vec<Invitation>,
        gone: Vec<PartyResult>,
        result: CallResult,
        reason: EndReason,
    ) -> Phase {
        let (stop, invitee_result) = if result == CallResult::Failed {
            (StopReason::Failed, CallResult::Failed)
        } else {
            (StopReason::Cancelled, CallResult::Missed)
        };
        for invitation in &invitations {
            self.stop_ringing(&invitation.ringing, None, stop, None);
            self.callee_journal_with_party(
                &invitation.ringing,
                &invitation.inviter.user,
                now,
                invitee_result,
            );
        }
        let mut parties = gone;
        for member in &members {
            self.member_journal(member, now, result);
            self.set_telephony(&member.endpoint.user, TelephonyState::Idle);
            parties.push(PartyResult {
                endpoint: member.endpoint.clone(),
                result,
            });
        }
        self.finish(reason, parties)
    }

    /// A conference invitation ended without a join; `except` is the device that declined.
    fn invitation_failed(
        &mut self,
        now: TimestampMs,
        invitation: Invitation,
        except: Option<&Endpoint>,
        stop: StopReason,
        result: CallResult,
        reason: EndReason,
    ) {
        let by = except.map(|e| e.user.clone());
        self.stop_ringing(
            &invitation.ringing,
            except.map(|e| &e.device),
            stop,
            by.as_ref(),
        );
        self.callee_journal_with_party(&invitation.ringing, &invitation.inviter.user, now, result);
        self.outputs.push_back(CallOutput::InviteFailed {
            inviter: invitation.inviter,
            invitee: invitation.ringing.user,
            reason,
        });
    }

    // ---- shared helpers ----------------------------------------------------------------

    /// Stops `ringing` on all its devices but `except`, and sets its user idle.
    fn stop_ringing(
        &mut self,
        ringing: &Ringing,
        except: Option<&DeviceId>,
        reason: StopReason,
        by: Option<&UserId>,
    ) {
        self.silence(ringing, except, reason, by);
        self.set_telephony(&ringing.user, TelephonyState::Idle);
    }

    /// Stops `ringing` on all its devices but `except` (the answering one); the user's
    /// telephony state is left to the caller of this.
    fn silence(
        &mut self,
        ringing: &Ringing,
        except: Option<&DeviceId>,
        reason: StopReason,
        by: Option<&UserId>,
    ) {
        let devices: Vec<DeviceId> = ringing
            .devices
            .iter()
            .filter(|d| Some(*d) != except)
            .cloned()
            .collect();
        if !devices.is_empty() {
            self.outputs.push_back(CallOutput::StopRinging {
                user: ringing.user.clone(),
                devices,
                reason,
                by: by.cloned(),
            });
        }
    }

    fn set_telephony(&mut self, user: &UserId, state: TelephonyState) {
        let current = self.telephony.get(user).copied().unwrap_or_default();
        if current == state {
            return;
        }
        if state == TelephonyState::Idle {
            self.telephony.remove(user);
        } else {
            self.telephony.insert(user.clone(), state);
        }
        self.outputs.push_back(CallOutput::Telephony {
            user: user.clone(),
            state,
        });
    }

    fn journal(&mut self, record: JournalRecord) {
        self.outputs.push_back(CallOutput::Journal(record));
    }

    /// An incoming line for a user who never answered, started and ended at `now`.
    fn journal_line(
        &mut self,
        user: &UserId,
        now: TimestampMs,
        answered_ms: Option<TimestampMs>,
        result: CallResult,
    ) {
        self.journal(JournalRecord {
            user: user.clone(),
            direction: Direction::Incoming,
            party: self.caller.user.clone(),
            started_ms: now,
            answered_ms,
            ended_ms: now,
            result,
        });
    }

    fn callee_journal(&mut self, ringing: &Ringing, now: TimestampMs, result: CallResult) {
        let caller = self.caller.user.clone();
        self.callee_journal_with_party(ringing, &caller, now, result);
    }

    fn callee_journal_with_party(
        &mut self,
        ringing: &Ringing,
        party: &UserId,
        now: TimestampMs,
        result: CallResult,
    ) {
        self.journal(JournalRecord {
            user: ringing.user.clone(),
            direction: Direction::Incoming,
            party: party.clone(),
            started_ms: ringing.since_ms,
            answered_ms: None,
            ended_ms: now,
            result,
        });
    }

    fn member_journal(&mut self, member: &Member, now: TimestampMs, result: CallResult) {
        self.journal(JournalRecord {
            user: member.endpoint.user.clone(),
            direction: member.direction,
            party: member.party.clone(),
            started_ms: member.started_ms,
            answered_ms: Some(member.answered_ms),
            ended_ms: now,
            result,
        });
    }

    fn refuse(&mut self, to: Endpoint, reason: Refusal) {
        self.outputs.push_back(CallOutput::Refused { to, reason });
    }

    fn finish(&mut self, reason: EndReason, parties: Vec<PartyResult>) -> Phase {
        self.outputs
            .push_back(CallOutput::Ended { reason, parties });
        Phase::Ended
    }
}

/// The device behind a device command, to refuse it after the call ended.
fn input_endpoint(input: &CallInput) -> Option<Endpoint> {
    match input {
        CallInput::Answer { by, .. }
        | CallInput::Reject { by }
        | CallInput::Hangup { by }
        | CallInput::PickUp { by, .. }
        | CallInput::Invite { by, .. } => Some(by.clone()),
        CallInput::Target(_)
        | CallInput::DeviceGone { .. }
        | CallInput::LegAnswered { .. }
        | CallInput::LegFailed { .. }
        | CallInput::MediaFailed { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- script helpers ----------------------------------------------------------------

    fn ep(text: &str) -> Endpoint {
        let (user, device) = text.split_once('/').expect("user/device");
        Endpoint::new(UserId::from(user), DeviceId::from(device))
    }

    fn online(user: &str, devices: &[&str]) -> Callee {
        Callee {
            user: UserId::from(user),
            reach: Reach::Online(devices.iter().map(|d| DeviceId::from(*d)).collect()),
            forwarding: ForwardingRules::default(),
        }
    }

    fn reach(user: &str, reach: Reach) -> Callee {
        Callee {
            user: UserId::from(user),
            reach,
            forwarding: ForwardingRules::default(),
        }
    }

    fn forwarding(mut callee: Callee, mode: ForwardMode, to: &str) -> Callee {
        callee.forwarding.set(mode, Some(UserId::from(to)));
        callee
    }

    fn answer(by: &str) -> CallInput {
        CallInput::Answer {
            by: ep(by),
            offer: format!("sdp-{by}"),
        }
    }

    fn reject(by: &str) -> CallInput {
        CallInput::Reject { by: ep(by) }
    }

    fn hangup(by: &str) -> CallInput {
        CallInput::Hangup { by: ep(by) }
    }

    fn name<T: serde::Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn list<T: fmt::Display>(items: &[T]) -> String {
        items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `carol online [desk phone] busy->dave`
    fn render_callee(callee: &Callee) -> String {
        let mut line = match &callee.reach {
            Reach::Unknown => format!("{} unknown", callee.user),
            Reach::Offline => format!("{} offline", callee.user),
            Reach::Busy => format!("{} busy", callee.user),
            Reach::Online(devices) => {
                let devices: Vec<&DeviceId> = devices.iter().collect();
                format!("{} online [{}]", callee.user, list(&devices))
            }
        };
        for mode in [
            ForwardMode::Always,
            ForwardMode::Busy,
            ForwardMode::NoAnswer,
        ] {
            if let Some(to) = callee.forwarding.get(mode) {
                line += &format!(" {}->{to}", mode.as_str());
            }
        }
        line
    }

    fn render_input(input: &CallInput) -> String {
        match input {
            CallInput::Target(c) => format!("target {}", render_callee(c)),
            CallInput::Answer { by, .. } => format!("answer {by}"),
            CallInput::Reject { by } => format!("reject {by}"),
            CallInput::Hangup { by } => format!("hangup {by}"),
            CallInput::PickUp { by, .. } => format!("pickup {by}"),
            CallInput::Invite { by, invitee } => {
                format!("invite {} by {by}", render_callee(invitee))
            }
            CallInput::DeviceGone { by } => format!("device-gone {by}"),
            CallInput::LegAnswered { party } => format!("leg-answered {party}"),
            CallInput::LegFailed { party, reason } => format!("leg-failed {party} ({reason})"),
            CallInput::MediaFailed { reason } => format!("media-failed ({reason})"),
        }
    }

    fn render(output: &CallOutput) -> String {
        match output {
            CallOutput::Ring {
                user,
                devices,
                from,
                forwarded_from,
                parties,
            } => {
                let mut line = format!("ring {user} [{}] from {from}", list(devices));
                if let Some(f) = forwarded_from {
                    line += &format!(" forwarded-from {f}");
                }
                if !parties.is_empty() {
                    line += &format!(" parties [{}]", list(parties));
                }
                line
            }
            CallOutput::StopRinging {
                user,
                devices,
                reason,
                by,
            } => {
                let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
                format!(
                    "stop-ringing {user} [{}] {}{by}",
                    list(devices),
                    name(reason)
                )
            }
            CallOutput::Redirect { from, to, mode } => {
                format!("redirect {from} -> {to} ({})", mode.as_str())
            }
            CallOutput::AddLeg { party, offer } => format!("add-leg {party} {offer}"),
            CallOutput::MoveMedia {
                party,
                offer,
                attempt,
            } => format!("move-media #{attempt} add-leg {party} {offer}"),
            CallOutput::RemoveLeg { party } => format!("remove-leg {party}"),
            CallOutput::Connected { joined, parties } => {
                format!("connected +{joined}: {}", list(parties))
            }
            CallOutput::PartyLeft { left, parties } => format!(
                "party-left {}={}: {}",
                left.endpoint,
                name(left.result),
                list(parties)
            ),
            CallOutput::InviteFailed {
                inviter,
                invitee,
                reason,
            } => format!("invite-failed {invitee} {} -> {inviter}", reason.as_str()),
            CallOutput::Refused { to, reason } => format!("refused {to} {}", name(reason)),
            CallOutput::Telephony { user, state } => format!("tel {user} {}", name(state)),
            CallOutput::Journal(j) => format!(
                "journal {} {} {} {}..{}..{} {}",
                j.user,
                name(j.direction),
                j.party,
                j.started_ms,
                j.answered_ms.map(|a| a.to_string()).unwrap_or("-".into()),
                j.ended_ms,
                name(j.result)
            ),
            CallOutput::Ended { reason, parties } => {
                let parties: Vec<String> = parties
                    .iter()
                    .map(|p| format!("{}={}", p.endpoint, name(p.result)))
                    .collect();
                format!("ended {}: {}", reason.as_str(), parties.join(" "))
            }
        }
    }

    /// Drives one call like a shell would: timers fire before each later input, every step
    /// is drained, and the trace records inputs, outputs and the armed timer.
    struct Sim {
        call: Call,
        trace: String,
        timer: Option<TimestampMs>,
    }

    impl Sim {
        /// Places a call whose caller's leg the MediaServer takes at once.
        fn place(now: TimestampMs, caller: &str, callee: Callee) -> Self {
            Self::place_with(CallConfig::default(), now, caller, callee)
        }

        fn place_with(config: CallConfig, now: TimestampMs, caller: &str, callee: Callee) -> Self {
            let mut sim = Self::place_pending(config, now, caller, callee);
            if !sim.call.is_ended() {
                sim.input(now, CallInput::LegAnswered { party: ep(caller) });
            }
            sim
        }

        /// Places a call and leaves the caller's leg to the script.
        fn place_pending(
            config: CallConfig,
            now: TimestampMs,
            caller: &str,
            callee: Callee,
        ) -> Self {
            let label = format!("@{now} place {caller} -> {}", render_callee(&callee));
            let call = Call::new(
                config,
                CallId::from("c1"),
                ep(caller),
                format!("sdp-{caller}"),
                callee,
                now,
            );
            let mut sim = Self {
                call,
                trace: String::new(),
                timer: None,
            };
            sim.trace += &label;
            sim.trace.push('\n');
            sim.drain();
            sim
        }

        /// Fires the timers due up to `now`.
        fn wait(&mut self, now: TimestampMs) {
            while let Some(at) = self.call.poll_timeout().filter(|at| *at <= now) {
                self.trace += &format!("@{at} timeout\n");
                self.call.handle_timeout(at);
                self.drain();
            }
        }

        fn input(&mut self, now: TimestampMs, input: CallInput) {
            self.wait(now);
            self.trace += &format!("@{now} {}\n", render_input(&input));
            self.call.handle_input(now, input);
            self.drain();
        }

        fn drain(&mut self) {
            while let Some(output) = self.call.poll_output() {
                self.trace += &format!("  {}\n", render(&output));
            }
            let timer = self.call.poll_timeout();
            if timer != self.timer {
                self.timer = timer;
                match timer {
                    Some(at) => self.trace += &format!("  timer {at}\n"),
                    None => self.trace += "  timer none\n",
                }
            }
        }
    }

    /// Compares a trace with the expected one, ignoring indentation of the expectation.
    fn check(sim: &Sim, expected: &str) {
        let expected: String = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                if l.starts_with('@') {
                    format!("{l}\n")
                } else {
                    format!("  {l}\n")
                }
            })
            .collect();
        assert_eq!(sim.trace, expected, "\nactual trace:\n{}", sim.trace);
    }

    // ---- the scripts -------------------------------------------------------------------

    #[test]
    fn all_devices_ring_and_the_first_answer_wins() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk", "phone", "web"]));
        sim.input(4_000, answer("bob/phone"));
        sim.input(4_100, answer("bob/desk"));
        sim.input(60_000, hangup("bob/phone"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk phone web]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk phone web] from alice/desk
                tel bob ringing
                timer 30000
            @4000 answer bob/phone
                stop-ringing bob [desk web] answered_elsewhere by bob
                tel bob in_call
                add-leg bob/phone sdp-bob/phone
                connected +bob/phone: alice/desk bob/phone
                timer none
            @4100 answer bob/desk
                refused bob/desk already_answered
            @60000 hangup bob/phone
                journal bob incoming alice 0..4000..60000 answered
                tel bob idle
                journal alice outgoing bob 0..4000..60000 answered
                tel alice idle
                ended hung_up: bob/phone=answered alice/desk=answered
            "#,
        );
    }

    #[test]
    fn reject_by_any_device_stops_all() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk", "phone"]));
        sim.input(2_000, reject("bob/desk"));
        sim.input(2_500, answer("bob/phone"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk phone]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk phone] from alice/desk
                tel bob ringing
                timer 30000
            @2000 reject bob/desk
                stop-ringing bob [phone] rejected by bob
                tel bob idle
                journal bob incoming alice 0..-..2000 rejected
                journal alice outgoing bob 0..-..2000 rejected
                tel alice idle
                ended rejected: alice/desk=rejected
                timer none
            @2500 answer bob/phone
                refused bob/phone call_ended
            "#,
        );
    }

    #[test]
    fn a_ringing_device_hanging_up_rejects() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, hangup("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 hangup bob/desk
                tel bob idle
                journal bob incoming alice 0..-..1000 rejected
                journal alice outgoing bob 0..-..1000 rejected
                tel alice idle
                ended rejected: alice/desk=rejected
                timer none
            "#,
        );
    }

    #[test]
    fn no_answer_within_the_ring_timeout_is_missed() {
        let config = CallConfig {
            ring_timeout_ms: 20_000,
            ..CallConfig::default()
        };
        let mut sim = Sim::place_with(config, 1_000, "alice/desk", online("bob", &["desk"]));
        sim.wait(20_999);
        sim.wait(21_000);
        check(
            &sim,
            r#"
            @1000 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @1000 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 21000
            @21000 timeout
                stop-ringing bob [desk] no_answer
                tel bob idle
                journal bob incoming alice 1000..-..21000 missed
                journal alice outgoing bob 1000..-..21000 missed
                tel alice idle
                ended no_answer: alice/desk=missed
                timer none
            "#,
        );
    }

    #[test]
    fn caller_cancels_while_ringing() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk", "phone"]));
        sim.input(3_000, hangup("alice/laptop"));
        sim.input(3_000, hangup("alice/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk phone]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk phone] from alice/desk
                tel bob ringing
                timer 30000
            @3000 hangup alice/laptop
                refused alice/laptop not_a_party
            @3000 hangup alice/desk
                stop-ringing bob [desk phone] cancelled by alice
                tel bob idle
                journal bob incoming alice 0..-..3000 missed
                journal alice outgoing bob 0..-..3000 missed
                tel alice idle
                ended cancelled: alice/desk=missed
                timer none
            "#,
        );
    }

    #[test]
    fn unknown_offline_and_busy_callees_end_at_once() {
        let unknown = Sim::place(0, "alice/desk", reach("nobody", Reach::Unknown));
        let offline = Sim::place(0, "alice/desk", reach("bob", Reach::Offline));
        let no_devices = Sim::place(0, "alice/desk", online("bob", &[]));
        let busy = Sim::place(0, "alice/desk", reach("bob", Reach::Busy));
        check(
            &unknown,
            r#"
            @0 place alice/desk -> nobody unknown
                journal alice outgoing nobody 0..-..0 failed
                ended unknown_user: alice/desk=failed
            "#,
        );
        check(
            &offline,
            r#"
            @0 place alice/desk -> bob offline
                journal bob incoming alice 0..-..0 missed
                journal alice outgoing bob 0..-..0 failed
                ended offline: alice/desk=failed
            "#,
        );
        // An empty device list is the same as offline.
        let outputs = |sim: &Sim| {
            sim.trace
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(outputs(&no_devices), outputs(&offline));
        check(
            &busy,
            r#"
            @0 place alice/desk -> bob busy
                journal bob incoming alice 0..-..0 busy
                journal alice outgoing bob 0..-..0 busy
                ended busy: alice/desk=busy
            "#,
        );
    }

    #[test]
    fn busy_forward_rings_the_target() {
        let bob = forwarding(reach("bob", Reach::Busy), ForwardMode::Busy, "carol");
        let mut sim = Sim::place(0, "alice/desk", bob);
        sim.input(100, CallInput::Target(online("dave", &["desk"])));
        sim.input(200, CallInput::Target(online("carol", &["desk"])));
        sim.input(5_000, answer("carol/desk"));
        sim.input(9_000, hangup("alice/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob busy busy->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                journal bob incoming alice 0..-..0 forwarded
                redirect bob -> carol (busy)
                timer 5000
            @100 target dave online [desk]
            @200 target carol online [desk]
                ring carol [desk] from alice/desk forwarded-from bob
                tel carol ringing
                timer 30200
            @5000 answer carol/desk
                tel carol in_call
                add-leg carol/desk sdp-carol/desk
                connected +carol/desk: alice/desk carol/desk
                timer none
            @9000 hangup alice/desk
                journal alice outgoing carol 0..5000..9000 answered
                tel alice idle
                journal carol incoming alice 200..5000..9000 answered
                tel carol idle
                ended hung_up: alice/desk=answered carol/desk=answered
            "#,
        );
    }

    #[test]
    fn no_answer_forward_after_the_timeout_and_offline_forward_at_once() {
        let bob = forwarding(online("bob", &["desk"]), ForwardMode::NoAnswer, "carol");
        let mut sim = Sim::place(0, "alice/desk", bob);
        sim.input(30_050, CallInput::Target(online("carol", &["phone"])));
        sim.input(31_000, answer("carol/phone"));
        sim.input(40_000, hangup("carol/phone"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] no_answer->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @30000 timeout
                stop-ringing bob [desk] forwarded
                tel bob idle
                journal bob incoming alice 0..-..30000 forwarded
                redirect bob -> carol (no_answer)
                timer 35000
            @30050 target carol online [phone]
                ring carol [phone] from alice/desk forwarded-from bob
                tel carol ringing
                timer 60050
            @31000 answer carol/phone
                tel carol in_call
                add-leg carol/phone sdp-carol/phone
                connected +carol/phone: alice/desk carol/phone
                timer none
            @40000 hangup carol/phone
                journal carol incoming alice 30050..31000..40000 answered
                tel carol idle
                journal alice outgoing carol 0..31000..40000 answered
                tel alice idle
                ended hung_up: carol/phone=answered alice/desk=answered
            "#,
        );

        let bob = forwarding(reach("bob", Reach::Offline), ForwardMode::NoAnswer, "carol");
        let sim = Sim::place(0, "alice/desk", bob);
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob offline no_answer->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                journal bob incoming alice 0..-..0 forwarded
                redirect bob -> carol (no_answer)
                timer 5000
            "#,
        );
    }

    #[test]
    fn always_forward_skips_ringing_and_loops_are_cut() {
        // bob always → carol, carol always → bob: carol's rule would return to bob, so
        // carol's devices ring.
        let bob = forwarding(online("bob", &["desk"]), ForwardMode::Always, "carol");
        let mut sim = Sim::place(0, "alice/desk", bob);
        let carol = forwarding(online("carol", &["desk"]), ForwardMode::Always, "bob");
        sim.input(100, CallInput::Target(carol));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] always->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                journal bob incoming alice 0..-..0 forwarded
                redirect bob -> carol (always)
                timer 5000
            @100 target carol online [desk] always->bob
                ring carol [desk] from alice/desk forwarded-from bob
                tel carol ringing
                timer 30100
            "#,
        );

        // A rule back to the caller is cut too, and the hop limit holds.
        let config = CallConfig {
            max_forwards: 1,
            ..CallConfig::default()
        };
        let bob = forwarding(online("bob", &["desk"]), ForwardMode::Always, "alice");
        let sim = Sim::place_with(config, 0, "alice/desk", bob);
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] always->alice
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            "#,
        );
        let bob = forwarding(online("bob", &["desk"]), ForwardMode::Always, "carol");
        let mut sim = Sim::place_with(config, 0, "alice/desk", bob);
        let carol = forwarding(reach("carol", Reach::Busy), ForwardMode::Busy, "dave");
        sim.input(100, CallInput::Target(carol));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] always->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                journal bob incoming alice 0..-..0 forwarded
                redirect bob -> carol (always)
                timer 5000
            @100 target carol busy busy->dave
                journal carol incoming alice 100..-..100 busy
                journal alice outgoing bob 0..-..100 busy
                tel alice idle
                ended busy: alice/desk=busy
                timer none
            "#,
        );
    }

    #[test]
    fn a_forward_target_that_is_never_looked_up_fails_the_call() {
        let bob = forwarding(online("bob", &["desk"]), ForwardMode::Always, "carol");
        let mut sim = Sim::place(0, "alice/desk", bob);
        sim.wait(10_000);
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] always->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                journal bob incoming alice 0..-..0 forwarded
                redirect bob -> carol (always)
                timer 5000
            @5000 timeout
                journal alice outgoing bob 0..-..5000 failed
                tel alice idle
                ended setup_failed: alice/desk=failed
                timer none
            "#,
        );
    }

    #[test]
    fn pickup_by_a_colleague() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk", "phone"]));
        sim.input(
            1_000,
            CallInput::PickUp {
                by: ep("bob/desk"),
                offer: "sdp".into(),
            },
        );
        sim.input(
            2_000,
            CallInput::PickUp {
                by: ep("carol/desk"),
                offer: "sdp-carol/desk".into(),
            },
        );
        sim.input(2_100, answer("bob/phone"));
        sim.input(
            2_200,
            CallInput::PickUp {
                by: ep("dave/desk"),
                offer: "sdp".into(),
            },
        );
        sim.input(7_000, hangup("alice/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk phone]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk phone] from alice/desk
                tel bob ringing
                timer 30000
            @1000 pickup bob/desk
                refused bob/desk own_call
            @2000 pickup carol/desk
                stop-ringing bob [desk phone] picked_up by carol
                tel bob idle
                journal bob incoming alice 0..-..2000 picked_up
                tel carol in_call
                add-leg carol/desk sdp-carol/desk
                connected +carol/desk: alice/desk carol/desk
                timer none
            @2100 answer bob/phone
                refused bob/phone not_ringing
            @2200 pickup dave/desk
                refused dave/desk already_answered
            @7000 hangup alice/desk
                journal alice outgoing carol 0..2000..7000 answered
                tel alice idle
                journal carol incoming alice 2000..2000..7000 answered
                tel carol idle
                ended hung_up: alice/desk=answered carol/desk=answered
            "#,
        );
    }

    #[test]
    fn conference_of_four() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, answer("bob/desk"));
        let carol = online("carol", &["desk", "phone"]);
        sim.input(
            2_000,
            CallInput::Invite {
                by: ep("bob/desk"),
                invitee: carol.clone(),
            },
        );
        sim.input(
            2_100,
            CallInput::Invite {
                by: ep("alice/desk"),
                invitee: carol,
            },
        );
        sim.input(
            2_200,
            CallInput::Invite {
                by: ep("alice/desk"),
                invitee: reach("erin", Reach::Busy),
            },
        );
        sim.input(3_000, answer("carol/phone"));
        sim.input(
            4_000,
            CallInput::Invite {
                by: ep("carol/phone"),
                invitee: online("dave", &["desk"]),
            },
        );
        sim.input(5_000, answer("dave/desk"));
        sim.input(10_000, hangup("bob/desk"));
        sim.input(11_000, hangup("alice/desk"));
        sim.input(12_000, hangup("carol/phone"));
        sim.input(12_500, hangup("dave/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            @2000 invite carol online [desk phone] by bob/desk
                ring carol [desk phone] from bob/desk parties [alice bob]
                tel carol ringing
                timer 32000
            @2100 invite carol online [desk phone] by alice/desk
                refused alice/desk already_in_call
            @2200 invite erin busy by alice/desk
                journal erin incoming alice 2200..-..2200 busy
                invite-failed erin busy -> alice/desk
            @3000 answer carol/phone
                stop-ringing carol [desk] answered_elsewhere by carol
                tel carol in_call
                add-leg carol/phone sdp-carol/phone
                connected +carol/phone: alice/desk bob/desk carol/phone
                timer none
            @4000 invite dave online [desk] by carol/phone
                ring dave [desk] from carol/phone parties [alice bob carol]
                tel dave ringing
                timer 34000
            @5000 answer dave/desk
                tel dave in_call
                add-leg dave/desk sdp-dave/desk
                connected +dave/desk: alice/desk bob/desk carol/phone dave/desk
                timer none
            @10000 hangup bob/desk
                journal bob incoming alice 0..1000..10000 answered
                tel bob idle
                remove-leg bob/desk
                party-left bob/desk=answered: alice/desk carol/phone dave/desk
            @11000 hangup alice/desk
                journal alice outgoing bob 0..1000..11000 answered
                tel alice idle
                remove-leg alice/desk
                party-left alice/desk=answered: carol/phone dave/desk
            @12000 hangup carol/phone
                journal carol incoming bob 2000..3000..12000 answered
                tel carol idle
                journal dave incoming carol 4000..5000..12000 answered
                tel dave idle
                ended hung_up: carol/phone=answered dave/desk=answered
            @12500 hangup dave/desk
                refused dave/desk call_ended
            "#,
        );
    }

    #[test]
    fn invitations_time_out_get_rejected_and_respect_the_limit() {
        let config = CallConfig {
            max_parties: 3,
            ..CallConfig::default()
        };
        let mut sim = Sim::place_with(config, 0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, answer("bob/desk"));
        let invite = |user: &str, devices: &[&str]| CallInput::Invite {
            by: ep("alice/desk"),
            invitee: online(user, devices),
        };
        sim.input(2_000, invite("carol", &["desk"]));
        sim.input(3_000, invite("dave", &["desk"]));
        sim.input(40_000, invite("dave", &["desk", "phone"]));
        sim.input(41_000, reject("dave/phone"));
        sim.input(42_000, invite("erin", &["desk"]));
        // Bob leaves while erin still rings: two parties are needed, so the call ends.
        sim.input(43_000, hangup("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            @2000 invite carol online [desk] by alice/desk
                ring carol [desk] from alice/desk parties [alice bob]
                tel carol ringing
                timer 32000
            @3000 invite dave online [desk] by alice/desk
                refused alice/desk call_full
            @32000 timeout
                stop-ringing carol [desk] no_answer
                tel carol idle
                journal carol incoming alice 2000..-..32000 missed
                invite-failed carol no_answer -> alice/desk
                timer none
            @40000 invite dave online [desk phone] by alice/desk
                ring dave [desk phone] from alice/desk parties [alice bob]
                tel dave ringing
                timer 70000
            @41000 reject dave/phone
                stop-ringing dave [desk] rejected by dave
                tel dave idle
                journal dave incoming alice 40000..-..41000 rejected
                invite-failed dave rejected -> alice/desk
                timer none
            @42000 invite erin online [desk] by alice/desk
                ring erin [desk] from alice/desk parties [alice bob]
                tel erin ringing
                timer 72000
            @43000 hangup bob/desk
                journal bob incoming alice 0..1000..43000 answered
                tel bob idle
                stop-ringing erin [desk] cancelled
                tel erin idle
                journal erin incoming alice 42000..-..43000 missed
                journal alice outgoing bob 0..1000..43000 answered
                tel alice idle
                ended hung_up: bob/desk=answered alice/desk=answered
                timer none
            "#,
        );
    }

    #[test]
    fn media_failure_ends_the_call_for_all() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, answer("bob/desk"));
        sim.input(
            1_500,
            CallInput::Invite {
                by: ep("alice/desk"),
                invitee: online("carol", &["desk"]),
            },
        );
        sim.input(
            2_000,
            CallInput::MediaFailed {
                reason: "media-1 died".into(),
            },
        );
        sim.input(2_100, hangup("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            @1500 invite carol online [desk] by alice/desk
                ring carol [desk] from alice/desk parties [alice bob]
                tel carol ringing
                timer 31500
            @2000 media-failed (media-1 died)
                stop-ringing carol [desk] failed
                tel carol idle
                journal carol incoming alice 1500..-..2000 failed
                journal alice outgoing bob 0..1000..2000 failed
                tel alice idle
                journal bob incoming alice 0..1000..2000 failed
                tel bob idle
                ended media_failed: alice/desk=failed bob/desk=failed
                timer none
            @2100 hangup bob/desk
                refused bob/desk call_ended
            "#,
        );

        // Before anyone answered: the ringing stops, the caller's line says failed.
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(
            500,
            CallInput::LegFailed {
                party: ep("alice/desk"),
                reason: "bad sdp".into(),
            },
        );
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @500 leg-failed alice/desk (bad sdp)
                stop-ringing bob [desk] failed
                tel bob idle
                journal bob incoming alice 0..-..500 failed
                journal alice outgoing bob 0..-..500 failed
                tel alice idle
                ended media_failed: alice/desk=failed
                timer none
            "#,
        );
    }

    #[test]
    fn a_failed_leg_drops_one_party_of_a_conference() {
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, answer("bob/desk"));
        sim.input(
            1_500,
            CallInput::Invite {
                by: ep("alice/desk"),
                invitee: online("carol", &["desk"]),
            },
        );
        sim.input(2_000, answer("carol/desk"));
        let failed = |party: &str| CallInput::LegFailed {
            party: ep(party),
            reason: "ice failed".into(),
        };
        sim.input(3_000, failed("carol/desk"));
        sim.input(4_000, failed("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            @1500 invite carol online [desk] by alice/desk
                ring carol [desk] from alice/desk parties [alice bob]
                tel carol ringing
                timer 31500
            @2000 answer carol/desk
                tel carol in_call
                add-leg carol/desk sdp-carol/desk
                connected +carol/desk: alice/desk bob/desk carol/desk
                timer none
            @3000 leg-failed carol/desk (ice failed)
                journal carol incoming alice 1500..2000..3000 failed
                tel carol idle
                remove-leg carol/desk
                party-left carol/desk=failed: alice/desk bob/desk
            @4000 leg-failed bob/desk (ice failed)
                journal bob incoming alice 0..1000..4000 failed
                tel bob idle
                journal alice outgoing bob 0..1000..4000 failed
                tel alice idle
                ended media_failed: bob/desk=failed alice/desk=failed
            "#,
        );
    }

    #[test]
    fn devices_going_away() {
        // The last ringing device goes: the call counts as not answered at once.
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk", "phone"]));
        sim.input(1_000, CallInput::DeviceGone { by: ep("bob/desk") });
        sim.input(
            2_000,
            CallInput::DeviceGone {
                by: ep("bob/phone"),
            },
        );
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk phone]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk phone] from alice/desk
                tel bob ringing
                timer 30000
            @1000 device-gone bob/desk
            @2000 device-gone bob/phone
                tel bob idle
                journal bob incoming alice 0..-..2000 missed
                journal alice outgoing bob 0..-..2000 missed
                tel alice idle
                ended no_answer: alice/desk=missed
                timer none
            "#,
        );

        // A connected device goes: its party leaves, and a 1:1 call ends.
        let mut sim = Sim::place(0, "alice/desk", online("bob", &["desk"]));
        sim.input(1_000, answer("bob/desk"));
        sim.input(
            5_000,
            CallInput::DeviceGone {
                by: ep("alice/desk"),
            },
        );
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @0 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30000
            @1000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            @5000 device-gone alice/desk
                journal alice outgoing bob 0..1000..5000 answered
                tel alice idle
                journal bob incoming alice 0..1000..5000 answered
                tel bob idle
                ended hung_up: alice/desk=answered bob/desk=answered
            "#,
        );
    }

    #[test]
    fn nobody_rings_before_the_callers_leg_stands() {
        let mut sim = Sim::place_pending(
            CallConfig::default(),
            0,
            "alice/desk",
            online("bob", &["desk"]),
        );
        sim.input(100, answer("bob/desk"));
        sim.input(150, hangup("bob/desk"));
        sim.input(
            200,
            CallInput::LegAnswered {
                party: ep("bob/desk"),
            },
        );
        sim.input(
            300,
            CallInput::LegAnswered {
                party: ep("alice/desk"),
            },
        );
        sim.input(2_000, answer("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @100 answer bob/desk
                refused bob/desk not_ringing
            @150 hangup bob/desk
                refused bob/desk not_a_party
            @200 leg-answered bob/desk
            @300 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30300
            @2000 answer bob/desk
                tel bob in_call
                add-leg bob/desk sdp-bob/desk
                connected +bob/desk: alice/desk bob/desk
                timer none
            "#,
        );
    }

    #[test]
    fn a_media_server_failing_the_callers_leg_is_replaced_before_anyone_rings() {
        let failed = |reason: &str| CallInput::LegFailed {
            party: ep("alice/desk"),
            reason: reason.into(),
        };
        let mut sim = Sim::place_pending(
            CallConfig::default(),
            0,
            "alice/desk",
            online("bob", &["desk"]),
        );
        sim.input(10, failed("connection refused"));
        sim.input(20, failed("connection reset"));
        sim.input(
            30,
            CallInput::LegAnswered {
                party: ep("alice/desk"),
            },
        );
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @10 leg-failed alice/desk (connection refused)
                move-media #2 add-leg alice/desk sdp-alice/desk
            @20 leg-failed alice/desk (connection reset)
                move-media #3 add-leg alice/desk sdp-alice/desk
            @30 leg-answered alice/desk
                ring bob [desk] from alice/desk
                tel bob ringing
                timer 30030
            "#,
        );

        // Every try fails: the call fails for the caller alone; bob never heard of it.
        let mut sim = Sim::place_pending(
            CallConfig {
                media_tries: 2,
                ..CallConfig::default()
            },
            0,
            "alice/desk",
            online("bob", &["desk"]),
        );
        sim.input(10, failed("connection refused"));
        sim.input(20, failed("timed out"));
        sim.input(30, answer("bob/desk"));
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk]
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @10 leg-failed alice/desk (connection refused)
                move-media #2 add-leg alice/desk sdp-alice/desk
            @20 leg-failed alice/desk (timed out)
                journal alice outgoing bob 0..-..20 failed
                tel alice idle
                ended media_failed: alice/desk=failed
            @30 answer bob/desk
                refused bob/desk call_ended
            "#,
        );
    }

    #[test]
    fn a_call_still_preparing_ends_without_a_ring() {
        let prepare = || {
            Sim::place_pending(
                CallConfig::default(),
                0,
                "alice/desk",
                forwarding(online("bob", &["desk"]), ForwardMode::Always, "carol"),
            )
        };
        // No MediaServer left to try (the shell says so).
        let mut sim = prepare();
        sim.input(
            50,
            CallInput::MediaFailed {
                reason: "no media server available".into(),
            },
        );
        // The caller gives up first; the leg's late answer changes nothing.
        let mut cancelled = prepare();
        cancelled.input(60, hangup("alice/desk"));
        cancelled.input(
            70,
            CallInput::LegAnswered {
                party: ep("alice/desk"),
            },
        );
        check(
            &sim,
            r#"
            @0 place alice/desk -> bob online [desk] always->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @50 media-failed (no media server available)
                journal alice outgoing bob 0..-..50 failed
                tel alice idle
                ended media_failed: alice/desk=failed
            "#,
        );
        check(
            &cancelled,
            r#"
            @0 place alice/desk -> bob online [desk] always->carol
                tel alice in_call
                add-leg alice/desk sdp-alice/desk
            @60 hangup alice/desk
                journal alice outgoing bob 0..-..60 missed
                tel alice idle
                ended cancelled: alice/desk=missed
            @70 leg-answered alice/desk
            "#,
        );
    }
}
