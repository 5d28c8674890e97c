//! A lab for the browser tests: Redis, PostgreSQL, two UCServers (`s1`, `s2`) sharing them,
//! and ucweb in front of both. Prints `WEB_URL=...`, `ADMIN_PASSWORD=...` and `READY`, then
//! runs until its standard input closes, and stops everything (its watchdogs also do when it
//! is killed).

use std::io::{Read, Write};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::ucweb::UcWeb;
use switchboard_tests::{Postgres, Redis};

fn main() {
    let redis = Redis::start();
    let postgres = Postgres::start();
    let database = postgres.create_database("weblab");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let web = UcWeb::start(&[&s1, &s2]);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "WEB_URL={}", web.url());
    let _ = writeln!(out, "ADMIN_PASSWORD={ADMIN_PASSWORD}");
    let _ = writeln!(out, "READY");
    let _ = out.flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(web);
    drop(s2);
    drop(s1);
    drop(postgres);
    drop(redis);
}
