//! Server configuration: an optional TOML file (`--config PATH` or `UC_CONFIG`), then the
//! `UC_*` environment on top. Loaded once in `main`, validated, printed with secrets masked.

use serde::Deserialize;
use shared::ServerId;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `UC_SERVER_ID`: this server's id in the cluster. Default `uc1`.
    pub server_id: String,
    /// `UC_LISTEN`: address of the HTTP/WebSocket listener. Default `127.0.0.1:8080`.
    pub listen: String,
    /// `UC_PUBLIC_URL`: the URL clients and peers use to reach this server (sent to clients
    /// that must log in here). Default `http://<listen>` with `localhost` for 127.0.0.1.
    pub public_url: Option<String>,
    /// `UC_DATABASE_URL`: `sqlite:PATH` or `postgres://...`. Default `sqlite:<data_dir>/switchboard.db`.
    pub database_url: Option<String>,
    /// `UC_REDIS_URL`: the cluster's Redis; absent = single node with an in-process bus.
    /// `redis://`/`rediss://` for one server, or
    /// `redis-sentinel://[user:password@]host:port,host:port/service` for a primary found
    /// through Redis Sentinel (see `shared::url`).
    pub redis_url: Option<String>,
    /// `UC_ADMIN_PASSWORD`: password of the initial `admin` user, used only when no admin
    /// exists yet. Absent = one is generated and printed once.
    pub admin_password: Option<String>,
    /// `UC_DATA_DIR`: where the single-node default keeps its files. Default `./data`.
    pub data_dir: PathBuf,
    /// `UC_HEARTBEAT_MS`: heartbeat period. Default 1000.
    pub heartbeat_ms: u64,
    /// `UC_STATS_SAMPLE_MS`: how often the server samples its load and counters for the
    /// console's charts of the last hour. Default 30000.
    pub stats_sample_ms: u64,
    /// `UC_DEAD_AFTER_MS`: a peer silent this long is dead: its users fail over to their
    /// backups and what it held is cleaned up. Default 4000.
    pub dead_after_ms: u64,
    /// `UC_REDUNDANCY_GROUP`: the servers that stand in for each other when one dies. Unset:
    /// any live server stands in for this one.
    pub redundancy_group: Option<String>,
    /// `UC_FALLBACK_DELAY_MS`: how long this server must be back before its users move back
    /// from their backups. Default 30000; `off`: only on an admin's command.
    pub fallback_delay_ms: Option<u64>,
    /// `UC_MDM_BUFFER_LIMIT`: events held for a quiet device before a flush. Default 100.
    pub mdm_buffer_limit: usize,
    /// `UC_MEDIA_SECRET`: bearer secret of the MediaServers' control API.
    pub media_secret: Option<String>,
    /// `UC_MEDIA_EMBEDDED`: run a MediaServer inside this process. Default: on for a single
    /// node (no Redis), off in a cluster (MediaServers are added with `ucadmin media add`).
    pub media_embedded: Option<bool>,
    /// `UC_MEDIA_UDP`: UDP address of the embedded MediaServer. Default `0.0.0.0:0` (any port).
    pub media_udp: String,
    /// `UC_MEDIA_PUBLIC_IP`: address the embedded MediaServer puts in ICE candidates.
    /// Default 127.0.0.1 (browsers on this machine); set the LAN address for other machines.
    pub media_public_ip: Option<String>,
    /// `UC_RING_TIMEOUT_MS`: how long a call rings before it counts as not answered. Default 30000.
    pub ring_timeout_ms: u64,
    /// `UC_MEDIA_FRESH_MS`: a MediaServer whose heartbeat is older than this gets no new
    /// call (MediaServers beat every second). Default 2000, at most the 5 s after which its
    /// running calls count as lost (`core::media_choice`).
    pub media_fresh_ms: u64,
    /// `UC_MEDIA_SERVERS`: MediaServers known from configuration, `ID=CONTROL_URL` each
    /// (comma-separated in the environment), besides those added with `ucadmin media add`.
    pub media_servers: Vec<String>,
    /// `UC_SESSION_LIFETIME_MS`: a session token ends this long after it was issued, used or
    /// not, on every path (REST, WebSocket, a token restored from SQL). Default 7 days.
    pub session_lifetime_ms: u64,
    /// `UC_TRUSTED_PROXIES`: IPs or CIDR networks (comma-separated in the environment) of
    /// reverse proxies such as ucweb whose `X-Forwarded-For` names the client for login
    /// throttling. Default none: the header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// `UC_PASSWORD_WORKERS`: password hashes computed at once (each holds 19 MiB while it
    /// runs, kept for reuse). Default: the number of CPU cores.
    pub password_workers: Option<usize>,
    /// `UC_PASSWORD_QUEUE`: logins that may wait for a hashing worker; beyond them a login is
    /// refused with `too_many_attempts` and `retry_after_ms`. Default 16.
    pub password_queue: usize,
    /// `UC_RATE_SEND_PER_MINUTE` / `UC_RATE_SEND_BURST`: chat messages one device may send,
    /// sustained and at once. Default 6000 (100/s) / 500. 0 per minute = no limit.
    pub rate_send_per_minute: u32,
    pub rate_send_burst: u32,
    /// `UC_OUTBOX_MAX_MESSAGES` / `UC_OUTBOX_MAX_AGE_MS`: the chat outbox
    /// (`<data_dir>/outbox.sqlite`), which keeps messages while the database cannot be
    /// reached, holds at most this many, and takes no more once its oldest is this old; beyond
    /// either, sends are refused (`server_unavailable`). Default 100000 / 3600000 (1 h).
    pub outbox_max_messages: usize,
    pub outbox_max_age_ms: u64,
    /// `UC_RATE_TYPING_PER_MINUTE` / `UC_RATE_TYPING_BURST`: typing notices per device.
    /// Default 600 (10/s) / 30.
    pub rate_typing_per_minute: u32,
    pub rate_typing_burst: u32,
    /// `UC_RATE_CONVERSATIONS_PER_MINUTE` / `UC_RATE_CONVERSATIONS_BURST`: new conversations
    /// per device. Default 60 / 20.
    pub rate_conversations_per_minute: u32,
    pub rate_conversations_burst: u32,
    /// `UC_LDAP_*`: the directory users may come from (`ldap.rs`). Default none.
    pub ldap: crate::ldap::LdapConfig,
}

pub use shared::url::mask_url;

impl Default for Config {
    fn default() -> Self {
        Self {
            server_id: "uc1".into(),
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            database_url: None,
            redis_url: None,
            admin_password: None,
            data_dir: PathBuf::from("data"),
            heartbeat_ms: 1_000,
            stats_sample_ms: 30_000,
            dead_after_ms: crate::core::failure::DEAD_AFTER_MS as u64,
            redundancy_group: None,
            fallback_delay_ms: Some(30_000),
            mdm_buffer_limit: 100,
            media_secret: None,
            media_embedded: None,
            media_udp: "0.0.0.0:0".into(),
            media_public_ip: None,
            ring_timeout_ms: 30_000,
            media_fresh_ms: crate::core::media_choice::MediaChoiceConfig::DEFAULT.fresh_ms as u64,
            media_servers: Vec::new(),
            session_lifetime_ms: 7 * 24 * 60 * 60 * 1000,
            trusted_proxies: Vec::new(),
            password_workers: None,
            password_queue: 16,
            rate_send_per_minute: 6_000,
            rate_send_burst: 500,
            outbox_max_messages: 100_000,
            outbox_max_age_ms: 3_600_000,
            rate_typing_per_minute: 600,
            rate_typing_burst: 30,
            rate_conversations_per_minute: 60,
            rate_conversations_burst: 20,
            ldap: crate::ldap::LdapConfig::default(),
        }
    }
}

impl Config {
    /// Reads the file (if any), then the environment, then checks the result.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut config: Config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read config file {}: {e}", path.display())
                })?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("bad config file {}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Overrides fields from `UC_*` variables (a function, so tests need no process env).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let number = |name: &str, value: String| -> anyhow::Result<u64> {
            value
                .parse()
                .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not '{value}'"))
        };
        if let Some(v) = var("UC_SERVER_ID") {
            self.server_id = v;
        }
        if let Some(v) = var("UC_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("UC_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = var("UC_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("UC_REDIS_URL") {
            self.redis_url = if v.is_empty() { None } else { Some(v) };
        }
        if let Some(v) = var("UC_ADMIN_PASSWORD") {
            self.admin_password = Some(v);
        }
        if let Some(v) = var("UC_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("UC_HEARTBEAT_MS") {
            self.heartbeat_ms = number("UC_HEARTBEAT_MS", v)?;
        }
        if let Some(v) = var("UC_STATS_SAMPLE_MS") {
            self.stats_sample_ms = number("UC_STATS_SAMPLE_MS", v)?;
        }
        if let Some(v) = var("UC_DEAD_AFTER_MS") {
            self.dead_after_ms = number("UC_DEAD_AFTER_MS", v)?;
        }
        if let Some(v) = var("UC_REDUNDANCY_GROUP") {
            shared::validate_name(&v).map_err(|e| anyhow::anyhow!("UC_REDUNDANCY_GROUP: {e}"))?;
            self.redundancy_group = Some(v);
        }
        if let Some(v) = var("UC_FALLBACK_DELAY_MS") {
            self.fallback_delay_ms = if v == "off" {
                None
            } else {
                Some(number("UC_FALLBACK_DELAY_MS", v)?)
            };
        }
        if let Some(v) = var("UC_MDM_BUFFER_LIMIT") {
            self.mdm_buffer_limit = number("UC_MDM_BUFFER_LIMIT", v)? as usize;
        }
        if let Some(v) = var("UC_MEDIA_SECRET") {
            self.media_secret = if v.is_empty() { None } else { Some(v) };
        }
        if let Some(v) = var("UC_MEDIA_EMBEDDED") {
            self.media_embedded = Some(match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => anyhow::bail!("UC_MEDIA_EMBEDDED must be true or false, not '{other}'"),
            });
        }
        if let Some(v) = var("UC_MEDIA_UDP") {
            self.media_udp = v;
        }
        if let Some(v) = var("UC_MEDIA_PUBLIC_IP") {
            self.media_public_ip = Some(v);
        }
        if let Some(v) = var("UC_RING_TIMEOUT_MS") {
            self.ring_timeout_ms = number("UC_RING_TIMEOUT_MS", v)?;
        }
        if let Some(v) = var("UC_MEDIA_FRESH_MS") {
            self.media_fresh_ms = number("UC_MEDIA_FRESH_MS", v)?;
        }
        if let Some(v) = var("UC_SESSION_LIFETIME_MS") {
            self.session_lifetime_ms = number("UC_SESSION_LIFETIME_MS", v)?;
        }
        if let Some(v) = var("UC_MEDIA_SERVERS") {
            self.media_servers = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        self.ldap.apply_env(&var)?;
        if let Some(v) = var("UC_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = var("UC_PASSWORD_WORKERS") {
            self.password_workers = Some(number("UC_PASSWORD_WORKERS", v)? as usize);
        }
        if let Some(v) = var("UC_OUTBOX_MAX_MESSAGES") {
            self.outbox_max_messages = number("UC_OUTBOX_MAX_MESSAGES", v)? as usize;
        }
        if let Some(v) = var("UC_OUTBOX_MAX_AGE_MS") {
            self.outbox_max_age_ms = number("UC_OUTBOX_MAX_AGE_MS", v)?;
        }
        if let Some(v) = var("UC_PASSWORD_QUEUE") {
            self.password_queue = number("UC_PASSWORD_QUEUE", v)? as usize;
        }
        let rate = |name: &str, value: String| -> anyhow::Result<u32> {
            u32::try_from(number(name, value)?).map_err(|_| anyhow::anyhow!("{name} is too large"))
        };
        for (name, field) in [
            ("UC_RATE_SEND_PER_MINUTE", &mut self.rate_send_per_minute),
            ("UC_RATE_SEND_BURST", &mut self.rate_send_burst),
            (
                "UC_RATE_TYPING_PER_MINUTE",
                &mut self.rate_typing_per_minute,
            ),
            ("UC_RATE_TYPING_BURST", &mut self.rate_typing_burst),
            (
                "UC_RATE_CONVERSATIONS_PER_MINUTE",
                &mut self.rate_conversations_per_minute,
            ),
            (
                "UC_RATE_CONVERSATIONS_BURST",
                &mut self.rate_conversations_burst,
            ),
        ] {
            if let Some(v) = var(name) {
                *field = rate(name, v)?;
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        shared::validate_name(&self.server_id).map_err(|e| anyhow::anyhow!("UC_SERVER_ID: {e}"))?;
        self.listen_addr()?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            anyhow::bail!(
                "UC_DATABASE_URL must start with sqlite: or postgres://, not '{}'",
                mask_url(url)
            );
        }
        if let Some(url) = &self.redis_url {
            shared::url::RedisUrl::parse(url).map_err(|e| anyhow::anyhow!("UC_REDIS_URL: {e}"))?;
        }
        if self.heartbeat_ms == 0 || self.dead_after_ms < 2 * self.heartbeat_ms {
            anyhow::bail!(
                "UC_DEAD_AFTER_MS must be at least twice UC_HEARTBEAT_MS (and that above 0)"
            );
        }
        if !(100..=600_000).contains(&self.stats_sample_ms) {
            anyhow::bail!("UC_STATS_SAMPLE_MS must be between 100 and 600000");
        }
        self.media_udp_addr()?;
        self.media_public_ip()?;
        self.configured_media()?;
        if !(1_000..=600_000).contains(&self.ring_timeout_ms) {
            anyhow::bail!("UC_RING_TIMEOUT_MS must be between 1000 and 600000");
        }
        let lost_after_ms = crate::core::media_choice::MediaChoiceConfig::DEFAULT.lost_after_ms;
        if !(1_000..=lost_after_ms as u64).contains(&self.media_fresh_ms) {
            anyhow::bail!(
                "UC_MEDIA_FRESH_MS must be between 1000 (MediaServers beat every second) and \
                 {lost_after_ms} (when a silent MediaServer's calls end)"
            );
        }
        if !(1_000..=365 * 24 * 60 * 60 * 1000).contains(&self.session_lifetime_ms) {
            anyhow::bail!("UC_SESSION_LIFETIME_MS must be between 1000 and one year");
        }
        if let Some(password) = &self.admin_password
            && password.len() < 8
        {
            anyhow::bail!("UC_ADMIN_PASSWORD must have at least 8 characters");
        }
        self.trusted_proxies()?;
        if self.password_workers == Some(0) || self.password_workers > Some(256) {
            anyhow::bail!("UC_PASSWORD_WORKERS must be between 1 and 256");
        }
        if self.password_queue > 10_000 {
            anyhow::bail!("UC_PASSWORD_QUEUE must be at most 10000");
        }
        Ok(())
    }

    /// The parsed `UC_TRUSTED_PROXIES`.
    pub fn trusted_proxies(&self) -> anyhow::Result<crate::login_guard::TrustedProxies> {
        crate::login_guard::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("UC_TRUSTED_PROXIES: {e}"))
    }

    /// The password hashing bound.
    pub fn password_limits(&self) -> crate::password::PasswordLimits {
        crate::password::PasswordLimits {
            workers: self
                .password_workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            queue: self.password_queue,
        }
    }

    /// The per-device rate limits.
    pub fn rate_limits(&self) -> crate::rate_limit::RateLimitConfig {
        use crate::rate_limit::Limit;
        crate::rate_limit::RateLimitConfig {
            send: Limit {
                per_minute: self.rate_send_per_minute,
                burst: self.rate_send_burst,
            },
            typing: Limit {
                per_minute: self.rate_typing_per_minute,
                burst: self.rate_typing_burst,
            },
            create_conversation: Limit {
                per_minute: self.rate_conversations_per_minute,
                burst: self.rate_conversations_burst,
            },
        }
    }

    /// Whether this process runs its own MediaServer.
    /// The chat outbox's bounds.
    pub fn outbox_limits(&self) -> crate::outbox::OutboxLimits {
        crate::outbox::OutboxLimits {
            max_messages: self.outbox_max_messages,
            max_age_ms: i64::try_from(self.outbox_max_age_ms).unwrap_or(i64::MAX),
        }
    }

    pub fn media_embedded(&self) -> bool {
        self.media_embedded.unwrap_or(self.redis_url.is_none())
    }

    pub fn media_udp_addr(&self) -> anyhow::Result<SocketAddr> {
        self.media_udp.parse().map_err(|_| {
            anyhow::anyhow!(
                "UC_MEDIA_UDP must be host:port with an IP, not '{}'",
                self.media_udp
            )
        })
    }

    pub fn media_public_ip(&self) -> anyhow::Result<std::net::IpAddr> {
        match &self.media_public_ip {
            None => Ok(std::net::IpAddr::from([127, 0, 0, 1])),
            Some(text) => text.parse().map_err(|_| {
                anyhow::anyhow!("UC_MEDIA_PUBLIC_IP must be an IP address, not '{text}'")
            }),
        }
    }

    /// The MediaServers of `UC_MEDIA_SERVERS` as (id, control URL).
    pub fn configured_media(&self) -> anyhow::Result<Vec<(shared::MediaServerId, String)>> {
        self.media_servers
            .iter()
            .map(|entry| {
                let (id, url) = entry.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("UC_MEDIA_SERVERS entries are ID=URL, not '{entry}'")
                })?;
                shared::validate_name(id).map_err(|e| anyhow::anyhow!("UC_MEDIA_SERVERS: {e}"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!("UC_MEDIA_SERVERS: '{url}' is not an http(s) URL");
                }
                Ok((shared::MediaServerId::from(id), url.to_string()))
            })
            .collect()
    }

    pub fn server_id(&self) -> ServerId {
        ServerId::new(self.server_id.clone())
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "UC_LISTEN must be host:port with an IP, not '{}'",
                self.listen
            )
        })
    }

    /// The URL clients use; derived from the listen address when not set.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = if bound.ip().is_loopback() || bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            bound.ip().to_string()
        };
        format!("http://{host}:{}", bound.port())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("switchboard.db").display()))
    }

    /// The high-availability choice's settings.
    pub fn ownership(&self) -> crate::core::ownership::OwnershipConfig {
        crate::core::ownership::OwnershipConfig {
            fallback_delay_ms: self.fallback_delay_ms.map(|ms| ms as i64),
            any_server_backs_up: true,
        }
    }

    /// One line per setting, secrets masked, for the start-up log.
    pub fn describe(&self) -> String {
        let mask = |url: &str| mask_url(url);
        let limits = self.password_limits();
        format!(
            "server_id={} listen={} public_url={} database={} redis={} admin_password={} heartbeat_ms={} dead_after_ms={} redundancy_group={} fallback_delay_ms={} mdm_buffer_limit={} media_embedded={} media_secret={} ring_timeout_ms={} media_fresh_ms={} session_lifetime_ms={} trusted_proxies={} password_workers={} password_queue={} rate_send={}/min+{} rate_typing={}/min+{} rate_conversations={}/min+{} ldap={}",
            self.server_id,
            self.listen,
            self.public_url.as_deref().unwrap_or("(derived)"),
            mask(&self.database_url()),
            self.redis_url
                .as_deref()
                .map(mask)
                .unwrap_or_else(|| "(none: single node)".into()),
            if self.admin_password.is_some() {
                "***"
            } else {
                "(generated if needed)"
            },
            self.heartbeat_ms,
            self.dead_after_ms,
            self.redundancy_group
                .as_deref()
                .unwrap_or("(none: any server)"),
            self.fallback_delay_ms
                .map_or_else(|| "off".to_string(), |ms| ms.to_string()),
            self.mdm_buffer_limit,
            self.media_embedded(),
            if self.media_secret.is_some() {
                "***"
            } else {
                "(none)"
            },
            self.ring_timeout_ms,
            self.media_fresh_ms,
            self.session_lifetime_ms,
            if self.trusted_proxies.is_empty() {
                "(none)".to_string()
            } else {
                self.trusted_proxies.join(",")
            },
            limits.workers,
            limits.queue,
            self.rate_send_per_minute,
            self.rate_send_burst,
            self.rate_typing_per_minute,
            self.rate_typing_burst,
            self.rate_conversations_per_minute,
            self.rate_conversations_burst,
            self.ldap.describe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let path = std::env::temp_dir().join(format!("uc-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "server_id = \"from-file\"\nlisten = \"127.0.0.1:9000\"\nheartbeat_ms = 500\n",
        )
        .unwrap();
        let mut config: Config = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            (config.server_id.as_str(), config.heartbeat_ms),
            ("from-file", 500)
        );
        config
            .apply_env(|name| (name == "UC_SERVER_ID").then(|| "from-env".to_string()))
            .unwrap();
        assert_eq!(config.server_id, "from-env");
        assert_eq!(
            config.listen, "127.0.0.1:9000",
            "the file's value stays where the environment is silent"
        );
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let error = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("no_such_setting"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn environment_overrides_and_validation() {
        let mut config = Config::default();
        let env = |name: &str| match name {
            "UC_SERVER_ID" => Some("s2".to_string()),
            "UC_REDIS_URL" => Some("redis://user:hunter2pass@10.0.0.1:6379".to_string()),
            "UC_DATABASE_URL" => Some("postgres://uc:pw@db/uc".to_string()),
            "UC_MEDIA_SECRET" => Some("media-hunter2-media".to_string()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        config.validate().unwrap();
        assert_eq!(config.server_id, "s2");
        let described = config.describe();
        assert!(
            !described.contains("hunter2") && !described.contains(":pw@"),
            "{described}"
        );
        assert!(
            described.contains("redis://***@10.0.0.1:6379"),
            "{described}"
        );

        config
            .apply_env(|name| {
                (name == "UC_MEDIA_SERVERS")
                    .then(|| "m1=http://10.0.0.5:7100, m2=http://10.0.0.6:7100".to_string())
            })
            .unwrap();
        let media = config.configured_media().unwrap();
        assert_eq!(media.len(), 2);
        assert_eq!(
            (media[1].0.as_str(), media[1].1.as_str()),
            ("m2", "http://10.0.0.6:7100")
        );
        config.media_servers = vec!["m1:http://x".into()];
        assert!(config.validate().is_err());
        config.media_servers.clear();

        assert_eq!(
            mask_url("postgres://db.example/uc?user=uc&password=hunter2&sslmode=require"),
            "postgres://db.example/uc?user=uc&password=***&sslmode=require"
        );
        assert_eq!(
            mask_url("redis://:hunter2@r:6379/0"),
            "redis://***@r:6379/0"
        );
        assert_eq!(mask_url("sqlite:data/x.db"), "sqlite:data/x.db");
        config.database_url = Some("mysql://uc:hunter2@db/uc".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        config.database_url = None;

        config.redis_url = Some(
            "redis-sentinel://uc:hunter2@10.0.0.1:26379,10.0.0.2:26379/mymaster?sentinel_password=hunter2"
                .into(),
        );
        config.validate().unwrap();
        let described = config.describe();
        assert!(!described.contains("hunter2"), "{described}");
        assert!(
            described.contains(
                "redis-sentinel://***@10.0.0.1:26379,10.0.0.2:26379/mymaster?sentinel_password=***"
            ),
            "{described}"
        );
        config.redis_url = Some("redis-sentinel://uc:hunter2@10.0.0.1:26379".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("UC_REDIS_URL: a Sentinel URL names the service")
                && !error.contains("hunter2"),
            "{error}"
        );
        config.redis_url = None;

        config
            .apply_env(|name| {
                (name == "UC_TRUSTED_PROXIES").then(|| "127.0.0.1, 10.0.0.0/8".to_string())
            })
            .unwrap();
        assert!(
            config
                .trusted_proxies()
                .unwrap()
                .contains("10.9.8.7".parse().unwrap())
        );
        config.trusted_proxies = vec!["10.0.0.0/99".into()];
        assert!(config.validate().is_err());
        config.trusted_proxies.clear();

        config
            .apply_env(|name| (name == "UC_MEDIA_FRESH_MS").then(|| "1500".to_string()))
            .unwrap();
        config.validate().unwrap();
        assert!(config.describe().contains("media_fresh_ms=1500"));
        for out_of_range in ["500", "6000"] {
            config
                .apply_env(|name| (name == "UC_MEDIA_FRESH_MS").then(|| out_of_range.to_string()))
                .unwrap();
            assert!(config.validate().is_err(), "{out_of_range}");
        }
        config.media_fresh_ms = 2_000;

        config
            .apply_env(|name| (name == "UC_HEARTBEAT_MS").then(|| "soon".to_string()))
            .unwrap_err();
        config.server_id = "Bad Id".into();
        assert!(config.validate().is_err());
    }
}
