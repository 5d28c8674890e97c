//! Cross-server behaviour with real parts: a Redis and a PostgreSQL started by the harness,
//! two `ucserver` processes sharing them, and clients speaking the real API over loopback.

use shared::api::{CreateGroup, CreateUser, ErrorCode, SetPresence};
use shared::presence::{Availability, Capability, Visibility};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ConversationId, DeviceId, GroupId, ServerId, UserId};
use std::time::{Duration, Instant};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, ClientError, Connection};

const PASSWORD: &str = "password-1";
const WAIT: Duration = Duration::from_secs(15);

/// Redis, a database of its own on the shared PostgreSQL, and two UCServers `s1` and `s2`.
struct Lab {
    redis: Redis,
    database_url: String,
    s1: UcServer,
    s2: UcServer,
    admin: AdminClient,
}

impl Lab {
    async fn start(name: &str) -> Lab {
        Self::start_with(name, &[]).await
    }

    async fn start_with(name: &str, extra: &[(&str, &str)]) -> Lab {
        let redis = Redis::start();
        let database_url = Postgres::shared().create_database(name);
        let s1 = UcServer::start("s1", &database_url, Some(&redis.url()), extra);
        let s2 = UcServer::start("s2", &database_url, Some(&redis.url()), extra);
        let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
            .await
            .expect("admin login");
        Lab {
            redis,
            database_url,
            s1,
            s2,
            admin,
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

    /// Logs in at s1 whatever the home server: the client follows `wrong_server`.
    async fn login(&self, user: &UserId, device: &str) -> Client {
        Client::login(&self.s1.url(), user, PASSWORD, Some(DeviceId::from(device)))
            .await
            .expect("login")
    }
}

async fn seats_in_use(admin: &AdminClient) -> u32 {
    admin
        .licenses()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.kind == "uc-seat")
        .unwrap()
        .in_use
}

async fn connect(client: &Client) -> Connection {
    client
        .connect(None, &[Capability::Chat, Capability::Audio])
        .await
        .expect("websocket")
}

/// Waits for a presence event about `user` that satisfies `check`.
async fn presence_of(
    conn: &mut Connection,
    user: &UserId,
    check: impl Fn(&shared::presence::PresenceView) -> bool,
) -> shared::presence::PresenceView {
    let event = conn
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Presence { presence } if &presence.user == user && check(presence)))
        .await
        .unwrap_or_else(|e| panic!("no matching presence of {user}: {e}"));
    let ServerEvent::Presence { presence } = event else {
        unreachable!()
    };
    presence
}

async fn message_in(conn: &mut Connection, body: &str) -> (shared::api::ChatMessage, bool, bool) {
    let event = conn
        .next_matching(
            WAIT,
            |e| matches!(e, ServerEvent::Message { message, .. } if message.body == body),
        )
        .await
        .unwrap_or_else(|e| panic!("message '{body}' not received: {e}"));
    let ServerEvent::Message {
        message,
        alert,
        replay,
    } = event
    else {
        unreachable!()
    };
    (message, alert, replay)
}

fn api_code(error: ClientError) -> ErrorCode {
    error
        .api()
        .map(|a| a.error)
        .unwrap_or_else(|| panic!("expected a typed API error, got {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_sent_to_the_home_server_and_presence_crosses_servers() {
    let lab = Lab::start("presence").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let carol = lab.user("carol", "s1").await;

    let alice_client = lab.login(&alice, "desk").await;
    let bob_client = lab.login(&bob, "desk").await;
    assert_eq!(alice_client.server(), &ServerId::from("s1"));
    assert_eq!(
        bob_client.server(),
        &ServerId::from("s2"),
        "bob logged in at s1 and was sent to s2"
    );
    assert_eq!(bob_client.base_url(), lab.s2.url());

    // Bob watches alice (contact); carol does not.
    bob_client
        .put_contact(&alice, "team")
        .await
        .expect("add contact");
    let mut bob_conn = connect(&bob_client).await;
    let alice_conn = connect(&alice_client).await;
    presence_of(&mut bob_conn, &alice, |p| {
        p.availability == Availability::Available
    })
    .await;

    let started = Instant::now();
    alice_client
        .set_presence(SetPresence {
            availability: Some(Availability::Busy),
            note: Some("in a meeting".into()),
            user: None,
        })
        .await
        .expect("set presence");
    let seen = presence_of(&mut bob_conn, &alice, |p| {
        p.availability == Availability::Busy
    })
    .await;
    println!("presence crossed servers in {:?}", started.elapsed());
    assert_eq!(seen.note.as_deref(), Some("in a meeting"));
    assert_eq!(seen.visibility, Visibility::Full);
    assert!(seen.capabilities.contains(&Capability::Audio));

    // The rule, queryable: bob (contact) sees everything, carol only availability.
    let by_bob = bob_client.get_presence(&alice).await.unwrap();
    assert_eq!(
        (by_bob.visibility, by_bob.note.as_deref()),
        (Visibility::Full, Some("in a meeting"))
    );
    let carol_client = lab.login(&carol, "desk").await;
    let by_carol = carol_client.get_presence(&alice).await.unwrap();
    assert_eq!(by_carol.visibility, Visibility::Basic);
    assert_eq!(by_carol.availability, Availability::Busy);
    assert_eq!(by_carol.note, None);

    // Setting someone else's presence needs the right; a delegate may, across servers.
    let denied = carol_client
        .set_presence(SetPresence {
            availability: Some(Availability::Away),
            note: None,
            user: Some(bob.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(api_code(denied), ErrorCode::Forbidden);
    bob_client.put_delegate(&carol).await.unwrap();
    carol_client
        .set_presence(SetPresence {
            availability: Some(Availability::Dnd),
            note: Some("set by carol".into()),
            user: Some(bob.clone()),
        })
        .await
        .expect("delegate sets presence");
    alice_client.put_contact(&bob, "").await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let view = alice_client.get_presence(&bob).await.unwrap();
        if view.availability == Availability::Dnd {
            assert_eq!(view.note.as_deref(), Some("set by carol"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's presence was not set by his delegate: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Last device leaves: offline for the watcher on the other server.
    alice_conn.close().await.unwrap();
    presence_of(&mut bob_conn, &alice, |p| {
        p.availability == Availability::Offline
    })
    .await;
    assert_eq!(
        carol_client
            .get_presence(&alice)
            .await
            .unwrap()
            .availability,
        Availability::Offline
    );

    // ucadmin's view: users with home server and online state across servers.
    let users = lab.admin.users().await.unwrap();
    let bob_info = users.iter().find(|u| u.id == bob).unwrap();
    assert_eq!(bob_info.home_server, ServerId::from("s2"));
    assert!(bob_info.online);
    assert!(!users.iter().find(|u| u.id == alice).unwrap().online);
    drop(lab.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_every_device_across_servers_with_history_and_read_markers() {
    let lab = Lab::start("chat").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let alice_desk = lab.login(&alice, "desk").await;
    let alice_phone = lab.login(&alice, "phone").await;
    let bob_client = lab.login(&bob, "desk").await;
    let mut desk = connect(&alice_desk).await;
    let mut phone = connect(&alice_phone).await;
    let mut bob_conn = connect(&bob_client).await;

    let started = Instant::now();
    let stored = desk
        .request(ClientCommand::Send {
            to: Some(bob.clone()),
            conversation: None,
            body: "hello bob".into(),
            client_id: Some("c-1".into()),
        })
        .await
        .expect("send")
        .expect("ack carries the stored message");
    assert_eq!(stored.seq, 1);
    let (received, alert, replay) = message_in(&mut bob_conn, "hello bob").await;
    println!("chat crossed servers in {:?}", started.elapsed());
    assert_eq!(received, stored);
    assert!(
        alert && !replay,
        "bob's only device is active: it gets the alert"
    );
    // Multi-device: the sender's other device gets it too, without an alert.
    let (on_phone, phone_alert, _) = message_in(&mut phone, "hello bob").await;
    assert_eq!(on_phone.seq, 1);
    assert!(!phone_alert);

    // A resend with the same client id is stored once.
    let again = alice_desk
        .send_message(shared::api::SendMessage {
            to: Some(bob.clone()),
            conversation: None,
            body: "hello bob".into(),
            client_id: Some("c-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(again.seq, 1);

    // Bob answers over REST; 30 more messages, then history by page.
    let conversation = ConversationId::direct(&alice, &bob);
    bob_client.send_to_user(&alice, "hi alice").await.unwrap();
    message_in(&mut desk, "hi alice").await;
    message_in(&mut phone, "hi alice").await;
    for i in 0..30 {
        alice_desk
            .send_to_user(&bob, &format!("m{i}"))
            .await
            .unwrap();
    }
    message_in(&mut bob_conn, "m29").await;
    let latest = bob_client
        .history(&conversation, None, None, Some(10))
        .await
        .unwrap();
    assert_eq!(
        latest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (23..=32).collect::<Vec<_>>()
    );
    let older = bob_client
        .history(&conversation, Some(23), None, Some(10))
        .await
        .unwrap();
    assert_eq!(older.first().unwrap().seq, 13);
    assert_eq!(older.last().unwrap().seq, 22);

    // Unread counts and read markers, kept in step on all of alice's devices.
    let summary = bob_client
        .conversations()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == conversation)
        .unwrap();
    assert_eq!(summary.last_seq, 32);
    assert_eq!(
        summary.unread, 30,
        "bob read his own message (2) but none of the 30 after it"
    );
    let marker = bob_client.mark_read(&conversation, Some(10)).await.unwrap();
    assert_eq!(marker.seq, 10);
    for device in [&mut desk, &mut phone] {
        device
            .next_matching(
                WAIT,
                |e| matches!(e, ServerEvent::Read { user, seq: 10, .. } if user == &bob),
            )
            .await
            .expect("bob's read receipt reaches both of alice's devices on the other server");
    }
    bob_conn
        .next_matching(
            WAIT,
            |e| matches!(e, ServerEvent::Read { user, seq: 10, .. } if user == &bob),
        )
        .await
        .expect("bob's own device sees his read marker");
    assert_eq!(
        bob_client
            .mark_read(&conversation, Some(5))
            .await
            .unwrap()
            .seq,
        10,
        "markers never move back"
    );
    let summary = bob_client
        .conversations()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == conversation)
        .unwrap();
    assert_eq!((summary.last_read_seq, summary.unread), (10, 22));
    // Alice's own messages count as read by her.
    let mine = alice_desk
        .conversations()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == conversation)
        .unwrap();
    assert_eq!(mine.unread, 0);

    // Typing notifications cross servers.
    bob_conn
        .request(ClientCommand::Typing {
            conversation: conversation.clone(),
            typing: true,
        })
        .await
        .unwrap();
    desk.next_matching(
        WAIT,
        |e| matches!(e, ServerEvent::Typing { user, typing: true, .. } if user == &bob),
    )
    .await
    .expect("typing reaches alice");

    // The journal, read from either server.
    let journal = alice_desk.journal(None).await.unwrap();
    let entry = journal
        .iter()
        .find(|j| j.conversation.as_ref() == Some(&conversation))
        .expect("chat journal entry");
    assert_eq!(entry.party, "bob");
    assert_eq!(entry.messages, 32);
    let bob_journal = bob_client.journal(None).await.unwrap();
    assert_eq!(
        bob_journal
            .iter()
            .find(|j| j.conversation.as_ref() == Some(&conversation))
            .unwrap()
            .messages,
        32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_chat_and_catch_up_after_being_offline() {
    let lab = Lab::start("groups").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let dave = lab.user("dave", "s2").await;
    let outsider = lab.user("eve", "s1").await;
    let team = GroupId::from("team");
    lab.admin
        .create_group(CreateGroup {
            id: team.clone(),
            display_name: Some("The Team".into()),
        })
        .await
        .unwrap();
    for user in [&alice, &bob, &dave] {
        lab.admin.add_member(&team, user).await.unwrap();
    }
    let conversation = ConversationId::group(&team);

    let alice_client = lab.login(&alice, "desk").await;
    let bob_client = lab.login(&bob, "desk").await;
    let mut bob_conn = connect(&bob_client).await;
    // Group mates see each other's presence without adding contacts.
    let alice_conn = connect(&alice_client).await;
    presence_of(&mut bob_conn, &alice, |p| {
        p.availability == Availability::Available
    })
    .await;

    alice_client
        .send_to_conversation(&conversation, "team hello")
        .await
        .expect("group send");
    message_in(&mut bob_conn, "team hello").await;

    // Dave was offline: he gets what he missed when he connects.
    for i in 0..3 {
        alice_client
            .send_to_conversation(&conversation, &format!("missed {i}"))
            .await
            .unwrap();
    }
    let dave_client = lab.login(&dave, "laptop").await;
    let mut dave_conn = connect(&dave_client).await;
    let hello = dave_conn.hello().clone();
    let summary = hello
        .conversations
        .iter()
        .find(|c| c.id == conversation)
        .expect("hello lists the group");
    assert_eq!(summary.unread, 4);
    for i in 0..3 {
        let (message, _, replay) = message_in(&mut dave_conn, &format!("missed {i}")).await;
        assert!(replay, "{message:?} should be marked as a replay");
    }

    // Not a member: a typed error, nothing stored.
    let eve_client = lab.login(&outsider, "desk").await;
    let denied = eve_client
        .send_to_conversation(&conversation, "let me in")
        .await
        .unwrap_err();
    assert_eq!(api_code(denied), ErrorCode::NotAMember);
    let denied = eve_client
        .history(&conversation, None, None, None)
        .await
        .unwrap_err();
    assert_eq!(api_code(denied), ErrorCode::NotAMember);
    assert_eq!(
        alice_client
            .history(&conversation, None, None, None)
            .await
            .unwrap()
            .len(),
        4
    );
    drop(alice_conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_mode_buffers_presence_but_not_messages() {
    let lab = Lab::start_with("quiet", &[("UC_MDM_BUFFER_LIMIT", "3")]).await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let alice_client = lab.login(&alice, "desk").await;
    let bob_desk = lab.login(&bob, "desk").await;
    let bob_phone = lab.login(&bob, "phone").await;
    bob_desk.put_contact(&alice, "").await.unwrap();
    let mut alice_conn = connect(&alice_client).await;
    let mut desk = connect(&bob_desk).await;
    let mut phone = connect(&bob_phone).await;
    let seen = phone
        .hello()
        .presence
        .iter()
        .find(|p| p.user == alice)
        .cloned()
        .expect("hello carries watched presence");
    assert_eq!(seen.availability, Availability::Available);

    // The phone goes to the background; the desk was active just now.
    phone
        .request(ClientCommand::DeviceState {
            active: Some(false),
            idle: None,
        })
        .await
        .unwrap();
    desk.request(ClientCommand::Ping).await.unwrap();
    alice_conn
        .request(ClientCommand::PresenceSet {
            availability: Some(Availability::Away),
            note: None,
            user: None,
        })
        .await
        .unwrap();
    presence_of(&mut desk, &alice, |p| p.availability == Availability::Away).await;

    // A message still reaches the quiet phone at once, but the alert goes to the desk.
    alice_conn
        .request(ClientCommand::Send {
            to: Some(bob.clone()),
            conversation: None,
            body: "ping".into(),
            client_id: None,
        })
        .await
        .unwrap();
    let (_, desk_alert, _) = message_in(&mut desk, "ping").await;
    let first_on_phone = phone
        .next_matching(WAIT, |e| match e {
            ServerEvent::Message { .. } => true,
            ServerEvent::Presence { presence } => presence.user == alice,
            _ => false,
        })
        .await
        .unwrap();
    let ServerEvent::Message {
        alert: phone_alert, ..
    } = first_on_phone
    else {
        panic!("the quiet phone got presence before the message: {first_on_phone:?}");
    };
    assert!(
        desk_alert && !phone_alert,
        "the alert goes to the active device only"
    );

    // Back in front: the held presence is flushed.
    phone
        .request(ClientCommand::DeviceState {
            active: Some(true),
            idle: None,
        })
        .await
        .unwrap();
    presence_of(&mut phone, &alice, |p| p.availability == Availability::Away).await;

    let metrics = reqwest::get(format!("{}/metrics", lab.s2.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(value("uc_mdm_buffer_flushes_total") >= 1.0);
    assert!(value("uc_mdm_buffer_flushed_packets_total") >= 1.0);
    assert_eq!(value("uc_mdm_sessions"), 2.0);
    assert_eq!(value("uc_mdm_quiet_mode_sessions"), 0.0);
    for name in [
        "uc_mdm_buffer_flushes_limit_reached_total",
        "uc_mdm_buffer_avg_queued_seconds",
        "uc_redis_latency_seconds_count",
        "uc_sql_latency_seconds_count",
        "uc_messages_stored_total",
        "uc_presence_deliveries_total",
    ] {
        value(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_pool_limits_logins_across_servers() {
    let lab = Lab::start("licenses").await;
    let users = [
        lab.user("u1", "s1").await,
        lab.user("u2", "s2").await,
        lab.user("u3", "s1").await,
    ];
    lab.admin.set_license("uc-seat", 2).await.unwrap();
    let first = lab.login(&users[0], "d").await;
    let _second = lab.login(&users[1], "d").await;
    let again = lab.login(&users[0], "other").await; // same user, second device: no new seat
    let refused = Client::login(&lab.s2.url(), &users[2], PASSWORD, None)
        .await
        .unwrap_err();
    let api = refused.api().expect("typed error").clone();
    assert_eq!(api.error, ErrorCode::LicenseExhausted, "{api:?}");
    let seats = lab
        .admin
        .licenses()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.kind == "uc-seat")
        .unwrap();
    assert_eq!((seats.capacity, seats.in_use), (Some(2), 2));

    // Logging out the last session of u1 returns the seat.
    first.logout().await.unwrap();
    again.logout().await.unwrap();
    lab.login(&users[2], "d").await;

    // A login whose session cannot be stored (SQL fails after the seat was taken) fails with
    // a typed error and gives the seat back.
    lab.admin.set_license("uc-seat", 3).await.unwrap();
    assert_eq!(seats_in_use(&lab.admin).await, 2);
    Postgres::shared().execute("licenses", "ALTER TABLE sessions RENAME TO sessions_away");
    let error = Client::login(&lab.s1.url(), &users[0], PASSWORD, None)
        .await
        .unwrap_err();
    assert_eq!(api_code(error), ErrorCode::Internal);
    assert_eq!(
        seats_in_use(&lab.admin).await,
        2,
        "the failed login's seat came back"
    );
    Postgres::shared().execute("licenses", "ALTER TABLE sessions_away RENAME TO sessions");
    lab.login(&users[0], "d").await;
    assert_eq!(seats_in_use(&lab.admin).await, 3);

    // Wrong passwords: a typed error, then slowed down.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let error = Client::login(&lab.s1.url(), &users[0], "wrong-password", None)
            .await
            .unwrap_err();
        codes.push(api_code(error));
    }
    assert_eq!(codes[0], ErrorCode::InvalidCredentials);
    assert!(codes.contains(&ErrorCode::TooManyAttempts), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_cleaned_up_by_a_survivor_and_rejoins() {
    // Its users move home as soon as it is back (no fallback delay); bob's own client does
    // not reconnect here, so he is offline until it connects again.
    let mut lab = Lab::start_with("failover", &[("UC_FALLBACK_DELAY_MS", "0")]).await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    lab.admin.set_license("uc-seat", 10).await.unwrap();
    let alice_client = lab.login(&alice, "desk").await;
    let bob_client = lab.login(&bob, "desk").await;
    alice_client.put_contact(&bob, "").await.unwrap();
    let mut alice_conn = connect(&alice_client).await;
    let _bob_conn = connect(&bob_client).await;
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Available
    })
    .await;
    let seats = |list: Vec<shared::api::LicenseInfo>| {
        list.into_iter()
            .find(|l| l.kind == "uc-seat")
            .unwrap()
            .in_use
    };
    assert_eq!(seats(lab.admin.licenses().await.unwrap()), 2);

    let killed_at = Instant::now();
    lab.s2.kill9();
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Offline
    })
    .await;
    let detected = killed_at.elapsed();
    println!("dead server detected and cleaned up after {detected:?}");
    assert!(detected < Duration::from_secs(15), "took {detected:?}");
    assert_eq!(
        seats(lab.admin.licenses().await.unwrap()),
        1,
        "s2's leases came back"
    );
    let servers = lab.admin.servers().await.unwrap().servers;
    let s2 = servers
        .iter()
        .find(|s| s.id == ServerId::from("s2"))
        .unwrap();
    assert!(!s2.alive);

    // It comes back and rejoins; bob's session outlived the crash (kept in SQL, hashed): his
    // client reconnects with the same token and takes his seat again.
    lab.s2.restart();
    let mut bob_conn = connect(&bob_client).await;
    assert_eq!(
        bob_conn.hello().server,
        ServerId::from("s2"),
        "bob is home again"
    );
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Available
    })
    .await;
    assert_eq!(seats(lab.admin.licenses().await.unwrap()), 2);
    let bob_again = lab.login(&bob, "phone").await;
    bob_again.logout().await.expect("logout");
    let error = bob_again
        .connect(None, &[Capability::Chat])
        .await
        .expect_err("a token that was logged out stays dead");
    assert_eq!(api_code(error), ErrorCode::Unauthorized);

    // A graceful stop (SIGTERM) hands bob over to s1 at once: his device is told to
    // reconnect there. This client does not follow, so after the failure detector's window
    // bob goes offline for alice and his seat returns; s2 is no longer alive for anyone.
    let stopped_at = Instant::now();
    lab.s2.terminate();
    let moved = bob_conn
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Reconnect { .. }))
        .await
        .expect("the stopping server sends bob on");
    let ServerEvent::Reconnect { server, .. } = moved else {
        unreachable!()
    };
    assert_eq!(server, ServerId::from("s1"));
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Offline
    })
    .await;
    assert_eq!(seats(lab.admin.licenses().await.unwrap()), 1);
    let took = stopped_at.elapsed();
    println!("bob, handed over but not following, offline {took:?} after the stop");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let servers = lab.admin.servers().await.unwrap().servers;
    assert!(
        servers
            .iter()
            .any(|s| s.id == ServerId::from("s2") && !s.alive),
        "{servers:?}"
    );
    assert!(lab.database_url.starts_with("postgres"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_the_session_survives() {
    let lab = Lab::start("badinput").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    let client = lab.login(&alice, "desk").await;
    let mut conn = connect(&client).await;

    conn.send_raw("this is not json".into()).await.unwrap();
    let error = conn
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Error { .. }))
        .await
        .unwrap();
    assert!(
        matches!(
            error,
            ServerEvent::Error {
                error: ErrorCode::MalformedFrame,
                ..
            }
        ),
        "{error:?}"
    );
    conn.send_raw(r#"{"type":"teleport","ref":9}"#.into())
        .await
        .unwrap();
    let error = conn
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Error { .. }))
        .await
        .unwrap();
    assert!(
        matches!(
            error,
            ServerEvent::Error {
                error: ErrorCode::UnknownType,
                reference: Some(9),
                ..
            }
        ),
        "{error:?}"
    );
    let huge = "x".repeat(shared::limits::MAX_MESSAGE_BYTES + 1);
    let error = conn
        .request(ClientCommand::Send {
            to: Some(bob.clone()),
            conversation: None,
            body: huge,
            client_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(api_code(error), ErrorCode::PayloadTooLarge);
    let error = conn
        .request(ClientCommand::Send {
            to: Some(UserId::from("nobody")),
            conversation: None,
            body: "hi".into(),
            client_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(api_code(error), ErrorCode::NotFound);
    // Still connected and working.
    conn.request(ClientCommand::Ping)
        .await
        .expect("pong after bad frames");
    let stored = conn
        .request(ClientCommand::Send {
            to: Some(bob.clone()),
            conversation: None,
            body: "still here".into(),
            client_id: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.seq, 1);

    // Oversized REST body, wrong token, non-admin on the admin API.
    let http = reqwest::Client::new();
    // The server closes a connection whose body it refused unread: no pooled reuse here.
    let response = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}/api/v1/messages", client.base_url()))
        .bearer_auth(client.token())
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"to":"bob","body":"{}"}}"#,
            "y".repeat(200_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: shared::api::ApiError = response.json().await.unwrap();
    assert_eq!(body.error, ErrorCode::PayloadTooLarge);
    let response = http
        .get(format!("{}/api/v1/me", client.base_url()))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = http
        .get(format!("{}/api/v1/admin/users", client.base_url()))
        .bearer_auth(client.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // Nothing stored was lost.
    let history = client
        .history(&ConversationId::direct(&alice, &bob), None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_republish_their_state_when_redis_comes_back_empty() {
    let mut lab = Lab::start("redisrestart").await;
    let alice = lab.user("alice", "s1").await;
    let bob = lab.user("bob", "s2").await;
    // dave is signed in without a device: he holds a seat without being online.
    let dave = lab.user("dave", "s2").await;
    let alice_client = lab.login(&alice, "desk").await;
    let bob_client = lab.login(&bob, "desk").await;
    let _dave_client = lab.login(&dave, "desk").await;
    assert_eq!(seats_in_use(&lab.admin).await, 3);
    alice_client.put_contact(&bob, "").await.unwrap();
    let mut alice_conn = connect(&alice_client).await;
    let mut bob_conn = connect(&bob_client).await;
    bob_client
        .set_presence(SetPresence {
            availability: Some(Availability::Busy),
            note: Some("before".into()),
            user: None,
        })
        .await
        .unwrap();
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Busy
    })
    .await;

    // Redis dies and comes back with nothing in it.
    lab.redis.restart();

    // Same-server features never stopped; once reconnected, s2 re-publishes bob's presence
    // and the bus carries new changes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = alice_client.get_presence(&bob).await.unwrap();
        if view.availability == Availability::Busy && view.note.as_deref() == Some("before") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob's presence was not re-published after the Redis restart: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Seats are taken again for every signed-in user, connected or not.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seats_in_use(&lab.admin).await != 3 {
        assert!(
            Instant::now() < deadline,
            "seats were not re-taken after the Redis restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bob_conn
        .request(ClientCommand::PresenceSet {
            availability: Some(Availability::Away),
            note: Some("after".into()),
            user: None,
        })
        .await
        .unwrap();
    presence_of(&mut alice_conn, &bob, |p| {
        p.availability == Availability::Away && p.note.as_deref() == Some("after")
    })
    .await;
    alice_client
        .send_to_user(&bob, "over the new bus")
        .await
        .unwrap();
    message_in(&mut bob_conn, "over the new bus").await;
}
