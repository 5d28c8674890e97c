//! `uc-bench`: load generator for a two-server Switchboard cluster (not a test).
//!
//! It creates N users (half homed on server A, half on B), logs them in, opens their
//! WebSockets and files contacts so that every user is watched by W others (on both servers),
//! then measures, printing one JSON object on stdout (progress goes to stderr):
//! - presence fan-out: every user changes availability at once, R rounds; latency from the
//!   change being sent to its receipt at each watcher (p50/p99), and deliveries per second;
//! - cross-server chat: users of A send 1:1 to users of B over the WebSocket, first one message
//!   at a time (unloaded latency), then pipelined (throughput: messages acked = persisted, and
//!   delivered, per second, with latency under that load);
//! - memory per idle session, read from both servers' `/metrics` (`uc_process_resident_bytes`,
//!   `uc_devices`) before logins and after all sockets are open.
//!
//! Every wait is bounded (`--phase-timeout`), every loop counted, and the users it created
//! are deleted at the end (unless `--keep-users`). Run it against loopback servers: the load
//! generator shares the machine's cores with them, and `nproc` is in the output for that reason.

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use shared::api::{CreateUser, ErrorCode};
use shared::presence::{Availability, Capability};
use shared::ws::{ClientCommand, ServerEvent};
use shared::{ServerId, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use ucclient::{AdminClient, Client, Connection, HttpClient, ops};

#[derive(Debug, Parser)]
#[command(
    name = "uc-bench",
    about = "Switchboard load generator: presence fan-out and chat"
)]
struct Args {
    /// Base URL of the first UCServer.
    #[arg(long)]
    url_a: String,
    /// Base URL of the second UCServer (same cluster).
    #[arg(long)]
    url_b: String,
    #[arg(long, env = "UC_USER")]
    admin_user: String,
    #[arg(long, env = "UC_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Simulated clients (users, one device each); even, at least 2.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Watchers per user (each user is a contact of this many others).
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    /// Presence rounds (every user changes once per round).
    #[arg(long, default_value_t = 10)]
    presence_rounds: usize,
    /// Messages each sender sends one at a time, for unloaded latency.
    #[arg(long, default_value_t = 20)]
    latency_messages: usize,
    /// Messages in all for the throughput phase, spread over the senders (users of A).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Unanswered messages each sender keeps in flight in the throughput phase.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    /// Longest wait for any one phase (or presence round), in seconds.
    #[arg(long, default_value_t = 60)]
    phase_timeout: u64,
    /// Requests in flight while creating users and logging in (logins hash passwords).
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// Leave the created users in place.
    #[arg(long)]
    keep_users: bool,
}

/// Measurement phases; each client task keeps one histogram per phase.
const WARMUP: usize = 0;
const PRESENCE: usize = 1;
const CHAT_LATENCY: usize = 2;
const CHAT_THROUGHPUT: usize = 3;
const PHASES: usize = 4;

/// Counters and clocks shared by the orchestrator and the client tasks. Timestamps are
/// microseconds since `start` (one monotonic clock: everything runs in this process).
struct Shared {
    start: Instant,
    phase: AtomicUsize,
    /// The presence round under way: watchers count only changes to its availability.
    round: AtomicUsize,
    users: Vec<UserId>,
    index_of: HashMap<UserId, usize>,
    /// When each user's latest presence change was sent.
    presence_sent_us: Vec<AtomicU64>,
    presence_received: AtomicU64,
    last_presence_us: AtomicU64,
    chat_acked: AtomicU64,
    chat_errors: AtomicU64,
    chat_received: AtomicU64,
    last_ack_us: AtomicU64,
    last_delivery_us: AtomicU64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// What the orchestrator asks a client task to do.
enum Order {
    SetPresence(Availability),
    /// Send `count` 1:1 messages to `to`, keeping at most `pipeline` unanswered.
    Chat {
        to: UserId,
        count: usize,
        pipeline: usize,
    },
    Stop,
}

/// The availability of presence round `round`: never `available`, which is what devices
/// coming online produce, so those events are not mistaken for measured ones.
fn round_availability(round: usize) -> Availability {
    if round.is_multiple_of(2) {
        Availability::Busy
    } else {
        Availability::Away
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: internal: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            let text = match error.downcast_ref::<ucclient::ClientError>() {
                Some(client_error) => format!("{client_error} ({error:#})"),
                None => format!("client: {error:#}"),
            };
            eprintln!("error: {text}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Value> {
    if args.clients < 2 || !args.clients.is_multiple_of(2) {
        bail!("--clients must be even and at least 2");
    }
    if args.watchers == 0 || args.watchers >= args.clients {
        bail!("--watchers must be between 1 and clients - 1");
    }
    let http = HttpClient::new()?;
    let server_a = ops::health(&http, &args.url_a)
        .await
        .context("GET /healthz of A")?
        .server;
    let server_b = ops::health(&http, &args.url_b)
        .await
        .context("GET /healthz of B")?
        .server;
    if server_a == server_b {
        bail!("--url-a and --url-b are the same server ({server_a})");
    }
    let admin = AdminClient::login_with(
        &http,
        &args.url_a,
        &UserId::from(args.admin_user.as_str()),
        &args.admin_password,
    )
    .await
    .context("admin login at A")?;
    let known: Vec<ServerId> = admin
        .servers()
        .await?
        .servers
        .into_iter()
        .map(|s| s.id)
        .collect();
    for server in [&server_a, &server_b] {
        if !known.contains(server) {
            bail!("server {server} is not in GET /admin/servers ({known:?}): not one cluster?");
        }
    }
    check_seats(&admin, args.clients).await?;

    let run_id: u32 = rand::random::<u32>() & 0xfffff;
    let password = format!("bench-{}", uuid::Uuid::new_v4());
    let users: Vec<UserId> = (0..args.clients)
        .map(|i| UserId::new(format!("bench{run_id:05x}-{i:05}")))
        .collect();
    let homes: Vec<(ServerId, String)> = (0..args.clients)
        .map(|i| {
            if i % 2 == 0 {
                (server_a.clone(), args.url_a.clone())
            } else {
                (server_b.clone(), args.url_b.clone())
            }
        })
        .collect();

    eprintln!("uc-bench: creating {} users", users.len());
    let started = Instant::now();
    let created = create_users(&admin, &users, &homes, &password, args.setup_concurrency).await;
    let create_s = started.elapsed().as_secs_f64();
    let result = match created {
        Ok(()) => {
            measure(
                &args,
                &http,
                &users,
                &homes,
                &password,
                create_s,
                (&server_a, &server_b),
            )
            .await
        }
        Err(error) => Err(error),
    };
    if !args.keep_users {
        eprintln!("uc-bench: deleting the users");
        let deleted = stream::iter(users.iter())
            .map(|user| admin.delete_user(user))
            .buffer_unordered(args.setup_concurrency.max(1))
            .filter(|outcome| std::future::ready(outcome.is_err()))
            .count()
            .await;
        if deleted > 0 {
            eprintln!("uc-bench: {deleted} users could not be deleted");
        }
    }
    let _ = admin.logout().await;
    result
}

/// Fails early with a clear message when the seat license cannot cover the run.
async fn check_seats(admin: &AdminClient, clients: usize) -> anyhow::Result<()> {
    for license in admin.licenses().await? {
        if license.kind == "uc-seat"
            && let Some(capacity) = license.capacity
        {
            let free = capacity.saturating_sub(license.in_use) as usize;
            if free < clients {
                bail!(
                    "only {free} uc-seat licenses are free for {clients} clients: raise it with `ucadmin license set uc-seat N`"
                );
            }
        }
    }
    Ok(())
}

async fn create_users(
    admin: &AdminClient,
    users: &[UserId],
    homes: &[(ServerId, String)],
    password: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let outcomes: Vec<_> = stream::iter(users.iter().zip(homes))
        .map(|(user, (home, _))| {
            admin.create_user(CreateUser {
                id: user.clone(),
                password: password.to_string(),
                display_name: Some(format!("Bench {user}")),
                home_server: Some(home.clone()),
                admin: false,
            })
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for outcome in outcomes {
        outcome.context("creating a user")?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    http: &HttpClient,
    users: &[UserId],
    homes: &[(ServerId, String)],
    password: &str,
    create_s: f64,
    (server_a, server_b): (&ServerId, &ServerId),
) -> anyhow::Result<Value> {
    let n = users.len();
    let phase_timeout = Duration::from_secs(args.phase_timeout);

    eprintln!("uc-bench: logging in {n} users");
    let started = Instant::now();
    let logins: Vec<Result<Client, ucclient::ClientError>> = stream::iter(users.iter().zip(homes))
        .map(|(user, (_, url))| Client::login_with(http, url, user, password, None))
        .buffered(args.setup_concurrency.max(1))
        .collect()
        .await;
    let clients: Vec<Client> = logins
        .into_iter()
        .collect::<Result<_, _>>()
        .context("logging in")?;
    let login_s = started.elapsed().as_secs_f64();

    let result = measure_logged_in(
        args,
        http,
        users,
        &clients,
        phase_timeout,
        (create_s, login_s),
        (server_a, server_b),
    )
    .await;
    let _ = stream::iter(clients.iter())
        .map(|client| client.logout())
        .buffer_unordered(32)
        .count()
        .await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure_logged_in(
    args: &Args,
    http: &HttpClient,
    users: &[UserId],
    clients: &[Client],
    phase_timeout: Duration,
    (create_s, login_s): (f64, f64),
    (server_a, server_b): (&ServerId, &ServerId),
) -> anyhow::Result<Value> {
    let n = users.len();
    let w = args.watchers;
    eprintln!("uc-bench: filing contacts (each user watched by {w})");
    let started = Instant::now();
    // User i watches i+1 ..= i+w: user j is watched by the w users before it, which
    // alternate between the two servers.
    let orders: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (1..=w).map(move |k| (i, (i + k) % n)))
        .collect();
    let outcomes: Vec<_> = stream::iter(orders.iter())
        .map(|&(i, j)| clients[i].put_contact(&users[j], "bench"))
        .buffer_unordered(32)
        .collect()
        .await;
    for outcome in outcomes {
        outcome.context("adding a contact")?;
    }
    let contacts_s = started.elapsed().as_secs_f64();

    // Memory is compared right around opening the sockets, so that it is what idle
    // connected sessions cost (logins hash passwords, which leaves allocator noise).
    let metrics_before = [
        read_memory(http, &args.url_a).await?,
        read_memory(http, &args.url_b).await?,
    ];
    eprintln!("uc-bench: opening {n} WebSockets");
    let started = Instant::now();
    let connections: Vec<Result<Connection, ucclient::ClientError>> = stream::iter(clients.iter())
        .map(|client| client.connect(None, &[Capability::Chat]))
        .buffered(64)
        .collect()
        .await;
    let connections: Vec<Connection> = connections
        .into_iter()
        .collect::<Result<_, _>>()
        .context("connecting")?;
    let connect_s = started.elapsed().as_secs_f64();

    let shared = Arc::new(Shared {
        start: Instant::now(),
        phase: AtomicUsize::new(WARMUP),
        round: AtomicUsize::new(0),
        users: users.to_vec(),
        index_of: users
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, u)| (u, i))
            .collect(),
        presence_sent_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
        presence_received: AtomicU64::new(0),
        last_presence_us: AtomicU64::new(0),
        chat_acked: AtomicU64::new(0),
        chat_errors: AtomicU64::new(0),
        chat_received: AtomicU64::new(0),
        last_ack_us: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    let mut order_senders = Vec::with_capacity(n);
    for (index, connection) in connections.into_iter().enumerate() {
        let (sender, receiver) = mpsc::channel(4);
        order_senders.push(sender);
        tasks.spawn(client_task(
            index,
            users[index].clone(),
            connection,
            receiver,
            shared.clone(),
        ));
    }

    // Let the servers settle (subscriptions across servers), then read idle memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics_after = [
        read_memory(http, &args.url_a).await?,
        read_memory(http, &args.url_b).await?,
    ];

    let outcome = phases(args, &shared, &order_senders, phase_timeout).await;

    for sender in &order_senders {
        let _ = sender.send(Order::Stop).await;
    }
    let mut histograms: Vec<Histogram<u64>> = (0..PHASES).map(|_| new_histogram()).collect();
    let mut task_errors = 0;
    let deadline = Instant::now() + phase_timeout;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        match joined {
            Ok(task_histograms) => {
                for (total, part) in histograms.iter_mut().zip(&task_histograms) {
                    let _ = total.add(part);
                }
            }
            Err(_) => task_errors += 1,
        }
    }
    tasks.abort_all();
    let (presence, chat_latency, chat_throughput) = outcome?;

    let memory = memory_report(&metrics_before, &metrics_after, [server_a, server_b]);
    Ok(json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "clients": n,
        "watchers": w,
        "servers": { "a": server_a, "b": server_b },
        "setup_s": { "create_users": create_s, "login": login_s, "contacts": contacts_s, "connect": connect_s },
        "memory": memory,
        "presence": with_latency(presence, &histograms[PRESENCE]),
        "chat_latency": with_latency(chat_latency, &histograms[CHAT_LATENCY]),
        "chat_throughput": with_latency(chat_throughput, &histograms[CHAT_THROUGHPUT]),
        "client_task_failures": task_errors,
    }))
}

/// Runs the measured phases; returns the counters of each (latencies are merged later).
async fn phases(
    args: &Args,
    shared: &Arc<Shared>,
    orders: &[mpsc::Sender<Order>],
    phase_timeout: Duration,
) -> anyhow::Result<(Value, Value, Value)> {
    let n = orders.len();
    let per_round = n as u64 * args.watchers as u64;

    // Presence: one warm-up round (not counted), then the measured rounds.
    let mut measured_deliveries = 0u64;
    let mut measured_us = 0u64;
    let mut incomplete_rounds = 0;
    for round in 0..=args.presence_rounds {
        let phase = if round == 0 { WARMUP } else { PRESENCE };
        if round == 1 {
            eprintln!("uc-bench: {} presence rounds", args.presence_rounds);
        }
        shared.phase.store(phase, Ordering::Release);
        shared.round.store(round, Ordering::Release);
        let received_before = shared.presence_received.load(Ordering::Acquire);
        let round_start = shared.now_us();
        for sender in orders {
            sender
                .send(Order::SetPresence(round_availability(round)))
                .await
                .context("a client task ended")?;
        }
        let complete = wait_until(phase_timeout, || {
            shared.presence_received.load(Ordering::Acquire) - received_before >= per_round
        })
        .await;
        if phase == PRESENCE {
            if !complete {
                incomplete_rounds += 1;
            }
            let received = shared.presence_received.load(Ordering::Acquire) - received_before;
            measured_deliveries += received.min(per_round);
            measured_us += shared
                .last_presence_us
                .load(Ordering::Acquire)
                .saturating_sub(round_start);
        }
    }
    let presence = json!({
        "rounds": args.presence_rounds,
        "changes": n * args.presence_rounds,
        "expected_deliveries": per_round * args.presence_rounds as u64,
        "deliveries": measured_deliveries,
        "rounds_incomplete": incomplete_rounds,
        "deliveries_per_s": per_second(measured_deliveries, measured_us),
    });

    eprintln!(
        "uc-bench: chat latency ({} messages per sender, one at a time)",
        args.latency_messages
    );
    let chat_latency = chat_phase(
        shared,
        orders,
        CHAT_LATENCY,
        args.latency_messages,
        1,
        phase_timeout,
    )
    .await?;
    let per_sender = args.messages.div_ceil(n / 2);
    eprintln!(
        "uc-bench: chat throughput ({per_sender} messages per sender, pipeline {})",
        args.pipeline
    );
    let chat_throughput = chat_phase(
        shared,
        orders,
        CHAT_THROUGHPUT,
        per_sender,
        args.pipeline.max(1),
        phase_timeout,
    )
    .await?;
    Ok((presence, chat_latency, chat_throughput))
}

/// One chat phase: the users of A (even indices) each send `per_sender` messages to the
/// next user (on B), keeping `pipeline` unanswered; waits until all are answered and
/// delivered, or `phase_timeout`.
async fn chat_phase(
    shared: &Shared,
    orders: &[mpsc::Sender<Order>],
    phase: usize,
    per_sender: usize,
    pipeline: usize,
    phase_timeout: Duration,
) -> anyhow::Result<Value> {
    let counters = |shared: &Shared| {
        (
            shared.chat_acked.load(Ordering::Acquire),
            shared.chat_errors.load(Ordering::Acquire),
            shared.chat_received.load(Ordering::Acquire),
        )
    };
    shared.phase.store(phase, Ordering::Release);
    let senders: Vec<usize> = (0..orders.len()).step_by(2).collect();
    let total = (senders.len() * per_sender) as u64;
    let (acked_before, errors_before, received_before) = counters(shared);
    let start = shared.now_us();
    for &i in &senders {
        let order = Order::Chat {
            to: shared.users[i + 1].clone(),
            count: per_sender,
            pipeline,
        };
        orders[i].send(order).await.context("a client task ended")?;
    }
    let complete = wait_until(phase_timeout, || {
        let (acked, errors, received) = counters(shared);
        let failed = errors - errors_before;
        acked - acked_before + failed >= total && received - received_before + failed >= total
    })
    .await;
    let (acked, errors, received) = counters(shared);
    let (acked, errors, received) = (
        acked - acked_before,
        errors - errors_before,
        received - received_before,
    );
    let persisted_us = shared
        .last_ack_us
        .load(Ordering::Acquire)
        .saturating_sub(start);
    let delivered_us = shared
        .last_delivery_us
        .load(Ordering::Acquire)
        .saturating_sub(start);
    Ok(json!({
        "senders": senders.len(),
        "pipeline": pipeline,
        "messages": total,
        "acked": acked,
        "errors": errors,
        "delivered": received,
        "complete": complete,
        "persisted_per_s": per_second(acked, persisted_us),
        "delivered_per_s": per_second(received, delivered_us),
    }))
}

/// Polls `done` every 5 ms until it holds or `timeout` passes; true when it held.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

fn per_second(count: u64, micros: u64) -> f64 {
    if micros == 0 {
        0.0
    } else {
        count as f64 * 1_000_000.0 / micros as f64
    }
}

fn with_latency(mut counters: Value, histogram: &Histogram<u64>) -> Value {
    if let Value::Object(map) = &mut counters {
        map.insert(
            "latency_us".into(),
            json!({
                "samples": histogram.len(),
                "p50": histogram.value_at_quantile(0.50),
                "p99": histogram.value_at_quantile(0.99),
                "max": histogram.max(),
            }),
        );
    }
    counters
}

/// One simulated device: obeys orders, and records every measured event it receives.
/// Returns its histograms, one per phase.
async fn client_task(
    index: usize,
    me: UserId,
    mut connection: Connection,
    mut orders: mpsc::Receiver<Order>,
    shared: Arc<Shared>,
) -> Vec<Histogram<u64>> {
    let mut histograms: Vec<Histogram<u64>> = (0..PHASES).map(|_| new_histogram()).collect();
    // Chat sending state: what is left to send, and the refs awaiting an answer.
    let mut chat_to: Option<UserId> = None;
    let mut chat_left = 0usize;
    let mut chat_pipeline = 1usize;
    let mut chat_in_flight: HashSet<u64> = HashSet::new();
    loop {
        tokio::select! {
            order = orders.recv() => match order {
                None | Some(Order::Stop) => break,
                Some(Order::SetPresence(availability)) => {
                    shared.presence_sent_us[index].store(shared.now_us(), Ordering::Release);
                    let command = ClientCommand::PresenceSet { availability: Some(availability), note: None, user: None };
                    if connection.send(command).await.is_err() {
                        break;
                    }
                }
                Some(Order::Chat { to, count, pipeline }) => {
                    chat_to = Some(to);
                    chat_left = count;
                    chat_pipeline = pipeline.max(1);
                }
            },
            event = connection.next_event() => match event {
                None => break,
                Some(Err(_)) => {}
                Some(Ok(ServerEvent::Presence { presence })) => {
                    // A user changing back to what the previous round set is not this round.
                    let expected = round_availability(shared.round.load(Ordering::Acquire));
                    if presence.user != me
                        && presence.availability == expected
                        && let Some(&who) = shared.index_of.get(&presence.user)
                    {
                        let now = shared.now_us();
                        let sent = shared.presence_sent_us[who].load(Ordering::Acquire);
                        let phase = shared.phase.load(Ordering::Acquire);
                        let _ = histograms[phase].record(now.saturating_sub(sent).max(1));
                        shared.presence_received.fetch_add(1, Ordering::AcqRel);
                        shared.last_presence_us.fetch_max(now, Ordering::AcqRel);
                    }
                }
                Some(Ok(ServerEvent::Message { message, .. })) => {
                    if message.sender != me
                        && let Some(sent) = message.body.strip_prefix("bench ").and_then(|t| t.parse::<u64>().ok())
                    {
                        let now = shared.now_us();
                        let phase = shared.phase.load(Ordering::Acquire);
                        let _ = histograms[phase].record(now.saturating_sub(sent).max(1));
                        shared.chat_received.fetch_add(1, Ordering::AcqRel);
                        shared.last_delivery_us.fetch_max(now, Ordering::AcqRel);
                    }
                }
                Some(Ok(ServerEvent::Ack { reference: Some(reference), .. })) => {
                    if chat_in_flight.remove(&reference) {
                        shared.chat_acked.fetch_add(1, Ordering::AcqRel);
                        shared.last_ack_us.fetch_max(shared.now_us(), Ordering::AcqRel);
                    }
                }
                Some(Ok(ServerEvent::Error { reference: Some(reference), error, message, .. })) => {
                    if chat_in_flight.remove(&reference) {
                        shared.chat_errors.fetch_add(1, Ordering::AcqRel);
                        if error != ErrorCode::TooManyAttempts {
                            eprintln!("uc-bench: {me}: send refused: {error}: {message}");
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
        }
        // Keep the pipeline full.
        while chat_left > 0 && chat_in_flight.len() < chat_pipeline {
            let Some(to) = chat_to.clone() else { break };
            let command = ClientCommand::Send {
                to: Some(to),
                conversation: None,
                body: format!("bench {}", shared.now_us()),
                client_id: Some(ucclient::new_client_id()),
            };
            match connection.send(command).await {
                Ok(reference) => {
                    chat_in_flight.insert(reference);
                    chat_left -= 1;
                }
                Err(_) => {
                    chat_left = 0;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close()).await;
    histograms
}

/// What `/metrics` says about memory and devices.
#[derive(Clone, Copy, Debug)]
struct Memory {
    resident_bytes: Option<f64>,
    devices: Option<f64>,
}

async fn read_memory(http: &HttpClient, url: &str) -> anyhow::Result<Memory> {
    let text = ops::metrics(http, url)
        .await
        .with_context(|| format!("GET {url}/metrics"))?;
    Ok(Memory {
        resident_bytes: ops::metric_value(&text, "uc_process_resident_bytes"),
        devices: ops::metric_value(&text, "uc_devices"),
    })
}

fn memory_report(before: &[Memory; 2], after: &[Memory; 2], servers: [&ServerId; 2]) -> Value {
    let mut total_bytes = 0.0;
    let mut total_devices = 0.0;
    let mut complete = true;
    let mut per_server = serde_json::Map::new();
    for ((before, after), server) in before.iter().zip(after).zip(servers) {
        let grown = match (before.resident_bytes, after.resident_bytes) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        let devices = match (before.devices, after.devices) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        match (grown, devices) {
            (Some(bytes), Some(count)) => {
                total_bytes += bytes;
                total_devices += count;
            }
            _ => complete = false,
        }
        per_server.insert(
            server.to_string(),
            json!({
                "resident_bytes_before": before.resident_bytes,
                "resident_bytes_after": after.resident_bytes,
                "devices_before": before.devices,
                "devices_after": after.devices,
            }),
        );
    }
    let per_session = if complete && total_devices > 0.0 {
        Some(total_bytes / total_devices)
    } else {
        None
    };
    json!({ "servers": per_server, "bytes_per_idle_session": per_session })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_never_use_available() {
        for round in 0..4 {
            assert_ne!(round_availability(round), Availability::Available);
        }
        assert_ne!(round_availability(0), round_availability(1));
    }

    #[test]
    fn memory_per_session() {
        let before = [
            Memory {
                resident_bytes: Some(10_000_000.0),
                devices: Some(0.0),
            },
            Memory {
                resident_bytes: Some(20_000_000.0),
                devices: Some(1.0),
            },
        ];
        let after = [
            Memory {
                resident_bytes: Some(10_800_000.0),
                devices: Some(50.0),
            },
            Memory {
                resident_bytes: Some(20_800_000.0),
                devices: Some(51.0),
            },
        ];
        let (a, b) = (ServerId::from("a"), ServerId::from("b"));
        let report = memory_report(&before, &after, [&a, &b]);
        assert_eq!(report["bytes_per_idle_session"], json!(16_000.0));
        let unknown = [
            Memory {
                resident_bytes: None,
                devices: Some(0.0),
            },
            before[1],
        ];
        let report = memory_report(&unknown, &after, [&a, &b]);
        assert_eq!(report["bytes_per_idle_session"], Value::Null);
    }

    #[test]
    fn arguments() {
        let args = Args::try_parse_from([
            "uc-bench",
            "--url-a",
            "http://127.0.0.1:7001",
            "--url-b",
            "http://127.0.0.1:7002",
            "--admin-user",
            "admin",
            "--admin-password",
            "pw",
            "--clients",
            "200",
        ])
        .unwrap();
        assert_eq!(args.clients, 200);
        assert_eq!(args.watchers, 10);
        assert_eq!(per_second(500, 1_000_000), 500.0);
        assert_eq!(per_second(5, 0), 0.0);
    }
}
