//! Overload without loss: a device that stops reading its socket is cut off (its queue is
//! dropped rather than waited for, so one slow device never holds up anyone else), and every
//! message it missed reaches it when it comes back and catches up.

use shared::api::CreateUser;
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ConversationId, DeviceId, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use switchboard_tests::Postgres;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use ucclient::{AdminClient, Client};

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
    let database_url = Postgres::shared().create_database("overload_slow_device");
    let server = UcServer::start(
        "s1",
        &database_url,
        None,
        &[("UC_RATE_SEND_PER_MINUTE", "0")],
    );
    let admin = AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    for user in ["alice", "bob"] {
        admin
            .create_user(CreateUser {
                id: UserId::from(user),
                password: PASSWORD.into(),
                display_name: None,
                home_server: None,
                admin: false,
            })
            .await
            .expect("create user");
    }
    let login = |user: &'static str| {
        let url = server.url();
        async move {
            Client::login(
                &url,
                &UserId::from(user),
                PASSWORD,
                Some(DeviceId::from("desk")),
            )
            .await
            .expect("login")
        }
    };
    let alice = login("alice").await;
    let bob = login("bob").await;
    let conversation = ConversationId::direct(alice.user(), bob.user());

    // bob's device connects, then never reads again.
    let stalled = bob.connect(None, &[]).await.expect("bob connects");

    let mut sender = alice.connect(None, &[]).await.expect("alice connects");
    let body = "x".repeat(BODY_BYTES);
    let mut sent = 0;
    while sent < MESSAGES {
        let mut waiting = BTreeSet::new();
        for _ in 0..WINDOW.min(MESSAGES - sent) {
            let reference = sender
                .send(ClientCommand::Send {
                    to: Some(bob.user().clone()),
                    conversation: None,
                    body: body.clone(),
                    client_id: Some(format!("m-{sent}")),
                })
                .await
                .expect("send");
            waiting.insert(reference);
            sent += 1;
        }
        while !waiting.is_empty() {
            match sender
                .next_event()
                .await
                .expect("socket open")
                .expect("event")
            {
                ServerEvent::Ack {
                    reference: Some(reference),
                    ..
                } => {
                    waiting.remove(&reference);
                }
                ServerEvent::Error { error, message, .. } => panic!("{error:?}: {message}"),
                _ => {}
            }
        }
    }
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
    let sync = device
        .send(ClientCommand::Sync {
            since: BTreeMap::from([(conversation.clone(), 0)]),
        })
        .await
        .expect("sync");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), device.next_event())
            .await
            .expect("the catch-up ends in time")
            .expect("socket open")
            .expect("event");
        match event {
            ServerEvent::Message { message, .. } if message.conversation == conversation => {
                assert_eq!(message.body.len(), BODY_BYTES);
                seen.insert(message.seq);
            }
            ServerEvent::Ack {
                reference: Some(reference),
                ..
            } if reference == sync => break,
            ServerEvent::Error { error, message, .. } => panic!("{error:?}: {message}"),
            _ => {}
        }
    }
    assert_eq!(seen.len() as u64, MESSAGES, "every message, once");
    assert_eq!(seen.last(), Some(&MESSAGES));
}
