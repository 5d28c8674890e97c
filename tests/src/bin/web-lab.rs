//! A lab for the browser tests: Redis, PostgreSQL, two UCServers (`s1`, `s2`) sharing them,
//! two MediaServers (`m1`, `m2`) registered through the admin API so that browsers can call,
//! and ucweb in front of both UCServers. Prints `WEB_URL=...`, `ADMIN_PASSWORD=...` and
//! `READY`, then runs until its standard input closes, and stops everything (its watchdogs
//! also do when it is killed). While it runs, a line `restart s1` (or `s2`) on its standard
//! input stops that UCServer (SIGTERM), starts it again and then prints `RESTARTED s1`;
//! `kill s2` kills it with SIGKILL (`KILLED s2`) and `start s2` starts it again (`STARTED s2`).
//! The UCServers fail over after 4 s and fall back 3 s after a server returns.
//!
//! When it stops it writes the tails of its servers' logs to standard error (run.sh shows them
//! when a test failed).

use shared::{MediaServerId, UserId};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};
use switchboard_tests::mediaserver::{MEDIA_SECRET, MediaServer};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::ucweb::UcWeb;
use switchboard_tests::{Postgres, Redis};
use ucclient::AdminClient;

/// How long the MediaServers get to be seen alive by the UCServers.
const MEDIA_ALIVE_LIMIT: Duration = Duration::from_secs(30);

fn main() {
    let mut redis = Redis::start();
    let postgres = Postgres::start();
    let database = postgres.create_database("weblab");
    // ucweb runs on loopback in front of both UCServers: they believe its X-Forwarded-For.
    let extra = [
        ("UC_MEDIA_SECRET", MEDIA_SECRET),
        ("UC_TRUSTED_PROXIES", "127.0.0.1,::1"),
        ("UC_FALLBACK_DELAY_MS", "3000"),
        // The overview's charts get points within the tests' patience.
        ("UC_STATS_SAMPLE_MS", "2000"),
    ];
    let mut s1 = UcServer::start("s1", &database, Some(&redis.url()), &extra);
    let mut s2 = UcServer::start("s2", &database, Some(&redis.url()), &extra);
    let m1 = MediaServer::start("m1", &redis.url());
    let m2 = MediaServer::start("m2", &redis.url());
    register_media(&s1, &[&m1, &m2]);
    let web = UcWeb::start(&[&s1, &s2]);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "WEB_URL={}", web.url());
    let _ = writeln!(out, "ADMIN_PASSWORD={ADMIN_PASSWORD}");
    let _ = writeln!(out, "READY");
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let server = match line.trim() {
            "restart s1" => &mut s1,
            "restart s2" => &mut s2,
            "stop redis" => {
                redis.stop();
                let _ = writeln!(out, "STOPPED redis");
                let _ = out.flush();
                continue;
            }
            "kill s2" | "start s2" => {
                if line.trim() == "kill s2" {
                    s2.kill9();
                    let _ = writeln!(out, "KILLED s2");
                } else {
                    s2.restart();
                    let _ = writeln!(out, "STARTED s2");
                }
                let _ = out.flush();
                continue;
            }
            "start redis" => {
                redis.restart();
                let _ = writeln!(out, "STARTED redis");
                let _ = out.flush();
                continue;
            }
            "" => continue,
            other => {
                eprintln!("web-lab: unknown command '{other}'");
                continue;
            }
        };
        server.terminate();
        server.restart();
        let _ = writeln!(out, "RESTARTED {}", server.id);
        let _ = out.flush();
    }
    eprintln!(
        "--- ucserver s1\n{}\n--- ucserver s2\n{}\n--- mediaserver m1\n{}\n--- mediaserver m2\n{}",
        s1.log(),
        s2.log(),
        m1.log(),
        m2.log()
    );
    drop(web);
    drop(m2);
    drop(m1);
    drop(s2);
    drop(s1);
    drop(postgres);
    drop(redis);
}

/// Adds the MediaServers through `server`'s admin API and waits until the cluster sees them
/// alive (their heartbeats reached Redis), so that the first call finds one.
fn register_media(server: &UcServer, media: &[&MediaServer]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let admin = AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
            .await
            .expect("admin login");
        for one in media {
            admin
                .add_media(&MediaServerId::from(one.id.as_str()), &one.control_url())
                .await
                .unwrap_or_else(|e| panic!("adding mediaserver {}: {e}", one.id));
        }
        let deadline = Instant::now() + MEDIA_ALIVE_LIMIT;
        loop {
            let known = admin.media().await.expect("media list");
            let alive = media
                .iter()
                .all(|one| known.iter().any(|m| m.id.as_str() == one.id && m.alive));
            if alive {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "MediaServers not alive after {MEDIA_ALIVE_LIMIT:?}: {known:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
