//! Channels (protocol v1.1): publish/subscribe between connections, with per-channel offsets,
//! epochs, history and recovery. The engine sits behind the [`Broker`] seam (`broker.rs`;
//! the in-memory engine in `memory/`, the Redis engine shared by processes in `redis/`); the
//! [`Hub`] fans the publications of the channels subscribed here out to the connections'
//! [`Inbox`]es, and ends their subscriptions when the broker reports a gap. The session layer
//! above speaks the requests; nothing here knows a connection's socket.

mod broker;
#[cfg(test)]
pub(crate) mod conformance;
mod hub;
mod inbox;
mod memory;
mod redis;
mod snapshot;

use std::sync::Arc;

pub use broker::{
    Broker, BrokerError, EpochId, History, NewPublication, Publication, StreamPosition,
};
#[cfg(test)]
pub use broker::{PublicationSink, SinkEvent};
pub use hub::{Hub, Slot, Subscriber};
pub use inbox::{Delivery, Inbox};
pub use memory::{EngineGauges, MemoryBroker, MemoryLimits};
pub use snapshot::ChannelsSnapshot;

use self::redis::{RedisBroker, RedisGauges, RedisSettings};
use crate::config::{BrokerKind, ChannelsConfig, RedisConfig};
use crate::metrics::{BrokerMetrics, ChannelMetrics};

/// The channels of the process: its broker and its hub.
pub struct Channels {
    pub broker: Arc<dyn Broker>,
    pub hub: Arc<Hub>,
}

impl Channels {
    /// Starts the configured engine and the hub (their tasks on the current runtime).
    pub fn start(
        config: &ChannelsConfig,
        redis: &RedisConfig,
        metrics: &ChannelMetrics,
        broker_metrics: &Arc<BrokerMetrics>,
    ) -> Channels {
        let shards = std::thread::available_parallelism().map_or(1, usize::from);
        let hub = Hub::start(shards, metrics.deliveries.clone());
        let broker: Arc<dyn Broker> = match config.broker {
            BrokerKind::Memory => MemoryBroker::start(
                MemoryLimits::from(config),
                EngineGauges {
                    channels: metrics.channels_active.clone(),
                    history_bytes: metrics.history_bytes.clone(),
                },
                hub.sink(),
            ),
            BrokerKind::Redis => RedisBroker::start(
                RedisSettings::from(redis),
                MemoryLimits::from(config),
                RedisGauges {
                    up: metrics.broker_up.clone(),
                    channels: metrics.channels_active.clone(),
                    metrics: Arc::clone(broker_metrics),
                },
                hub.sink(),
            ),
        };
        metrics.broker_up.set(i64::from(broker.is_up()));
        Channels { broker, hub }
    }
}

impl From<&RedisConfig> for RedisSettings {
    fn from(config: &RedisConfig) -> RedisSettings {
        RedisSettings {
            connection: config
                .connection_info()
                .expect("REDIS_URL was checked by the configuration"),
            key_prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            position_check_interval: config.position_check_interval,
        }
    }
}

impl From<&ChannelsConfig> for MemoryLimits {
    fn from(config: &ChannelsConfig) -> MemoryLimits {
        MemoryLimits {
            history_size: config.history_size,
            history_ttl: config.history_ttl,
            history_max_bytes: config.history_max_bytes,
            max_channels: config.max_channels,
        }
    }
}
