//! `ucweb`: serves the browser client (and the admin console at `/admin`) and forwards
//! `/api/*` to each user's home UCServer.
//!
//! - `UC_UPSTREAM`: the UCServers' base URLs, comma-separated, e.g.
//!   `http://10.0.0.1:8080,http://10.0.0.2:8080` (required; one is enough to sign in, all of
//!   them let ucweb find every server again after its own restart).
//! - `UC_WEB_LISTEN`: where to listen. Default `127.0.0.1:8090`.
use anyhow::Context;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let upstream = std::env::var("UC_UPSTREAM")
        .context("UC_UPSTREAM is not set (the UCServer's URL, e.g. http://127.0.0.1:8080)")?;
    let upstreams: Vec<reqwest::Url> = upstream
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .with_context(|| format!("UC_UPSTREAM has a part that is not a URL: '{u}'"))
        })
        .collect::<anyhow::Result<_>>()?;
    let listen = std::env::var("UC_WEB_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let app = ucweb::proxy::proxy_router(upstreams)
        .await?
        .route("/healthz", get(|| async { "ok" }))
        .merge(ucweb::console_router())
        .merge(ucweb::client_router());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, upstreams = %upstream, "ucweb listening; open http://{}/", listener.local_addr()?);
    // The browser's address goes to the UCServers in `X-Forwarded-For`.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}
