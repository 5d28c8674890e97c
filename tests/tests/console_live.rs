//! What keeps the admin console current, against two UCServers sharing a real Redis and
//! PostgreSQL: the live channel (`/api/v1/admin/events`) tells a console on one server what an
//! administrator changed through the other, at once, and which server was found dead; it is
//! open to read-only administrators, closed to everyone else, and closes on a frame it does not
//! understand. The charts' history (`/api/v1/admin/history`) fills with each server's own
//! samples, whose counters move with the traffic; the overview carries each server's load.

use shared::api::{AdminRole, CreateUser, UpdateUser};
use shared::console::AdminEvent;
use shared::{ServerId, UserId};
use std::time::{Duration, Instant};
use switchboard_tests::chat::{create_users, login};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ucclient::{AdminClient, AdminEvents};

const PASSWORD: &str = "console-pass-1";
/// Far more than any step needs; a step that takes this long has failed.
const PATIENCE: Duration = Duration::from_secs(20);

/// The next `change` or `server_down` event (pongs and resyncs skipped).
async fn next_news(events: &mut AdminEvents) -> AdminEvent {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an event in time")
            .expect("the channel works")
            .expect("the channel is open");
        if matches!(
            event,
            AdminEvent::Change { .. } | AdminEvent::ServerDown { .. }
        ) {
            return event;
        }
    }
}

async fn opened(admin: &AdminClient) -> AdminEvents {
    let mut events = admin.events().await.expect("the live channel opens");
    let hello = tokio::time::timeout(PATIENCE, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(hello, AdminEvent::Hello { .. }), "{hello:?}");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consoles_learn_of_changes_at_once_and_the_charts_fill() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("console_live");
    let fast = [("UC_STATS_SAMPLE_MS", "300")];
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &fast);
    let mut s2 = UcServer::start("s2", &database, Some(&redis.url()), &fast);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    admin
        .create_user(CreateUser {
            id: UserId::from("helpdesk"),
            password: PASSWORD.into(),
            display_name: None,
            home_server: None,
            admin: true,
        })
        .await
        .unwrap();
    admin
        .update_user(
            &UserId::from("helpdesk"),
            UpdateUser {
                role: Some(AdminRole::ReadOnly),
                ..UpdateUser::default()
            },
        )
        .await
        .unwrap();

    // A read-only administrator watches through s2; the full one changes things through s1.
    let helpdesk = AdminClient::login(&s2.url(), &UserId::from("helpdesk"), PASSWORD)
        .await
        .unwrap();
    let mut watching = opened(&helpdesk).await;
    create_users(&admin, &["carol"], PASSWORD, Some("s2")).await;
    match next_news(&mut watching).await {
        AdminEvent::Change { server, entry } => {
            assert_eq!(server, ServerId::from("s1"), "made through s1");
            assert_eq!(
                (entry.actor.as_str(), entry.action.as_str()),
                ("admin", "user.create")
            );
            assert!(entry.detail.contains("carol"), "{entry:?}");
        }
        other => panic!("expected the creation of carol, got {other:?}"),
    }
    // The watcher's own write is refused and announces nothing; the next news is the
    // full administrator's.
    let refused = helpdesk
        .update_user(
            &UserId::from("carol"),
            UpdateUser {
                display_name: Some("Carol C".into()),
                ..UpdateUser::default()
            },
        )
        .await
        .unwrap_err();
    assert!(refused.is(shared::api::ErrorCode::Forbidden), "{refused}");
    admin
        .update_user(
            &UserId::from("carol"),
            UpdateUser {
                display_name: Some("Carol Carter".into()),
                ..UpdateUser::default()
            },
        )
        .await
        .unwrap();
    match next_news(&mut watching).await {
        AdminEvent::Change { entry, .. } => {
            assert_eq!(entry.action, "user.update");
            assert!(entry.detail.contains("carol"), "{entry:?}");
        }
        other => panic!("expected the update of carol, got {other:?}"),
    }
    // A ping is answered.
    watching.ping().await.unwrap();
    let pong = loop {
        let event = tokio::time::timeout(PATIENCE, watching.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !matches!(event, AdminEvent::Change { .. }) {
            break event;
        }
    };
    assert_eq!(pong, AdminEvent::Pong);

    // Someone who is not an administrator is refused the channel.
    create_users(&admin, &["alice"], PASSWORD, Some("s1")).await;
    let alice = login(&s1, "alice", PASSWORD, "desk").await;
    let url = format!(
        "{}/api/v1/admin/events?token={}",
        s1.url().replace("http://", "ws://"),
        alice.token()
    );
    match tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a user's token must be refused: {:?}", other.map(|_| ())),
    }

    // A frame that is not a ping closes the channel; nothing else breaks.
    let mut rude = opened(&admin).await;
    rude.send_raw(r#"{"type":"delete_everything"}"#)
        .await
        .unwrap();
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match rude.next().await {
                Ok(Some(AdminEvent::Change { .. } | AdminEvent::Pong)) => continue,
                Ok(Some(other)) => break Some(other),
                Ok(None) | Err(_) => break None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(ended, None, "the channel is closed");

    // The charts: both servers' samples, whose delivery counter moves with the traffic.
    let carol = login(&s2, "carol", PASSWORD, "desk").await;
    let chat = [shared::presence::Capability::Chat];
    let _alice_online = alice.connect(None, &chat).await.unwrap();
    let carol_online = carol.connect(None, &chat).await.unwrap();
    let carol_id = UserId::from("carol");
    for n in 0..5 {
        alice
            .send_to_user(&carol_id, &format!("hello {n}"))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let history = loop {
        let history = admin.history().await.unwrap();
        let delivered = history
            .servers
            .iter()
            .find(|s| s.server == ServerId::from("s2"))
            .and_then(|s| s.samples.last())
            .map_or(0, |sample| sample.stats.messages_delivered);
        let both = history
            .servers
            .iter()
            .filter(|s| s.samples.len() >= 3)
            .count();
        if both == 2 && delivered >= 5 {
            break history;
        }
        let last: Vec<_> = history
            .servers
            .iter()
            .map(|s| (&s.server, s.samples.len(), s.samples.last()))
            .collect();
        assert!(started.elapsed() < PATIENCE, "{last:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(history.sample_ms, 300);
    assert_eq!(history.note, None);
    for server in &history.servers {
        let samples = &server.samples;
        assert!(
            samples.windows(2).all(|pair| pair[0].at_ms < pair[1].at_ms),
            "oldest first: {samples:?}"
        );
        let last = samples.last().unwrap();
        assert!(last.stats.resident_bytes > 0, "{last:?}");
        assert!(last.devices >= 1, "each has a device online: {last:?}");
    }
    let overview = admin.overview().await.unwrap();
    for server in &overview.servers {
        let stats = server.stats.as_ref().expect("a live server's load");
        assert!(stats.resident_bytes > 0, "{server:?}");
    }
    drop((carol, carol_online));

    // A server found dead is news for the consoles of the others.
    let mut on_s1 = opened(&admin).await;
    s2.kill9();
    let started = Instant::now();
    loop {
        match next_news(&mut on_s1).await {
            AdminEvent::ServerDown { server, by } => {
                assert_eq!((server.as_str(), by.as_str()), ("s2", "s1"));
                break;
            }
            _ => assert!(started.elapsed() < PATIENCE),
        }
    }
    // Its history stays in the charts for the hour.
    let history = admin.history().await.unwrap();
    assert!(
        history
            .servers
            .iter()
            .any(|s| s.server == ServerId::from("s2") && s.samples.len() >= 3),
        "{history:?}"
    );
}
