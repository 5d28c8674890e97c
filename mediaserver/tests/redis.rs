//! The MediaServer's cluster presence against a real Redis (Debian's `redis-server`, started
//! by the test on a free loopback port): heartbeat records, published leg events, and the
//! heartbeat coming back after Redis restarts.

mod support;

use fred::prelude::*;
use shared::keys;
use shared::media::{MediaEvent, MediaServerStatus};
use std::time::Duration;
use ucclient::peer::{ClientPeer, PeerOptions};

async fn redis_client(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    for _ in 0..50 {
        if client.init().await.is_ok() {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("redis at {url} did not come up");
}

async fn heartbeat_record(client: &Client, id: &str) -> Option<MediaServerStatus> {
    let seen: Option<f64> = client.zscore(keys::MEDIA_SEEN, id).await.ok()?;
    seen?;
    let json: Option<String> = client.hget(keys::MEDIA_INFO, id).await.ok()?;
    serde_json::from_str(&json?).ok()
}

async fn wait_for_heartbeat(
    client: &Client,
    id: &str,
    timeout: Duration,
) -> Option<MediaServerStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(record) = heartbeat_record(client, id).await {
            return Some(record);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_events_reach_redis_and_survive_a_restart() {
    // Every step below has its own bound; this one catches a hang anywhere else.
    tokio::time::timeout(Duration::from_secs(180), heartbeat_scenario())
        .await
        .expect("the Redis scenario did not finish within 180 s");
}

async fn heartbeat_scenario() {
    support::init_logging();
    let mut redis = switchboard_tests::Redis::start();
    let client = redis_client(&redis.url()).await;

    let subscriber = Builder::from_config(Config::from_url(&redis.url()).unwrap())
        .build_subscriber_client()
        .unwrap();
    subscriber.init().await.unwrap();
    let mut messages = subscriber.message_rx();
    subscriber
        .subscribe(keys::MEDIA_EVENTS_CHANNEL)
        .await
        .unwrap();

    let mut config = support::test_config("media-redis");
    config.redis_url = Some(redis.url());
    config.connect_timeout = Duration::from_millis(1500);
    let server = mediaserver::start(config).await.unwrap();

    let record = wait_for_heartbeat(&client, "media-redis", Duration::from_secs(10))
        .await
        .expect("heartbeat in Redis");
    assert_eq!(record.media_addr, server.media_addr.to_string());
    assert_eq!(record.control_url, server.control_url());
    assert_eq!(record.incarnation.len(), 16);
    assert_eq!(record.legs, 0);

    // A leg whose client never answers fails; the event is published as JSON.
    let control = support::Control::new(&server);
    let mut ghost = ClientPeer::new(PeerOptions::default()).await.unwrap();
    let offer = ghost.create_offer(Duration::from_secs(10)).await.unwrap();
    control.add_leg("call-r", "ghost", offer).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), messages.recv())
        .await
        .expect("event in time")
        .unwrap();
    let text: String = message.value.convert().unwrap();
    let event: MediaEvent = serde_json::from_str(&text).unwrap();
    assert!(
        matches!(event, MediaEvent::Failed { ref leg, .. } if leg == "ghost"),
        "{event:?}"
    );

    // Redis goes away and comes back empty: the server keeps answering and re-registers.
    let _ = subscriber.quit().await;
    let _ = client.quit().await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(control.status().await.unwrap().legs, 0);
    redis.restart();
    let client = redis_client(&redis.url()).await;
    let again = wait_for_heartbeat(&client, "media-redis", Duration::from_secs(20))
        .await
        .expect("heartbeat resumes");
    assert_eq!(
        again.incarnation, record.incarnation,
        "same process, same incarnation"
    );

    ghost.close().await;
    server.shutdown().await;
    let _ = client.quit().await;
}
