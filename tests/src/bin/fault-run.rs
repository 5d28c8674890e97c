//! The fault-injection run: a small cluster under a steady mixed load while its parts fail in
//! turn, then a check of what must hold after.
//!
//! Loopback only: one Redis, a PostgreSQL of its own, UCServers `s1`..`s3` and MediaServers
//! `m1`, `m2` from the harness. Twelve users homed round the three servers, each with one or two
//! listening devices ([`Device`]: reconnects when its server goes away, shows messages through
//! `ucclient::Inbox`), chat 1:1 and in three groups over REST at a steady rate, every send
//! retried with its client id until accepted; they change presence now and then, and a call
//! loop places short calls between users on different servers (webrtc-rs peers, audio both
//! ways). Meanwhile, in turn, each followed by a recovery pause: Redis is killed while a call
//! talks and restarted on its port, PostgreSQL stopped for up to 8 s, UCServer `s3` killed with
//! SIGKILL while a call it owns talks and restarted after 3 s, the MediaServer carrying a call
//! killed and restarted. After each: how long until a probe message crosses the affected path,
//! until every device shows everything accepted before the fault's end, and until (calls
//! paused) nobody is in a call or ringing.
//!
//! After the load stops and the devices settle it checks: every accepted message shown with its
//! stored `seq` exactly once on every device of every member, in sequence order (a provisional
//! copy, `seq` 0, at most once before it); every conversation's history holds every accepted
//! message once, without gaps; the seats in use equal the signed-in users; nobody is left in a
//! call or ringing, no softphone lease is held; once every device disconnects, nobody stays
//! online. It prints one JSON object (stdout) and exits with 1 when an invariant failed.
//!
//! `cargo run -p switchboard-tests --bin fault-run -- [--seconds N] [--logs DIR]` (default 180:
//! the length of the load phase; setup and the checks come on top; `--logs` keeps a copy of
//! every server's log). Build the workspace binaries first:
//! the servers are the `ucserver` and `mediaserver` next to this one. Progress goes to stderr.

use serde_json::{Value, json};
use shared::api::SetPresence;
use shared::api::{ChatMessage, CreateConversation, CreateUser, ErrorCode, SendMessage};
use shared::call::{CallEvent, EXTRA_RECV_AUDIO, EndReason};
use shared::presence::{Availability, Capability, TelephonyState};
use shared::{CallId, ConversationId, DeviceId, MediaServerId, ServerId, UserId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_tests::device::Device;
use switchboard_tests::mediaserver::{MEDIA_SECRET, MediaServer};
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::peer::{ClientPeer, PeerOptions};
use ucclient::{AdminClient, Client, ClientError, Connection};

const PASSWORD: &str = "fault-run-password";
const USERS: usize = 12;
/// Every user sends one message per period (a steady modest rate: 12 users, ~8 messages/s).
const SEND_PERIOD: Duration = Duration::from_millis(1500);
/// A REST request with no answer within this is taken as a transport failure and retried.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);
/// Bound of every wait for recovery, catch-up or a settled state.
const WAIT: Duration = Duration::from_secs(60);
/// How long a connected call talks before the caller hangs up.
const TALK: Duration = Duration::from_secs(3);
/// Pause between two calls of the call loop.
const CALL_PAUSE: Duration = Duration::from_secs(1);
/// Longest database outage; shorter runs scale it down.
const SQL_OUTAGE: Duration = Duration::from_secs(8);
/// Long enough that the call talking when Redis dies ends within the outage (its end then
/// waits for Redis commands that time out): not scaled down for short runs.
const REDIS_OUTAGE: Duration = Duration::from_secs(8);
const UCSERVER_OUTAGE: Duration = Duration::from_secs(3);
const MEDIA_OUTAGE: Duration = Duration::from_secs(2);

fn log(text: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let at = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("fault-run {at:7.1}s: {text}");
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

const USAGE: &str = "usage: fault-run [--seconds N] [--logs DIR] (N at least 30)";

/// `--seconds N` (default 180) and `--logs DIR` (where to copy the servers' whole logs).
fn arguments() -> (u64, Option<std::path::PathBuf>) {
    let mut seconds = 180;
    let mut logs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--seconds", Some(value)) => match value.parse() {
                Ok(n) if n >= 30 => seconds = n,
                _ => usage(),
            },
            ("--logs", Some(dir)) => logs = Some(dir.into()),
            _ => usage(),
        }
    }
    (seconds, logs)
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// A message the cluster acknowledged.
#[derive(Clone)]
struct Accepted {
    conversation: ConversationId,
    id: String,
    /// Whether the acknowledgement was provisional (`seq` 0: the database was away).
    provisional: bool,
}

/// What the load saw, shared by its tasks.
#[derive(Default)]
struct Record {
    accepted: Mutex<Vec<Accepted>>,
    /// Sends still unacknowledged when the run ended (may or may not be stored).
    unconfirmed: AtomicU64,
    /// Sends refused for good, by error code.
    refused: Mutex<BTreeMap<String, u64>>,
    /// Every error a send or presence change met (retried or not), by code.
    errors: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
    presence_changes: AtomicU64,
    presence_failures: AtomicU64,
    calls: Mutex<CallStats>,
    /// The MediaServer and the caller of the call talking now, if one is.
    talking_on: Mutex<Option<(String, UserId)>>,
    /// Whether a call is under way (from its first step to its last).
    in_call: AtomicBool,
    /// Set while the telephony check after a fault runs: no new call starts.
    calls_paused: AtomicBool,
}

#[derive(Default)]
struct CallStats {
    placed: u64,
    connected: u64,
    /// Attempts that did not connect or end cleanly, by what went wrong.
    failed: BTreeMap<String, u64>,
    /// Connected calls per MediaServer.
    media: BTreeMap<String, u64>,
    /// Calls by how they ended for the caller (`call_ended` reason).
    ended: BTreeMap<String, u64>,
}

impl Record {
    fn error(&self, code: &str) {
        *self.errors.lock().unwrap().entry(code.into()).or_default() += 1;
    }

    fn call_failed(&self, what: String) {
        *self.calls.lock().unwrap().failed.entry(what).or_default() += 1;
    }
}

/// Errors that a resend with the same client id may get past.
fn retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Api(api) => matches!(
            api.error,
            ErrorCode::ServerBusy
                | ErrorCode::ServerUnavailable
                | ErrorCode::RateLimited
                | ErrorCode::Internal
        ),
        ClientError::Transport(_) | ClientError::Protocol(_) => true,
    }
}

/// Sends one message, resending it with the same client id on a retryable error until it is
/// accepted or `give_up` passes. Records what happened.
async fn send_until_accepted(
    client: &Client,
    conversation: &ConversationId,
    body: String,
    client_id: String,
    give_up: Instant,
    record: &Record,
) -> Option<ChatMessage> {
    let request = SendMessage {
        to: None,
        conversation: Some(conversation.clone()),
        body,
        client_id: Some(client_id),
    };
    loop {
        let delay =
            match tokio::time::timeout(REQUEST_LIMIT, client.send_message(request.clone())).await {
                Ok(Ok(message)) => {
                    record.accepted.lock().unwrap().push(Accepted {
                        conversation: message.conversation.clone(),
                        id: message.id.clone(),
                        provisional: message.seq == 0,
                    });
                    return Some(message);
                }
                Ok(Err(error)) if retryable(&error) => {
                    record.error(error.code());
                    error
                        .api()
                        .and_then(|api| api.retry_after_ms)
                        .map_or(Duration::from_millis(250), Duration::from_millis)
                        .clamp(Duration::from_millis(100), Duration::from_secs(2))
                }
                Ok(Err(error)) => {
                    record.error(error.code());
                    *record
                        .refused
                        .lock()
                        .unwrap()
                        .entry(error.code().into())
                        .or_default() += 1;
                    log(&format!("send refused for good: {error}"));
                    return None;
                }
                Err(_) => {
                    record.error("request_timeout");
                    Duration::from_millis(250)
                }
            };
        if Instant::now() + delay > give_up {
            record.unconfirmed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        record.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    }
}

/// One user of the run.
struct User {
    id: UserId,
    /// The session its first device and its sends use.
    client: Client,
    /// The conversations it sends to, in turn.
    conversations: Vec<ConversationId>,
    /// Indices of its devices in the run's device list.
    devices: Vec<usize>,
}

fn user_id(i: usize) -> UserId {
    UserId::new(format!("u{i:02}"))
}

/// The three groups: five members each, spread over the servers, overlapping.
fn groups() -> Vec<Vec<usize>> {
    vec![
        vec![0, 1, 2, 3, 4],
        vec![4, 5, 6, 7, 8],
        vec![8, 9, 10, 11, 0],
    ]
}

/// Sends messages from `user` every [`SEND_PERIOD`] while `running`, in turn to each of its
/// conversations, and changes its presence every eighth message.
async fn sender(
    index: usize,
    user: Arc<User>,
    running: Arc<AtomicBool>,
    give_up: Arc<Mutex<Instant>>,
    record: Arc<Record>,
) {
    // Spread the users over the period.
    tokio::time::sleep(SEND_PERIOD.mul_f64(index as f64 / USERS as f64)).await;
    let mut next = Instant::now();
    let mut n: u64 = 0;
    while running.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next = (next + SEND_PERIOD).max(Instant::now());
        n += 1;
        let conversation = &user.conversations[n as usize % user.conversations.len()];
        let give_up = *give_up.lock().unwrap();
        send_until_accepted(
            &user.client,
            conversation,
            format!("{} #{n}", user.id),
            format!("{}-{n}", user.id),
            give_up,
            &record,
        )
        .await;
        if n.is_multiple_of(8) {
            let availability = [
                Availability::Away,
                Availability::Busy,
                Availability::Available,
            ][(n / 8) as usize % 3];
            let change = SetPresence {
                availability: Some(availability),
                note: Some(format!("note {n}")),
                user: None,
            };
            match tokio::time::timeout(REQUEST_LIMIT, user.client.set_presence(change)).await {
                Ok(Ok(_)) => record.presence_changes.fetch_add(1, Ordering::Relaxed),
                Ok(Err(error)) => {
                    record.error(error.code());
                    record.presence_failures.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => record.presence_failures.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// A softphone peer and its SDP offer.
async fn softphone() -> Result<(ClientPeer, String), String> {
    let mut peer = ClientPeer::new(PeerOptions {
        extra_audio_receive_slots: EXTRA_RECV_AUDIO,
        ..PeerOptions::default()
    })
    .await
    .map_err(|e| format!("peer: {e}"))?;
    let offer = peer
        .create_offer(Duration::from_secs(10))
        .await
        .map_err(|e| format!("offer: {e}"))?;
    Ok((peer, offer))
}

/// How an error of [`call_event`] begins when the call ended first; the end reason follows.
const ENDED: &str = "ended: ";

fn reason_name(reason: EndReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// Waits for a call event of `call` that `wanted` accepts; a `call_ended` of it first is an
/// error naming its reason.
async fn call_event(
    connection: &mut Connection,
    call: &CallId,
    what: &str,
    wanted: impl Fn(&CallEvent) -> bool,
) -> Result<CallEvent, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), connection.next_call_event())
            .await
            .map_err(|_| format!("no {what}"))?;
        match event {
            None => return Err(format!("socket closed before {what}")),
            Some(Err(error)) => return Err(format!("{what}: {}", error.code())),
            Some(Ok(event)) if event.call() == Some(call) && wanted(&event) => return Ok(event),
            Some(Ok(CallEvent::CallEnded {
                call: ended,
                reason,
                ..
            })) if &ended == call => return Err(format!("{ENDED}{}", reason_name(reason))),
            Some(Ok(_)) => {}
        }
    }
}

/// One call from `caller` to `callee` on fresh `softphone` devices: placed, answered, both
/// peers connected, audio both ways for [`TALK`], hung up by the caller. Returns the
/// MediaServer it ran on.
async fn one_call(caller: &Client, callee: &Client, record: &Record) -> Result<String, String> {
    let device = DeviceId::from("softphone");
    let capabilities = [Capability::Chat, Capability::Audio];
    let mut callee_conn = callee
        .connect(Some(&device), &capabilities)
        .await
        .map_err(|e| format!("callee connects: {}", e.code()))?;
    let mut caller_conn = caller
        .connect(Some(&device), &capabilities)
        .await
        .map_err(|e| format!("caller connects: {}", e.code()))?;
    let (mut caller_peer, offer) = softphone().await?;
    let call = caller_conn
        .call_place(callee.user(), offer, false)
        .await
        .map_err(|e| format!("place: {}", e.code()))?;
    record.calls.lock().unwrap().placed += 1;
    let outcome = async {
        call_event(&mut callee_conn, &call, "call_incoming", |e| {
            matches!(e, CallEvent::CallIncoming { .. })
        })
        .await?;
        let (mut callee_peer, callee_offer) = softphone().await?;
        callee_conn
            .call_answer(&call, callee_offer)
            .await
            .map_err(|e| format!("answer: {}", e.code()))?;
        let mut media = String::new();
        for (connection, peer) in [
            (&mut caller_conn, &mut caller_peer),
            (&mut callee_conn, &mut callee_peer),
        ] {
            let CallEvent::CallMediaAnswer {
                sdp, media: used, ..
            } = call_event(connection, &call, "call_media_answer", |e| {
                matches!(e, CallEvent::CallMediaAnswer { .. })
            })
            .await?
            else {
                unreachable!()
            };
            peer.apply_answer(sdp)
                .await
                .map_err(|e| format!("apply answer: {e}"))?;
            media = used.to_string();
        }
        for peer in [&mut caller_peer, &mut callee_peer] {
            peer.wait_connected(Duration::from_secs(15))
                .await
                .map_err(|e| format!("media: {e}"))?;
        }
        {
            let mut calls = record.calls.lock().unwrap();
            calls.connected += 1;
            *calls.media.entry(media.clone()).or_default() += 1;
        }
        *record.talking_on.lock().unwrap() = Some((media.clone(), caller.user().clone()));
        let (sent_a, sent_b) =
            tokio::join!(caller_peer.send_audio(TALK), callee_peer.send_audio(TALK));
        *record.talking_on.lock().unwrap() = None;
        if sent_a.is_err() || sent_b.is_err() {
            return Err("audio".to_string());
        }
        Ok::<String, String>(media)
    }
    .await;
    // Hang up whatever happened (a call already over refuses, which is fine) and note how
    // it ended for the caller.
    let ended = match &outcome {
        Err(e) if e.starts_with(ENDED) => Ok(e[ENDED.len()..].to_string()),
        _ => {
            let _ = caller_conn.call_hangup(&call).await;
            call_event(&mut caller_conn, &call, "call_ended", |e| {
                matches!(e, CallEvent::CallEnded { .. })
            })
            .await
            .map(|event| match event {
                CallEvent::CallEnded { reason, .. } => reason_name(reason),
                _ => unreachable!(),
            })
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), caller_conn.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), callee_conn.close()).await;
    let reason = ended.map_err(|e| format!("no end: {e}"))?;
    *record
        .calls
        .lock()
        .unwrap()
        .ended
        .entry(reason.clone())
        .or_default() += 1;
    outcome.map(|media| format!("{media}, ended: {reason}"))
}

/// Places calls between users on different servers, one at a time, while `running`.
async fn call_loop(pairs: Vec<(Client, Client)>, running: Arc<AtomicBool>, record: Arc<Record>) {
    let mut turn = 0;
    while running.load(Ordering::Relaxed) {
        let (caller, callee) = &pairs[turn % pairs.len()];
        turn += 1;
        while record.calls_paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        record.in_call.store(true, Ordering::Relaxed);
        let outcome =
            tokio::time::timeout(Duration::from_secs(90), one_call(caller, callee, &record)).await;
        record.in_call.store(false, Ordering::Relaxed);
        match outcome {
            Ok(Ok(media)) => log(&format!(
                "call {} -> {} on {media}",
                caller.user(),
                callee.user()
            )),
            Ok(Err(what)) => {
                log(&format!(
                    "call {} -> {} failed: {what}",
                    caller.user(),
                    callee.user()
                ));
                // Keep the reason's kind, not its details.
                let kind: String = what.chars().take_while(|c| *c != ':').collect();
                record.call_failed(kind);
            }
            Err(_) => record.call_failed("timeout".into()),
        }
        tokio::time::sleep(CALL_PAUSE).await;
    }
}

/// For each accepted message, which devices must show it.
struct Expectation {
    members: HashMap<ConversationId, Vec<usize>>,
}

impl Expectation {
    /// Deliveries still missing of `messages`: (message, device) pairs where the device has
    /// not shown the stored message yet.
    fn missing(&self, messages: &[Accepted], users: &[Arc<User>], devices: &[Device]) -> usize {
        let stored: Vec<HashSet<String>> = devices
            .iter()
            .map(|d| {
                d.messages()
                    .into_iter()
                    .filter(|m| m.seq > 0)
                    .map(|m| m.id)
                    .collect()
            })
            .collect();
        let mut missing = 0;
        for message in messages {
            for &member in &self.members[&message.conversation] {
                for &device in &users[member].devices {
                    if !stored[device].contains(&message.id) {
                        missing += 1;
                    }
                }
            }
        }
        missing
    }

    /// Waits until every device shows every one of `messages`; how long it took.
    async fn caught_up(
        &self,
        messages: &[Accepted],
        users: &[Arc<User>],
        devices: &[Device],
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.missing(messages, users, devices) == 0 {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Sends a probe message from `from` into `conversation` (retried until accepted) and waits
/// until `device` shows it stored; returns the time from `since`.
async fn probe(
    from: &Client,
    conversation: &ConversationId,
    device: &Device,
    label: &str,
    since: Instant,
    record: &Record,
) -> Option<Duration> {
    let give_up = Instant::now() + WAIT;
    let message = send_until_accepted(
        from,
        conversation,
        format!("probe {label}"),
        format!("probe-{label}"),
        give_up,
        record,
    )
    .await?;
    while Instant::now() < give_up {
        if device
            .messages()
            .iter()
            .any(|m| m.id == message.id && m.seq > 0)
        {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Each conversation's history, page by page: (stored message ids with their counts, client
/// ids stored more than once, whether the sequence has a gap).
async fn history(
    client: &Client,
    conversation: &ConversationId,
) -> Result<(HashMap<String, u32>, u64, bool), String> {
    let mut ids = HashMap::new();
    let mut client_ids: HashMap<String, u32> = HashMap::new();
    let mut gap = false;
    let mut after = 0;
    loop {
        let mut attempt = 0;
        let page = loop {
            match client
                .history(conversation, None, Some(after), Some(500))
                .await
            {
                Ok(page) => break page,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    log(&format!("history of {conversation}: {e}; again"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(format!("history of {conversation}: {e}")),
            }
        };
        let Some(last) = page.last() else { break };
        let last = last.seq;
        for message in &page {
            if message.seq != after + 1 {
                gap = true;
            }
            after = message.seq;
            *ids.entry(message.id.clone()).or_default() += 1;
            if let Some(client_id) = &message.client_id {
                *client_ids.entry(client_id.clone()).or_default() += 1;
            }
        }
        after = last;
        if page.len() < 500 {
            break;
        }
    }
    let twice = client_ids.values().filter(|&&n| n > 1).count() as u64;
    Ok((ids, twice, gap))
}

/// Whether `user` is neither in a call nor ringing, as their own presence says.
async fn idle(user: Arc<User>) -> bool {
    user.client
        .get_presence(&user.id)
        .await
        .is_ok_and(|p| matches!(p.telephony, None | Some(TelephonyState::Idle)))
}

/// Whether every one of `users` is idle.
async fn all_idle(users: Vec<Arc<User>>) -> bool {
    for user in users {
        if !idle(user).await {
            return false;
        }
    }
    true
}

async fn seats_in_use(admin: &AdminClient) -> Option<u32> {
    let licenses = admin.licenses().await.ok()?;
    Some(
        licenses
            .iter()
            .find(|l| l.kind == "uc-seat")
            .map_or(0, |l| l.in_use),
    )
}

async fn softphone_leases(admin: &AdminClient) -> Option<u32> {
    let licenses = admin.licenses().await.ok()?;
    Some(
        licenses
            .iter()
            .find(|l| l.kind == "softphone")
            .map_or(0, |l| l.in_use),
    )
}

/// Polls `check` every 250 ms until it returns `Some(true)` or `limit` passes; returns how
/// long it took.
async fn until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The running parts.
struct Lab {
    redis: Redis,
    postgres: Postgres,
    servers: Vec<UcServer>,
    media: Vec<MediaServer>,
}

impl Lab {
    fn start() -> Lab {
        let redis = Redis::start();
        let postgres = Postgres::start();
        let database = postgres.create_database("faultrun");
        let extra = [
            ("UC_MEDIA_SECRET", MEDIA_SECRET),
            ("UC_RING_TIMEOUT_MS", "10000"),
            ("UC_HEARTBEAT_MS", "1000"),
            ("UC_DEAD_AFTER_MS", "5000"),
        ];
        let servers = ["s1", "s2", "s3"]
            .map(|id| UcServer::start(id, &database, Some(&redis.url()), &extra))
            .into();
        let media = ["m1", "m2"]
            .map(|id| MediaServer::start(id, &redis.url()))
            .into();
        Lab {
            redis,
            postgres,
            servers,
            media,
        }
    }

    /// Copies every server's whole log into `dir` (`s1.log`, `m1.log`, ...).
    fn copy_logs(&self, dir: &std::path::Path) {
        let _ = std::fs::create_dir_all(dir);
        let files = self
            .servers
            .iter()
            .map(|s| (&s.id, s.log_path()))
            .chain(self.media.iter().map(|m| (&m.id, m.log_path())));
        for (id, path) in files {
            if let Err(e) = std::fs::copy(&path, dir.join(format!("{id}.log"))) {
                log(&format!("cannot copy {}: {e}", path.display()));
            }
        }
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for server in &self.servers {
            text += &format!("--- {}\n{}\n", server.id, server.log());
        }
        for media in &self.media {
            text += &format!("--- {}\n{}\n", media.id, media.log());
        }
        text
    }
}

/// One fault as the report shows it.
struct FaultReport {
    fault: &'static str,
    outage: Duration,
    probe: Option<Duration>,
    caught_up: Option<Duration>,
    /// When everyone outside the call under way was idle again.
    telephony: Option<Duration>,
    extra: Value,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let (seconds, logs) = arguments();
    let started = Instant::now();
    log("starting the lab");
    let mut lab = tokio::task::block_in_place(Lab::start);
    log(&format!("lab up in {:?}", started.elapsed()));
    let report = run(&mut lab, seconds).await;
    let held = report["invariants_held"].as_bool() == Some(true);
    println!("{report}");
    log("done; stopping the lab");
    if !held {
        eprintln!("{}", lab.logs());
    }
    if let Some(dir) = logs {
        lab.copy_logs(&dir);
    }
    tokio::task::block_in_place(move || drop(lab));
    std::process::exit(if held { 0 } else { 1 });
}

async fn run(lab: &mut Lab, seconds: u64) -> Value {
    let s1_url = lab.servers[0].url();
    let admin = AdminClient::login(&s1_url, &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .expect("admin login");
    for media in &lab.media {
        admin
            .add_media(
                &MediaServerId::from(media.id.as_str()),
                &media.control_url(),
            )
            .await
            .expect("media add");
    }

    // Users and their sessions (password hashing is slow in a debug build: in parallel).
    let admin = Arc::new(admin);
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..USERS {
        let admin = admin.clone();
        creating.spawn(async move {
            admin
                .create_user(CreateUser {
                    id: user_id(i),
                    password: PASSWORD.into(),
                    display_name: None,
                    home_server: Some(ServerId::new(format!("s{}", i % 3 + 1))),
                    admin: false,
                })
                .await
                .expect("create user");
        });
    }
    while creating.join_next().await.is_some() {}
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..USERS {
        let url = s1_url.clone();
        logins.spawn(async move {
            let device = Some(DeviceId::from("d1"));
            let client = Client::login(&url, &user_id(i), PASSWORD, device)
                .await
                .expect("login");
            (i, client)
        });
    }
    let mut clients: Vec<Option<Client>> = vec![None; USERS];
    while let Some(joined) = logins.join_next().await {
        let (i, client) = joined.expect("login task");
        clients[i] = Some(client);
    }
    let clients: Vec<Client> = clients.into_iter().map(|c| c.expect("signed in")).collect();
    let mut members: HashMap<ConversationId, Vec<usize>> = HashMap::new();
    let mut conversations: Vec<Vec<ConversationId>> = vec![Vec::new(); USERS];
    // 1:1 pairs (i, i+1): always across two servers. A first message creates each.
    for i in 0..USERS {
        let j = (i + 1) % USERS;
        let message = clients[i]
            .send_to_user(&user_id(j), "hello")
            .await
            .expect("first message");
        members.insert(message.conversation.clone(), vec![i, j]);
        conversations[i].push(message.conversation.clone());
        conversations[j].push(message.conversation);
    }
    for (n, group) in groups().into_iter().enumerate() {
        let summary = clients[group[0]]
            .create_conversation(CreateConversation {
                name: format!("group {n}"),
                members: group[1..].iter().map(|&i| user_id(i)).collect(),
            })
            .await
            .expect("group");
        for &i in &group {
            conversations[i].push(summary.id.clone());
        }
        members.insert(summary.id, group);
    }

    // Devices: even users have two.
    let mut devices = Vec::new();
    let mut users = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let mut own = vec![devices.len()];
        devices.push(Device::start(client, "d1").await);
        if i % 2 == 0 {
            // The second device shares the session.
            own.push(devices.len());
            devices.push(Device::start(client, "d2").await);
        }
        users.push(Arc::new(User {
            id: user_id(i),
            client: client.clone(),
            conversations: conversations[i].clone(),
            devices: own,
        }));
    }
    let expectation = Expectation { members };
    // Call pairs across servers; their calls use a `softphone` device of each.
    let call_pairs = [(0, 1), (4, 8), (2, 3)]
        .map(|(a, b)| (clients[a].clone(), clients[b].clone()))
        .into();
    let deadline = Instant::now() + WAIT;
    while !admin
        .media()
        .await
        .is_ok_and(|media| media.len() == 2 && media.iter().all(|m| m.alive))
    {
        assert!(Instant::now() < deadline, "MediaServers never alive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log(&format!(
        "{USERS} users, {} devices, {} conversations; load for {seconds} s",
        devices.len(),
        expectation.members.len()
    ));

    // The load.
    let record = Arc::new(Record::default());
    let running = Arc::new(AtomicBool::new(true));
    let load_start = Instant::now();
    let give_up = Arc::new(Mutex::new(load_start + Duration::from_secs(seconds) + WAIT));
    let mut senders = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        senders.spawn(sender(
            i,
            user.clone(),
            running.clone(),
            give_up.clone(),
            record.clone(),
        ));
    }
    let calls = tokio::spawn(call_loop(call_pairs, running.clone(), record.clone()));

    // The faults, in turn.
    let warmup = Duration::from_secs((seconds / 10).max(4));
    let slot = (Duration::from_secs(seconds) - warmup) / 4;
    let scale = |outage: Duration| outage.min(slot / 3);
    let mut faults = Vec::new();
    let direct = |a: usize, b: usize| ConversationId::direct(&user_id(a), &user_id(b));
    for k in 0..4 {
        tokio::time::sleep_until((load_start + warmup + slot * k).into()).await;
        // The outage starts at the kill (the MediaServer's after waiting for a call).
        let mut began = Instant::now();
        let (fault, probe_path, extra) = match k {
            0 => {
                // Once a call talks, so that its end falls into the outage.
                let talking = until(Duration::from_secs(20), || async {
                    record.talking_on.lock().unwrap().is_some()
                })
                .await
                .is_some();
                log(&format!("fault: Redis killed (a call talking: {talking})"));
                began = Instant::now();
                lab.redis.stop();
                tokio::time::sleep(REDIS_OUTAGE).await;
                tokio::task::block_in_place(|| lab.redis.restart());
                // u00 (s1) -> u01 (s2): the bus between servers.
                ("redis", Some((0, 1)), json!({}))
            }
            1 => {
                log("fault: PostgreSQL stopped");
                tokio::task::block_in_place(|| lab.postgres.stop());
                tokio::time::sleep(scale(SQL_OUTAGE)).await;
                tokio::task::block_in_place(|| lab.postgres.restart());
                // u01 (s2) -> u02 (s3), stored.
                ("postgres", Some((1, 2)), json!({}))
            }
            2 => {
                // Once a call s3 owns talks (u02 of s3 calls u03 of s1), so that it dies with
                // its owner.
                let owner_talking = until(Duration::from_secs(30), || async {
                    record
                        .talking_on
                        .lock()
                        .unwrap()
                        .as_ref()
                        .is_some_and(|(_, caller)| *caller == user_id(2))
                })
                .await
                .is_some();
                log(&format!(
                    "fault: UCServer s3 killed (SIGKILL; a call it owns talking: {owner_talking})"
                ));
                began = Instant::now();
                tokio::task::block_in_place(|| lab.servers[2].kill9());
                tokio::time::sleep(scale(UCSERVER_OUTAGE)).await;
                tokio::task::block_in_place(|| lab.servers[2].restart());
                // u02 (s3) -> u03 (s1): through the restarted server.
                (
                    "ucserver",
                    Some((2, 3)),
                    json!({ "server": "s3", "owned_call_talking": owner_talking }),
                )
            }
            _ => {
                // The MediaServer carrying a call, once one talks (waiting a bounded time).
                let talking = until(Duration::from_secs(20), || async {
                    record.talking_on.lock().unwrap().is_some()
                })
                .await;
                let busy = record
                    .talking_on
                    .lock()
                    .unwrap()
                    .clone()
                    .map(|(media, _)| media);
                let index = usize::from(busy.as_deref() == Some("m2"));
                let carried = talking.is_some() && busy.is_some();
                let id = lab.media[index].id.clone();
                log(&format!(
                    "fault: MediaServer {id} killed (carrying calls: {carried})"
                ));
                began = Instant::now();
                tokio::task::block_in_place(|| lab.media[index].kill9());
                tokio::time::sleep(scale(MEDIA_OUTAGE)).await;
                tokio::task::block_in_place(|| lab.media[index].restart());
                (
                    "mediaserver",
                    None,
                    json!({ "media": id, "carried_calls": carried }),
                )
            }
        };
        let ended = Instant::now();
        let outage = ended - began;
        let before: Vec<Accepted> = record.accepted.lock().unwrap().clone();
        let probe_took = match probe_path {
            Some((a, b)) => {
                let device = &devices[users[b].devices[0]];
                probe(
                    &users[a].client,
                    &direct(a, b),
                    device,
                    fault,
                    ended,
                    &record,
                )
                .await
            }
            None => {
                let id = MediaServerId::from(if fault == "mediaserver" {
                    extra["media"].as_str().unwrap_or("m1")
                } else {
                    "m1"
                });
                until(WAIT, || async {
                    admin
                        .media()
                        .await
                        .is_ok_and(|media| media.iter().any(|m| m.id == id && m.alive))
                })
                .await
                .map(|_| ended.elapsed())
            }
        };
        let caught_up = expectation
            .caught_up(&before, &users, &devices, WAIT)
            .await
            .map(|_| ended.elapsed());
        // Once the call under way is over (no new one starts meanwhile), nobody is left in a
        // call or ringing.
        record.calls_paused.store(true, Ordering::Relaxed);
        until(WAIT, || async { !record.in_call.load(Ordering::Relaxed) }).await;
        let telephony = until(Duration::from_secs(20), || all_idle(users.clone()))
            .await
            .map(|_| ended.elapsed());
        if telephony.is_none() {
            let mut stuck = Vec::new();
            for user in &users {
                if let Ok(p) = user.client.get_presence(&user.id).await
                    && !matches!(p.telephony, None | Some(TelephonyState::Idle))
                {
                    stuck.push(format!("{} {:?}", user.id, p.telephony));
                }
            }
            log(&format!("{fault}: telephony not idle: {stuck:?}"));
        }
        record.calls_paused.store(false, Ordering::Relaxed);
        log(&format!(
            "{fault}: outage {outage:?}, probe {probe_took:?}, caught up {caught_up:?}, telephony idle {telephony:?} after its end"
        ));
        faults.push(FaultReport {
            fault,
            outage,
            probe: probe_took,
            caught_up,
            telephony,
            extra,
        });
    }
    tokio::time::sleep_until((load_start + Duration::from_secs(seconds)).into()).await;

    // The load stops; sends under way get a bounded time to be accepted.
    log("load stops");
    running.store(false, Ordering::Relaxed);
    *give_up.lock().unwrap() = Instant::now() + WAIT;
    while senders.join_next().await.is_some() {}
    let _ = tokio::time::timeout(Duration::from_secs(120), calls).await;
    let load_seconds = load_start.elapsed().as_secs_f64();

    let accepted: Vec<Accepted> = record.accepted.lock().unwrap().clone();
    let settle = expectation
        .caught_up(&accepted, &users, &devices, WAIT)
        .await;
    log(&format!(
        "{} messages accepted; devices settled: {settle:?}",
        accepted.len()
    ));

    let mut failed: Vec<String> = Vec::new();

    // Deliveries, device by device.
    let mut expected_deliveries = 0u64;
    let mut delivered = 0u64;
    let mut lost_ids: HashSet<String> = HashSet::new();
    let mut duplicated_ids: HashSet<String> = HashSet::new();
    let mut out_of_order = 0u64;
    let mut provisional_shown = 0u64;
    let mut provisional_never_stored = 0u64;
    let mut by_conversation: HashMap<ConversationId, Vec<&Accepted>> = HashMap::new();
    for message in &accepted {
        by_conversation
            .entry(message.conversation.clone())
            .or_default()
            .push(message);
    }
    for (conversation, member_users) in &expectation.members {
        let expected = by_conversation
            .get(conversation)
            .cloned()
            .unwrap_or_default();
        for &member in member_users {
            for &index in &users[member].devices {
                let shown: Vec<ChatMessage> = devices[index]
                    .messages()
                    .into_iter()
                    .filter(|m| &m.conversation == conversation)
                    .collect();
                let stored: Vec<u64> = shown.iter().filter(|m| m.seq > 0).map(|m| m.seq).collect();
                if stored.windows(2).any(|w| w[1] != w[0] + 1) {
                    out_of_order += 1;
                    log(&format!(
                        "{} {}: {conversation} shown out of order or with holes: {stored:?}",
                        users[member].id,
                        devices[index].name()
                    ));
                }
                let mut positions: HashMap<&str, (Vec<usize>, Vec<usize>)> = HashMap::new();
                for (position, message) in shown.iter().enumerate() {
                    let entry = positions.entry(message.id.as_str()).or_default();
                    if message.seq > 0 {
                        entry.0.push(position);
                    } else {
                        entry.1.push(position);
                    }
                }
                for (id, (stored_at, provisional_at)) in &positions {
                    provisional_shown += provisional_at.len() as u64;
                    if provisional_at.len() > 1 {
                        duplicated_ids.insert(id.to_string());
                    }
                    match (stored_at.first(), provisional_at.first()) {
                        (None, Some(_)) => provisional_never_stored += 1,
                        (Some(s), Some(p)) if p > s => out_of_order += 1,
                        _ => {}
                    }
                }
                for message in &expected {
                    expected_deliveries += 1;
                    match positions.get(message.id.as_str()).map_or(0, |p| p.0.len()) {
                        0 => {
                            lost_ids.insert(message.id.clone());
                        }
                        1 => delivered += 1,
                        _ => {
                            delivered += 1;
                            duplicated_ids.insert(message.id.clone());
                        }
                    }
                }
            }
        }
    }

    // History, conversation by conversation.
    let mut history_missing = 0u64;
    let mut history_twice = 0u64;
    let mut history_gaps = 0u64;
    let mut history_errors = Vec::new();
    for (conversation, member_users) in &expectation.members {
        let reader = &users[member_users[0]].client;
        match history(reader, conversation).await {
            Ok((ids, twice, gap)) => {
                history_twice += twice;
                history_gaps += u64::from(gap);
                for message in by_conversation.get(conversation).into_iter().flatten() {
                    match ids.get(&message.id).copied().unwrap_or(0) {
                        0 => {
                            history_missing += 1;
                            lost_ids.insert(message.id.clone());
                        }
                        1 => {}
                        _ => {
                            history_twice += 1;
                            duplicated_ids.insert(message.id.clone());
                        }
                    }
                }
            }
            Err(e) => history_errors.push(e),
        }
    }

    // Seats: every user is signed in.
    log("checking seats, telephony, leases, presence");
    let signed_in = USERS as u32;
    let seats_settled = until(WAIT, || async {
        seats_in_use(&admin).await == Some(signed_in)
    })
    .await;
    let seats = seats_in_use(&admin).await;

    // Nobody in a call or ringing, no lease held.
    let telephony_settled = until(WAIT, || all_idle(users.clone())).await;
    let mut not_idle = Vec::new();
    for user in &users {
        if !idle(user.clone()).await {
            not_idle.push(user.id.to_string());
        }
    }
    let leases_settled = until(WAIT, || async { softphone_leases(&admin).await == Some(0) }).await;
    let leases = softphone_leases(&admin).await;

    // Every device disconnects: nobody stays online.
    let reconnects: u64 = devices.iter().map(Device::reconnects).sum();
    let device_count = devices.len();
    for device in devices {
        device.stop().await;
    }
    let online = || async {
        admin.users().await.map(|all| {
            all.into_iter()
                .filter(|u| u.online)
                .map(|u| u.id.to_string())
                .collect::<Vec<_>>()
        })
    };
    let offline_after = until(WAIT, || async {
        online().await.is_ok_and(|o| o.is_empty())
    })
    .await;
    let stuck_online = online().await.unwrap_or_default();

    // The verdict.
    let lost = lost_ids.len() as u64;
    let duplicated = duplicated_ids.len() as u64;
    let survived = faults
        .iter()
        .filter(|f| f.probe.is_some() && f.caught_up.is_some() && f.telephony.is_some())
        .count();
    if survived < faults.len() {
        failed.push("a fault was not recovered from within the bound".into());
    }
    if lost > 0 {
        failed.push(format!("{lost} accepted messages lost"));
    }
    if duplicated > 0 {
        failed.push(format!("{duplicated} messages duplicated"));
    }
    if out_of_order > 0 {
        failed.push(format!("{out_of_order} out of order"));
    }
    if provisional_never_stored > 0 {
        failed.push(format!(
            "{provisional_never_stored} provisional messages never stored"
        ));
    }
    if history_missing + history_twice + history_gaps > 0 || !history_errors.is_empty() {
        failed.push("history incomplete".into());
    }
    if seats_settled.is_none() {
        failed.push(format!("seats in use {seats:?}, {signed_in} signed in"));
    }
    if telephony_settled.is_none() {
        failed.push(format!("telephony not idle: {not_idle:?}"));
    }
    if leases_settled.is_none() {
        failed.push(format!("softphone leases in use: {leases:?}"));
    }
    if offline_after.is_none() {
        failed.push(format!("stuck online: {stuck_online:?}"));
    }
    if accepted.is_empty() {
        failed.push("no message was accepted".into());
    }
    for line in &failed {
        log(&format!("invariant failed: {line}"));
    }
    let calls = record.calls.lock().unwrap();
    let provisional_acks = accepted.iter().filter(|m| m.provisional).count();
    json!({
        "seconds": seconds,
        "load_s": (load_seconds * 10.0).round() / 10.0,
        "users": USERS,
        "devices": device_count,
        "conversations": expectation.members.len(),
        "faults_survived": survived,
        "faults": faults.iter().map(|f| json!({
            "fault": f.fault,
            "outage_ms": millis(f.outage),
            "probe_ms": f.probe.map(millis),
            "caught_up_ms": f.caught_up.map(millis),
            "telephony_idle_ms": f.telephony.map(millis),
            "detail": f.extra,
        })).collect::<Vec<_>>(),
        "messages": {
            "accepted": accepted.len(),
            "accepted_provisional": provisional_acks,
            "expected_deliveries": expected_deliveries,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "provisional_shown": provisional_shown,
            "provisional_never_stored": provisional_never_stored,
            "unconfirmed": record.unconfirmed.load(Ordering::Relaxed),
            "refused": *record.refused.lock().unwrap(),
            "retries": record.retries.load(Ordering::Relaxed),
            "errors_seen": *record.errors.lock().unwrap(),
        },
        "settle_ms": settle.map(millis),
        "history": {
            "complete": history_missing + history_twice + history_gaps == 0 && history_errors.is_empty(),
            "missing": history_missing,
            "stored_twice": history_twice,
            "gaps": history_gaps,
            "errors": history_errors,
        },
        "presence": {
            "changes": record.presence_changes.load(Ordering::Relaxed),
            "failed": record.presence_failures.load(Ordering::Relaxed),
        },
        "calls": {
            "placed": calls.placed,
            "connected": calls.connected,
            "failed": calls.failed,
            "media": calls.media,
            "ended": calls.ended,
        },
        "seats": { "in_use": seats, "signed_in": signed_in, "settled_ms": seats_settled.map(millis) },
        "telephony_idle_ms": telephony_settled.map(millis),
        "telephony_not_idle": not_idle,
        "softphone_leases_in_use": leases,
        "offline_after_disconnect_ms": offline_after.map(millis),
        "stuck_online": stuck_online,
        "device_reconnects": reconnects,
        "invariants_held": failed.is_empty(),
        "failed": failed,
    })
}
