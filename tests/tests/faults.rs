//! Infrastructure faults on real processes: a Redis and a PostgreSQL started by the harness,
//! two `ucserver` processes, and listening devices that count every message they show.

use shared::api::{CreateConversation, ErrorCode};
use shared::{ConversationId, UserId};
use std::time::{Duration, Instant};
use switchboard_tests::chat::{create_users, login};
use switchboard_tests::device::{Device, eventually};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client};

const PASSWORD: &str = "password-1";
/// Generous bound for a wait on a loaded machine; the time it took is printed.
const WAIT: Duration = Duration::from_secs(30);

async fn send_direct(from: &Client, to: &UserId, label: &str, count: u64) {
    for n in 0..count {
        from.send_to_user(to, &format!("{label} {n}"))
            .await
            .unwrap_or_else(|e| panic!("{label} {n} is accepted: {e}"));
    }
}

async fn send_group(from: &Client, to: &ConversationId, label: &str, count: u64) {
    for n in 0..count {
        from.send_to_conversation(to, &format!("{label} {n}"))
            .await
            .unwrap_or_else(|e| panic!("{label} {n} is accepted: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_while_the_bus_was_away_reach_every_device_once_in_order() {
    let mut redis = Redis::start();
    let database_url = Postgres::shared().create_database("busgap");
    let s1 = UcServer::start("s1", &database_url, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database_url, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    create_users(&admin, &["alice", "carol"], PASSWORD, Some("s1")).await;
    create_users(&admin, &["bob"], PASSWORD, Some("s2")).await;
    let (alice, bob, carol) = (
        UserId::from("alice"),
        UserId::from("bob"),
        UserId::from("carol"),
    );

    let alice_client = login(&s1, "alice", PASSWORD, "desk").await;
    let carol_client = login(&s1, "carol", PASSWORD, "desk").await;
    let bob_desk = login(&s2, "bob", PASSWORD, "desk").await;
    let bob_phone = login(&s2, "bob", PASSWORD, "phone").await;
    let group = alice_client
        .create_conversation(CreateConversation {
            name: "team".into(),
            members: vec![bob.clone(), carol.clone()],
        })
        .await
        .expect("group")
        .id;
    let direct = ConversationId::direct(&alice, &bob);
    let devices = [
        Device::start(&alice_client, "desk").await,
        Device::start(&carol_client, "desk").await,
        Device::start(&bob_desk, "desk").await,
        Device::start(&bob_phone, "phone").await,
    ];
    let [alice_device, carol_device, bob_devices @ ..] = &devices;

    // Before the outage: everything arrives live.
    send_direct(&alice_client, &bob, "before", 5).await;
    send_group(&alice_client, &group, "before", 5).await;
    for device in bob_devices {
        assert!(device.wait_for(&direct, 5, WAIT).await.is_some());
        assert!(device.wait_for(&group, 5, WAIT).await.is_some());
    }

    // Redis goes away: every send is still accepted (stored in SQL), and same-server chat
    // keeps flowing.
    redis.stop();
    let outage = Instant::now();
    send_direct(&alice_client, &bob, "during", 20).await;
    send_group(&alice_client, &group, "during", 10).await;
    let accepting = outage.elapsed();
    assert!(
        carol_device.wait_for(&group, 15, WAIT).await.is_some(),
        "same-server chat stops with the bus: carol shows {:?}",
        carol_device.seqs(&group)
    );
    assert!(
        accepting < Duration::from_secs(20),
        "30 sends took {accepting:?} while the bus was away: they wait for Redis"
    );

    // Redis is back (empty): every device gets what it lacks, once, in order.
    redis.restart();
    let back = Instant::now();
    for device in bob_devices {
        let direct_done = device.wait_for(&direct, 25, WAIT).await;
        let group_done = device.wait_for(&group, 15, WAIT).await;
        assert!(
            direct_done.is_some() && group_done.is_some(),
            "after the bus came back, bob's device shows {:?} / {:?}",
            device.seqs(&direct),
            device.seqs(&group)
        );
    }
    let recovered = back.elapsed();
    println!(
        "{{\"sends_while_away_ms\":{},\"recovered_after_bus_back_ms\":{}}}",
        accepting.as_millis(),
        recovered.as_millis()
    );

    // The bus carries new messages again, both ways.
    send_direct(&alice_client, &bob, "after", 2).await;
    send_direct(&bob_desk, &alice, "reply", 1).await;
    send_group(&alice_client, &group, "after", 2).await;
    assert!(
        eventually(WAIT, || {
            bob_devices.iter().all(|d| d.seqs(&direct).len() == 28)
                && alice_device.seqs(&direct).len() == 28
                && devices.iter().skip(1).all(|d| d.seqs(&group).len() == 17)
        })
        .await
    );
    // Nothing shown twice, nothing out of order, on any device.
    for device in &devices[2..] {
        device.assert_exactly(&direct, 1, 28);
        device.assert_exactly(&group, 1, 17);
    }
    alice_device.assert_exactly(&direct, 1, 28);
    alice_device.assert_exactly(&group, 1, 17);
    carol_device.assert_exactly(&group, 1, 17);
    drop(s1);
    drop(s2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_keeps_flowing_while_the_database_is_away_and_nothing_shows_twice() {
    // A PostgreSQL of its own, to stop and start again.
    let postgres = Postgres::start();
    let database_url = postgres.create_database("sqloutage");
    let redis = Redis::start();
    let mut s1 = UcServer::start("s1", &database_url, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database_url, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    create_users(&admin, &["alice"], PASSWORD, Some("s1")).await;
    create_users(&admin, &["bob", "carol", "dave"], PASSWORD, Some("s2")).await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let alice_client = login(&s1, "alice", PASSWORD, "desk").await;
    let bob_desk = login(&s2, "bob", PASSWORD, "desk").await;
    let bob_phone = login(&s2, "bob", PASSWORD, "phone").await;
    let carol_client = login(&s2, "carol", PASSWORD, "desk").await;
    // dave is signed in with no device online.
    let dave_client = login(&s2, "dave", PASSWORD, "desk").await;
    let group = alice_client
        .create_conversation(CreateConversation {
            name: "team".into(),
            members: vec![bob.clone(), UserId::from("carol")],
        })
        .await
        .expect("group")
        .id;
    let direct = ConversationId::direct(&alice, &bob);
    let bob_devices = [
        Device::start(&bob_desk, "desk").await,
        Device::start(&bob_phone, "phone").await,
    ];
    let carol_device = Device::start(&carol_client, "desk").await;
    // A group made after bob's devices connected, where nobody on bob's server has posted:
    // its members are known there from the conversation's announcement.
    let ops = alice_client
        .create_conversation(CreateConversation {
            name: "ops".into(),
            members: vec![bob.clone()],
        })
        .await
        .expect("group")
        .id;
    // A group whose only member on its server has no device online to list it: its members
    // are learned there from the announcement all the same.
    let night = alice_client
        .create_conversation(CreateConversation {
            name: "night".into(),
            members: vec![UserId::from("dave")],
        })
        .await
        .expect("group")
        .id;

    send_direct(&alice_client, &bob, "before", 2).await;
    send_group(&alice_client, &group, "before", 1).await;
    send_group(&carol_client, &group, "hello", 1).await;
    send_group(&bob_desk, &direct, "hello", 1).await;
    for device in &bob_devices {
        assert!(device.wait_for(&direct, 3, WAIT).await.is_some());
    }

    // The database goes away. Sends are accepted once kept in the server's outbox, and
    // delivered live as provisional (seq 0).
    postgres.stop();
    let first = Instant::now();
    let kept = alice_client
        .send_to_user(&bob, "during 0")
        .await
        .expect("accepted without the database");
    let first_send = first.elapsed();
    assert_eq!(kept.seq, 0, "a provisional message: {kept:?}");
    send_direct(&alice_client, &bob, "during", 9).await;
    send_direct(&bob_desk, &alice, "answer", 5).await;
    send_group(&carol_client, &group, "during", 5).await;
    // A 1:1 conversation begun during the outage is made when the database is back.
    let new_chat = carol_client
        .send_to_user(&alice, "a new conversation")
        .await
        .expect("accepted without the database");
    assert_eq!(new_chat.seq, 0);
    let in_ops = bob_desk
        .send_to_conversation(&ops, "posted to a group during the outage")
        .await
        .expect("accepted without the database");
    assert_eq!(in_ops.seq, 0);
    let in_night = dave_client
        .send_to_conversation(&night, "posted by a member with no device online")
        .await
        .expect("accepted without the database");
    assert_eq!(in_night.seq, 0);
    let provisional = |device: &Device, conversation: &ConversationId| {
        device
            .messages()
            .iter()
            .filter(|m| &m.conversation == conversation && m.seq == 0)
            .count()
    };
    for device in &bob_devices {
        assert!(
            eventually(WAIT, || provisional(device, &direct) == 15).await,
            "bob's devices show the messages of the outage live: {}",
            provisional(device, &direct)
        );
    }
    assert!(eventually(WAIT, || provisional(&carol_device, &group) == 5).await);
    // Reads that need the database say so, at once.
    let asked = Instant::now();
    let refused = bob_desk.history(&direct, None, None, None).await;
    assert!(
        matches!(&refused, Err(e) if e.api().map(|a| a.error) == Some(ErrorCode::ServerUnavailable)),
        "{refused:?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    // alice's server dies with her messages only in its outbox; then everything returns.
    s1.kill9();
    postgres.restart();
    let back = Instant::now();
    s1.restart();
    for device in &bob_devices {
        assert!(
            device.wait_for_stored(&direct, 18, WAIT).await.is_some(),
            "bob's device after the outage: {:?}",
            device.seqs(&direct)
        );
    }
    assert!(
        carol_device
            .wait_for_stored(&group, 7, WAIT)
            .await
            .is_some()
    );
    let recovered = back.elapsed();
    println!(
        "{{\"first_send_ms\":{},\"stored_after_database_back_ms\":{}}}",
        first_send.as_millis(),
        recovered.as_millis()
    );
    // Every device: the stored messages once each, in order, and every provisional one
    // replaced by its stored one (same id).
    for device in bob_devices.iter().chain([&carol_device]) {
        let conversation = if std::ptr::eq(device, &carol_device) {
            &group
        } else {
            &direct
        };
        let count = if conversation == &group { 7 } else { 18 };
        device.assert_stored_exactly(conversation, count);
    }
    let history = bob_desk
        .history(&direct, None, None, Some(100))
        .await
        .expect("history");
    assert_eq!(history.len(), 18, "history complete");
    let begun = carol_client
        .history(&new_chat.conversation, None, None, Some(100))
        .await
        .expect("history of the conversation begun during the outage");
    assert_eq!(begun.len(), 1);
    assert_eq!(begun[0].id, new_chat.id);
    let ops_history = bob_desk
        .history(&ops, None, None, Some(100))
        .await
        .expect("history of ops");
    assert_eq!(ops_history.len(), 1);
    assert_eq!(ops_history[0].id, in_ops.id);
    let night_history = dave_client
        .history(&night, None, None, Some(100))
        .await
        .expect("history of night");
    assert_eq!(night_history.len(), 1);
    assert_eq!(night_history[0].id, in_night.id);
    drop(s2);
}
