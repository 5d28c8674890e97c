//! Following a user's live state across the cluster's servers (high availability).
//!
//! A session talks to the server that serves its user. When that server cannot be reached
//! (it died) the session knocks at the others it knows of (the login's and every `hello`'s
//! server list); a server that does not serve the user answers `wrong_server` naming the one
//! that does, and the session follows; the server taking the user over answers
//! `server_unavailable` with `retry_after_ms` while the old one still holds the user, and the
//! session waits that long. A `reconnect` event (a planned move) names the new server at once.
//! Tokens are valid on every server, so none of this asks the user to sign in again.
//!
//! [`after_failure`] decides the next step from an error alone (no IO, unit-tested);
//! [`Servers`] is the shared, mutable routing state of one session and its clones.

use crate::error::{ClientError, TransportError};
use crate::http::normalize_base_url;
use shared::api::{ErrorCode, ServerLink};
use std::sync::Mutex;
use std::time::Duration;

/// How long one request or connect keeps trying servers before it gives up.
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
/// Pause before knocking at the next server after one could not be reached.
pub const ROTATE_PAUSE: Duration = Duration::from_millis(200);
/// Longest wait a server may ask for.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The next step after an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Go to this server (it serves the user).
    Follow(String),
    /// Try the same server again after this pause (it is taking the user over).
    Wait(Duration),
    /// This server cannot be reached: try the next one.
    Rotate,
    /// The error is the answer.
    GiveUp,
}

/// Decides the next step after `error`. Only errors where the request surely did not take
/// effect are retried: a refused connection, `wrong_server`, `server_unavailable` with a
/// retry time. A request that may have reached the server (a reset, a timeout) is not.
pub fn after_failure(error: &ClientError, connect_only: bool) -> Next {
    match error {
        ClientError::Api(api) if api.error == ErrorCode::WrongServer => {
            match api.home_url.as_deref().map(normalize_base_url) {
                Some(Ok(url)) => Next::Follow(url),
                _ => Next::Rotate,
            }
        }
        ClientError::Api(api) if api.error == ErrorCode::ServerUnavailable => {
            match api.retry_after_ms {
                Some(ms) => Next::Wait(Duration::from_millis(ms).min(MAX_WAIT)),
                None => Next::GiveUp,
            }
        }
        ClientError::Transport(TransportError::Http(error)) if error.is_connect() => Next::Rotate,
        // Opening a WebSocket takes effect only with its `hello`: any failure before it may
        // be retried elsewhere.
        ClientError::Transport(_) if connect_only => Next::Rotate,
        _ => Next::GiveUp,
    }
}

/// Where one session goes: the server serving its user now, and the others it knows of.
#[derive(Debug)]
pub struct Servers {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: String,
    /// Base URLs of every server heard of, normalised, in the order learned.
    known: Vec<String>,
}

impl Servers {
    pub fn new(current: String) -> Self {
        Self {
            state: Mutex::new(State {
                known: vec![current.clone()],
                current,
            }),
        }
    }

    /// The server to talk to now.
    pub fn current(&self) -> String {
        self.state.lock().unwrap().current.clone()
    }

    /// Takes in a server list (login, `hello`); URLs that do not parse are skipped.
    pub fn learn(&self, links: &[ServerLink]) {
        let mut state = self.state.lock().unwrap();
        for link in links {
            if let Ok(url) = normalize_base_url(&link.url)
                && !state.known.contains(&url)
            {
                state.known.push(url);
            }
        }
    }

    /// Goes to `url` from now on (`wrong_server`, `reconnect`).
    pub fn follow(&self, url: &str) {
        let Ok(url) = normalize_base_url(url) else {
            return;
        };
        let mut state = self.state.lock().unwrap();
        if !state.known.contains(&url) {
            state.known.push(url.clone());
        }
        state.current = url;
    }

    /// `failed` could not be reached: moves on to the next known server (unless another
    /// caller moved on already).
    pub fn rotate(&self, failed: &str) {
        let mut state = self.state.lock().unwrap();
        if state.current != failed {
            return;
        }
        let at = state.known.iter().position(|u| u == failed).unwrap_or(0);
        let next = state.known[(at + 1) % state.known.len()].clone();
        state.current = next;
    }

    /// Every known server's base URL.
    pub fn known(&self) -> Vec<String> {
        self.state.lock().unwrap().known.clone()
    }
}

/// Runs `attempt` against the current server, following the cluster as [`after_failure`]
/// says until it succeeds, gives up, or [`FAILOVER_DEADLINE`] passes.
pub async fn with_failover<T, F, Fut>(
    servers: &Servers,
    connect_only: bool,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + FAILOVER_DEADLINE;
    loop {
        let base = servers.current();
        let error = match attempt(base.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
        match after_failure(&error, connect_only) {
            Next::Follow(url) => servers.follow(&url),
            Next::Wait(pause) => tokio::time::sleep(pause).await,
            Next::Rotate => {
                servers.rotate(&base);
                tokio::time::sleep(ROTATE_PAUSE).await;
            }
            Next::GiveUp => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::ApiError;

    fn api(code: ErrorCode) -> ApiError {
        ApiError::new(code, "test")
    }

    #[test]
    fn wrong_server_is_followed_and_unavailable_waited_out() {
        let mut wrong = api(ErrorCode::WrongServer);
        wrong.home_url = Some("http://s2:8080/".into());
        assert_eq!(
            after_failure(&ClientError::Api(wrong), false),
            Next::Follow("http://s2:8080".into())
        );
        let mut busy = api(ErrorCode::ServerUnavailable);
        busy.retry_after_ms = Some(500);
        assert_eq!(
            after_failure(&ClientError::Api(busy), false),
            Next::Wait(Duration::from_millis(500))
        );
        let mut long = api(ErrorCode::ServerUnavailable);
        long.retry_after_ms = Some(60_000);
        assert_eq!(
            after_failure(&ClientError::Api(long), false),
            Next::Wait(MAX_WAIT)
        );
    }

    #[test]
    fn other_errors_are_the_answer() {
        for code in [
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::ServerUnavailable,
        ] {
            assert_eq!(
                after_failure(&ClientError::Api(api(code)), false),
                Next::GiveUp
            );
        }
        let closed = ClientError::Transport(TransportError::Closed);
        assert_eq!(after_failure(&closed, false), Next::GiveUp);
        assert_eq!(after_failure(&closed, true), Next::Rotate);
    }

    #[test]
    fn servers_rotate_through_what_they_learned() {
        let servers = Servers::new("http://s1".into());
        servers.learn(&[
            ServerLink {
                id: "s1".into(),
                url: "http://s1/".into(),
            },
            ServerLink {
                id: "s2".into(),
                url: "http://s2".into(),
            },
        ]);
        assert_eq!(servers.known(), vec!["http://s1", "http://s2"]);
        servers.rotate("http://s1");
        assert_eq!(servers.current(), "http://s2");
        // A second caller that saw s1 fail too does not skip past s2.
        servers.rotate("http://s1");
        assert_eq!(servers.current(), "http://s2");
        servers.rotate("http://s2");
        assert_eq!(servers.current(), "http://s1");
        servers.follow("http://s3/");
        assert_eq!(servers.current(), "http://s3");
        assert_eq!(servers.known().len(), 3);
    }
}
