//! Telling a killed peer from a paused or slow one. A process that died leaves its port
//! closed, and the operating system refuses a connection to it at once; a paused process
//! (or a slow network) lets the connection wait. Only a refusal counts as evidence: a
//! timeout, an unreachable network or a name that does not resolve prove nothing, and the
//! failure detector's window decides as before.

use std::io::ErrorKind;
use std::time::Duration;

/// How long a probe waits for the connection: a refusal comes at once.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether every address of `url`'s host and port refuses TCP connections.
pub async fn refuses_connections(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(Ok(addresses)) =
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host((host, port))).await
    else {
        return false;
    };
    let mut refused = false;
    for address in addresses {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Err(error)) if error.kind() == ErrorKind::ConnectionRefused => refused = true,
            _ => return false,
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_refuses_and_an_open_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        assert!(!refuses_connections(&format!("http://{open}")).await);
        drop(listener);
        assert!(refuses_connections(&format!("http://{open}")).await);
        assert!(!refuses_connections("not a url").await);
    }
}
