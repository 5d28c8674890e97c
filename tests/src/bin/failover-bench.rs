//! The failover benchmark: how long the devices of a killed UCServer wait until a backup
//! serves them again, how long their watchers see them offline, and whether any message to
//! them is lost or shown twice. Not a test: it prints one JSON object.
//!
//! Loopback only: one Redis, a PostgreSQL of its own and UCServers `s1`..`s3` from the harness,
//! with the default failure detection (heartbeat 1 s, dead after 4 s) and no fallback (so the
//! devices stay on their backups). `--users U` users homed on `s2`, each with `--devices N / U`
//! listening devices ([`Device`]: reconnects through `ucclient`'s failover, shows messages
//! through `ucclient::Inbox`), and a watcher on `s1` who has every one of them as a contact
//! and writes each of them a message every `--every-ms` from a second before the kill until
//! every device is served again, and twice after. Then `s2` is killed with SIGKILL.
//!
//! Measured from the kill: per device, until it is connected to another server (its `hello`
//! came); per user, how long the watcher saw them offline (polled every 200 ms) and when they
//! were online again. Afterwards every device must show every message to its user once.
//!
//! `cargo run -p switchboard-tests --bin failover-bench -- [--devices N] [--users U]`
//! (defaults 1000 and 50). Build the workspace binaries first (the servers are the `ucserver`
//! next to this one; a release build of the workspace measures the servers as deployed).
//! Progress goes to stderr.

use serde_json::json;
use shared::api::{CreateUser, SendMessage};
use shared::presence::Availability;
use shared::{ConversationId, UserId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_tests::device::Device;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, HttpClient, new_client_id};

const PASSWORD: &str = "failover-bench-pw";
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(120);
const USAGE: &str = "usage: failover-bench [--devices N] [--users U] [--every-ms MS]";

struct Options {
    devices: usize,
    users: usize,
    every: Duration,
}

fn options() -> Options {
    let mut options = Options {
        devices: 1000,
        users: 50,
        every: Duration::from_millis(500),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value: Option<u64> = args.next().and_then(|v| v.parse().ok());
        match (arg.as_str(), value) {
            ("--devices", Some(n)) if n >= 1 => options.devices = n as usize,
            ("--users", Some(n)) if n >= 1 => options.users = n as usize,
            ("--every-ms", Some(n)) if n >= 50 => options.every = Duration::from_millis(n),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    options.users = options.users.min(options.devices);
    options
}

fn log(start: Instant, text: &str) {
    eprintln!(
        "failover-bench {:6.1}s: {text}",
        start.elapsed().as_secs_f64()
    );
}

/// p50, p99 and max of durations, in ms.
fn percentiles(mut values: Vec<Duration>) -> serde_json::Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort();
    let at = |q: f64| {
        let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        values[index].as_millis() as u64
    };
    json!({"p50": at(0.50), "p99": at(0.99), "max": at(1.0), "count": values.len()})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let options = options();
    let start = Instant::now();
    let redis = Redis::start();
    let postgres = Postgres::start();
    let database = postgres.create_database("failoverbench");
    let extra = [
        ("UC_FALLBACK_DELAY_MS", "off"),
        ("UC_RATE_SEND_PER_MINUTE", "100000"),
        ("UC_RATE_SEND_BURST", "10000"),
    ];
    let mut servers: Vec<UcServer> = ["s1", "s2", "s3"]
        .iter()
        .map(|id| UcServer::start(id, &database, Some(&redis.url()), &extra))
        .collect();
    let admin = AdminClient::login(&servers[0].url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    let users: Vec<UserId> = (0..options.users)
        .map(|i| UserId::new(format!("u{i:04}")))
        .collect();
    for user in users
        .iter()
        .chain(std::iter::once(&UserId::from("watcher")))
    {
        let home = if user.as_str() == "watcher" {
            "s1"
        } else {
            "s2"
        };
        admin
            .create_user(CreateUser {
                id: user.clone(),
                password: PASSWORD.into(),
                display_name: None,
                home_server: Some(home.into()),
                admin: false,
            })
            .await
            .expect("create user");
    }
    log(start, &format!("{} users created", users.len()));
    let http = HttpClient::new().expect("http client");
    let watcher = Client::login_with(
        &http,
        &servers[0].url(),
        &UserId::from("watcher"),
        PASSWORD,
        None,
    )
    .await
    .expect("watcher login");
    for user in &users {
        watcher.put_contact(user, "bench").await.expect("contact");
    }
    let mut clients = Vec::new();
    for user in &users {
        let client = Client::login_with(&http, &servers[0].url(), user, PASSWORD, None)
            .await
            .expect("login");
        clients.push(client);
    }
    let per_user = options.devices.div_ceil(options.users);
    let mut devices: Vec<(usize, Device)> = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        for d in 0..per_user {
            if devices.len() == options.devices {
                break;
            }
            devices.push((index, Device::start(client, &format!("d{d}")).await));
        }
    }
    log(start, &format!("{} devices connected to s2", devices.len()));
    // Every server knows every other before anything fails.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The watcher writes every user, from a second before the kill until all are served.
    let sent: Arc<Mutex<Vec<Vec<String>>>> = Arc::new(Mutex::new(vec![Vec::new(); users.len()]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (watcher, users, sent, stop) =
            (watcher.clone(), users.clone(), sent.clone(), stop.clone());
        let every = options.every;
        tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (index, user) in users.iter().enumerate() {
                    let body = format!("r{round} to {user}");
                    let request = SendMessage {
                        to: Some(user.clone()),
                        conversation: None,
                        body: body.clone(),
                        client_id: Some(new_client_id()),
                    };
                    let started = Instant::now();
                    while let Err(error) = watcher.send_message(request.clone()).await {
                        assert!(started.elapsed() < WAIT, "{body} not accepted: {error}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    sent.lock().unwrap()[index].push(body);
                }
                round += 1;
                tokio::time::sleep(every).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    log(start, "killing s2");
    let killed = Instant::now();
    servers[1].kill9();
    let mut served: Vec<Option<Duration>> = vec![None; devices.len()];
    let mut offline_since: Vec<Option<Instant>> = vec![None; users.len()];
    let mut offline_for: Vec<Duration> = vec![Duration::ZERO; users.len()];
    let mut online_again: Vec<Option<Duration>> = vec![None; users.len()];
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    while killed.elapsed() < WAIT {
        for (slot, (_, device)) in served.iter_mut().zip(&devices) {
            if slot.is_none()
                && device.is_connected()
                && device.server().is_some_and(|s| s.as_str() != "s2")
            {
                *slot = Some(killed.elapsed());
            }
        }
        if last_poll.elapsed() >= Duration::from_millis(200) {
            last_poll = Instant::now();
            // All users at once, so that the devices are checked again soon.
            let mut polls = tokio::task::JoinSet::new();
            for (index, user) in users.iter().enumerate() {
                let (watcher, user) = (watcher.clone(), user.clone());
                polls.spawn(async move {
                    let availability = watcher
                        .get_presence(&user)
                        .await
                        .map(|p| p.availability)
                        .unwrap_or(Availability::Offline);
                    (index, availability)
                });
            }
            let mut availabilities = vec![Availability::Offline; users.len()];
            while let Some(Ok((index, availability))) = polls.join_next().await {
                availabilities[index] = availability;
            }
            for (index, availability) in availabilities.into_iter().enumerate() {
                let now = Instant::now();
                match (availability == Availability::Offline, offline_since[index]) {
                    (true, None) => offline_since[index] = Some(now),
                    (false, Some(since)) => {
                        offline_for[index] += now - since;
                        offline_since[index] = None;
                    }
                    _ => {}
                }
                if availability != Availability::Offline
                    && online_again[index].is_none()
                    && served
                        .iter()
                        .zip(&devices)
                        .any(|(s, (owner, _))| *owner == index && s.is_some())
                {
                    online_again[index] = Some(killed.elapsed());
                }
            }
        }
        if served.iter().all(Option::is_some) && online_again.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log(start, "every device served again (or the wait ended)");
    // Two more rounds after the failover, then the writer stops.
    tokio::time::sleep(options.every * 2 + Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    let sent = sent.lock().unwrap().clone();

    // Every device shows every message to its user once.
    let mut expected = 0usize;
    let mut delivered = 0usize;
    let mut lost = 0usize;
    let mut duplicated = 0usize;
    let deadline = Instant::now() + WAIT;
    for (index, device) in &devices {
        let conversation = ConversationId::direct(&UserId::from("watcher"), &users[*index]);
        let want = sent[*index].len();
        let remaining = deadline.saturating_duration_since(Instant::now());
        device.wait_for_stored(&conversation, want, remaining).await;
        let shown: Vec<String> = device
            .messages()
            .into_iter()
            .filter(|m| m.conversation == conversation && m.seq > 0)
            .map(|m| m.body)
            .collect();
        expected += want;
        for body in &sent[*index] {
            match shown.iter().filter(|b| *b == body).count() {
                0 => lost += 1,
                1 => delivered += 1,
                _ => {
                    delivered += 1;
                    duplicated += 1;
                }
            }
        }
    }
    let report = json!({
        "devices": devices.len(),
        "users": users.len(),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "served_again_ms": percentiles(served.iter().flatten().copied().collect()),
        "devices_not_served": served.iter().filter(|s| s.is_none()).count(),
        "watchers_see_online_again_ms": percentiles(online_again.iter().flatten().copied().collect()),
        "watchers_saw_offline_ms": percentiles(offline_for.clone()),
        "users_seen_offline": offline_for.iter().filter(|d| !d.is_zero()).count(),
        "messages": {
            "sent": sent.iter().map(Vec::len).sum::<usize>(),
            "expected_deliveries": expected,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
        },
    });
    println!("{report}");
    for (_, device) in devices {
        device.stop().await;
    }
    drop(servers);
    if lost > 0 || duplicated > 0 {
        std::process::exit(1);
    }
}
