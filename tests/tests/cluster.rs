//! The cluster conformance suite: the same checks against the in-process cluster, against
//! Redis (a real `redis-server` started by the harness) and against a Redis primary found
//! through three real Sentinels. Two handles on one cluster stand for two UCServers.

use shared::bus::{BusBody, BusMessage, ServerHeartbeat};
use shared::presence::{Availability, PresenceSnapshot};
use shared::{ServerId, UserId};
use std::sync::Arc;
use std::time::Duration;
use switchboard_tests::Redis;
use switchboard_tests::sentinel::SentinelCluster;
use ucserver::cluster::{BusInput, Cluster, LocalCluster, LocalHub, OwnerClaim, RedisCluster};
use ucserver::core::license::LeaseOutcome;

/// Two handles on one cluster, as two servers would hold.
type Pair = (Arc<dyn Cluster>, Arc<dyn Cluster>);

fn local_pair() -> Pair {
    let hub = LocalHub::new();
    (
        Arc::new(LocalCluster::new(hub.clone())),
        Arc::new(LocalCluster::new(hub)),
    )
}

async fn redis_pair(redis: &Redis) -> Pair {
    let a = RedisCluster::connect(&redis.url())
        .await
        .expect("connect a");
    let b = RedisCluster::connect(&redis.url())
        .await
        .expect("connect b");
    (Arc::new(a), Arc::new(b))
}

/// The same over Redis Sentinel: both handles find the primary through the Sentinels.
async fn sentinel_pair(sentinel: &SentinelCluster) -> Pair {
    let a = RedisCluster::connect(&sentinel.url())
        .await
        .expect("connect a through Sentinel");
    let b = RedisCluster::connect(&sentinel.url())
        .await
        .expect("connect b through Sentinel");
    (Arc::new(a), Arc::new(b))
}

async fn next_message(rx: &mut tokio::sync::mpsc::Receiver<BusInput>) -> BusMessage {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(BusInput::Message(message))) => return *message,
            Ok(Some(BusInput::Resync | BusInput::Media(_))) => continue,
            Ok(None) => panic!("bus closed"),
            Err(_) => panic!("no bus message within 10 s"),
        }
    }
}

async fn bus_delivers_to_the_addressed_server_and_broadcasts((a, b): Pair) {
    let s1 = ServerId::from("s1");
    let s2 = ServerId::from("s2");
    let mut rx1 = a.subscribe(&s1).await.unwrap();
    let mut rx2 = b.subscribe(&s2).await.unwrap();
    assert!(
        !a.ensure_subscribed(&s1).await.unwrap(),
        "a live subscription needs no repair"
    );
    let direct = BusMessage::new(s1.clone(), BusBody::LicensesChanged);
    a.publish(&s2, &direct).await.unwrap();
    assert_eq!(next_message(&mut rx2).await, direct);
    let everyone = BusMessage::new(
        s2.clone(),
        BusBody::RelationsChanged {
            users: vec![UserId::from("x")],
        },
    );
    b.broadcast(&everyone).await.unwrap();
    assert_eq!(next_message(&mut rx1).await, everyone);
    assert_eq!(next_message(&mut rx2).await, everyone);
    // s1 got nothing addressed to s2.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx1.recv())
            .await
            .is_err()
    );
}

async fn presence_keeps_the_newest_version((a, b): Pair) {
    let alice = UserId::from("alice");
    let mut snapshot = PresenceSnapshot::offline(alice.clone());
    snapshot.availability = Availability::Busy;
    snapshot.version = 5;
    a.put_presence(&snapshot).await.unwrap();
    let mut older = snapshot.clone();
    older.version = 4;
    older.availability = Availability::Away;
    b.put_presence(&older).await.unwrap();
    let got = b
        .get_presence(&[alice.clone(), UserId::from("nobody")])
        .await
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().availability, Availability::Busy);
    assert_eq!(got[0].as_ref().unwrap().version, 5);
    assert!(got[1].is_none());
    assert!(a.get_presence(&[]).await.unwrap().is_empty());
}

async fn online_sets_per_server((a, b): Pair) {
    let s1 = ServerId::from("s1");
    a.set_online(&s1, &UserId::from("bob"), true).await.unwrap();
    a.set_online(&s1, &UserId::from("amy"), true).await.unwrap();
    a.set_online(&s1, &UserId::from("bob"), false)
        .await
        .unwrap();
    assert_eq!(
        b.online_users(&s1).await.unwrap(),
        vec![UserId::from("amy")]
    );
    b.clear_online(&s1).await.unwrap();
    assert!(a.online_users(&s1).await.unwrap().is_empty());
}

async fn leases_are_shared_and_bounded((a, b): Pair) {
    let s1 = ServerId::from("s1");
    let s2 = ServerId::from("s2");
    assert_eq!(
        a.lease_acquire("uc-seat", "alice", &s1, Some(2))
            .await
            .unwrap(),
        LeaseOutcome::Granted
    );
    assert_eq!(
        b.lease_acquire("uc-seat", "alice", &s1, Some(2))
            .await
            .unwrap(),
        LeaseOutcome::AlreadyHeld
    );
    assert_eq!(
        b.lease_acquire("uc-seat", "bob", &s2, Some(2))
            .await
            .unwrap(),
        LeaseOutcome::Granted
    );
    assert_eq!(
        a.lease_acquire("uc-seat", "carol", &s1, Some(2))
            .await
            .unwrap(),
        LeaseOutcome::Exhausted { capacity: 2 }
    );
    assert_eq!(
        a.lease_acquire("softphone", "call-1", &s2, None)
            .await
            .unwrap(),
        LeaseOutcome::Granted
    );
    assert_eq!(a.lease_count("uc-seat").await.unwrap(), 2);
    assert_eq!(b.leases_held("uc-seat", &s1).await.unwrap(), vec!["alice"]);
    assert_eq!(a.leases_held("uc-seat", &s2).await.unwrap(), vec!["bob"]);
    assert_eq!(
        a.leases_held("softphone", &s2).await.unwrap(),
        vec!["call-1"]
    );
    assert!(a.leases_held("softphone", &s1).await.unwrap().is_empty());
    assert!(a.leases_held("no-such-kind", &s1).await.unwrap().is_empty());
    assert!(a.lease_release("uc-seat", "alice").await.unwrap());
    assert!(!b.lease_release("uc-seat", "alice").await.unwrap());
    assert_eq!(a.lease_release_holder(&s2).await.unwrap(), 2);
    assert_eq!(b.lease_count("uc-seat").await.unwrap(), 0);
    assert_eq!(b.lease_count("softphone").await.unwrap(), 0);
}

async fn concurrent_leases_never_exceed_capacity((a, b): Pair) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let cluster = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            cluster
                .lease_acquire("race", &format!("k{i}"), &ServerId::from("s1"), Some(7))
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        if task.await.unwrap() == LeaseOutcome::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 7);
    assert_eq!(a.lease_count("race").await.unwrap(), 7);
}

async fn heartbeats_and_locks((a, b): Pair) {
    let beat = ServerHeartbeat {
        id: ServerId::from("s1"),
        url: "http://localhost:1".into(),
        incarnation: "x".into(),
        sessions: 3,
        devices: 4,
        at_ms: 0,
        group: Some("site-a".into()),
        version: "9.8.7".into(),
        calls: 2,
        ha_protocol: shared::bus::HA_PROTOCOL,
        stats: Default::default(),
    };
    assert!(
        a.heartbeat(&beat, 10_000).await.unwrap(),
        "a first beat is a lapse"
    );
    assert!(!a.heartbeat(&beat, 10_000).await.unwrap());
    let seen = b.servers().await.unwrap();
    assert_eq!(seen[0].heartbeat.group.as_deref(), Some("site-a"));
    let since = seen[0].alive_since_ms;
    assert!(since > 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].heartbeat.sessions, 3);
    assert_eq!(
        (seen[0].heartbeat.version.as_str(), seen[0].heartbeat.calls),
        ("9.8.7", 2)
    );
    assert!(seen[0].age_ms < 5_000, "age {}", seen[0].age_ms);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.servers().await.unwrap()[0].age_ms >= 250);
    // Silent for longer than its window: the next beat is a lapse and starts a new since.
    assert!(a.heartbeat(&beat, 100).await.unwrap());
    assert!(b.servers().await.unwrap()[0].alive_since_ms >= since + 250);
    b.forget_server(&ServerId::from("s1")).await.unwrap();
    assert!(a.servers().await.unwrap().is_empty());

    assert!(a.try_lock("cleanup:s9", "s1", 10_000).await.unwrap());
    assert!(!b.try_lock("cleanup:s9", "s2", 10_000).await.unwrap());
    assert!(
        a.try_lock("cleanup:s9", "s1", 10_000).await.unwrap(),
        "the holder may renew"
    );
    assert_eq!(
        b.lock_holder("cleanup:s9").await.unwrap().as_deref(),
        Some("s1")
    );
    assert_eq!(a.lock_holder("never-taken").await.unwrap(), None);
    assert!(b.try_lock("other", "s2", 100).await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(a.lock_holder("other").await.unwrap(), None, "expired");
    assert!(
        a.try_lock("other", "s1", 100).await.unwrap(),
        "an expired lock can be taken"
    );
    assert_eq!(b.lock_holder("other").await.unwrap().as_deref(), Some("s1"));
}

/// Ownership records: one live owner at a time, taken from a dead one with a higher epoch,
/// handed over by release.
async fn ownership_is_claimed_fenced_and_released((a, b): Pair) {
    let beat = |id: &str| ServerHeartbeat {
        id: ServerId::from(id),
        url: format!("http://{id}"),
        incarnation: "x".into(),
        sessions: 0,
        devices: 0,
        at_ms: 0,
        group: None,
        version: String::new(),
        calls: 0,
        ha_protocol: shared::bus::HA_PROTOCOL,
        stats: Default::default(),
    };
    let (s1, s2) = (ServerId::from("s1"), ServerId::from("s2"));
    let bob = UserId::from("bob");
    a.heartbeat(&beat("s1"), 10_000).await.unwrap();
    b.heartbeat(&beat("s2"), 10_000).await.unwrap();
    assert_eq!(
        a.owners(std::slice::from_ref(&bob)).await.unwrap(),
        vec![None]
    );
    let first = a.claim_owner(&bob, &s1, "x", 10_000).await.unwrap();
    assert_eq!(
        first,
        OwnerClaim::Granted {
            epoch: 1,
            moved: false
        }
    );
    assert_eq!(
        a.claim_owner(&bob, &s1, "x", 10_000).await.unwrap(),
        OwnerClaim::Granted {
            epoch: 1,
            moved: false
        },
        "claiming again is idempotent"
    );
    assert_eq!(
        b.claim_owner(&bob, &s2, "x", 10_000).await.unwrap(),
        OwnerClaim::Held { by: s1.clone() },
        "a live owner keeps the user"
    );
    // s1 stops beating: after its window, s2 takes bob with a higher epoch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.heartbeat(&beat("s2"), 10_000).await.unwrap();
    assert_eq!(
        b.claim_owner(&bob, &s2, "x", 200).await.unwrap(),
        OwnerClaim::Granted {
            epoch: 2,
            moved: true
        }
    );
    assert_eq!(
        a.owners(std::slice::from_ref(&bob)).await.unwrap(),
        vec![Some(s2.clone())]
    );
    // The old owner wakes up: it cannot take bob back while s2 lives, and its release of a
    // user it no longer owns changes nothing.
    a.heartbeat(&beat("s1"), 10_000).await.unwrap();
    assert_eq!(
        a.claim_owner(&bob, &s1, "x", 10_000).await.unwrap(),
        OwnerClaim::Held { by: s2.clone() }
    );
    a.release_owner(&bob, &s1).await.unwrap();
    assert_eq!(
        a.owners(std::slice::from_ref(&bob)).await.unwrap(),
        vec![Some(s2.clone())]
    );
    // s2 hands bob over: s1 may claim at once, as a move.
    b.release_owner(&bob, &s2).await.unwrap();
    assert_eq!(
        a.owners(std::slice::from_ref(&bob)).await.unwrap(),
        vec![None]
    );
    assert_eq!(
        a.claim_owner(&bob, &s1, "x", 10_000).await.unwrap(),
        OwnerClaim::Granted {
            epoch: 3,
            moved: true
        }
    );
    // s1 restarts (another incarnation beats for it): its earlier run's claim is dead, so
    // the new run takes bob as a move although s1 is alive.
    let mut restarted = beat("s1");
    restarted.incarnation = "y".into();
    a.heartbeat(&restarted, 10_000).await.unwrap();
    assert_eq!(
        b.claim_owner(&bob, &s2, "x", 10_000).await.unwrap(),
        OwnerClaim::Granted {
            epoch: 4,
            moved: true
        },
        "a server's earlier run holds nobody"
    );
    // A server found killed is declared dead before its window ends: its users may be
    // claimed at once, and should it beat again it learns that it lapsed. Declaring an
    // earlier run dead changes nothing.
    assert!(!a.declare_dead(&s1, "x", 10_000).await.unwrap());
    assert!(a.declare_dead(&s2, "x", 10_000).await.unwrap());
    let s2_seen = a.servers().await.unwrap();
    let s2_seen = s2_seen.iter().find(|s| s.heartbeat.id == s2).unwrap();
    assert!(
        s2_seen.age_ms > 10_000,
        "s2 counts as dead: {}",
        s2_seen.age_ms
    );
    assert_eq!(
        a.claim_owner(&bob, &s1, "y", 10_000).await.unwrap(),
        OwnerClaim::Granted {
            epoch: 5,
            moved: true
        },
        "a server declared dead holds nobody"
    );
    assert!(
        b.heartbeat(&beat("s2"), 10_000).await.unwrap(),
        "a server declared dead lapsed"
    );
    // The high-availability settings are shared.
    a.ha_set("away:s3", Some("1")).await.unwrap();
    assert_eq!(
        b.ha_all().await.unwrap(),
        vec![("away:s3".to_string(), "1".to_string())]
    );
    b.ha_set("away:s3", None).await.unwrap();
    assert!(a.ha_all().await.unwrap().is_empty());
}

async fn login_failures_are_shared_counted_and_expire((a, b): Pair) {
    let keys = vec!["user:x".to_string(), "addr:192.0.2.1".to_string()];
    assert_eq!(a.login_failures(&keys).await.unwrap(), vec![None, None]);
    assert!(a.login_failures(&[]).await.unwrap().is_empty());
    // Two servers count into the same key.
    assert_eq!(a.login_failed("user:x", 60_000).await.unwrap(), 1);
    assert_eq!(b.login_failed("user:x", 60_000).await.unwrap(), 2);
    assert_eq!(a.login_failed("user:x", 60_000).await.unwrap(), 3);
    let seen = b.login_failures(&keys).await.unwrap();
    let user = seen[0].expect("counted");
    assert_eq!(user.count, 3);
    assert!((0..5_000).contains(&user.age_ms), "{user:?}");
    assert_eq!(seen[1], None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.login_failures(&keys).await.unwrap()[0].unwrap().age_ms >= 150);
    // A success forgets the key for everyone.
    b.login_forget("user:x").await.unwrap();
    assert_eq!(a.login_failures(&keys).await.unwrap()[0], None);
    // A key is forgotten after its quiet period (the bound on throttle state).
    assert_eq!(a.login_failed("addr:192.0.2.1", 150).await.unwrap(), 1);
    assert_eq!(b.login_failures(&keys).await.unwrap()[1].unwrap().count, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.login_failures(&keys).await.unwrap()[1], None);
    assert_eq!(
        b.login_failed("addr:192.0.2.1", 150).await.unwrap(),
        1,
        "an expired count starts again"
    );
}

async fn concurrent_login_failures_are_all_counted((a, b): Pair) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let cluster = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            cluster.login_failed("addr:race", 60_000).await.unwrap()
        }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<u32>>(),
        "each count given once"
    );
}

/// The in-process map of a single node holds at most its cap of keys.
#[tokio::test]
async fn local_login_keys_are_capped() {
    let hub = LocalHub::with_login_keys_cap(100);
    let cluster = LocalCluster::new(hub.clone());
    cluster.login_failed("user:victim", 60_000).await.unwrap();
    for i in 0..1_000 {
        cluster
            .login_failed(&format!("addr:10.0.{}.{}", i / 256, i % 256), 60_000)
            .await
            .unwrap();
        assert!(hub.login_keys() <= 100, "{} keys", hub.login_keys());
    }
    // The newest keys are kept, the oldest went first.
    let newest = cluster
        .login_failures(&["addr:10.0.3.231".to_string()])
        .await
        .unwrap();
    assert_eq!(newest[0].unwrap().count, 1);
    assert_eq!(ucserver::cluster::LOGIN_KEYS_CAP, 100_000);
}

/// The console's history: each server's samples in order, the newest `keep`, read by anyone,
/// and gone after their time to live.
async fn samples_are_kept_in_order_and_bounded((a, b): Pair) {
    use shared::console::StatsSample;
    let (s1, s2, s3) = (
        ServerId::from("s1"),
        ServerId::from("s2"),
        ServerId::from("s3"),
    );
    let sample = |at_ms: i64, devices: u64| StatsSample {
        at_ms,
        devices,
        ..StatsSample::default()
    };
    for n in 0..5 {
        a.push_sample(&s1, &sample(n, n as u64), 3, 60_000)
            .await
            .unwrap();
    }
    b.push_sample(&s2, &sample(7, 9), 3, 300).await.unwrap();
    let read = b
        .samples(&[s1.clone(), s2.clone(), s3.clone()])
        .await
        .unwrap();
    let at: Vec<Vec<i64>> = read
        .iter()
        .map(|history| history.iter().map(|s| s.at_ms).collect())
        .collect();
    assert_eq!(at, vec![vec![2, 3, 4], vec![7], vec![]]);
    assert_eq!(read[1][0].devices, 9);
    // s2's history expires with its time to live.
    let started = std::time::Instant::now();
    while !a.samples(std::slice::from_ref(&s2)).await.unwrap()[0].is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(a.samples(&[s1]).await.unwrap()[0].len(), 3);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::local_pair()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = switchboard_tests::Redis::start();
                    super::$name(super::redis_pair(&redis).await).await;
                }
            )*
        }
        mod sentinel {
            $(
                #[tokio::test]
                async fn $name() {
                    let sentinel = switchboard_tests::sentinel::SentinelCluster::start();
                    super::$name(super::sentinel_pair(&sentinel).await).await;
                }
            )*
        }
    };
}

suite!(
    bus_delivers_to_the_addressed_server_and_broadcasts,
    presence_keeps_the_newest_version,
    online_sets_per_server,
    leases_are_shared_and_bounded,
    concurrent_leases_never_exceed_capacity,
    heartbeats_and_locks,
    ownership_is_claimed_fenced_and_released,
    login_failures_are_shared_counted_and_expire,
    concurrent_login_failures_are_all_counted,
    samples_are_kept_in_order_and_bounded,
);
