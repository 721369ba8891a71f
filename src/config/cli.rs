//! The command line: the optional `check-config` subcommand and one flag per setting, each
//! also read from its environment variable, kept as text for `Config::from_raw` to validate.

use clap::{Args, Parser, Subcommand};

use super::frames::RawFrameLimits;

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
    /// Milliseconds from SIGTERM to exit, at least 1000; goodbyes are spread over the first half
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
    #[command(flatten)]
    pub http: super::http::RawHttpSettings,
    #[command(flatten)]
    pub frames: RawFrameLimits,
    #[command(flatten)]
    pub channels: super::channels::RawChannelSettings,
    #[command(flatten)]
    pub redis: super::redis::RawRedisSettings,
    #[command(flatten)]
    pub auth: super::auth::RawAuthSettings,
}
