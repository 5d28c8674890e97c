//! `/metrics` of a real `ucserver` process (on Redis and PostgreSQL) read the way Prometheus
//! reads it: every latency is a histogram with cumulative `_bucket{le=...}` samples, `_sum`
//! and `_count`, and the counts grow with traffic.

use shared::api::SetPresence;
use shared::presence::{Availability, Capability};
use shared::ws::ServerEvent;
use shared::{DeviceId, UserId};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client};

const PASSWORD: &str = "password-1";
const WAIT: Duration = Duration::from_secs(15);

/// The histograms `/metrics` must have, each with at least one observation after traffic.
const HISTOGRAMS: [&str; 5] = [
    "uc_http_request_duration_seconds",
    "uc_chat_delivery_seconds",
    "uc_presence_fan_out_seconds",
    "uc_redis_latency_seconds",
    "uc_sql_latency_seconds",
];

/// One sample line: metric name, labels (sorted), value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition (OpenMetrics or Prometheus 0.0.4) into samples, checking the
/// syntax of every line on the way.
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inside = rest.strip_suffix('}').expect("labels end with }");
                let labels = inside
                    .split(',')
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect("label=value");
                        let value = value
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted label value");
                        (key.to_string(), value.to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (samples, types)
}

/// Count of one histogram summed over its label sets, after checking its shape: per label
/// set, buckets ascend by `le` and never decrease, the `+Inf` bucket equals `_count`, and
/// `_sum` is there.
fn histogram_count(samples: &[Sample], name: &str) -> f64 {
    let without_le = |labels: &BTreeMap<String, String>| {
        let mut labels = labels.clone();
        labels.remove("le");
        labels
    };
    let mut buckets: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
    {
        let le = &sample.labels["le"];
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        buckets
            .entry(without_le(&sample.labels))
            .or_default()
            .push((le, sample.value));
    }
    assert!(!buckets.is_empty(), "{name} has no _bucket samples");
    let mut total = 0.0;
    for (labels, series) in buckets {
        assert!(series.len() > 2, "{name}{labels:?}: too few buckets");
        assert!(
            series
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{labels:?}: buckets not cumulative: {series:?}"
        );
        let (last_le, last_count) = *series.last().unwrap();
        assert_eq!(last_le, f64::INFINITY, "{name}{labels:?}: no +Inf bucket");
        let find = |suffix: &str| {
            samples
                .iter()
                .find(|s| s.name == format!("{name}_{suffix}") && s.labels == labels)
                .unwrap_or_else(|| panic!("{name}_{suffix}{labels:?} missing"))
                .value
        };
        assert_eq!(find("count"), last_count, "{name}{labels:?}");
        assert!(find("sum") >= 0.0);
        assert_eq!(labels.get("server").map(String::as_str), Some("s1"));
        total += last_count;
    }
    total
}

async fn scrape(url: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    parse(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_histograms_that_grow_with_traffic() {
    let redis = Redis::start();
    let database_url = Postgres::shared().create_database("metrics");
    let server = UcServer::start("s1", &database_url, Some(&redis.url()), &[]);
    let admin = AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    switchboard_tests::chat::create_users(&admin, &["alice", "bob"], PASSWORD, Some("s1")).await;
    let (before, types) = scrape(&server.url()).await;
    for name in HISTOGRAMS {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some("histogram"),
            "{name}"
        );
    }
    let counts_before: Vec<f64> = HISTOGRAMS
        .iter()
        .map(|name| {
            if before.iter().any(|s| s.name == format!("{name}_bucket")) {
                histogram_count(&before, name)
            } else {
                0.0 // nothing observed yet in a family with labels (HTTP)
            }
        })
        .collect();

    // Traffic: logins, a WebSocket each, bob watching alice, a presence change, a message.
    let alice = Client::login(
        &server.url(),
        &UserId::from("alice"),
        PASSWORD,
        Some(DeviceId::from("desk")),
    )
    .await
    .unwrap();
    let bob = Client::login(
        &server.url(),
        &UserId::from("bob"),
        PASSWORD,
        Some(DeviceId::from("desk")),
    )
    .await
    .unwrap();
    bob.put_contact(alice.user(), "").await.unwrap();
    let _alice_socket = alice.connect(None, &[Capability::Chat]).await.unwrap();
    let mut bob_socket = bob.connect(None, &[Capability::Chat]).await.unwrap();
    alice
        .set_presence(SetPresence {
            availability: Some(Availability::Busy),
            ..SetPresence::default()
        })
        .await
        .unwrap();
    alice.send_to_user(bob.user(), "hello").await.unwrap();
    bob_socket
        .next_matching(WAIT, |e| matches!(e, ServerEvent::Message { .. }))
        .await
        .unwrap();

    let (after, _) = scrape(&server.url()).await;
    for (name, before) in HISTOGRAMS.iter().zip(counts_before) {
        let after = histogram_count(&after, name);
        assert!(after > before, "{name}: {before} -> {after}");
    }
    // Routes are labelled by their template, never by a user's name.
    let routes: Vec<&str> = after
        .iter()
        .filter(|s| s.name == "uc_http_request_duration_seconds_count")
        .map(|s| s.labels["route"].as_str())
        .collect();
    assert!(routes.contains(&"/api/v1/contacts/{user}"), "{routes:?}");
    assert!(routes.contains(&"/api/v1/login"), "{routes:?}");
    assert!(
        after.iter().all(|s| s
            .labels
            .values()
            .all(|v| !v.contains("alice") && !v.contains("bob"))),
        "a label names a user"
    );
    // The counters keep the names tests and benchmarks read.
    let value = |name: &str| {
        after
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .value
    };
    assert!(value("uc_logins_total") >= 2.0);
    assert!(value("uc_messages_stored_total") >= 1.0);
    assert_eq!(value("uc_devices"), 2.0);
    assert_eq!(types.get("uc_logins").map(String::as_str), Some("counter"));
}
