//! UCWeb in front of two UCServers: a browser talks to one origin, and ucweb sends each
//! user's requests and WebSocket to the user's home server.

use shared::api::CreateUser;
use shared::ws::ServerEvent;
use shared::{ServerId, UserId};
use std::time::Duration;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::ucweb::UcWeb;
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucweb_routes_every_user_to_the_home_server() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("ucweb");
    // ucweb (on loopback) is the UCServers' trusted proxy: its X-Forwarded-For names the browser.
    let trust = [("UC_TRUSTED_PROXIES", "127.0.0.1,::1")];
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &trust);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &trust);
    let web = UcWeb::start(&[&s1, &s2]);
    let admin = AdminClient::login(&web.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin through ucweb");
    for (name, home) in [("alice", "s1"), ("bob", "s2")] {
        admin
            .create_user(CreateUser {
                id: UserId::from(name),
                password: "password-1".into(),
                display_name: None,
                home_server: Some(ServerId::from(home)),
                admin: false,
            })
            .await
            .unwrap();
    }
    // Both sign in at ucweb; ucweb followed bob's redirect itself.
    let alice = Client::login(&web.url(), &UserId::from("alice"), "password-1", None)
        .await
        .unwrap();
    let bob = Client::login(&web.url(), &UserId::from("bob"), "password-1", None)
        .await
        .unwrap();
    assert_eq!(bob.base_url(), web.url(), "the browser stays on one origin");
    assert!(bob.token().starts_with("s2~"), "{}", bob.token());
    assert_eq!(bob.me().await.unwrap().home_server, ServerId::from("s2"));

    let mut bob_conn = bob
        .connect(None, &[])
        .await
        .expect("websocket through ucweb");
    assert_eq!(
        bob_conn.hello().server,
        ServerId::from("s2"),
        "bob's socket ends at his home server"
    );
    let alice_conn = alice.connect(None, &[]).await.unwrap();
    assert_eq!(alice_conn.hello().server, ServerId::from("s1"));
    alice
        .send_to_user(&UserId::from("bob"), "through one origin")
        .await
        .unwrap();
    bob_conn
        .next_matching(Duration::from_secs(15), |e| matches!(e, ServerEvent::Message { message, .. } if message.body == "through one origin"))
        .await
        .expect("message reaches bob through ucweb");

    // A token naming a server ucweb does not know is refused, not forwarded anywhere.
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/me", web.url()))
        .bearer_auth("evil.example~abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: shared::api::ApiError = response.json().await.unwrap();
    assert_eq!(body.error, shared::api::ErrorCode::Unauthorized);

    // The browser client from ucweb's origin: the entry module, in a subfolder, comes back as
    // JavaScript, and a second load revalidates it with its ETag.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/", web.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<script type="module" src="/js/main.js">"#),
        "{page}"
    );
    let module = http
        .get(format!("{}/js/main.js", web.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status().as_u16(), 200);
    assert_eq!(
        module.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = module.headers()["etag"].to_str().unwrap().to_string();
    let again = http
        .get(format!("{}/js/main.js", web.url()))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    drop(redis);
}
