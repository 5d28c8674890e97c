//! The REST plumbing shared by [`crate::Client`] and [`crate::AdminClient`]: one place that
//! builds URLs, attaches the bearer token, bounds time and size, and turns a non-2xx answer
//! into the server's typed [`ApiError`].

use crate::error::ClientError;
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::api::ApiError;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one REST request may take in all, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Whole-request timeout of an upload (an import file applied in one transaction).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest REST answer read; lists of users or messages stay far below this.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// A pool of HTTP connections with Switchboard's timeouts. Cheap to clone; share one between
/// many [`crate::Client`]s (the benchmark logs in thousands) so they share connections.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    pub fn new() -> Result<Self, ClientError> {
        let inner = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ucclient/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { inner })
    }
}

/// Checks and normalises a server base URL: `http` or `https`, no query, no trailing slash.
pub fn normalize_base_url(text: &str) -> Result<String, ClientError> {
    let url = Url::parse(text.trim())
        .map_err(|error| ClientError::protocol(format!("'{text}' is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::protocol(format!(
            "'{text}' is not an http:// or https:// URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::protocol(format!(
            "'{text}' must not have a query or fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// One server as seen by one session: where it is and which token to show it.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    http: HttpClient,
    /// Normalised by [`normalize_base_url`]: no trailing slash.
    base_url: String,
    token: Option<String>,
    /// A client session's routing across the cluster (none for the admin client).
    servers: Option<std::sync::Arc<crate::failover::Servers>>,
    /// `If-Match` for an edit made from a known version (admin API).
    if_match: Option<u64>,
    /// The content type of request bodies (`None`: `application/json`).
    content_type: Option<&'static str>,
    /// This endpoint's whole-request timeout, when not the client's (an import file).
    timeout: Option<Duration>,
}

impl Endpoint {
    pub(crate) fn new(http: HttpClient, base_url: &str) -> Result<Self, ClientError> {
        Ok(Self {
            http,
            base_url: normalize_base_url(base_url)?,
            token: None,
            servers: None,
            if_match: None,
            content_type: None,
            timeout: None,
        })
    }

    /// Follows the user's live state across the cluster from now on (`failover.rs`).
    pub(crate) fn with_failover(mut self) -> Self {
        self.servers = Some(std::sync::Arc::new(crate::failover::Servers::new(
            self.base_url.clone(),
        )));
        self
    }

    pub(crate) fn servers(&self) -> Option<&crate::failover::Servers> {
        self.servers.as_deref()
    }

    pub(crate) fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    /// This endpoint, sending `If-Match: "<version>"` with its requests when `version` is set.
    pub(crate) fn if_match(&self, version: Option<u64>) -> Self {
        Self {
            if_match: version,
            ..self.clone()
        }
    }

    /// The server talked to now.
    pub(crate) fn base_url(&self) -> String {
        match &self.servers {
            Some(servers) => servers.current(),
            None => self.base_url.clone(),
        }
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let body = self.call(Method::GET, segments, query, None).await?;
        decode(&Method::GET, segments, &body)
    }

    /// A request with a JSON body (or none) whose answer is JSON.
    pub(crate) async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = body.map(encode).transpose()?;
        let answer = self.call(method.clone(), segments, &[], bytes).await?;
        decode(&method, segments, &answer)
    }

    /// A request with a query and a JSON body (or none) whose answer is JSON.
    pub(crate) async fn send_query<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = body.map(encode).transpose()?;
        let answer = self.call(method.clone(), segments, query, bytes).await?;
        decode(&method, segments, &answer)
    }

    /// A request whose answer carries nothing we need (`204`, or a body we ignore).
    pub(crate) async fn send_no_answer<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let bytes = body.map(encode).transpose()?;
        self.call(method, segments, &[], bytes).await?;
        Ok(())
    }

    /// [`Self::send_no_answer`] with a query.
    pub(crate) async fn send_query_no_answer(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(), ClientError> {
        self.call(method, segments, query, None).await?;
        Ok(())
    }

    /// A request whose body is `bytes` of `content_type` (an import file), answered in JSON;
    /// it may take up to [`UPLOAD_TIMEOUT`] (an apply of thousands of users).
    pub(crate) async fn send_bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        content_type: &'static str,
        bytes: Vec<u8>,
    ) -> Result<T, ClientError> {
        let endpoint = Self {
            content_type: Some(content_type),
            timeout: Some(UPLOAD_TIMEOUT),
            ..self.clone()
        };
        let answer = endpoint
            .call(method.clone(), segments, query, Some(bytes))
            .await?;
        decode(&method, segments, &answer)
    }

    /// The raw text of a `2xx` answer (for `/metrics`).
    pub(crate) async fn get_text(&self, segments: &[&str]) -> Result<String, ClientError> {
        self.get_text_with(segments, &[]).await
    }

    /// [`Endpoint::get_text`] with a query (a CSV export).
    pub(crate) async fn get_text_with(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<String, ClientError> {
        let body = self.call(Method::GET, segments, query, None).await?;
        String::from_utf8(body)
            .map_err(|_| ClientError::protocol(format!("GET /{} is not UTF-8", segments.join("/"))))
    }

    /// Sends one request; `Ok` with the body for a `2xx`, the server's [`ApiError`] otherwise.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let once = |base: String| {
            let method = method.clone();
            let body = body.clone();
            async move {
                let (status, _, answer) = self
                    .exchange(&base, method.clone(), segments, query, body)
                    .await?;
                if (200..300).contains(&status) {
                    Ok(answer)
                } else {
                    Err(error_from_answer(&method, segments, status, &answer))
                }
            }
        };
        match &self.servers {
            Some(servers) => crate::failover::with_failover(servers, false, once).await,
            None => once(self.base_url.clone()).await,
        }
    }

    /// Sends one request and returns the status and body whatever the status.
    pub(crate) async fn call_any_status(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let (status, _, answer) = self
            .exchange(&self.base_url(), method, segments, query, body)
            .await?;
        Ok((status, answer))
    }

    /// A GET whose answer is text, with the value of the answer's `header` (an export that
    /// says whether it was cut).
    pub(crate) async fn get_text_and_header(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        header: &str,
    ) -> Result<(String, Option<String>), ClientError> {
        let (status, headers, body) = self
            .exchange(&self.base_url(), Method::GET, segments, query, None)
            .await?;
        if !(200..300).contains(&status) {
            return Err(error_from_answer(&Method::GET, segments, status, &body));
        }
        let text = String::from_utf8(body).map_err(|_| {
            ClientError::protocol(format!("GET /{} is not UTF-8", segments.join("/")))
        })?;
        let value = headers
            .get(header)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        Ok((text, value))
    }

    /// One request to the server at `base`: status, headers and body, whatever the status.
    async fn exchange(
        &self,
        base: &str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), ClientError> {
        let mut request = self.http.inner.request(method, build_url(base, segments)?);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        if let Some(version) = self.if_match {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    self.content_type.unwrap_or("application/json"),
                )
                .body(body);
        }
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::protocol(format!(
                    "answer to /{} is larger than {MAX_RESPONSE_BYTES} bytes",
                    segments.join("/")
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }
}

pub(crate) fn build_url(base_url: &str, segments: &[&str]) -> Result<Url, ClientError> {
    let mut url = Url::parse(base_url)
        .map_err(|error| ClientError::protocol(format!("'{base_url}' is not a URL: {error}")))?;
    url.path_segments_mut()
        .map_err(|()| ClientError::protocol(format!("'{base_url}' cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body)
        .map_err(|error| ClientError::protocol(format!("cannot encode the request: {error}")))
}

fn decode<T: DeserializeOwned>(
    method: &Method,
    segments: &[&str],
    body: &[u8],
) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|error| {
        ClientError::protocol(format!(
            "unexpected answer to {method} /{}: {error}: {}",
            segments.join("/"),
            snippet(body)
        ))
    })
}

/// The server's typed error when the body is one, else a protocol error naming the status.
pub(crate) fn error_from_answer(
    method: &Method,
    segments: &[&str],
    status: u16,
    body: &[u8],
) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(api) => ClientError::Api(api),
        Err(_) => ClientError::protocol(format!(
            "HTTP {status} from {method} /{} without an error body: {}",
            segments.join("/"),
            snippet(body)
        )),
    }
}

/// The start of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty)".to_string();
    }
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::ErrorCode;

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_base_url(" https://uc.example/sb/ ").unwrap(),
            "https://uc.example/sb"
        );
        assert!(normalize_base_url("ftp://x").is_err());
        assert!(normalize_base_url("127.0.0.1:8080").is_err());
        assert!(normalize_base_url("http://x/?a=1").is_err());
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let url = build_url("http://h:1", &["api", "v1", "contacts", "bob"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/api/v1/contacts/bob");
        let url = build_url(
            "http://h:1/sb",
            &["api", "v1", "conversations", "g:ops team"],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/sb/api/v1/conversations/g:ops%20team"
        );
        let url = build_url("http://h:1", &["x", "a/b"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/x/a%2Fb");
    }

    #[test]
    fn error_answers_become_typed_errors() {
        let body = br#"{"error":"wrong_server","message":"bob lives on s2","home_server":"s2","home_url":"http://s2"}"#;
        let error = error_from_answer(&Method::POST, &["api", "v1", "login"], 409, body);
        let api = error.api().expect("typed error");
        assert_eq!(api.error, ErrorCode::WrongServer);
        assert_eq!(api.home_url.as_deref(), Some("http://s2"));

        let error = error_from_answer(&Method::GET, &["nowhere"], 502, b"Bad Gateway");
        assert_eq!(error.code(), "protocol");
        assert_eq!(
            error.to_string(),
            "protocol: HTTP 502 from GET /nowhere without an error body: Bad Gateway"
        );
    }
}
