//! Server configuration: every setting read from its environment variable (or the matching
//! flag), validated all at once so that a bad deployment names every bad variable instead of
//! stopping at the first one, and never falls back silently to a default.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use tracing_subscriber::EnvFilter;

/// Command line: `concurrent-socket [FLAGS] [check-config]`.
#[derive(Debug, Parser)]
#[command(name = "concurrent-socket", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    #[command(flatten)]
    pub settings: RawSettings,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum CliCommand {
    /// Print the effective configuration, or name every bad variable and exit 1.
    CheckConfig,
}

/// The settings as text, exactly as given; `Config::from_raw` validates them.
#[derive(Debug, Clone, Args)]
pub struct RawSettings {
    /// Public listener port, 0 = any free port (ignored under socket activation)
    #[arg(long, env = "PORT", default_value = "3001")]
    pub port: String,
    /// Public listener address
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Hard cap of open WebSockets; at the cap upgrades get 503 + Retry-After
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: String,
    /// Milliseconds between heartbeat messages and pings; silent for two intervals = dead
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "30000")]
    pub heartbeat_interval: String,
    /// Milliseconds without any client message before `goodbye idle_timeout`
    #[arg(long, env = "CONNECTION_TIMEOUT", default_value = "300000")]
    pub connection_timeout: String,
    /// Log filter: `info`, `debug`, or a full EnvFilter directive
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Largest accepted client message, in bytes
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value = "65536")]
    pub max_message_bytes: String,
    /// Messages per second per connection (0 = no limit)
    #[arg(long, env = "RATE_LIMIT_MSGS_PER_SEC", default_value = "100")]
    pub rate_limit_msgs_per_sec: String,
    /// Open WebSockets per client IP (0 = no limit)
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value = "1000")]
    pub max_connections_per_ip: String,
    /// Comma list of origins allowed to upgrade; empty = same origin as Host; `*` = any
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Comma list of IPs or CIDRs whose X-Forwarded-For is believed
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Milliseconds from SIGTERM to exit; goodbyes are spread over the first half
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10000")]
    pub shutdown_timeout: String,
    /// Prometheus listener address (ignored when systemd passes a `metrics` socket)
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Sent as serverId and as the metrics label server_id (default: the hostname)
    #[arg(long, env = "SERVER_ID")]
    pub server_id: Option<String>,
    /// Serve /ws/echo (for conformance suites)
    #[arg(long, env = "ENABLE_ECHO", default_value = "false")]
    pub enable_echo: String,
    /// Seconds for Strict-Transport-Security; 0 = no header
    #[arg(long, env = "HSTS_MAX_AGE", default_value = "0")]
    pub hsts_max_age: String,
    /// Bytes of answers queued for one connection before it is closed as a slow consumer
    #[arg(long, env = "OUTBOUND_QUEUE_BYTES", default_value = "1048576")]
    pub outbound_queue_bytes: String,
    /// Milliseconds an HTTP connection may wait for request headers (idle keep-alive included)
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "100000")]
    pub http_idle_timeout: String,
}

/// Which browser origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Only an `Origin` whose host equals the request's `Host` header.
    SameOrigin,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`, lower-cased).
    List(Vec<String>),
}

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
}

/// One bad variable: its name, the value given, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.variable, self.value, self.problem)
    }
}

/// Collects the errors of every variable while parsing them one after the other.
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn check<T>(
        &mut self,
        variable: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.trim()) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.errors.push(ConfigError {
                    variable,
                    value: value.to_owned(),
                    problem,
                });
                None
            }
        }
    }
}

fn integer_in<T>(min: T, max: T) -> impl FnOnce(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    move |s| match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

fn millis_in(min: u64, max: u64) -> impl FnOnce(&str) -> Result<Duration, String> {
    move |s| {
        integer_in(min, max)(s)
            .map(Duration::from_millis)
            .map_err(|e| format!("{e} (milliseconds)"))
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn log_filter(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "expected a level (error, warn, info, debug, trace) or an EnvFilter directive".into(),
        );
    }
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a valid log filter: {e}"))
}

fn comma_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// Parses `scheme://host[:port]` and returns it lower-cased, without a trailing slash.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = matches!(scheme, "http" | "https");
    let authority_ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
    (scheme_ok && authority_ok).then_some(origin)
}

fn origins(s: &str) -> Result<AllowedOrigins, String> {
    if s.is_empty() {
        return Ok(AllowedOrigins::SameOrigin);
    }
    if s == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for item in comma_list(s) {
        match normalize_origin(item) {
            Some(origin) => list.push(origin),
            None => {
                return Err(format!(
                    "{item:?} is not an origin like https://example.com[:port], and `*` must stand alone"
                ));
            }
        }
    }
    Ok(AllowedOrigins::List(list))
}

fn proxies(s: &str) -> Result<Vec<IpNet>, String> {
    comma_list(s)
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))
        })
        .collect()
}

fn server_id(s: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(s.to_owned())
    } else {
        Err("expected 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
    }
}

/// The machine's hostname, cut to a valid server id.
fn default_server_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "concurrent-socket".into()
    } else {
        cleaned
    }
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
            millis_in(100, 3_600_000),
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
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
