//! Server configuration: every setting read from its environment variable (or the matching
//! flag), validated all at once so that a bad deployment names every bad variable instead of
//! stopping at the first one, and never falls back silently to a default.

mod auth;
mod channels;
mod cli;
mod frames;
mod http;
mod origins;
mod redis;
mod validator;
mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

pub use self::redis::{RawRedisSettings, RedisConfig};
pub use auth::{AuthConfig, AuthKey, RawAuthSettings};
pub use channels::{BrokerKind, ChannelsConfig, RawChannelSettings};
pub use cli::{Cli, CliCommand, RawSettings};
pub use frames::{FrameLimits, RawFrameLimits};
pub use http::{HttpSettings, RawHttpSettings};
use origins::origins;
pub use origins::{AllowedOrigins, normalize_origin};
pub use validator::ConfigError;
use validator::Validator;
use values::{boolean, default_server_id, integer_in, log_filter, millis_in, proxies, server_id};

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub host: IpAddr,
    pub max_connections: u32,
    pub heartbeat_interval: Duration,
    pub connection_timeout: Duration,
    pub log_level: String,
    pub max_message_bytes: usize,
    pub rate_limit_msgs_per_sec: u32,
    pub max_connections_per_ip: u32,
    pub allowed_origins: AllowedOrigins,
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_timeout: Duration,
    pub metrics_addr: SocketAddr,
    pub server_id: String,
    pub enable_echo: bool,
    pub hsts_max_age: u64,
    pub outbound_queue_bytes: usize,
    pub http_idle_timeout: Duration,
    /// The HTTP surface before the upgrade: head size, pending caps, client grouping, origin.
    pub http: HttpSettings,
    pub frames: FrameLimits,
    pub channels: ChannelsConfig,
    /// The Redis engine's settings (used with `BROKER=redis`).
    pub redis: RedisConfig,
    pub auth: AuthConfig,
}

impl Config {
    /// Validates every setting; on failure returns one error per bad variable.
    pub fn from_raw(raw: &RawSettings) -> Result<Config, Vec<ConfigError>> {
        let mut v = Validator { errors: Vec::new() };
        let port = v.check("PORT", &raw.port, integer_in(0u16, u16::MAX));
        let host = v.check("HOST", &raw.host, |s| {
            s.parse::<IpAddr>()
                .map_err(|_| "expected an IP address".into())
        });
        let max_connections = v.check(
            "MAX_CONNECTIONS",
            &raw.max_connections,
            integer_in(1u32, 1_000_000),
        );
        let heartbeat_interval = v.check(
            "HEARTBEAT_INTERVAL",
            &raw.heartbeat_interval,
            millis_in(10, 3_600_000),
        );
        let connection_timeout = v.check(
            "CONNECTION_TIMEOUT",
            &raw.connection_timeout,
            millis_in(10, 86_400_000),
        );
        let log_level = v.check("LOG_LEVEL", &raw.log_level, log_filter);
        let max_message_bytes = v.check(
            "MAX_MESSAGE_BYTES",
            &raw.max_message_bytes,
            integer_in(64usize, 16 << 20),
        );
        let rate = v.check(
            "RATE_LIMIT_MSGS_PER_SEC",
            &raw.rate_limit_msgs_per_sec,
            integer_in(0u32, 1_000_000),
        );
        let per_ip = v.check(
            "MAX_CONNECTIONS_PER_IP",
            &raw.max_connections_per_ip,
            integer_in(0u32, 1_000_000),
        );
        let allowed_origins = v.check("ALLOWED_ORIGINS", &raw.allowed_origins, origins);
        let trusted_proxies = v.check("TRUSTED_PROXIES", &raw.trusted_proxies, proxies);
        let shutdown_timeout = v.check(
            "SHUTDOWN_TIMEOUT",
            &raw.shutdown_timeout,
            // Below a second the drain's own waits (docs/configuration.md) have no room.
            millis_in(1000, 3_600_000),
        );
        let metrics_addr = v.check("METRICS_ADDR", &raw.metrics_addr, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected IP:PORT, for example 127.0.0.1:9464".into())
        });
        let server_id = match &raw.server_id {
            Some(id) => v.check("SERVER_ID", id, server_id),
            None => Some(default_server_id()),
        };
        let enable_echo = v.check("ENABLE_ECHO", &raw.enable_echo, boolean);
        let hsts_max_age = v.check("HSTS_MAX_AGE", &raw.hsts_max_age, integer_in(0u64, 1 << 31));
        let outbound_queue_bytes = v.check(
            "OUTBOUND_QUEUE_BYTES",
            &raw.outbound_queue_bytes,
            integer_in(1024usize, 1 << 30),
        );
        let http_idle_timeout = v.check(
            "HTTP_IDLE_TIMEOUT",
            &raw.http_idle_timeout,
            millis_in(100, 3_600_000),
        );
        let http = HttpSettings::check(&raw.http, &mut v);
        let frames = FrameLimits::check(&raw.frames, &mut v);
        let channels = ChannelsConfig::check(&raw.channels, &mut v);
        let uses_redis = matches!(&channels, Some(c) if c.broker == BrokerKind::Redis);
        let redis = RedisConfig::check(&raw.redis, uses_redis, &mut v);
        let (key_variable, key_file, read_key) = auth::key_setting(&raw.auth);
        let auth_key = v.check(key_variable, key_file, read_key);
        let auth_timeout = v.check("AUTH_TIMEOUT", &raw.auth.auth_timeout, auth::timeout);

        if !v.errors.is_empty() {
            return Err(v.errors);
        }
        // Every `None` above pushed an error, so all are `Some` here.
        let config = (|| {
            Some(Config {
                port: port?,
                host: host?,
                max_connections: max_connections?,
                heartbeat_interval: heartbeat_interval?,
                connection_timeout: connection_timeout?,
                log_level: log_level?,
                max_message_bytes: max_message_bytes?,
                rate_limit_msgs_per_sec: rate?,
                max_connections_per_ip: per_ip?,
                allowed_origins: allowed_origins?,
                trusted_proxies: trusted_proxies?,
                shutdown_timeout: shutdown_timeout?,
                metrics_addr: metrics_addr?,
                server_id: server_id?,
                enable_echo: enable_echo?,
                hsts_max_age: hsts_max_age?,
                outbound_queue_bytes: outbound_queue_bytes?,
                http_idle_timeout: http_idle_timeout?,
                http: http?,
                frames: frames?,
                channels: channels?,
                redis: redis?,
                auth: AuthConfig {
                    key: auth_key?,
                    timeout: auth_timeout?,
                },
            })
        })();
        Ok(config.expect("every missing value was reported as an error"))
    }

    /// Public listener address when not socket-activated.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

impl fmt::Display for Config {
    /// One `VARIABLE=value` line per setting, in the units of the variables.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins = match &self.allowed_origins {
            AllowedOrigins::SameOrigin => String::new(),
            AllowedOrigins::Any => "*".into(),
            AllowedOrigins::List(list) => list.join(","),
        };
        let proxies: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        writeln!(f, "PORT={}", self.port)?;
        writeln!(f, "HOST={}", self.host)?;
        writeln!(f, "MAX_CONNECTIONS={}", self.max_connections)?;
        writeln!(
            f,
            "HEARTBEAT_INTERVAL={}",
            self.heartbeat_interval.as_millis()
        )?;
        writeln!(
            f,
            "CONNECTION_TIMEOUT={}",
            self.connection_timeout.as_millis()
        )?;
        writeln!(f, "LOG_LEVEL={}", self.log_level)?;
        writeln!(f, "MAX_MESSAGE_BYTES={}", self.max_message_bytes)?;
        writeln!(
            f,
            "RATE_LIMIT_MSGS_PER_SEC={}",
            self.rate_limit_msgs_per_sec
        )?;
        writeln!(f, "MAX_CONNECTIONS_PER_IP={}", self.max_connections_per_ip)?;
        writeln!(f, "ALLOWED_ORIGINS={origins}")?;
        writeln!(f, "TRUSTED_PROXIES={}", proxies.join(","))?;
        writeln!(f, "SHUTDOWN_TIMEOUT={}", self.shutdown_timeout.as_millis())?;
        writeln!(f, "METRICS_ADDR={}", self.metrics_addr)?;
        writeln!(f, "SERVER_ID={}", self.server_id)?;
        writeln!(f, "ENABLE_ECHO={}", self.enable_echo)?;
        writeln!(f, "HSTS_MAX_AGE={}", self.hsts_max_age)?;
        writeln!(f, "OUTBOUND_QUEUE_BYTES={}", self.outbound_queue_bytes)?;
        writeln!(
            f,
            "HTTP_IDLE_TIMEOUT={}",
            self.http_idle_timeout.as_millis()
        )?;
        write!(f, "{}", self.http)?;
        write!(f, "{}", self.frames)?;
        write!(f, "{}", self.channels)?;
        write!(f, "{}", self.redis)?;
        write!(f, "{}", self.auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, Vec<ConfigError>> {
        let mut argv = vec!["concurrent-socket"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        Config::from_raw(&cli.settings)
    }

    #[test]
    fn defaults_match_the_original_design() {
        let c = parse(&["--server-id", "t"]).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.host, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.connection_timeout, Duration::from_secs(300));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.max_message_bytes, 65_536);
        assert_eq!(c.allowed_origins, AllowedOrigins::SameOrigin);
        assert_eq!(c.metrics_addr, "127.0.0.1:9464".parse().unwrap());
        assert!(!c.enable_echo);
        assert_eq!(
            c.frames,
            FrameLimits {
                frames_per_sec: 1000,
                max_fragments: 64,
                fragment_timeout: Duration::from_secs(10),
            }
        );
    }

    #[test]
    fn a_shutdown_timeout_below_a_second_is_refused() {
        let errors = parse(&["--shutdown-timeout", "999", "--max-fragments", "1"]).unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.variable).collect();
        assert_eq!(names, ["SHUTDOWN_TIMEOUT", "MAX_FRAGMENTS"]);
        assert!(parse(&["--shutdown-timeout", "1000"]).is_ok());
    }

    #[test]
    fn every_bad_variable_is_named() {
        let errors = parse(&[
            "--port",
            "70000",
            "--heartbeat-interval",
            "soon",
            "--enable-echo",
            "maybe",
            "--server-id",
            "a b",
        ])
        .unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.variable).collect();
        assert_eq!(
            names,
            ["PORT", "HEARTBEAT_INTERVAL", "SERVER_ID", "ENABLE_ECHO"]
        );
        assert!(errors[0].to_string().contains("70000"));
    }

    #[test]
    fn origins_and_proxies_parse() {
        let c = parse(&[
            "--allowed-origins",
            "https://A.example/, http://b.example:8080",
            "--trusted-proxies",
            "10.0.0.0/8, ::1",
        ])
        .unwrap();
        assert_eq!(
            c.allowed_origins,
            AllowedOrigins::List(vec![
                "https://a.example".into(),
                "http://b.example:8080".into()
            ])
        );
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(parse(&["--allowed-origins", "*, https://x"]).is_err());
        assert!(parse(&["--trusted-proxies", "10.0.0.0/33"]).is_err());
        assert_eq!(
            parse(&["--allowed-origins", "*"]).unwrap().allowed_origins,
            AllowedOrigins::Any
        );
    }

    #[test]
    fn channels_settings_parse_and_redis_is_checked_only_when_chosen() {
        let c = parse(&[]).unwrap().channels;
        assert_eq!(c.broker, BrokerKind::Memory);
        assert_eq!((c.history_size, c.history_max_bytes), (100, 256 << 20));
        assert_eq!(c.history_ttl, Duration::from_secs(300));
        assert_eq!(
            (c.max_subscriptions_per_connection, c.max_channels),
            (128, 100_000)
        );
        let errors = parse(&["--broker", "kafka", "--history-size=-1"]).unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.variable).collect();
        assert_eq!(names, ["BROKER", "HISTORY_SIZE"]);
        assert!(
            parse(&["--redis-url", "nonsense"]).is_ok(),
            "memory: not used"
        );
        let errors = parse(&["--broker", "redis", "--redis-url", "nonsense"]).unwrap_err();
        assert_eq!(errors[0].variable, "REDIS_URL");
        let redis = parse(&["--broker", "redis"]).unwrap();
        assert_eq!(redis.channels.broker, BrokerKind::Redis);
        let text = redis.to_string();
        assert!(text.contains("BROKER=redis\n") && text.contains("REDIS_KEY_PREFIX=cs\n"));
        let text = parse(&["--history-ttl", "1000"]).unwrap().to_string();
        assert!(text.contains("BROKER=memory\n") && text.contains("HISTORY_TTL=1000\n"));
    }

    #[test]
    fn log_level_is_validated() {
        assert!(parse(&["--log-level", "debug,hyper=warn"]).is_ok());
        assert_eq!(
            parse(&["--log-level", "=[bad"]).unwrap_err()[0].variable,
            "LOG_LEVEL"
        );
    }

    #[test]
    fn effective_configuration_round_trips_through_display() {
        let c = parse(&["--server-id", "blue", "--port", "4000"]).unwrap();
        let text = c.to_string();
        assert!(text.contains("PORT=4000\n"));
        assert!(text.contains("SERVER_ID=blue\n"));
    }
}
