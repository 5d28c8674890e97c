//! `listen --auto-answer`: every call that rings at this device is answered by a softphone
//! peer of its own, which sends audio while the call lasts.
//!
//! The listen loop must keep reading the socket whatever the peers do (building one and
//! gathering its candidates takes a while, and several calls may ring at once), so each
//! call's peer lives in its own task, owned by the [`Answerer`]'s `JoinSet`. Loop and task
//! talk through channels: the task hands over its SDP offer, the loop sends `call_answer`
//! with it (without waiting for the `ack`) and passes the MediaServer's answer back. The loop
//! follows each answered call with a [`CallSession`]; when the call ends it drops the task's
//! channel, the task closes its peer and returns its packet counts, and the loop prints one
//! `call_summary` line.

use super::args::CONNECT_WITHIN_SECONDS;
use super::phone::{CallKind, CallReport, GATHER_TIMEOUT, sleep_until};
use serde_json::{Value, json};
use shared::call::{CallCommand, CallEvent};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{CallId, UserId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio::time::MissedTickBehavior;
use ucclient::calls::{CallAction, CallInput, CallPlan, CallSession};
use ucclient::peer::{AUDIO_FRAME, ClientPeer, PeerOptions, VIDEO_FRAME};
use ucclient::{ClientError, Connection, PeerError};

/// How long the peers of a session that ends get to close before they are aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The `--auto-answer` settings.
#[derive(Clone, Debug)]
pub struct AutoAnswer {
    /// How long a call rings before it is answered (`--answer-delay-ms`).
    pub delay: Duration,
    /// Hang up this long after a call connected (`--talk-seconds`); `None`: stay until the
    /// call ends.
    pub talk_for: Option<Duration>,
}

/// A peer task's offer for its call, or why it has none.
#[derive(Debug)]
pub struct Offer {
    call: CallId,
    sdp: Result<String, String>,
}

/// What a peer task returns when it is done.
#[derive(Debug)]
pub struct PeerTotals {
    call: CallId,
    sent: u64,
    received: u64,
    video_received: u64,
    media_connected: bool,
}

/// Something the answerer's own sources produced (see [`Answerer::next`]).
#[derive(Debug)]
pub enum Wake {
    Offer(Offer),
    PeerDone(Result<PeerTotals, JoinError>),
    Timeout,
}

/// One call this device is answering or in.
struct Answering {
    from: UserId,
    video: bool,
    /// To the peer task: the MediaServer's SDP answer. Dropping it stops the task.
    to_peer: mpsc::UnboundedSender<String>,
    /// From the moment `call_answer` went out.
    session: Option<CallSession>,
}

/// A call that is over for this device, waiting for its peer task's counts.
struct Finishing {
    from: UserId,
    video: bool,
    session: CallSession,
    ended: Instant,
}

/// The auto-answering softphone of one connected session.
pub struct Answerer {
    options: AutoAnswer,
    calls: HashMap<CallId, Answering>,
    finishing: HashMap<CallId, Finishing>,
    /// `call_answer` commands in flight, by `ref`: a refusal drops the call.
    answers: HashMap<u64, CallId>,
    /// One task per call's peer.
    tasks: JoinSet<PeerTotals>,
    /// Kept so that `offers` never closes; cloned into every task.
    offers_tx: mpsc::Sender<Offer>,
    offers: mpsc::Receiver<Offer>,
}

impl Answerer {
    pub fn new(options: AutoAnswer) -> Self {
        let (offers_tx, offers) = mpsc::channel(16);
        Self {
            options,
            calls: HashMap::new(),
            finishing: HashMap::new(),
            answers: HashMap::new(),
            tasks: JoinSet::new(),
            offers_tx,
            offers,
        }
    }

    /// Waits for an offer, a finished peer task or a session's timer. Cancel-safe.
    pub async fn next(&mut self) -> Wake {
        let deadline = self
            .calls
            .values()
            .filter_map(|answering| answering.session.as_ref()?.poll_timeout())
            .min();
        tokio::select! {
            Some(offer) = self.offers.recv() => Wake::Offer(offer),
            Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                Wake::PeerDone(joined)
            }
            () = sleep_until(deadline) => Wake::Timeout,
        }
    }

    /// Acts on an event read from the socket (and already printed). `Err` when the socket
    /// failed.
    pub async fn on_event(
        &mut self,
        connection: &mut Connection,
        event: &ServerEvent,
    ) -> Result<(), ClientError> {
        match event {
            ServerEvent::Call(CallEvent::CallIncoming {
                call, from, video, ..
            }) => {
                self.ring(call, from, *video);
                Ok(())
            }
            ServerEvent::Call(CallEvent::CallRingingStopped { call, .. }) => {
                // Someone else took it (or it was cancelled) before this device was in it.
                let not_in_call = self.calls.get(call).is_some_and(|answering| {
                    !answering
                        .session
                        .as_ref()
                        .is_some_and(CallSession::connected)
                });
                if not_in_call {
                    self.calls.remove(call);
                }
                Ok(())
            }
            ServerEvent::Call(event) => {
                let Some(call) = event.call().cloned() else {
                    return Ok(());
                };
                if let Some(session) = self
                    .calls
                    .get_mut(&call)
                    .and_then(|answering| answering.session.as_mut())
                {
                    session.handle_input(Instant::now(), CallInput::Event(event.clone()));
                    self.drive(connection, &call).await?;
                }
                Ok(())
            }
            ServerEvent::Ack {
                reference: Some(reference),
                ..
            } => {
                self.answers.remove(reference);
                Ok(())
            }
            ServerEvent::Error {
                reference: Some(reference),
                ..
            } => {
                // The error line is printed already; the call is not ours to take.
                if let Some(call) = self.answers.remove(reference) {
                    self.calls.remove(&call);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Acts on what [`Answerer::next`] returned. Returns `call_summary` lines to print.
    pub async fn on_wake(
        &mut self,
        connection: &mut Connection,
        wake: Wake,
    ) -> Result<Vec<String>, ClientError> {
        match wake {
            Wake::Offer(Offer { call, sdp: Ok(sdp) }) => {
                let Some(answering) = self.calls.get_mut(&call) else {
                    return Ok(Vec::new());
                };
                let command = CallCommand::CallAnswer {
                    call: call.clone(),
                    sdp,
                };
                let reference = connection.send(ClientCommand::Call(command)).await?;
                self.answers.insert(reference, call.clone());
                let plan = CallPlan {
                    talk_for: self.options.talk_for,
                    connect_within: Duration::from_secs(CONNECT_WITHIN_SECONDS),
                    invite: Vec::new(),
                };
                answering.session = Some(CallSession::new(call, plan, Instant::now()));
                Ok(Vec::new())
            }
            Wake::Offer(Offer {
                call,
                sdp: Err(error),
            }) => {
                client_error(&format!("cannot answer {call}: {error}"));
                self.calls.remove(&call);
                Ok(Vec::new())
            }
            Wake::PeerDone(Ok(totals)) => Ok(self.summary(totals).into_iter().collect()),
            Wake::PeerDone(Err(error)) => {
                client_error(&format!("a softphone task failed: {error}"));
                Ok(Vec::new())
            }
            Wake::Timeout => {
                let now = Instant::now();
                let due: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, answering)| {
                        answering
                            .session
                            .as_ref()
                            .and_then(CallSession::poll_timeout)
                            .is_some_and(|deadline| deadline <= now)
                    })
                    .map(|(call, _)| call.clone())
                    .collect();
                for call in due {
                    if let Some(session) = self
                        .calls
                        .get_mut(&call)
                        .and_then(|answering| answering.session.as_mut())
                    {
                        session.handle_timeout(now);
                    }
                    self.drive(connection, &call).await?;
                }
                Ok(Vec::new())
            }
        }
    }

    /// A call rings here: start its peer (once per call).
    fn ring(&mut self, call: &CallId, from: &UserId, video: bool) {
        if self.calls.contains_key(call) || self.finishing.contains_key(call) {
            return;
        }
        let (to_peer, from_loop) = mpsc::unbounded_channel();
        let ring_until = Instant::now() + self.options.delay;
        self.tasks.spawn(softphone(
            call.clone(),
            video,
            ring_until,
            self.offers_tx.clone(),
            from_loop,
        ));
        self.calls.insert(
            call.clone(),
            Answering {
                from: from.clone(),
                video,
                to_peer,
                session: None,
            },
        );
    }

    /// Carries out what `call`'s session asks; moves it to `finishing` once over.
    async fn drive(
        &mut self,
        connection: &mut Connection,
        call: &CallId,
    ) -> Result<(), ClientError> {
        let Some(answering) = self.calls.get_mut(call) else {
            return Ok(());
        };
        let Some(session) = answering.session.as_mut() else {
            return Ok(());
        };
        while let Some(action) = session.poll_output() {
            match action {
                CallAction::ApplyAnswer { sdp } => {
                    // The task is gone only when the call is being dropped anyway.
                    let _ = answering.to_peer.send(sdp);
                }
                CallAction::HangUp => {
                    let command = CallCommand::CallHangup { call: call.clone() };
                    connection.send(ClientCommand::Call(command)).await?;
                }
                CallAction::Invite { .. } => {}
            }
        }
        if session.is_over()
            && let Some(answering) = self.calls.remove(call)
            && let Some(session) = answering.session
        {
            // Dropping `to_peer` stops the task; its counts come back through `next`.
            self.finishing.insert(
                call.clone(),
                Finishing {
                    from: answering.from,
                    video: answering.video,
                    session,
                    ended: Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// The `call_summary` line of a call whose peer task is done, if the call is over.
    fn summary(&mut self, totals: PeerTotals) -> Option<String> {
        let finishing = self.finishing.remove(&totals.call)?;
        let report = CallReport::from_session(
            CallKind::Answered,
            finishing.from,
            finishing.video,
            &finishing.session,
            finishing.ended,
        )
        .with_media(
            totals.media_connected,
            totals.sent,
            totals.received,
            totals.video_received,
        );
        Some(summary_line(report.json()))
    }

    /// Ends every call's peer (the session is over: the server drops this device's legs).
    pub async fn stop(mut self) {
        self.calls.clear();
        self.finishing.clear();
        let _ = tokio::time::timeout(STOP_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// `{"type":"call_summary", …the report}`, `type` first like in the event lines around it.
fn summary_line(report: Value) -> String {
    let mut line = String::from(r#"{"type":"call_summary""#);
    if let Value::Object(report) = report {
        for (key, value) in report {
            line.push(',');
            line.push_str(&Value::String(key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
    }
    line.push('}');
    line
}

fn client_error(text: &str) {
    eprintln!("{}", json!({"type": "client_error", "error": text}));
}

/// One call's peer: builds it and its offer, lets the call ring until `ring_until`, hands the
/// offer to the loop, applies the MediaServer's answer, then sends audio (and video for a
/// video call) every frame while connected, until the loop drops `answers`.
async fn softphone(
    call: CallId,
    video: bool,
    ring_until: Instant,
    offers: mpsc::Sender<Offer>,
    mut answers: mpsc::UnboundedReceiver<String>,
) -> PeerTotals {
    let mut totals = PeerTotals {
        call: call.clone(),
        sent: 0,
        received: 0,
        video_received: 0,
        media_connected: false,
    };
    let built: Result<(ClientPeer, String), PeerError> = async {
        let mut peer = ClientPeer::new(PeerOptions::softphone(video)).await?;
        match peer.create_offer(GATHER_TIMEOUT).await {
            Ok(offer) => Ok((peer, offer)),
            Err(error) => {
                peer.close().await;
                Err(error)
            }
        }
    }
    .await;
    let (peer, offer) = match built {
        Ok(built) => built,
        Err(error) => {
            let offer = Offer {
                call,
                sdp: Err(error.to_string()),
            };
            let _ = offers.send(offer).await;
            return totals;
        }
    };
    // Ring; the call may be taken elsewhere meanwhile (then the loop drops `answers`).
    let answering = tokio::select! {
        () = sleep_until(Some(ring_until)) => true,
        _ = answers.recv() => false,
    };
    if answering {
        let offer = Offer {
            call,
            sdp: Ok(offer),
        };
        if offers.send(offer).await.is_ok() {
            talk(&peer, &mut answers).await;
        }
    }
    totals.sent = peer.packets_sent();
    totals.received = peer.packets_received();
    totals.video_received = peer.video_packets_received();
    totals.media_connected = peer.was_connected();
    peer.close().await;
    totals
}

/// Applies answers and sends media until `answers` closes.
async fn talk(peer: &ClientPeer, answers: &mut mpsc::UnboundedReceiver<String>) {
    let mut audio = tokio::time::interval(AUDIO_FRAME);
    audio.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut video = tokio::time::interval(VIDEO_FRAME);
    video.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            answer = answers.recv() => match answer {
                Some(sdp) => {
                    if let Err(error) = peer.apply_answer(sdp).await {
                        client_error(&format!("the MediaServer's answer does not apply: {error}"));
                    }
                }
                None => return,
            },
            _ = audio.tick() => {
                if peer.is_connected() {
                    let _ = peer.send_one_audio_packet().await;
                }
            }
            _ = video.tick(), if peer.has_video() => {
                if peer.is_connected() {
                    let _ = peer.send_one_video_frame().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_typed_and_carries_the_report() {
        let line = summary_line(json!({"call": "s1~ab", "packets_sent": 3, "to": "x\"y"}));
        assert_eq!(
            line,
            r#"{"type":"call_summary","call":"s1~ab","packets_sent":3,"to":"x\"y"}"#
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["type"], "call_summary");
    }
}
