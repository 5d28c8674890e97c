//! MediaServer configuration: read once at start from an optional TOML file, then overridden by
//! `UC_MEDIA_*` environment variables, validated, and printed with the secret masked.
//!
//! The environment is passed in as a lookup function so that loading is testable without
//! touching the process environment.

use serde::Deserialize;
use shared::MediaServerId;
use shared::url::{RedisUrl, mask_url};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Everything a MediaServer needs to know at start. Built by [`MediaConfig::load`] or by hand
/// (for the embedded form and tests).
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// This server's id (`UC_MEDIA_ID`). Default `media-1`.
    pub id: MediaServerId,
    /// Address of the HTTP control API (`UC_MEDIA_LISTEN`). Default `127.0.0.1:7100`.
    pub control_listen: SocketAddr,
    /// Base URL of the control API as other servers reach it (`UC_MEDIA_CONTROL_URL`).
    /// Default: `http://` + the listen address, with the public IP when listening on all
    /// addresses.
    pub control_url: Option<String>,
    /// Bind address of the one UDP socket that carries all media (`UC_MEDIA_UDP`).
    /// Default `0.0.0.0:7200`; port 0 picks a free port.
    pub media_bind: SocketAddr,
    /// Address put into ICE candidates (`UC_MEDIA_PUBLIC_IP`). Default: the bind address, or
    /// 127.0.0.1 when the bind address is unspecified (0.0.0.0 / ::).
    pub public_ip: Option<IpAddr>,
    /// Redis for the heartbeat and event publishing (`UC_REDIS_URL`). None: no Redis.
    pub redis_url: Option<String>,
    /// Bearer secret of the control API (`UC_MEDIA_SECRET`). Required by [`crate::run`];
    /// the embedded form has no HTTP surface and needs none.
    pub secret: Option<String>,
    /// Most legs (peer connections) accepted at once (`UC_MEDIA_CAPACITY`). Default 500.
    pub capacity: u32,
    /// How long a new leg may take to get ICE and DTLS up before it is failed
    /// (`UC_MEDIA_CONNECT_TIMEOUT_MS`). Default 30 s.
    pub connect_timeout: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            id: MediaServerId::from("media-1"),
            control_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7100)),
            control_url: None,
            media_bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7200)),
            public_ip: None,
            redis_url: None,
            secret: None,
            capacity: 500,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for the MediaServer: {message}")]
    ParseFile { path: String, message: String },
    #[error("{name}='{value}' is not valid: {reason}")]
    InvalidValue {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "UC_MEDIA_SECRET is required for a standalone MediaServer (the control API's bearer secret)"
    )]
    MissingSecret,
    #[error("UC_MEDIA_SECRET must be at least 16 characters")]
    SecretTooShort,
}

/// The optional TOML file: the same settings as the environment, in lower case without the
/// `UC_MEDIA_` prefix (`redis_url` for `UC_REDIS_URL`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<String>,
    listen: Option<String>,
    control_url: Option<String>,
    udp: Option<String>,
    public_ip: Option<String>,
    redis_url: Option<String>,
    secret: Option<String>,
    capacity: Option<u32>,
    connect_timeout_ms: Option<u64>,
}

impl MediaConfig {
    /// Loads the file (if any), then the environment through `env`, and validates.
    /// `require_secret` is true for the standalone server.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        require_secret: bool,
    ) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.display().to_string(),
                        source,
                    })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::ParseFile {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let pick = |name: &str, file_value: Option<String>| -> Option<String> {
            env(name).filter(|v| !v.trim().is_empty()).or(file_value)
        };

        let mut config = MediaConfig::default();
        if let Some(id) = pick("UC_MEDIA_ID", from_file.id) {
            shared::validate_name(&id).map_err(|e| ConfigError::InvalidValue {
                name: "UC_MEDIA_ID",
                value: id.clone(),
                reason: e.to_string(),
            })?;
            config.id = MediaServerId::new(id);
        }
        if let Some(listen) = pick("UC_MEDIA_LISTEN", from_file.listen) {
            config.control_listen = parse_socket_addr("UC_MEDIA_LISTEN", &listen)?;
        }
        config.control_url = pick("UC_MEDIA_CONTROL_URL", from_file.control_url);
        if let Some(udp) = pick("UC_MEDIA_UDP", from_file.udp) {
            config.media_bind = parse_socket_addr("UC_MEDIA_UDP", &udp)?;
        }
        if let Some(ip) = pick("UC_MEDIA_PUBLIC_IP", from_file.public_ip) {
            let parsed = ip
                .trim()
                .parse::<IpAddr>()
                .map_err(|e| ConfigError::InvalidValue {
                    name: "UC_MEDIA_PUBLIC_IP",
                    value: ip.clone(),
                    reason: e.to_string(),
                })?;
            config.public_ip = Some(parsed);
        }
        config.redis_url = pick("UC_REDIS_URL", from_file.redis_url);
        config.secret = pick("UC_MEDIA_SECRET", from_file.secret);
        let capacity_text = env("UC_MEDIA_CAPACITY").filter(|v| !v.trim().is_empty());
        if let Some(text) = capacity_text {
            config.capacity = parse_number("UC_MEDIA_CAPACITY", &text)? as u32;
        } else if let Some(capacity) = from_file.capacity {
            config.capacity = capacity;
        }
        let timeout_text = env("UC_MEDIA_CONNECT_TIMEOUT_MS").filter(|v| !v.trim().is_empty());
        if let Some(text) = timeout_text {
            config.connect_timeout =
                Duration::from_millis(parse_number("UC_MEDIA_CONNECT_TIMEOUT_MS", &text)?);
        } else if let Some(ms) = from_file.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        config.validate(require_secret)?;
        Ok(config)
    }

    /// Checks the values that have rules beyond their type.
    pub fn validate(&self, require_secret: bool) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.capacity > 100_000 {
            return Err(ConfigError::InvalidValue {
                name: "UC_MEDIA_CAPACITY",
                value: self.capacity.to_string(),
                reason: "use 1 to 100000 legs".into(),
            });
        }
        if self.connect_timeout < Duration::from_millis(500) {
            return Err(ConfigError::InvalidValue {
                name: "UC_MEDIA_CONNECT_TIMEOUT_MS",
                value: self.connect_timeout.as_millis().to_string(),
                reason: "use at least 500 ms".into(),
            });
        }
        if let Some(ip) = self.public_ip
            && ip.is_unspecified()
        {
            return Err(ConfigError::InvalidValue {
                name: "UC_MEDIA_PUBLIC_IP",
                value: ip.to_string(),
                reason: "clients cannot send to an unspecified address".into(),
            });
        }
        if let Some(url) = &self.redis_url
            && let Err(error) = RedisUrl::parse(url)
        {
            return Err(ConfigError::InvalidValue {
                name: "UC_REDIS_URL",
                value: mask_url(url),
                reason: error.to_string(),
            });
        }
        match &self.secret {
            None if require_secret => return Err(ConfigError::MissingSecret),
            Some(secret) if secret.len() < 16 => return Err(ConfigError::SecretTooShort),
            _ => {}
        }
        Ok(())
    }

    /// The IP put into ICE candidates.
    pub fn advertised_ip(&self) -> IpAddr {
        match self.public_ip {
            Some(ip) => ip,
            None if self.media_bind.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.media_bind.ip(),
        }
    }

    /// The control URL announced in the heartbeat, given the address actually bound.
    pub fn announced_control_url(&self, bound: Option<SocketAddr>) -> String {
        if let Some(url) = &self.control_url {
            return url.clone();
        }
        let Some(mut addr) = bound else {
            return "embedded".to_string();
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(self.advertised_ip());
        }
        format!("http://{addr}")
    }
}

fn parse_socket_addr(name: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim()
        .parse::<SocketAddr>()
        .map_err(|e| ConfigError::InvalidValue {
            name,
            value: text.to_string(),
            reason: format!("{e} (expected ip:port)"),
        })
}

fn parse_number(name: &'static str, text: &str) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<u64>()
        .map_err(|e| ConfigError::InvalidValue {
            name,
            value: text.to_string(),
            reason: e.to_string(),
        })
}

/// Prints the configuration for the start-up log; the secret and Redis password are masked.
impl fmt::Display for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = match &self.secret {
            Some(_) => "***",
            None => "(none)",
        };
        let redis = self
            .redis_url
            .as_deref()
            .map(mask_url)
            .unwrap_or_else(|| "(none)".into());
        write!(
            f,
            "id={} listen={} control_url={} udp={} public_ip={} redis={} secret={} capacity={} connect_timeout_ms={}",
            self.id,
            self.control_listen,
            self.control_url.as_deref().unwrap_or("(derived)"),
            self.media_bind,
            self.advertised_ip(),
            redis,
            secret,
            self.capacity,
            self.connect_timeout.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_and_secret_is_required_standalone() {
        let err = MediaConfig::load(None, env_of(&[]), true).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSecret));
        let config = MediaConfig::load(None, env_of(&[]), false).unwrap();
        assert_eq!(config.id.as_str(), "media-1");
        assert_eq!(config.control_listen.to_string(), "127.0.0.1:7100");
        assert_eq!(config.media_bind.to_string(), "0.0.0.0:7200");
        assert_eq!(config.advertised_ip().to_string(), "127.0.0.1");
        assert_eq!(config.capacity, 500);
    }

    #[test]
    fn environment_overrides_file_and_is_validated() {
        let dir = std::env::temp_dir().join(format!("media-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("media.toml");
        std::fs::write(
            &path,
            "id = \"media-file\"\ncapacity = 7\nudp = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let config = MediaConfig::load(
            Some(&path),
            env_of(&[
                ("UC_MEDIA_ID", "media-env"),
                ("UC_MEDIA_SECRET", "0123456789abcdef"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(config.id.as_str(), "media-env");
        assert_eq!(config.capacity, 7);
        assert_eq!(config.media_bind.to_string(), "127.0.0.1:0");
        assert!(!config.to_string().contains("0123456789abcdef"));

        let bad = MediaConfig::load(None, env_of(&[("UC_MEDIA_CAPACITY", "lots")]), false);
        assert!(matches!(
            bad,
            Err(ConfigError::InvalidValue {
                name: "UC_MEDIA_CAPACITY",
                ..
            })
        ));
        let bad = MediaConfig::load(None, env_of(&[("UC_MEDIA_UDP", "7200")]), false);
        assert!(matches!(
            bad,
            Err(ConfigError::InvalidValue {
                name: "UC_MEDIA_UDP",
                ..
            })
        ));
        let short = MediaConfig::load(None, env_of(&[("UC_MEDIA_SECRET", "short")]), true);
        assert!(matches!(short, Err(ConfigError::SecretTooShort)));
    }

    #[test]
    fn redis_password_is_masked() {
        assert_eq!(mask_url("redis://u:pw@h:6379"), "redis://***@h:6379");
        assert_eq!(mask_url("redis://h:6379"), "redis://h:6379");
        let mut config = MediaConfig {
            redis_url: Some(
                "redis-sentinel://u:hunter2@h:26379/mymaster?sentinel_password=hunter2".into(),
            ),
            ..MediaConfig::default()
        };
        config.validate(false).unwrap();
        let shown = config.to_string();
        assert!(
            !shown.contains("hunter2")
                && shown.contains("redis-sentinel://***@h:26379/mymaster?sentinel_password=***"),
            "{shown}"
        );
        config.redis_url = Some("redis-sentinel://u:hunter2@h:26379".into());
        let error = config.validate(false).unwrap_err().to_string();
        assert!(
            error.contains("names the service") && !error.contains("hunter2"),
            "{error}"
        );
    }
}
