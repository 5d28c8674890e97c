//! The UCServer: owns its users' live sessions and shares state with its peers over the
//! cluster (Redis or in-process) and SQL. See ARCHITECTURE.md for the map.

pub mod admin_feed;
pub mod admin_ws;
pub mod api_docs;
pub mod app;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod devices;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod extract;
pub mod history;
pub mod http;
pub mod http_inspect;
pub mod inquiries;
pub mod inspect;
pub mod ldap;
pub mod licenses;
pub mod login_guard;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod owners;
pub mod password;
pub mod peers;
pub mod presence;
pub mod probe;
pub mod rate_limit;
pub mod relations;
pub mod routes;
pub mod server;
pub mod settings;
pub mod store;
pub mod telephony;
pub mod timed;
pub mod tokens;
pub mod ws;

/// The decision cores (the `uccore` crate), under the name the shells have always used.
pub use uccore as core;

use cluster::{Cluster, LocalCluster, LocalHub, RedisCluster};
use config::Config;
use server::Server;
use std::future::Future;
use std::sync::Arc;
use store::{SqlStore, Store, UserRecord};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What `start` hands back: where the server listens and a way to stop it.
pub struct Running {
    pub server: Arc<Server>,
    pub url: String,
    pub local_addr: std::net::SocketAddr,
    /// The initial admin password when this start generated one (print it once).
    pub generated_admin_password: Option<String>,
}

/// Opens SQL and the cluster named in the config (an in-process cluster when no Redis).
/// What [`start`] runs on.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub cluster: Arc<dyn Cluster>,
    /// The database could not be reached when the store was opened (a server that ran here
    /// before starts without it): the start does not wait for SQL again. It creates no
    /// admin (one exists), gives each start-time SQL step only the short wait of a cached
    /// read (`timed::UNREACHABLE_READ_LIMIT`) and leaves what must still be written to a
    /// task that retries in the background.
    pub database_away: bool,
}

pub async fn open_backends(config: &Config) -> anyhow::Result<Backends> {
    let url = config.database_url();
    // The driver's error may quote the URL too: mask it wherever it appears.
    let masked = |e: &store::StoreError| e.to_string().replace(&url, &config::mask_url(&url));
    let mut database_away = false;
    let store = match SqlStore::connect(&url).await {
        Ok(store) => store,
        // A server that ran here before starts on its cached settings and waits for the
        // database like a running one does (`settings/apply.rs`).
        Err(error @ store::StoreError::Unavailable(_))
            if !url.starts_with("sqlite:") && settings::read_cache(&config.data_dir).is_ok() =>
        {
            tracing::warn!(
                error = %masked(&error),
                "the database cannot be reached: starting without it, on the cached settings"
            );
            database_away = true;
            SqlStore::connect_later(&url).map_err(|e| anyhow::anyhow!("{}", masked(&e)))?
        }
        Err(error) => anyhow::bail!(
            "cannot open the database {}: {}",
            config::mask_url(&url),
            masked(&error)
        ),
    };
    let cluster: Arc<dyn Cluster> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisCluster::connect(url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach Redis: {e}"))?,
        ),
        None => Arc::new(LocalCluster::new(LocalHub::new())),
    };
    Ok(Backends {
        store: Arc::new(store),
        cluster,
        database_away,
    })
}

/// How often a server that started without the database tries to register itself.
const REGISTER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Registers this server (its URL in SQL) once the database answers, for a server that
/// started without it; ends on `stop` or when done.
async fn register_when_sql_answers(
    server: Arc<Server>,
    record: store::ServerRecord,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    let mut tick = tokio::time::interval(REGISTER_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.recv() => return,
        }
        match timed::sql_store(&server.metrics, server.store.register_server(&record)).await {
            Ok(()) => {
                tracing::info!("registered: the database answers again");
                server.expire_stored_sessions().await;
                return;
            }
            Err(store::StoreError::Unavailable(_)) => {}
            Err(error) => {
                tracing::warn!(%error, "not registered: the database refused it");
                return;
            }
        }
    }
}

/// Creates the `admin` user when no administrator exists yet.
async fn ensure_admin(config: &Config, store: &dyn Store) -> anyhow::Result<Option<String>> {
    match store.list_users().await {
        Ok(users) if users.iter().any(|u| u.admin) => return Ok(None),
        Ok(_) => {}
        // Started without the database (see `open_backends`): it ran here before, so an
        // administrator exists.
        Err(store::StoreError::Unavailable(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let (password, generated) = match &config.admin_password {
        Some(password) => (password.clone(), false),
        None => (auth::random_hex(9), true),
    };
    let hash_input = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&hash_input))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the admin password: {e}"))?;
    let record = UserRecord {
        id: shared::UserId::from("admin"),
        password_hash,
        display_name: "Administrator".into(),
        home_server: config.server_id(),
        admin: true,
        created_ms: shared::now_ms(),
        role: Some(shared::api::AdminRole::Full),
        disabled: false,
        version: 1,
        changed_by: None,
        changed_ms: 0,
    };
    match store.create_user(&record).await {
        Ok(()) => Ok(generated.then_some(password)),
        // Another server created it at the same moment.
        Err(store::StoreError::Conflict(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Starts the MediaServer of a single node inside this process and feeds its leg events to
/// the calls.
async fn start_embedded_media(
    config: &Config,
    server: &Arc<Server>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let media_config = mediaserver::MediaConfig {
        id: shared::MediaServerId::new(format!("{}-media", server.id)),
        media_bind: config.media_udp_addr()?,
        public_ip: Some(config.media_public_ip()?),
        ..mediaserver::MediaConfig::default()
    };
    let (handle, mut events) = mediaserver::start_embedded(media_config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the embedded MediaServer: {e}"))?;
    tracing::info!(media = %handle.id(), "embedded MediaServer started");
    server.media.set_embedded(handle);
    let events_server = server.clone();
    tasks.spawn(async move {
        while let Some(event) = events.recv().await {
            calls::media_event(&events_server, event).await;
        }
    });
    Ok(())
}

/// Starts a server on `listener` with the given backends, and runs it until `shutdown`
/// completes. Every task it spawns lives in `tasks` and ends with it.
pub async fn start(
    config: Config,
    backends: Backends,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Running> {
    let local_addr = listener.local_addr()?;
    let url = config.public_url_for(local_addr);
    let Backends {
        store,
        cluster,
        database_away,
    } = backends;
    // Started without the database: it ran here before, so an administrator exists.
    let generated_admin_password = if database_away {
        None
    } else {
        ensure_admin(&config, store.as_ref()).await?
    };
    let outbox = outbox::Outbox::open(
        &config.data_dir.join("outbox.sqlite"),
        config.outbox_limits(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the outbox: {e}"))?;
    let (server, chat_writer) = Server::new(
        config.clone(),
        url.clone(),
        store.clone(),
        cluster.clone(),
        Arc::new(outbox),
    );
    if database_away {
        timed::mark_sql_unreachable(&server.metrics);
    }
    if config.media_embedded() {
        start_embedded_media(&config, &server, tasks).await?;
    }

    let record = store::ServerRecord {
        id: server.id.clone(),
        url: url.clone(),
        registered_ms: shared::now_ms(),
    };
    // Like a cached read: while SQL is known away this waits briefly, and the registration
    // is retried in the background (`register_when_sql_answers`).
    let registered =
        match timed::sql_cached_read(&server.metrics, store.register_server(&record)).await {
            Ok(()) => true,
            Err(store::StoreError::Unavailable(error)) => {
                tracing::warn!(%error, "not registered yet: the database cannot be reached");
                false
            }
            Err(error) => return Err(error.into()),
        };
    // A previous incarnation of this server may have left users online and leases taken.
    peers::clean_up_after(&server, &server.id.clone()).await;
    // Beat once and read who serves whom before taking any user: a server back from a
    // failover must see that its users are away on their backups.
    peers::heartbeat(&server).await;
    server.refresh_view().await;
    // Without the database this waits for the registration, in the background.
    if registered {
        server.expire_stored_sessions().await;
    }
    settings::apply::load_at_start(&server).await;
    let mut bus = cluster
        .subscribe(&server.id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to the bus: {e}"))?;
    peers::heartbeat(&server).await;

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);

    if !registered {
        tasks.spawn(register_when_sql_answers(
            server.clone(),
            record,
            stop_tx.subscribe(),
        ));
    }
    tasks.spawn(chat_writer.run(server.chat.clone()));
    tasks.spawn(settings::apply::run(server.clone(), stop_tx.subscribe()));

    let bus_server = server.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                input = bus.recv() => match input {
                    Some(input) => dispatch::bus_input(&bus_server, input).await,
                    None => break,
                },
                _ = stop.recv() => break,
            }
        }
    });

    // The ticker: no IO, so that a pause of the whole process shows as a gap (`owners.rs`).
    let tick_server = server.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(owners::TICK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => tick_server.owners.tick(),
                _ = stop.recv() => break,
            }
        }
    });

    let beat_server = server.clone();
    let mut heartbeats = peers::Peers::default();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            beat_server.config.heartbeat_ms,
        ));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    heartbeats.beat(&beat_server).await;
                    heartbeats.sweep_dead_servers(&beat_server).await;
                    beat_server.expire_tokens(shared::now_ms(), tokens::TOKEN_IDLE_MS).await;
                    beat_server.rate_limits.sweep();
                    calls::check_media(&beat_server).await;
                    calls::check_quiet_parts(&beat_server).await;
                }
                _ = stop.recv() => break,
            }
        }
    });

    // Samples for the console's charts of the last hour (`history.rs`).
    let sample_server = server.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            sample_server.history.sample_ms,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => peers::record_sample(&sample_server).await,
                _ = stop.recv() => break,
            }
        }
    });

    // The scheduled directory sync (`UC_LDAP_SYNC_SECS`), when a directory is configured.
    if server.directory.config.url.is_some() && server.directory.config.sync_secs > 0 {
        tasks.spawn(app::directory::run_schedule(
            server.clone(),
            stop_tx.subscribe(),
        ));
    }

    let app = routes::router(server.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http_server = server.clone();
    tasks.spawn(async move {
        let graceful = async move {
            shutdown.await;
            // Goodbyes, calls, presence and leases first: the binary aborts every task as soon
            // as one ends, so the background tasks are told to stop only when this is done.
            dispatch::shut_down(&http_server).await;
            if let Some(media) = http_server.media.embedded() {
                media.shutdown().await;
            }
            let _ = stop_tx.send(());
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
        {
            tracing::error!(%error, "HTTP server failed");
        }
    });

    tracing::info!(server = %server.id, %url, cluster = cluster.kind(), "UCServer ready");
    Ok(Running {
        server,
        url,
        local_addr,
        generated_admin_password,
    })
}
