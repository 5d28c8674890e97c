//! Calls from one device: the call commands of a [`Connection`], and [`CallSession`], which
//! follows one call's events and says what the device must do next.
//!
//! The protocol is `docs/calls.md`. A device offers SDP for its own leg on the call's
//! MediaServer (a [`crate::peer::ClientPeer`]) in `call_place`, `call_answer` or `call_pickup`,
//! and gets the MediaServer's answer back as `call_media_answer`. Events a command causes may
//! arrive before its `ack`; [`Connection::request_ack`] keeps them queued, in order, for
//! [`Connection::next_event`], so nothing about a call is lost between placing it and
//! following it.
//!
//! [`CallSession`] is a core in the sense of `STYLE.md`: no IO, no clock, no tasks. The
//! program that holds the socket and the peer feeds it the call's events and the time, drains
//! its [`CallAction`]s and arms a timer from [`CallSession::poll_timeout`]; the CLI's `call`,
//! `pickup` and `listen --auto-answer` all drive it that way.

use crate::connection::Connection;
use crate::error::ClientError;
use shared::api::{CallResult, ErrorCode};
use shared::call::{CallCommand, CallEvent, EndReason, ForwardMode};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{CallId, MediaServerId, UserId};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long to wait for `call_ended` after hanging up before giving up on it.
pub const END_GRACE: Duration = Duration::from_secs(10);

impl Connection {
    /// `call_place`: calls `to`, offering `sdp` for this device's leg. Returns the call id the
    /// `ack` carries; `call_placed` and `call_media_answer` follow through
    /// [`Connection::next_event`] (queued if they came before the ack).
    pub async fn call_place(
        &mut self,
        to: &UserId,
        sdp: String,
        video: bool,
    ) -> Result<CallId, ClientError> {
        let command = CallCommand::CallPlace {
            to: to.clone(),
            sdp,
            video,
        };
        self.call_command_with_id(command, "call_place").await
    }

    /// `call_answer`: takes a call that rings at this device, offering `sdp` for its leg.
    pub async fn call_answer(&mut self, call: &CallId, sdp: String) -> Result<(), ClientError> {
        self.call_command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp,
        })
        .await
    }

    /// `call_reject`: declines a call ringing here; all the user's devices stop ringing.
    pub async fn call_reject(&mut self, call: &CallId) -> Result<(), ClientError> {
        self.call_command(CallCommand::CallReject { call: call.clone() })
            .await
    }

    /// `call_hangup`: leaves a call, or cancels one this device placed that still rings.
    pub async fn call_hangup(&mut self, call: &CallId) -> Result<(), ClientError> {
        self.call_command(CallCommand::CallHangup { call: call.clone() })
            .await
    }

    /// `call_pickup`: takes a call ringing at `user`'s devices (the oldest, or `call`),
    /// offering `sdp`. Returns the call taken.
    pub async fn call_pickup(
        &mut self,
        user: &UserId,
        call: Option<&CallId>,
        sdp: String,
    ) -> Result<CallId, ClientError> {
        let command = CallCommand::CallPickup {
            user: user.clone(),
            call: call.cloned(),
            sdp,
        };
        self.call_command_with_id(command, "call_pickup").await
    }

    /// `call_invite`: rings `user` into a call this device is connected to.
    pub async fn call_invite(&mut self, call: &CallId, user: &UserId) -> Result<(), ClientError> {
        self.call_command(CallCommand::CallInvite {
            call: call.clone(),
            user: user.clone(),
        })
        .await
    }

    /// `forward_set`: one forwarding rule of one's own, or of `user` as their delegate.
    pub async fn forward_set(
        &mut self,
        mode: ForwardMode,
        to: &UserId,
        user: Option<&UserId>,
    ) -> Result<(), ClientError> {
        self.call_command(CallCommand::ForwardSet {
            mode,
            to: to.clone(),
            user: user.cloned(),
        })
        .await
    }

    /// `forward_clear`: one rule, or all of them without `mode`.
    pub async fn forward_clear(
        &mut self,
        mode: Option<ForwardMode>,
        user: Option<&UserId>,
    ) -> Result<(), ClientError> {
        self.call_command(CallCommand::ForwardClear {
            mode,
            user: user.cloned(),
        })
        .await
    }

    /// The next event about calls (or forwarding). Other events are **dropped**: use
    /// [`Connection::next_event`] when they matter. `None` once the connection is closed.
    /// Cancel-safe.
    pub async fn next_call_event(&mut self) -> Option<Result<CallEvent, ClientError>> {
        loop {
            match self.next_event().await? {
                Ok(ServerEvent::Call(event)) => return Some(Ok(event)),
                Ok(_) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }

    async fn call_command(&mut self, command: CallCommand) -> Result<(), ClientError> {
        self.request_ack(ClientCommand::Call(command)).await?;
        Ok(())
    }

    async fn call_command_with_id(
        &mut self,
        command: CallCommand,
        name: &str,
    ) -> Result<CallId, ClientError> {
        self.request_ack(ClientCommand::Call(command))
            .await?
            .call
            .ok_or_else(|| ClientError::protocol(format!("the ack of {name} carries no call id")))
    }
}

/// What a device means to do in one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPlan {
    /// How long to stay once connected before hanging up; `None`: until the call ends.
    pub talk_for: Option<Duration>,
    /// Hang up when the call is not connected this long after the session started.
    pub connect_within: Duration,
    /// Users to invite (`call_invite`) once connected.
    pub invite: Vec<UserId>,
}

/// What the session asks of the program that drives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallAction {
    /// Apply the MediaServer's SDP answer to this device's peer.
    ApplyAnswer { sdp: String },
    /// Send `call_invite` for `user` (a refusal goes back as [`CallInput::InviteRefused`]).
    Invite { user: UserId },
    /// Send `call_hangup`.
    HangUp,
}

/// What a session is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallInput {
    /// An event from the server; events of other calls are ignored.
    Event(CallEvent),
    /// The server refused a `call_invite` of ours.
    InviteRefused { user: UserId, error: ErrorCode },
    /// The person wants out (Ctrl-C): hang up now.
    HangUp,
}

/// Why this device hung up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangUpCause {
    /// It talked as long as planned.
    Done,
    /// The call was not connected within [`CallPlan::connect_within`].
    NotConnected,
    /// It was asked to ([`CallInput::HangUp`]).
    Asked,
}

/// A forwarding on the way to the callee (`call_redirected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub from: UserId,
    pub to: UserId,
    pub mode: ForwardMode,
}

/// An invitation that did not lead to a party: `reason` is the `call_invite_failed` reason
/// or the error code of the refused command, as the wire spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteFailure {
    pub user: UserId,
    pub reason: String,
}

/// Why a call counts as failed for the device that made or took it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallFailure {
    /// The `call_ended` reason (`no_answer`, `busy`, `media_failed`…), or `timeout` when the
    /// call never said it ended.
    pub code: String,
    pub message: String,
}

/// One call as one device lives it: the events about it turned into what to do (apply the
/// media answer, invite, hang up) and into what happened (media server, parties, how it ended).
///
/// After every [`CallSession::handle_input`] or [`CallSession::handle_timeout`], drain
/// [`CallSession::poll_output`] until it returns `None`, then arm the timer from
/// [`CallSession::poll_timeout`].
#[derive(Debug)]
pub struct CallSession {
    call: CallId,
    plan: CallPlan,
    started: Instant,
    media: Option<MediaServerId>,
    /// When the first `call_connected` arrived.
    connected_at: Option<Instant>,
    /// Who is connected, as the last `call_connected` or `call_party_left` said.
    parties: Vec<UserId>,
    /// Users whose devices rang for this call (`call_ringing`), in order, once each.
    rang: Vec<UserId>,
    redirects: Vec<Redirect>,
    invite_failures: Vec<InviteFailure>,
    /// The `call_ended` event's content and when it came.
    ended: Option<(EndReason, CallResult, Instant)>,
    /// When and why this device sent `call_hangup`.
    hung_up: Option<(Instant, HangUpCause)>,
    /// No `call_ended` came within [`END_GRACE`] of hanging up: the session stopped waiting.
    gave_up_at: Option<Instant>,
    outputs: VecDeque<CallAction>,
}

impl CallSession {
    /// A session for `call`, starting `now` (when the call was placed, picked up or answered).
    pub fn new(call: CallId, plan: CallPlan, now: Instant) -> Self {
        Self {
            call,
            plan,
            started: now,
            media: None,
            connected_at: None,
            parties: Vec::new(),
            rang: Vec::new(),
            redirects: Vec::new(),
            invite_failures: Vec::new(),
            ended: None,
            hung_up: None,
            gave_up_at: None,
            outputs: VecDeque::new(),
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::Event(event) => self.handle_event(now, event),
            CallInput::InviteRefused { user, error } => {
                self.invite_failures.push(InviteFailure {
                    user,
                    reason: error.as_str().to_string(),
                });
            }
            CallInput::HangUp => self.hang_up(now, HangUpCause::Asked),
        }
    }

    fn handle_event(&mut self, now: Instant, event: CallEvent) {
        if event.call() != Some(&self.call) || self.ended.is_some() {
            return;
        }
        match event {
            CallEvent::CallPlaced { media, .. } => {
                self.media.get_or_insert(media);
            }
            CallEvent::CallMediaAnswer { media, sdp, .. } => {
                self.media = Some(media);
                self.outputs.push_back(CallAction::ApplyAnswer { sdp });
            }
            CallEvent::CallRinging { user, .. } => {
                if !self.rang.contains(&user) {
                    self.rang.push(user);
                }
            }
            CallEvent::CallRedirected { from, to, mode, .. } => {
                self.redirects.push(Redirect { from, to, mode });
            }
            CallEvent::CallConnected { parties, .. } => {
                self.parties = parties;
                if self.connected_at.is_none() {
                    self.connected_at = Some(now);
                    if self.hung_up.is_none() {
                        for user in self.plan.invite.clone() {
                            self.outputs.push_back(CallAction::Invite { user });
                        }
                    }
                }
            }
            CallEvent::CallPartyLeft { parties, .. } => self.parties = parties,
            CallEvent::CallInviteFailed { user, reason, .. } => {
                self.invite_failures.push(InviteFailure {
                    user,
                    reason: reason.as_str().to_string(),
                });
            }
            CallEvent::CallEnded { reason, result, .. } => {
                self.ended = Some((reason, result, now));
                self.outputs.clear();
            }
            CallEvent::CallIncoming { .. }
            | CallEvent::CallRingingStopped { .. }
            | CallEvent::ForwardingChanged { .. } => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_over() {
            return;
        }
        if let Some((hung_up_at, _)) = self.hung_up {
            if now >= hung_up_at + END_GRACE {
                self.gave_up_at = Some(now);
            }
            return;
        }
        match (self.connected_at, self.plan.talk_for) {
            (None, _) if now >= self.started + self.plan.connect_within => {
                self.hang_up(now, HangUpCause::NotConnected);
            }
            (Some(connected_at), Some(talk_for)) if now >= connected_at + talk_for => {
                self.hang_up(now, HangUpCause::Done);
            }
            _ => {}
        }
    }

    fn hang_up(&mut self, now: Instant, cause: HangUpCause) {
        if self.hung_up.is_none() && !self.is_over() {
            self.hung_up = Some((now, cause));
            self.outputs.push_back(CallAction::HangUp);
        }
    }

    pub fn poll_output(&mut self) -> Option<CallAction> {
        self.outputs.pop_front()
    }

    /// When [`CallSession::handle_timeout`] has something to do next; `None` once over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_over() {
            return None;
        }
        if let Some((hung_up_at, _)) = self.hung_up {
            return Some(hung_up_at + END_GRACE);
        }
        match self.connected_at {
            None => Some(self.started + self.plan.connect_within),
            Some(connected_at) => self.plan.talk_for.map(|talk_for| connected_at + talk_for),
        }
    }

    /// Nothing more will happen: `call_ended` came, or stopped being waited for.
    pub fn is_over(&self) -> bool {
        self.ended.is_some() || self.gave_up_at.is_some()
    }

    /// The device should send media now: connected, not hung up, not over.
    pub fn is_talking(&self) -> bool {
        self.connected_at.is_some() && self.hung_up.is_none() && !self.is_over()
    }

    pub fn call(&self) -> &CallId {
        &self.call
    }

    /// The MediaServer of the call, once `call_placed` or `call_media_answer` said it.
    pub fn media(&self) -> Option<&MediaServerId> {
        self.media.as_ref()
    }

    /// Whether the call was ever connected for this device.
    pub fn connected(&self) -> bool {
        self.connected_at.is_some()
    }

    /// The parties last known.
    pub fn parties(&self) -> &[UserId] {
        &self.parties
    }

    pub fn rang(&self) -> &[UserId] {
        &self.rang
    }

    pub fn redirects(&self) -> &[Redirect] {
        &self.redirects
    }

    pub fn invite_failures(&self) -> &[InviteFailure] {
        &self.invite_failures
    }

    /// The `call_ended` reason, once it came.
    pub fn reason(&self) -> Option<EndReason> {
        self.ended.map(|(reason, _, _)| reason)
    }

    /// The `call_ended` result (the journal's word for this user), once it came.
    pub fn result(&self) -> Option<CallResult> {
        self.ended.map(|(_, result, _)| result)
    }

    /// Whether and why this device hung up.
    pub fn hang_up_cause(&self) -> Option<HangUpCause> {
        self.hung_up.map(|(_, cause)| cause)
    }

    /// From the start of the session until it connected.
    pub fn setup_time(&self) -> Option<Duration> {
        self.connected_at.map(|at| at - self.started)
    }

    /// How long the call was connected: until it ended (or, without `call_ended`, until this
    /// device hung up), or until `now` while it goes on. Zero when never connected.
    pub fn duration(&self, now: Instant) -> Duration {
        let Some(connected_at) = self.connected_at else {
            return Duration::ZERO;
        };
        let until = self
            .ended
            .map(|(_, _, at)| at)
            .or(self.hung_up.map(|(at, _)| at))
            .unwrap_or(now);
        until.saturating_duration_since(connected_at)
    }

    /// Whether the call failed for this device, and how to say so: it ended before it was
    /// connected, its media failed, or it never said it ended. `None` for a call that was
    /// connected and ended normally (whoever hung up).
    pub fn failure(&self) -> Option<CallFailure> {
        let failure = |code: &str, message: String| {
            Some(CallFailure {
                code: code.to_string(),
                message,
            })
        };
        let Some((reason, result, _)) = self.ended else {
            return failure(
                "timeout",
                format!(
                    "call {} did not end within {}s of hanging up",
                    self.call,
                    END_GRACE.as_secs()
                ),
            );
        };
        let result = serde_name(&result);
        match reason {
            EndReason::MediaFailed | EndReason::SetupFailed => failure(
                reason.as_str(),
                format!(
                    "call {} failed: {} (result: {result})",
                    self.call,
                    reason.as_str()
                ),
            ),
            _ if self.connected() => None,
            _ if self.hang_up_cause() == Some(HangUpCause::NotConnected) => failure(
                reason.as_str(),
                format!(
                    "call {} was not answered within {}s and was hung up: {} (result: {result})",
                    self.call,
                    self.plan.connect_within.as_secs(),
                    reason.as_str()
                ),
            ),
            _ => failure(
                reason.as_str(),
                format!(
                    "call {} ended before it was connected: {} (result: {result})",
                    self.call,
                    reason.as_str()
                ),
            ),
        }
    }
}

/// A unit enum value as serde spells it (`picked_up`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod socket_tests {
    //! The call commands over a real WebSocket on loopback, against a scripted server that
    //! answers the way `docs/calls.md` allows: events before the ack.

    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;

    type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    async fn say(socket: &mut ServerSocket, value: Value) {
        socket.send(Message::text(value.to_string())).await.unwrap();
    }

    /// The next command; returns it and its `ref`.
    async fn heard(socket: &mut ServerSocket) -> (Value, u64) {
        loop {
            match socket.next().await.expect("a frame").unwrap() {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    let reference = value["ref"].as_u64().expect("a ref");
                    return (value, reference);
                }
                _ => continue,
            }
        }
    }

    async fn server(listener: TcpListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        say(
            &mut socket,
            json!({"type": "hello", "user": "alice", "device": "desk", "server": "s1",
                   "conversations": [], "presence": []}),
        )
        .await;
        // call_place: the call's events come before the ack, a chat event in between.
        let (command, reference) = heard(&mut socket).await;
        assert_eq!(command["type"], "call_place");
        assert_eq!(
            (command["to"].as_str(), command["video"].as_bool()),
            (Some("bob"), Some(true))
        );
        say(
            &mut socket,
            json!({"type": "call_placed", "call": "s1~ab", "to": "bob", "media": "m1"}),
        )
        .await;
        say(
            &mut socket,
            json!({"type": "typing", "conversation": "d:alice:bob", "user": "bob", "typing": true}),
        )
        .await;
        say(
            &mut socket,
            json!({"type": "call_media_answer", "call": "s1~ab", "media": "m1", "sdp": "v=0"}),
        )
        .await;
        say(
            &mut socket,
            json!({"type": "ack", "ref": reference, "call": "s1~ab"}),
        )
        .await;
        // call_hangup: call_ended first.
        let (command, reference) = heard(&mut socket).await;
        assert_eq!(
            (command["type"].as_str(), command["call"].as_str()),
            (Some("call_hangup"), Some("s1~ab"))
        );
        say(&mut socket, json!({"type": "call_ended", "call": "s1~ab", "reason": "hung_up", "result": "answered"})).await;
        say(&mut socket, json!({"type": "ack", "ref": reference})).await;
        // call_pickup refused.
        let (command, reference) = heard(&mut socket).await;
        assert_eq!(
            (command["type"].as_str(), command["user"].as_str()),
            (Some("call_pickup"), Some("bob"))
        );
        assert!(command.get("call").is_none());
        say(&mut socket, json!({"type": "error", "ref": reference, "error": "not_found", "message": "nothing rings there"})).await;
        // forward_set acknowledged; call_place acknowledged without a call id.
        let (command, reference) = heard(&mut socket).await;
        assert_eq!(
            command,
            json!({"ref": reference, "type": "forward_set", "mode": "no_answer", "to": "carol"})
        );
        say(&mut socket, json!({"type": "ack", "ref": reference})).await;
        let (_, reference) = heard(&mut socket).await;
        say(&mut socket, json!({"type": "ack", "ref": reference})).await;
        let _ = socket.close(None).await;
    }

    #[tokio::test]
    async fn events_that_come_before_the_ack_wait_for_the_caller_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/api/v1/ws", listener.local_addr().unwrap());
        let server = tokio::spawn(server(listener));
        let mut connection = Connection::open(&url, None).await.unwrap();

        let call = connection
            .call_place(&UserId::from("bob"), "v=0".into(), true)
            .await
            .unwrap();
        assert_eq!(call, CallId::from("s1~ab"));
        let first = connection.next_event().await.unwrap().unwrap();
        assert!(
            matches!(first, ServerEvent::Call(CallEvent::CallPlaced { .. })),
            "{first:?}"
        );
        // The typing event is skipped by next_call_event, nothing else.
        let second = connection.next_call_event().await.unwrap().unwrap();
        assert!(matches!(second, CallEvent::CallMediaAnswer { ref sdp, .. } if sdp == "v=0"));

        connection.call_hangup(&call).await.unwrap();
        let ended = connection.next_call_event().await.unwrap().unwrap();
        assert!(matches!(
            ended,
            CallEvent::CallEnded {
                reason: EndReason::HungUp,
                ..
            }
        ));

        let refused = connection
            .call_pickup(&UserId::from("bob"), None, "v=0".into())
            .await
            .unwrap_err();
        assert!(refused.is(ErrorCode::NotFound), "{refused}");
        connection
            .forward_set(ForwardMode::NoAnswer, &UserId::from("carol"), None)
            .await
            .unwrap();
        let no_id = connection
            .call_place(&UserId::from("bob"), "v=0".into(), false)
            .await
            .unwrap_err();
        assert_eq!(no_id.code(), "protocol");
        server.await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = "s1~abc";

    fn plan(talk_for: Option<u64>, invite: &[&str]) -> CallPlan {
        CallPlan {
            talk_for: talk_for.map(Duration::from_secs),
            connect_within: Duration::from_secs(40),
            invite: invite.iter().map(|user| UserId::from(*user)).collect(),
        }
    }

    fn call() -> CallId {
        CallId::from(CALL)
    }

    fn event(session: &mut CallSession, at: Instant, event: CallEvent) -> Vec<CallAction> {
        session.handle_input(at, CallInput::Event(event));
        drain(session)
    }

    fn drain(session: &mut CallSession) -> Vec<CallAction> {
        std::iter::from_fn(|| session.poll_output()).collect()
    }

    fn connected(parties: &[&str]) -> CallEvent {
        CallEvent::CallConnected {
            call: call(),
            parties: parties.iter().map(|user| UserId::from(*user)).collect(),
        }
    }

    fn ended(reason: EndReason, result: CallResult) -> CallEvent {
        CallEvent::CallEnded {
            call: call(),
            reason,
            result,
        }
    }

    #[test]
    fn a_placed_call_applies_the_answer_talks_invites_and_hangs_up_on_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut session = CallSession::new(call(), plan(Some(5), &["carol"]), t0);
        assert_eq!(session.poll_timeout(), Some(t0 + s(40)));
        let placed = CallEvent::CallPlaced {
            call: call(),
            to: UserId::from("bob"),
            media: MediaServerId::from("m1"),
        };
        assert!(event(&mut session, t0, placed).is_empty());
        assert_eq!(session.media(), Some(&MediaServerId::from("m1")));
        let answer = CallEvent::CallMediaAnswer {
            call: call(),
            media: MediaServerId::from("m1"),
            sdp: "v=0".into(),
        };
        assert_eq!(
            event(&mut session, t0, answer),
            vec![CallAction::ApplyAnswer { sdp: "v=0".into() }]
        );
        let ringing = CallEvent::CallRinging {
            call: call(),
            user: UserId::from("bob"),
        };
        event(&mut session, t0, ringing.clone());
        event(&mut session, t0, ringing);
        assert_eq!(session.rang(), &[UserId::from("bob")]);
        assert!(!session.is_talking());

        // Answered after 2 s: invite carol once, talk for 5 s.
        let t2 = t0 + s(2);
        assert_eq!(
            event(&mut session, t2, connected(&["alice", "bob"])),
            vec![CallAction::Invite {
                user: UserId::from("carol")
            }]
        );
        assert!(session.is_talking());
        assert_eq!(session.poll_timeout(), Some(t2 + s(5)));
        assert!(event(&mut session, t2, connected(&["alice", "bob", "carol"])).is_empty());
        assert_eq!(session.parties().len(), 3);

        session.handle_timeout(t2 + s(4));
        assert!(drain(&mut session).is_empty());
        session.handle_timeout(t2 + s(5));
        assert_eq!(drain(&mut session), vec![CallAction::HangUp]);
        assert!(!session.is_talking() && !session.is_over());
        assert_eq!(session.hang_up_cause(), Some(HangUpCause::Done));
        assert_eq!(session.poll_timeout(), Some(t2 + s(5) + END_GRACE));

        event(
            &mut session,
            t2 + s(6),
            ended(EndReason::HungUp, CallResult::Answered),
        );
        assert!(session.is_over());
        assert_eq!(session.poll_timeout(), None);
        assert_eq!(session.reason(), Some(EndReason::HungUp));
        assert_eq!(session.result(), Some(CallResult::Answered));
        assert_eq!(session.setup_time(), Some(s(2)));
        assert_eq!(session.duration(t2 + s(60)), s(6));
        assert_eq!(session.failure(), None);
    }

    #[test]
    fn events_of_other_calls_and_after_the_end_change_nothing() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(5), &[]), t0);
        let other = CallEvent::CallConnected {
            call: CallId::from("s1~other"),
            parties: vec![UserId::from("x")],
        };
        assert!(event(&mut session, t0, other).is_empty());
        assert!(!session.connected());
        event(&mut session, t0, ended(EndReason::Busy, CallResult::Busy));
        assert!(event(&mut session, t0, connected(&["alice", "bob"])).is_empty());
        assert!(!session.connected());
        session.handle_input(t0, CallInput::HangUp);
        assert!(drain(&mut session).is_empty(), "no hangup once over");
        let failure = session.failure().unwrap();
        assert_eq!(failure.code, "busy");
        assert!(
            failure
                .to_string()
                .starts_with("busy: call s1~abc ended before it was connected")
        );
    }

    #[test]
    fn an_unanswered_call_is_hung_up_and_reported() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(5), &["carol"]), t0);
        session.handle_timeout(t0 + Duration::from_secs(39));
        assert!(drain(&mut session).is_empty());
        session.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(drain(&mut session), vec![CallAction::HangUp]);
        assert!(!session.is_talking());
        event(
            &mut session,
            t0 + Duration::from_secs(41),
            ended(EndReason::Cancelled, CallResult::Missed),
        );
        let failure = session.failure().unwrap();
        assert_eq!(failure.code, "cancelled");
        assert!(
            failure.message.contains("not answered within 40s"),
            "{failure}"
        );
    }

    #[test]
    fn an_answer_that_crosses_the_hangup_invites_nobody_and_sends_nothing() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(5), &["carol"]), t0);
        session.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(drain(&mut session), vec![CallAction::HangUp]);
        assert!(event(&mut session, t0, connected(&["alice", "bob"])).is_empty());
        assert!(session.connected() && !session.is_talking());
        event(
            &mut session,
            t0 + Duration::from_secs(41),
            ended(EndReason::HungUp, CallResult::Answered),
        );
        assert_eq!(session.failure(), None, "it was connected, if briefly");
    }

    #[test]
    fn the_far_side_hanging_up_ends_the_call_without_failure() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(60), &[]), t0);
        event(&mut session, t0, connected(&["alice", "bob"]));
        let left = CallEvent::CallPartyLeft {
            call: call(),
            user: UserId::from("bob"),
            parties: vec![UserId::from("alice")],
        };
        event(&mut session, t0, left);
        assert_eq!(session.parties(), &[UserId::from("alice")]);
        event(
            &mut session,
            t0 + Duration::from_secs(3),
            ended(EndReason::HungUp, CallResult::Answered),
        );
        assert!(session.is_over() && !session.is_talking());
        assert_eq!(session.hang_up_cause(), None);
        assert_eq!(
            session.duration(t0 + Duration::from_secs(99)),
            Duration::from_secs(3)
        );
        assert_eq!(session.failure(), None);
    }

    #[test]
    fn media_failure_fails_even_a_connected_call() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(None, &[]), t0);
        event(&mut session, t0, connected(&["alice", "bob"]));
        assert_eq!(session.poll_timeout(), None, "talks until the call ends");
        event(
            &mut session,
            t0,
            ended(EndReason::MediaFailed, CallResult::Failed),
        );
        assert_eq!(session.failure().unwrap().code, "media_failed");
    }

    #[test]
    fn a_missing_call_ended_gives_up_after_the_grace() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(1), &[]), t0);
        event(&mut session, t0, connected(&["alice", "bob"]));
        session.handle_input(t0, CallInput::HangUp);
        assert_eq!(drain(&mut session), vec![CallAction::HangUp]);
        assert_eq!(session.hang_up_cause(), Some(HangUpCause::Asked));
        session.handle_timeout(t0 + END_GRACE);
        assert!(session.is_over() && session.reason().is_none());
        assert_eq!(session.failure().unwrap().code, "timeout");
    }

    #[test]
    fn invite_failures_are_collected_from_events_and_refusals() {
        let t0 = Instant::now();
        let mut session = CallSession::new(call(), plan(Some(5), &["carol", "dave"]), t0);
        let actions = event(&mut session, t0, connected(&["alice", "bob"]));
        assert_eq!(actions.len(), 2);
        session.handle_input(
            t0,
            CallInput::InviteRefused {
                user: UserId::from("carol"),
                error: ErrorCode::Conflict,
            },
        );
        let failed = CallEvent::CallInviteFailed {
            call: call(),
            user: UserId::from("dave"),
            reason: EndReason::NoAnswer,
        };
        event(&mut session, t0, failed);
        let reasons: Vec<(&str, &str)> = session
            .invite_failures()
            .iter()
            .map(|failure| (failure.user.as_str(), failure.reason.as_str()))
            .collect();
        assert_eq!(reasons, vec![("carol", "conflict"), ("dave", "no_answer")]);
    }
}
