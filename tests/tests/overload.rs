//! Overload without loss: a device that stops reading its socket is cut off (its queue is
//! dropped rather than waited for, so one slow device never holds up anyone else), and every
//! message it missed reaches it when it comes back and catches up.

use shared::ConversationId;
use std::time::{Duration, Instant};
use switchboard_tests::chat;
use switchboard_tests::ucserver::UcServer;

const PASSWORD: &str = "password-1";

/// The server's count of devices cut off for not reading.
async fn slow_devices_dropped(server: &UcServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|line| line.starts_with("uc_slow_devices_dropped_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_is_cut_off_and_catches_up_on_return() {
    // Enough to fill the socket buffers and the device's queue of 1,024 events many times.
    const MESSAGES: u64 = 3_000;
    const BODY_BYTES: usize = 8 * 1024;
    const WINDOW: u64 = 100;
    let (server, _admin) = chat::single_server(
        "overload_slow_device",
        &[("UC_RATE_SEND_PER_MINUTE", "0")],
        &["alice", "bob"],
        PASSWORD,
    )
    .await;
    let alice = chat::login(&server, "alice", PASSWORD, "desk").await;
    let bob = chat::login(&server, "bob", PASSWORD, "desk").await;
    let conversation = ConversationId::direct(alice.user(), bob.user());

    // bob's device connects, then never reads again.
    let stalled = bob.connect(None, &[]).await.expect("bob connects");

    let mut sender = alice.connect(None, &[]).await.expect("alice connects");
    let body = "x".repeat(BODY_BYTES);
    chat::send_all(&mut sender, bob.user(), MESSAGES, WINDOW, |_| body.clone()).await;
    // The sender was never held up by the stalled device (every send was acked above), and
    // the stalled device was cut off.
    let deadline = Instant::now() + Duration::from_secs(20);
    while slow_devices_dropped(&server).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the device that stopped reading was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);

    // bob comes back and catches up from where his device had nothing: all of it, once.
    let mut device = bob.connect(None, &[]).await.expect("bob reconnects");
    let (seen, lengths) = chat::catch_up(&mut device, &conversation, 0).await;
    assert!(lengths.iter().all(|&length| length == BODY_BYTES));
    assert_eq!(seen.len() as u64, MESSAGES, "every message, once");
    assert_eq!(seen.last(), Some(&MESSAGES));
}
