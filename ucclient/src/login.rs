//! Following `409 wrong_server` on login, kept apart from any IO so it can be tested alone.
//!
//! Any UCServer accepts a login attempt, but only the user's home server issues the token; the
//! others answer `wrong_server` with the `home_url` to use. A client follows that a bounded
//! number of times: a misconfigured cluster (two servers that each think the user lives on the
//! other) must end in a clear error, not a loop.

use crate::error::ClientError;
use crate::http::normalize_base_url;
use shared::api::{ApiError, ErrorCode};

/// Most redirects one login follows before giving up.
pub const MAX_LOGIN_HOPS: usize = 3;

/// The servers a login has tried so far, first one first.
#[derive(Clone, Debug)]
pub(crate) struct LoginRoute {
    /// Normalised base URLs; never empty, the last one is where the next attempt goes.
    visited: Vec<String>,
}

impl LoginRoute {
    pub(crate) fn new(first_url: &str) -> Result<Self, ClientError> {
        Ok(Self {
            visited: vec![normalize_base_url(first_url)?],
        })
    }

    /// Where the next attempt goes.
    pub(crate) fn current(&self) -> &str {
        self.visited.last().map(String::as_str).unwrap_or_default()
    }

    /// Given the error a login attempt got, the next base URL to try; or the error to give
    /// up with (any error other than `wrong_server` is returned unchanged).
    pub(crate) fn redirect(&mut self, error: ApiError) -> Result<&str, ClientError> {
        if error.error != ErrorCode::WrongServer {
            return Err(ClientError::Api(error));
        }
        let Some(home_url) = error.home_url.as_deref() else {
            return Err(ClientError::protocol(format!(
                "{} answered wrong_server without a home_url ({})",
                self.current(),
                error.message
            )));
        };
        let home_url = normalize_base_url(home_url)?;
        if self.visited.contains(&home_url) {
            return Err(ClientError::protocol(format!(
                "login redirects loop: {} -> {home_url}",
                self.visited.join(" -> ")
            )));
        }
        if self.visited.len() > MAX_LOGIN_HOPS {
            return Err(ClientError::protocol(format!(
                "login redirected more than {MAX_LOGIN_HOPS} times: {} -> {home_url}",
                self.visited.join(" -> ")
            )));
        }
        self.visited.push(home_url);
        Ok(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong_server(home_url: Option<&str>) -> ApiError {
        let mut error = ApiError::new(ErrorCode::WrongServer, "lives elsewhere");
        error.home_url = home_url.map(str::to_string);
        error
    }

    #[test]
    fn follows_home_url() {
        let mut route = LoginRoute::new("http://a:1/").unwrap();
        assert_eq!(route.current(), "http://a:1");
        assert_eq!(
            route.redirect(wrong_server(Some("http://b:2/"))).unwrap(),
            "http://b:2"
        );
        assert_eq!(route.current(), "http://b:2");
    }

    #[test]
    fn gives_up_after_three_hops() {
        let mut route = LoginRoute::new("http://s0").unwrap();
        for hop in 1..=MAX_LOGIN_HOPS {
            let next = format!("http://s{hop}");
            assert_eq!(route.redirect(wrong_server(Some(&next))).unwrap(), next);
        }
        let error = route.redirect(wrong_server(Some("http://s9"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "protocol: login redirected more than 3 times: \
             http://s0 -> http://s1 -> http://s2 -> http://s3 -> http://s9"
        );
    }

    #[test]
    fn detects_a_loop() {
        let mut route = LoginRoute::new("http://a").unwrap();
        route.redirect(wrong_server(Some("http://b"))).unwrap();
        let error = route.redirect(wrong_server(Some("http://a/"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "protocol: login redirects loop: http://a -> http://b -> http://a"
        );
    }

    #[test]
    fn other_errors_pass_through() {
        let mut route = LoginRoute::new("http://a").unwrap();
        let error = route
            .redirect(ApiError::new(
                ErrorCode::InvalidCredentials,
                "wrong password",
            ))
            .unwrap_err();
        assert!(error.is(ErrorCode::InvalidCredentials));
        let error = route.redirect(wrong_server(None)).unwrap_err();
        assert_eq!(error.code(), "protocol");
        let error = route.redirect(wrong_server(Some("not a url"))).unwrap_err();
        assert_eq!(error.code(), "protocol");
    }
}
