//! Chat helpers shared by the tests: one UCServer with users made through its admin API,
//! many messages sent over one WebSocket with a bounded number unanswered, and a catch-up
//! read to its end.

use crate::Postgres;
use crate::ucserver::{ADMIN_PASSWORD, UcServer};
use shared::DeviceId;
use shared::api::CreateUser;
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ConversationId, ServerId, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use ucclient::{AdminClient, Client, Connection};

/// One UCServer (no Redis) on a database `name` of the shared PostgreSQL, with `extra`
/// settings, and `users` made with `password`.
pub async fn single_server(
    name: &str,
    extra: &[(&str, &str)],
    users: &[&str],
    password: &str,
) -> (UcServer, AdminClient) {
    let database_url = Postgres::shared().create_database(name);
    let server = UcServer::start("s1", &database_url, None, extra);
    let admin = AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    create_users(&admin, users, password, None).await;
    (server, admin)
}

/// Signs `user` in at `server` from `device`.
pub async fn login(server: &UcServer, user: &str, password: &str, device: &str) -> Client {
    Client::login(
        &server.url(),
        &UserId::from(user),
        password,
        Some(DeviceId::from(device)),
    )
    .await
    .expect("login")
}

/// Creates users with one password, at `home` (or the admin's server).
pub async fn create_users(admin: &AdminClient, names: &[&str], password: &str, home: Option<&str>) {
    for name in names {
        admin
            .create_user(CreateUser {
                id: UserId::from(*name),
                password: password.into(),
                display_name: None,
                home_server: home.map(ServerId::from),
                admin: false,
            })
            .await
            .expect("create user");
    }
}

/// Sends `count` messages `body(n)` to `to`, at most `window` unanswered at once, and waits
/// until every one is acked; an `error` answer fails the test.
pub async fn send_all(
    connection: &mut Connection,
    to: &UserId,
    count: u64,
    window: u64,
    body: impl Fn(u64) -> String,
) {
    let mut sent = 0;
    while sent < count {
        let mut waiting = BTreeSet::new();
        for _ in 0..window.min(count - sent) {
            let reference = connection
                .send(ClientCommand::Send {
                    to: Some(to.clone()),
                    conversation: None,
                    body: body(sent),
                    client_id: Some(format!("m-{sent}")),
                })
                .await
                .expect("send");
            waiting.insert(reference);
            sent += 1;
        }
        while !waiting.is_empty() {
            match connection
                .next_event()
                .await
                .expect("socket open")
                .expect("event")
            {
                ServerEvent::Ack {
                    reference: Some(reference),
                    ..
                } => {
                    waiting.remove(&reference);
                }
                ServerEvent::Error { error, message, .. } => panic!("{error:?}: {message}"),
                _ => {}
            }
        }
    }
}

/// Asks for everything after `since` in `conversation` and reads until the `sync` is acked;
/// returns the sequence numbers seen, and each message's body length (for checks).
pub async fn catch_up(
    connection: &mut Connection,
    conversation: &ConversationId,
    since: u64,
) -> (BTreeSet<u64>, Vec<usize>) {
    let sync = connection
        .send(ClientCommand::Sync {
            since: BTreeMap::from([(conversation.clone(), since)]),
        })
        .await
        .expect("sync");
    let mut seen = BTreeSet::new();
    let mut lengths = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), connection.next_event())
            .await
            .expect("the catch-up ends in time")
            .expect("socket open")
            .expect("event");
        match event {
            ServerEvent::Message { message, .. } if &message.conversation == conversation => {
                seen.insert(message.seq);
                lengths.push(message.body.len());
            }
            ServerEvent::Ack {
                reference: Some(reference),
                ..
            } if reference == sync => return (seen, lengths),
            ServerEvent::Error { error, message, .. } => panic!("{error:?}: {message}"),
            _ => {}
        }
    }
}
