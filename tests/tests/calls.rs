//! Softphone calls with real parts: Redis and PostgreSQL from the harness, two `ucserver`
//! processes, two `mediaserver` processes, and webrtc-rs peers (`ucclient::peer`) whose RTP
//! really crosses a MediaServer, encrypted, in both directions.

use shared::api::{
    CallResult, CreateGroup, CreateUser, Direction, ErrorCode, JournalKind, SetPresence, UpdateUser,
};
use shared::call::{CallCommand, CallEvent, EXTRA_RECV_AUDIO, EndReason, ForwardMode, StopReason};
use shared::presence::{Capability, TelephonyState};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{CallId, DeviceId, GroupId, MediaServerId, ServerId, UserId};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use switchboard_tests::mediaserver::{MEDIA_SECRET, MediaServer};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::peer::{ClientPeer, PeerOptions};
use ucclient::{AdminClient, Client, Connection};

const PASSWORD: &str = "password-1";
const WAIT: Duration = Duration::from_secs(20);
/// Short enough for a no-answer test, long enough for a debug build to answer in time.
const RING_TIMEOUT_MS: &str = "6000";

/// Redis, PostgreSQL, UCServers `s1` and `s2`, MediaServers `m1` and `m2`.
struct Lab {
    _redis: Redis,
    s1: UcServer,
    s2: UcServer,
    m1: MediaServer,
    m2: MediaServer,
    admin: AdminClient,
}

impl Lab {
    async fn start(name: &str) -> Lab {
        Self::start_on(&Postgres::shared().create_database(name)).await
    }

    /// The lab on a database of the caller's (a PostgreSQL the test stops and starts).
    async fn start_on(database_url: &str) -> Lab {
        let redis = Redis::start();
        let extra = [
            ("UC_MEDIA_SECRET", MEDIA_SECRET),
            ("UC_RING_TIMEOUT_MS", RING_TIMEOUT_MS),
            ("UC_HEARTBEAT_MS", "1000"),
            ("UC_DEAD_AFTER_MS", "5000"),
        ];
        let s1 = UcServer::start("s1", database_url, Some(&redis.url()), &extra);
        let s2 = UcServer::start("s2", database_url, Some(&redis.url()), &extra);
        let m1 = MediaServer::start("m1", &redis.url());
        let m2 = MediaServer::start("m2", &redis.url());
        let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
            .await
            .expect("admin login");
        for media in [&m1, &m2] {
            admin
                .add_media(
                    &MediaServerId::from(media.id.as_str()),
                    &media.control_url(),
                )
                .await
                .expect("media add");
        }
        let lab = Lab {
            _redis: redis,
            s1,
            s2,
            m1,
            m2,
            admin,
        };
        lab.wait_media_alive(&["m1", "m2"]).await;
        lab
    }

    async fn wait_media_alive(&self, ids: &[&str]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let media = self.admin.media().await.expect("media list");
            let alive = ids
                .iter()
                .all(|id| media.iter().any(|m| m.id.as_str() == *id && m.alive));
            if alive {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "MediaServers not alive: {media:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn user(&self, name: &str, home: &str) -> UserId {
        let id = UserId::from(name);
        self.admin
            .create_user(CreateUser {
                id: id.clone(),
                password: PASSWORD.into(),
                display_name: Some(format!("User {name}")),
                home_server: Some(ServerId::from(home)),
                admin: false,
            })
            .await
            .expect("create user");
        id
    }

    /// A device of `user` that takes calls (logs in at s1; the client follows to the home).
    async fn phone(&self, user: &UserId, device: &str) -> Phone {
        self.phone_at(&self.s1.url(), user, device).await
    }

    /// A device of `user` that signs in at `url` (and follows to the server serving them).
    async fn phone_at(&self, url: &str, user: &UserId, device: &str) -> Phone {
        let client = Client::login(url, user, PASSWORD, Some(DeviceId::from(device)))
            .await
            .expect("login");
        let conn = client
            .connect(None, &[Capability::Chat, Capability::Audio])
            .await
            .expect("websocket");
        Phone {
            user: user.clone(),
            client,
            conn,
            queue: VecDeque::new(),
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- s1\n{}\n--- s2\n{}\n--- m1\n{}\n--- m2\n{}",
            self.s1.log(),
            self.s2.log(),
            self.m1.log(),
            self.m2.log()
        )
    }
}

/// One device: its socket, and the events read but not yet asked for.
struct Phone {
    user: UserId,
    client: Client,
    conn: Connection,
    queue: VecDeque<ServerEvent>,
}

impl Phone {
    /// Sends a command and waits for its `ack` (with the call id, if any) or `error`.
    async fn command(&mut self, command: CallCommand) -> Result<Option<CallId>, ErrorCode> {
        let reference = self
            .conn
            .send(ClientCommand::Call(command))
            .await
            .expect("send");
        let deadline = Instant::now() + WAIT;
        loop {
            let event = self.read(deadline).await;
            match event {
                ServerEvent::Ack {
                    reference: Some(r),
                    call,
                    ..
                } if r == reference => return Ok(call),
                ServerEvent::Error {
                    reference: Some(r),
                    error,
                    ..
                } if r == reference => return Err(error),
                other => self.queue.push_back(other),
            }
        }
    }

    async fn read(&mut self, deadline: Instant) -> ServerEvent {
        match tokio::time::timeout_at(deadline.into(), self.conn.next_event()).await {
            Ok(Some(Ok(event))) => event,
            Ok(other) => panic!("{}: socket ended: {other:?}", self.user),
            Err(_) => panic!("{}: timed out; queued: {:?}", self.user, self.queue),
        }
    }

    /// The first event (queued or new) that `wanted` accepts; the others stay queued.
    async fn event(&mut self, what: &str, wanted: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
        if let Some(index) = self.queue.iter().position(&wanted) {
            return self.queue.remove(index).unwrap();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline.into(), self.conn.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: no {what} within {WAIT:?}; queued: {:?}",
                        self.user, self.queue
                    )
                });
            let event = match event {
                Some(Ok(event)) => event,
                other => panic!("{}: socket ended waiting for {what}: {other:?}", self.user),
            };
            if wanted(&event) {
                return event;
            }
            self.queue.push_back(event);
        }
    }

    async fn call_event(&mut self, what: &str, wanted: impl Fn(&CallEvent) -> bool) -> CallEvent {
        let event = self
            .event(what, |e| matches!(e, ServerEvent::Call(c) if wanted(c)))
            .await;
        let ServerEvent::Call(event) = event else {
            unreachable!()
        };
        event
    }

    async fn incoming(&mut self) -> CallEvent {
        self.call_event("call_incoming", |e| {
            matches!(e, CallEvent::CallIncoming { .. })
        })
        .await
    }

    /// The `call_incoming` of `call` (rings of calls ended before stay queued).
    async fn incoming_of(&mut self, call: &CallId) -> CallEvent {
        self.call_event(
            "call_incoming",
            |e| matches!(e, CallEvent::CallIncoming { call: c, .. } if c == call),
        )
        .await
    }

    async fn ended(&mut self, call: &CallId) -> (EndReason, CallResult) {
        let event = self
            .call_event(
                "call_ended",
                |e| matches!(e, CallEvent::CallEnded { call: c, .. } if c == call),
            )
            .await;
        let CallEvent::CallEnded { reason, result, .. } = event else {
            unreachable!()
        };
        (reason, result)
    }

    /// Waits for the MediaServer's answer to this device's leg and connects the peer.
    async fn connect_media(&mut self, call: &CallId, peer: &mut ClientPeer) -> MediaServerId {
        let media = self.apply_media_answer(call, peer).await;
        peer.wait_connected(WAIT).await.expect("ICE and DTLS up");
        media
    }

    /// Waits for the MediaServer's answer to this device's leg and hands it to the peer,
    /// which connects in the background; returns the MediaServer that answered.
    async fn apply_media_answer(&mut self, call: &CallId, peer: &mut ClientPeer) -> MediaServerId {
        let event = self
            .call_event(
                "call_media_answer",
                |e| matches!(e, CallEvent::CallMediaAnswer { call: c, .. } if c == call),
            )
            .await;
        let CallEvent::CallMediaAnswer { sdp, media, .. } = event else {
            unreachable!()
        };
        peer.apply_answer(sdp).await.expect("apply answer");
        media
    }

    /// Reads whatever arrives within `quiet` into the queue.
    async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(Ok(event))) = tokio::time::timeout(quiet, self.conn.next_event()).await {
            self.queue.push_back(event);
        }
    }

    /// Waits until a presence event says `user` has telephony `state`.
    async fn telephony_of(&mut self, user: &UserId, state: TelephonyState) {
        self.event(&format!("{user} {state:?}"), |e| {
            matches!(e, ServerEvent::Presence { presence } if &presence.user == user && presence.telephony == Some(state))
        })
        .await;
    }
}

/// A softphone peer and its SDP offer (conference-ready: extra receive m-lines).
async fn softphone() -> (ClientPeer, String) {
    let mut peer = ClientPeer::new(PeerOptions {
        extra_audio_receive_slots: EXTRA_RECV_AUDIO,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let offer = peer
        .create_offer(Duration::from_secs(10))
        .await
        .expect("offer");
    (peer, offer)
}

fn place(to: &UserId, sdp: &str) -> CallCommand {
    CallCommand::CallPlace {
        to: to.clone(),
        sdp: sdp.to_string(),
        video: false,
    }
}

/// Places a call and cancels it while it rings; returns the MediaServer it was placed on.
async fn place_and_cancel(phone: &mut Phone, to: &UserId, offer: &str) -> MediaServerId {
    let call = phone.command(place(to, offer)).await.unwrap().unwrap();
    let CallEvent::CallPlaced { media, .. } = phone
        .call_event(
            "call_placed",
            |e| matches!(e, CallEvent::CallPlaced { call: c, .. } if *c == call),
        )
        .await
    else {
        unreachable!()
    };
    phone
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("cancel");
    phone.ended(&call).await;
    media
}

/// A call placed and answered, both peers connected.
struct ConnectedCall {
    call: CallId,
    /// The MediaServer carrying it.
    media: MediaServerId,
    caller: ClientPeer,
    callee: ClientPeer,
}

/// `caller` calls `callee`, who answers; both peers connect.
async fn connected_call(caller: &mut Phone, callee: &mut Phone) -> ConnectedCall {
    let (mut caller_peer, caller_offer) = softphone().await;
    let call = caller
        .command(place(&callee.user, &caller_offer))
        .await
        .expect("placed")
        .expect("call id");
    callee.incoming_of(&call).await;
    let (mut callee_peer, callee_offer) = softphone().await;
    callee
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: callee_offer,
        })
        .await
        .expect("answer");
    let media = caller.connect_media(&call, &mut caller_peer).await;
    callee.connect_media(&call, &mut callee_peer).await;
    ConnectedCall {
        call,
        media,
        caller: caller_peer,
        callee: callee_peer,
    }
}

/// Both peers send audio for a while; returns what each received.
async fn talk(a: &ClientPeer, b: &ClientPeer, seconds: u64) -> (u64, u64) {
    let duration = Duration::from_secs(seconds);
    let (sent_a, sent_b) = tokio::join!(a.send_audio(duration), b.send_audio(duration));
    assert!(sent_a.expect("a sends") > 0 && sent_b.expect("b sends") > 0);
    // The last packets are still in flight for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (a.packets_received(), b.packets_received())
}

async fn journal_of(phone: &Phone, call: &CallId) -> shared::api::JournalEntry {
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = phone.client.journal(Some(50)).await.expect("journal");
        if let Some(entry) = entries
            .into_iter()
            .find(|e| e.kind == JournalKind::Call && e.summary.as_deref() == Some(call.as_str()))
        {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "no journal entry of {call} for {}",
            phone.user
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn softphone_leases(admin: &AdminClient) -> u32 {
    admin
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.kind == "softphone")
        .map_or(0, |l| l.in_use)
}

async fn wait_leases(admin: &AdminClient, expected: u32) {
    let deadline = Instant::now() + WAIT;
    while softphone_leases(admin).await != expected {
        assert!(
            Instant::now() < deadline,
            "softphone leases stay at {}, expected {expected}",
            softphone_leases(admin).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_servers_rings_every_device_and_carries_media_both_ways() {
    let lab = Lab::start("calls_basic").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let carol = lab.user("carol", "s1").await;
    let ghost = lab.user("ghost", "s2").await;

    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;
    let mut bob_phone = lab.phone(&bob, "phone").await;
    // Carol watches bob (a contact) and sees his telephony state.
    let mut carol_desk = lab.phone(&carol, "desk").await;
    carol_desk
        .client
        .put_contact(&bob, "team")
        .await
        .expect("contact");

    // --- Answered on one of two devices, media both ways, hung up by the callee.
    let (alice_peer, offer) = softphone().await;
    let mut alice_peer = alice_peer;
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .expect("call placed")
        .expect("the ack names the call");
    assert!(
        call.as_str().starts_with("s1~"),
        "owned by the caller's home: {call}"
    );
    let CallEvent::CallPlaced { media, .. } = alice_desk
        .call_event("call_placed", |e| matches!(e, CallEvent::CallPlaced { .. }))
        .await
    else {
        unreachable!()
    };
    for device in [&mut bob_desk, &mut bob_phone] {
        let CallEvent::CallIncoming { call: c, from, .. } = device.incoming().await else {
            unreachable!()
        };
        assert_eq!((&c, &from), (&call, &alice));
    }
    alice_desk
        .call_event(
            "call_ringing",
            |e| matches!(e, CallEvent::CallRinging { user, .. } if *user == bob),
        )
        .await;
    carol_desk.telephony_of(&bob, TelephonyState::Ringing).await;

    let (mut bob_peer, bob_offer) = softphone().await;
    let answered = bob_desk
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: bob_offer,
        })
        .await;
    assert_eq!(answered, Ok(Some(call.clone())));
    let CallEvent::CallRingingStopped { reason, .. } = bob_phone
        .call_event("ringing stopped", |e| {
            matches!(e, CallEvent::CallRingingStopped { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert_eq!(reason, StopReason::AnsweredElsewhere);
    // The phone cannot take it any more.
    let (_late_peer, late_offer) = softphone().await;
    assert_eq!(
        bob_phone
            .command(CallCommand::CallAnswer {
                call: call.clone(),
                sdp: late_offer,
            })
            .await,
        Err(ErrorCode::Conflict)
    );

    let alice_media = alice_desk.connect_media(&call, &mut alice_peer).await;
    let bob_media = bob_desk.connect_media(&call, &mut bob_peer).await;
    assert_eq!((&alice_media, &bob_media), (&media, &media));
    alice_desk
        .call_event(
            "connected",
            |e| matches!(e, CallEvent::CallConnected { parties, .. } if parties.len() == 2),
        )
        .await;
    carol_desk.telephony_of(&bob, TelephonyState::InCall).await;
    assert_eq!(softphone_leases(&lab.admin).await, 2, "one lease per party");

    let (alice_got, bob_got) = talk(&alice_peer, &bob_peer, 2).await;
    assert!(
        alice_got > 20 && bob_got > 20,
        "RTP crossed {media} both ways: alice got {alice_got}, bob got {bob_got}\n{}",
        lab.logs()
    );

    bob_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hangup");
    assert_eq!(
        alice_desk.ended(&call).await,
        (EndReason::HungUp, CallResult::Answered)
    );
    assert_eq!(bob_desk.ended(&call).await.1, CallResult::Answered);
    carol_desk.telephony_of(&bob, TelephonyState::Idle).await;
    wait_leases(&lab.admin, 0).await;

    let alice_entry = journal_of(&alice_desk, &call).await;
    assert_eq!(alice_entry.direction, Direction::Outgoing);
    assert_eq!(alice_entry.party, "bob");
    assert_eq!(alice_entry.result, Some(CallResult::Answered));
    let answered_ms = alice_entry.answered_ms.expect("answered time");
    let ended_ms = alice_entry.ended_ms.expect("end time");
    assert!(alice_entry.started_ms <= answered_ms && answered_ms < ended_ms);
    let bob_entry = journal_of(&bob_desk, &call).await;
    assert_eq!(
        (
            bob_entry.direction,
            bob_entry.party.as_str(),
            bob_entry.result
        ),
        (Direction::Incoming, "alice", Some(CallResult::Answered))
    );
    alice_peer.close().await;
    bob_peer.close().await;

    // --- Rejected: every device stops ringing, the caller hears `rejected`.
    let (_peer, offer) = softphone().await;
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&call).await;
    bob_phone.incoming_of(&call).await;
    bob_phone
        .command(CallCommand::CallReject { call: call.clone() })
        .await
        .expect("reject");
    assert_eq!(
        alice_desk.ended(&call).await,
        (EndReason::Rejected, CallResult::Rejected)
    );
    let CallEvent::CallRingingStopped { reason, .. } = bob_desk
        .call_event("ringing stopped", |e| {
            matches!(e, CallEvent::CallRingingStopped { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert_eq!(reason, StopReason::Rejected);
    assert_eq!(
        journal_of(&bob_desk, &call).await.result,
        Some(CallResult::Rejected)
    );

    // --- Nobody answers: the call ends after the ring timeout, missed for bob.
    let started = Instant::now();
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&call).await;
    assert_eq!(alice_desk.ended(&call).await.0, EndReason::NoAnswer);
    assert!(started.elapsed() >= Duration::from_millis(5_000));
    let missed = journal_of(&bob_desk, &call).await;
    assert_eq!(missed.result, Some(CallResult::Missed));
    assert_eq!(missed.answered_ms, None);

    // --- Offline callee, unknown callee, calling oneself, a non-SDP: clear answers.
    let call = alice_desk
        .command(place(&ghost, &offer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice_desk.ended(&call).await.0, EndReason::Offline);
    assert_eq!(
        alice_desk
            .command(place(&UserId::from("nobody"), &offer))
            .await,
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        alice_desk.command(place(&alice, &offer)).await,
        Err(ErrorCode::BadRequest)
    );
    assert_eq!(
        alice_desk.command(place(&bob, "hello")).await,
        Err(ErrorCode::BadRequest)
    );
    // An SDP the MediaServer cannot negotiate: the call fails, nothing stays behind.
    let call = alice_desk
        .command(place(&bob, "v=0\r\nthis is not a session\r\n"))
        .await
        .unwrap()
        .unwrap();
    let (reason, result) = alice_desk.ended(&call).await;
    assert_eq!(
        (reason, result),
        (EndReason::MediaFailed, CallResult::Failed)
    );
    // bob may have rung briefly: every device stops.
    carol_desk.telephony_of(&bob, TelephonyState::Idle).await;
    wait_leases(&lab.admin, 0).await;
    // Commands about calls that do not exist.
    assert_eq!(
        alice_desk
            .command(CallCommand::CallHangup {
                call: CallId::from("s1~ffff")
            })
            .await,
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        alice_desk
            .command(CallCommand::CallHangup {
                call: CallId::from("garbage")
            })
            .await,
        Err(ErrorCode::NotFound)
    );

    // --- One user cannot hold more than a handful of calls open at once.
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(
            alice_desk
                .command(place(&bob, &offer))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        alice_desk.command(place(&bob, &offer)).await,
        Err(ErrorCode::Conflict)
    );
    for call in open {
        alice_desk
            .command(CallCommand::CallHangup { call: call.clone() })
            .await
            .expect("cancel");
        alice_desk.ended(&call).await;
    }
    wait_leases(&lab.admin, 0).await;

    // --- The softphone pool: with one license, bob cannot answer; nothing leaks.
    lab.admin
        .set_license("softphone", 1)
        .await
        .expect("license");
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&call).await;
    let (_bob_peer, bob_offer) = softphone().await;
    assert_eq!(
        bob_desk
            .command(CallCommand::CallAnswer {
                call: call.clone(),
                sdp: bob_offer,
            })
            .await,
        Err(ErrorCode::LicenseExhausted)
    );
    assert_eq!(softphone_leases(&lab.admin).await, 1);
    alice_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("cancel");
    assert_eq!(alice_desk.ended(&call).await.0, EndReason::Cancelled);
    wait_leases(&lab.admin, 0).await;
    lab.admin
        .set_license("softphone", 0)
        .await
        .expect("license");
    assert_eq!(
        alice_desk.command(place(&bob, &offer)).await,
        Err(ErrorCode::LicenseExhausted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_media_servers_and_survive_one_dying() {
    let mut lab = Lab::start("calls_media").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;

    // --- 20 calls placed one after another spread evenly over both MediaServers.
    let (_peer, offer) = softphone().await;
    let mut per_media: BTreeMap<MediaServerId, u32> = BTreeMap::new();
    for _ in 0..20 {
        let media = place_and_cancel(&mut alice_desk, &bob, &offer).await;
        *per_media.entry(media).or_default() += 1;
    }
    assert_eq!(
        per_media.len(),
        2,
        "both MediaServers got calls: {per_media:?}"
    );
    assert!(
        per_media.values().all(|n| (8..=12).contains(n)),
        "spread evenly: {per_media:?}"
    );
    bob_desk.queue.clear();

    // --- A connected call; its MediaServer is killed: both parties are told, journal `failed`.
    let ConnectedCall {
        call,
        media,
        caller: alice_peer,
        callee: bob_peer,
    } = connected_call(&mut alice_desk, &mut bob_desk).await;
    let (got_a, got_b) = talk(&alice_peer, &bob_peer, 1).await;
    assert!(got_a > 0 && got_b > 0, "media flows before the failure");

    let killed_at = Instant::now();
    let (victim, survivor) = if media.as_str() == "m1" {
        (&mut lab.m1, "m2")
    } else {
        (&mut lab.m2, "m1")
    };
    victim.kill9();
    assert_eq!(
        alice_desk.ended(&call).await,
        (EndReason::MediaFailed, CallResult::Failed)
    );
    assert_eq!(bob_desk.ended(&call).await.1, CallResult::Failed);
    let noticed = killed_at.elapsed();
    assert!(noticed < Duration::from_secs(15), "took {noticed:?}");
    assert_eq!(
        journal_of(&alice_desk, &call).await.result,
        Some(CallResult::Failed)
    );
    assert_eq!(
        journal_of(&bob_desk, &call).await.result,
        Some(CallResult::Failed)
    );
    wait_leases(&lab.admin, 0).await;

    // New calls go to the survivor at once.
    for _ in 0..3 {
        let media = place_and_cancel(&mut alice_desk, &bob, &offer).await;
        assert_eq!(media.as_str(), survivor);
    }

    // It comes back and gets new calls again.
    let victim_id = if survivor == "m1" { "m2" } else { "m1" };
    if survivor == "m1" {
        lab.m2.restart();
    } else {
        lab.m1.restart();
    }
    lab.wait_media_alive(&["m1", "m2"]).await;
    let mut back = false;
    for _ in 0..4 {
        let media = place_and_cancel(&mut alice_desk, &bob, &offer).await;
        back |= media.as_str() == victim_id;
    }
    assert!(
        back,
        "the restarted MediaServer {victim_id} gets calls again"
    );

    // --- ICE/DTLS never comes up for bob's leg (his peer ignores the answer): after the
    // MediaServer's connect timeout the leg fails and the call ends; nothing stays behind.
    let (mut alice_peer, offer) = softphone().await;
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&call).await;
    let (_silent_peer, silent_offer) = softphone().await;
    bob_desk
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: silent_offer,
        })
        .await
        .expect("answer");
    alice_desk.connect_media(&call, &mut alice_peer).await;
    let (reason, result) = bob_desk.ended(&call).await;
    assert_eq!(
        (reason, result),
        (EndReason::MediaFailed, CallResult::Failed)
    );
    assert_eq!(alice_desk.ended(&call).await.0, EndReason::MediaFailed);
    wait_leases(&lab.admin, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_pickup_and_a_three_party_conference_across_servers() {
    let lab = Lab::start("calls_features").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let carol = lab.user("carol", "s1").await;
    let dave = lab.user("dave", "s2").await;
    let eve = lab.user("eve", "s1").await;
    // Dave is bob's delegate; carol shares a group (a pickup group) with bob; eve has no right.
    let bob_client = Client::login(&lab.s1.url(), &bob, PASSWORD, None)
        .await
        .expect("login");
    bob_client.put_delegate(&dave).await.expect("delegate");
    let sales = GroupId::from("sales");
    lab.admin
        .create_group(CreateGroup {
            id: sales.clone(),
            display_name: Some("Sales".into()),
        })
        .await
        .expect("group");
    for member in [&bob, &carol] {
        lab.admin.add_member(&sales, member).await.expect("member");
    }

    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;
    let mut carol_desk = lab.phone(&carol, "desk").await;
    let mut dave_desk = lab.phone(&dave, "desk").await;
    let mut eve_desk = lab.phone(&eve, "desk").await;
    let (_spare, offer) = softphone().await;

    // --- Forwarding set by a delegate; someone else may not.
    dave_desk
        .command(CallCommand::ForwardSet {
            mode: ForwardMode::Always,
            to: carol.clone(),
            user: Some(bob.clone()),
        })
        .await
        .expect("a delegate sets bob's forwarding");
    bob_desk
        .call_event("forwarding_changed", |e| matches!(e, CallEvent::ForwardingChanged { rules, .. } if rules.always.as_ref() == Some(&carol)))
        .await;
    // Bob's presence says his calls go elsewhere (to his group mate carol, who watches him).
    carol_desk
        .telephony_of(&bob, TelephonyState::Forwarded)
        .await;
    assert_eq!(
        eve_desk
            .command(CallCommand::ForwardSet {
                mode: ForwardMode::Always,
                to: eve.clone(),
                user: Some(bob.clone()),
            })
            .await,
        Err(ErrorCode::Forbidden)
    );
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    let CallEvent::CallIncoming { forwarded_from, .. } = carol_desk.incoming().await else {
        unreachable!()
    };
    assert_eq!(forwarded_from, Some(bob.clone()));
    alice_desk
        .call_event("redirected", |e| matches!(e, CallEvent::CallRedirected { to, mode: ForwardMode::Always, .. } if *to == carol))
        .await;
    let (mut carol_peer, carol_offer) = softphone().await;
    carol_desk
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: carol_offer,
        })
        .await
        .expect("carol answers the forwarded call");
    carol_desk.connect_media(&call, &mut carol_peer).await;
    alice_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hangup");
    carol_desk.ended(&call).await;
    assert_eq!(
        journal_of(&bob_desk, &call).await.result,
        Some(CallResult::Forwarded)
    );
    bob_desk
        .command(CallCommand::ForwardClear {
            mode: None,
            user: None,
        })
        .await
        .expect("bob clears his forwarding");
    let rules = bob_client.forwarding(&bob).await.expect("rules");
    assert!(rules.is_empty(), "{rules:?}");

    // --- Pickup: eve may not, dave (delegate, on the callee's server) may.
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&call).await;
    assert_eq!(
        eve_desk
            .command(CallCommand::CallPickup {
                user: bob.clone(),
                call: None,
                sdp: offer.clone(),
            })
            .await,
        Err(ErrorCode::Forbidden)
    );
    let (mut dave_peer, dave_offer) = softphone().await;
    let picked = dave_desk
        .command(CallCommand::CallPickup {
            user: bob.clone(),
            call: None,
            sdp: dave_offer,
        })
        .await
        .expect("dave picks up");
    assert_eq!(picked, Some(call.clone()));
    let CallEvent::CallRingingStopped { reason, by, .. } = bob_desk
        .call_event("ringing stopped", |e| {
            matches!(e, CallEvent::CallRingingStopped { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert_eq!((reason, by), (StopReason::PickedUp, Some(dave.clone())));
    dave_desk.connect_media(&call, &mut dave_peer).await;
    alice_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hangup");
    dave_desk.ended(&call).await;
    assert_eq!(
        journal_of(&bob_desk, &call).await.result,
        Some(CallResult::PickedUp)
    );
    assert_eq!(
        journal_of(&dave_desk, &call).await.result,
        Some(CallResult::Answered)
    );
    // Nothing rings at bob now.
    assert_eq!(
        carol_desk
            .command(CallCommand::CallPickup {
                user: bob.clone(),
                call: None,
                sdp: offer.clone(),
            })
            .await,
        Err(ErrorCode::NotFound)
    );

    // --- Busy: bob is in a call with alice, so carol's call ends `busy`; with bob's busy
    // forwarding to dave her next call rings dave; with no-answer forwarding to eve, a call
    // bob does not take moves to eve after the ring timeout.
    let ConnectedCall {
        call,
        caller: _alice_peer,
        callee: _bob_peer,
        ..
    } = connected_call(&mut alice_desk, &mut bob_desk).await;
    carol_desk.telephony_of(&bob, TelephonyState::InCall).await;
    let busy = carol_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol_desk.ended(&busy).await.0, EndReason::Busy);
    assert_eq!(
        journal_of(&bob_desk, &busy).await.result,
        Some(CallResult::Busy)
    );
    bob_desk
        .command(CallCommand::ForwardSet {
            mode: ForwardMode::Busy,
            to: dave.clone(),
            user: None,
        })
        .await
        .expect("busy forwarding");
    let forwarded = carol_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    let CallEvent::CallIncoming { forwarded_from, .. } = dave_desk.incoming().await else {
        unreachable!()
    };
    assert_eq!(forwarded_from, Some(bob.clone()));
    carol_desk
        .command(CallCommand::CallHangup {
            call: forwarded.clone(),
        })
        .await
        .expect("cancel");
    carol_desk.ended(&forwarded).await;
    alice_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hangup");
    bob_desk.ended(&call).await;
    carol_desk.telephony_of(&bob, TelephonyState::Idle).await;
    bob_desk
        .command(CallCommand::ForwardClear {
            mode: None,
            user: None,
        })
        .await
        .expect("clear");
    bob_desk
        .command(CallCommand::ForwardSet {
            mode: ForwardMode::NoAnswer,
            to: eve.clone(),
            user: None,
        })
        .await
        .expect("no-answer forwarding");
    let unanswered = carol_desk
        .command(place(&bob, &offer))
        .await
        .unwrap()
        .unwrap();
    bob_desk.incoming_of(&unanswered).await;
    let CallEvent::CallIncoming { forwarded_from, .. } = eve_desk.incoming().await else {
        unreachable!()
    };
    assert_eq!(forwarded_from, Some(bob.clone()));
    let CallEvent::CallRingingStopped { reason, .. } = bob_desk
        .call_event(
            "ringing stopped",
            |e| matches!(e, CallEvent::CallRingingStopped { call: c, .. } if *c == unanswered),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(reason, StopReason::Forwarded);
    eve_desk
        .command(CallCommand::CallReject {
            call: unanswered.clone(),
        })
        .await
        .expect("eve declines");
    assert_eq!(carol_desk.ended(&unanswered).await.0, EndReason::Rejected);
    bob_desk
        .command(CallCommand::ForwardClear {
            mode: None,
            user: None,
        })
        .await
        .expect("clear");

    // --- A conference: alice calls bob, then rings carol in; everyone hears both others.
    let ConnectedCall {
        call,
        caller: alice_peer,
        callee: bob_peer,
        ..
    } = connected_call(&mut alice_desk, &mut bob_desk).await;
    alice_desk
        .command(CallCommand::CallInvite {
            call: call.clone(),
            user: carol.clone(),
        })
        .await
        .expect("invite");
    let CallEvent::CallIncoming {
        conference,
        parties,
        ..
    } = carol_desk.incoming().await
    else {
        unreachable!()
    };
    assert!(conference);
    assert_eq!(parties.len(), 2);
    let (mut carol_peer, carol_offer) = softphone().await;
    carol_desk
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: carol_offer,
        })
        .await
        .expect("carol joins");
    carol_desk.connect_media(&call, &mut carol_peer).await;
    alice_desk
        .call_event(
            "three connected",
            |e| matches!(e, CallEvent::CallConnected { parties, .. } if parties.len() == 3),
        )
        .await;
    let duration = Duration::from_secs(2);
    let (a, b, c) = tokio::join!(
        alice_peer.send_audio(duration),
        bob_peer.send_audio(duration),
        carol_peer.send_audio(duration)
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, peer) in [
        ("alice", &alice_peer),
        ("bob", &bob_peer),
        ("carol", &carol_peer),
    ] {
        let heard: Vec<u64> = peer
            .packets_received_per_source()
            .into_iter()
            .filter(|n| *n > 10)
            .collect();
        assert_eq!(
            heard.len(),
            2,
            "{name} hears both others: {heard:?}\n{}",
            lab.logs()
        );
    }
    // One leaves; the other two go on.
    carol_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("carol leaves");
    alice_desk
        .call_event("party left", |e| matches!(e, CallEvent::CallPartyLeft { user, parties, .. } if *user == carol && parties.len() == 2))
        .await;
    bob_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("bob leaves");
    assert_eq!(alice_desk.ended(&call).await.1, CallResult::Answered);
    wait_leases(&lab.admin, 0).await;
}

/// Calls placed right after a MediaServer's kill -9 all connect on the other one, and no
/// callee hears of a call that then fails: the call rings nobody until the caller's leg stands,
/// and a MediaServer that cannot take it is replaced first. With no MediaServer left, the call
/// fails for the caller alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_placed_as_a_media_server_dies_connect_on_the_other_and_ring_no_one_in_vain() {
    let mut lab = Lab::start("calls_media_dies").await;
    // Two callers, so that both UCServers choose (each owns its caller's calls).
    let alice = lab.user("alice", "s1").await;
    let zoe = lab.user("zoe", "s2").await;
    let mut callers = [
        lab.phone(&alice, "desk").await,
        lab.phone(&zoe, "desk").await,
    ];
    let mut callees = Vec::new();
    for (name, home) in [
        ("bob", "s2"),
        ("carol", "s1"),
        ("dave", "s2"),
        ("erin", "s1"),
    ] {
        let user = lab.user(name, home).await;
        callees.push(lab.phone(&user, "desk").await);
    }

    // Neither server has placed a call yet, so each one's first choice among two equally idle
    // MediaServers is m1 (ties go in id order), whose heartbeat is still fresh: kill it.
    lab.m1.kill9();
    let killed_at = Instant::now();
    let mut calls = Vec::new();
    for (index, callee) in callees.iter().enumerate() {
        let caller = &mut callers[index % 2];
        let (peer, offer) = softphone().await;
        let call = caller
            .command(place(&callee.user, &offer))
            .await
            .expect("placed")
            .expect("call id");
        calls.push((call, peer));
    }
    println!("4 calls placed {:?} after the kill", killed_at.elapsed());

    // Every callee rings for its call and answers at once (all four ring together, so none
    // may wait for another's media to come up).
    let mut first_choices = Vec::new();
    let mut callee_peers = Vec::new();
    for (index, (call, _)) in calls.iter().enumerate() {
        let caller = &mut callers[index % 2];
        let CallEvent::CallPlaced { media, .. } = caller
            .call_event(
                "call_placed",
                |e| matches!(e, CallEvent::CallPlaced { call: c, .. } if c == call),
            )
            .await
        else {
            unreachable!()
        };
        first_choices.push(media);
        let callee = &mut callees[index];
        callee.incoming_of(call).await;
        let (callee_peer, callee_offer) = softphone().await;
        callee
            .command(CallCommand::CallAnswer {
                call: call.clone(),
                sdp: callee_offer,
            })
            .await
            .unwrap_or_else(|e| panic!("answer: {e:?}\n{}", lab.logs()));
        callee_peers.push(callee_peer);
    }
    // Every call's media comes up on the survivor: all answers applied first, so that the
    // eight peers connect side by side, within the MediaServer's connect timeout.
    for (index, ((call, caller_peer), callee_peer)) in
        calls.iter_mut().zip(callee_peers.iter_mut()).enumerate()
    {
        let caller = &mut callers[index % 2];
        let caller_media = caller.apply_media_answer(call, caller_peer).await;
        let callee_media = callees[index].apply_media_answer(call, callee_peer).await;
        assert_eq!(
            (caller_media.as_str(), callee_media.as_str()),
            ("m2", "m2"),
            "{call} runs on the survivor\n{}",
            lab.logs()
        );
    }
    for (index, ((call, caller_peer), callee_peer)) in
        calls.iter_mut().zip(callee_peers.iter_mut()).enumerate()
    {
        caller_peer
            .wait_connected(WAIT)
            .await
            .expect("ICE and DTLS up");
        callee_peer
            .wait_connected(WAIT)
            .await
            .expect("ICE and DTLS up");
        if index == 0 {
            let (got_a, got_b) = talk(caller_peer, callee_peer, 1).await;
            assert!(got_a > 0 && got_b > 0, "media flows through m2");
        }
        let caller = &mut callers[index % 2];
        let callee = &mut callees[index];
        caller
            .command(CallCommand::CallHangup { call: call.clone() })
            .await
            .expect("hang up");
        assert_eq!(callee.ended(call).await.0, EndReason::HungUp);
        assert_eq!(caller.ended(call).await.0, EndReason::HungUp);
        callee_peer.close().await;
    }
    assert!(
        first_choices.iter().any(|m| m.as_str() == "m1"),
        "some call was first placed on the dead m1 and moved: {first_choices:?}"
    );

    // Each callee heard of its own call only, and of no failure.
    for callee in &mut callees {
        callee.settle(Duration::from_millis(500)).await;
        let noise: Vec<&ServerEvent> = callee
            .queue
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ServerEvent::Call(
                        CallEvent::CallIncoming { .. }
                            | CallEvent::CallRingingStopped { .. }
                            | CallEvent::CallEnded { .. }
                    )
                )
            })
            .collect();
        assert!(noise.is_empty(), "{}: {noise:?}", callee.user);
    }
    wait_leases(&lab.admin, 0).await;

    // --- m2 dies too: a call placed now (m2 still looks fresh) cannot be set up anywhere. It
    // fails for the caller with `media_failed`, journalled `failed`; the callee never rings.
    lab.m2.kill9();
    let (_peer, offer) = softphone().await;
    let bob = &mut callees[0];
    let alice_desk = &mut callers[0];
    let call = alice_desk
        .command(place(&bob.user, &offer))
        .await
        .expect("placed on m2, which looks alive")
        .expect("call id");
    assert_eq!(
        alice_desk.ended(&call).await,
        (EndReason::MediaFailed, CallResult::Failed),
        "\n{}",
        lab.logs()
    );
    let entry = journal_of(alice_desk, &call).await;
    assert_eq!(
        (entry.direction, entry.party.as_str(), entry.result),
        (Direction::Outgoing, "bob", Some(CallResult::Failed))
    );
    assert!(
        !alice_desk.queue.iter().any(|e| matches!(
            e,
            ServerEvent::Call(CallEvent::CallRinging { call: c, .. }) if *c == call
        )),
        "the caller never heard it ring"
    );
    bob.settle(Duration::from_millis(500)).await;
    assert!(
        !bob.queue
            .iter()
            .any(|e| matches!(e, ServerEvent::Call(c) if c.call() == Some(&call))),
        "bob never heard of the failed call: {:?}",
        bob.queue
    );
    // Nothing of it is left with bob: no journal line, no ringing state.
    let entries = bob.client.journal(Some(50)).await.expect("journal");
    assert!(
        !entries
            .iter()
            .any(|e| e.summary.as_deref() == Some(call.as_str())),
        "{entries:?}"
    );
    wait_leases(&lab.admin, 0).await;
}

/// kill -9 of the UCServer that owns a call (the caller's): the callee on the other server is
/// told the call ended, and their home server writes the journal entry the owner cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_server_dies_ends_for_the_other_party_with_a_journal_entry() {
    let mut lab = Lab::start("calls_owner_dies").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;

    let ConnectedCall {
        call,
        caller: alice_peer,
        callee: bob_peer,
        ..
    } = connected_call(&mut alice_desk, &mut bob_desk).await;
    assert_eq!(
        shared::call::call_owner(&call),
        Some(ServerId::from("s1")),
        "the caller's home owns the call"
    );

    let killed_at = Instant::now();
    lab.s1.kill9();
    let (reason, result) = bob_desk.ended(&call).await;
    assert_eq!(
        (reason, result),
        (EndReason::SetupFailed, CallResult::Failed),
        "\n{}",
        lab.logs()
    );
    let entry = journal_of(&bob_desk, &call).await;
    assert_eq!(entry.direction, Direction::Incoming);
    assert_eq!(entry.party, "alice");
    assert_eq!(entry.result, Some(CallResult::Failed));
    assert!(entry.answered_ms.is_some(), "bob had answered: {entry:?}");
    assert!(entry.ended_ms.is_some_and(|end| end >= entry.started_ms));
    println!(
        "owner's death noticed by bob after {:?}",
        killed_at.elapsed()
    );
    // Exactly one entry for the call (the dead owner wrote none).
    let entries = bob_desk.client.journal(Some(50)).await.expect("journal");
    let for_call = entries
        .iter()
        .filter(|e| e.summary.as_deref() == Some(call.as_str()))
        .count();
    assert_eq!(for_call, 1);
    alice_peer.close().await;
    bob_peer.close().await;

    // New calls work: alice, whose home s1 is dead, is served by s2 now; bob calls her there
    // and media flows both ways.
    let mut alice_again = lab.phone_at(&lab.s2.url(), &alice, "laptop").await;
    assert_eq!(alice_again.conn.hello().server, ServerId::from("s2"));
    let ConnectedCall {
        call,
        caller: bob_peer,
        callee: alice_peer,
        ..
    } = connected_call(&mut bob_desk, &mut alice_again).await;
    let (bob_got, alice_got) = talk(&bob_peer, &alice_peer, 2).await;
    assert!(
        bob_got > 0 && alice_got > 0,
        "media both ways after the failover: {bob_got}, {alice_got}"
    );
    bob_desk
        .command(CallCommand::CallHangup { call })
        .await
        .expect("hang up");
    bob_peer.close().await;
    alice_peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_carries_calls_on_its_embedded_media_server() {
    let dir = switchboard_tests::process::fresh_dir("calls-solo");
    let database_url = format!("sqlite:{}", dir.join("solo.db").display());
    let solo = UcServer::start("solo", &database_url, None, &[]);
    let admin = AdminClient::login(&solo.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    let media = admin.media().await.expect("media list");
    assert_eq!(media.len(), 1, "{media:?}");
    assert_eq!(media[0].id.as_str(), "solo-media");
    assert!(media[0].alive);
    for name in ["alice", "bob"] {
        admin
            .create_user(CreateUser {
                id: UserId::from(name),
                password: PASSWORD.into(),
                display_name: None,
                home_server: None,
                admin: false,
            })
            .await
            .expect("create user");
    }
    let phone = |user: &'static str| {
        let url = solo.url();
        async move {
            let user = UserId::from(user);
            let client = Client::login(&url, &user, PASSWORD, Some(DeviceId::from("desk")))
                .await
                .expect("login");
            let conn = client
                .connect(None, &[Capability::Chat, Capability::Audio])
                .await
                .expect("websocket");
            Phone {
                user,
                client,
                conn,
                queue: VecDeque::new(),
            }
        }
    };
    let mut alice = phone("alice").await;
    let mut bob = phone("bob").await;
    let ConnectedCall {
        call,
        media: used,
        caller: alice_peer,
        callee: bob_peer,
    } = connected_call(&mut alice, &mut bob).await;
    assert_eq!(used.as_str(), "solo-media");
    let (a, b) = talk(&alice_peer, &bob_peer, 2).await;
    assert!(
        a > 20 && b > 20,
        "alice got {a}, bob got {b}\n{}",
        solo.log()
    );
    alice
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hangup");
    assert_eq!(
        bob.ended(&call).await,
        (EndReason::HungUp, CallResult::Answered)
    );
}

/// The journal entries of `phone`'s user about `call`, once the database answers and has
/// at least one.
async fn journal_entries_of(phone: &Phone, call: &CallId) -> Vec<shared::api::JournalEntry> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(entries) = phone.client.journal(Some(100)).await {
            let about: Vec<_> = entries
                .into_iter()
                .filter(|e| {
                    e.kind == JournalKind::Call && e.summary.as_deref() == Some(call.as_str())
                })
                .collect();
            if !about.is_empty() {
                return about;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no journal entry of {call} for {}",
            phone.user
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_on_while_the_database_is_away_and_are_journalled_once_when_it_returns() {
    // A PostgreSQL of its own, to stop and start again.
    let postgres = Postgres::start();
    let lab = Lab::start_on(&postgres.create_database("calls_sql_away")).await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let carol = lab.user("carol", "s1").await;
    let dave = lab.user("dave", "s2").await;
    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;
    // carol (s1) watches bob (s2), dave (s2) watches alice (s1): telephony across servers.
    // Nothing on s1 has looked bob up: his home is found where he is online.
    let mut carol_desk = lab.phone(&carol, "desk").await;
    let mut dave_desk = lab.phone(&dave, "desk").await;
    carol_desk
        .client
        .put_contact(&bob, "")
        .await
        .expect("contact");
    dave_desk
        .client
        .put_contact(&alice, "")
        .await
        .expect("contact");
    // The servers read the new watchers from SQL while it answers (a change of presence).
    for (setter, watcher, user) in [
        (&bob_desk, &mut carol_desk, &bob),
        (&alice_desk, &mut dave_desk, &alice),
    ] {
        let note = format!("{user} before the outage");
        setter
            .client
            .set_presence(SetPresence {
                availability: None,
                note: Some(note.clone()),
                user: None,
            })
            .await
            .expect("presence");
        watcher
            .event("the note", |e| {
                matches!(e, ServerEvent::Presence { presence }
                    if &presence.user == user && presence.note.as_deref() == Some(note.as_str()))
            })
            .await;
    }

    postgres.stop();
    // --- Placed, answered, media both ways, hung up: all without the database.
    let (mut alice_peer, offer) = softphone().await;
    let placing = Instant::now();
    let call = alice_desk
        .command(place(&bob, &offer))
        .await
        .unwrap_or_else(|e| panic!("no call without the database: {e:?}\n{}", lab.logs()))
        .expect("the ack names the call");
    let placed_in = placing.elapsed();
    bob_desk.incoming_of(&call).await;
    carol_desk.telephony_of(&bob, TelephonyState::Ringing).await;
    let (mut bob_peer, bob_offer) = softphone().await;
    let answered = bob_desk
        .command(CallCommand::CallAnswer {
            call: call.clone(),
            sdp: bob_offer,
        })
        .await;
    assert_eq!(answered, Ok(Some(call.clone())));
    alice_desk.connect_media(&call, &mut alice_peer).await;
    bob_desk.connect_media(&call, &mut bob_peer).await;
    carol_desk.telephony_of(&bob, TelephonyState::InCall).await;
    dave_desk.telephony_of(&alice, TelephonyState::InCall).await;
    let (alice_got, bob_got) = talk(&alice_peer, &bob_peer, 2).await;
    assert!(
        alice_got > 20 && bob_got > 20,
        "media while the database is away: alice got {alice_got}, bob {bob_got} packets"
    );
    // Older telephony events are not the ones waited for next.
    carol_desk.queue.clear();
    dave_desk.queue.clear();
    bob_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hung up");
    assert_eq!(alice_desk.ended(&call).await.1, CallResult::Answered);
    carol_desk.telephony_of(&bob, TelephonyState::Idle).await;
    dave_desk.telephony_of(&alice, TelephonyState::Idle).await;

    // --- A call bob misses (alice gives up while it rings).
    let missing = Instant::now();
    let missed = alice_desk
        .command(place(&bob, &offer))
        .await
        .expect("placed")
        .expect("the ack names the call");
    let missed_placed_in = missing.elapsed();
    bob_desk.incoming_of(&missed).await;
    alice_desk
        .command(CallCommand::CallHangup {
            call: missed.clone(),
        })
        .await
        .expect("cancelled");
    alice_desk.ended(&missed).await;
    bob_desk
        .call_event(
            "ringing stopped",
            |e| matches!(e, CallEvent::CallRingingStopped { call: c, .. } if *c == missed),
        )
        .await;
    // The journal is a read that needs the database.
    let refused = alice_desk.client.journal(Some(10)).await;
    assert!(
        matches!(&refused, Err(e) if e.api().map(|a| a.error) == Some(ErrorCode::ServerUnavailable)),
        "{refused:?}"
    );
    println!(
        "{{\"first_call_placed_ms\":{},\"second_call_placed_ms\":{},\"packets\":[{alice_got},{bob_got}]}}",
        placed_in.as_millis(),
        missed_placed_in.as_millis()
    );

    // --- The database returns: each party's entries are stored, once each.
    postgres.restart();
    for (phone, id, result) in [
        (&alice_desk, &call, CallResult::Answered),
        (&bob_desk, &call, CallResult::Answered),
        (&alice_desk, &missed, CallResult::Missed),
        (&bob_desk, &missed, CallResult::Missed),
    ] {
        let entries = journal_entries_of(phone, id).await;
        assert_eq!(entries.len(), 1, "{}: {entries:?}", phone.user);
        assert_eq!(
            entries[0].result,
            Some(result),
            "{}: {entries:?}",
            phone.user
        );
    }
    // A while later still once each (the outbox is drained once).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (phone, id) in [
        (&alice_desk, &call),
        (&bob_desk, &call),
        (&alice_desk, &missed),
    ] {
        assert_eq!(journal_entries_of(phone, id).await.len(), 1);
    }
    wait_leases(&lab.admin, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_moved_during_a_call_keeps_talking_and_moves_when_the_call_ends() {
    let lab = Lab::start("calls_move_waits").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;
    let ConnectedCall {
        call,
        caller: alice_peer,
        callee: bob_peer,
        ..
    } = connected_call(&mut alice_desk, &mut bob_desk).await;

    // bob's home changes to s1 mid-call: the move waits for the call (several heartbeats).
    lab.admin
        .update_user(
            &bob,
            UpdateUser {
                home_server: Some(ServerId::from("s1")),
                ..UpdateUser::default()
            },
        )
        .await
        .expect("move bob");
    let (before_alice, before_bob) = (alice_peer.packets_received(), bob_peer.packets_received());
    let (alice_got, bob_got) = talk(&alice_peer, &bob_peer, 3).await;
    assert!(
        alice_got > before_alice && bob_got > before_bob,
        "media flows both ways after the move was asked: {before_alice}->{alice_got}, {before_bob}->{bob_got}"
    );
    bob_desk.settle(Duration::from_millis(500)).await;
    assert!(
        !bob_desk
            .queue
            .iter()
            .any(|e| matches!(e, ServerEvent::Reconnect { .. })),
        "bob is not moved while in the call: {:?}",
        bob_desk.queue
    );

    // The call ends: bob's device is sent on to s1, his new home.
    alice_desk
        .command(CallCommand::CallHangup { call: call.clone() })
        .await
        .expect("hang up");
    let moved = bob_desk
        .event("reconnect", |e| matches!(e, ServerEvent::Reconnect { .. }))
        .await;
    let ServerEvent::Reconnect { server, .. } = moved else {
        unreachable!()
    };
    assert_eq!(server, ServerId::from("s1"), "bob moves to his new home");
    alice_peer.close().await;
    bob_peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_media_server_keeps_its_calls_and_gets_no_new_one() {
    let lab = Lab::start("calls_media_drain").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let mut alice_desk = lab.phone(&alice, "desk").await;
    let mut bob_desk = lab.phone(&bob, "desk").await;
    let ConnectedCall {
        call,
        media: drained,
        caller: alice_peer,
        callee: bob_peer,
    } = connected_call(&mut alice_desk, &mut bob_desk).await;

    let info = lab
        .admin
        .drain_media(&drained, true)
        .await
        .expect("drain the call's MediaServer");
    assert!(info.draining, "{info:?}");
    // The running call goes on there.
    let (before_alice, before_bob) = (alice_peer.packets_received(), bob_peer.packets_received());
    let (alice_got, bob_got) = talk(&alice_peer, &bob_peer, 2).await;
    assert!(
        alice_got > before_alice && bob_got > before_bob,
        "the call on the drained MediaServer carries media both ways"
    );
    alice_desk
        .command(CallCommand::CallHangup { call })
        .await
        .expect("hang up");
    alice_peer.close().await;
    bob_peer.close().await;

    // New calls go to the other MediaServer, however lightly the drained one is loaded.
    for round in 0..2 {
        let ConnectedCall {
            call,
            media,
            caller,
            callee,
        } = connected_call(&mut alice_desk, &mut bob_desk).await;
        assert_ne!(media, drained, "new call {round} avoids the drained server");
        alice_desk
            .command(CallCommand::CallHangup { call })
            .await
            .expect("hang up");
        caller.close().await;
        callee.close().await;
    }
    let error = lab
        .admin
        .drain_media(&MediaServerId::from("nonexistent"), true)
        .await
        .expect_err("an unknown MediaServer");
    assert_eq!(error.api().map(|a| a.error), Some(ErrorCode::NotFound));

    let info = lab
        .admin
        .drain_media(&drained, false)
        .await
        .expect("undrain");
    assert!(!info.draining);
    let listed = lab.admin.media().await.expect("media list");
    assert!(listed.iter().all(|m| !m.draining), "{listed:?}");
}
