//! A device's session against a real UCServer on PostgreSQL: a catch-up larger than any
//! queue arrives complete; a token past its lifetime is refused on every path; frames the
//! protocol cannot take close the socket with the RFC 6455 code, after a typed `error`.

use futures_util::{SinkExt, StreamExt};
use shared::ConversationId;
use shared::api::ErrorCode;
use shared::ws::ServerEvent;
use std::time::{Duration, Instant};
use switchboard_tests::chat;
use switchboard_tests::ucserver::UcServer;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use ucclient::{AdminClient, Client, ClientError};

const PASSWORD: &str = "password-1";

async fn server_with_users(
    name: &str,
    extra: &[(&str, &str)],
    users: &[&str],
) -> (UcServer, AdminClient) {
    chat::single_server(name, extra, users, PASSWORD).await
}

async fn login(server: &UcServer, user: &str, device: &str) -> Client {
    chat::login(server, user, PASSWORD, device).await
}

/// 10,000 messages wait for bob; his `sync` from the start returns every one of them, each
/// once, and its `ack` only after the last (before, a catch-up stopped at one page and the
/// rest of a full device queue was dropped, yet the ack said it was done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_of_10000_messages_arrives_complete() {
    const MESSAGES: u64 = 10_000;
    const WINDOW: u64 = 200;
    // One device sends all 10,000 as fast as it can: without the per-device send limit.
    let (server, _admin) = server_with_users(
        "sessions_catch_up",
        &[("UC_RATE_SEND_PER_MINUTE", "0")],
        &["alice", "bob"],
    )
    .await;
    let alice = login(&server, "alice", "laptop").await;
    let bob = login(&server, "bob", "phone").await;
    let conversation = ConversationId::direct(alice.user(), bob.user());

    let mut sender = alice.connect(None, &[]).await.expect("alice connects");
    chat::send_all(&mut sender, bob.user(), MESSAGES, WINDOW, |n| {
        format!("message {n}")
    })
    .await;

    let mut device = bob.connect(None, &[]).await.expect("bob connects");
    let (seen, _) = chat::catch_up(&mut device, &conversation, 0).await;
    assert_eq!(seen.len() as u64, MESSAGES, "every message, once");
    assert_eq!(seen.first(), Some(&1));
    assert_eq!(seen.last(), Some(&MESSAGES));
}

fn is_unauthorized(result: Result<impl std::fmt::Debug, ClientError>) -> bool {
    matches!(result, Err(ClientError::Api(ref api)) if api.error == ErrorCode::Unauthorized)
}

/// Sessions last `UC_SESSION_LIFETIME_MS` from sign-in, however they are used: a token the
/// server holds in memory (before, that path skipped the check), one restored from SQL after
/// a restart, and the socket a device holds open, which ends with a `goodbye`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_older_than_its_lifetime_is_refused_everywhere() {
    let lifetime = Duration::from_secs(4);
    let (mut server, _admin) = server_with_users(
        "sessions_lifetime",
        &[
            ("UC_SESSION_LIFETIME_MS", "4000"),
            ("UC_HEARTBEAT_MS", "500"),
        ],
        &["carol", "dave"],
    )
    .await;
    // dave's token is only in SQL once the server restarts.
    let dave = login(&server, "dave", "desk").await;
    server.kill9();
    server.restart();
    let carol = login(&server, "carol", "desk").await;
    let signed_in = Instant::now();
    carol.me().await.expect("a fresh token works");
    let mut open = carol.connect(None, &[]).await.expect("connects");
    dave.me().await.expect("restored from SQL while fresh");

    tokio::time::sleep(lifetime.saturating_sub(signed_in.elapsed()) + Duration::from_millis(300))
        .await;
    assert!(is_unauthorized(carol.me().await), "REST with a held token");
    assert!(
        is_unauthorized(carol.connect(None, &[]).await),
        "a new WebSocket with a held token"
    );
    assert!(
        is_unauthorized(dave.me().await),
        "REST with a restored token"
    );
    let goodbye = open
        .next_matching(Duration::from_secs(5), |e| {
            matches!(e, ServerEvent::Goodbye { .. })
        })
        .await;
    assert!(goodbye.is_ok(), "the open socket is told: {goodbye:?}");
}

async fn raw_socket(
    server: &UcServer,
    client: &Client,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://localhost:{}/api/v1/ws?device=raw", server.port);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", client.token()).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    match socket.next().await {
        Some(Ok(Message::Text(text))) => assert!(text.contains("\"hello\""), "{text}"),
        other => panic!("no hello: {other:?}"),
    }
    socket
}

/// Reads up to the close frame; returns the `error` events seen before it and its code.
async fn until_close(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (Vec<ErrorCode>, Option<CloseFrame>) {
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline.into(), socket.next())
            .await
            .expect("the server closes in time");
        match next {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerEvent::Error { error, .. }) = serde_json::from_str(&text) {
                    errors.push(error);
                }
            }
            Some(Ok(Message::Close(frame))) => return (errors, frame),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("socket failed before its close frame: {error}"),
            None => return (errors, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_the_protocol_cannot_take_close_with_their_code() {
    let (server, _admin) = server_with_users("sessions_close", &[], &["erin"]).await;
    let erin = login(&server, "erin", "desk").await;

    let mut socket = raw_socket(&server, &erin).await;
    let oversized = "x".repeat(shared::limits::MAX_FRAME_BYTES + 1);
    socket.send(Message::text(oversized)).await.unwrap();
    let (errors, close) = until_close(&mut socket).await;
    assert_eq!(errors, [ErrorCode::PayloadTooLarge]);
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));

    let mut socket = raw_socket(&server, &erin).await;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let not_utf8 = Frame::from_payload(header, vec![b'{', 0xff, 0xfe, b'}'].into());
    socket.send(Message::Frame(not_utf8)).await.unwrap();
    let (errors, close) = until_close(&mut socket).await;
    assert_eq!(errors, [ErrorCode::MalformedFrame]);
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1007));

    // A bad frame that is valid text keeps the session open, as before.
    let mut socket = raw_socket(&server, &erin).await;
    socket.send(Message::text("not json")).await.unwrap();
    socket
        .send(Message::text(r#"{"type":"ping","ref":7}"#))
        .await
        .unwrap();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => answers.push(text.to_string()),
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert!(answers[0].contains("malformed_frame"), "{answers:?}");
    assert!(answers[1].contains("pong"), "{answers:?}");
}
