//! Overload without loss: a device that stops reading its socket is cut off (its queue is
//! dropped rather than waited for, so one slow device never holds up anyone else), and every
//! message it missed reaches it when it comes back and catches up. A database that does not
//! keep up makes the chat writer refuse new messages (`server_busy`) instead of queueing
//! without bound; what it acknowledged is stored, what it refused is not.

use shared::ConversationId;
use shared::api::ErrorCode;
use shared::ws::{ClientCommand, ServerEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use switchboard_tests::ucserver::UcServer;
use switchboard_tests::{Postgres, chat};

const PASSWORD: &str = "password-1";

/// The server's count of devices cut off for not reading.
async fn slow_devices_dropped(server: &UcServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|line| line.starts_with("uc_slow_devices_dropped_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_is_cut_off_and_catches_up_on_return() {
    // Enough to fill the socket buffers and the device's queue of 1,024 events many times.
    const MESSAGES: u64 = 3_000;
    const BODY_BYTES: usize = 8 * 1024;
    const WINDOW: u64 = 100;
    let (server, _admin) = chat::single_server(
        "overload_slow_device",
        &[("UC_RATE_SEND_PER_MINUTE", "0")],
        &["alice", "bob"],
        PASSWORD,
    )
    .await;
    let alice = chat::login(&server, "alice", PASSWORD, "desk").await;
    let bob = chat::login(&server, "bob", PASSWORD, "desk").await;
    let conversation = ConversationId::direct(alice.user(), bob.user());

    // bob's device connects, then never reads again.
    let stalled = bob.connect(None, &[]).await.expect("bob connects");

    let mut sender = alice.connect(None, &[]).await.expect("alice connects");
    let body = "x".repeat(BODY_BYTES);
    chat::send_all(&mut sender, bob.user(), MESSAGES, WINDOW, |_| body.clone()).await;
    // The sender was never held up by the stalled device (every send was acked above), and
    // the stalled device was cut off.
    let deadline = Instant::now() + Duration::from_secs(20);
    while slow_devices_dropped(&server).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the device that stopped reading was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);

    // bob comes back and catches up from where his device had nothing: all of it, once.
    let mut device = bob.connect(None, &[]).await.expect("bob reconnects");
    let (seen, lengths) = chat::catch_up(&mut device, &conversation, 0).await;
    assert!(lengths.iter().all(|&length| length == BODY_BYTES));
    assert_eq!(seen.len() as u64, MESSAGES, "every message, once");
    assert_eq!(seen.last(), Some(&MESSAGES));
}

/// Sends `bodies` on `connection` without waiting; returns each one's command reference.
async fn send_unanswered(
    connection: &mut ucclient::Connection,
    to: &shared::UserId,
    bodies: impl Iterator<Item = String>,
) -> BTreeMap<u64, String> {
    let mut sent = BTreeMap::new();
    for body in bodies {
        let reference = connection
            .send(ClientCommand::Send {
                to: Some(to.clone()),
                conversation: None,
                body: body.clone(),
                client_id: Some(body.clone()),
            })
            .await
            .expect("send");
        sent.insert(reference, body);
    }
    sent
}

/// Reads answers until every send in `sent` has one: (acknowledged, refused as busy).
async fn answers(
    connection: &mut ucclient::Connection,
    sent: &BTreeMap<u64, String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut acked, mut busy) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked.len() + busy.len() < sent.len() {
        let event = tokio::time::timeout_at(deadline.into(), connection.next_event())
            .await
            .expect("every send is answered")
            .expect("socket open")
            .expect("event");
        match event {
            ServerEvent::Ack {
                reference: Some(reference),
                ..
            } => {
                acked.insert(sent[&reference].clone());
            }
            ServerEvent::Error {
                reference: Some(reference),
                error,
                message,
                retry_after_ms,
            } => {
                assert_eq!(error, ErrorCode::ServerBusy, "{message}");
                assert!(retry_after_ms.is_some_and(|ms| ms > 0));
                busy.insert(sent[&reference].clone());
            }
            _ => {}
        }
    }
    (acked, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_gets_server_busy_and_loses_nothing_acknowledged() {
    // Eight devices with 200 sends each in flight: far more than a write batch (512) waits.
    const DEVICES: usize = 8;
    const EACH: u64 = 200;
    const LATE: u64 = 50;
    let (server, _admin) = chat::single_server(
        "overload_slow_sql",
        &[("UC_RATE_SEND_PER_MINUTE", "0")],
        &["alice", "bob"],
        PASSWORD,
    )
    .await;
    let alice = chat::login(&server, "alice", PASSWORD, "desk").await;
    let bob = chat::login(&server, "bob", PASSWORD, "desk").await;
    let conversation = ConversationId::direct(alice.user(), bob.user());
    alice
        .send_to_user(bob.user(), "first")
        .await
        .expect("first");
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        let device = alice
            .connect(Some(&shared::DeviceId::new(format!("device-{n}"))), &[])
            .await
            .expect("alice connects");
        devices.push(device);
    }
    let mut late_device = alice
        .connect(Some(&"late".into()), &[])
        .await
        .expect("alice connects");

    // Every write to the messages table waits for 8 s.
    let lock = Postgres::shared().lock_table("overload_slow_sql", "messages", 8);
    let mut sent = Vec::new();
    for (n, device) in devices.iter_mut().enumerate() {
        let bodies = (0..EACH).map(|m| format!("queued {n}/{m}"));
        sent.push(send_unanswered(device, bob.user(), bodies).await);
    }
    // The write has been waiting for more than 2 s with far more than a batch behind it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late_bodies = (0..LATE).map(|m| format!("late {m}"));
    let late_sent = send_unanswered(&mut late_device, bob.user(), late_bodies).await;
    let refused_at = Instant::now();
    let (late_acked, late_busy) = answers(&mut late_device, &late_sent).await;
    let refused_within = refused_at.elapsed();
    let mut acked = late_acked.len();
    let mut busy = late_busy.len();
    for (device, sent) in devices.iter_mut().zip(&sent) {
        let (device_acked, device_busy) = answers(device, sent).await;
        acked += device_acked.len();
        busy += device_busy.len();
    }
    lock.wait();
    println!(
        "{{\"acked\":{acked},\"server_busy\":{busy},\"refused_within_ms\":{}}}",
        refused_within.as_millis()
    );
    assert_eq!(
        late_busy.len() as u64,
        LATE,
        "every send after the database stalled is refused; acked: {late_acked:?}"
    );

    // What was acknowledged is stored, once; what was refused is not. (A write held up past
    // the writer's limit went to the outbox, acknowledged as provisional; it is stored once
    // the lock is gone.)
    let mut reader = bob.connect(None, &[]).await.expect("bob connects");
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let (seen, _) = chat::catch_up(&mut reader, &conversation, 1).await;
        // (The unread replay on connecting shows "first" too.)
        let stored = seen.range(2..).count();
        if stored >= acked || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(stored, acked, "stored = acknowledged (none of the refused)");

    // The database keeps up again: sends are taken.
    alice
        .send_to_user(bob.user(), "after")
        .await
        .expect("taken again");
}
