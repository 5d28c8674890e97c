//! Infrastructure faults on real processes: a Redis and a PostgreSQL started by the harness,
//! two `ucserver` processes, and listening devices that count every message they show.

use shared::api::CreateConversation;
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
