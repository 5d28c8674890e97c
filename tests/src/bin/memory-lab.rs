//! Measures a UCServer's memory after many users and logins: two UCServers on Redis and PostgreSQL,
//! 1,000 users created through the admin API of the first (half homed on each server), 500 of
//! them signed in at their home servers, no device connected. Prints one JSON object with
//! both servers' resident memory (`uc_process_resident_bytes`) before, after the users, after
//! the logins and after a short rest.
//!
//! `cargo run --release -p switchboard-tests --bin memory-lab -- [USERS] [LOGINS] [CONCURRENCY]`
//! (defaults 1000 500 8; uc-bench's setup uses 8 requests in flight too). Build the release
//! `ucserver` first: the servers are the binaries next to this one.

use shared::api::CreateUser;
use shared::{ServerId, UserId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use ucclient::{AdminClient, Client, HttpClient};

const PASSWORD: &str = "memory-lab-password";

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn resident_mib(http: &reqwest::Client, server: &UcServer) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let bytes: f64 = text
        .lines()
        .find(|line| line.starts_with("uc_process_resident_bytes"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .expect("uc_process_resident_bytes");
    (bytes / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

fn main() {
    let (users, logins, concurrency) = (arg(1, 1000), arg(2, 500), arg(3, 8));
    let redis = Redis::start();
    let postgres = Postgres::start();
    let database = postgres.create_database("memorylab");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime.block_on(async {
        let metrics = reqwest::Client::new();
        let mut samples = Vec::new();
        let mut sample = |label: &'static str, a: f64, b: f64| {
            eprintln!("memory-lab: {label}: s1 {a} MiB, s2 {b} MiB");
            samples.push(serde_json::json!({ "at": label, "s1_mib": a, "s2_mib": b }));
        };
        sample(
            "start",
            resident_mib(&metrics, &s1).await,
            resident_mib(&metrics, &s2).await,
        );

        let admin = Arc::new(
            AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
                .await
                .expect("admin login"),
        );
        let limit = Arc::new(Semaphore::new(concurrency));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for i in 0..users {
            let (admin, limit) = (admin.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore");
                let home = if i % 2 == 0 { "s1" } else { "s2" };
                admin
                    .create_user(CreateUser {
                        id: UserId::new(format!("mem{i}")),
                        password: PASSWORD.into(),
                        display_name: None,
                        home_server: Some(ServerId::from(home)),
                        admin: false,
                    })
                    .await
            });
        }
        let mut refused = 0;
        while let Some(result) = tasks.join_next().await {
            if result.expect("task").is_err() {
                refused += 1;
            }
        }
        let create_s = started.elapsed().as_secs_f64();
        sample(
            "after_users",
            resident_mib(&metrics, &s1).await,
            resident_mib(&metrics, &s2).await,
        );

        let http = HttpClient::new().expect("http client");
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for i in 0..logins {
            let (http, limit) = (http.clone(), limit.clone());
            let url = if i % 2 == 0 { s1.url() } else { s2.url() };
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore");
                Client::login_with(&http, &url, &UserId::new(format!("mem{i}")), PASSWORD, None)
                    .await
            });
        }
        let mut sessions = Vec::new();
        let mut login_errors = 0;
        while let Some(result) = tasks.join_next().await {
            match result.expect("task") {
                Ok(client) => sessions.push(client),
                Err(_) => login_errors += 1,
            }
        }
        let login_s = started.elapsed().as_secs_f64();
        sample(
            "after_logins",
            resident_mib(&metrics, &s1).await,
            resident_mib(&metrics, &s2).await,
        );
        tokio::time::sleep(Duration::from_secs(15)).await;
        sample(
            "after_15s_rest",
            resident_mib(&metrics, &s1).await,
            resident_mib(&metrics, &s2).await,
        );
        serde_json::json!({
            "users": users,
            "logins": logins,
            "concurrency": concurrency,
            "create_errors": refused,
            "login_errors": login_errors,
            "sessions": sessions.len(),
            "create_s": (create_s * 10.0).round() / 10.0,
            "login_s": (login_s * 10.0).round() / 10.0,
            "rss": samples,
        })
    });
    println!("{report}");
    drop(s2);
    drop(s1);
    drop(postgres);
    drop(redis);
}
