//! The media engine: one tokio task that owns the UDP socket and every leg's `str0m::Rtc`.
//!
//! str0m is sans-IO, and this task is its only driver, so there are no locks: requests arrive
//! as [`Command`]s over an mpsc channel into the same `tokio::select!` as the socket and the
//! timer. The rule of the loop, as in str0m's own examples:
//!
//! **After every input (a datagram, a timeout, a command), drain that leg's `poll_output()`
//! until it returns `Timeout`, then re-arm the one timer at the earliest leg deadline.**
//!
//! Datagrams are routed to legs first by a map of known remote addresses, then by
//! `Rtc::accepts` (STUN credentials) for the first packets of a new leg. Every `Rtc` runs in
//! str0m's RTP mode: an RTP packet a leg receives is written, per the [`crate::routing`]
//! table, to the other legs of its call with its payload untouched (SFU: no depacketizing,
//! no mixing, no transcoding). Each receive slot is its own outgoing stream ([`SlotStream`]):
//! str0m gives it an SSRC, and the engine keeps its sequence numbers and RTP time continuous
//! when the slot changes source. Receivers that were written to get a timeout (str0m only
//! sends queued RTP on one) and are drained at the end of the batch of datagrams being handled,
//! unless a datagram of their own drained them earlier; the batch's sends then go out in one
//! `sendmmsg` ([`crate::udp`]), so forwarding adds no timer delay.
//! RTCP stays per leg: str0m answers a receiver's NACKs from its own resend cache and sends
//! NACKs to a sender that lost packets; a receiver's keyframe request (PLI/FIR) is passed to
//! the leg that feeds the slot.

use crate::config::MediaConfig;
use crate::error::MediaError;
use crate::metrics::MetricsSnapshot;
use crate::routing::{LegKey, LegMediaShape, RoutingTable, TrackKind};
use crate::udp::{BatchReceiver, BatchSender};
use shared::media::{LegAnswer, LegOffer, LegStats, MediaEvent, MediaServerStatus};
use shared::{CallId, MediaServerId};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, CodecConfig};
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Batched reads (of `udp::BATCH` datagrams each) per wake-up before the other `select!`
/// arms get a turn.
const READS_PER_WAKE: usize = 2;
/// Housekeeping cadence: connect timeouts, ended legs, status publication.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(250);
/// Status is published to the heartbeat this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Longest leg or call name accepted.
const MAX_NAME_LEN: usize = 128;

/// A request to the engine. Every variant carries its own reply channel.
pub(crate) enum Command {
    AddLeg {
        call: CallId,
        offer: LegOffer,
        reply: oneshot::Sender<Result<LegAnswer, MediaError>>,
    },
    RemoveLeg {
        call: CallId,
        leg: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    EndCall {
        call: CallId,
        reply: oneshot::Sender<Result<usize, MediaError>>,
    },
    CallStats {
        call: CallId,
        reply: oneshot::Sender<Result<Vec<LegStats>, MediaError>>,
    },
    Status {
        reply: oneshot::Sender<MediaServerStatus>,
    },
    Metrics {
        reply: oneshot::Sender<MetricsSnapshot>,
    },
    Shutdown,
}

/// Direct access to a running media engine: the same operations as the control API, as async
/// methods. Cheap to clone; every clone talks to the same engine task.
#[derive(Clone)]
pub struct MediaHandle {
    commands: mpsc::Sender<Command>,
    /// The engine task and its companions (the Redis link), taken by the first `shutdown()`
    /// to wait for them; dropped (aborting them) with the last handle otherwise.
    tasks: Arc<Mutex<Option<JoinSet<()>>>>,
    id: MediaServerId,
}

impl MediaHandle {
    /// This server's id.
    pub fn id(&self) -> &MediaServerId {
        &self.id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| MediaError::EngineStopped)?;
        answer.await.map_err(|_| MediaError::EngineStopped)
    }

    /// Adds a participant's peer connection to a call (creating the call) and returns the SDP
    /// answer. On any error nothing of the leg is kept.
    pub async fn add_leg(&self, call: CallId, offer: LegOffer) -> Result<LegAnswer, MediaError> {
        self.ask(|reply| Command::AddLeg { call, offer, reply })
            .await?
    }

    /// Closes one leg (a `Closed` event follows).
    pub async fn remove_leg(&self, call: CallId, leg: String) -> Result<(), MediaError> {
        self.ask(|reply| Command::RemoveLeg { call, leg, reply })
            .await?
    }

    /// Closes every leg of a call; returns how many there were.
    pub async fn end_call(&self, call: CallId) -> Result<usize, MediaError> {
        self.ask(|reply| Command::EndCall { call, reply }).await?
    }

    /// Counters of every leg of a call.
    pub async fn call_stats(&self, call: CallId) -> Result<Vec<LegStats>, MediaError> {
        self.ask(|reply| Command::CallStats { call, reply }).await?
    }

    /// The heartbeat record as of now.
    pub async fn status(&self) -> Result<MediaServerStatus, MediaError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The engine's counters as of now.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, MediaError> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    /// Stops the engine (closing every leg) and waits for its task to end. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let tasks = self.tasks.lock().ok().and_then(|mut slot| slot.take());
        if let Some(mut tasks) = tasks {
            while let Some(result) = tasks.join_next().await {
                if let Err(e) = result {
                    tracing::error!(error = %e, "a media engine task ended abnormally");
                }
            }
        }
    }
}

/// What the engine was started with, resolved (ports bound, ids fixed).
pub(crate) struct EngineSetup {
    pub config: MediaConfig,
    pub socket: UdpSocket,
    /// The address put into ICE candidates (public IP + bound port).
    pub media_addr: SocketAddr,
    pub control_url: String,
    pub incarnation: String,
    /// Where leg events go (the embedder, or the Redis publisher).
    pub events: Vec<mpsc::Sender<MediaEvent>>,
    /// Where the heartbeat record is published every second.
    pub status: watch::Sender<MediaServerStatus>,
}

/// Spawns the engine task into `tasks` (which may hold its companions) and returns the handle
/// that owns them all.
pub(crate) fn spawn_engine(
    setup: EngineSetup,
    mut tasks: JoinSet<()>,
) -> Result<MediaHandle, anyhow::Error> {
    install_crypto_provider();
    let certificate = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| anyhow::anyhow!("the crypto provider cannot generate a DTLS certificate"))?;
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let id = setup.config.id.clone();
    let (engine, receiver) = Engine::new(setup, certificate);
    tasks.spawn(engine.run(receiver, commands_rx));
    Ok(MediaHandle {
        commands: commands_tx,
        tasks: Arc::new(Mutex::new(Some(tasks))),
        id,
    })
}

fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// Why a leg ended.
#[derive(Debug, Clone)]
enum LegEnd {
    /// Removed on request, or the remote closed DTLS.
    Closed,
    /// ICE timeout, ICE loss, DTLS failure.
    Failed {
        reason: String,
        dtls: bool,
        ice_timeout: bool,
    },
}

/// One m-line of a leg as the server sees it.
#[derive(Debug, Clone, Copy)]
struct LegMedia {
    kind: TrackKind,
    /// The server receives on it (the client sends).
    receiving: bool,
    /// The server may send on it (a receive slot of the client).
    sending: bool,
}

/// Per-leg counters for `LegStats`.
#[derive(Debug, Default, Clone, Copy)]
struct LegCounters {
    datagrams_in: u64,
    datagrams_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// Where one kind of a leg's media goes: one [`Route`] per receiving slot, in join order.
type Fanout = [Vec<Route>; 2];

/// One receiving slot that a sender's media of one kind is written to.
#[derive(Debug, Clone)]
struct Route {
    receiver: LegKey,
    /// Index into the receiver's `slots` of this kind.
    slot: usize,
    /// Payload types of the sender's m-line and what each is called on the receiver's.
    payload_types: Vec<PayloadTypeMap>,
}

/// A sender's payload type and the receiver's payload type for the same codec (also for its
/// RED form, when both negotiated one).
#[derive(Debug, Clone, Copy)]
struct PayloadTypeMap {
    from: Pt,
    to: Pt,
    /// RTP clock rate of the codec (Hz), to continue RTP time when a slot changes source.
    clock_rate: u32,
}

impl Route {
    fn map(&self, pt: Pt) -> Option<PayloadTypeMap> {
        self.payload_types.iter().find(|m| m.from == pt).copied()
    }
}

/// One receive slot of a leg (an m-line the server sends on) as an outgoing RTP stream.
///
/// In RTP mode str0m sends what it is given, so the numbering is the engine's: the first
/// source's sequence numbers and RTP time pass through (less any rollover count, which a
/// receiver could not know), and when the slot is given to another source both continue
/// from where the previous one stopped. Invariant: outgoing sequence numbers of a later
/// source are above every one of an earlier source.
#[derive(Debug)]
struct SlotStream {
    mid: Mid,
    /// The stream (sending leg, its SSRC) whose packets went out last.
    source: Option<(LegKey, Ssrc)>,
    /// Added (mod 2^64) to the source's extended sequence number.
    seq_offset: u64,
    /// Added (mod 2^32) to the source's RTP time.
    time_offset: u32,
    /// Highest outgoing extended sequence number so far.
    highest_seq: u64,
    /// Outgoing sequence numbers at or below this belonged to an earlier source; late
    /// packets of the current source that would land there are dropped.
    floor_seq: Option<u64>,
    /// RTP time and arrival of the packet that set `highest_seq`.
    last_time: u32,
    last_arrival: Option<Instant>,
}

/// Outgoing sequence numbers stay far below the SRTP index limit (2^48).
const MAX_OUT_SEQ: u64 = 1 << 47;

impl SlotStream {
    fn new(mid: Mid) -> Self {
        Self {
            mid,
            source: None,
            seq_offset: 0,
            time_offset: 0,
            highest_seq: 0,
            floor_seq: None,
            last_time: 0,
            last_arrival: None,
        }
    }

    /// The outgoing extended sequence number and RTP time of a packet from `source`, and
    /// whether the slot just changed source; `None` drops the packet. `seq` is the source's
    /// extended sequence number, `time` its RTP time, `arrival` when the packet came in.
    fn rewrite(
        &mut self,
        source: (LegKey, Ssrc),
        seq: u64,
        time: u32,
        arrival: Instant,
        clock_rate: u32,
    ) -> Option<(u64, u32, bool)> {
        let switched = self.source != Some(source);
        if switched {
            match self.last_arrival {
                None => {
                    // First packet: keep the header's number, drop the rollover count.
                    self.seq_offset = (seq & 0xffff).wrapping_sub(seq);
                    self.time_offset = 0;
                }
                Some(last_arrival) => {
                    let next = self.highest_seq + 1;
                    self.seq_offset = next.wrapping_sub(seq);
                    self.floor_seq = Some(self.highest_seq);
                    // RTP time moves on by the wall time between the two sources' packets.
                    let gap = arrival.saturating_duration_since(last_arrival);
                    let ticks = (gap.as_micros() as u64 * u64::from(clock_rate) / 1_000_000)
                        .clamp(1, u64::from(u32::MAX / 2)) as u32;
                    self.time_offset = self.last_time.wrapping_add(ticks).wrapping_sub(time);
                }
            }
            self.source = Some(source);
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        if out_seq >= MAX_OUT_SEQ || self.floor_seq.is_some_and(|floor| out_seq <= floor) {
            return None;
        }
        let out_time = time.wrapping_add(self.time_offset);
        if out_seq > self.highest_seq || self.last_arrival.is_none() {
            self.highest_seq = out_seq;
            self.last_time = out_time;
            self.last_arrival = Some(arrival);
        }
        Some((out_seq, out_time, switched))
    }
}

/// One participant's peer connection.
struct Leg {
    key: LegKey,
    call: CallId,
    name: String,
    rtc: Rtc,
    created: Instant,
    connected: bool,
    /// When str0m wants `handle_input(Timeout)` next.
    next_timeout: Instant,
    media: Vec<LegMedia>,
    /// Per kind, the m-line whose media is forwarded: the first one the client sends on. A
    /// sender fills one slot per kind in each receiver, so further sending m-lines of the
    /// same kind are not forwarded.
    send_mids: [Option<Mid>; 2],
    /// Incoming SSRCs already resolved to their m-line (a handful; cleared when it grows).
    rx_ssrcs: Vec<(Ssrc, Mid)>,
    /// Receive slots (m-lines the server sends on) per kind, in m-line order.
    slots: [Vec<SlotStream>; 2],
    /// Cached routing: where this leg's media of each kind goes.
    fanout: Fanout,
    /// For keyframe requests: which sending leg feeds each of this leg's slots.
    slot_sources: HashMap<Mid, LegKey>,
    /// Remote addresses routed to this leg (to clean the address map on removal).
    remote_addrs: Vec<SocketAddr>,
    counters: LegCounters,
    /// Set when the leg must be removed at the next housekeeping.
    end: Option<LegEnd>,
}

/// Incoming SSRCs remembered per leg before the cache is cleared (a client changing SSRCs
/// again and again must not grow it).
const MAX_RX_SSRCS: usize = 16;

impl Leg {
    fn shape(&self) -> LegMediaShape {
        let mut shape = LegMediaShape::default();
        for media in &self.media {
            let index = kind_index(media.kind);
            shape.sends[index] |= media.receiving;
        }
        shape.receive_slots = [self.slots[0].len(), self.slots[1].len()];
        shape
    }

    fn stats(&self) -> LegStats {
        LegStats {
            leg: self.name.clone(),
            connected: self.connected,
            packets_in: self.counters.datagrams_in,
            packets_out: self.counters.datagrams_out,
            bytes_in: self.counters.bytes_in,
            bytes_out: self.counters.bytes_out,
        }
    }

    /// The kind of a received RTP packet when it is to be forwarded (it came on the m-line
    /// the leg sends that kind on).
    fn forwarded_kind(&mut self, ssrc: Ssrc) -> Option<TrackKind> {
        let mid = match self.rx_ssrcs.iter().find(|(s, _)| *s == ssrc) {
            Some((_, mid)) => *mid,
            None => {
                let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
                if self.rx_ssrcs.len() >= MAX_RX_SSRCS {
                    self.rx_ssrcs.clear();
                }
                self.rx_ssrcs.push((ssrc, mid));
                mid
            }
        };
        TrackKind::ALL
            .into_iter()
            .find(|kind| self.send_mids[kind_index(*kind)] == Some(mid))
    }

    /// Asks the client for a keyframe on the video it sends.
    fn request_keyframe(&mut self, kind: KeyframeRequestKind) -> bool {
        let Some(mid) = self.send_mids[kind_index(TrackKind::Video)] else {
            return false;
        };
        match self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            Some(stream) => {
                stream.request_keyframe(kind);
                true
            }
            None => false,
        }
    }
}

fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
    }
}

/// Something a drained leg produced that concerns other legs. Nearly all are `Media`, so
/// boxing it to shrink the rare `Keyframe` would only add an allocation per packet.
#[allow(clippy::large_enum_variant)]
enum Propagation {
    Media {
        source: LegKey,
        kind: TrackKind,
        packet: RtpPacket,
    },
    Keyframe {
        receiver: LegKey,
        request: KeyframeRequest,
    },
}

/// What writing one packet to one slot did.
enum Written {
    No,
    Yes,
    /// Written, and it is the first packet of this source on the slot.
    NewSource,
}

/// The socket side of draining: sends and counts. Kept apart from the leg map so a leg can
/// be drained while it is borrowed from the map (or before it is in the map).
struct Io {
    sender: BatchSender,
    metrics: MetricsSnapshot,
    /// Arrival times of datagrams whose forwarded copies are queued but not yet written.
    forwarded_arrivals: Vec<Instant>,
}

impl Io {
    /// Queues a datagram (counted as sent; the socket's refusals are counted at flush).
    fn send(&mut self, destination: SocketAddr, contents: Vec<u8>, counters: &mut LegCounters) {
        self.metrics.datagrams_out += 1;
        counters.datagrams_out += 1;
        counters.bytes_out += contents.len() as u64;
        self.sender.push(destination, contents);
    }

    /// Writes every queued datagram; the forwarding latency of what went out is recorded now,
    /// when it really left.
    fn flush(&mut self) {
        if !self.sender.is_empty() {
            self.sender.flush();
        }
        let sent = Instant::now();
        for arrival in self.forwarded_arrivals.drain(..) {
            self.metrics
                .forward_latency
                .record(sent.saturating_duration_since(arrival));
        }
    }
}

/// Polls a leg until str0m returns a timeout, sending its transmits and collecting what
/// concerns other legs. Marks the leg ended on errors.
fn drain_leg(
    leg: &mut Leg,
    io: &mut Io,
    out: &mut Vec<Propagation>,
    events: &mut Vec<(LegKey, LegNote)>,
) {
    loop {
        if !leg.rtc.is_alive() {
            if leg.end.is_none() {
                leg.end = Some(LegEnd::Closed);
            }
            return;
        }
        let output = match leg.rtc.poll_output() {
            Ok(output) => output,
            Err(e) => {
                fail_leg(leg, &e);
                return;
            }
        };
        match output {
            Output::Timeout(at) => {
                leg.next_timeout = at;
                return;
            }
            Output::Transmit(transmit) => {
                io.send(
                    transmit.destination,
                    transmit.contents.into(),
                    &mut leg.counters,
                );
            }
            Output::Event(event) => match event {
                Event::Connected if !leg.connected => {
                    leg.connected = true;
                    events.push((leg.key, LegNote::Connected));
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    leg.end = Some(LegEnd::Failed {
                        reason: "ICE connection lost (no consent from the client)".into(),
                        dtls: false,
                        ice_timeout: false,
                    });
                    leg.rtc.disconnect();
                }
                Event::RtpPacket(packet) => {
                    if let Some(kind) = leg.forwarded_kind(packet.header.ssrc) {
                        out.push(Propagation::Media {
                            source: leg.key,
                            kind,
                            packet,
                        });
                    }
                }
                Event::KeyframeRequest(request) => {
                    out.push(Propagation::Keyframe {
                        receiver: leg.key,
                        request,
                    });
                }
                Event::Closed if leg.end.is_none() => {
                    leg.end = Some(LegEnd::Closed);
                }
                _ => {}
            },
        }
    }
}

fn fail_leg(leg: &mut Leg, error: &RtcError) {
    let dtls = matches!(error, RtcError::Dtls(_));
    let reason = if dtls {
        format!("DTLS failed: {error}")
    } else {
        format!("media session failed: {error}")
    };
    tracing::warn!(call = %leg.call, leg = %leg.name, %reason, "leg failed");
    leg.end = Some(LegEnd::Failed {
        reason,
        dtls,
        ice_timeout: false,
    });
    leg.rtc.disconnect();
}

/// Lifecycle notes collected while draining, turned into `MediaEvent`s by the engine.
enum LegNote {
    Connected,
}

struct Engine {
    config: MediaConfig,
    io: Io,
    media_addr: SocketAddr,
    control_url: String,
    incarnation: String,
    certificate: DtlsCert,
    legs: HashMap<LegKey, Leg>,
    /// (call, leg name) -> key.
    by_name: HashMap<(String, String), LegKey>,
    /// Remote address -> leg, the fast path of datagram routing.
    by_addr: HashMap<SocketAddr, LegKey>,
    routing: RoutingTable,
    next_key: LegKey,
    events: Vec<mpsc::Sender<MediaEvent>>,
    status: watch::Sender<MediaServerStatus>,
    /// Scratch buffers reused across iterations (no allocation per forwarded packet).
    propagations: Vec<Propagation>,
    propagations_spare: Vec<Propagation>,
    notes: Vec<(LegKey, LegNote)>,
    dirty: Vec<LegKey>,
    last_status: Instant,
    next_housekeeping: Instant,
}

impl Engine {
    fn new(setup: EngineSetup, certificate: DtlsCert) -> (Self, BatchReceiver) {
        let now = Instant::now();
        let socket = Arc::new(setup.socket);
        let metrics = MetricsSnapshot {
            capacity: setup.config.capacity as u64,
            ..Default::default()
        };
        let engine = Self {
            config: setup.config,
            io: Io {
                sender: BatchSender::new(socket.clone()),
                metrics,
                forwarded_arrivals: Vec::new(),
            },
            media_addr: setup.media_addr,
            control_url: setup.control_url,
            incarnation: setup.incarnation,
            certificate,
            legs: HashMap::new(),
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            routing: RoutingTable::default(),
            next_key: 1,
            events: setup.events,
            status: setup.status,
            propagations: Vec::new(),
            propagations_spare: Vec::new(),
            notes: Vec::new(),
            dirty: Vec::new(),
            last_status: now,
            next_housekeeping: now + HOUSEKEEPING_EVERY,
        };
        (engine, BatchReceiver::new(socket))
    }

    async fn run(mut self, mut receiver: BatchReceiver, mut commands: mpsc::Receiver<Command>) {
        tracing::info!(media_addr = %self.media_addr, "media engine running");
        let timer = tokio::time::sleep_until(self.next_deadline().into());
        tokio::pin!(timer);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.handle_command(command),
                },
                ready = receiver.readable() => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "media socket failed; stopping the engine");
                        break;
                    }
                    self.receive_batches(&mut receiver);
                },
                _ = &mut timer => {}
            }
            let now = Instant::now();
            self.handle_due_timeouts(now);
            if now >= self.next_housekeeping {
                self.housekeeping(now);
            }
            // Everything this turn queued goes out before the engine waits again.
            self.io.flush();
            timer.as_mut().reset(self.next_deadline().into());
        }
        self.close_all();
        self.io.flush();
        tracing::info!("media engine stopped");
    }

    /// The earliest moment anything needs the engine: a leg deadline or housekeeping.
    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_housekeeping;
        for leg in self.legs.values() {
            if leg.next_timeout < deadline {
                deadline = leg.next_timeout;
            }
        }
        deadline
    }

    fn receive_batches(&mut self, receiver: &mut BatchReceiver) {
        for _ in 0..READS_PER_WAKE {
            match receiver.read() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors (port unreachable of a gone client) surface here on Linux.
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            }
            let now = Instant::now();
            for index in 0..receiver.len() {
                let arrival = receiver.arrival(index);
                self.io
                    .metrics
                    .socket_wait
                    .record(now.saturating_duration_since(arrival));
                let (source, bytes) = receiver.datagram(index);
                if bytes.is_empty() {
                    self.io.metrics.datagrams_in += 1;
                    self.io.metrics.datagrams_unrouted += 1;
                    continue;
                }
                if self.handle_datagram(now, source, bytes) {
                    self.io.forwarded_arrivals.push(arrival);
                }
            }
            let full = receiver.len() == crate::udp::BATCH;
            // A batch's forwarded packets leave before the next batch is read.
            self.settle(now);
            self.io.flush();
            if !full {
                break;
            }
        }
    }

    /// Hands one datagram to its leg and forwards what comes of it; true when media was
    /// forwarded.
    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) -> bool {
        self.io.metrics.datagrams_in += 1;
        let Ok(contents) = bytes.try_into() else {
            self.io.metrics.datagrams_unrouted += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.media_addr,
                contents,
            },
        );
        let mut target = self.by_addr.get(&source).copied().filter(|key| {
            self.legs
                .get(key)
                .is_some_and(|leg| leg.rtc.accepts(&input))
        });
        if target.is_none() {
            target = self
                .legs
                .values()
                .find(|leg| leg.end.is_none() && leg.rtc.accepts(&input))
                .map(|leg| leg.key);
            if let Some(key) = target {
                self.by_addr.insert(source, key);
                if let Some(leg) = self.legs.get_mut(&key)
                    && !leg.remote_addrs.contains(&source)
                {
                    leg.remote_addrs.push(source);
                }
            }
        }
        let Some(key) = target else {
            self.io.metrics.datagrams_unrouted += 1;
            return false;
        };
        let Some(leg) = self.legs.get_mut(&key) else {
            return false;
        };
        leg.counters.datagrams_in += 1;
        leg.counters.bytes_in += bytes.len() as u64;
        if let Err(e) = leg.rtc.handle_input(input) {
            fail_leg(leg, &e);
        }
        drain_leg(leg, &mut self.io, &mut self.propagations, &mut self.notes);
        // That input ran the leg's timeout too, so what was written to it went out.
        if let Some(position) = self.dirty.iter().position(|k| *k == key) {
            self.dirty.swap_remove(position);
        }
        let forwarded = self.propagate();
        self.flush_notes();
        forwarded
    }

    /// Writes collected media to the receiving legs and marks them dirty; they are drained
    /// by [`Self::settle`]. Returns true when at least one packet was forwarded.
    fn propagate(&mut self) -> bool {
        let mut forwarded = false;
        while !self.propagations.is_empty() {
            let mut batch = std::mem::take(&mut self.propagations_spare);
            std::mem::swap(&mut batch, &mut self.propagations);
            for propagation in batch.drain(..) {
                match propagation {
                    Propagation::Media {
                        source,
                        kind,
                        packet,
                    } => forwarded |= self.forward(source, kind, &packet),
                    Propagation::Keyframe { receiver, request } => {
                        self.forward_keyframe_request(receiver, request);
                    }
                }
            }
            self.propagations_spare = batch;
        }
        forwarded
    }

    /// Gives every leg written to a timeout (str0m sends queued RTP only after one) and
    /// drains it, forwarding what that yields, until nothing is left; then reports what the
    /// drains noted (legs connected). Called once per batch
    /// of datagrams: a leg that also receives a datagram later in the batch is drained after
    /// that input anyway (its handling includes the timeout), so in a call where both sides
    /// talk most writes need no drain of their own.
    fn settle(&mut self, now: Instant) {
        loop {
            self.propagate();
            if self.dirty.is_empty() {
                break;
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            for &key in &dirty {
                if let Some(leg) = self.legs.get_mut(&key) {
                    if let Err(e) = leg.rtc.handle_input(Input::Timeout(now)) {
                        fail_leg(leg, &e);
                    }
                    drain_leg(leg, &mut self.io, &mut self.propagations, &mut self.notes);
                }
            }
            dirty.clear();
            // Draining marks nothing dirty, so `self.dirty` is still empty here.
            self.dirty = dirty;
        }
        self.flush_notes();
    }

    /// Writes one received RTP packet to every slot its sender feeds. The fan-out list is
    /// taken out of the sending leg meanwhile (a leg never feeds itself), so nothing is copied.
    fn forward(&mut self, source: LegKey, kind: TrackKind, packet: &RtpPacket) -> bool {
        let Some(routes) = self
            .legs
            .get_mut(&source)
            .map(|leg| std::mem::take(&mut leg.fanout[kind_index(kind)]))
        else {
            return false;
        };
        let mut forwarded = false;
        let mut keyframe_wanted = false;
        for route in &routes {
            match self.write_rtp(source, kind, route, packet) {
                Written::No => {}
                Written::Yes => forwarded = true,
                Written::NewSource => {
                    forwarded = true;
                    keyframe_wanted = kind == TrackKind::Video;
                }
            }
        }
        if let Some(leg) = self.legs.get_mut(&source) {
            leg.fanout[kind_index(kind)] = routes;
            // A receiver that starts on (or switches to) this video needs a keyframe to
            // decode it.
            if keyframe_wanted && leg.request_keyframe(KeyframeRequestKind::Pli) {
                self.mark_dirty(source);
            }
        }
        forwarded
    }

    fn write_rtp(
        &mut self,
        source: LegKey,
        kind: TrackKind,
        route: &Route,
        packet: &RtpPacket,
    ) -> Written {
        let Some(leg) = self.legs.get_mut(&route.receiver) else {
            return Written::No;
        };
        if !leg.connected || leg.end.is_some() {
            return Written::No;
        }
        let Some(pt) = route.map(packet.header.payload_type) else {
            return Written::No;
        };
        let Some(slot) = leg.slots[kind_index(kind)].get_mut(route.slot) else {
            return Written::No;
        };
        let Some((seq_no, time, switched)) = slot.rewrite(
            (source, packet.header.ssrc),
            *packet.seq_no,
            packet.header.timestamp,
            packet.timestamp,
            pt.clock_rate,
        ) else {
            return Written::No;
        };
        let mid = slot.mid;
        let mut direct = leg.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(mid, None) else {
            return Written::No;
        };
        // Only what describes the media itself goes along; transport extensions (MID,
        // transport-wide sequence, send time) are the receiving leg's own.
        let received = &packet.header.ext_vals;
        let ext_vals = ExtensionValues {
            audio_level: received.audio_level,
            voice_activity: received.voice_activity,
            video_orientation: received.video_orientation,
            ..ExtensionValues::default()
        };
        let write = RtpWrite::new(
            pt.to,
            SeqNo::from(seq_no),
            time,
            packet.timestamp,
            packet.payload.clone(),
        )
        .marker(packet.header.marker)
        .ext_vals(ext_vals)
        .nackable(kind == TrackKind::Video);
        stream.write_rtp(write);
        self.io.metrics.packets_relayed += 1;
        self.io.metrics.bytes_relayed += packet.payload.len() as u64;
        self.mark_dirty(route.receiver);
        if switched {
            Written::NewSource
        } else {
            Written::Yes
        }
    }

    fn mark_dirty(&mut self, key: LegKey) {
        if !self.dirty.contains(&key) {
            self.dirty.push(key);
        }
    }

    /// A receiver asked for a keyframe on one of its slots: ask the leg that feeds it.
    fn forward_keyframe_request(&mut self, receiver: LegKey, request: KeyframeRequest) {
        let Some(source) = self
            .legs
            .get(&receiver)
            .and_then(|leg| leg.slot_sources.get(&request.mid).copied())
        else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&source) else {
            return;
        };
        if leg.request_keyframe(request.kind) {
            self.mark_dirty(source);
        }
    }

    fn handle_due_timeouts(&mut self, now: Instant) {
        for leg in self.legs.values_mut() {
            if leg.next_timeout > now {
                continue;
            }
            if let Err(e) = leg.rtc.handle_input(Input::Timeout(now)) {
                fail_leg(leg, &e);
            }
            drain_leg(leg, &mut self.io, &mut self.propagations, &mut self.notes);
        }
        self.settle(now);
    }

    fn housekeeping(&mut self, now: Instant) {
        self.next_housekeeping = now + HOUSEKEEPING_EVERY;
        let connect_timeout = self.config.connect_timeout;
        for leg in self.legs.values_mut() {
            if !leg.connected
                && leg.end.is_none()
                && now.duration_since(leg.created) > connect_timeout
            {
                leg.end = Some(LegEnd::Failed {
                    reason: format!(
                        "ICE/DTLS not established within {} ms",
                        connect_timeout.as_millis()
                    ),
                    dtls: false,
                    ice_timeout: true,
                });
            }
        }
        let ended: Vec<(LegKey, LegEnd)> = self
            .legs
            .values()
            .filter_map(|leg| leg.end.clone().map(|end| (leg.key, end)))
            .collect();
        for (key, end) in ended {
            self.remove_leg(key, end);
        }
        if now.duration_since(self.last_status) >= STATUS_EVERY {
            self.last_status = now;
            let status = self.status_record();
            self.status.send_replace(status);
        }
    }

    fn flush_notes(&mut self) {
        let notes: Vec<(LegKey, LegNote)> = std::mem::take(&mut self.notes);
        for (key, note) in notes {
            let Some(leg) = self.legs.get(&key) else {
                continue;
            };
            match note {
                LegNote::Connected => {
                    self.io.metrics.legs_connected_total += 1;
                    tracing::info!(call = %leg.call, leg = %leg.name, "leg connected");
                    let event = MediaEvent::Connected {
                        media: self.config.id.clone(),
                        call: leg.call.clone(),
                        leg: leg.name.clone(),
                    };
                    self.emit(event);
                }
            }
        }
    }

    fn emit(&self, event: MediaEvent) {
        for sink in &self.events {
            if let Err(e) = sink.try_send(event.clone()) {
                tracing::warn!(error = %e, "media event dropped: receiver is slow or gone");
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::AddLeg { call, offer, reply } => {
                let result = self.add_leg(call, offer);
                let _ = reply.send(result);
                self.settle(Instant::now());
            }
            Command::RemoveLeg { call, leg, reply } => {
                let key = self.by_name.get(&(call.0.clone(), leg.clone())).copied();
                let result = match key {
                    Some(key) => {
                        self.remove_leg(key, LegEnd::Closed);
                        Ok(())
                    }
                    None => Err(MediaError::LegNotFound { call: call.0, leg }),
                };
                let _ = reply.send(result);
            }
            Command::EndCall { call, reply } => {
                let keys = self.call_leg_keys(&call);
                let result = if keys.is_empty() {
                    Err(MediaError::CallNotFound { call: call.0 })
                } else {
                    for key in &keys {
                        self.remove_leg(*key, LegEnd::Closed);
                    }
                    Ok(keys.len())
                };
                let _ = reply.send(result);
            }
            Command::CallStats { call, reply } => {
                let keys = self.call_leg_keys(&call);
                let result = if keys.is_empty() {
                    Err(MediaError::CallNotFound { call: call.0 })
                } else {
                    Ok(keys
                        .iter()
                        .filter_map(|key| self.legs.get(key))
                        .map(Leg::stats)
                        .collect())
                };
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status_record());
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
            Command::Shutdown => {}
        }
    }

    /// Legs of a call in the order they joined.
    fn call_leg_keys(&self, call: &CallId) -> Vec<LegKey> {
        let mut keys: Vec<LegKey> = self
            .legs
            .values()
            .filter(|leg| leg.call == *call)
            .map(|leg| leg.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn add_leg(&mut self, call: CallId, offer: LegOffer) -> Result<LegAnswer, MediaError> {
        check_name("call id", call.as_str())?;
        check_name("leg name", &offer.leg)?;
        if offer.sdp.len() > shared::limits::MAX_SDP_BYTES {
            return Err(MediaError::BadOffer {
                reason: format!(
                    "the SDP is larger than {} bytes",
                    shared::limits::MAX_SDP_BYTES
                ),
            });
        }
        let name_key = (call.0.clone(), offer.leg.clone());
        if self.by_name.contains_key(&name_key) {
            return Err(MediaError::DuplicateLeg {
                call: call.0,
                leg: offer.leg,
            });
        }
        if self.legs.len() >= self.config.capacity as usize {
            return Err(MediaError::CapacityReached {
                capacity: self.config.capacity,
            });
        }
        let sdp_offer =
            SdpOffer::from_sdp_string(&offer.sdp).map_err(|e| MediaError::BadOffer {
                reason: format!("not a valid SDP offer: {e}"),
            })?;

        let now = Instant::now();
        // RTP mode: packets are forwarded as they came, not depacketized into frames.
        let mut rtc = Rtc::builder()
            .set_dtls_cert(self.certificate.clone())
            .set_rtp_mode(true)
            .build(now);
        let candidate =
            Candidate::host(self.media_addr, "udp").map_err(|e| MediaError::BadOffer {
                reason: format!("server candidate refused: {e}"),
            })?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp_offer)
            .map_err(|e| MediaError::BadOffer {
                reason: format!("the offer cannot be negotiated: {e}"),
            })?;

        let key = self.next_key;
        self.next_key += 1;
        let mut leg = Leg {
            key,
            call: call.clone(),
            name: offer.leg.clone(),
            rtc,
            created: now,
            connected: false,
            next_timeout: now,
            media: Vec::new(),
            send_mids: [None, None],
            rx_ssrcs: Vec::new(),
            slots: [Vec::new(), Vec::new()],
            fanout: [Vec::new(), Vec::new()],
            slot_sources: HashMap::new(),
            remote_addrs: Vec::new(),
            counters: LegCounters::default(),
            end: None,
        };
        // Learn the m-lines before the leg joins the routing: the mids in offer order, with
        // kind and (local) direction as str0m negotiated them.
        for mid in offer_mids(&offer.sdp) {
            let Some(media) = leg.rtc.media(mid) else {
                continue;
            };
            if media.disabled() {
                continue;
            }
            let kind = match media.kind() {
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Video => TrackKind::Video,
            };
            let direction = media.direction();
            let line = LegMedia {
                kind,
                receiving: direction.is_receiving(),
                sending: direction.is_sending(),
            };
            if line.sending {
                leg.slots[kind_index(kind)].push(SlotStream::new(mid));
            }
            let send_mid = &mut leg.send_mids[kind_index(kind)];
            if line.receiving && send_mid.is_none() {
                *send_mid = Some(mid);
            }
            leg.media.push(line);
        }
        let mut propagations = Vec::new();
        drain_leg(&mut leg, &mut self.io, &mut propagations, &mut self.notes);
        if leg.media.is_empty() {
            return Err(MediaError::BadOffer {
                reason: "the offer has no audio or video m-line".into(),
            });
        }
        if let Some(LegEnd::Failed { reason, .. }) = &leg.end {
            return Err(MediaError::BadOffer {
                reason: reason.clone(),
            });
        }
        let shape = leg.shape();
        self.legs.insert(key, leg);
        self.by_name.insert(name_key, key);
        self.routing.join(call.as_str(), key, shape);
        self.rebuild_fanout(call.as_str());
        self.io.metrics.legs_added += 1;
        tracing::info!(
            call = %call,
            leg = %offer.leg,
            audio_slots = shape.receive_slots[0],
            video_slots = shape.receive_slots[1],
            "leg added"
        );
        Ok(LegAnswer {
            call,
            leg: offer.leg,
            sdp: answer.to_sdp_string(),
        })
    }

    /// Turns the call's routing table into each leg's cached fan-out list.
    fn rebuild_fanout(&mut self, call: &str) {
        let Some(routing) = self.routing.call(call) else {
            return;
        };
        let keys: Vec<LegKey> = self
            .legs
            .values()
            .filter(|l| l.call.as_str() == call)
            .map(|l| l.key)
            .collect();
        let mut fanouts: Vec<(LegKey, Fanout)> = Vec::new();
        let mut sources: HashMap<LegKey, HashMap<Mid, LegKey>> = HashMap::new();
        for &source in &keys {
            let mut fanout: Fanout = [Vec::new(), Vec::new()];
            for kind in TrackKind::ALL {
                for (receiver, slot) in routing.destinations(source, kind) {
                    let (Some(from), Some(to)) = (self.legs.get(&source), self.legs.get(&receiver))
                    else {
                        continue;
                    };
                    let Some(mid) = to.slots[kind_index(kind)].get(slot).map(|s| s.mid) else {
                        continue;
                    };
                    let payload_types = from.send_mids[kind_index(kind)]
                        .map(|from_mid| payload_type_maps(&from.rtc, from_mid, &to.rtc, mid))
                        .unwrap_or_default();
                    if payload_types.is_empty() {
                        tracing::info!(
                            call,
                            ?kind,
                            "two legs share no codec: this media is not forwarded between them"
                        );
                    }
                    fanout[kind_index(kind)].push(Route {
                        receiver,
                        slot,
                        payload_types,
                    });
                    sources.entry(receiver).or_default().insert(mid, source);
                }
            }
            fanouts.push((source, fanout));
        }
        let unserved = routing.unserved();
        for (key, fanout) in fanouts {
            if let Some(leg) = self.legs.get_mut(&key) {
                leg.fanout = fanout;
                leg.slot_sources = sources.remove(&key).unwrap_or_default();
            }
        }
        if unserved > 0 {
            tracing::info!(
                call,
                unserved,
                "some participants lack receive m-lines to hear everybody"
            );
        }
    }

    fn remove_leg(&mut self, key: LegKey, end: LegEnd) {
        let Some(mut leg) = self.legs.remove(&key) else {
            return;
        };
        // Tell the client politely (DTLS close_notify, RTCP BYE) when it is still there.
        if leg.rtc.is_alive() && matches!(end, LegEnd::Closed) {
            let _ = leg.rtc.close();
            let mut ignored = Vec::new();
            let mut notes = Vec::new();
            drain_leg(&mut leg, &mut self.io, &mut ignored, &mut notes);
        }
        self.by_name.remove(&(leg.call.0.clone(), leg.name.clone()));
        for addr in &leg.remote_addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        self.routing.leave(leg.call.as_str(), key);
        self.rebuild_fanout(leg.call.as_str());
        let media = self.config.id.clone();
        let event = match end {
            LegEnd::Closed => {
                tracing::info!(call = %leg.call, leg = %leg.name, "leg closed");
                MediaEvent::Closed {
                    media,
                    call: leg.call.clone(),
                    leg: leg.name.clone(),
                }
            }
            LegEnd::Failed {
                reason,
                dtls,
                ice_timeout,
            } => {
                self.io.metrics.legs_failed += 1;
                if dtls {
                    self.io.metrics.dtls_failures += 1;
                }
                if ice_timeout {
                    self.io.metrics.ice_timeouts += 1;
                }
                tracing::warn!(call = %leg.call, leg = %leg.name, %reason, "leg failed and was removed");
                MediaEvent::Failed {
                    media,
                    call: leg.call.clone(),
                    leg: leg.name.clone(),
                    reason,
                }
            }
        };
        self.emit(event);
    }

    fn close_all(&mut self) {
        let keys: Vec<LegKey> = self.legs.keys().copied().collect();
        for key in keys {
            self.remove_leg(key, LegEnd::Closed);
        }
    }

    fn status_record(&self) -> MediaServerStatus {
        MediaServerStatus {
            id: self.config.id.clone(),
            control_url: self.control_url.clone(),
            media_addr: self.media_addr.to_string(),
            capacity: self.config.capacity,
            legs: self.legs.len() as u32,
            calls: self.routing.call_count() as u32,
            incarnation: self.incarnation.clone(),
            updated_ms: shared::now_ms(),
        }
    }

    fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self.io.metrics.clone();
        // Counted by the sender, also for the batches it writes on its own when full.
        snapshot.send_errors = self.io.sender.errors;
        snapshot.legs = self.legs.len() as u64;
        snapshot.legs_connected = self.legs.values().filter(|l| l.connected).count() as u64;
        snapshot.calls = self.routing.call_count() as u64;
        let mut calls: Vec<&str> = self.legs.values().map(|l| l.call.as_str()).collect();
        calls.sort_unstable();
        calls.dedup();
        snapshot.unserved_routes = calls
            .iter()
            .filter_map(|c| self.routing.call(c))
            .map(|r| r.unserved() as u64)
            .sum();
        snapshot
    }
}

/// For each payload type negotiated on the sender's m-line, the one of the same codec (same
/// parameters if possible) negotiated on the receiver's, with its RED form when both have one.
fn payload_type_maps(from: &Rtc, from_mid: Mid, to: &Rtc, to_mid: Mid) -> Vec<PayloadTypeMap> {
    let (Some(from_media), Some(to_media)) = (from.media(from_mid), to.media(to_mid)) else {
        return Vec::new();
    };
    let negotiated = |config: &CodecConfig, pts: &[Pt]| -> Vec<str0m::format::PayloadParams> {
        config
            .params()
            .iter()
            .filter(|p| pts.contains(&p.pt()))
            .copied()
            .collect()
    };
    let sent = negotiated(from.codec_config(), from_media.remote_pts());
    let receivable = negotiated(to.codec_config(), to_media.remote_pts());
    let receivable_config = CodecConfig::new_from_payload_params(receivable.clone());
    let mut maps = Vec::new();
    for params in sent {
        let matched = receivable_config.match_params(params).copied().or_else(|| {
            receivable
                .iter()
                .find(|p| p.spec().codec == params.spec().codec)
                .copied()
        });
        let Some(matched) = matched else {
            continue;
        };
        let spec = matched.spec();
        // G.722's RTP clock is 8 kHz whatever its sampling rate (RFC 3551).
        let clock_rate = if spec.codec == Codec::G722 {
            8_000
        } else {
            spec.clock_rate.get()
        };
        maps.push(PayloadTypeMap {
            from: params.pt(),
            to: matched.pt(),
            clock_rate,
        });
        if let (Some(from), Some(to)) = (params.red(), matched.red()) {
            maps.push(PayloadTypeMap {
                from,
                to,
                clock_rate,
            });
        }
    }
    maps
}

/// The `a=mid:` values of an SDP, in m-line order.
fn offer_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=mid:"))
        .filter(|mid| !mid.is_empty() && mid.len() <= 16)
        .map(Mid::from)
        .collect()
}

fn check_name(what: &'static str, value: &str) -> Result<(), MediaError> {
    if value.is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(MediaError::InvalidName {
            what,
            value: value.chars().take(MAX_NAME_LEN).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// Feeds packets `(leg, ssrc, extended seq, RTP time, ms after start)` to one slot and
    /// checks what goes out, one line per packet: `seq time`, with ` new` when the slot just
    /// changed source, or `drop`.
    fn check(packets: &[(LegKey, u32, u64, u32, u64)], expected: &str) {
        let start = Instant::now();
        let mut slot = SlotStream::new(Mid::from("1"));
        let mut rendered = String::new();
        for &(leg, ssrc, seq, time, ms) in packets {
            let arrival = start + Duration::from_millis(ms);
            let _ = match slot.rewrite((leg, ssrc.into()), seq, time, arrival, 48_000) {
                Some((seq, time, true)) => writeln!(rendered, "{seq} {time} new"),
                Some((seq, time, false)) => writeln!(rendered, "{seq} {time}"),
                None => writeln!(rendered, "drop"),
            };
        }
        assert_eq!(rendered, crate::routing::tests::trimmed_lines(expected));
    }

    #[test]
    fn the_first_source_passes_through_without_its_rollover_count() {
        check(
            &[
                (1, 7, 70_000, 1000, 0),
                (1, 7, 70_002, 1960, 40),
                (1, 7, 70_001, 1480, 41),
            ],
            "4464 1000 new
             4466 1960
             4465 1480",
        );
    }

    #[test]
    fn a_new_source_continues_numbering_and_time_and_its_late_packets_are_dropped() {
        check(
            &[
                (1, 7, 100, 1000, 0),
                (1, 7, 101, 1960, 20),
                // 40 ms after the last packet: RTP time moves on by 40 ms at 48 kHz.
                (2, 9, 5000, 777, 60),
                (2, 9, 5001, 1737, 80),
                // Older than the first packet of source 2 on this slot.
                (2, 9, 4999, 0, 81),
            ],
            "100 1000 new
             101 1960
             102 3880 new
             103 4840
             drop",
        );
    }

    #[test]
    fn rtp_time_wraps_and_a_restarted_stream_counts_as_a_new_source() {
        check(
            &[
                (1, 7, 10, u32::MAX - 100, 0),
                (1, 7, 11, 860, 20),
                // Same leg, new SSRC (the client restarted its track).
                (1, 8, 3, 5, 40),
            ],
            &format!(
                "10 {} new
                 11 860
                 12 1820 new",
                u32::MAX - 100
            ),
        );
    }
}
