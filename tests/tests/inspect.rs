//! The administrator's look into live state, with two UCServers on a real Redis and
//! PostgreSQL and the administrator always at `s1`: the devices of a user served by `s2`
//! (client, address, quiet mode) and the kick of one of them (it is told, its token is dead,
//! the other device goes on receiving messages); the presence viewer, whose answer for each
//! watcher equals what that watcher's own client gets, with a different rule per watcher;
//! and who watches a user now, across both servers; the same through `ucadmin --json`. A
//! delegate an administrator sets sees the user by the `delegate` rule, live, and acts for
//! them until taken away.

use reqwest::StatusCode;
use shared::api::{CreateGroup, CreateUser, ErrorCode, SetPresence};
use shared::inspect::{DeviceKicked, PresenceInspection, UserSessions, VisibilityRule};
use shared::presence::{Availability, Capability, Visibility};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{DeviceId, GroupId, ServerId, UserId};
use std::time::Duration;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer, binary};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, ClientError, Connection};

const PASSWORD: &str = "password-1";
const WAIT: Duration = Duration::from_secs(15);

async fn user(admin: &AdminClient, name: &str, home: &str, is_admin: bool) -> UserId {
    let id = UserId::from(name);
    admin
        .create_user(CreateUser {
            id: id.clone(),
            password: PASSWORD.into(),
            display_name: None,
            home_server: Some(ServerId::from(home)),
            admin: is_admin,
        })
        .await
        .expect("create user");
    id
}

async fn login(server: &UcServer, user: &UserId, device: &str) -> Client {
    Client::login(&server.url(), user, PASSWORD, Some(DeviceId::from(device)))
        .await
        .expect("login")
}

async fn connect(client: &Client) -> Connection {
    client
        .connect(None, &[Capability::Chat])
        .await
        .expect("websocket")
}

async fn message_in(conn: &mut Connection, body: &str) {
    conn.next_matching(
        WAIT,
        |e| matches!(e, ServerEvent::Message { message, .. } if message.body == body),
    )
    .await
    .unwrap_or_else(|e| panic!("message '{body}' not received: {e}"));
}

/// Runs `ucadmin` as the administrator against `server`.
fn ucadmin_run(server: &UcServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("ucadmin"))
        .args([
            "--url",
            &server.url(),
            "--user",
            "admin",
            "--password",
            ADMIN_PASSWORD,
        ])
        .args(args)
        .output()
        .unwrap()
}

/// [`ucadmin_run`] that must succeed; its standard output.
fn ucadmin(server: &UcServer, args: &[&str]) -> String {
    let output = ucadmin_run(server, args);
    assert!(
        output.status.success(),
        "ucadmin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Polls until `check` holds for a user's sessions as the administrator sees them.
async fn sessions_until(
    admin: &AdminClient,
    user: &UserId,
    check: impl Fn(&shared::inspect::UserSessions) -> bool,
) -> shared::inspect::UserSessions {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sessions = admin.user_sessions(user).await.expect("sessions");
        if check(&sessions) {
            return sessions;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions never as expected: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn devices_kick_and_presence_viewer_across_servers() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("admin_inspect");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    let bob = user(&admin, "bob", "s2", false).await;
    let alice = user(&admin, "alice", "s1", false).await;
    let carol = user(&admin, "carol", "s1", false).await;
    let ed = user(&admin, "ed", "s2", false).await;
    let helen = user(&admin, "helen", "s1", true).await;
    admin
        .update_user(
            &helen,
            shared::api::UpdateUser {
                role: Some(shared::api::AdminRole::ReadOnly),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // ---- bob (served by s2) on two devices, signed in at s1 (sent on to s2)
    let bob_phone = login(&s1, &bob, "phone").await;
    let bob_desk = login(&s1, &bob, "desk").await;
    let mut phone = connect(&bob_phone).await;
    let mut desk = connect(&bob_desk).await;
    assert_eq!(phone.hello().server, ServerId::from("s2"));
    desk.request_ack(ClientCommand::DeviceState {
        active: Some(false),
        idle: None,
    })
    .await
    .unwrap();
    let sessions = sessions_until(&admin, &bob, |s| {
        s.devices.len() == 2 && s.devices.iter().any(|d| d.quiet)
    })
    .await;
    assert_eq!(sessions.server, ServerId::from("s2"), "{sessions:?}");
    assert_eq!(sessions.home_server, ServerId::from("s2"));
    let names: Vec<&str> = sessions.devices.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(names, ["desk", "phone"]);
    for device in &sessions.devices {
        assert!(device.client.starts_with("ucclient/"), "{device:?}");
        assert_eq!(device.address.as_deref(), Some("127.0.0.1"));
        assert!(device.since_ms > 0 && device.since_ms <= shared::now_ms());
        assert_eq!(device.quiet, device.device.as_str() == "desk");
    }

    // ---- a read-only administrator may look but not kick; an unknown device is not found
    let helen_admin = AdminClient::login(&s1.url(), &helen, PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        helen_admin.user_sessions(&bob).await.unwrap().devices.len(),
        2
    );
    let refused = helen_admin
        .kick_device(&bob, &DeviceId::from("phone"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Forbidden.as_str(), "{refused}");
    let missing = admin
        .kick_device(&bob, &DeviceId::from("tablet"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound.as_str(), "{missing}");
    assert_eq!(admin.user_sessions(&bob).await.unwrap().devices.len(), 2);

    // ---- the kick, asked at s1, carried out by s2
    let kicked = admin
        .kick_device(&bob, &DeviceId::from("phone"))
        .await
        .expect("kick");
    assert_eq!(kicked.server, ServerId::from("s2"));
    assert!(kicked.was_connected);
    assert!(kicked.tokens_ended >= 1, "{kicked:?}");
    assert_eq!(kicked.devices_left, vec![DeviceId::from("desk")]);
    let goodbye = phone
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Goodbye { .. }))
        .await
        .expect("the kicked device is told");
    let ServerEvent::Goodbye { reason } = goodbye else {
        unreachable!()
    };
    assert!(reason.contains("administrator (admin)"), "{reason}");
    // Its token is dead, on every server.
    let error = bob_phone
        .me()
        .await
        .expect_err("the kicked token still works");
    assert_eq!(error.code(), ErrorCode::Unauthorized.as_str(), "{error}");
    let error = bob_phone
        .get_presence(&alice)
        .await
        .expect_err("the kicked token still works");
    assert_eq!(error.code(), ErrorCode::Unauthorized.as_str(), "{error}");
    let reconnect = bob_phone.connect(None, &[Capability::Chat]).await;
    assert!(
        matches!(&reconnect, Err(ClientError::Api(api)) if api.error == ErrorCode::Unauthorized),
        "{:?}",
        reconnect.err()
    );
    sessions_until(&admin, &bob, |s| {
        s.devices
            .iter()
            .map(|d| d.device.as_str())
            .collect::<Vec<_>>()
            == ["desk"]
    })
    .await;
    // The other device keeps working.
    let alice_client = login(&s1, &alice, "laptop").await;
    let mut alice_conn = connect(&alice_client).await;
    alice_client
        .send_to_user(&bob, "after the kick")
        .await
        .unwrap();
    message_in(&mut desk, "after the kick").await;
    bob_desk.me().await.expect("the desk's token still works");
    let audit = admin.audit(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "user.kick" && e.detail == "bob device=phone server=s2"),
        "{audit:?}"
    );

    // ---- the presence viewer: alice has bob as a contact, carol shares a group with him,
    // ed has neither, the administrator is one.
    alice_client.put_contact(&bob, "team").await.unwrap();
    admin
        .create_group(CreateGroup {
            id: GroupId::from("ops"),
            display_name: None,
        })
        .await
        .unwrap();
    admin.add_member(&GroupId::from("ops"), &bob).await.unwrap();
    admin
        .add_member(&GroupId::from("ops"), &carol)
        .await
        .unwrap();
    bob_desk
        .set_presence(SetPresence {
            availability: Some(Availability::Busy),
            note: Some("in a meeting".into()),
            user: None,
        })
        .await
        .unwrap();
    // alice watches bob live: her client gets his change.
    let live = alice_conn
        .next_matching(WAIT, |e| {
            matches!(e, ServerEvent::Presence { presence } if presence.user == bob && presence.availability == Availability::Busy)
        })
        .await
        .expect("alice sees bob busy");
    let ServerEvent::Presence { presence: live } = live else {
        unreachable!()
    };

    let carol_client = login(&s1, &carol, "laptop").await;
    let ed_client = login(&s1, &ed, "laptop").await;
    let expected = [
        (
            &alice,
            &alice_client,
            VisibilityRule::Contact,
            Visibility::Full,
        ),
        (
            &carol,
            &carol_client,
            VisibilityRule::GroupMate,
            Visibility::Full,
        ),
        (&ed, &ed_client, VisibilityRule::Basic, Visibility::Basic),
    ];
    for (watcher, client, rule, visibility) in expected {
        let seen = admin.presence_inspection(&bob, watcher).await.unwrap();
        let own = client.get_presence(&bob).await.unwrap();
        assert_eq!(
            (seen.rule, seen.visibility),
            (rule, visibility),
            "{watcher}"
        );
        assert_eq!(
            seen.presence, own,
            "the viewer differs from {watcher}'s own client"
        );
        assert_eq!(seen.live, visibility == Visibility::Full, "{watcher}");
    }
    let seen_by_alice = admin.presence_inspection(&bob, &alice).await.unwrap();
    assert_eq!(seen_by_alice.presence.note.as_deref(), Some("in a meeting"));
    assert_eq!(seen_by_alice.presence.version, live.version);
    assert_eq!(seen_by_alice.presence.availability, live.availability);
    let seen_by_ed = admin.presence_inspection(&bob, &ed).await.unwrap();
    assert_eq!(seen_by_ed.presence.availability, Availability::Busy);
    assert_eq!(seen_by_ed.presence.note, None, "basic shows no note");
    let seen_by_admin = admin
        .presence_inspection(&bob, &UserId::from("admin"))
        .await
        .unwrap();
    assert_eq!(seen_by_admin.rule, VisibilityRule::Admin);
    let seen_by_self = admin.presence_inspection(&bob, &bob).await.unwrap();
    assert_eq!(seen_by_self.rule, VisibilityRule::SameUser);
    let unknown = admin
        .presence_inspection(&bob, &UserId::from("nobody"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), ErrorCode::NotFound.as_str());

    // ---- bob's watchers: alice (online, on s1) and carol (no device), not ed
    let watchers = admin.presence_watchers(&bob).await.unwrap();
    let rows: Vec<(&str, VisibilityRule, bool, Option<&str>)> = watchers
        .watchers
        .iter()
        .map(|w| {
            (
                w.user.as_str(),
                w.rule,
                w.online,
                w.server.as_ref().map(ServerId::as_str),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alice", VisibilityRule::Contact, true, Some("s1")),
            ("carol", VisibilityRule::GroupMate, false, None),
        ]
    );
    assert_eq!(watchers.watching_now, 1);
    // And alice's watchers, asked about a user served by s1: bob on s2 does not watch her
    // (she is not in his contacts, no group), so nobody.
    assert!(
        admin
            .presence_watchers(&alice)
            .await
            .unwrap()
            .watchers
            .is_empty()
    );

    // ---- over plain HTTP: a bad device name is refused and changes nothing
    let http = reqwest::Client::new();
    let status = http
        .delete(format!(
            "{}/api/v1/admin/users/bob/sessions/{}",
            s1.url(),
            "x".repeat(300)
        ))
        .bearer_auth(admin.token())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(admin.user_sessions(&bob).await.unwrap().devices.len(), 1);

    // ---- the same through `ucadmin`, with --json
    let sessions: UserSessions =
        serde_json::from_str(&ucadmin(&s1, &["user", "sessions", "bob", "--json"])).unwrap();
    assert_eq!(sessions.devices.len(), 1);
    assert_eq!(sessions.devices[0].device.as_str(), "desk");
    let seen: PresenceInspection = serde_json::from_str(&ucadmin(
        &s1,
        &["presence", "show", "bob", "--watcher", "carol", "--json"],
    ))
    .unwrap();
    assert_eq!(seen.rule, VisibilityRule::GroupMate);
    assert_eq!(
        seen.presence,
        carol_client.get_presence(&bob).await.unwrap()
    );
    let text = ucadmin(&s1, &["presence", "watchers", "bob"]);
    assert!(text.contains("alice") && text.contains("contact"), "{text}");
    let kicked: DeviceKicked =
        serde_json::from_str(&ucadmin(&s1, &["user", "kick", "bob", "desk", "--json"])).unwrap();
    assert!(kicked.devices_left.is_empty(), "{kicked:?}");
    desk.next_matching(WAIT, |e| matches!(e, ServerEvent::Goodbye { .. }))
        .await
        .expect("the desk is told");
    let failed = ucadmin_run(&s1, &["user", "kick", "bob", "desk"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.starts_with("error: not_found"), "{stderr}");
    drop((s1, s2, redis));
}

/// A delegate made by an administrator sees everything of the user, live, across servers, and
/// acts for them; taken away (through `ucadmin`), they see the basic view and act no more.
#[tokio::test]
async fn delegates_set_by_an_administrator_see_and_act_for_the_user() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("inspect_delegates");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    let boss = user(&admin, "boss", "s1", false).await;
    let sam = user(&admin, "sam", "s2", false).await;
    let boss_client = login(&s1, &boss, "desk").await;
    let sam_client = login(&s2, &sam, "desk").await;
    let _boss_conn = connect(&boss_client).await;
    let mut sam_conn = connect(&sam_client).await;
    let for_boss = |availability| SetPresence {
        availability: Some(availability),
        note: None,
        user: Some(boss.clone()),
    };

    let before = admin.presence_inspection(&boss, &sam).await.unwrap();
    assert_eq!((before.rule, before.live), (VisibilityRule::Basic, false));
    let refused = sam_client
        .set_presence(for_boss(Availability::Away))
        .await
        .unwrap_err();
    assert!(refused.is(ErrorCode::Forbidden), "{refused}");

    assert_eq!(
        admin.add_delegate(&boss, &sam).await.unwrap(),
        vec![sam.clone()]
    );
    let seen = admin.presence_inspection(&boss, &sam).await.unwrap();
    assert_eq!(
        (seen.rule, seen.visibility, seen.live),
        (VisibilityRule::Delegate, Visibility::Full, true)
    );
    let watchers = admin.presence_watchers(&boss).await.unwrap();
    assert!(
        watchers
            .watchers
            .iter()
            .any(|w| w.user == sam && w.rule == VisibilityRule::Delegate),
        "{watchers:?}"
    );
    // sam (served by s2) gets boss's changes live, note included, and acts for him.
    boss_client
        .set_presence(SetPresence {
            availability: Some(Availability::Busy),
            note: Some("board meeting".into()),
            user: None,
        })
        .await
        .unwrap();
    sam_conn
        .next_matching(WAIT, |e| {
            matches!(e, ServerEvent::Presence { presence } if presence.user == boss
                && presence.availability == Availability::Busy
                && presence.note.as_deref() == Some("board meeting"))
        })
        .await
        .expect("sam sees boss busy, with the note");
    sam_client
        .set_presence(for_boss(Availability::Away))
        .await
        .unwrap();
    // Set at boss's server (s1) on sam's behalf, over the bus: it shows there a moment later.
    let asked = std::time::Instant::now();
    while boss_client.get_presence(&boss).await.unwrap().availability != Availability::Away {
        assert!(asked.elapsed() < WAIT, "boss shows away, as sam set him");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad requests change nothing.
    let own = admin.add_delegate(&boss, &boss).await.unwrap_err();
    assert!(own.is(ErrorCode::BadRequest), "{own}");
    let nobody = admin
        .add_delegate(&boss, &UserId::from("nobody"))
        .await
        .unwrap_err();
    assert!(nobody.is(ErrorCode::NotFound), "{nobody}");
    assert_eq!(admin.delegates(&boss).await.unwrap(), vec![sam.clone()]);
    let audit = admin.audit(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "user.delegate.add" && e.detail == "boss sam"),
        "{audit:?}"
    );

    // Through `ucadmin`: listed, then taken away.
    let listed: Vec<UserId> =
        serde_json::from_str(&ucadmin(&s1, &["user", "delegates", "boss", "--json"])).unwrap();
    assert_eq!(listed, vec![sam.clone()]);
    let text = ucadmin(&s1, &["user", "delegate-remove", "boss", "sam"]);
    assert!(text.contains("nobody acts for boss"), "{text}");
    let after = admin.presence_inspection(&boss, &sam).await.unwrap();
    assert_eq!((after.rule, after.live), (VisibilityRule::Basic, false));
    let refused = sam_client
        .set_presence(for_boss(Availability::Available))
        .await
        .unwrap_err();
    assert!(refused.is(ErrorCode::Forbidden), "{refused}");
    drop((s1, s2, redis));
}
