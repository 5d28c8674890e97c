//! `mediaserver` binary: load the configuration once, print it (secret masked), run until
//! Ctrl-C or SIGTERM.

use anyhow::Context as _;
use clap::Parser;
use mediaserver::MediaConfig;
use std::path::PathBuf;

/// Switchboard MediaServer: WebRTC SFU for calls. Settings come from the optional TOML file,
/// then from `UC_MEDIA_*` / `UC_REDIS_URL` environment variables.
#[derive(Debug, Parser)]
#[command(name = "mediaserver", version)]
struct Cli {
    /// TOML file with the same settings as the environment (id, listen, udp, public_ip,
    /// redis_url, secret, capacity, control_url, connect_timeout_ms).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,str0m=warn,dimpl=warn")
            }),
        )
        .init();
    let cli = Cli::parse();
    let config = MediaConfig::load(cli.config.as_deref(), |name| std::env::var(name).ok(), true)
        .context("loading the MediaServer configuration")?;
    tracing::info!(%config, "MediaServer configuration");
    mediaserver::run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
