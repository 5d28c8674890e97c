//! A small, bounded reverse proxy for `/api/*`: REST requests through reqwest, the WebSocket
//! upgrade through tokio-tungstenite.
//!
//! Home-server routing, without state that a restart would lose: a login goes to any known
//! UCServer and follows `wrong_server` to the user's home server; the token handed to the
//! browser is `<server id>~<token>`. Every later request is sent to the server named in its
//! token, with the plain token. Servers are known by id from the configured upstreams
//! (their `/healthz`) and from the `home_url`s that UCServers themselves answer with; a token
//! naming any other server is refused, so a browser cannot point ucweb at an address of its
//! choosing.
//!
//! High availability: when the server named in a token cannot be reached (it died), or
//! answers `wrong_server` (its user is served elsewhere now: a failover, a fallback, a move),
//! the request goes on to the server serving the user: a `wrong_server` answer names it, and
//! an unreachable server is left out for a few seconds while the other known servers are
//! asked (each answers `wrong_server` or serves the request). A server named by another is
//! tried again half a second after it failed, though: it may have restarted (its users are
//! handed back to it once it is back), and a page kept from it would miss what is sent live
//! meanwhile. `server_unavailable` with a short `retry_after_ms` (a server taking the user
//! over) is waited out. Where each token's user was last served is remembered (bounded), so
//! later requests go there at once and a dead server is not tried again.
//!
//! Every request sent on carries `X-Forwarded-For` with the browser's address (the TCP peer
//! of ucweb; a header the browser sent is replaced, not extended), so the UCServers throttle
//! logins per browser. They believe it only from addresses listed in their
//! `UC_TRUSTED_PROXIES`, which must name ucweb. A WebSocket also carries the browser's
//! `User-Agent`, which administrators see with the user's devices.
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::ws::{CloseFrame, Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message as TMessage, client::IntoClientRequest};

/// Largest request body passed on (the UCServer's own limit; an import file may have
/// `MAX_IMPORT_BYTES`).
pub const MAX_REQUEST_BYTES: usize = shared::limits::MAX_BODY_BYTES;
/// Largest response body passed back.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Whole-request timeout for REST calls.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A proxied WebSocket with no frame from the browser for this long is closed (the client
/// pings every 25 s; the UCServer itself drops a device after 120 s).
pub const WS_IDLE_TIMEOUT: Duration = Duration::from_secs(150);

/// Request headers passed to the upstream.
const FORWARD_REQUEST: &[HeaderName] = &[
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::USER_AGENT,
    // Admin edits are guarded by the version they were made from (ETag / If-Match).
    header::IF_MATCH,
];
/// Response headers passed back.
const FORWARD_RESPONSE: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::ETAG,
];

/// The header that tells the UCServer who the browser is.
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The browser's address as the `X-Forwarded-For` value (none when the server was started
/// without connection info).
fn forwarded_for(request: &Request) -> Option<HeaderValue> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?;
    HeaderValue::from_str(&peer.0.ip().to_canonical().to_string()).ok()
}

/// Separates the server id from the UCServer's own token in the browser's token.
const TOKEN_SEPARATOR: char = '~';

struct Proxy {
    /// The configured UCServers, tried in order for requests that carry no token.
    upstreams: Vec<Url>,
    /// Server id -> base URL, learned from `/healthz` and from `wrong_server` answers.
    servers: std::sync::RwLock<std::collections::HashMap<String, Url>>,
    /// Servers that could not be reached, and when: left out of the choice for a while.
    down: std::sync::Mutex<std::collections::HashMap<Url, std::time::Instant>>,
    /// Where each token's user was last served (plain token -> base URL), at most
    /// `MAX_ROUTES` entries (forgotten all at once when full: each is learned again with one
    /// `wrong_server`).
    routes: std::sync::Mutex<std::collections::HashMap<String, Url>>,
    http: reqwest::Client,
}

/// How long a server that could not be reached is left out.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// Pause before asking again when the server named is one that could not be reached.
const DOWN_RETRY: Duration = Duration::from_millis(500);
/// Most remembered token routes.
const MAX_ROUTES: usize = 100_000;
/// How long one request may look for the server serving its user.
const FOLLOW_FOR: Duration = Duration::from_secs(15);
/// Longest `retry_after_ms` waited out here rather than passed to the browser.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// What an upstream's answer means for routing.
#[derive(Debug, PartialEq)]
enum Hop {
    /// The answer is the answer.
    Done,
    /// The user is served at this server (id, base URL).
    Follow(String, Url),
    /// Ask the same server again after this pause.
    Wait(Duration),
}

/// Reads an answer's status and body for `wrong_server` and a short `server_unavailable`.
fn hop(status: u16, body: &[u8]) -> Hop {
    if status != 409 && status != 503 {
        return Hop::Done;
    }
    let Ok(error) = serde_json::from_slice::<shared::api::ApiError>(body) else {
        return Hop::Done;
    };
    match error.error {
        shared::api::ErrorCode::WrongServer => match (error.home_server, error.home_url) {
            (Some(id), Some(url)) => match url.parse::<Url>() {
                Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
                    Hop::Follow(id.to_string(), url)
                }
                _ => Hop::Done,
            },
            _ => Hop::Done,
        },
        shared::api::ErrorCode::ServerUnavailable => match error.retry_after_ms {
            Some(ms) if Duration::from_millis(ms) <= MAX_WAIT => {
                Hop::Wait(Duration::from_millis(ms))
            }
            _ => Hop::Done,
        },
        _ => Hop::Done,
    }
}

impl Proxy {
    fn mark_down(&self, base: &Url) {
        self.down
            .lock()
            .unwrap()
            .insert(base.clone(), std::time::Instant::now());
    }

    fn is_down(&self, base: &Url) -> bool {
        self.failed_within(base, DOWN_FOR)
    }

    /// Whether `base` could not be reached within the last `within` (at most `DOWN_FOR`).
    fn failed_within(&self, base: &Url, within: Duration) -> bool {
        let mut down = self.down.lock().unwrap();
        down.retain(|_, at| at.elapsed() < DOWN_FOR);
        down.get(base).is_some_and(|at| at.elapsed() < within)
    }

    /// A known server other than `failed` that is not down, to ask where a user is served.
    fn another(&self, failed: &Url) -> Option<Url> {
        let mut known: Vec<Url> = self.servers.read().unwrap().values().cloned().collect();
        known.extend(self.upstreams.iter().cloned());
        known.sort();
        known.dedup();
        known
            .into_iter()
            .find(|base| base != failed && !self.is_down(base))
    }

    fn remember(&self, token: &str, base: &Url) {
        let mut routes = self.routes.lock().unwrap();
        if routes.len() >= MAX_ROUTES {
            routes.clear();
        }
        routes.insert(token.to_string(), base.clone());
    }

    fn remembered(&self, token: &str) -> Option<Url> {
        self.routes.lock().unwrap().get(token).cloned()
    }

    /// Where to go next after `hop` or an unreachable `base`; `None`: stop here.
    async fn next(&self, route: &mut Route, hop: Hop) -> bool {
        match hop {
            Hop::Done => false,
            Hop::Follow(id, url) => {
                self.learn(&id, url.clone());
                if self.failed_within(&url, DOWN_RETRY) {
                    // The server named is the one that just failed (its peers do not know it
                    // is dead yet): ask again in a moment.
                    tokio::time::sleep(DOWN_RETRY).await;
                } else {
                    // Named by a server that sees it alive, so tried even while it is left
                    // out of `another`'s choice: it may be back already (a graceful stop and
                    // start takes far less than `DOWN_FOR`, and its users are handed back to
                    // it). Still dead, it refuses at once and is marked down again.
                    route.base = url;
                }
                true
            }
            Hop::Wait(pause) => {
                tokio::time::sleep(pause).await;
                true
            }
        }
    }

    fn server_url(&self, id: &str) -> Option<Url> {
        self.servers.read().unwrap().get(id).cloned()
    }

    fn learn(&self, id: &str, url: Url) {
        self.servers.write().unwrap().insert(id.to_string(), url);
    }

    /// Asks every configured upstream for its id (at start, and when a token names a server
    /// not known yet, e.g. after a restart of ucweb).
    async fn discover(&self) {
        for upstream in &self.upstreams {
            let Ok(url) = upstream.join("/healthz") else {
                continue;
            };
            let Ok(answer) = self
                .http
                .get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
            else {
                continue;
            };
            let Ok(health) = answer.json::<shared::api::Health>().await else {
                continue;
            };
            self.learn(health.server.as_str(), upstream.clone());
        }
    }
}

/// Where a request goes, and the token to send there.
struct Route {
    base: Url,
    /// The UCServer's own token, when the request carried one.
    token: Option<String>,
}

/// The bearer token of a request: the `Authorization` header, else `token=` in the query of
/// a WebSocket upgrade (the UCServers take a query token on their WebSocket route only).
fn request_token(
    headers: &axum::http::HeaderMap,
    path_and_query: &str,
    is_upgrade: bool,
) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| {
            if !is_upgrade {
                return None;
            }
            let query = path_and_query.split_once('?')?.1;
            query.split('&').find_map(|pair| {
                pair.strip_prefix("token=")
                    .map(|t| t.replace("%7E", "~").replace("%7e", "~"))
            })
        })
}

/// `path_and_query` with its `token=` value replaced by `token`.
fn with_query_token(path_and_query: &str, token: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            if pair.starts_with("token=") {
                format!("token={token}")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Routes `/api/*` to the UCServers: `upstreams` are their base URLs (any one of a cluster
/// is enough for logins; listing all lets ucweb find them again after its own restart).
pub async fn proxy_router(upstreams: Vec<Url>) -> anyhow::Result<Router> {
    anyhow::ensure!(!upstreams.is_empty(), "give at least one upstream UCServer");
    for upstream in &upstreams {
        anyhow::ensure!(
            upstream.scheme() == "http" || upstream.scheme() == "https",
            "upstream must be an http:// or https:// URL, not '{upstream}'"
        );
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()?;
    let state = Arc::new(Proxy {
        upstreams,
        servers: Default::default(),
        down: Default::default(),
        routes: Default::default(),
        http,
    });
    state.discover().await;
    Ok(Router::new()
        .route("/api", axum::routing::any(proxy))
        .route("/api/{*rest}", axum::routing::any(proxy))
        .with_state(state))
}

async fn proxy(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let is_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let client = forwarded_for(&request);
    let route = match route(&proxy, request.headers(), &path_and_query, is_upgrade).await {
        Ok(route) => route,
        Err(response) => return response,
    };
    let path_and_query = match &route.token {
        Some(token) => with_query_token(&path_and_query, token),
        None => path_and_query,
    };
    if is_upgrade {
        let (mut parts, _body) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        // The UCServer shows administrators where each device comes from and with what.
        let mut forwarded: Vec<(HeaderName, HeaderValue)> = client
            .map(|client| (FORWARDED_FOR, client))
            .into_iter()
            .collect();
        if let Some(agent) = parts.headers.get(header::USER_AGENT) {
            forwarded.push((header::USER_AGENT, agent.clone()));
        }
        return websocket(&proxy, route, path_and_query, upgrade, forwarded).await;
    }
    let is_login = request.method() == axum::http::Method::POST
        && (path_and_query == "/api/v1/login" || path_and_query == "/api/v1/admin/login");
    if is_login {
        return login(&proxy, &path_and_query, request, client)
            .await
            .unwrap_or_else(|response| response);
    }
    match rest(&proxy, &route, &path_and_query, request, client).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

/// Picks the server for a request from its token (or the first upstream without one).
async fn route(
    proxy: &Proxy,
    headers: &axum::http::HeaderMap,
    path_and_query: &str,
    is_upgrade: bool,
) -> Result<Route, Response> {
    let Some(token) = request_token(headers, path_and_query, is_upgrade) else {
        return Ok(Route {
            base: proxy.upstreams[0].clone(),
            token: None,
        });
    };
    let Some((server, plain)) = token.rsplit_once(TOKEN_SEPARATOR) else {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the session token is not one this web front issued; sign in again",
        ));
    };
    if let Some(base) = proxy.remembered(plain) {
        return Ok(Route {
            base,
            token: Some(plain.to_string()),
        });
    }
    if proxy.server_url(server).is_none() {
        proxy.discover().await;
    }
    match proxy.server_url(server) {
        Some(base) => Ok(Route {
            base,
            token: Some(plain.to_string()),
        }),
        None => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the session's server is not known here; sign in again",
        )),
    }
}

/// A login: sent to the upstreams in turn, following `wrong_server` to the home server (at
/// most 3 hops); the token of the answer is prefixed with the server that issued it.
async fn login(
    proxy: &Proxy,
    path_and_query: &str,
    request: Request,
    client: Option<HeaderValue>,
) -> Result<Response, Response> {
    let body = to_bytes(request.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| {
            api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than allowed",
            )
        })?;
    let mut base = proxy.upstreams[0].clone();
    for _ in 0..3 {
        let url = base
            .join(path_and_query)
            .map_err(|_| api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"))?;
        let mut upstream = proxy
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(client) = &client {
            upstream = upstream.header(FORWARDED_FOR, client.clone());
        }
        let answer = upstream
            .body(body.clone())
            .send()
            .await
            .map_err(|e| unreachable_upstream(&e))?;
        let status = answer.status();
        let text = read_limited(answer).await?;
        if status == StatusCode::CONFLICT
            && let Ok(error) = serde_json::from_slice::<shared::api::ApiError>(&text)
            && let (Some(home), Some(home_url)) = (&error.home_server, &error.home_url)
            && let Ok(home_url) = home_url.parse::<Url>()
        {
            proxy.learn(home.as_str(), home_url.clone());
            base = home_url;
            continue;
        }
        if status.is_success() {
            let mut session: shared::api::LoginResponse =
                serde_json::from_slice(&text).map_err(|_| {
                    api_error(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        "the server's login answer is not understood",
                    )
                })?;
            proxy.learn(session.server.as_str(), base.clone());
            session.token = format!("{}{TOKEN_SEPARATOR}{}", session.server, session.token);
            let body = serde_json::to_vec(&session).unwrap_or_default();
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response());
        }
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Ok((status, [(header::CONTENT_TYPE, "application/json")], text).into_response());
    }
    Err(api_error(
        StatusCode::BAD_GATEWAY,
        "server_unavailable",
        "the login was sent on too many times",
    ))
}

/// The answer when an upstream cannot be reached or does not answer in time.
fn unreachable_upstream(error: &reqwest::Error) -> Response {
    tracing::warn!(%error, "upstream request failed");
    if error.is_timeout() {
        api_error(
            StatusCode::GATEWAY_TIMEOUT,
            "server_unavailable",
            "the server did not answer in time",
        )
    } else {
        api_error(
            StatusCode::BAD_GATEWAY,
            "server_unavailable",
            "the server cannot be reached",
        )
    }
}

/// An upstream's answer body, at most `MAX_RESPONSE_BYTES`.
async fn read_limited(answer: reqwest::Response) -> Result<Vec<u8>, Response> {
    let too_large = || {
        api_error(
            StatusCode::BAD_GATEWAY,
            "internal",
            "the server's answer is too large",
        )
    };
    if answer
        .content_length()
        .is_some_and(|n| n as usize > MAX_RESPONSE_BYTES)
    {
        return Err(too_large());
    }
    let mut data = Vec::new();
    let mut stream = answer.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            api_error(
                StatusCode::BAD_GATEWAY,
                "server_unavailable",
                "the server's answer broke off",
            )
        })?;
        if data.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json_like(code, message);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn serde_json_like(code: &str, message: &str) -> String {
    // Both strings are ours and contain no quotes or backslashes.
    format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}")
}

async fn rest(
    proxy: &Proxy,
    route: &Route,
    path_and_query: &str,
    request: Request,
    client: Option<HeaderValue>,
) -> Result<Response, Response> {
    let (parts, body) = request.into_parts();
    let limit = if parts.uri.path() == "/api/v1/admin/import" {
        shared::limits::MAX_IMPORT_BYTES
    } else {
        MAX_REQUEST_BYTES
    };
    let body = to_bytes(body, limit).await.map_err(|_| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than allowed",
        )
    })?;
    let mut route = Route {
        base: route.base.clone(),
        token: route.token.clone(),
    };
    let deadline = std::time::Instant::now() + FOLLOW_FOR;
    loop {
        let url = route
            .base
            .join(path_and_query)
            .map_err(|_| api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"))?;
        let mut upstream = proxy.http.request(parts.method.clone(), url);
        for name in FORWARD_REQUEST {
            if *name == header::AUTHORIZATION {
                continue;
            }
            for value in parts.headers.get_all(name) {
                upstream = upstream.header(name, value);
            }
        }
        if let Some(token) = &route.token {
            upstream = upstream.bearer_auth(token);
        }
        if let Some(client) = &client {
            upstream = upstream.header(FORWARDED_FOR, client.clone());
        }
        let answer = match upstream.body(body.clone()).send().await {
            Ok(answer) => answer,
            // Not reached at all: nothing happened there; ask another server.
            Err(error) if error.is_connect() && std::time::Instant::now() < deadline => {
                proxy.mark_down(&route.base);
                match proxy.another(&route.base) {
                    Some(base) => {
                        route.base = base;
                        continue;
                    }
                    None => return Err(unreachable_upstream(&error)),
                }
            }
            Err(error) => return Err(unreachable_upstream(&error)),
        };
        let status = answer.status();
        let mut headers = Vec::new();
        for name in FORWARD_RESPONSE {
            if let Some(value) = answer.headers().get(name) {
                headers.push((name.clone(), value.clone()));
            }
        }
        let data = read_limited(answer).await?;
        if route.token.is_some()
            && std::time::Instant::now() < deadline
            && proxy.next(&mut route, hop(status.as_u16(), &data)).await
        {
            continue;
        }
        if let Some(token) = &route.token
            && status.is_success()
        {
            proxy.remember(token, &route.base);
        }
        let mut response = Response::new(Body::from(data));
        *response.status_mut() = status;
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        return Ok(response);
    }
}

async fn websocket(
    proxy: &Proxy,
    mut route: Route,
    path_and_query: String,
    upgrade: WebSocketUpgrade,
    forwarded: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    let deadline = std::time::Instant::now() + FOLLOW_FOR;
    loop {
        let upstream = match connect_upstream(&route, &path_and_query, &forwarded).await {
            Ok(upstream) => upstream,
            Err(Attempt::Unreachable(response)) => {
                proxy.mark_down(&route.base);
                match proxy.another(&route.base) {
                    Some(base) if std::time::Instant::now() < deadline => {
                        route.base = base;
                        continue;
                    }
                    _ => return response,
                }
            }
            Err(Attempt::Answered(status, body, response)) => {
                if route.token.is_some()
                    && std::time::Instant::now() < deadline
                    && proxy.next(&mut route, hop(status, &body)).await
                {
                    continue;
                }
                return response;
            }
        };
        if let Some(token) = &route.token {
            proxy.remember(token, &route.base);
        }
        return upgrade
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(shared::limits::MAX_FRAME_BYTES)
            .max_frame_size(shared::limits::MAX_FRAME_BYTES)
            .on_upgrade(move |socket| pump(socket, upstream));
    }
}

/// Why opening the upstream WebSocket failed.
enum Attempt {
    /// Nothing answered (refused, reset, timed out).
    Unreachable(Response),
    /// The server answered with an HTTP status: (status, body, the answer for the browser).
    Answered(u16, Vec<u8>, Response),
}

async fn connect_upstream(
    route: &Route,
    path_and_query: &str,
    forwarded: &[(HeaderName, HeaderValue)],
) -> Result<Upstream, Attempt> {
    let bad_path = || {
        Attempt::Answered(
            400,
            Vec::new(),
            api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"),
        )
    };
    let Ok(mut url) = route.base.join(path_and_query) else {
        return Err(bad_path());
    };
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let _ = url.set_scheme(scheme);
    let Ok(mut request) = url.as_str().into_client_request() else {
        return Err(bad_path());
    };
    if let Some(token) = &route.token
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    for (name, value) in forwarded {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(shared::limits::MAX_EVENT_BYTES))
        .max_frame_size(Some(shared::limits::MAX_EVENT_BYTES));
    // Connect upstream first, so a refusal (401, 400) reaches the browser as an HTTP status.
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect).await {
        Ok(Ok((stream, _))) => Ok(stream),
        Ok(Err(tungstenite::Error::Http(answer))) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = answer.body().clone().unwrap_or_default();
            let mut response = Response::new(Body::from(body.clone()));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Err(Attempt::Answered(status.as_u16(), body, response))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream WebSocket failed");
            Err(Attempt::Unreachable(api_error(
                StatusCode::BAD_GATEWAY,
                "server_unavailable",
                "the server cannot be reached",
            )))
        }
        Err(_) => Err(Attempt::Unreachable(api_error(
            StatusCode::GATEWAY_TIMEOUT,
            "server_unavailable",
            "the server did not answer in time",
        ))),
    }
}

/// How long opening an upstream WebSocket may take (a paused server accepts the connection
/// and then says nothing).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Copies frames both ways until either side closes, errs, or the browser falls silent.
async fn pump(browser: WebSocket, upstream: Upstream) {
    let (mut b_tx, mut b_rx) = browser.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    loop {
        tokio::select! {
            frame = tokio::time::timeout(WS_IDLE_TIMEOUT, b_rx.next()) => {
                let Ok(Some(Ok(frame))) = frame else { break };
                let out = match frame {
                    AxMessage::Text(text) => TMessage::Text(text.as_str().into()),
                    AxMessage::Binary(data) => TMessage::Binary(data),
                    AxMessage::Ping(_) | AxMessage::Pong(_) => continue,
                    AxMessage::Close(frame) => {
                        let frame = frame.map(|f| tungstenite::protocol::CloseFrame {
                            code: f.code.into(),
                            reason: f.reason.as_str().into(),
                        });
                        let _ = u_tx.send(TMessage::Close(frame)).await;
                        break;
                    }
                };
                if u_tx.send(out).await.is_err() { break; }
            }
            frame = u_rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                let out = match frame {
                    TMessage::Text(text) => AxMessage::Text(text.as_str().into()),
                    TMessage::Binary(data) => AxMessage::Binary(data),
                    TMessage::Ping(_) | TMessage::Pong(_) | TMessage::Frame(_) => continue,
                    TMessage::Close(frame) => {
                        let frame = frame.map(|f| CloseFrame {
                            code: f.code.into(),
                            reason: f.reason.as_str().into(),
                        });
                        let _ = b_tx.send(AxMessage::Close(frame)).await;
                        break;
                    }
                };
                if b_tx.send(out).await.is_err() { break; }
            }
        }
    }
    let _ = u_tx.close().await;
    let _ = b_tx.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        text.parse().expect("a test URL")
    }

    fn proxy() -> Proxy {
        Proxy {
            upstreams: vec![url("http://localhost:1/"), url("http://localhost:2/")],
            servers: Default::default(),
            down: Default::default(),
            routes: Default::default(),
            http: reqwest::Client::new(),
        }
    }

    /// `base` could not be reached `ago`.
    fn failed(proxy: &Proxy, base: &Url, ago: Duration) {
        let at = std::time::Instant::now()
            .checked_sub(ago)
            .expect("the clock runs longer than the test's past");
        proxy.down.lock().unwrap().insert(base.clone(), at);
    }

    fn route(base: &Url) -> Route {
        Route {
            base: base.clone(),
            token: Some("token".to_string()),
        }
    }

    #[tokio::test]
    async fn a_server_named_a_while_after_it_failed_is_tried_again() {
        // s1 refused while it was stopping a second ago; it is back and s2 hands its user
        // back to it: the request goes to s1 now, not once s1's down time has run out.
        let proxy = proxy();
        let (s1, s2) = (url("http://localhost:1/"), url("http://localhost:2/"));
        failed(&proxy, &s1, Duration::from_secs(1));
        assert!(
            proxy.is_down(&s1),
            "still left out of the choice of another server"
        );
        let mut route = route(&s2);
        let follow = Hop::Follow("s1".to_string(), s1.clone());
        assert!(proxy.next(&mut route, follow).await);
        assert_eq!(route.base, s1);
    }

    #[tokio::test]
    async fn a_server_named_just_after_it_failed_is_not_tried_yet() {
        // s1 was just found dead; s2 has not noticed and still names it: s2 is asked again
        // after a pause instead.
        let proxy = proxy();
        let (s1, s2) = (url("http://localhost:1/"), url("http://localhost:2/"));
        proxy.mark_down(&s1);
        let mut route = route(&s2);
        let follow = Hop::Follow("s1".to_string(), s1.clone());
        assert!(proxy.next(&mut route, follow).await);
        assert_eq!(route.base, s2);
    }
}
