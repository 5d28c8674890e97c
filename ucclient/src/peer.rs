//! The softphone's WebRTC peer, built on webrtc-rs (`webrtc` 0.21): the one leg a device
//! holds on a call's MediaServer. The `ucclient call`, `pickup` and `listen --auto-answer`
//! commands use it, and so do the MediaServer's own tests and benchmark, so the MediaServer is
//! always tested against the client that really calls through it.
//!
//! What it offers is fixed once (no renegotiation, see `mediaserver/README.md`): one `sendrecv`
//! Opus audio m-line, `extra_audio_receive_slots` more `recvonly` audio m-lines to hear the
//! other parties of a conference, and one `sendrecv` VP8 video m-line with
//! [`PeerOptions::video`]. [`PeerOptions::softphone`] is the offer `docs/calls.md` asks for.
//! All ICE candidates are gathered before [`ClientPeer::create_offer`] returns (no trickle).
//!
//! The audio is pre-encoded, so no codec is linked in: every 20 ms one Opus packet that is a
//! valid silence frame (TOC `0xF8`, CELT fullband 20 ms) followed by a stamp (`SWB1` + the send
//! time in µs on a process-wide clock), so the receiver can measure the one-way delay when
//! sender and receiver share the process. RTP is counted both ways, per sending source too.

pub use crate::error::PeerError;
use bytes::Bytes;
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use shared::call::EXTRA_RECV_AUDIO;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

/// Opus silence frame (TOC: config 31 = CELT FB 20 ms, mono, one frame) and its two bytes.
const OPUS_SILENCE_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Marks a payload that carries a send timestamp after the Opus frame.
const STAMP_MAGIC: &[u8; 4] = b"SWB1";
/// One audio packet per 20 ms, as Opus at 48 kHz usually runs.
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// One video frame per 33 ms (30 frames per second).
pub const VIDEO_FRAME: Duration = Duration::from_millis(33);

/// The clock stamps are measured on: shared by every peer of the process.
fn stamp_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamped_payload() -> Bytes {
    let micros = stamp_epoch().elapsed().as_micros() as u64;
    let mut payload = Vec::with_capacity(15);
    payload.extend_from_slice(&OPUS_SILENCE_FRAME);
    payload.extend_from_slice(STAMP_MAGIC);
    payload.extend_from_slice(&micros.to_le_bytes());
    Bytes::from(payload)
}

/// The one-way delay of a stamped payload, if it carries a stamp.
fn stamp_delay(payload: &[u8]) -> Option<Duration> {
    if payload.len() < 15 || &payload[3..7] != STAMP_MAGIC {
        return None;
    }
    let sent = u64::from_le_bytes(payload[7..15].try_into().ok()?);
    let now = stamp_epoch().elapsed().as_micros() as u64;
    Some(Duration::from_micros(now.saturating_sub(sent)))
}

/// How to build a peer.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// IP to bind the peer's UDP socket to (port chosen by the OS).
    pub bind_ip: String,
    /// Extra recvonly audio m-lines, one per additional conference participant to hear
    /// (0 for a 1:1 call: the sendrecv line carries the other party).
    pub extra_audio_receive_slots: usize,
    /// Keep one-way delay samples (µs) of stamped packets.
    pub record_latency: bool,
    /// Also offer a sendrecv VP8 video m-line and allow `send_video`.
    pub video: bool,
}

impl PeerOptions {
    /// What a softphone offers for a call (`docs/calls.md`): the sendrecv audio m-line,
    /// [`EXTRA_RECV_AUDIO`] recvonly ones to hear a conference without renegotiation, and a
    /// sendrecv video m-line for a video call.
    pub fn softphone(video: bool) -> Self {
        Self {
            extra_audio_receive_slots: EXTRA_RECV_AUDIO,
            video,
            ..Self::default()
        }
    }
}

/// The smallest offer: one sendrecv audio m-line (a 1:1 call), on loopback.
impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            bind_ip: "127.0.0.1".into(),
            extra_audio_receive_slots: 0,
            record_latency: false,
            video: false,
        }
    }
}

/// What the event handler and the track readers share with the peer.
#[derive(Default)]
struct PeerShared {
    packets_received: AtomicU64,
    /// Of those, packets on video tracks.
    video_packets_received: AtomicU64,
    /// Packets received per RTP SSRC (= per forwarded source stream).
    per_source: Mutex<HashMap<u32, u64>>,
    /// One-way delays of stamped packets, µs.
    latencies_us: Mutex<Vec<u32>>,
    record_latency: bool,
    /// Readers of remote tracks, aborted on close.
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// ICE and DTLS were up at some point.
    was_connected: AtomicBool,
}

struct PeerEvents {
    shared: Arc<PeerShared>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            self.shared.was_connected.store(true, Ordering::Relaxed);
        }
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        let reader = tokio::spawn(async move {
            let is_video = track.kind().await == RtpCodecKind::Video;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    shared.packets_received.fetch_add(1, Ordering::Relaxed);
                    if is_video {
                        shared
                            .video_packets_received
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut per_source) = shared.per_source.lock() {
                        *per_source.entry(packet.header.ssrc).or_default() += 1;
                    }
                    if shared.record_latency
                        && let Some(delay) = stamp_delay(&packet.payload)
                        && let Ok(mut latencies) = shared.latencies_us.lock()
                    {
                        latencies.push(delay.as_micros().min(u32::MAX as u128) as u32);
                    }
                }
            }
        });
        if let Ok(mut readers) = self.shared.readers.lock() {
            readers.push(reader);
        }
    }
}

/// One local track: what is written to it, who sends it, and how.
struct LocalTrack {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    /// The negotiated payload type, learnt at the first send (after the answer applied).
    payload_type: OnceLock<u8>,
    /// Packets written to the track.
    packets_sent: AtomicU64,
}

impl LocalTrack {
    async fn payload_type(&self) -> Result<u8, PeerError> {
        if let Some(payload_type) = self.payload_type.get() {
            return Ok(*payload_type);
        }
        let parameters = self.sender.get_parameters().await?;
        let payload_type = parameters
            .rtp_parameters
            .codecs
            .first()
            .map(|codec| codec.payload_type)
            .ok_or_else(|| PeerError::Protocol("no negotiated codec for a local track".into()))?;
        Ok(*self.payload_type.get_or_init(|| payload_type))
    }

    /// Writes one sample of `duration`; each of ours fits one RTP packet.
    async fn write(&self, data: Bytes, duration: Duration) -> Result<(), PeerError> {
        let payload_type = self.payload_type().await?;
        let sample = Sample {
            data,
            duration,
            ..Sample::new(Instant::now())
        };
        self.track
            .write_sample(self.ssrc, payload_type, &sample, &[])
            .await?;
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One client peer connection with an Opus audio track (and a VP8 one for video).
///
/// Call [`ClientPeer::close`] when done: it ends the connection and the tasks that read the
/// remote tracks (dropping the peer only stops the readers).
pub struct ClientPeer {
    connection: Arc<dyn PeerConnection>,
    audio: LocalTrack,
    /// With [`PeerOptions::video`].
    video: Option<LocalTrack>,
    shared: Arc<PeerShared>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl ClientPeer {
    /// Builds the peer connection (not yet offered).
    pub async fn new(options: PeerOptions) -> Result<Self, PeerError> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        let shared = Arc::new(PeerShared {
            record_latency: options.record_latency,
            ..Default::default()
        });
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(PeerEvents {
            shared: shared.clone(),
            gathered: gathered_tx,
            state: state_tx,
        });
        let connection: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(vec![format!("{}:0", options.bind_ip)])
                .build()
                .await?,
        );

        let audio_ssrc = rand::random::<u32>();
        let opus = opus_codec();
        let audio = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                format!("switchboard-{audio_ssrc:08x}"),
                "audio".to_string(),
                "microphone".to_string(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(audio_ssrc),
                        ..Default::default()
                    },
                    codec: opus,
                    ..Default::default()
                }],
            ),
        )?);
        let audio_sender = connection
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await?;
        let audio = LocalTrack {
            track: audio,
            sender: audio_sender,
            ssrc: audio_ssrc,
            payload_type: OnceLock::new(),
            packets_sent: AtomicU64::new(0),
        };
        let video = if options.video {
            let video_ssrc = rand::random::<u32>();
            let track = Arc::new(TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    format!("switchboard-{audio_ssrc:08x}"),
                    "video".to_string(),
                    "camera".to_string(),
                    RtpCodecKind::Video,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(video_ssrc),
                            ..Default::default()
                        },
                        codec: vp8_codec(),
                        ..Default::default()
                    }],
                ),
            )?);
            let sender = connection
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await?;
            Some(LocalTrack {
                track,
                sender,
                ssrc: video_ssrc,
                payload_type: OnceLock::new(),
                packets_sent: AtomicU64::new(0),
            })
        } else {
            None
        };
        for _ in 0..options.extra_audio_receive_slots {
            connection
                .add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await?;
        }
        Ok(Self {
            connection,
            audio,
            video,
            shared,
            gathered,
            state,
        })
    }

    /// Creates the SDP offer with every ICE candidate in it (no trickle: the control API is
    /// one request).
    pub async fn create_offer(&mut self, gather_timeout: Duration) -> Result<String, PeerError> {
        let offer = self.connection.create_offer(None).await?;
        self.connection.set_local_description(offer).await?;
        // A bool, not the watch's guard: the future stays `Send` (the guard must not live
        // across the next await).
        let gathered = matches!(
            tokio::time::timeout(gather_timeout, self.gathered.wait_for(|done| *done)).await,
            Ok(Ok(_))
        );
        if !gathered {
            return Err(PeerError::GatheringTimeout(gather_timeout));
        }
        let description =
            self.connection.local_description().await.ok_or_else(|| {
                PeerError::Protocol("no local description after gathering".into())
            })?;
        Ok(description.sdp)
    }

    /// Applies the server's SDP answer; ICE and DTLS start.
    pub async fn apply_answer(&self, sdp: String) -> Result<(), PeerError> {
        self.connection
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await?;
        Ok(())
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<(), PeerError> {
        let reached = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
                )
            }),
        )
        .await;
        match reached {
            Ok(Ok(state)) if *state == RTCPeerConnectionState::Connected => Ok(()),
            Ok(_) => Err(PeerError::ConnectionFailed),
            Err(_) => Err(PeerError::ConnectTimeout(timeout)),
        }
    }

    /// The current connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until the connection leaves the connected state (the server closed it).
    pub async fn wait_disconnected(&mut self, timeout: Duration) -> bool {
        let reached = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Disconnected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await;
        matches!(reached, Ok(Ok(_)))
    }

    /// True while ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connection_state() == RTCPeerConnectionState::Connected
    }

    /// True when ICE and DTLS were up at some point (the media leg worked).
    pub fn was_connected(&self) -> bool {
        self.shared.was_connected.load(Ordering::Relaxed)
    }

    /// True once the connection failed or was closed: it will not carry media again.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.connection_state(),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        )
    }

    /// Sends one stamped audio packet now.
    pub async fn send_one_audio_packet(&self) -> Result<(), PeerError> {
        self.audio.write(stamped_payload(), AUDIO_FRAME).await
    }

    /// Sends one audio packet every 20 ms for `duration`; returns the packets sent.
    pub async fn send_audio(&self, duration: Duration) -> Result<u64, PeerError> {
        let frames = (duration.as_millis() / AUDIO_FRAME.as_millis()).max(1) as u64;
        let mut ticker = tokio::time::interval(AUDIO_FRAME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0;
        for _ in 0..frames {
            ticker.tick().await;
            self.send_one_audio_packet().await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Whether the peer was built with video ([`PeerOptions::video`]).
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Sends one small VP8 key frame now (one RTP packet).
    pub async fn send_one_video_frame(&self) -> Result<(), PeerError> {
        let Some(video) = &self.video else {
            return Err(PeerError::Protocol(
                "the peer was built without video".into(),
            ));
        };
        video.write(vp8_key_frame(), VIDEO_FRAME).await
    }

    /// Sends a small VP8 key frame every 33 ms for `duration`; returns frames sent.
    pub async fn send_video(&self, duration: Duration) -> Result<u64, PeerError> {
        let frames = (duration.as_millis() / VIDEO_FRAME.as_millis()).max(1) as u64;
        let mut ticker = tokio::time::interval(VIDEO_FRAME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..frames {
            ticker.tick().await;
            self.send_one_video_frame().await?;
        }
        Ok(frames)
    }

    /// RTP packets sent, audio and video.
    pub fn packets_sent(&self) -> u64 {
        self.audio.packets_sent.load(Ordering::Relaxed) + self.video_packets_sent()
    }

    /// RTP packets sent on the video track.
    pub fn video_packets_sent(&self) -> u64 {
        self.video
            .as_ref()
            .map_or(0, |video| video.packets_sent.load(Ordering::Relaxed))
    }

    /// RTP packets received on video tracks.
    pub fn video_packets_received(&self) -> u64 {
        self.shared.video_packets_received.load(Ordering::Relaxed)
    }

    /// RTP packets received on all remote tracks.
    pub fn packets_received(&self) -> u64 {
        self.shared.packets_received.load(Ordering::Relaxed)
    }

    /// RTP packets received per source stream (SSRC), largest first.
    pub fn packets_received_per_source(&self) -> Vec<u64> {
        let mut counts: Vec<u64> = self
            .shared
            .per_source
            .lock()
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts
    }

    /// One-way delays (µs) of stamped packets received so far (with `record_latency`).
    pub fn take_latencies_us(&self) -> Vec<u32> {
        self.shared
            .latencies_us
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Closes the connection and stops the track readers.
    pub async fn close(&self) {
        let _ = self.connection.close().await;
        self.stop_readers();
    }

    fn stop_readers(&self) {
        if let Ok(mut readers) = self.shared.readers.lock() {
            for reader in readers.drain(..) {
                reader.abort();
            }
        }
    }
}

impl Drop for ClientPeer {
    /// No reader task outlives its peer, closed or not.
    fn drop(&mut self) {
        self.stop_readers();
    }
}

/// One m-line of an SDP: its kind and its direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaLine {
    /// `audio`, `video` or `application`.
    pub kind: String,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (`sendrecv` when unsaid, as RFC 8866
    /// has it).
    pub direction: String,
}

/// The m-lines of an SDP in order: what an offer asks a MediaServer to carry.
pub fn media_lines(sdp: &str) -> Vec<MediaLine> {
    let mut lines: Vec<MediaLine> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            lines.push(MediaLine {
                kind: media.split(' ').next().unwrap_or_default().to_string(),
                direction: "sendrecv".to_string(),
            });
        } else if let Some(direction) = line.strip_prefix("a=").filter(|attribute| {
            matches!(
                *attribute,
                "sendrecv" | "sendonly" | "recvonly" | "inactive"
            )
        }) && let Some(current) = lines.last_mut()
        {
            current.direction = direction.to_string();
        }
    }
    lines
}

/// A 16x16 VP8 key frame header (frame tag, start code, size) and a little filler: enough
/// for any VP8 depacketizer to see a complete key frame; not decodable to a picture.
fn vp8_key_frame() -> Bytes {
    let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00];
    frame.extend_from_slice(&[0u8; 22]);
    Bytes::from(frame)
}

fn vp8_codec() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn opus_codec() -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
    rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sdp: &str) -> Vec<(String, String)> {
        media_lines(sdp)
            .into_iter()
            .map(|line| (line.kind, line.direction))
            .collect()
    }

    fn line(kind: &str, direction: &str) -> (String, String) {
        (kind.to_string(), direction.to_string())
    }

    #[test]
    fn media_lines_follow_the_sdp() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        assert_eq!(
            shape(sdp),
            vec![line("audio", "recvonly"), line("video", "sendrecv")]
        );
        assert!(media_lines("v=0\r\n").is_empty());
    }

    /// What `docs/calls.md` asks a softphone to offer, from a real webrtc-rs peer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_softphone_offer_is_ready_for_a_conference_and_gathered() {
        for video in [false, true] {
            let mut peer = ClientPeer::new(PeerOptions::softphone(video))
                .await
                .expect("peer builds");
            let offer = peer
                .create_offer(Duration::from_secs(10))
                .await
                .expect("offer");
            let mut expected = vec![line("audio", "sendrecv")];
            if video {
                expected.push(line("video", "sendrecv"));
            }
            expected.extend((0..EXTRA_RECV_AUDIO).map(|_| line("audio", "recvonly")));
            assert_eq!(shape(&offer), expected, "{offer}");
            assert!(offer.contains("opus/48000/2"), "{offer}");
            assert!(offer.contains("a=candidate:"), "no trickle: {offer}");
            assert!(!peer.is_connected() && !peer.was_connected() && !peer.is_finished());
            assert_eq!((peer.packets_sent(), peer.packets_received()), (0, 0));
            assert_eq!(peer.has_video(), video);
            peer.close().await;
        }
        let mut plain = ClientPeer::new(PeerOptions::default()).await.unwrap();
        let offer = plain.create_offer(Duration::from_secs(10)).await.unwrap();
        assert_eq!(shape(&offer), vec![line("audio", "sendrecv")]);
        assert!(plain.send_one_video_frame().await.is_err());
        plain.close().await;
    }
}
