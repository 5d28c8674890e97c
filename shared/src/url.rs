//! URLs from the configuration, read the same way by every part: masking for anything
//! printed or logged, and the forms `UC_REDIS_URL` takes.
//!
//! `UC_REDIS_URL` is either one Redis server (`redis://` or `rediss://`, read by the Redis
//! client library) or a primary watched by Redis Sentinel:
//!
//! ```text
//! redis-sentinel://[user:password@]host:port[,host:port...]/service[/db][?sentinel_user=u&sentinel_password=p]
//! ```
//!
//! The hosts are the Sentinels (port 26379 when left out), `service` is the name they monitor
//! the primary under (`sentinel monitor <service> ...`). The credentials before `@` are for
//! the data nodes (primary and replicas); the Sentinels are asked without credentials unless
//! `sentinel_user`/`sentinel_password` are given, since Sentinels commonly run without
//! `requirepass` while the data nodes have one. Credentials are percent-decoded.

/// Longest `UC_REDIS_URL` accepted: a list of Sentinels and credentials fit well within it.
pub const MAX_REDIS_URL_BYTES: usize = 4096;
/// Most Sentinels one URL may list.
pub const MAX_SENTINELS: usize = 16;
/// Sentinels' port when a host leaves it out.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

const SENTINEL_SCHEME: &str = "redis-sentinel://";

/// `scheme://user:password@host/...?password=...` with the credentials replaced by `***`, for
/// anything printed or logged (a database or Redis URL may hold a password, in the part before
/// `@` or in a query parameter such as `password` or `sentinel_password`).
pub fn mask_url(url: &str) -> String {
    let query_start = url.find('?').unwrap_or(url.len());
    let (base, query) = url.split_at(query_start);
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &base[..scheme], &base[at + 1..])
        }
        _ => base.to_string(),
    };
    let Some(query) = query.strip_prefix('?') else {
        return base;
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{base}?{query}")
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "pass", "pwd", "secret", "sslpassword"].contains(&name.as_str())
        || name.ends_with("password")
}

/// What `UC_REDIS_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// One server, `redis://` or `rediss://`, as written (the client library reads the rest).
    Direct(String),
    /// A primary found through Redis Sentinel.
    Sentinel(SentinelUrl),
}

/// A `redis-sentinel://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The Sentinels to ask for the primary, in the order written (at least one).
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the primary under.
    pub service: String,
    /// The database number on the data nodes; none: 0.
    pub database: Option<u8>,
    /// Credentials for the data nodes (primary and replicas), decoded.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Credentials for the Sentinels themselves, decoded; none: no `AUTH` to them.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

/// Why a `UC_REDIS_URL` was refused. The messages never repeat a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    #[error("expected redis://, rediss:// or redis-sentinel://")]
    Scheme,
    #[error("longer than {MAX_REDIS_URL_BYTES} bytes")]
    TooLong,
    #[error(
        "a Sentinel URL names the service after the hosts: redis-sentinel://host:26379,host:26380/mymaster"
    )]
    MissingService,
    #[error("the Sentinel service name '{0}' may hold only letters, digits, '.', '-' and '_'")]
    BadService(String),
    #[error("a Sentinel URL lists between 1 and {MAX_SENTINELS} Sentinels as host:port")]
    SentinelCount,
    #[error("'{0}' is not a Sentinel address (host:port, or [v6-address]:port)")]
    BadSentinel(String),
    #[error("'{0}' is not a database number (0-255) after the Sentinel service name")]
    BadDatabase(String),
    #[error("unknown parameter '{0}' in a Sentinel URL (known: sentinel_user, sentinel_password)")]
    UnknownParameter(String),
    #[error("the {0} is not valid percent-encoded UTF-8")]
    BadEncoding(&'static str),
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, RedisUrlError> {
        if url.len() > MAX_REDIS_URL_BYTES {
            return Err(RedisUrlError::TooLong);
        }
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            return parse_sentinel(rest).map(RedisUrl::Sentinel);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(RedisUrl::Direct(url.to_string()));
        }
        Err(RedisUrlError::Scheme)
    }
}

fn parse_sentinel(rest: &str) -> Result<SentinelUrl, RedisUrlError> {
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').ok_or(RedisUrlError::MissingService)?;
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let (username, password) = match credentials {
        None => (None, None),
        Some(credentials) => {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            (
                non_empty(decode(user, "user name")?),
                non_empty(decode(password, "password")?),
            )
        }
    };
    let sentinels = hosts
        .split(',')
        .map(parse_host)
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() || sentinels.len() > MAX_SENTINELS {
        return Err(RedisUrlError::SentinelCount);
    }
    let (service, database) = match path.split_once('/') {
        Some((service, "")) => (service, None),
        Some((service, database)) => (
            service,
            Some(
                database
                    .parse::<u8>()
                    .map_err(|_| RedisUrlError::BadDatabase(database.to_string()))?,
            ),
        ),
        None => (path, None),
    };
    if service.is_empty() {
        return Err(RedisUrlError::MissingService);
    }
    if service.len() > 128
        || !service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(RedisUrlError::BadService(service.to_string()));
    }
    let mut url = SentinelUrl {
        sentinels,
        service: service.to_string(),
        database,
        username,
        password,
        sentinel_username: None,
        sentinel_password: None,
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sentinel_user" => url.sentinel_username = non_empty(decode(value, "sentinel_user")?),
            "sentinel_password" => {
                url.sentinel_password = non_empty(decode(value, "sentinel_password")?);
            }
            other => return Err(RedisUrlError::UnknownParameter(other.to_string())),
        }
    }
    Ok(url)
}

/// `host:port`, `host` (default port), `[v6]:port` or `[v6]`.
fn parse_host(text: &str) -> Result<(String, u16), RedisUrlError> {
    let bad = || RedisUrlError::BadSentinel(text.to_string());
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Percent-decoding of a URL part.
fn decode(text: &str, what: &'static str) -> Result<String, RedisUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or(RedisUrlError::BadEncoding(what))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RedisUrlError::BadEncoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelUrl {
        match RedisUrl::parse(url) {
            Ok(RedisUrl::Sentinel(sentinel)) => sentinel,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn the_sentinel_form_is_taken_apart() {
        let url = sentinel(
            "redis-sentinel://uc:p%40ss@10.0.0.1:26379,sentinel-b,[::1]:26381/mymaster/2?sentinel_password=s3cret",
        );
        assert_eq!(
            url.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26379),
                ("sentinel-b".to_string(), DEFAULT_SENTINEL_PORT),
                ("::1".to_string(), 26381),
            ]
        );
        assert_eq!(url.service, "mymaster");
        assert_eq!(url.database, Some(2));
        assert_eq!(url.username.as_deref(), Some("uc"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.sentinel_username, None);
        assert_eq!(url.sentinel_password.as_deref(), Some("s3cret"));

        let plain = sentinel("redis-sentinel://127.0.0.1:26379/mymaster");
        assert_eq!(
            (plain.username, plain.password, plain.database),
            (None, None, None)
        );
        let password_only = sentinel("redis-sentinel://:pw@h:1/m");
        assert_eq!(
            (password_only.username, password_only.password.as_deref()),
            (None, Some("pw"))
        );
        assert_eq!(
            RedisUrl::parse("redis://:pw@r:6379/0"),
            Ok(RedisUrl::Direct("redis://:pw@r:6379/0".into()))
        );
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        use RedisUrlError::*;
        for (url, expected) in [
            ("http://r:6379", Scheme),
            ("redis-sentinel://h:26379", MissingService),
            ("redis-sentinel://h:26379/", MissingService),
            (
                "redis-sentinel://h:26379/my master",
                BadService("my master".into()),
            ),
            ("redis-sentinel:///mymaster", BadSentinel(String::new())),
            ("redis-sentinel://h:26379,/m", BadSentinel(String::new())),
            ("redis-sentinel://h:port/m", BadSentinel("h:port".into())),
            ("redis-sentinel://h:0/m", BadSentinel("h:0".into())),
            ("redis-sentinel://h:70000/m", BadSentinel("h:70000".into())),
            ("redis-sentinel://[::1/m", BadSentinel("[::1".into())),
            ("redis-sentinel://h/m/x", BadDatabase("x".into())),
            ("redis-sentinel://h/m?db=1", UnknownParameter("db".into())),
            ("redis-sentinel://u:%zz@h/m", BadEncoding("password")),
        ] {
            assert_eq!(RedisUrl::parse(url), Err(expected), "{url}");
        }
        let many = format!("redis-sentinel://{}/m", vec!["h:1"; 17].join(","));
        assert_eq!(RedisUrl::parse(&many), Err(SentinelCount));
        let long = format!("redis://{}", "h".repeat(MAX_REDIS_URL_BYTES));
        assert_eq!(RedisUrl::parse(&long), Err(TooLong));
        let message = RedisUrl::parse("redis-sentinel://u:hunter2@h:1")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn masking_hides_every_password() {
        for (url, masked) in [
            (
                "redis-sentinel://uc:hunter2@h1:26379,h2:26380/mymaster?sentinel_password=hunter2",
                "redis-sentinel://***@h1:26379,h2:26380/mymaster?sentinel_password=***",
            ),
            (
                "postgres://db.example/uc?user=uc&password=hunter2&sslmode=require",
                "postgres://db.example/uc?user=uc&password=***&sslmode=require",
            ),
            ("redis://:hunter2@r:6379/0", "redis://***@r:6379/0"),
            (
                "redis-sentinel://h:1/m?sentinel_user=a&sentinel_password=x@y",
                "redis-sentinel://h:1/m?sentinel_user=a&sentinel_password=***",
            ),
            ("sqlite:data/x.db", "sqlite:data/x.db"),
        ] {
            assert_eq!(mask_url(url), masked);
        }
    }
}
