//! Login throttling shared by every server of the cluster, and the client address it keys on.
//!
//! Failed logins are counted per user name and per client address in the cluster store
//! ([`Cluster::login_failed`]: a Redis hash with a TTL per key, or the bounded in-process map
//! of a single node), so a password-guessing storm spread over several servers is slowed down
//! as if it hit one. After [`FREE_FAILURES`] failures each further attempt on that key must
//! wait, doubling from 1 s up to [`MAX_WAIT_MS`]; a key's count is forgotten
//! [`FORGET_AFTER_MS`] after its last failure (the Redis key expires then). A successful login
//! clears the user's count, not the address's. When the cluster store cannot be reached the
//! check lets logins through (logged): same-server logins must keep working in a Redis outage,
//! and the password hashing bound (`password.rs`) still caps the cost.
//!
//! The client address is the TCP peer, unless the peer is a trusted proxy
//! (`UC_TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first address that is not one is the client. A header from anyone else
//! is ignored, so a client cannot pick its own throttle key. IPv6 clients are keyed by their
//! /64, which one subscriber usually holds whole.

use crate::auth;
use crate::cluster::{Cluster, LoginFailures};
use axum::http::HeaderMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Failures allowed before waits start.
pub const FREE_FAILURES: u32 = 3;
/// A key's failures are forgotten after this much quiet.
pub const FORGET_AFTER_MS: u64 = 15 * 60 * 1000;
/// The longest wait between two attempts.
pub const MAX_WAIT_MS: i64 = 60_000;
/// Most `X-Forwarded-For` entries looked at (from the right).
const MAX_FORWARDED_HOPS: usize = 16;
/// Longest password checked (a longer one is refused before any hashing).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// How long a key with `failures` failures, the last `age_ms` ago, must still wait (0 = may
/// try now). Pure, so the policy is tested without a clock.
pub fn wait_ms(failures: &LoginFailures) -> i64 {
    if failures.count < FREE_FAILURES || failures.age_ms > FORGET_AFTER_MS as i64 {
        return 0;
    }
    let wait = (1000i64 << (failures.count - FREE_FAILURES).min(6)).min(MAX_WAIT_MS);
    (wait - failures.age_ms).max(0)
}

/// Networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `IP` or `IP/PREFIX` entries (IPv4 or IPv6).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bad = || format!("'{entry}' is not an IP address or IP/PREFIX network");
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (entry, None),
            };
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let ip = ip.to_canonical();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(text) => text
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(bad)?,
                None => max,
            };
            networks.push((ip, prefix));
        }
        Ok(Self { networks })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks
            .iter()
            .any(|(network, prefix)| same_prefix(*network, ip, *prefix))
    }

    /// The client's address: the peer, or what a trusted peer says in `X-Forwarded-For`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        // Every hop appends the address it received from; read from the right and stop at
        // the first hop that is not one of ours (anything left of it may be made up).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = address.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The throttle key of an address: IPv4 as is, IPv6 by its /64.
fn address_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("addr:{v4}"),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("addr:{}/64", Ipv6Addr::from(network))
        }
    }
}

/// The throttle key of a user name (a long name is hashed, so keys stay short).
fn user_key(user: &str) -> String {
    if user.len() <= 128 {
        format!("user:{user}")
    } else {
        format!("user#{}", auth::token_hash(user))
    }
}

/// The cluster-wide login throttle of one server.
pub struct LoginGuard {
    cluster: Arc<dyn Cluster>,
    pub trusted_proxies: TrustedProxies,
}

impl LoginGuard {
    pub fn new(cluster: Arc<dyn Cluster>, trusted_proxies: TrustedProxies) -> Self {
        Self {
            cluster,
            trusted_proxies,
        }
    }

    /// How long a login of `user` from `address` must still wait (0 = may try now).
    pub async fn wait_ms(&self, user: &str, address: IpAddr) -> i64 {
        let keys = [user_key(user), address_key(address)];
        match self.cluster.login_failures(&keys).await {
            Ok(found) => found.iter().flatten().map(wait_ms).max().unwrap_or(0),
            Err(error) => {
                tracing::warn!(%error, "login throttle unavailable; not throttling");
                0
            }
        }
    }

    pub async fn failed(&self, user: &str, address: IpAddr) {
        for key in [user_key(user), address_key(address)] {
            if let Err(error) = self.cluster.login_failed(&key, FORGET_AFTER_MS).await {
                tracing::warn!(%error, "could not count a failed login");
            }
        }
    }

    pub async fn succeeded(&self, user: &str) {
        if let Err(error) = self.cluster.login_forget(&user_key(user)).await {
            tracing::warn!(%error, "could not clear a user's failed logins");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn failures(count: u32, age_ms: i64) -> LoginFailures {
        LoginFailures { count, age_ms }
    }

    #[test]
    fn waits_grow_after_free_failures_and_end() {
        assert_eq!(wait_ms(&failures(2, 0)), 0);
        assert_eq!(wait_ms(&failures(3, 0)), 1000);
        assert_eq!(wait_ms(&failures(3, 400)), 600);
        assert_eq!(wait_ms(&failures(3, 1000)), 0);
        assert_eq!(wait_ms(&failures(4, 0)), 2000);
        assert_eq!(wait_ms(&failures(50, 0)), MAX_WAIT_MS);
        assert_eq!(wait_ms(&failures(50, 16 * 60 * 1000)), 0);
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted =
            TrustedProxies::parse(&["10.0.0.0/8".into(), " ::1 ".into(), String::new()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From an untrusted peer the header is ignored.
        assert_eq!(
            trusted.client_address(ip("192.0.2.7"), &forwarded(&["1.2.3.4"])),
            ip("192.0.2.7")
        );
        // From a trusted proxy: the rightmost untrusted hop; made-up entries left of it
        // do not matter.
        assert_eq!(
            trusted.client_address(
                ip("10.1.1.1"),
                &forwarded(&["6.6.6.6, 198.51.100.9", "10.2.2.2"])
            ),
            ip("198.51.100.9")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:10.1.1.1"), &forwarded(&["198.51.100.9"])),
            ip("198.51.100.9")
        );
        assert_eq!(
            trusted.client_address(ip("::1"), &forwarded(&["garbage"])),
            ip("::1")
        );
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), &HeaderMap::new()),
            ip("10.1.1.1")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["example.com".into()]).is_err());
        assert!(TrustedProxies::default().is_empty());
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        assert!(
            TrustedProxies::parse(&["0.0.0.0/0".into()])
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
    }

    #[test]
    fn keys_are_short_and_ipv6_goes_by_its_64() {
        assert_eq!(address_key("192.0.2.1".parse().unwrap()), "addr:192.0.2.1");
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            address_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_eq!(user_key("alice"), "user:alice");
        assert!(user_key(&"x".repeat(5000)).len() < 100);
    }
}
