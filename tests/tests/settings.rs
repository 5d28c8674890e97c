//! Runtime settings (`ucserver/src/settings/`) against two UCServers on a real Redis and
//! PostgreSQL: a change made at one server is applied live by both (each confirms it in the
//! admin API) and counts at once — lowered rate limits refuse the next send and the next new
//! conversation on both servers, with no restart; a per-server override and its removal; a
//! refused value (reason given, nothing changes anywhere); an edit from an old version gets
//! `409 conflict` naming who changed it. Then the local cache: with PostgreSQL stopped a
//! server keeps the values it applied (the outbox bound and the send limit still hold), and
//! restarted while PostgreSQL is still down it starts on them; when PostgreSQL returns it
//! reads SQL again, which wins.

use serde_json::json;
use shared::UserId;
use shared::api::{CreateConversation, ErrorCode, SettingsView};
use std::time::{Duration, Instant};
use switchboard_tests::chat::{create_users, login};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, ClientError};

const PASSWORD: &str = "password-123";

/// How long every server may take to apply a change (a notification, else the 5 s re-check).
const APPLY_WITHIN: Duration = Duration::from_secs(10);

/// Waits until every server says it runs with what it should (`applied` for every setting
/// on every server, and the latest revision); returns the view and how long that took.
async fn all_applied(admin: &AdminClient, servers: usize) -> (SettingsView, Duration) {
    let started = Instant::now();
    loop {
        let view = admin.settings().await.expect("settings");
        let done = view.servers.len() == servers
            && view
                .servers
                .iter()
                .all(|s| s.revision == Some(view.revision))
            && view
                .settings
                .iter()
                .all(|setting| setting.servers.iter().all(|on| on.applied));
        if done {
            return (view, started.elapsed());
        }
        assert!(
            started.elapsed() < APPLY_WITHIN,
            "not applied everywhere within {APPLY_WITHIN:?}: {view:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What server `server` runs with for `key`, as it reported it.
fn running(view: &SettingsView, key: &str, server: &str) -> serde_json::Value {
    let setting = view.settings.iter().find(|s| s.key == key).unwrap();
    let on = setting
        .servers
        .iter()
        .find(|on| on.server.as_str() == server)
        .unwrap();
    on.running.clone().unwrap()
}

/// Sends to `to` until refused; returns how many were accepted and the refusal.
async fn sends_until_refused(client: &Client, to: &UserId, most: u32) -> (u32, ClientError) {
    for accepted in 0..most {
        if let Err(error) = client.send_to_user(to, &format!("m{accepted}")).await {
            return (accepted, error);
        }
    }
    panic!("{most} sends, none refused");
}

/// A log without its colours (ANSI escape sequences).
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn code(error: &ClientError) -> Option<ErrorCode> {
    error.api().map(|api| api.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_applied_live_by_both_servers_and_counts_at_once() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("settings_live");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    create_users(&admin, &["alice"], PASSWORD, Some("s1")).await;
    create_users(&admin, &["bob"], PASSWORD, Some("s2")).await;
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));

    // At first every server runs with its configuration and says so.
    let (view, _) = all_applied(&admin, 2).await;
    assert_eq!(view.revision, 0);
    assert_eq!(running(&view, "rate_send_burst", "s2"), json!(500));
    let ring = view
        .settings
        .iter()
        .find(|s| s.key == "ring_timeout_ms")
        .unwrap();
    assert!(ring.applies_live && ring.restart.is_none());
    assert!(ring.servers.iter().all(|on| on.source == "default"));

    // A refused value changes nothing anywhere and says why.
    for (key, value, reason) in [
        ("rate_send_burst", json!("many"), "whole number"),
        ("ring_timeout_ms", json!(10), "between 1000 and 600000"),
        ("no_such_setting", json!(1), "no setting"),
    ] {
        let error = admin.set_setting(key, value, None, None).await.unwrap_err();
        let api = error.api().unwrap();
        assert!(
            matches!(api.error, ErrorCode::BadRequest | ErrorCode::NotFound)
                && api.message.contains(reason),
            "{key}: {api:?}"
        );
    }
    let unknown_server = admin
        .set_setting("rate_send_burst", json!(3), Some("s9"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&unknown_server), Some(ErrorCode::BadRequest));
    let (view, _) = all_applied(&admin, 2).await;
    assert_eq!(view.revision, 0, "refused values made no revision");
    assert_eq!(running(&view, "rate_send_burst", "s1"), json!(500));

    // Lower limits at s1's API: both servers apply them and confirm, no restart.
    for (key, value) in [
        ("rate_send_per_minute", 1),
        ("rate_send_burst", 3),
        ("rate_conversations_per_minute", 1),
        ("rate_conversations_burst", 1),
    ] {
        admin
            .set_setting(key, json!(value), None, None)
            .await
            .unwrap();
    }
    let (view, took) = all_applied(&admin, 2).await;
    eprintln!("four changes applied on both servers {took:?} after the last");
    for server in ["s1", "s2"] {
        assert_eq!(running(&view, "rate_send_burst", server), json!(3));
    }
    // ... and they count at once on both: alice is served by s1, bob by s2.
    let alice_client = login(&s1, "alice", PASSWORD, "desk").await;
    let bob_client = login(&s2, "bob", PASSWORD, "desk").await;
    for (client, to) in [(&alice_client, &bob), (&bob_client, &alice)] {
        let (accepted, refusal) = sends_until_refused(client, to, 20).await;
        assert_eq!(accepted, 3, "the burst of 3 holds");
        assert_eq!(code(&refusal), Some(ErrorCode::RateLimited));
        let conversation = |name: &str| CreateConversation {
            name: name.into(),
            members: vec![to.clone()],
        };
        client
            .create_conversation(conversation("one"))
            .await
            .unwrap();
        let refused = client
            .create_conversation(conversation("two"))
            .await
            .unwrap_err();
        assert_eq!(code(&refused), Some(ErrorCode::RateLimited));
    }

    // An override for s2 alone; s1 keeps the global value.
    let stored = admin
        .set_setting("rate_send_burst", json!(6), Some("s2"), Some(0))
        .await
        .unwrap();
    assert_eq!((stored.scope.as_str(), stored.version), ("s2", 1));
    let (view, _) = all_applied(&admin, 2).await;
    assert_eq!(running(&view, "rate_send_burst", "s1"), json!(3));
    assert_eq!(running(&view, "rate_send_burst", "s2"), json!(6));
    let burst = view
        .settings
        .iter()
        .find(|s| s.key == "rate_send_burst")
        .unwrap();
    assert_eq!(burst.overrides.len(), 1);
    assert_eq!(
        burst
            .servers
            .iter()
            .map(|on| on.source.as_str())
            .collect::<Vec<_>>(),
        ["global", "server"]
    );
    let bob_phone = login(&s2, "bob", PASSWORD, "phone").await;
    let (accepted, _) = sends_until_refused(&bob_phone, &alice, 20).await;
    assert_eq!(accepted, 6, "s2 runs with its override at once");

    // An edit from an old version is refused, naming who changed it; nothing changes.
    let stale = admin
        .set_setting("rate_send_burst", json!(9), Some("s2"), Some(0))
        .await
        .unwrap_err();
    let api = stale.api().unwrap();
    assert_eq!(api.error, ErrorCode::Conflict);
    assert!(api.message.contains("by 'admin'"), "{}", api.message);
    let current = api.current.as_ref().unwrap();
    assert_eq!(
        (
            current.version,
            current.changed_by.as_ref().map(UserId::as_str)
        ),
        (1, Some("admin"))
    );

    // The override removed (at s2's API this time): s2 is back on the global value.
    let admin2 = AdminClient::login(&s2.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    admin2.unset_setting("rate_send_burst", "s2").await.unwrap();
    let (view, _) = all_applied(&admin2, 2).await;
    assert_eq!(running(&view, "rate_send_burst", "s2"), json!(3));
    let missing = admin2
        .unset_setting("rate_send_burst", "s2")
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(ErrorCode::NotFound));
    let audit = admin.audit(100).await.unwrap();
    assert!(
        audit.iter().any(|entry| entry.action == "setting.set"
            && entry.detail.contains("rate_send_burst = 6 (s2)")),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_settings_while_the_database_is_away() {
    // A PostgreSQL of its own, to stop.
    let postgres = Postgres::start();
    let database = postgres.create_database("settings_cache");
    let mut s1 = UcServer::start("s1", &database, None, &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    create_users(&admin, &["alice", "bob"], PASSWORD, Some("s1")).await;
    for (key, value) in [
        ("rate_send_per_minute", 1),
        ("rate_send_burst", 5),
        ("outbox_max_messages", 2),
    ] {
        admin
            .set_setting(key, json!(value), None, None)
            .await
            .unwrap();
    }
    all_applied(&admin, 1).await;
    let alice = login(&s1, "alice", PASSWORD, "desk").await;
    let phone = login(&s1, "alice", PASSWORD, "phone").await;
    let bob = UserId::from("bob");
    alice.send_to_user(&bob, "before").await.unwrap();

    postgres.stop();
    // Longer than the settings task's re-check: it finds SQL away and keeps what it had.
    tokio::time::sleep(Duration::from_secs(7)).await;
    // The outbox takes two messages (its bound, set live), then refuses.
    alice.send_to_user(&bob, "kept 1").await.unwrap();
    alice.send_to_user(&bob, "kept 2").await.unwrap();
    let full = alice.send_to_user(&bob, "kept 3").await.unwrap_err();
    assert_eq!(code(&full), Some(ErrorCode::ServerUnavailable), "{full}");
    // The send limit still holds: another device gets its burst of 5 and no more (the
    // outbox refuses them, but the rate limit is checked first).
    let (accepted, refusal) = sends_until_refused(&phone, &bob, 20).await;
    assert!(
        accepted == 0 && code(&refusal) == Some(ErrorCode::ServerUnavailable),
        "the full outbox refuses the first: {refusal}"
    );
    let mut limited = None;
    for attempt in 0..20 {
        match phone.send_to_user(&bob, "again").await {
            Err(error) if code(&error) == Some(ErrorCode::RateLimited) => {
                limited = Some(attempt);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(limited, Some(4), "5 attempts in all, then rate_limited");
    assert!(
        s1.log().contains("settings cannot be read from SQL"),
        "{}",
        s1.log()
    );

    // Restarted while the database is still away, it starts on its cache.
    s1.kill9();
    let log_before = std::fs::read_to_string(s1.log_path()).unwrap().len();
    s1.restart_without_database();
    let restarted = || plain(&std::fs::read_to_string(s1.log_path()).unwrap()[log_before..]);
    until_logged(&restarted, "running on the cached settings", 10).await;
    let log = restarted();
    assert!(
        log.contains("starting without it, on the cached settings"),
        "{log}"
    );
    for (key, value) in [("outbox_max_messages", 2), ("rate_send_burst", 5)] {
        assert!(
            log.lines().any(|line| line.contains("setting applied")
                && line.contains(&format!("key={key}"))
                && line.contains(&format!("value={value}"))),
            "{key}={value} from the cache: {log}"
        );
    }

    // The database returns: SQL wins, and a change made there counts.
    postgres.restart();
    let started = Instant::now();
    let admin = loop {
        match AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD).await {
            Ok(admin) => break admin,
            Err(error) if started.elapsed() < Duration::from_secs(15) => {
                eprintln!("sign-in after the database returned: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("no sign-in after the database returned: {error}"),
        }
    };
    admin
        .set_setting("rate_send_burst", json!(7), None, None)
        .await
        .unwrap();
    let (view, _) = all_applied(&admin, 1).await;
    assert_eq!(running(&view, "rate_send_burst", "s1"), json!(7));
    assert_eq!(running(&view, "outbox_max_messages", "s1"), json!(2));
    // What the start left for SQL (its registration) is done in the background.
    until_logged(&restarted, "registered: the database answers again", 15).await;
}

/// Waits (polling, at most `limit_secs`) until `log()` contains `text`.
async fn until_logged(log: &impl Fn() -> String, text: &str, limit_secs: u64) {
    let started = Instant::now();
    while !log().contains(text) {
        assert!(
            started.elapsed() < Duration::from_secs(limit_secs),
            "no '{text}' in: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
