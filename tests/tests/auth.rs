//! Login hardening and exposure, against real servers: a Redis and a PostgreSQL started by the
//! harness, `ucserver` processes sharing them (and `ucweb` in front where it matters), and
//! clients on different loopback addresses (127.0.0.2, 127.0.0.3, ...: all of 127/8 is local
//! on Linux) standing for different machines.

use futures_util::future::join_all;
use shared::api::{
    ApiError, CreateConversation, CreateUser, ErrorCode, Health, LoginRequest, LoginResponse,
};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ServerId, UserId};
use std::net::IpAddr;
use std::time::Duration;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer, binary};
use switchboard_tests::ucweb::UcWeb;
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client, Connection};

const PASSWORD: &str = "password-1";
/// How the UCServers behind ucweb are told to believe it (both loopback families, as
/// `localhost` may resolve to either).
const TRUST_LOOPBACK: (&str, &str) = ("UC_TRUSTED_PROXIES", "127.0.0.1,::1");

/// An HTTP client whose connections come from `source` (a "machine" of its own).
fn http_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One login over plain HTTP: the session, or the server's typed error.
async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Result<LoginResponse, ApiError> {
    let mut request = http
        .post(format!("{base}/api/v1/login"))
        .json(&LoginRequest {
            user: UserId::from(user),
            password: password.into(),
            device: None,
        });
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    let answer = request.send().await.expect("the server answers");
    if answer.status().is_success() {
        Ok(answer.json().await.expect("a login answer"))
    } else {
        Err(answer.json().await.expect("a typed error"))
    }
}

fn code<T: std::fmt::Debug>(result: &Result<T, ApiError>) -> Option<ErrorCode> {
    result.as_ref().err().map(|e| e.error)
}

async fn create_user(admin: &AdminClient, name: &str, home: &str) {
    admin
        .create_user(CreateUser {
            id: UserId::from(name),
            password: PASSWORD.into(),
            display_name: None,
            home_server: Some(ServerId::from(home)),
            admin: false,
        })
        .await
        .expect("create user");
}

/// `count` wrong-password logins at once from `http`, for `user(i)`; all must be refused.
async fn storm(
    http: &reqwest::Client,
    base: &str,
    count: usize,
    user: impl Fn(usize) -> String,
    forwarded_for: impl Fn(usize) -> Option<String>,
) {
    let attempts = (0..count).map(|i| {
        let (user, forwarded) = (user(i), forwarded_for(i));
        async move { login(http, base, &user, "wrong-password", forwarded.as_deref()).await }
    });
    for result in join_all(attempts).await {
        assert!(
            matches!(
                code(&result),
                Some(ErrorCode::InvalidCredentials | ErrorCode::TooManyAttempts)
            ),
            "{result:?}"
        );
    }
}

fn assert_throttled<T: std::fmt::Debug>(result: &Result<T, ApiError>, what: &str) {
    match result {
        Err(error) if error.error == ErrorCode::TooManyAttempts => {
            assert!(error.retry_after_ms.is_some_and(|ms| ms > 0), "{error:?}");
        }
        other => panic!("{what}: expected too_many_attempts, got {other:?}"),
    }
}

/// Redis, a database on the shared PostgreSQL, and `ids` UCServers with `extra` settings.
async fn cluster(
    name: &str,
    ids: &[&str],
    extra: &[(&str, &str)],
) -> (Redis, Vec<UcServer>, AdminClient) {
    let redis = Redis::start();
    let database = Postgres::shared().create_database(name);
    let servers: Vec<UcServer> = ids
        .iter()
        .map(|id| UcServer::start(id, &database, Some(&redis.url()), extra))
        .collect();
    let admin = AdminClient::login(&servers[0].url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    (redis, servers, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_on_one_server_is_throttled_on_the_other_and_only_for_its_keys() {
    let (_redis, servers, admin) = cluster("throttle", &["s1", "s2"], &[]).await;
    let (s1, s2) = (servers[0].url(), servers[1].url());
    create_user(&admin, "xavier", "s1").await;
    create_user(&admin, "yvonne", "s2").await;
    let attacker = http_from("127.0.0.2");
    let elsewhere = http_from("127.0.0.3");

    // A wrong-password storm against xavier from one address, at s1 only.
    storm(&attacker, &s1, 10, |_| "xavier".into(), |_| None).await;
    assert_throttled(
        &login(&attacker, &s1, "xavier", PASSWORD, None).await,
        "the storm's own server",
    );
    // s2 knows: the address is throttled there too, whoever it signs in as ...
    assert_throttled(
        &login(&attacker, &s2, "yvonne", PASSWORD, None).await,
        "the same address at the other server",
    );
    // ... and so is the user, from any address.
    assert_throttled(
        &login(&elsewhere, &s2, "xavier", PASSWORD, None).await,
        "the stormed user from another address",
    );
    // Another user from another address is not locked out, at either server (s1 sends her
    // to her home s2 once her password checked out).
    let session = login(&elsewhere, &s2, "yvonne", PASSWORD, None)
        .await
        .expect("yvonne signs in");
    assert_eq!(session.server, ServerId::from("s2"));
    assert_eq!(
        code(&login(&elsewhere, &s1, "yvonne", PASSWORD, None).await),
        Some(ErrorCode::WrongServer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // 127.0.0.1 is a trusted proxy; the attacker at 127.0.0.2 is not.
    let (_redis, servers, admin) = cluster("spoof", &["s1"], &[TRUST_LOOPBACK]).await;
    let base = servers[0].url();
    create_user(&admin, "yvonne", "s1").await;
    let attacker = http_from("127.0.0.2");
    // Every guess claims another client address, for another user name.
    storm(
        &attacker,
        &base,
        10,
        |i| format!("nobody{i}"),
        |i| Some(format!("203.0.113.{i}")),
    )
    .await;
    assert_throttled(
        &login(&attacker, &base, "yvonne", PASSWORD, Some("198.51.100.77")).await,
        "a fresh spoofed address from the same peer",
    );
    // From the trusted proxy the header does name the client: that one is not throttled.
    let proxy = http_from("127.0.0.1");
    login(&proxy, &base, "yvonne", PASSWORD, Some("198.51.100.77"))
        .await
        .expect("a client behind the trusted proxy signs in");
    assert_throttled(
        &login(&proxy, &base, "yvonne", PASSWORD, Some("127.0.0.2")).await,
        "the attacker's address named by the trusted proxy",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ucweb_each_browser_has_its_own_throttle_key() {
    let (_redis, servers, admin) = cluster("webthrottle", &["s1", "s2"], &[TRUST_LOOPBACK]).await;
    create_user(&admin, "alice", "s2").await;
    let web = UcWeb::start(&[&servers[0], &servers[1]]);
    let url = web.url();
    let browser_a = http_from("127.0.0.2");
    let browser_b = http_from("127.0.0.3");
    // Browser A guesses passwords of names that do not exist: only its address adds up.
    storm(&browser_a, &url, 10, |i| format!("guess{i}"), |_| None).await;
    assert_throttled(
        &login(&browser_a, &url, "alice", PASSWORD, None).await,
        "browser A after its storm",
    );
    // Browser B, behind the same ucweb, signs in (followed to s2 by ucweb).
    let session = login(&browser_b, &url, "alice", PASSWORD, None)
        .await
        .expect("browser B is not locked out by browser A");
    assert!(session.token.starts_with("s2~"), "{}", session.token);

    // Like the web client, B opens its WebSocket with the token in the query.
    let ws_url = format!(
        "ws://localhost:{}/api/v1/ws?token={}&device=web",
        web.port,
        session.token.replace('~', "%7E")
    );
    let conn = Connection::open(&ws_url, None)
        .await
        .expect("websocket through ucweb");
    assert_eq!(conn.hello().server, ServerId::from("s2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_beyond_the_hashing_bound_is_told_to_wait() {
    let (_redis, servers, admin) = cluster(
        "hashbound",
        &["s1"],
        &[("UC_PASSWORD_WORKERS", "1"), ("UC_PASSWORD_QUEUE", "2")],
    )
    .await;
    let base = servers[0].url();
    create_user(&admin, "alice", "s1").await;
    let http = http_from("127.0.0.1");
    let burst = (0..16).map(|_| login(&http, &base, "alice", PASSWORD, None));
    let results = join_all(burst).await;
    let busy: Vec<&ApiError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let signed_in = results.iter().filter(|r| r.is_ok()).count();
    assert!(
        !busy.is_empty(),
        "16 logins at once on 1 worker + 2 waiting: some are refused"
    );
    for error in &busy {
        assert_eq!(error.error, ErrorCode::TooManyAttempts, "{error:?}");
        assert!(
            error.retry_after_ms.is_some_and(|ms| ms >= 100),
            "{error:?}"
        );
    }
    assert!(
        signed_in >= 3,
        "the worker and the queue were served: {signed_in}"
    );
    // Load is not a failed password: the user is not throttled afterwards.
    login(&http, &base, "alice", PASSWORD, None)
        .await
        .expect("a login after the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_device_rate_get_a_typed_error_then_work_again() {
    let (_redis, servers, admin) = cluster(
        "ratelimit",
        &["s1"],
        &[
            ("UC_RATE_SEND_PER_MINUTE", "12"),
            ("UC_RATE_SEND_BURST", "3"),
            ("UC_RATE_TYPING_PER_MINUTE", "6"),
            ("UC_RATE_TYPING_BURST", "2"),
            ("UC_RATE_CONVERSATIONS_PER_MINUTE", "6"),
            ("UC_RATE_CONVERSATIONS_BURST", "1"),
        ],
    )
    .await;
    let base = servers[0].url();
    create_user(&admin, "alice", "s1").await;
    create_user(&admin, "bob", "s1").await;
    let alice = Client::login(&base, &UserId::from("alice"), PASSWORD, None)
        .await
        .unwrap();
    let mut conn = alice.connect(None, &[]).await.unwrap();
    let send = |n: usize| ClientCommand::Send {
        to: Some(UserId::from("bob")),
        conversation: None,
        body: format!("m{n}"),
        client_id: None,
    };
    for n in 0..3 {
        conn.request(send(n)).await.expect("within the burst");
    }
    // The next frame is answered with an `error` event carrying its ref.
    let reference = conn.send(send(3)).await.unwrap();
    let refused = conn
        .next_matching(Duration::from_secs(15), |e| {
            matches!(e, ServerEvent::Error { .. } | ServerEvent::Ack { .. })
        })
        .await
        .unwrap();
    let ServerEvent::Error {
        reference: Some(answered),
        error: ErrorCode::RateLimited,
        retry_after_ms: Some(wait),
        ..
    } = refused
    else {
        panic!("expected rate_limited for ref {reference}, got {refused:?}");
    };
    assert_eq!(answered, reference);
    assert!((1..=5000).contains(&wait), "{wait}");
    // REST sends of the same device share its allowance: 429 with the wait.
    let error = alice
        .send_to_user(&UserId::from("bob"), "rest")
        .await
        .unwrap_err();
    let api = error.api().expect("typed");
    assert_eq!(api.error, ErrorCode::RateLimited);
    assert!(api.retry_after_ms.is_some());
    // After the wait the next send goes through.
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    conn.request(send(4))
        .await
        .expect("allowed again after the wait");

    // Typing notices and new conversations have their own limits.
    let conversation = alice
        .create_conversation(CreateConversation {
            name: "team".into(),
            members: vec![UserId::from("bob")],
        })
        .await
        .unwrap();
    let again = alice
        .create_conversation(CreateConversation {
            name: "team 2".into(),
            members: vec![UserId::from("bob")],
        })
        .await
        .unwrap_err();
    assert_eq!(again.api().map(|a| a.error), Some(ErrorCode::RateLimited));
    let typing = || ClientCommand::Typing {
        conversation: conversation.id.clone(),
        typing: true,
    };
    conn.request(typing()).await.unwrap();
    conn.request(typing()).await.unwrap();
    let error = conn.request(typing()).await.unwrap_err();
    assert_eq!(error.api().map(|a| a.error), Some(ErrorCode::RateLimited));
    // Another device of the same user is not slowed down by this one.
    let desk = Client::login(&base, &UserId::from("alice"), PASSWORD, Some("desk".into()))
        .await
        .unwrap();
    desk.send_to_user(&UserId::from("bob"), "from the desk")
        .await
        .unwrap();
}

// ------------------------------------------------------------------ secrets and exposure

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_redis_passwords_are_never_printed() {
    let closed_port = switchboard_tests::process::free_port();
    let dir = switchboard_tests::process::fresh_dir("masking");
    let run = |env: &[(&str, String)]| {
        let mut command = std::process::Command::new("timeout");
        command
            .arg("60")
            .arg(binary("ucserver"))
            .env("UC_LISTEN", "127.0.0.1:0")
            .env("UC_DATA_DIR", dir.join("data"))
            .env("UC_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .current_dir(&dir);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("run ucserver");
        assert!(!output.status.success(), "it cannot start");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let database = run(&[(
        "UC_DATABASE_URL",
        format!("postgres://uc:hunter2-db-secret@127.0.0.1:{closed_port}/uc"),
    )]);
    assert!(database.contains("cannot open the database"), "{database}");
    assert!(database.contains("postgres://***@127.0.0.1"), "{database}");
    assert!(!database.contains("hunter2"), "{database}");
    let redis = run(&[
        (
            "UC_DATABASE_URL",
            format!("sqlite:{}", dir.join("x.db").display()),
        ),
        (
            "UC_REDIS_URL",
            format!("redis://:hunter2-redis-secret@127.0.0.1:{closed_port}"),
        ),
    ]);
    assert!(redis.contains("Redis"), "{redis}");
    assert!(!redis.contains("hunter2"), "{redis}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_details_are_for_administrators_only() {
    let (mut redis, servers, admin_client) = cluster("readyz", &["s1"], &[]).await;
    let base = servers[0].url();
    let admin = login(
        &reqwest::Client::new(),
        &base,
        "admin",
        ADMIN_PASSWORD,
        None,
    )
    .await
    .unwrap();
    drop(admin_client);
    redis.stop();
    let http = reqwest::Client::new();
    let ask = |token: Option<&str>| {
        let mut request = http.get(format!("{base}/readyz"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let answer = request.send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Health>().await.unwrap(),
            )
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (status, anonymous) = loop {
        let (status, health) = ask(None).await;
        if status == 503 || std::time::Instant::now() > deadline {
            break (status, health);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{anonymous:?}");
    assert!(!anonymous.ok);
    assert!(anonymous.checks.iter().any(|c| !c.ok), "{anonymous:?}");
    assert!(
        anonymous.checks.iter().all(|c| c.detail.is_none()),
        "no backend error text for anyone: {anonymous:?}"
    );
    let (_, bad_token) = ask(Some("not-a-token")).await;
    assert!(bad_token.checks.iter().all(|c| c.detail.is_none()));
    let (status, detailed) = ask(Some(&admin.token)).await;
    assert_eq!(status, 503);
    assert!(
        detailed.checks.iter().any(|c| !c.ok && c.detail.is_some()),
        "an administrator sees why: {detailed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_counts_on_the_websocket_only() {
    let (_redis, servers, admin) = cluster("querytoken", &["s1"], &[]).await;
    let server = &servers[0];
    create_user(&admin, "alice", "s1").await;
    let alice = Client::login(&server.url(), &UserId::from("alice"), PASSWORD, None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let me = |query: bool| {
        let mut request = if query {
            http.get(format!(
                "{}/api/v1/me?token={}",
                server.url(),
                alice.token()
            ))
        } else {
            http.get(format!("{}/api/v1/me", server.url()))
                .bearer_auth(alice.token())
        };
        request = request.timeout(Duration::from_secs(10));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(me(false).await, 200);
    assert_eq!(me(true).await, 401, "a REST route ignores ?token=");
    let ws_url = format!(
        "ws://localhost:{}/api/v1/ws?token={}&device=web",
        server.port,
        alice.token()
    );
    let conn = Connection::open(&ws_url, None)
        .await
        .expect("the WebSocket takes ?token=");
    assert_eq!(conn.hello().user, UserId::from("alice"));
}
