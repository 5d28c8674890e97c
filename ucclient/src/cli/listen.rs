//! `ucclient listen`: stay connected, print every event as one JSON line, survive restarts.
//!
//! Scripts and tests read this output line by line while servers are killed and restarted, so
//! the loop never gives up on a dropped connection: it reports `{"type":"reconnecting",…}` on
//! stderr, waits (exponential backoff with jitter, capped; none after a `reconnect` event)
//! and reconnects with the same token and device id to whichever server serves the user now
//! (the client follows the cluster: `ucclient::failover`); it signs in again only when the
//! token is refused. Messages print once each, in sequence order, without holes: an
//! [`Inbox`] asks (`sync`) for what a reconnect, a lost delivery or `conversation_heads` shows
//! is missing and drops what was printed already. Only a refused login (wrong password, forbidden) ends it, or
//! SIGINT/SIGTERM, which closes the socket and logs out.
//!
//! Not printed: `pong`, `ack` and `conversation_heads`, which only serve the keep-alive and the
//! syncs this loop sends.
//!
//! With `--auto-answer` the loop also answers every call that rings here (see
//! [`super::answer`]) and prints a `{"type":"call_summary",…}` line when each call ends; call
//! events print like every other event.

use super::answer::{Answerer, AutoAnswer};
use shared::api::ErrorCode;
use shared::presence::Capability;
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ConversationId, DeviceId, UserId};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;
use ucclient::{Client, ClientError, Connection, HttpClient, Inbox};

/// How often the loop pings the server when nothing else arrives.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
/// Silence after which the connection is taken as dead (a half-open TCP connection, a
/// paused server): then the user's server is looked for again.
const SILENCE_LIMIT: Duration = Duration::from_secs(12);
/// First reconnect delay; doubles per failed attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Largest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Time given to closing the socket and logging out on shutdown or before a new login.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ListenOptions {
    pub url: String,
    pub user: UserId,
    pub password: String,
    pub device: Option<DeviceId>,
    pub capabilities: Vec<Capability>,
    /// Answer the calls that ring here (`--auto-answer`).
    pub auto_answer: Option<AutoAnswer>,
}

pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why one connected session ended.
enum SessionEnd {
    Shutdown,
    /// The consumer of stdout went away: nothing left to do.
    OutputClosed,
    Dropped(String),
    /// The server handed the user to another server (`reconnect`): go there at once.
    Moved(String),
    /// The server said nothing for too long (paused, cut off): try the others first.
    Silent(String),
}

/// Runs until `shutdown` completes or a login is refused for good.
pub async fn listen(options: ListenOptions, mut shutdown: Shutdown) -> Result<(), ClientError> {
    let http = HttpClient::new()?;
    let mut device = options.device.clone();
    let mut inbox = Inbox::new();
    let mut first_attempt = true;
    let mut failures: u32 = 0;
    let mut session: Option<Client> = None;
    loop {
        let connected = tokio::select! {
            connected = connect(&http, &options, device.as_ref(), &mut session) => connected,
            () = &mut shutdown => return Ok(()),
        };
        let (reason, retry_after) = match connected {
            Ok((client, mut connection)) => {
                failures = 0;
                device = Some(client.device().clone());
                let end = run_session(
                    &mut connection,
                    &mut inbox,
                    first_attempt,
                    &mut shutdown,
                    options.auto_answer.as_ref(),
                )
                .await;
                first_attempt = false;
                match end {
                    SessionEnd::Shutdown | SessionEnd::OutputClosed => {
                        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, connection.close()).await;
                        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.logout()).await;
                        return Ok(());
                    }
                    SessionEnd::Dropped(reason) => {
                        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, connection.close()).await;
                        session = Some(client);
                        (reason, None)
                    }
                    SessionEnd::Silent(reason) => {
                        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, connection.close()).await;
                        client.server_silent();
                        session = Some(client);
                        (reason, None)
                    }
                    SessionEnd::Moved(url) => {
                        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, connection.close()).await;
                        client.follow(&url);
                        session = Some(client);
                        failures = 0;
                        eprintln!(
                            "{}",
                            serde_json::json!({"type": "reconnecting", "reason": "moved", "url": url, "delay_ms": 0})
                        );
                        continue;
                    }
                }
            }
            Err(error) if first_attempt || is_final(&error) => return Err(error),
            Err(error) => {
                let retry_after = error
                    .api()
                    .and_then(|api| api.retry_after_ms)
                    .map(Duration::from_millis);
                (error.to_string(), retry_after)
            }
        };
        failures = failures.saturating_add(1);
        let delay =
            backoff_delay(failures, rand::random::<f64>()).max(retry_after.unwrap_or_default());
        let line = serde_json::json!({
            "type": "reconnecting",
            "reason": reason,
            "attempt": failures,
            "delay_ms": delay.as_millis() as u64,
        });
        eprintln!("{line}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Connects the session kept from before (its token is valid on every server), or signs in
/// when there is none or its token was refused.
async fn connect(
    http: &HttpClient,
    options: &ListenOptions,
    device: Option<&DeviceId>,
    session: &mut Option<Client>,
) -> Result<(Client, Connection), ClientError> {
    if let Some(client) = session.take() {
        match client.connect(None, &options.capabilities).await {
            Ok(connection) => return Ok((client, connection)),
            Err(error) if error.is(ErrorCode::Unauthorized) => {}
            Err(error) => {
                *session = Some(client);
                return Err(error);
            }
        }
    }
    login_and_connect(http, options, device).await
}

async fn login_and_connect(
    http: &HttpClient,
    options: &ListenOptions,
    device: Option<&DeviceId>,
) -> Result<(Client, Connection), ClientError> {
    let client = Client::login_with(
        http,
        &options.url,
        &options.user,
        &options.password,
        device.cloned(),
    )
    .await?;
    match client.connect(None, &options.capabilities).await {
        Ok(connection) => Ok((client, connection)),
        Err(error) => {
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.logout()).await;
            Err(error)
        }
    }
}

/// Errors that another attempt will not fix.
fn is_final(error: &ClientError) -> bool {
    [
        ErrorCode::InvalidCredentials,
        ErrorCode::Forbidden,
        ErrorCode::BadRequest,
    ]
    .into_iter()
    .any(|code| error.is(code))
}

/// The delay before reconnect attempt `failures` (1, 2, …): `BACKOFF_BASE * 2^(failures-1)`,
/// capped at `BACKOFF_MAX`, then scaled into its upper half by `jitter` (0.0 to 1.0) so many
/// clients restarting together do not reconnect in step.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// One connected session; with `auto_answer`, its calls' peers end with it.
async fn run_session(
    connection: &mut Connection,
    inbox: &mut Inbox,
    first: bool,
    shutdown: &mut Shutdown,
    auto_answer: Option<&AutoAnswer>,
) -> SessionEnd {
    let mut answerer = auto_answer.cloned().map(Answerer::new);
    let end = follow_session(connection, inbox, first, shutdown, &mut answerer).await;
    if let Some(answerer) = answerer {
        answerer.stop().await;
    }
    end
}

async fn follow_session(
    connection: &mut Connection,
    inbox: &mut Inbox,
    first: bool,
    shutdown: &mut Shutdown,
    answerer: &mut Option<Answerer>,
) -> SessionEnd {
    let hello = connection.hello().to_event();
    let since = inbox.on_hello(&hello, first);
    if !print_line(&hello) {
        return SessionEnd::OutputClosed;
    }
    if let Err(error) = sync(connection, inbox, since).await {
        return SessionEnd::Dropped(error.to_string());
    }
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE_EVERY, KEEPALIVE_EVERY);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            event = connection.next_event() => match event {
                None => return SessionEnd::Dropped("the server closed the connection".to_string()),
                Some(Err(error @ ClientError::Transport(_))) => {
                    return SessionEnd::Dropped(error.to_string());
                }
                Some(Err(error)) => {
                    // A frame we cannot read; the socket may still be fine (a newer server).
                    let line = serde_json::json!({"type": "client_error", "error": error.to_string()});
                    eprintln!("{line}");
                }
                Some(Ok(event)) => {
                    last_heard = Instant::now();
                    let step = inbox.on_event(event.clone());
                    let shown = step.show.iter().filter(|e| !matches!(e, ServerEvent::Pong | ServerEvent::Ack { .. }));
                    if !shown.into_iter().all(print_line) {
                        return SessionEnd::OutputClosed;
                    }
                    if let Err(error) = sync(connection, inbox, step.sync).await {
                        return SessionEnd::Dropped(error.to_string());
                    }
                    if let Some(answerer) = answerer.as_mut()
                        && let Err(error) = answerer.on_event(connection, &event).await
                    {
                        return SessionEnd::Dropped(error.to_string());
                    }
                    if let ServerEvent::Goodbye { reason } = event {
                        return SessionEnd::Dropped(format!("goodbye: {reason}"));
                    }
                    if let ServerEvent::Reconnect { url, .. } = event {
                        return SessionEnd::Moved(url);
                    }
                }
            },
            wake = next_wake(answerer) => {
                let Some(answerer) = answerer.as_mut() else { continue };
                match answerer.on_wake(connection, wake).await {
                    Ok(lines) => {
                        if !lines.iter().all(|line| print_text(line)) {
                            return SessionEnd::OutputClosed;
                        }
                    }
                    Err(error) => return SessionEnd::Dropped(error.to_string()),
                }
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return SessionEnd::Silent(format!("nothing heard for {}s", SILENCE_LIMIT.as_secs()));
                }
                if let Err(error) = connection.send(ClientCommand::Ping).await {
                    return SessionEnd::Dropped(error.to_string());
                }
            }
            () = &mut *shutdown => return SessionEnd::Shutdown,
        }
    }
}

/// Sends the `sync` the inbox asked for, if any, and tells it the command's reference.
async fn sync(
    connection: &mut Connection,
    inbox: &mut Inbox,
    since: BTreeMap<ConversationId, u64>,
) -> Result<(), ClientError> {
    if since.is_empty() {
        return Ok(());
    }
    let reference = connection.send(ClientCommand::Sync { since }).await?;
    inbox.sync_sent(reference);
    Ok(())
}

/// What the auto-answerer has to say, or nothing ever without one.
async fn next_wake(answerer: &mut Option<Answerer>) -> super::answer::Wake {
    match answerer {
        Some(answerer) => answerer.next().await,
        None => std::future::pending().await,
    }
}

/// Prints one event as a JSON line and flushes; false when stdout is gone.
fn print_line(event: &ServerEvent) -> bool {
    let Ok(text) = serde_json::to_string(event) else {
        return true;
    };
    print_text(&text)
}

/// Prints one line and flushes; false when stdout is gone.
fn print_text(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ServerId;
    use shared::api::{ChatMessage, ConversationKind, ConversationSummary};

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff_delay(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX, 1.0), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX, 0.0), BACKOFF_MAX / 2);
    }

    fn hello(conversations: &[(&str, u64)]) -> ServerEvent {
        ServerEvent::Hello {
            user: UserId::from("alice"),
            device: DeviceId::from("desk"),
            server: ServerId::from("s1"),
            conversations: conversations
                .iter()
                .map(|(id, last_seq)| ConversationSummary {
                    id: ConversationId::from(*id),
                    kind: ConversationKind::Direct,
                    name: id.to_string(),
                    members: Vec::new(),
                    last_seq: *last_seq,
                    last_read_seq: 0,
                    unread: 0,
                    last_message: None,
                })
                .collect(),
            presence: Vec::new(),
            servers: Vec::new(),
        }
    }

    fn message(conversation: &str, seq: u64, replay: bool) -> ServerEvent {
        ServerEvent::Message {
            message: ChatMessage {
                conversation: ConversationId::from(conversation),
                seq,
                id: format!("{conversation}/{seq}"),
                sender: UserId::from("bob"),
                body: "hi".into(),
                sent_ms: 1,
                client_id: None,
            },
            alert: true,
            replay,
        }
    }

    fn shown(inbox: &mut Inbox, event: ServerEvent) -> bool {
        !inbox.on_event(event).show.is_empty()
    }

    #[test]
    fn a_reconnect_syncs_what_was_missed_and_prints_replays_once() {
        let mut inbox = Inbox::new();
        assert!(
            inbox
                .on_hello(&hello(&[("d:alice:bob", 4)]), true)
                .is_empty()
        );
        assert!(shown(&mut inbox, message("d:alice:bob", 5, false)));

        // Reconnect: two more messages in the old conversation, one new conversation.
        let since = inbox.on_hello(
            &hello(&[("d:alice:bob", 7), ("g:ops", 2), ("g:quiet", 0)]),
            false,
        );
        let expected: BTreeMap<ConversationId, u64> = [
            (ConversationId::from("d:alice:bob"), 5),
            (ConversationId::from("g:ops"), 0),
        ]
        .into();
        assert_eq!(since, expected);
        inbox.sync_sent(1);

        assert!(!shown(&mut inbox, message("d:alice:bob", 5, true)));
        assert!(shown(&mut inbox, message("d:alice:bob", 6, true)));
        assert!(shown(&mut inbox, message("d:alice:bob", 7, true)));
        assert!(!shown(&mut inbox, message("d:alice:bob", 7, true)));
        assert!(shown(&mut inbox, message("g:ops", 1, true)));
    }
}
