//! Benchmark (not a test): K concurrent audio calls (2 webrtc-rs clients each) through one
//! in-process MediaServer, all clients connecting at once. Prints one JSON object.
//!
//! The engine runs alone on a dedicated OS thread (its own current-thread runtime), so its
//! CPU time is read exactly from `/proc/self/task/<tid>/stat` and is not mixed with the
//! clients' (webrtc-rs is much heavier than the SFU). "Added latency" is measured inside the
//! server, from the kernel's arrival stamp of a datagram (SO_TIMESTAMPNS) to the `sendmmsg`
//! that sent its last forwarded copy, so time spent waiting in the socket for the engine
//! counts too; the clients' one-way delay through both webrtc-rs stacks and the server is
//! printed beside it.
//!
//! `--pin` gives the engine CPU 0 alone and the clients the others (a MediaServer on a node
//! of its own; without it the engine shares both cores with the clients and waits for them).
//! `--spread` starts each client at its own phase within the frame (unsynchronised phones)
//! instead of all on one timer tick.
//!
//! Run: `cargo run --release -p mediaserver --example media-bench -- [--calls 25]
//! [--seconds 10] [--frame-ms 20] [--pin] [--spread]`.

use hdrhistogram::Histogram;
use mediaserver::{MediaConfig, MediaHandle};
use serde_json::json;
use shared::media::LegOffer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ucclient::peer::{self, ClientPeer, PeerOptions};

struct Args {
    calls: usize,
    seconds: u64,
    frame_ms: u64,
    /// Engine thread alone on CPU 0, clients on the others (as on a MediaServer of its own).
    pin: bool,
    /// Each client starts at its own phase within the frame instead of all on one tick.
    spread: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        calls: 25,
        seconds: 10,
        frame_ms: 20,
        pin: false,
        spread: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--pin" || flag == "--spread" {
            args.pin |= flag == "--pin";
            args.spread |= flag == "--spread";
            continue;
        }
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--calls", Some(v)) => args.calls = v.max(1) as usize,
            ("--seconds", Some(v)) => args.seconds = v.max(1),
            ("--frame-ms", Some(v)) => args.frame_ms = v.max(1),
            _ => {
                eprintln!(
                    "usage: media-bench [--calls N] [--seconds S] [--frame-ms MS] [--pin] [--spread]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// utime + stime of one thread, in seconds (clock ticks of 10 ms, Linux's usual CLK_TCK).
fn thread_cpu_seconds(stat_path: &str) -> f64 {
    let (user, system) = thread_cpu_split(stat_path);
    user + system
}

/// (utime, stime) of one thread, in seconds.
fn thread_cpu_split(stat_path: &str) -> (f64, f64) {
    let Ok(text) = std::fs::read_to_string(stat_path) else {
        return (0.0, 0.0);
    };
    let Some(after_name) = text.rsplit_once(')').map(|(_, rest)| rest) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime / 100.0, stime / 100.0)
}

fn process_rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the engine on its own thread; returns its handle and the path of its thread stat.
fn start_engine_thread(
    config: MediaConfig,
    pin: bool,
) -> (MediaHandle, String, std::thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("media-engine".into())
        .spawn(move || {
            let (stat, runtime) = measured_thread(pin);
            runtime.block_on(async move {
                let (handle, mut events) = mediaserver::start_embedded(config)
                    .await
                    .expect("engine starts");
                ready_tx.send((handle.clone(), stat)).expect("bench waits");
                // Keep the events drained until the engine stops.
                while events.recv().await.is_some() {}
            });
        })
        .expect("engine thread");
    let (handle, stat) = ready_rx.recv().expect("engine ready");
    (handle, stat, thread)
}

/// For the thread whose CPU is measured (the engine's, or the floor relay's): pins it to
/// CPU 0 if asked, and returns the path of its stat file and a current-thread runtime.
fn measured_thread(pin: bool) -> (String, tokio::runtime::Runtime) {
    if pin {
        pin_current_thread(|cpu| cpu == 0);
    }
    let stat = std::fs::read_link("/proc/thread-self")
        .map(|p| format!("/proc/{}/stat", p.display()))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (stat, runtime)
}

/// Restricts the calling thread (and threads it starts later) to the CPUs `keep` selects.
fn pin_current_thread(keep: impl Fn(usize) -> bool) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = CpuSet::new();
    for cpu in (0..cpus).filter(|cpu| keep(*cpu)) {
        set.set(cpu).expect("cpu index");
    }
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// The machine's floor: a plain UDP relay (no ICE, DTLS, SRTP or RTP work at all) through
/// the engine's own batched socket, between `clients` loopback sockets paired like the calls,
/// each sending a 120-byte datagram every `frame`. Returns relayed datagrams per relay-thread
/// CPU-second: what the kernel's loopback path alone allows on this machine.
fn udp_relay_floor(clients: usize, frame: Duration, seconds: u64, pin: bool) -> f64 {
    use mediaserver::udp::{BatchReceiver, BatchSender};
    use std::collections::HashMap;
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    let sockets: Vec<UdpSocket> = (0..clients)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("client socket"))
        .collect();
    let addresses: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let relay = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
    relay.set_nonblocking(true).expect("nonblocking");
    let relay_address = relay.local_addr().unwrap();
    let partner: HashMap<SocketAddr, SocketAddr> = (0..clients)
        .filter(|i| i ^ 1 < clients)
        .map(|i| (addresses[i], addresses[i ^ 1]))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<UdpSocket> = sockets.iter().map(|s| s.try_clone().unwrap()).collect();
    let sending = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let datagram = [0u8; 120];
            while !stop.load(Ordering::Relaxed) {
                for socket in &senders {
                    let _ = socket.send_to(&datagram, relay_address);
                }
                std::thread::sleep(frame);
            }
        })
    };
    let draining = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for socket in &sockets {
                socket
                    .set_read_timeout(Some(Duration::from_millis(1)))
                    .unwrap();
            }
            let mut buffer = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                for socket in &sockets {
                    while socket.recv(&mut buffer).is_ok() {}
                }
            }
        })
    };
    let relaying = std::thread::spawn(move || {
        let (stat, runtime) = measured_thread(pin);
        runtime.block_on(async move {
            let socket = Arc::new(tokio::net::UdpSocket::from_std(relay).expect("tokio socket"));
            let mut receiver = BatchReceiver::new(socket.clone());
            let mut sender = BatchSender::new(socket);
            let cpu_before = thread_cpu_seconds(&stat);
            let until = Instant::now() + Duration::from_secs(seconds);
            let mut relayed = 0u64;
            while Instant::now() < until {
                let wait = until.saturating_duration_since(Instant::now());
                if tokio::time::timeout(wait, receiver.readable())
                    .await
                    .is_err()
                {
                    break;
                }
                if receiver.read().is_err() {
                    continue;
                }
                for index in 0..receiver.len() {
                    let (source, bytes) = receiver.datagram(index);
                    if let Some(destination) = partner.get(&source) {
                        sender.push(*destination, bytes.to_vec());
                        relayed += 1;
                    }
                }
                sender.flush();
            }
            let cpu = thread_cpu_seconds(&stat) - cpu_before;
            if cpu > 0.0 { relayed as f64 / cpu } else { 0.0 }
        })
    });
    let rate = relaying.join().expect("relay thread");
    stop.store(true, Ordering::Relaxed);
    let _ = sending.join();
    let _ = draining.join();
    rate.round()
}

fn percentile_ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let args = parse_args();
    if args.pin {
        // Before the client runtime starts, so all its threads inherit it.
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            eprintln!("--pin needs at least 2 CPUs");
            std::process::exit(2);
        }
        pin_current_thread(|cpu| cpu != 0);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("client runtime")
        .block_on(run(args));
}

async fn run(args: Args) {
    let frame = Duration::from_millis(args.frame_ms);
    let (clients, pin) = (args.calls * 2, args.pin);
    let floor = tokio::task::spawn_blocking(move || udp_relay_floor(clients, frame, 5, pin))
        .await
        .expect("floor measurement");
    let clients = args.calls * 2;
    let config = MediaConfig {
        id: "media-bench".into(),
        media_bind: "127.0.0.1:0".parse().unwrap(),
        capacity: (clients as u32).max(10) * 2,
        connect_timeout: Duration::from_secs(60),
        ..MediaConfig::default()
    };
    let (handle, engine_stat, engine_thread) = start_engine_thread(config, args.pin);

    // Phase 1: all peers and their offers (client-side memory, not the server's).
    let mut peers = Vec::with_capacity(clients);
    let mut offers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut peer = ClientPeer::new(PeerOptions {
            record_latency: true,
            ..PeerOptions::default()
        })
        .await
        .expect("peer builds");
        let offer = peer
            .create_offer(Duration::from_secs(20))
            .await
            .expect("offer");
        peers.push(peer);
        offers.push(offer);
    }

    // Phase 2: every leg added and connecting at once.
    let rss_before_legs = process_rss_kib();
    let started = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    let handle_for_joins = handle.clone();
    let mut peer_slots: Vec<Option<ClientPeer>> = peers.into_iter().map(Some).collect();
    for (index, offer) in offers.into_iter().enumerate() {
        let handle = handle_for_joins.clone();
        let mut peer = peer_slots[index].take().expect("peer");
        joins.spawn(async move {
            let call = format!("bench-{}", index / 2);
            let t0 = Instant::now();
            let answer = handle
                .add_leg(
                    call.as_str().into(),
                    LegOffer {
                        leg: format!("leg-{index}"),
                        sdp: offer,
                    },
                )
                .await;
            let result = match answer {
                Ok(answer) => match peer.apply_answer(answer.sdp).await {
                    Ok(()) => peer
                        .wait_connected(Duration::from_secs(60))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            (index, peer, result.map(|_| t0.elapsed()))
        });
    }
    let mut connect_hist = Histogram::<u64>::new(3).expect("histogram");
    let mut client_failures = 0u64;
    let mut failure_reasons = Vec::new();
    let mut connected_peers: Vec<(usize, ClientPeer)> = Vec::new();
    while let Some(joined) = joins.join_next().await {
        let (index, peer, result) = joined.expect("join task");
        match result {
            Ok(elapsed) => {
                let _ = connect_hist.record(elapsed.as_micros() as u64);
            }
            Err(reason) => {
                client_failures += 1;
                if failure_reasons.len() < 5 {
                    failure_reasons.push(reason);
                }
            }
        }
        connected_peers.push((index, peer));
    }
    let all_connected_after = started.elapsed();
    let rss_after_legs = process_rss_kib();
    connected_peers.sort_by_key(|(i, _)| *i);
    let peers: Vec<Arc<ClientPeer>> = connected_peers
        .into_iter()
        .map(|(_, p)| Arc::new(p))
        .collect();

    // Phase 3: connected but silent for 3 s: the engine's fixed cost (ICE consent, RTCP, timers).
    let idle_cpu_before = thread_cpu_seconds(&engine_stat);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu_per_second =
        (thread_cpu_seconds(&engine_stat) - idle_cpu_before) / idle_started.elapsed().as_secs_f64();

    // Phase 4: everybody sends for S seconds.
    let before = handle.metrics().await.expect("metrics");
    let cpu_before = thread_cpu_seconds(&engine_stat);
    let (_, system_before) = thread_cpu_split(&engine_stat);
    let send_started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    let peer_count = peers.len() as u32;
    for (index, peer) in peers.iter().enumerate() {
        let peer = peer.clone();
        let duration = Duration::from_secs(args.seconds);
        // With --spread, like phones that are not synchronised: each starts at its own phase
        // within the frame, so packets arrive spread out rather than all at one timer tick.
        let phase = if args.spread {
            frame * index as u32 / peer_count
        } else {
            Duration::ZERO
        };
        senders.spawn(async move {
            if !phase.is_zero() {
                tokio::time::sleep(phase).await;
            }
            send_at(&peer, duration, frame).await
        });
    }
    let mut packets_sent = 0u64;
    while let Some(sent) = senders.join_next().await {
        packets_sent += sent.expect("sender task");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = send_started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds(&engine_stat) - cpu_before;
    let system_cpu = thread_cpu_split(&engine_stat).1 - system_before;
    let after = handle.metrics().await.expect("metrics");
    let relayed = after.packets_relayed - before.packets_relayed;
    let datagrams_in = after.datagrams_in - before.datagrams_in;

    let mut e2e = Histogram::<u64>::new(3).expect("histogram");
    let mut packets_received = 0u64;
    for peer in &peers {
        packets_received += peer.packets_received();
        for micros in peer.take_latencies_us() {
            let _ = e2e.record(micros as u64);
        }
    }
    let server_latency = &after.forward_latency;
    let cpu_per_1000 = if relayed > 0 {
        cpu / (relayed as f64 / 1000.0)
    } else {
        0.0
    };
    let marginal_cpu = (cpu - idle_cpu_per_second * elapsed).max(0.0);
    let marginal_per_1000: f64 = if relayed > 0 {
        marginal_cpu / (relayed as f64 / 1000.0)
    } else {
        0.0
    };
    let report = json!({
        "clients": clients,
        "calls": args.calls,
        "connected": after.legs_connected,
        "dtls_failures": after.dtls_failures,
        "legs_failed": after.legs_failed,
        "client_connect_failures": client_failures,
        "failure_reasons": failure_reasons,
        "connect_ms_p50": percentile_ms(&connect_hist, 0.5),
        "connect_ms_p99": percentile_ms(&connect_hist, 0.99),
        "all_connected_after_ms": all_connected_after.as_millis() as u64,
        "send_seconds": args.seconds,
        "frame_ms": args.frame_ms,
        "engine_pinned_alone_to_cpu0": args.pin,
        "clients_spread_over_the_frame": args.spread,
        "packets_sent_by_clients": packets_sent,
        "packets_received_by_clients": packets_received,
        "packets_relayed": relayed,
        "datagrams_in": datagrams_in,
        "packets_relayed_per_second": (relayed as f64 / elapsed).round(),
        "engine_cpu_seconds": cpu,
        "engine_cpu_seconds_per_1000_packets": cpu_per_1000,
        "projected_packets_per_core_second": if cpu_per_1000 > 0.0 { (1000.0 / cpu_per_1000).round() } else { 0.0 },
        "udp_relay_floor_packets_per_core_second": floor,
        "udp_relay_floor_note": "a plain UDP relay through the same batched socket, no WebRTC work: the loopback kernel path alone",
        "engine_kernel_cpu_share": if cpu > 0.0 { system_cpu / cpu } else { 0.0 },
        "engine_idle_cpu_percent": idle_cpu_per_second * 100.0,
        "engine_marginal_cpu_seconds_per_1000_packets": marginal_per_1000,
        "projected_packets_per_core_second_marginal": if marginal_per_1000 > 0.0 { (1000.0 / marginal_per_1000).round() } else { 0.0 },
        "server_added_latency_us_p50": server_latency.quantile_micros(0.5),
        "server_added_latency_us_p99": server_latency.quantile_micros(0.99),
        "server_added_latency_us_p999": server_latency.quantile_micros(0.999),
        "socket_wait_us_p50": after.socket_wait.quantile_micros(0.5),
        "socket_wait_us_p99": after.socket_wait.quantile_micros(0.99),
        "client_to_client_latency_ms_p50": percentile_ms(&e2e, 0.5),
        "client_to_client_latency_ms_p99": percentile_ms(&e2e, 0.99),
        "rss_kib_per_call_added": (rss_after_legs.saturating_sub(rss_before_legs)) / args.calls as u64,
        "rss_note": "process RSS growth while legs were added and connected (server legs plus the clients' DTLS/SRTP state), divided by calls",
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));

    for peer in &peers {
        peer.close().await;
    }
    handle.shutdown().await;
    let _ = engine_thread.join();
}

/// Sends one stamped packet per `frame` for `duration` (the peer module's pacing, with a
/// configurable frame interval for heavier load).
async fn send_at(peer: &ClientPeer, duration: Duration, frame: Duration) -> u64 {
    if frame == peer::AUDIO_FRAME {
        return peer.send_audio(duration).await.unwrap_or(0);
    }
    // Faster pacing: several 20 ms sends in parallel slices would skew timestamps; instead
    // call send_audio in short bursts back to back.
    let bursts = (duration.as_millis() / frame.as_millis()).max(1) as u64;
    let mut sent = 0;
    let mut ticker = tokio::time::interval(frame);
    for _ in 0..bursts {
        ticker.tick().await;
        sent += peer.send_one_audio_packet().await.map(|_| 1).unwrap_or(0);
    }
    sent
}
