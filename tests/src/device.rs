//! A listening device for fault tests: one WebSocket that shows messages through the client's
//! [`Inbox`] (once each, in order, holes filled by `sync`) and records every message it
//! shows, so a test can count what reached each device.
//!
//! A device survives its server going away: when the socket drops (or the server is silent
//! for 3 s) it waits (backoff from 100 ms, doubling, at most 2 s), connects again with the
//! same client (tokens are valid on every server; the client finds the server serving the
//! user now, and a `reconnect` event names it at once) and device id, hands the new `hello` to [`Inbox::on_hello`] and sends the
//! `sync` it asks for, as `ucclient listen` does; what it shows stays once each, in order.
//! It also keeps the last presence it was given of each user (in a `hello` or a `presence`
//! event), so a test can tell whether live presence still reaches it.

use shared::api::ChatMessage;
use shared::presence::PresenceView;
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ConversationId, DeviceId, ServerId, UserId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use ucclient::{Client, ClientError, Connection, Inbox};

/// First delay before a reconnect; doubles per failed attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest delay between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often a device pings its server (the server drops a device silent for 120 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the server is taken as gone (paused: the socket stays open).
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// Time given to a polite close of the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the device's task shares with its handle.
#[derive(Default)]
struct Shared {
    shown: Mutex<Vec<ChatMessage>>,
    /// The last presence of each user it was given (a `hello`'s or a `presence` event's).
    presence: Mutex<BTreeMap<UserId, PresenceView>>,
    /// The server of the last `hello`.
    server: Mutex<Option<ServerId>>,
    connected: AtomicBool,
    reconnects: AtomicU64,
    /// `reconnect` events: the server sent it on to another.
    moves: AtomicU64,
}

/// A device whose task reads its socket, reconnecting when it drops, until stopped or
/// dropped.
pub struct Device {
    name: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Device {
    /// Connects `client` as device `name` and starts reading.
    pub async fn start(client: &Client, name: &str) -> Device {
        let device = DeviceId::from(name);
        let connection = client
            .connect(Some(&device), &[])
            .await
            .unwrap_or_else(|e| panic!("device {name} connects: {e}"));
        let shared = Arc::new(Shared::default());
        shared.connected.store(true, Ordering::Relaxed);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            client.clone(),
            device,
            connection,
            shared.clone(),
            stopped,
        ));
        Device {
            name: name.to_string(),
            shared,
            stop,
            task,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its socket is open now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// The server it is connected to (or was last).
    pub fn server(&self) -> Option<ServerId> {
        self.shared.server.lock().unwrap().clone()
    }

    /// How often its socket dropped and it connected again.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// How often its server sent it on to another (`reconnect`).
    pub fn moves(&self) -> u64 {
        self.shared.moves.load(Ordering::Relaxed)
    }

    /// Closes the socket politely and ends the task (the device goes offline).
    /// The task is aborted if it takes longer than twice the close timeout.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut self.task).await;
    }

    /// Every message shown so far, in the order shown.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.shared.shown.lock().unwrap().clone()
    }

    /// The last presence of `user` it was given, if any.
    pub fn presence(&self, user: &UserId) -> Option<PresenceView> {
        self.shared.presence.lock().unwrap().get(user).cloned()
    }

    /// The sequence numbers shown in `conversation`, in the order shown.
    pub fn seqs(&self, conversation: &ConversationId) -> Vec<u64> {
        self.messages()
            .iter()
            .filter(|m| &m.conversation == conversation)
            .map(|m| m.seq)
            .collect()
    }

    /// Waits until `conversation` shows `count` stored messages (not counting provisional
    /// ones, `seq` 0), or `limit` passes; returns how long it took, or `None`.
    pub async fn wait_for_stored(
        &self,
        conversation: &ConversationId,
        count: usize,
        limit: Duration,
    ) -> Option<Duration> {
        timed_wait(limit, || {
            self.seqs(conversation).iter().filter(|&&s| s > 0).count() >= count
        })
        .await
    }

    /// Asserts that `conversation` showed the stored messages `1..=count` once each, in order,
    /// and that every provisional one (`seq` 0) was shown once and then stored (same id).
    pub fn assert_stored_exactly(&self, conversation: &ConversationId, count: u64) {
        let messages: Vec<ChatMessage> = self
            .messages()
            .into_iter()
            .filter(|m| &m.conversation == conversation)
            .collect();
        let stored: Vec<u64> = messages
            .iter()
            .filter(|m| m.seq > 0)
            .map(|m| m.seq)
            .collect();
        let expected: Vec<u64> = (1..=count).collect();
        assert_eq!(
            stored, expected,
            "device {} in {conversation}: stored messages shown {stored:?}",
            self.name
        );
        let mut provisional = std::collections::BTreeSet::new();
        for message in messages.iter().filter(|m| m.seq == 0) {
            assert!(
                provisional.insert(message.id.clone()),
                "device {}: provisional {} shown twice",
                self.name,
                message.id
            );
            assert!(
                messages.iter().any(|m| m.seq > 0 && m.id == message.id),
                "device {}: provisional {} ({:?}) never stored",
                self.name,
                message.id,
                message.body
            );
        }
    }

    /// Waits until `conversation` shows `count` messages (or `limit` passes); returns how
    /// long it took, or `None`.
    pub async fn wait_for(
        &self,
        conversation: &ConversationId,
        count: usize,
        limit: Duration,
    ) -> Option<Duration> {
        timed_wait(limit, || self.seqs(conversation).len() >= count).await
    }

    /// Asserts that `conversation` showed exactly `first..=last`, each once, in order.
    pub fn assert_exactly(&self, conversation: &ConversationId, first: u64, last: u64) {
        let seqs = self.seqs(conversation);
        let expected: Vec<u64> = (first..=last).collect();
        assert_eq!(
            seqs, expected,
            "device {} in {conversation}: shown {seqs:?}, expected {first}..={last} once each in order",
            self.name
        );
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why one connected session ended.
enum End {
    Stopped,
    Dropped,
    /// The server said nothing for too long (paused): try the others first.
    Silent,
    /// `reconnect`: the user is served by the server at this URL now.
    Moved(String),
}

async fn run(
    client: Client,
    device: DeviceId,
    first: Connection,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut inbox = Inbox::new();
    let mut next = Some(first);
    let mut is_first = true;
    let mut failures: u32 = 0;
    let mut moved = false;
    loop {
        let mut connection = match next.take() {
            Some(connection) => connection,
            None => {
                let delay = if std::mem::take(&mut moved) {
                    Duration::ZERO
                } else {
                    BACKOFF_BASE
                        .saturating_mul(1 << failures.min(8))
                        .min(BACKOFF_MAX)
                };
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop_asked(&mut stopped) => return,
                }
                let connected = tokio::select! {
                    connected = client.connect(Some(&device), &[]) => connected,
                    () = stop_asked(&mut stopped) => return,
                };
                match connected {
                    Ok(connection) => {
                        shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        connection
                    }
                    Err(_) => continue,
                }
            }
        };
        failures = 0;
        shared.connected.store(true, Ordering::Relaxed);
        let end = follow(&mut connection, &mut inbox, is_first, &shared, &mut stopped).await;
        shared.connected.store(false, Ordering::Relaxed);
        is_first = false;
        match end {
            End::Stopped => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await;
                return;
            }
            End::Moved(url) => {
                shared.moves.fetch_add(1, Ordering::Relaxed);
                client.follow(&url);
                moved = true;
            }
            End::Silent => client.server_silent(),
            End::Dropped => {}
        }
    }
}

/// Completes once the device is asked to stop (or its handle is gone).
async fn stop_asked(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// One connected session: the `hello`, the sync it calls for, then every event until the
/// socket drops or the device is stopped.
async fn follow(
    connection: &mut Connection,
    inbox: &mut Inbox,
    first: bool,
    shared: &Shared,
    stopped: &mut watch::Receiver<bool>,
) -> End {
    *shared.server.lock().unwrap() = Some(connection.hello().server.clone());
    for view in &connection.hello().presence {
        note_presence(shared, view);
    }
    let hello = connection.hello().to_event();
    let since = inbox.on_hello(&hello, first);
    if !since.is_empty() {
        match connection.send(ClientCommand::Sync { since }).await {
            Ok(reference) => inbox.sync_sent(reference),
            Err(_) => return End::Dropped,
        }
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
    keepalive.reset();
    let mut last_heard = Instant::now();
    loop {
        let event = tokio::select! {
            event = connection.next_event() => event,
            _ = keepalive.tick() => {
                // A paused server keeps the socket open and says nothing.
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return End::Silent;
                }
                if connection.send(ClientCommand::Ping).await.is_err() {
                    return End::Dropped;
                }
                continue;
            }
            () = stop_asked(stopped) => return End::Stopped,
        };
        let event = match event {
            None | Some(Err(ClientError::Transport(_))) => return End::Dropped,
            Some(Err(_)) => continue,
            Some(Ok(event)) => event,
        };
        last_heard = Instant::now();
        if let ServerEvent::Reconnect { url, .. } = &event {
            return End::Moved(url.clone());
        }
        let step = inbox.on_event(event);
        for event in step.show {
            match event {
                ServerEvent::Message { message, .. } => shared.shown.lock().unwrap().push(message),
                ServerEvent::Presence { presence } => note_presence(shared, &presence),
                _ => {}
            }
        }
        if !step.sync.is_empty() {
            match connection
                .send(ClientCommand::Sync { since: step.sync })
                .await
            {
                Ok(reference) => inbox.sync_sent(reference),
                Err(_) => return End::Dropped,
            }
        }
    }
}

/// Keeps `view` unless the device was given a newer one of that user (versions only grow).
fn note_presence(shared: &Shared, view: &PresenceView) {
    let mut presence = shared.presence.lock().unwrap();
    if presence
        .get(&view.user)
        .is_none_or(|known| known.version <= view.version)
    {
        presence.insert(view.user.clone(), view.clone());
    }
}

/// Waits for up to `limit` until `done` holds, checking every 50 ms.
pub async fn eventually(limit: Duration, done: impl FnMut() -> bool) -> bool {
    timed_wait(limit, done).await.is_some()
}

/// [`eventually`], returning how long it took (`None`: it did not happen in time).
async fn timed_wait(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
