//! `ucclient call`, `pickup` and `forward`: one call from this device with a real softphone
//! peer, and the forwarding rules.
//!
//! A call is one loop, one `tokio::select!` over the socket, the audio clock, the session's
//! timer, the keep-alive and Ctrl-C, owning everything it touches. What to do is decided by
//! [`CallSession`] (no IO); the loop only carries it out. ICE and DTLS run in webrtc-rs's own
//! tasks; audio goes out every 20 ms while the session says the call is connected and the
//! peer is up. Ctrl-C hangs up and still waits for `call_ended`.

use super::listen::{KEEPALIVE_EVERY, Shutdown};
use serde_json::{Value, json};
use shared::api::{CallResult, ErrorCode};
use shared::call::{CallCommand, EndReason, ForwardMode, ForwardingRules};
use shared::presence::Capability;
use shared::ws::{ClientCommand, ServerEvent};
use shared::{CallId, DeviceId, MediaServerId, UserId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use ucclient::calls::{
    CallAction, CallInput, CallPlan, CallSession, HangUpCause, InviteFailure, Redirect,
};
use ucclient::peer::{AUDIO_FRAME, ClientPeer, PeerOptions, VIDEO_FRAME};
use ucclient::{Client, ClientError, Connection, TransportError};

/// How long gathering the peer's ICE candidates may take.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to closing the socket after the call.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How this device comes into the call.
#[derive(Clone, Debug)]
pub enum Entry {
    /// `call_place` to `to`.
    Place { to: UserId },
    /// `call_pickup` of a call ringing at `user`'s devices.
    Pickup { user: UserId, call: Option<CallId> },
}

/// What `call` or `pickup` was asked to do.
#[derive(Clone, Debug)]
pub struct CallRequest {
    pub entry: Entry,
    pub video: bool,
    pub device: Option<DeviceId>,
    pub plan: CallPlan,
}

/// Places or picks up a call and follows it to its end. `Err` when no call came to be (the
/// server refused, the peer could not be built); otherwise the report and how it went:
/// `Err` for a call that failed ([`ucclient::calls::CallFailure`]) or whose socket died.
pub async fn call(
    client: &Client,
    request: CallRequest,
    interrupt: Shutdown,
) -> anyhow::Result<(CallReport, anyhow::Result<()>)> {
    let mut capabilities = vec![Capability::Chat, Capability::Audio];
    if request.video {
        capabilities.push(Capability::Video);
    }
    let mut connection = client
        .connect(request.device.as_ref(), &capabilities)
        .await?;
    let mut peer = match ClientPeer::new(PeerOptions::softphone(request.video)).await {
        Ok(peer) => peer,
        Err(error) => {
            close(connection).await;
            return Err(error.into());
        }
    };
    let outcome = place_and_follow(&mut connection, &mut peer, request, interrupt).await;
    peer.close().await;
    close(connection).await;
    outcome
}

async fn place_and_follow(
    connection: &mut Connection,
    peer: &mut ClientPeer,
    request: CallRequest,
    interrupt: Shutdown,
) -> anyhow::Result<(CallReport, anyhow::Result<()>)> {
    let offer = peer.create_offer(GATHER_TIMEOUT).await?;
    let (kind, other, call) = match &request.entry {
        Entry::Place { to } => {
            let call = connection.call_place(to, offer, request.video).await?;
            (CallKind::Placed, to.clone(), call)
        }
        Entry::Pickup { user, call } => {
            let call = connection.call_pickup(user, call.as_ref(), offer).await?;
            (CallKind::PickedUp, user.clone(), call)
        }
    };
    let mut session = CallSession::new(call, request.plan.clone(), Instant::now());
    let followed = follow(connection, peer, &mut session, interrupt).await;
    let report = CallReport::new(kind, other, request.video, &session, peer, Instant::now());
    if report.connected && !report.media_connected {
        warn("the call was connected but its media (ICE/DTLS to the MediaServer) never came up");
    }
    let outcome = match (followed, session.failure()) {
        (Err(error), _) => Err(error.into()),
        (Ok(()), Some(failure)) => Err(failure.into()),
        (Ok(()), None) => Ok(()),
    };
    Ok((report, outcome))
}

async fn close(connection: Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await;
}

/// Runs `session` over the socket until it is over. `Err` only when the socket is lost.
async fn follow(
    connection: &mut Connection,
    peer: &ClientPeer,
    session: &mut CallSession,
    mut interrupt: Shutdown,
) -> Result<(), ClientError> {
    let mut audio = tokio::time::interval(AUDIO_FRAME);
    audio.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut video = tokio::time::interval(VIDEO_FRAME);
    video.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEPALIVE_EVERY,
        KEEPALIVE_EVERY,
    );
    // `call_invite`s in flight, by `ref`: a refusal is the session's business.
    let mut invites: HashMap<u64, UserId> = HashMap::new();
    // Our `call_hangup`: refused as `not_found` only when the call ended meanwhile.
    let mut hangup: Option<u64> = None;
    let mut interrupted = false;
    let mut send_failures: u64 = 0;
    loop {
        while let Some(action) = session.poll_output() {
            match action {
                CallAction::ApplyAnswer { sdp } => {
                    if let Err(error) = peer.apply_answer(sdp).await {
                        warn(&format!("the MediaServer's answer does not apply: {error}"));
                        session.handle_input(Instant::now(), CallInput::HangUp);
                    }
                }
                CallAction::Invite { user } => {
                    let command = CallCommand::CallInvite {
                        call: session.call().clone(),
                        user: user.clone(),
                    };
                    let reference = connection.send(ClientCommand::Call(command)).await?;
                    invites.insert(reference, user);
                }
                CallAction::HangUp => {
                    let command = CallCommand::CallHangup {
                        call: session.call().clone(),
                    };
                    hangup = Some(connection.send(ClientCommand::Call(command)).await?);
                }
            }
        }
        if session.is_over() {
            if send_failures > 0 {
                warn(&format!("{send_failures} media packets could not be sent"));
            }
            return Ok(());
        }
        let deadline = session.poll_timeout();
        let talking = session.is_talking();
        tokio::select! {
            event = connection.next_event() => match event {
                None => return Err(TransportError::Closed.into()),
                Some(Err(error @ ClientError::Transport(_))) => return Err(error),
                Some(Err(error)) => warn(&error.to_string()),
                Some(Ok(ServerEvent::Call(event))) => {
                    session.handle_input(Instant::now(), CallInput::Event(event));
                }
                Some(Ok(ServerEvent::Ack { reference: Some(reference), .. })) => {
                    invites.remove(&reference);
                }
                Some(Ok(ServerEvent::Error { reference, error, message, .. })) => {
                    match reference.and_then(|reference| invites.remove(&reference)) {
                        Some(user) => {
                            warn(&format!("inviting {user}: {}: {message}", error.as_str()));
                            session.handle_input(
                                Instant::now(),
                                CallInput::InviteRefused { user, error },
                            );
                        }
                        None if reference.is_some()
                            && reference == hangup
                            && error == ErrorCode::NotFound => {}
                        None => warn(&format!("{}: {message}", error.as_str())),
                    }
                }
                Some(Ok(ServerEvent::Goodbye { reason })) => {
                    return Err(ClientError::Protocol(format!(
                        "the server went away during the call: {reason}"
                    )));
                }
                Some(Ok(_)) => {}
            },
            _ = audio.tick(), if talking => {
                if peer.is_connected() && peer.send_one_audio_packet().await.is_err() {
                    send_failures += 1;
                }
            }
            _ = video.tick(), if talking && peer.has_video() => {
                if peer.is_connected() && peer.send_one_video_frame().await.is_err() {
                    send_failures += 1;
                }
            }
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            _ = keepalive.tick() => {
                connection.send(ClientCommand::Ping).await?;
            }
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                session.handle_input(Instant::now(), CallInput::HangUp);
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

fn warn(text: &str) {
    eprintln!("warning: {text}");
}

/// How the device came into the call it reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `call`: it placed the call; the other user is the callee.
    Placed,
    /// `pickup`: it took a call ringing at the other user's devices.
    PickedUp,
    /// `listen --auto-answer`: it answered; the other user is the caller (or inviter).
    Answered,
}

impl CallKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "call",
            Self::PickedUp => "pickup",
            Self::Answered => "answer",
        }
    }
}

/// What one call was like for this device: what `call` and `pickup` print, and what the
/// `call_summary` line of `listen --auto-answer` says.
#[derive(Clone, Debug, PartialEq)]
pub struct CallReport {
    pub kind: CallKind,
    pub call: CallId,
    /// The callee (placed), the user picked up from, or the caller (answered).
    pub other: UserId,
    pub video: bool,
    pub media: Option<MediaServerId>,
    pub connected: bool,
    /// The peer's ICE and DTLS to the MediaServer came up.
    pub media_connected: bool,
    /// The parties last known.
    pub parties: Vec<UserId>,
    pub rang: Vec<UserId>,
    pub redirects: Vec<Redirect>,
    pub invite_failures: Vec<InviteFailure>,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub video_packets_received: u64,
    /// From placing (picking up, answering) to connected.
    pub setup_ms: Option<u64>,
    /// How long the call was connected.
    pub duration_ms: u64,
    pub reason: Option<EndReason>,
    pub result: Option<CallResult>,
    pub local_hangup: Option<HangUpCause>,
}

impl CallReport {
    pub fn new(
        kind: CallKind,
        other: UserId,
        video: bool,
        session: &CallSession,
        peer: &ClientPeer,
        now: Instant,
    ) -> Self {
        Self::from_session(kind, other, video, session, now).with_media(
            peer.was_connected(),
            peer.packets_sent(),
            peer.packets_received(),
            peer.video_packets_received(),
        )
    }

    /// The report without what the peer knows (see [`CallReport::with_media`]).
    pub fn from_session(
        kind: CallKind,
        other: UserId,
        video: bool,
        session: &CallSession,
        now: Instant,
    ) -> Self {
        Self {
            kind,
            call: session.call().clone(),
            other,
            video,
            media: session.media().cloned(),
            connected: session.connected(),
            media_connected: false,
            parties: session.parties().to_vec(),
            rang: session.rang().to_vec(),
            redirects: session.redirects().to_vec(),
            invite_failures: session.invite_failures().to_vec(),
            packets_sent: 0,
            packets_received: 0,
            video_packets_received: 0,
            setup_ms: session.setup_time().map(|time| time.as_millis() as u64),
            duration_ms: session.duration(now).as_millis() as u64,
            reason: session.reason(),
            result: session.result(),
            local_hangup: session.hang_up_cause(),
        }
    }

    pub fn with_media(
        mut self,
        media_connected: bool,
        sent: u64,
        received: u64,
        video_received: u64,
    ) -> Self {
        self.media_connected = media_connected;
        self.packets_sent = sent;
        self.packets_received = received;
        self.video_packets_received = video_received;
        self
    }

    /// The report as JSON: the other user is `to` for a placed or picked-up call, `from` for
    /// an answered one.
    pub fn json(&self) -> Value {
        let other_field = match self.kind {
            CallKind::Answered => "from",
            CallKind::Placed | CallKind::PickedUp => "to",
        };
        let mut value = json!({
            "call": self.call,
            "kind": self.kind.as_str(),
            other_field: self.other,
            "video": self.video,
            "media": self.media,
            "connected": self.connected,
            "media_connected": self.media_connected,
            "parties": self.parties,
            "rang": self.rang,
            "redirects": self.redirects.iter().map(|redirect| json!({
                "from": redirect.from,
                "to": redirect.to,
                "mode": redirect.mode,
            })).collect::<Vec<_>>(),
            "invite_failures": self.invite_failures.iter().map(|failure| json!({
                "user": failure.user,
                "reason": failure.reason,
            })).collect::<Vec<_>>(),
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "video_packets_received": self.video_packets_received,
            "setup_ms": self.setup_ms,
            "duration_ms": self.duration_ms,
            "reason": self.reason,
            "result": self.result,
            "local_hangup": self.local_hangup.map(hang_up_text),
        });
        if self.kind == CallKind::Answered {
            // A callee invites nobody and is not redirected.
            if let Some(object) = value.as_object_mut() {
                object.remove("redirects");
                object.remove("invite_failures");
                object.remove("rang");
            }
        }
        value
    }
}

fn hang_up_text(cause: HangUpCause) -> &'static str {
    match cause {
        HangUpCause::Done => "done",
        HangUpCause::NotConnected => "not_connected",
        HangUpCause::Asked => "interrupted",
    }
}

/// A change of forwarding rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardChange {
    Set {
        mode: ForwardMode,
        to: UserId,
    },
    /// One mode, or all without one.
    Clear {
        mode: Option<ForwardMode>,
    },
}

/// `forward set` and `forward clear`: the change goes over a short-lived WebSocket (the API
/// has no REST route for it), then the rules are read back over REST. Returns whose rules
/// they are and what they are now.
pub async fn forward_change(
    client: &Client,
    change: ForwardChange,
    for_user: Option<UserId>,
) -> anyhow::Result<(UserId, ForwardingRules)> {
    let mut connection = client.connect(None, &[Capability::Chat]).await?;
    let changed = match &change {
        ForwardChange::Set { mode, to } => {
            connection.forward_set(*mode, to, for_user.as_ref()).await
        }
        ForwardChange::Clear { mode } => connection.forward_clear(*mode, for_user.as_ref()).await,
    };
    close(connection).await;
    changed?;
    let user = for_user.unwrap_or_else(|| client.user().clone());
    let rules = client.forwarding(&user).await?;
    Ok((user, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output;
    use shared::call::{CallEvent, ForwardMode};

    fn session_of(events: Vec<CallEvent>, t0: Instant, step: Duration) -> CallSession {
        let plan = CallPlan {
            talk_for: Some(Duration::from_secs(5)),
            connect_within: Duration::from_secs(40),
            invite: vec![],
        };
        let mut session = CallSession::new(CallId::from("s1~ab"), plan, t0);
        for (index, event) in events.into_iter().enumerate() {
            session.handle_input(t0 + step * index as u32, CallInput::Event(event));
            while session.poll_output().is_some() {}
        }
        session
    }

    #[test]
    fn a_connected_call_reports_everything_asked_for() {
        let call = CallId::from("s1~ab");
        let t0 = Instant::now();
        let events = vec![
            CallEvent::CallPlaced {
                call: call.clone(),
                to: UserId::from("bob"),
                media: MediaServerId::from("m1"),
            },
            CallEvent::CallRedirected {
                call: call.clone(),
                from: UserId::from("bob"),
                to: UserId::from("carol"),
                mode: ForwardMode::Always,
            },
            CallEvent::CallConnected {
                call: call.clone(),
                parties: vec![UserId::from("alice"), UserId::from("carol")],
            },
            CallEvent::CallEnded {
                call: call.clone(),
                reason: EndReason::HungUp,
                result: CallResult::Answered,
            },
        ];
        let session = session_of(events, t0, Duration::from_millis(1500));
        let report =
            CallReport::from_session(CallKind::Placed, UserId::from("bob"), false, &session, t0)
                .with_media(true, 250, 240, 0);
        let value = report.json();
        assert_eq!(value["call"], "s1~ab");
        assert_eq!(value["kind"], "call");
        assert_eq!(value["to"], "bob");
        assert_eq!(value["media"], "m1");
        assert_eq!(value["connected"], true);
        assert_eq!(value["media_connected"], true);
        assert_eq!(value["parties"], json!(["alice", "carol"]));
        assert_eq!(value["packets_sent"], 250);
        assert_eq!(value["packets_received"], 240);
        assert_eq!(value["setup_ms"], 3000);
        assert_eq!(value["duration_ms"], 1500);
        assert_eq!(value["reason"], "hung_up");
        assert_eq!(value["result"], "answered");
        assert_eq!(value["local_hangup"], Value::Null);
        assert_eq!(
            value["redirects"],
            json!([{"from": "bob", "to": "carol", "mode": "always"}])
        );
        assert_eq!(
            output::call(&report),
            "call s1~ab to bob via m1: connected after 3.0 s, talked 1.5 s; hung_up (answered); \
             forwarded bob → carol (always)\nmedia: 250 packets sent, 240 received; parties: alice, carol"
        );
    }

    #[test]
    fn an_answered_call_names_the_caller_and_a_missed_one_says_so() {
        let call = CallId::from("s1~ab");
        let t0 = Instant::now();
        let session = session_of(
            vec![CallEvent::CallEnded {
                call,
                reason: EndReason::NoAnswer,
                result: CallResult::Missed,
            }],
            t0,
            Duration::ZERO,
        );
        let report = CallReport::from_session(
            CallKind::Answered,
            UserId::from("alice"),
            false,
            &session,
            t0,
        );
        let value = report.json();
        assert_eq!(value["from"], "alice");
        assert!(value.get("to").is_none() && value.get("redirects").is_none());
        assert_eq!(value["connected"], false);
        assert_eq!(value["media"], Value::Null);
        assert_eq!(value["setup_ms"], Value::Null);
        assert_eq!(value["duration_ms"], 0);
        assert_eq!(
            output::call(&report),
            "call s1~ab from alice: not connected; no_answer (missed)\nmedia: 0 packets sent, 0 received"
        );
    }
}
