//! The API documents a real `ucserver` serves: `GET /api/v1/openapi.json` and
//! `GET /api/v1/ws-schema.json`. Frames captured from a live WebSocket session (hello, pong,
//! ack, presence, message, error) must validate against the schema, in both directions, and
//! malformed frames must not. (That every route is documented is a unit test of
//! `ucserver::api_docs`, next to the router.)

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::presence::Capability;
use shared::{DeviceId, UserId};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_tests::Postgres;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use tokio_tungstenite::tungstenite::Message;
use ucclient::{AdminClient, Client};

const PASSWORD: &str = "password-1";
const WAIT: Duration = Duration::from_secs(15);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

/// A validator for one definition of the frame schema (`ClientEnvelope`, `ServerEvent`).
fn validator(schema: &Value, definition: &str) -> jsonschema::Validator {
    let wrapper = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/$defs/{definition}"),
        "$defs": schema["$defs"],
    });
    jsonschema::validator_for(&wrapper).expect("the frame schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, frame: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(frame)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{frame} does not validate: {errors:?}");
}

async fn open(client: &Client) -> Socket {
    let url = ucclient::websocket_url(&client.base_url(), None, &[Capability::Chat]).unwrap();
    let url = format!("{url}&token={}", client.token());
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket");
    socket
}

/// Reads frames (as raw JSON) until one has `type` = `wanted`, keeping all of them.
async fn read_until(socket: &mut Socket, wanted: &str, seen: &mut Vec<Value>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {wanted} frame; got {seen:?}"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("a frame is JSON");
            let found = frame["type"] == wanted;
            seen.push(frame);
            if found {
                return;
            }
        }
    }
}

async fn send(socket: &mut Socket, frame: &Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_documents_describe_the_live_api() {
    let database_url = Postgres::shared().create_database("documents");
    let server = UcServer::start("s1", &database_url, None, &[]);
    let base = server.url();

    let openapi = get_json(&format!("{base}/api/v1/openapi.json")).await;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(openapi["paths"]["/api/v1/ws"]["get"].is_object());
    let schema = get_json(&format!("{base}/api/v1/ws-schema.json")).await;
    let client_frames = validator(&schema, "ClientEnvelope");
    let server_frames = validator(&schema, "ServerEvent");
    jsonschema::validator_for(&schema).expect("the whole document compiles too");

    let admin = AdminClient::login(&base, &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    switchboard_tests::chat::create_users(&admin, &["alice", "bob"], PASSWORD, Some("s1")).await;
    let login = |name: &'static str| {
        let base = base.clone();
        async move {
            Client::login(
                &base,
                &UserId::from(name),
                PASSWORD,
                Some(DeviceId::from("desk")),
            )
            .await
            .unwrap()
        }
    };
    let alice = login("alice").await;
    let bob = login("bob").await;
    bob.put_contact(alice.user(), "").await.unwrap();

    let mut alice_frames = Vec::new();
    let mut bob_frames = Vec::new();
    let mut alice_socket = open(&alice).await;
    read_until(&mut alice_socket, "hello", &mut alice_frames).await;
    let mut bob_socket = open(&bob).await;
    read_until(&mut bob_socket, "hello", &mut bob_frames).await;

    // What alice sends: each frame is checked against the schema too.
    let commands = [
        json!({"type": "ping", "ref": 1}),
        json!({"type": "presence_set", "availability": "busy", "note": "in a meeting", "ref": 2}),
        json!({"type": "send", "to": "bob", "body": "hello bob", "client_id": "c-1", "ref": 3}),
        json!({"type": "typing", "conversation": "d:alice:bob", "typing": true}),
        json!({"type": "sync", "since": {"d:alice:bob": 0}, "ref": 4}),
        json!({"type": "forward_set", "mode": "no_answer", "to": "bob", "ref": 5}),
    ];
    for command in &commands {
        assert_valid(&client_frames, command);
        send(&mut alice_socket, command).await;
    }
    read_until(&mut alice_socket, "pong", &mut alice_frames).await;
    // The stored message comes back in an ack; forward_set answers with an ack as well.
    while !alice_frames
        .iter()
        .any(|f| f["type"] == "ack" && f["ref"] == 5)
    {
        read_until(&mut alice_socket, "ack", &mut alice_frames).await;
    }
    // A command the server refuses: an error frame, and the session stays open.
    let refused = json!({"type": "read", "conversation": "g:nobody", "seq": 1, "ref": 6});
    assert_valid(&client_frames, &refused);
    send(&mut alice_socket, &refused).await;
    read_until(&mut alice_socket, "error", &mut alice_frames).await;
    send(
        &mut alice_socket,
        &json!({"type": "no_such_command", "ref": 7}),
    )
    .await;
    read_until(&mut alice_socket, "error", &mut alice_frames).await;

    read_until(&mut bob_socket, "presence", &mut bob_frames).await;
    read_until(&mut bob_socket, "message", &mut bob_frames).await;

    let mut kinds = BTreeMap::new();
    for frame in alice_frames.iter().chain(&bob_frames) {
        assert_valid(&server_frames, frame);
        *kinds
            .entry(frame["type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    for kind in ["hello", "pong", "ack", "presence", "message", "error"] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} frame captured: {kinds:?}"
        );
    }
    assert!(
        alice_frames
            .iter()
            .any(|f| f["type"] == "ack" && f["message"]["body"] == "hello bob"),
        "{alice_frames:?}"
    );

    // Malformed frames do not validate.
    let hello = alice_frames.iter().find(|f| f["type"] == "hello").unwrap();
    let message = bob_frames.iter().find(|f| f["type"] == "message").unwrap();
    let mut without_seq = message.clone();
    without_seq["message"]
        .as_object_mut()
        .unwrap()
        .remove("seq");
    let mut bad_availability = bob_frames
        .iter()
        .find(|f| f["type"] == "presence")
        .unwrap()
        .clone();
    bad_availability["presence"]["availability"] = json!("sleepy");
    let mut hello_without_user = hello.clone();
    hello_without_user.as_object_mut().unwrap().remove("user");
    for bad in [
        json!({"type": "no_such_event"}),
        json!({"type": "ack", "ref": "one"}),
        json!({"type": "error", "ref": 1, "error": "no_such_code", "message": "x"}),
        without_seq,
        bad_availability,
        hello_without_user,
    ] {
        assert!(
            !server_frames.is_valid(&bad),
            "accepted as a server frame: {bad}"
        );
    }
    for bad in [
        json!({"type": "no_such_command"}),
        json!({"type": "send", "to": "bob"}),
        json!({"type": "read", "conversation": "d:alice:bob", "seq": -1}),
        json!({"type": "ping", "ref": "one"}),
    ] {
        assert!(
            !client_frames.is_valid(&bad),
            "accepted as a client frame: {bad}"
        );
    }
}
