//! Redis behind Sentinel: two `ucserver` processes on a `redis-sentinel://` URL, a real
//! primary with a replica and three real Sentinels (harness `SentinelCluster`), and the
//! primary killed with SIGKILL. After Sentinel promotes the replica, the servers find it
//! through the Sentinels, notice the new `run_id` and re-publish their own state: presence
//! crosses servers again, online sets and seats match the signed-in users, and chat across
//! servers delivers every message to every device once; a MediaServer on the same URL beats
//! into the new primary.

use shared::api::SetPresence;
use shared::call::CallEvent;
use shared::presence::{Availability, Capability, PresenceView};
use shared::ws::ServerEvent;
use shared::{ConversationId, MediaServerId, UserId, now_ms};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchboard_tests::Postgres;
use switchboard_tests::chat::{create_users, login, send_all};
use switchboard_tests::mediaserver::{MEDIA_SECRET, MediaServer};
use switchboard_tests::sentinel::{SentinelCluster, redis_cli};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use ucclient::peer::{ClientPeer, PeerOptions};
use ucclient::{AdminClient, Client, Connection};

const PASSWORD: &str = "password-1";
/// Generous bound for anything that should take a few seconds on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);
/// Messages sent while the primary is down and before Sentinel promotes the replica.
const DURING: usize = 20;
/// Messages counted per direction after the promotion.
const AFTER: u64 = 50;

async fn connect(client: &Client) -> Connection {
    client
        .connect(None, &[Capability::Chat, Capability::Audio])
        .await
        .expect("websocket")
}

async fn seats_in_use(admin: &AdminClient) -> u32 {
    leases_in_use(admin, "uc-seat").await
}

async fn leases_in_use(admin: &AdminClient, kind: &str) -> u32 {
    admin
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.kind == kind)
        .map(|l| l.in_use)
        .unwrap_or(0)
}

/// The lease keys of a kind in the Redis on `port`, as a set.
fn lease_keys(port: u16, kind: &str) -> BTreeSet<String> {
    redis_cli(port, &["HKEYS", &shared::keys::leases(kind)])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .filter(|key| !key.is_empty())
        .collect()
}

/// A softphone's SDP offer (its peer is kept alive by the caller).
async fn softphone_offer() -> (ClientPeer, String) {
    let mut peer = ClientPeer::new(PeerOptions::default()).await.expect("peer");
    let offer = peer
        .create_offer(Duration::from_secs(10))
        .await
        .expect("offer");
    (peer, offer)
}

/// Sets `note` on `setter` again and again until `watcher` sees it over the bus (the bus
/// may still be reconnecting after the failover); returns how long it took.
async fn presence_crosses(
    setter: &Client,
    watcher: &mut Connection,
    who: &UserId,
    note: &str,
) -> Duration {
    let started = Instant::now();
    for attempt in 0.. {
        assert!(
            started.elapsed() < WAIT,
            "{who}'s presence did not cross servers within {WAIT:?}"
        );
        let note = format!("{note} {attempt}");
        if setter
            .set_presence(SetPresence {
                availability: Some(Availability::Busy),
                note: Some(note.clone()),
                user: None,
            })
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let seen = watcher
            .next_matching(Duration::from_secs(3), |event| {
                matches!(event, ServerEvent::Presence { presence }
                    if &presence.user == who && presence.note.as_deref() == Some(note.as_str()))
            })
            .await;
        if seen.is_ok() {
            return started.elapsed();
        }
    }
    unreachable!()
}

/// Reads `connection` until it has seen `count` distinct messages whose body starts with
/// `prefix` (at most [`WAIT`]); returns every such body seen, repeats included.
async fn receive(connection: &mut Connection, prefix: &str, count: u64) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut bodies = Vec::new();
    let mut distinct = BTreeSet::new();
    while (distinct.len() as u64) < count {
        let event = tokio::time::timeout_at(deadline.into(), connection.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} '{prefix}' messages arrived within {WAIT:?}",
                    distinct.len()
                )
            })
            .expect("socket open")
            .expect("event");
        if let ServerEvent::Message { message, .. } = event
            && message.body.starts_with(prefix)
        {
            distinct.insert(message.body.clone());
            bodies.push(message.body);
        }
    }
    bodies
}

/// Every body of a conversation's history, page by page.
async fn history_bodies(client: &Client, conversation: &ConversationId) -> BTreeSet<String> {
    let mut bodies = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = client
            .history(conversation, None, Some(after), Some(500))
            .await
            .expect("history");
        let Some(last) = page.last() else {
            return bodies;
        };
        after = last.seq;
        bodies.extend(page.into_iter().map(|message| message.body));
    }
}

/// Waits until the UCServers see MediaServer `m1` alive with a heartbeat later than
/// `since_ms` (Redis's clock, the same machine's).
async fn media_beats_after(admin: &AdminClient, since_ms: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let media = admin.media().await.expect("media list");
        if media
            .iter()
            .any(|m| m.id.as_str() == "m1" && m.alive && m.last_seen_ms > since_ms)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat of m1 after {since_ms}: {media:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The primary, replica and Sentinels; UCServers `s1` and `s2` and MediaServer `m1` on them
/// (known and beating); an admin signed in; users homed on `s1` and on `s2`.
struct Lab {
    redis: SentinelCluster,
    s1: UcServer,
    s2: UcServer,
    m1: MediaServer,
    admin: AdminClient,
}

impl Lab {
    async fn start(database: &str, on_s1: &[&str], on_s2: &[&str]) -> Lab {
        let redis = SentinelCluster::start();
        let database_url = Postgres::shared().create_database(database);
        let extra = [("UC_MEDIA_SECRET", MEDIA_SECRET)];
        let s1 = UcServer::start("s1", &database_url, Some(&redis.url()), &extra);
        let s2 = UcServer::start("s2", &database_url, Some(&redis.url()), &extra);
        let m1 = MediaServer::start("m1", &redis.url());
        let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
            .await
            .expect("admin login");
        admin
            .add_media(&MediaServerId::from("m1"), &m1.control_url())
            .await
            .expect("media add");
        media_beats_after(&admin, 0).await;
        create_users(&admin, on_s1, PASSWORD, Some("s1")).await;
        create_users(&admin, on_s2, PASSWORD, Some("s2")).await;
        Lab {
            redis,
            s1,
            s2,
            m1,
            admin,
        }
    }
}

fn is_visible(view: &PresenceView) -> bool {
    view.availability != Availability::Offline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_whole_again_after_sentinel_promotes_the_replica() {
    let Lab {
        mut redis,
        s1,
        s2,
        m1,
        admin,
    } = Lab::start("sentinel_failover", &["alice"], &["bob", "dave"]).await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));

    // alice (s1) and bob (s2) with two devices each, watching each other; dave (s2) is
    // signed in without a device: he holds a seat but is not online.
    let alice_desk = login(&s1, "alice", PASSWORD, "desk").await;
    let alice_phone = login(&s1, "alice", PASSWORD, "phone").await;
    let bob_desk = login(&s1, "bob", PASSWORD, "desk").await;
    let bob_phone = login(&s1, "bob", PASSWORD, "phone").await;
    let _dave = login(&s1, "dave", PASSWORD, "desk").await;
    alice_desk.put_contact(&bob, "").await.unwrap();
    bob_desk.put_contact(&alice, "").await.unwrap();
    let mut alice_desk_conn = connect(&alice_desk).await;
    let mut alice_phone_conn = connect(&alice_phone).await;
    let mut bob_desk_conn = connect(&bob_desk).await;
    let mut bob_phone_conn = connect(&bob_phone).await;
    presence_crosses(&bob_desk, &mut alice_desk_conn, &bob, "before").await;
    assert_eq!(
        seats_in_use(&admin).await,
        3,
        "alice, bob and dave hold seats"
    );

    // A seat s2 holds for no one, as a sign-out whose release was lost leaves it (Redis
    // away, or the release not yet replicated when the primary died); the replica has it.
    let seats_key = shared::keys::leases("uc-seat");
    let primary = redis.primary_port().expect("a primary");
    redis_cli(primary, &["HSET", &seats_key, "ghost", "s2"]).expect("HSET");
    let replica = *redis
        .data_ports()
        .iter()
        .find(|port| **port != primary)
        .expect("a replica");
    let deadline = Instant::now() + WAIT;
    while redis_cli(replica, &["HGET", &seats_key, "ghost"]).as_deref() != Some("s2\n") {
        assert!(Instant::now() < deadline, "the replica never got the seat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seats_in_use(&admin).await, 4);

    // The primary dies; messages sent before the promotion are stored in SQL.
    redis.await_failover_ready();
    let old_primary = redis.kill_primary();
    let killed = Instant::now();
    let conversation = alice_desk
        .send_to_user(&bob, "during-0")
        .await
        .expect("a message is accepted while Redis is away")
        .conversation;
    let mut accepted_during = BTreeSet::from(["during-0".to_string()]);
    for n in 1..DURING {
        let body = format!("during-{n}");
        if alice_desk.send_to_user(&bob, &body).await.is_ok() {
            accepted_during.insert(body);
        }
    }
    let new_primary = redis.await_promotion(old_primary);
    let promoted_ms = now_ms();
    println!(
        "Sentinel promoted port {new_primary} (was {old_primary}) {:?} after the kill; {} of {DURING} messages accepted meanwhile",
        killed.elapsed(),
        accepted_during.len()
    );

    // Presence crosses servers again, both ways.
    let took = presence_crosses(&bob_desk, &mut alice_desk_conn, &bob, "after").await;
    println!(
        "presence crossed servers again {took:?} after the promotion ({:?} after the kill)",
        killed.elapsed()
    );
    presence_crosses(&alice_desk, &mut bob_desk_conn, &alice, "back").await;
    assert!(is_visible(&alice_desk.get_presence(&bob).await.unwrap()));
    assert!(is_visible(&bob_desk.get_presence(&alice).await.unwrap()));

    // Seats and online sets are rebuilt from each server's own truth: the seat held for no
    // one is returned.
    let deadline = Instant::now() + WAIT;
    loop {
        let seats = seats_in_use(&admin).await;
        let users = admin.users().await.expect("users");
        let online: BTreeSet<String> = users
            .iter()
            .filter(|user| user.online)
            .map(|user| user.id.to_string())
            .collect();
        let expected: BTreeSet<String> = ["alice", "bob"].map(String::from).into();
        if seats == 3 && online == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the failover: {seats} seats in use (3 signed in), online {online:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The MediaServer found the new primary too: its heartbeats land there.
    media_beats_after(&admin, promoted_ms).await;

    // Every message sent during the failover is in the history.
    let history = history_bodies(&bob_desk, &conversation).await;
    let missing: Vec<&String> = accepted_during.difference(&history).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");

    // Chat across servers delivers every message to every device, once.
    send_all(&mut alice_phone_conn, &bob, AFTER, 10, |n| {
        format!("a-to-b-{n}")
    })
    .await;
    for (device, connection) in [
        ("bob's desk", &mut bob_desk_conn),
        ("bob's phone", &mut bob_phone_conn),
        ("alice's desk", &mut alice_desk_conn),
    ] {
        let bodies = receive(connection, "a-to-b-", AFTER).await;
        assert_eq!(bodies.len() as u64, AFTER, "{device}: each message once");
    }
    send_all(&mut bob_phone_conn, &alice, AFTER, 10, |n| {
        format!("b-to-a-{n}")
    })
    .await;
    for (device, connection) in [
        ("alice's desk", &mut alice_desk_conn),
        ("alice's phone", &mut alice_phone_conn),
        ("bob's desk", &mut bob_desk_conn),
    ] {
        let bodies = receive(connection, "b-to-a-", AFTER).await;
        assert_eq!(bodies.len() as u64, AFTER, "{device}: each message once");
    }
    println!(
        "after the failover: {AFTER} messages each way, delivered {AFTER} times to each of three devices"
    );
    assert_eq!(seats_in_use(&admin).await, 3);
    drop((s1, s2, m1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_leases_are_those_of_the_calls_after_sentinel_promotes_the_replica() {
    let Lab {
        mut redis,
        s1,
        s2,
        m1,
        admin,
    } = Lab::start("sentinel_softphones", &["alice"], &["bob"]).await;
    let bob = UserId::from("bob");
    let mut alice = connect(&login(&s1, "alice", PASSWORD, "desk").await).await;
    let mut bob_desk = connect(&login(&s1, "bob", PASSWORD, "desk").await).await;

    // alice (s1) calls bob (s2), who answers: s1 owns the call and both its leases.
    let (_alice_peer, offer) = softphone_offer().await;
    let call = alice.call_place(&bob, offer, false).await.expect("placed");
    bob_desk
        .next_matching(WAIT, |e| {
            matches!(e, ServerEvent::Call(CallEvent::CallIncoming { call: c, .. }) if *c == call)
        })
        .await
        .expect("bob's phone rings");
    let (_bob_peer, offer) = softphone_offer().await;
    bob_desk.call_answer(&call, offer).await.expect("answered");
    let in_call: BTreeSet<String> = [format!("{call}/alice"), format!("{call}/bob")].into();
    let primary = redis.primary_port().expect("a primary");
    assert_eq!(lease_keys(primary, "softphone"), in_call);

    // The store as the primary dies with writes the replica never got: the release of an
    // ended call's lease (still held on the replica) and the acquire of bob's lease (missing
    // there). Played on the primary, replicated, then the primary dies.
    let key = shared::keys::leases("softphone");
    let ghost = "s1~ended/alice".to_string();
    redis_cli(primary, &["HSET", &key, &ghost, "s1"]).expect("HSET");
    redis_cli(primary, &["HDEL", &key, &format!("{call}/bob")]).expect("HDEL");
    let replica = *redis
        .data_ports()
        .iter()
        .find(|port| **port != primary)
        .expect("a replica");
    let as_replicated: BTreeSet<String> = [format!("{call}/alice"), ghost.clone()].into();
    let deadline = Instant::now() + WAIT;
    while lease_keys(replica, "softphone") != as_replicated {
        assert!(
            Instant::now() < deadline,
            "the replica never got the leases"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.await_failover_ready();
    let old_primary = redis.kill_primary();
    let killed = Instant::now();
    let new_primary = redis.await_promotion(old_primary);
    let promoted = killed.elapsed();

    // Each server re-asserts its own truth: the call's two leases, nothing else.
    let deadline = Instant::now() + WAIT;
    loop {
        let held = lease_keys(new_primary, "softphone");
        if held == in_call {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "softphone leases after the failover: {held:?}, the call holds {in_call:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "promoted {promoted:?} after the kill; softphone leases equal the call's {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(leases_in_use(&admin, "softphone").await, 2);

    // The call ends; its leases return.
    alice.call_hangup(&call).await.expect("hung up");
    let deadline = Instant::now() + WAIT;
    while leases_in_use(&admin, "softphone").await != 0 {
        assert!(
            Instant::now() < deadline,
            "softphone leases stay after the call: {:?}",
            lease_keys(new_primary, "softphone")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((s1, s2, m1));
}
