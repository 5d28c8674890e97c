//! `ucserver`: runs one UCServer. With no configuration it is a complete single-node
//! system (SQLite under ./data, in-process bus).

use clap::Parser;
use std::path::PathBuf;
use tokio::task::JoinSet;
use ucserver::config::Config;

#[derive(Parser)]
#[command(name = "ucserver", version, about = "Switchboard UCServer")]
struct Args {
    /// TOML configuration file; `UC_*` environment variables override it.
    #[arg(long, env = "UC_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "UC_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("UC_LOG").unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = Config::load(args.config.as_deref())?;
    tracing::info!(config = %config.describe(), "starting");
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let backends = ucserver::open_backends(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let mut tasks = JoinSet::new();
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let running = ucserver::start(config, backends, listener, shutdown, &mut tasks).await?;
    println!(
        "Switchboard UCServer '{}' is up: open {}",
        running.server.id, running.url
    );
    let console = format!(
        "{}{}/",
        running.url.trim_end_matches('/'),
        ucweb::CONSOLE_PATH
    );
    if let Some(password) = &running.generated_admin_password {
        println!(
            "Initial administrator: user 'admin', password '{password}' (shown once; change it with ucadmin)"
        );
    }
    println!("Admin console: {console} (sign in as an administrator)");
    // The HTTP task ends after graceful shutdown; the others follow.
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result
            && error.is_panic()
        {
            tracing::error!(%error, "a server task panicked");
        }
        tasks.abort_all();
    }
    Ok(())
}
