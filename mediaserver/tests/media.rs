//! The MediaServer against real WebRTC clients (webrtc-rs) on loopback: ICE, DTLS-SRTP and
//! RTP really cross the server. No mocks. Timeouts are generous and loops bounded, because a
//! 2-core machine shared with builds can be slow.

mod support;

use reqwest::StatusCode;
use shared::api::ErrorCode;
use shared::call::EXTRA_RECV_AUDIO;
use shared::media::MediaEvent;
use std::time::Duration;
use support::{Control, join_call, start_server};
use ucclient::peer::{self, ClientPeer, PeerOptions};

/// Each test sends this long; at 50 packets/s that is 150 packets per sender.
const SEND_FOR: Duration = Duration::from_secs(3);

/// Waits (bounded) until `condition` holds, polling every 100 ms.
async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_legs_exchange_encrypted_rtp_in_both_directions() {
    let server = start_server("media-two").await;
    let control = Control::new(&server);
    let (alice, alice_answer) =
        join_call(&control, "call-1", "alice/desk", PeerOptions::default()).await;
    let (bob, _) = join_call(&control, "call-1", "bob/phone", PeerOptions::default()).await;

    // The answer is a DTLS-SRTP one: secure profile, fingerprint, our host candidate.
    assert!(
        alice_answer.sdp.contains("UDP/TLS/RTP/SAVPF"),
        "answer: {}",
        alice_answer.sdp
    );
    assert!(alice_answer.sdp.contains("a=fingerprint:sha-256"));
    assert!(
        alice_answer
            .sdp
            .contains(&server.media_addr.port().to_string())
    );

    let (alice_sent, bob_sent) = tokio::join!(alice.send_audio(SEND_FOR), bob.send_audio(SEND_FOR));
    let (alice_sent, bob_sent) = (alice_sent.unwrap(), bob_sent.unwrap());
    assert_eq!(alice_sent, 150);
    assert_eq!(bob_sent, 150);

    // Allow stragglers to arrive, then demand most of each direction (not all: the first
    // packets may race the server's view of "connected").
    eventually(Duration::from_secs(5), || {
        alice.packets_received() >= bob_sent * 9 / 10
            && bob.packets_received() >= alice_sent * 9 / 10
    })
    .await;
    assert!(
        bob.packets_received() >= alice_sent * 8 / 10,
        "bob got {} of {alice_sent}",
        bob.packets_received()
    );
    assert!(
        alice.packets_received() >= bob_sent * 8 / 10,
        "alice got {} of {bob_sent}",
        alice.packets_received()
    );
    // Nothing is invented either: at most what the other side sent.
    assert!(bob.packets_received() <= alice_sent);
    assert_eq!(bob.packets_received_per_source().len(), 1);

    let stats = control.call_stats("call-1").await.expect("call exists");
    assert_eq!(stats.len(), 2);
    for leg in &stats {
        assert!(leg.connected, "{leg:?}");
        assert!(leg.packets_in >= 100 && leg.packets_out >= 100, "{leg:?}");
    }
    let (status, metrics) = control.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("mediaserver_legs{server=\"media-two\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("mediaserver_dtls_failures_total{server=\"media-two\"} 0"));

    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_crosses_the_server_beside_audio() {
    let server = start_server("media-video").await;
    let control = Control::new(&server);
    let options = PeerOptions {
        video: true,
        ..PeerOptions::default()
    };
    let (alice, answer) = join_call(&control, "call-v", "alice", options.clone()).await;
    let (bob, _) = join_call(&control, "call-v", "bob", options).await;
    assert!(answer.sdp.contains("m=video"), "{}", answer.sdp);
    let (a_audio, a_video, b_audio, b_video) = tokio::join!(
        alice.send_audio(SEND_FOR),
        alice.send_video(SEND_FOR),
        bob.send_audio(SEND_FOR),
        bob.send_video(SEND_FOR)
    );
    let (a_video, b_video) = (a_video.unwrap(), b_video.unwrap());
    assert_eq!((a_audio.unwrap(), b_audio.unwrap()), (150, 150));
    assert!(a_video >= 80 && b_video >= 80);
    eventually(Duration::from_secs(5), || {
        alice.video_packets_received() >= b_video * 9 / 10
            && bob.video_packets_received() >= a_video * 9 / 10
    })
    .await;
    // Each 32-byte frame is one RTP packet.
    assert!(
        bob.video_packets_received() >= a_video * 8 / 10,
        "bob video {} of {a_video}",
        bob.video_packets_received()
    );
    assert!(
        alice.video_packets_received() >= b_video * 8 / 10,
        "alice video {} of {b_video}",
        alice.video_packets_received()
    );
    let bob_audio = bob.packets_received() - bob.video_packets_received();
    assert!(bob_audio >= 120, "bob audio {bob_audio}");
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_leg_conference_each_leg_hears_both_others() {
    let server = start_server("media-conf").await;
    let control = Control::new(&server);
    let options = PeerOptions {
        extra_audio_receive_slots: 1,
        ..PeerOptions::default()
    };
    let mut peers = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let (peer, _) = join_call(&control, "conf-1", name, options.clone()).await;
        peers.push(peer);
    }
    let sends = futures_join_all(&peers).await;
    for sent in &sends {
        assert_eq!(*sent, 150);
    }
    eventually(Duration::from_secs(5), || {
        peers.iter().all(|p| {
            let per_source = p.packets_received_per_source();
            per_source.len() == 2 && per_source.iter().all(|n| *n >= 135)
        })
    })
    .await;
    for (index, peer) in peers.iter().enumerate() {
        let per_source = peer.packets_received_per_source();
        assert_eq!(per_source.len(), 2, "peer {index} hears {per_source:?}");
        for count in &per_source {
            assert!(
                *count >= 120 && *count <= 150,
                "peer {index} got {per_source:?}"
            );
        }
    }
    let status = control.status().await.unwrap();
    assert_eq!((status.legs, status.calls), (3, 1));
    for peer in &peers {
        peer.close().await;
    }
    server.shutdown().await;
}

/// What `ucclient call` offers (`PeerOptions::softphone`: a sendrecv audio m-line, the extra
/// recvonly ones, a video one) is taken as is, and a 1:1 video call carries audio and video
/// both ways on the first lines. On a current-thread runtime, as the `ucclient` binary runs.
#[tokio::test]
async fn softphone_offers_carry_a_video_call_on_a_current_thread_runtime() {
    let server = start_server("media-softphone").await;
    let control = Control::new(&server);
    let (alice, answer) =
        join_call(&control, "call-s", "alice", PeerOptions::softphone(true)).await;
    let (bob, _) = join_call(&control, "call-s", "bob", PeerOptions::softphone(true)).await;
    let kinds: Vec<String> = peer::media_lines(&answer.sdp)
        .into_iter()
        .map(|line| line.kind)
        .collect();
    let mut expected = vec!["audio", "video"];
    expected.extend(std::iter::repeat_n("audio", EXTRA_RECV_AUDIO));
    assert_eq!(kinds, expected, "answer: {}", answer.sdp);

    let (a_audio, a_video, b_audio, b_video) = tokio::join!(
        alice.send_audio(SEND_FOR),
        alice.send_video(SEND_FOR),
        bob.send_audio(SEND_FOR),
        bob.send_video(SEND_FOR)
    );
    assert_eq!((a_audio.unwrap(), b_audio.unwrap()), (150, 150));
    let (a_video, b_video) = (a_video.unwrap(), b_video.unwrap());
    assert_eq!(alice.packets_sent(), 150 + a_video);
    assert_eq!(alice.video_packets_sent(), a_video);
    eventually(Duration::from_secs(5), || {
        alice.packets_received() >= (150 + b_video) * 9 / 10
            && bob.packets_received() >= (150 + a_video) * 9 / 10
    })
    .await;
    for (name, peer, video_sent) in [("alice", &alice, b_video), ("bob", &bob, a_video)] {
        let audio = peer.packets_received() - peer.video_packets_received();
        assert!((120..=150).contains(&audio), "{name} audio {audio}");
        assert!(
            peer.video_packets_received() >= video_sent * 8 / 10,
            "{name} video {} of {video_sent}",
            peer.video_packets_received()
        );
    }
    alice.close().await;
    bob.close().await;
    server.shutdown().await;
}

/// Three softphones (each offering the extra receive m-lines of `docs/calls.md`) in one
/// conference: each hears both others, one source per m-line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_offers_hear_a_conference_without_renegotiation() {
    let server = start_server("media-softconf").await;
    let control = Control::new(&server);
    let mut peers = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let (peer, _) = join_call(&control, "conf-s", name, PeerOptions::softphone(false)).await;
        peers.push(peer);
    }
    for sent in futures_join_all(&peers).await {
        assert_eq!(sent, 150);
    }
    eventually(Duration::from_secs(5), || {
        peers.iter().all(|p| {
            let per_source = p.packets_received_per_source();
            per_source.len() == 2 && per_source.iter().all(|n| *n >= 135)
        })
    })
    .await;
    for (index, peer) in peers.iter().enumerate() {
        let per_source = peer.packets_received_per_source();
        assert_eq!(per_source.len(), 2, "peer {index} hears {per_source:?}");
        assert!(
            per_source.iter().all(|n| *n >= 120 && *n <= 150),
            "peer {index} got {per_source:?}"
        );
    }
    let (status, metrics) = control.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("mediaserver_unserved_routes{server=\"media-softconf\"} 0"),
        "{metrics}"
    );
    for peer in &peers {
        peer.close().await;
    }
    server.shutdown().await;
}

/// All three send at once.
async fn futures_join_all(peers: &[ClientPeer]) -> Vec<u64> {
    let (a, b, c) = tokio::join!(
        peers[0].send_audio(SEND_FOR),
        peers[1].send_audio(SEND_FOR),
        peers[2].send_audio(SEND_FOR)
    );
    vec![a.unwrap(), b.unwrap(), c.unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_and_malformed_sdp_leaves_nothing() {
    let server = start_server("media-bad").await;
    let control = Control::new(&server);

    let intruder = Control::with_secret(&server, "not-the-secret-at-all");
    let (status, error) = intruder
        .add_leg("call-x", "eve", "v=0".into())
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error.error, ErrorCode::Unauthorized);
    let (status, error) = intruder.status().await.unwrap_err();
    assert_eq!(
        (status, error.error),
        (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
    );

    let (status, error) = control
        .add_leg("call-x", "eve", "this is not SDP".into())
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error.error, ErrorCode::BadRequest);
    assert!(error.message.contains("SDP"), "message: {}", error.message);

    // Valid SDP syntax but nothing to carry.
    let empty = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n".to_string();
    let (status, error) = control.add_leg("call-x", "eve", empty).await.unwrap_err();
    assert_eq!(
        (status, error.error),
        (StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
    );

    // Too large a body.
    let huge = "a".repeat(shared::limits::MAX_SDP_BYTES + 8 * 1024);
    let (status, error) = control.add_leg("call-x", "eve", huge).await.unwrap_err();
    assert_eq!(
        (status, error.error),
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
    );

    let status = control.status().await.unwrap();
    assert_eq!((status.legs, status.calls), (0, 0));
    let (code, error) = control.call_stats("call-x").await.unwrap_err();
    assert_eq!(
        (code, error.error),
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );

    let (health, body) = control.get_text("/healthz").await;
    assert_eq!((health, body.trim()), (StatusCode::OK, "ok"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_call_frees_its_legs() {
    let server = start_server("media-end").await;
    let control = Control::new(&server);
    let (mut alice, _) = join_call(&control, "call-e", "alice", PeerOptions::default()).await;
    let (bob, _) = join_call(&control, "call-e", "bob", PeerOptions::default()).await;
    let (_carol, _) = join_call(&control, "call-other", "carol", PeerOptions::default()).await;
    assert_eq!(control.status().await.unwrap().legs, 3);

    // A duplicate leg name is refused and changes nothing.
    let mut spare = ClientPeer::new(PeerOptions::default()).await.unwrap();
    let offer = spare.create_offer(Duration::from_secs(10)).await.unwrap();
    let (status, error) = control.add_leg("call-e", "bob", offer).await.unwrap_err();
    assert_eq!(
        (status, error.error),
        (StatusCode::CONFLICT, ErrorCode::Conflict)
    );

    assert_eq!(control.end_call("call-e").await, StatusCode::NO_CONTENT);
    let status = control.status().await.unwrap();
    assert_eq!((status.legs, status.calls), (1, 1));
    assert_eq!(
        control.call_stats("call-e").await.unwrap_err().0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(control.end_call("call-e").await, StatusCode::NOT_FOUND);

    // The client notices: the server closed DTLS.
    assert!(
        alice.wait_disconnected(Duration::from_secs(40)).await,
        "state {:?}",
        alice.connection_state()
    );

    assert_eq!(
        control.remove_leg("call-other", "carol").await,
        StatusCode::NO_CONTENT
    );
    let status = control.status().await.unwrap();
    assert_eq!((status.legs, status.calls), (0, 0));
    bob.close().await;
    spare.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_reports_leg_lifecycle_events() {
    support::init_logging();
    let mut config = support::test_config("media-embedded");
    config.secret = None;
    config.capacity = 2;
    let (handle, mut events) = mediaserver::start_embedded(config)
        .await
        .expect("embedded start");

    let mut peers = Vec::new();
    for leg in ["one", "two"] {
        let mut peer = ClientPeer::new(PeerOptions::default()).await.unwrap();
        let offer = peer.create_offer(Duration::from_secs(10)).await.unwrap();
        let answer = handle
            .add_leg(
                "emb-1".into(),
                shared::media::LegOffer {
                    leg: leg.into(),
                    sdp: offer,
                },
            )
            .await
            .expect("leg added");
        peer.apply_answer(answer.sdp).await.unwrap();
        peer.wait_connected(support::CONNECT_TIMEOUT).await.unwrap();
        peers.push(peer);
    }
    let mut connected = Vec::new();
    while connected.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("event in time");
        match event.expect("channel open") {
            MediaEvent::Connected { leg, call, .. } => {
                assert_eq!(call.as_str(), "emb-1");
                connected.push(leg);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    connected.sort();
    assert_eq!(connected, vec!["one".to_string(), "two".to_string()]);

    // Capacity 2 reached: a third leg is refused.
    let mut third = ClientPeer::new(PeerOptions::default()).await.unwrap();
    let offer = third.create_offer(Duration::from_secs(10)).await.unwrap();
    let refused = handle
        .add_leg(
            "emb-2".into(),
            shared::media::LegOffer {
                leg: "three".into(),
                sdp: offer,
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(mediaserver::MediaError::CapacityReached { capacity: 2 })
        ),
        "{refused:?}"
    );

    handle
        .remove_leg("emb-1".into(), "one".into())
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, MediaEvent::Closed { ref leg, .. } if leg == "one"),
        "{event:?}"
    );
    assert_eq!(handle.status().await.unwrap().legs, 1);

    handle.shutdown().await;
    assert!(matches!(
        handle.status().await,
        Err(mediaserver::MediaError::EngineStopped)
    ));
    for peer in peers {
        peer.close().await;
    }
    third.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_that_never_connects_fails_with_a_reason() {
    support::init_logging();
    let mut config = support::test_config("media-timeout");
    config.secret = None;
    config.connect_timeout = Duration::from_millis(1500);
    let (handle, mut events) = mediaserver::start_embedded(config).await.unwrap();
    let mut peer = ClientPeer::new(PeerOptions::default()).await.unwrap();
    let offer = peer.create_offer(Duration::from_secs(10)).await.unwrap();
    // The answer is never applied: ICE cannot complete.
    handle
        .add_leg(
            "lost".into(),
            shared::media::LegOffer {
                leg: "ghost".into(),
                sdp: offer,
            },
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        MediaEvent::Failed { leg, reason, .. } => {
            assert_eq!(leg, "ghost");
            assert!(reason.contains("not established"), "{reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(handle.status().await.unwrap().legs, 0);
    let metrics = handle.metrics().await.unwrap();
    assert_eq!(
        (
            metrics.legs_failed,
            metrics.ice_timeouts,
            metrics.dtls_failures
        ),
        (1, 1, 0)
    );
    handle.shutdown().await;
    peer.close().await;
}
