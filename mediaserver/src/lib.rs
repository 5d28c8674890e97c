//! Switchboard MediaServer: a WebRTC SFU that carries the audio and video of calls.
//!
//! UCServers place each call's legs (one peer connection per participant device) on a
//! MediaServer through its control API; every leg then receives the media of the other legs
//! of its call (two legs: a 1:1 call; more: a conference). WebRTC itself is str0m, driven
//! sans-IO by one task ([`engine`]) that owns the UDP socket and every `Rtc`.
//!
//! Two ways to run it, one code path:
//! - standalone ([`run`] / [`start`]): HTTP control API ([`api`]), Redis heartbeat and event
//!   publication ([`redis_link`]);
//! - embedded in a single-node `ucserver` ([`start_embedded`]): the same engine behind a
//!   [`MediaHandle`], events on an in-process channel.
//!
//! Code map: [`config`] (settings), [`routing`] (pure: who hears whom), [`engine`] (the IO
//! shell around str0m), [`api`], [`redis_link`], [`metrics`], [`error`].

pub mod api;
pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
mod redis_link;
pub mod routing;
pub mod udp;

pub use config::{ConfigError, MediaConfig};
pub use engine::MediaHandle;
pub use error::MediaError;
pub use metrics::MetricsSnapshot;

use anyhow::Context as _;
use engine::{EngineSetup, spawn_engine};
use shared::media::{MediaEvent, MediaServerStatus};
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Capacity of the event channel handed to an embedder; events past it are dropped (logged).
const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// The engine plus what it needs, started but without an HTTP surface.
struct StartedEngine {
    handle: MediaHandle,
    media_addr: SocketAddr,
}

async fn start_engine(
    config: MediaConfig,
    control_addr: Option<SocketAddr>,
    embedder: Option<mpsc::Sender<MediaEvent>>,
) -> anyhow::Result<StartedEngine> {
    let socket = UdpSocket::bind(config.media_bind)
        .await
        .with_context(|| format!("binding the media UDP socket {}", config.media_bind))?;
    let bound = socket
        .local_addr()
        .context("reading the media socket address")?;
    let media_addr = SocketAddr::new(config.advertised_ip(), bound.port());
    let control_url = config.announced_control_url(control_addr);
    let incarnation = format!("{:016x}", rand::random::<u64>());
    let initial = MediaServerStatus {
        id: config.id.clone(),
        control_url: control_url.clone(),
        media_addr: media_addr.to_string(),
        capacity: config.capacity,
        legs: 0,
        calls: 0,
        incarnation: incarnation.clone(),
        updated_ms: shared::now_ms(),
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let mut tasks = JoinSet::new();
    let mut events = Vec::new();
    if let Some(embedder) = embedder {
        events.push(embedder);
    }
    if let Some(url) = &config.redis_url {
        let client = redis_link::build_client(url).context("configuring the Redis client")?;
        let (redis_events_tx, redis_events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        events.push(redis_events_tx);
        tasks.spawn(redis_link::run_redis_link(
            client,
            status_rx,
            Some(redis_events_rx),
        ));
    }
    let setup = EngineSetup {
        config,
        socket,
        media_addr,
        control_url,
        incarnation,
        events,
        status: status_tx,
    };
    let handle = spawn_engine(setup, tasks)?;
    Ok(StartedEngine { handle, media_addr })
}

/// Starts an in-process MediaServer (no HTTP, no secret needed) for a single-node `ucserver`.
/// Leg events arrive on the returned channel; stop it with [`MediaHandle::shutdown`].
pub async fn start_embedded(
    config: MediaConfig,
) -> anyhow::Result<(MediaHandle, mpsc::Receiver<MediaEvent>)> {
    config.validate(false)?;
    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let started = start_engine(config, None, Some(events_tx)).await?;
    Ok((started.handle, events_rx))
}

/// A standalone MediaServer with its control API listening.
pub struct RunningMediaServer {
    pub handle: MediaHandle,
    /// Where the control API listens (the real port when 0 was configured).
    pub control_addr: SocketAddr,
    /// The address in ICE candidates (public IP + the real UDP port).
    pub media_addr: SocketAddr,
    http_stop: oneshot::Sender<()>,
    http_tasks: JoinSet<()>,
}

impl RunningMediaServer {
    /// Base URL of the control API, e.g. `http://127.0.0.1:7100`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Stops the HTTP surface, then the engine (closing every leg).
    pub async fn shutdown(mut self) {
        let _ = self.http_stop.send(());
        while let Some(result) = self.http_tasks.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "control API task ended abnormally");
            }
        }
        self.handle.shutdown().await;
    }
}

/// Starts a standalone MediaServer: binds UDP and the control API, starts the engine and the
/// Redis link. Returns once it accepts requests.
pub async fn start(config: MediaConfig) -> anyhow::Result<RunningMediaServer> {
    config.validate(true)?;
    let secret = config
        .secret
        .clone()
        .context("UC_MEDIA_SECRET is required")?;
    let listener = TcpListener::bind(config.control_listen)
        .await
        .with_context(|| format!("binding the control API on {}", config.control_listen))?;
    let control_addr = listener
        .local_addr()
        .context("reading the control API address")?;
    let started = start_engine(config, Some(control_addr), None).await?;
    let app = api::router(started.handle.clone(), &secret);
    let (http_stop, stop_rx) = oneshot::channel::<()>();
    let mut http_tasks = JoinSet::new();
    http_tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "control API server failed");
        }
    });
    tracing::info!(%control_addr, media_addr = %started.media_addr, "MediaServer started");
    Ok(RunningMediaServer {
        handle: started.handle,
        control_addr,
        media_addr: started.media_addr,
        http_stop,
        http_tasks,
    })
}

/// Runs a standalone MediaServer until `shutdown` completes.
pub async fn run(config: MediaConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = start(config).await?;
    shutdown.await;
    tracing::info!("MediaServer shutting down");
    server.shutdown().await;
    Ok(())
}
