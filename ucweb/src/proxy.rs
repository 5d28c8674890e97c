//! A small, bounded reverse proxy for `/api/*`: REST requests through reqwest, the WebSocket
//! upgrade through tokio-tungstenite. Today there is one upstream; routing each user to their
//! home server comes later.
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

/// Largest request body passed on (the UCServer's own limit).
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
];
/// Response headers passed back.
const FORWARD_RESPONSE: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
];

#[derive(Clone)]
struct Proxy {
    upstream: Url,
    http: reqwest::Client,
}

/// Routes `/api/*` to `upstream` (a base URL such as `http://127.0.0.1:8080`).
pub fn proxy_router(upstream: Url) -> anyhow::Result<Router> {
    anyhow::ensure!(
        upstream.scheme() == "http" || upstream.scheme() == "https",
        "upstream must be an http:// or https:// URL, not '{upstream}'"
    );
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .build()?;
    let state = Arc::new(Proxy { upstream, http });
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
    if is_upgrade {
        let (mut parts, _body) = request.into_parts();
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        return websocket(proxy, path_and_query, parts.headers, upgrade).await;
    }
    match rest(&proxy, &path_and_query, request).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json_like(code, message);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn serde_json_like(code: &str, message: &str) -> String {
    // Both strings are ours and contain no quotes or backslashes.
    format!("{{\"error\":\"{code}\",\"message\":\"{message}\"}}")
}

async fn rest(proxy: &Proxy, path_and_query: &str, request: Request) -> Result<Response, Response> {
    let url = proxy
        .upstream
        .join(path_and_query)
        .map_err(|_| api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"))?;
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_REQUEST_BYTES).await.map_err(|_| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than allowed",
        )
    })?;
    let mut upstream = proxy.http.request(parts.method.clone(), url);
    for name in FORWARD_REQUEST {
        for value in parts.headers.get_all(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.body(body).send().await.map_err(|error| {
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
    })?;
    let status = answer.status();
    let mut headers = Vec::new();
    for name in FORWARD_RESPONSE {
        if let Some(value) = answer.headers().get(name) {
            headers.push((name.clone(), value.clone()));
        }
    }
    if answer
        .content_length()
        .is_some_and(|n| n as usize > MAX_RESPONSE_BYTES)
    {
        return Err(api_error(
            StatusCode::BAD_GATEWAY,
            "internal",
            "the server's answer is too large",
        ));
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
            return Err(api_error(
                StatusCode::BAD_GATEWAY,
                "internal",
                "the server's answer is too large",
            ));
        }
        data.extend_from_slice(&chunk);
    }
    let mut response = Response::new(Body::from(data));
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

async fn websocket(
    proxy: Arc<Proxy>,
    path_and_query: String,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut url = match proxy.upstream.join(&path_and_query) {
        Ok(url) => url,
        Err(_) => return api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"),
    };
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let _ = url.set_scheme(scheme);
    let mut request = match url.as_str().into_client_request() {
        Ok(request) => request,
        Err(_) => return api_error(StatusCode::BAD_REQUEST, "bad_request", "bad request path"),
    };
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(shared::limits::MAX_EVENT_BYTES))
        .max_frame_size(Some(shared::limits::MAX_EVENT_BYTES));
    // Connect upstream first, so a refusal (401, 400) reaches the browser as an HTTP status.
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let upstream = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(tungstenite::Error::Http(answer))) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = answer.body().clone().unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream WebSocket failed");
            return api_error(
                StatusCode::BAD_GATEWAY,
                "server_unavailable",
                "the server cannot be reached",
            );
        }
        Err(_) => {
            return api_error(
                StatusCode::GATEWAY_TIMEOUT,
                "server_unavailable",
                "the server did not answer in time",
            );
        }
    };
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(shared::limits::MAX_FRAME_BYTES)
        .max_frame_size(shared::limits::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| pump(socket, upstream))
}

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
