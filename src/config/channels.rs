//! The channels' settings (protocol v1.1): the broker engine, history bounds and the limits
//! of subscriptions and channels.

use std::fmt;
use std::time::Duration;

use clap::Args;

use super::validator::Validator;
use super::values::{integer_in, millis_in};

/// Which engine holds the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// In this process.
    Memory,
    /// In Redis, shared by every process on it (`RedisConfig`).
    Redis,
}

/// The channels' settings as text, exactly as given.
#[derive(Debug, Clone, Args)]
pub struct RawChannelSettings {
    /// Channels engine: `memory` (in-process) or `redis` (shared through REDIS_URL)
    #[arg(long, env = "BROKER", default_value = "memory")]
    pub broker: String,
    /// Publications kept per channel for recovery (0 = no history)
    #[arg(long, env = "HISTORY_SIZE", default_value = "100")]
    pub history_size: String,
    /// Milliseconds a channel's history is kept after its last publication
    #[arg(long, env = "HISTORY_TTL", default_value = "300000")]
    pub history_ttl: String,
    /// Bytes of history in the whole process; when full the oldest publications go first
    #[arg(long, env = "HISTORY_MAX_BYTES", default_value = "268435456")]
    pub history_max_bytes: String,
    /// Subscriptions one connection may hold
    #[arg(long, env = "MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value = "128")]
    pub max_subscriptions_per_connection: String,
    /// Channels alive in the process; beyond it a new channel is refused
    #[arg(long, env = "MAX_CHANNELS", default_value = "100000")]
    pub max_channels: String,
}

/// The validated channels' settings.
#[derive(Debug, Clone)]
pub struct ChannelsConfig {
    pub broker: BrokerKind,
    pub history_size: usize,
    pub history_ttl: Duration,
    pub history_max_bytes: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_channels: usize,
}

fn broker(s: &str) -> Result<BrokerKind, String> {
    match s {
        "memory" => Ok(BrokerKind::Memory),
        "redis" => Ok(BrokerKind::Redis),
        _ => Err("expected memory or redis".into()),
    }
}

impl ChannelsConfig {
    pub(super) fn check(raw: &RawChannelSettings, v: &mut Validator) -> Option<ChannelsConfig> {
        let broker = v.check("BROKER", &raw.broker, broker);
        let history_size = v.check("HISTORY_SIZE", &raw.history_size, integer_in(0, 1_000_000));
        let history_ttl = v.check("HISTORY_TTL", &raw.history_ttl, millis_in(1, 604_800_000));
        let history_max_bytes = v.check(
            "HISTORY_MAX_BYTES",
            &raw.history_max_bytes,
            integer_in(0, 1 << 40),
        );
        let max_subscriptions_per_connection = v.check(
            "MAX_SUBSCRIPTIONS_PER_CONNECTION",
            &raw.max_subscriptions_per_connection,
            integer_in(0, 65_536),
        );
        let max_channels = v.check(
            "MAX_CHANNELS",
            &raw.max_channels,
            integer_in(1, 100_000_000),
        );
        Some(ChannelsConfig {
            broker: broker?,
            history_size: history_size?,
            history_ttl: history_ttl?,
            history_max_bytes: history_max_bytes?,
            max_subscriptions_per_connection: max_subscriptions_per_connection?,
            max_channels: max_channels?,
        })
    }
}

impl fmt::Display for ChannelsConfig {
    /// One `VARIABLE=value` line per setting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let broker = match self.broker {
            BrokerKind::Memory => "memory",
            BrokerKind::Redis => "redis",
        };
        writeln!(f, "BROKER={broker}")?;
        writeln!(f, "HISTORY_SIZE={}", self.history_size)?;
        writeln!(f, "HISTORY_TTL={}", self.history_ttl.as_millis())?;
        writeln!(f, "HISTORY_MAX_BYTES={}", self.history_max_bytes)?;
        writeln!(
            f,
            "MAX_SUBSCRIPTIONS_PER_CONNECTION={}",
            self.max_subscriptions_per_connection
        )?;
        writeln!(f, "MAX_CHANNELS={}", self.max_channels)
    }
}
