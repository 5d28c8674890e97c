//! High availability on real processes: three UCServers on a Redis and a PostgreSQL started by
//! the harness, listening devices that count every message they show, senders that keep
//! sending while a server dies (kill -9) or freezes (SIGSTOP/SIGCONT) and comes back.

use shared::api::{CreateConversation, SendMessage, ServerAction, SetPresence, UpdateUser};
use shared::presence::Availability;
use shared::{ConversationId, ServerId, UserId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_tests::chat::{create_users, login};
use switchboard_tests::device::{Device, eventually};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, new_client_id};

const PASSWORD: &str = "password-1";
/// Generous bound for a wait on a loaded machine; the time it took is printed.
const WAIT: Duration = Duration::from_secs(30);
/// Short failure detection and fallback, so that a test sees both.
const SETTINGS: &[(&str, &str)] = &[
    ("UC_HEARTBEAT_MS", "500"),
    ("UC_DEAD_AFTER_MS", "2000"),
    ("UC_FALLBACK_DELAY_MS", "3000"),
];

/// What one sender's messages were: the bodies acknowledged, in the order sent.
type Sent = Arc<Mutex<Vec<String>>>;

/// Sends `count` messages, one every `every`, each retried with the same client id until it
/// is acknowledged (a send in flight when its server dies may have been stored or not: the
/// client id makes the retry find the first copy).
fn sender(
    client: Client,
    to: Option<UserId>,
    conversation: Option<ConversationId>,
    label: &'static str,
    count: usize,
    every: Duration,
) -> (Sent, tokio::task::JoinHandle<()>) {
    let sent: Sent = Arc::default();
    let record = sent.clone();
    let task = tokio::spawn(async move {
        for n in 0..count {
            let body = format!("{label} {n}");
            let request = SendMessage {
                to: to.clone(),
                conversation: conversation.clone(),
                body: body.clone(),
                client_id: Some(new_client_id()),
            };
            let started = Instant::now();
            loop {
                match client.send_message(request.clone()).await {
                    Ok(_) => break,
                    Err(error) => {
                        assert!(
                            started.elapsed() < WAIT,
                            "{body} not accepted within {WAIT:?}: {error}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            record.lock().unwrap().push(body);
            tokio::time::sleep(every).await;
        }
    });
    (sent, task)
}

/// Messages flowing while a fault happens: alice to bob, bob (from `bob`, one of his
/// devices' clients) to alice and, with `group`, carol to the group; `count` each, one every
/// `every`, each retried until it is accepted.
struct Traffic {
    senders: Vec<(Sent, tokio::task::JoinHandle<()>)>,
}

/// What each sender of a [`Traffic`] had accepted, in order (`in_group` empty without the
/// group).
struct Delivered {
    to_bob: Vec<String>,
    from_bob: Vec<String>,
    in_group: Vec<String>,
}

impl Traffic {
    fn start(lab: &Lab, bob: &Client, count: usize, every: Duration, group: bool) -> Traffic {
        let (alice_id, bob_id) = (UserId::from("alice"), UserId::from("bob"));
        let mut senders = vec![
            sender(lab.alice.clone(), Some(bob_id), None, "alice", count, every),
            sender(bob.clone(), Some(alice_id), None, "bob", count, every),
        ];
        if group {
            let to = Some(lab.group.clone());
            senders.push(sender(lab.carol.clone(), None, to, "carol", count, every));
        }
        Traffic { senders }
    }

    /// Waits until every message was accepted.
    async fn finish(self) -> Delivered {
        let mut accepted = Vec::new();
        for (sent, task) in self.senders {
            task.await.expect("sender");
            accepted.push(sent.lock().unwrap().clone());
        }
        let mut accepted = accepted.into_iter();
        Delivered {
            to_bob: accepted.next().unwrap_or_default(),
            from_bob: accepted.next().unwrap_or_default(),
            in_group: accepted.next().unwrap_or_default(),
        }
    }
}

/// Waits until every device stored every group message accepted, then asserts each shows
/// them once, in order, and nothing else there.
async fn assert_group_complete(devices: &[&Device], group: &ConversationId, sent: &[String]) {
    for device in devices {
        assert!(
            device
                .wait_for_stored(group, sent.len(), WAIT)
                .await
                .is_some(),
            "{} shows all group messages",
            device.name()
        );
        assert_shown_once(device, group, sent);
    }
}

/// Asserts that `device` showed every sent body of `conversation` once, stored, in the
/// order sent, and nothing else there.
fn assert_shown_once(device: &Device, conversation: &ConversationId, sent: &[String]) {
    let shown: Vec<String> = device
        .messages()
        .into_iter()
        .filter(|m| &m.conversation == conversation && m.seq > 0)
        .map(|m| m.body)
        .collect();
    assert_eq!(
        shown,
        sent,
        "device {} in {conversation}: shown {} of {} sent",
        device.name(),
        shown.len(),
        sent.len()
    );
    let seqs: Vec<u64> = device
        .seqs(conversation)
        .into_iter()
        .filter(|s| *s > 0)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "device {} shows {conversation} in order: {seqs:?}",
        device.name()
    );
}

/// Waits until each device shows every direct message of both senders, then asserts it
/// showed them once, stored, in sequence order, each sender's in the order sent, and nothing
/// else in that conversation.
async fn assert_both_ways(
    devices: &[&Device],
    direct: &ConversationId,
    to_bob: &[String],
    from_bob: &[String],
) {
    let total = to_bob.len() + from_bob.len();
    for device in devices {
        assert!(
            device.wait_for_stored(direct, total, WAIT).await.is_some(),
            "{} shows all {total} direct messages",
            device.name()
        );
        device.assert_exactly(direct, 1, total as u64);
        let shown: Vec<String> = device
            .messages()
            .into_iter()
            .filter(|m| &m.conversation == direct && m.seq > 0)
            .map(|m| m.body)
            .collect();
        let of = |label: &str| -> Vec<String> {
            shown
                .iter()
                .filter(|b| b.starts_with(label))
                .cloned()
                .collect()
        };
        assert_eq!(of("alice "), to_bob, "{}: alice's messages", device.name());
        assert_eq!(of("bob "), from_bob, "{}: bob's messages", device.name());
        assert_eq!(shown.len(), total, "{}: nothing else", device.name());
    }
}

async fn presence_of(watcher: &Client, user: &UserId) -> Availability {
    watcher
        .get_presence(user)
        .await
        .map(|p| p.availability)
        .unwrap_or(Availability::Offline)
}

async fn seats_in_use(admin: &AdminClient) -> u32 {
    admin
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.kind == "uc-seat")
        .map_or(0, |l| l.in_use)
}

struct Lab {
    redis: Redis,
    servers: Vec<UcServer>,
    admin: AdminClient,
    alice: Client,
    carol: Client,
    bob_desk: Client,
    bob_phone: Client,
    group: ConversationId,
}

/// alice on s1, bob (two devices) on s2, carol on s3, all in one group.
async fn lab(name: &str) -> Lab {
    let redis = Redis::start();
    let database_url = Postgres::shared().create_database(name);
    let servers: Vec<UcServer> = ["s1", "s2", "s3"]
        .iter()
        .map(|id| UcServer::start(id, &database_url, Some(&redis.url()), SETTINGS))
        .collect();
    let admin = AdminClient::login(&servers[0].url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    create_users(&admin, &["alice"], PASSWORD, Some("s1")).await;
    create_users(&admin, &["bob"], PASSWORD, Some("s2")).await;
    create_users(&admin, &["carol"], PASSWORD, Some("s3")).await;
    // Every server must know its peers before anything fails.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alice = login(&servers[0], "alice", PASSWORD, "desk").await;
    let carol = login(&servers[2], "carol", PASSWORD, "desk").await;
    // bob signs in at s1, which sends him on to his home s2.
    let bob_desk = login(&servers[0], "bob", PASSWORD, "desk").await;
    let bob_phone = login(&servers[1], "bob", PASSWORD, "phone").await;
    assert_eq!(bob_desk.server().as_str(), "s2");
    assert!(
        bob_desk.known_servers().len() >= 3,
        "the login names the cluster's servers: {:?}",
        bob_desk.known_servers()
    );
    let group = alice
        .create_conversation(CreateConversation {
            name: "team".into(),
            members: vec![UserId::from("bob"), UserId::from("carol")],
        })
        .await
        .expect("group")
        .id;
    Lab {
        redis,
        servers,
        admin,
        alice,
        carol,
        bob_desk,
        bob_phone,
        group,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_users_fail_over_and_fall_back_without_signing_in_or_losing_anything() {
    let mut lab = lab("failover").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let carol_device = Device::start(&lab.carol, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    assert_eq!(bob_desk.server(), Some(ServerId::from("s2")));
    assert_eq!(seats_in_use(&lab.admin).await, 3);

    // Messages both ways and in the group, before, during and after the failover.
    let every = Duration::from_millis(100);
    let traffic = Traffic::start(&lab, &lab.bob_desk, 60, every, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let killed = Instant::now();
    lab.servers[1].kill9();
    let mut offline_seen = Duration::ZERO;
    let served_again = loop {
        let on_backup = [&bob_desk, &bob_phone]
            .iter()
            .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() != "s2"));
        if presence_of(&lab.alice, &bob).await == Availability::Offline {
            offline_seen += Duration::from_millis(100);
        }
        if on_backup {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < WAIT, "bob's devices fail over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "bob's devices served by {:?} {served_again:?} after the kill; alice saw him offline for about {offline_seen:?}",
        bob_desk.server()
    );
    assert!(
        eventually(WAIT, || bob_desk.server() == bob_phone.server()).await,
        "both devices of bob are on one backup"
    );
    let online_again = Instant::now();
    while presence_of(&lab.alice, &bob).await == Availability::Offline {
        assert!(
            online_again.elapsed() < WAIT,
            "bob is online again for alice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seats_in_use(&lab.admin).await,
        3,
        "bob's seat moved with him, counted once"
    );

    // s2 comes back; after the fallback delay bob moves home without signing in.
    lab.servers[1].restart();
    let back = Instant::now();
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() == "s2"))
        })
        .await,
        "bob falls back to s2"
    );
    println!("bob back on s2 {:?} after it restarted", back.elapsed());

    let Delivered {
        to_bob,
        from_bob,
        in_group,
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_group_complete(
        &[&alice_device, &carol_device, &bob_desk, &bob_phone],
        &lab.group,
        &in_group,
    )
    .await;
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");
    println!(
        "sent {} + {} direct, {} in the group; every device showed each once",
        to_bob.len(),
        from_bob.len(),
        in_group.len()
    );
}

/// Polls until both of bob's devices are connected to a server other than `left`, counting
/// how long alice saw bob offline; returns how long it took and that time.
async fn until_bob_left(
    lab: &Lab,
    devices: [&Device; 2],
    left: &str,
    since: Instant,
) -> (Duration, Duration) {
    let bob = UserId::from("bob");
    let mut offline_seen = Duration::ZERO;
    loop {
        let away = devices
            .iter()
            .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() != left));
        if presence_of(&lab.alice, &bob).await == Availability::Offline {
            offline_seen += Duration::from_millis(50);
        }
        if away {
            return (since.elapsed(), offline_seen);
        }
        assert!(since.elapsed() < WAIT, "bob's devices leave {left}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_hands_its_users_over_at_once_and_takes_them_back_when_it_returns() {
    let mut lab = lab("graceful_stop").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    let every = Duration::from_millis(100);
    let traffic = Traffic::start(&lab, &lab.bob_phone, 50, every, false);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // SIGTERM: s2 tells bob's devices where to go before it exits; nobody waits out the
    // failure detector's window (2 s here) and alice never sees bob offline.
    let stopped = Instant::now();
    lab.servers[1].terminate();
    let (moved_in, offline_seen) =
        until_bob_left(&lab, [&bob_desk, &bob_phone], "s2", stopped).await;
    println!(
        "bob's devices on {:?} {moved_in:?} after s2 was told to stop (its exit included); alice saw him offline for about {offline_seen:?}",
        bob_desk.server()
    );
    assert!(
        bob_desk.moves() >= 1 && bob_phone.moves() >= 1,
        "the stopping server sent each device on (reconnect), it did not just say goodbye"
    );
    assert_eq!(offline_seen, Duration::ZERO, "bob stayed online for alice");
    assert_eq!(
        seats_in_use(&lab.admin).await,
        3,
        "bob's seat moved with him"
    );

    lab.servers[1].restart();
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() == "s2"))
        })
        .await,
        "bob returns to s2 after the fallback delay"
    );
    let Delivered {
        to_bob, from_bob, ..
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_killed_at_once_leave_their_users_with_the_survivor_and_lose_nothing() {
    let mut lab = lab("two_dead").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let carol_device = Device::start(&lab.carol, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    let every = Duration::from_millis(100);
    let traffic = Traffic::start(&lab, &lab.bob_desk, 60, every, true);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = Instant::now();
    lab.servers[1].kill9();
    lab.servers[2].kill9();
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone, &carol_device]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() == "s1"))
        })
        .await,
        "bob's and carol's devices are all on the survivor s1"
    );
    println!(
        "two servers killed at once: every device on s1 after {:?}",
        killed.elapsed()
    );
    let Delivered {
        to_bob,
        from_bob,
        in_group,
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_group_complete(
        &[&alice_device, &carol_device, &bob_desk, &bob_phone],
        &lab.group,
        &in_group,
    )
    .await;
    assert_eq!(seats_in_use(&lab.admin).await, 3, "every seat moved, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_does_not_keep_or_retake_its_users_when_it_wakes() {
    let lab = lab("frozen").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    let (to_bob, to_bob_task) = sender(
        lab.alice.clone(),
        Some(bob.clone()),
        None,
        "alice",
        160,
        Duration::from_millis(150),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    lab.servers[1].pause();
    let paused = Instant::now();
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() != "s2"))
        })
        .await,
        "bob's devices leave the frozen server"
    );
    println!("bob served elsewhere {:?} after s2 froze", paused.elapsed());
    // Frozen well past the failure detector's window, then woken.
    let frozen_for = Duration::from_secs(20);
    tokio::time::sleep(frozen_for.saturating_sub(paused.elapsed())).await;
    lab.servers[1].resume();
    let woke = Instant::now();
    // It must not take bob back before the fallback delay, and then only by handing over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        [&bob_desk, &bob_phone]
            .iter()
            .all(|d| d.server().is_some_and(|s| s.as_str() != "s2")),
        "the woken server did not retake bob at once"
    );
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() == "s2"))
        })
        .await,
        "bob falls back to s2 after the delay"
    );
    println!("bob back on s2 {:?} after it woke", woke.elapsed());
    to_bob_task.await.expect("sender");
    let to_bob = to_bob.lock().unwrap().clone();
    for device in [&alice_device, &bob_desk, &bob_phone] {
        assert!(
            device
                .wait_for_stored(&direct, to_bob.len(), WAIT)
                .await
                .is_some(),
            "{} shows every message",
            device.name()
        );
        assert_shown_once(device, &direct, &to_bob);
    }
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");
}

/// Waits until both of bob's devices are connected to `server`.
async fn bob_on(devices: [&Device; 2], server: &str) -> bool {
    eventually(WAIT, || {
        devices
            .iter()
            .all(|d| d.is_connected() && d.server().is_some_and(|s| s.as_str() == server))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_undrain_and_a_move_carry_a_user_along_without_signing_in_or_losing_anything() {
    let lab = lab("drain").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    let traffic = Traffic::start(&lab, &lab.bob_desk, 80, Duration::from_millis(100), false);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Drain s2: bob moves to a backup at once, told where by a `reconnect` event.
    let s2 = ServerId::from("s2");
    let drained = Instant::now();
    let asked_ms = shared::now_ms();
    let list = lab
        .admin
        .server_action(&s2, ServerAction::Drain)
        .await
        .expect("drain");
    assert!(list.servers.iter().any(|s| s.id == s2));
    assert!(
        eventually(WAIT, || {
            [&bob_desk, &bob_phone]
                .iter()
                .all(|d| d.is_connected() && d.server().is_some_and(|s| s != s2))
        })
        .await,
        "bob leaves the drained server"
    );
    println!(
        "drain: bob on {:?} after {:?}",
        bob_desk.server(),
        drained.elapsed()
    );
    let states = lab.admin.servers().await.expect("servers").servers;
    let s2_state = states.iter().find(|s| s.id == s2).expect("s2 listed");
    assert_eq!(s2_state.state, "draining", "{s2_state:?}");
    assert!(
        s2_state.since_ms >= asked_ms - 1000 && s2_state.since_ms <= shared::now_ms(),
        "draining since the admin's command: {s2_state:?}, asked at {asked_ms}"
    );
    assert!(
        states.iter().any(|s| s.state == "running_in_backup_mode"
            && s.reason.contains("s2")
            && s.since_ms >= asked_ms - 1000),
        "the backup says whose users it serves, since the drain: {states:?}"
    );

    // Undrain: bob comes home.
    lab.admin
        .server_action(&s2, ServerAction::Undrain)
        .await
        .expect("undrain");
    assert!(
        bob_on([&bob_desk, &bob_phone], "s2").await,
        "bob back on s2"
    );

    // Move bob's home to s3 while he is online: his devices follow.
    lab.admin
        .update_user(
            &bob,
            UpdateUser {
                home_server: Some(ServerId::from("s3")),
                ..UpdateUser::default()
            },
        )
        .await
        .expect("move bob");
    assert!(
        bob_on([&bob_desk, &bob_phone], "s3").await,
        "bob moved to s3"
    );
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");

    let Delivered {
        to_bob, from_bob, ..
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert!(
        bob_desk.reconnects() >= 3,
        "drain, undrain and the move each moved the device: {}",
        bob_desk.reconnects()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_spreads_users_and_online_ones_follow_without_loss() {
    let lab = lab("rebalance").await;
    let extra: Vec<String> = (0..12).map(|i| format!("x{i:02}")).collect();
    let names: Vec<&str> = extra.iter().map(String::as_str).collect();
    create_users(&lab.admin, &names, PASSWORD, Some("s1")).await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let alice_device = Device::start(&lab.alice, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let (to_bob, to_bob_task) = sender(
        lab.alice.clone(),
        Some(bob.clone()),
        None,
        "alice",
        40,
        Duration::from_millis(100),
    );

    let preview = lab.admin.rebalance(true).await.expect("dry run");
    assert!(!preview.applied);
    assert!(!preview.moves.is_empty(), "twelve users on s1 spread out");
    let unchanged = lab.admin.users().await.expect("users");
    assert_eq!(
        unchanged
            .iter()
            .filter(|u| u.id.as_str().starts_with('x') && u.home_server.as_str() == "s1")
            .count(),
        12,
        "a dry run changes nothing"
    );
    let done = lab.admin.rebalance(false).await.expect("rebalance");
    assert_eq!(done.moves, preview.moves, "the preview was what happened");
    assert_eq!(
        done.homes.len(),
        3,
        "every server has users: {:?}",
        done.homes
    );
    let after = lab.admin.users().await.expect("users");
    for one in &done.moves {
        let user = after.iter().find(|u| u.id == one.user).expect("user");
        assert_eq!(user.home_server, one.to);
    }
    // Online users follow their new home (bob, if he moved), without signing in.
    let bob_home = after
        .iter()
        .find(|u| u.id == bob)
        .expect("bob")
        .home_server
        .clone();
    assert!(
        eventually(WAIT, || bob_desk.is_connected()
            && bob_desk.server().as_ref() == Some(&bob_home))
        .await,
        "bob's device is on his home {bob_home}"
    );
    to_bob_task.await.expect("sender");
    let to_bob = to_bob.lock().unwrap().clone();
    for device in [&alice_device, &bob_desk] {
        assert!(
            device
                .wait_for_stored(&direct, to_bob.len(), WAIT)
                .await
                .is_some()
        );
        assert_shown_once(device, &direct, &to_bob);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_signs_no_one_out() {
    let mut lab = lab("rolling").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let devices = [
        Device::start(&lab.alice, "desk").await,
        Device::start(&lab.carol, "desk").await,
        Device::start(&lab.bob_desk, "desk").await,
        Device::start(&lab.bob_phone, "phone").await,
    ];
    let every = Duration::from_millis(150);
    let traffic = Traffic::start(&lab, &lab.bob_phone, 150, every, true);
    // Each server in turn: drained (its users move to backups), stopped, started, undrained.
    for index in 0..3 {
        let id = ServerId::new(format!("s{}", index + 1));
        let started = Instant::now();
        lab.admin
            .server_action(&id, ServerAction::Drain)
            .await
            .expect("drain");
        assert!(
            eventually(WAIT, || devices
                .iter()
                .all(|d| d.is_connected() && d.server().as_ref() != Some(&id)))
            .await,
            "every device left {id}"
        );
        lab.servers[index].terminate();
        lab.servers[index].restart();
        lab.admin
            .server_action(&id, ServerAction::Undrain)
            .await
            .expect("undrain");
        println!(
            "{id} drained, restarted and undrained in {:?}",
            started.elapsed()
        );
    }
    let Delivered {
        to_bob,
        from_bob,
        in_group,
    } = traffic.finish().await;
    let [alice_device, carol_device, bob_desk, bob_phone] = &devices;
    assert_both_ways(
        &[alice_device, bob_desk, bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_group_complete(
        &[alice_device, carol_device, bob_desk, bob_phone],
        &lab.group,
        &in_group,
    )
    .await;
    // The same sessions all along: their tokens still work, nobody signed in again.
    for client in [&lab.alice, &lab.carol, &lab.bob_desk, &lab.bob_phone] {
        client
            .me()
            .await
            .expect("the session survived the rolling restart");
    }
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_target_dies_ends_on_a_live_server_without_loss() {
    let mut lab = lab("drain_target_dies").await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let direct = ConversationId::direct(&alice, &bob);
    let s2 = ServerId::from("s2");
    let alice_device = Device::start(&lab.alice, "desk").await;
    // carol's device too: whichever server dies, every signed-in user has a live device.
    let _carol_device = Device::start(&lab.carol, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    // Where a drain of s2 sends bob (his backup), learned by one drain and undrain.
    lab.admin
        .server_action(&s2, ServerAction::Drain)
        .await
        .expect("drain");
    until_bob_left(&lab, [&bob_desk, &bob_phone], "s2", Instant::now()).await;
    let target = bob_desk.server().expect("bob's backup");
    lab.admin
        .server_action(&s2, ServerAction::Undrain)
        .await
        .expect("undrain");
    assert!(
        bob_on([&bob_desk, &bob_phone], "s2").await,
        "bob is back home"
    );
    // An admin that talks to the server that survives everything.
    let third = ["s1", "s3"]
        .into_iter()
        .find(|s| *s != target.as_str())
        .unwrap();
    let third_index = if third == "s1" { 0 } else { 2 };
    let admin = AdminClient::login(
        &lab.servers[third_index].url(),
        &UserId::from("admin"),
        ADMIN_PASSWORD,
    )
    .await
    .expect("admin login");

    let every = Duration::from_millis(100);
    let traffic = Traffic::start(&lab, &lab.bob_phone, 50, every, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The drain starts and its target dies with it.
    admin
        .server_action(&s2, ServerAction::Drain)
        .await
        .expect("drain again");
    let target_index = if target.as_str() == "s1" { 0 } else { 2 };
    lab.servers[target_index].kill9();
    let started = Instant::now();
    assert!(
        bob_on([&bob_desk, &bob_phone], third).await,
        "bob ends on {third}, the live server left"
    );
    println!(
        "drain of s2 with its target {target} killed: bob on {third} after {:?}",
        started.elapsed()
    );
    let Delivered {
        to_bob, from_bob, ..
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_eq!(seats_in_use(&admin).await, 3, "seats = signed-in users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_dead_server_whose_group_has_no_live_member_go_offline_and_return_with_it() {
    let redis = Redis::start();
    let database_url = Postgres::shared().create_database("lonely_group");
    let in_group = |group: &'static str| {
        let mut settings = SETTINGS.to_vec();
        settings.push(("UC_REDUNDANCY_GROUP", group));
        settings
    };
    let mut servers: Vec<UcServer> = [("s1", "a"), ("s2", "a"), ("s3", "b")]
        .iter()
        .map(|(id, group)| UcServer::start(id, &database_url, Some(&redis.url()), &in_group(group)))
        .collect();
    let admin = AdminClient::login(&servers[0].url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    create_users(&admin, &["alice"], PASSWORD, Some("s1")).await;
    create_users(&admin, &["carol"], PASSWORD, Some("s3")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alice = login(&servers[0], "alice", PASSWORD, "desk").await;
    let carol = login(&servers[2], "carol", PASSWORD, "desk").await;
    let carol_device = Device::start(&carol, "desk").await;
    let carol_id = UserId::from("carol");
    assert_eq!(seats_in_use(&admin).await, 2);

    // s3, the only server of group b, dies: carol cannot be served anywhere.
    servers[2].kill9();
    let killed = Instant::now();
    while presence_of(&alice, &carol_id).await != Availability::Offline {
        assert!(killed.elapsed() < WAIT, "carol goes offline for alice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "carol offline for alice {:?} after s3 died",
        killed.elapsed()
    );
    assert!(
        eventually(WAIT, || !carol_device.is_connected()).await,
        "no server of group a serves carol"
    );
    let mut seats = 0;
    for _ in 0..50 {
        seats = seats_in_use(&admin).await;
        if seats == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seats, 1, "carol's seat went back to the pool");
    // Messages to carol while nobody serves her are stored, and reach her when s3 returns.
    let direct = ConversationId::direct(&UserId::from("alice"), &carol_id);
    let mut sent = Vec::new();
    for n in 0..5 {
        let body = format!("alice {n}");
        alice
            .send_message(SendMessage {
                to: Some(carol_id.clone()),
                conversation: None,
                body: body.clone(),
                client_id: Some(new_client_id()),
            })
            .await
            .expect("a message to an offline user is stored");
        sent.push(body);
    }
    servers[2].restart();
    assert!(
        eventually(WAIT, || carol_device.is_connected()
            && carol_device.server().is_some_and(|s| s.as_str() == "s3"))
        .await,
        "carol's device is served by s3 again, same session"
    );
    assert!(
        carol_device
            .wait_for_stored(&direct, sent.len(), WAIT)
            .await
            .is_some(),
        "carol's device shows what was sent while she was away"
    );
    assert_shown_once(&carol_device, &direct, &sent);
    while presence_of(&alice, &carol_id).await == Availability::Offline {
        assert!(killed.elapsed() < WAIT * 2, "carol is online again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seats_in_use(&admin).await, 2, "seats = signed-in users");
}

/// How Redis fails in [`hand_over_cut_by_redis`].
#[derive(Clone, Copy, Debug)]
enum RedisFault {
    /// Killed, then started again, empty, on the same port.
    Restart,
    /// Frozen (SIGSTOP), then woken (SIGCONT) with its data, like a Redis that persists.
    Freeze,
}

/// Waits until every device shows `note` as the presence note of every user in `users`;
/// fails naming what a device shows instead.
async fn assert_presence_reaches(devices: &[&Device], users: &[&UserId], note: &str) {
    for device in devices {
        for user in users {
            let shown = || {
                device
                    .presence(user)
                    .is_some_and(|view| view.note.as_deref() == Some(note))
            };
            assert!(
                eventually(WAIT, shown).await,
                "device {} (on {:?}, connected: {}) shows {user} as {:?}, not with the note {note:?}",
                device.name(),
                device.server(),
                device.is_connected(),
                device.presence(user)
            );
        }
    }
}

/// bob's home s2 stops gracefully (bob goes to his backup) and returns; while its fallback
/// falls due (3 s after it returned) and bob is handed back, Redis fails for 4 s, longer than
/// the failure detector's window (2 s). Messages flow all along; afterwards bob is home again,
/// nobody else was moved, and every device shows every acknowledged message once and gets
/// live presence changes of everyone.
async fn hand_over_cut_by_redis(name: &str, fault: RedisFault) {
    let mut lab = lab(name).await;
    let (alice, bob, carol) = (
        UserId::from("alice"),
        UserId::from("bob"),
        UserId::from("carol"),
    );
    let direct = ConversationId::direct(&alice, &bob);
    // Everyone watches everyone (contacts), so every presence change goes to every device.
    for (client, others) in [
        (&lab.alice, [&bob, &carol]),
        (&lab.bob_desk, [&alice, &carol]),
        (&lab.carol, [&alice, &bob]),
    ] {
        for other in others {
            client.put_contact(other, "team").await.expect("contact");
        }
    }
    let alice_device = Device::start(&lab.alice, "desk").await;
    let carol_device = Device::start(&lab.carol, "desk").await;
    let bob_desk = Device::start(&lab.bob_desk, "desk").await;
    let bob_phone = Device::start(&lab.bob_phone, "phone").await;
    let devices = [&alice_device, &carol_device, &bob_desk, &bob_phone];
    let every = Duration::from_millis(100);
    let traffic = Traffic::start(&lab, &lab.bob_phone, 120, every, true);
    tokio::time::sleep(Duration::from_millis(500)).await;

    lab.servers[1].terminate();
    until_bob_left(&lab, [&bob_desk, &bob_phone], "s2", Instant::now()).await;
    lab.servers[1].restart();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match fault {
        RedisFault::Restart => lab.redis.stop(),
        RedisFault::Freeze => lab.redis.pause(),
    }
    tokio::time::sleep(Duration::from_millis(4000)).await;
    match fault {
        RedisFault::Restart => lab.redis.restart(),
        RedisFault::Freeze => lab.redis.resume(),
    }
    println!(
        "Redis failed {:?} after s2 returned and answered again {:?} after",
        Duration::from_millis(1500),
        back.elapsed()
    );
    assert!(
        bob_on([&bob_desk, &bob_phone], "s2").await,
        "bob is served by his home again: desk on {:?} ({}), phone on {:?} ({})",
        bob_desk.server(),
        bob_desk.is_connected(),
        bob_phone.server(),
        bob_phone.is_connected()
    );
    println!("bob back on s2 {:?} after it returned", back.elapsed());
    // alice's and carol's servers never stopped: an outage of the store moves nobody.
    for device in [&alice_device, &carol_device] {
        assert_eq!(
            device.moves(),
            0,
            "device {} was sent to another server (now on {:?})",
            device.name(),
            device.server()
        );
    }

    // Live presence reaches every device, from every user, whatever server each is on.
    for (n, client) in [&lab.alice, &lab.bob_desk, &lab.carol].iter().enumerate() {
        let note = format!("after the outage {n}");
        client
            .set_presence(SetPresence {
                availability: None,
                note: Some(note.clone()),
                user: None,
            })
            .await
            .expect("set presence");
        let user = [&alice, &bob, &carol][n];
        assert_presence_reaches(&devices, &[user], &note).await;
    }

    let Delivered {
        to_bob,
        from_bob,
        in_group,
    } = traffic.finish().await;
    assert_both_ways(
        &[&alice_device, &bob_desk, &bob_phone],
        &direct,
        &to_bob,
        &from_bob,
    )
    .await;
    assert_group_complete(&devices, &lab.group, &in_group).await;
    assert_eq!(
        presence_of(&lab.alice, &bob).await,
        Availability::Available,
        "bob is online for alice"
    );
    assert_eq!(seats_in_use(&lab.admin).await, 3, "seats = signed-in users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_cut_by_a_redis_restart_leaves_every_device_served_with_live_events() {
    hand_over_cut_by_redis("handover_redis_restart", RedisFault::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_cut_by_a_frozen_redis_leaves_every_device_served_with_live_events() {
    hand_over_cut_by_redis("handover_redis_freeze", RedisFault::Freeze).await;
}
