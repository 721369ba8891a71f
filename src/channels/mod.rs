//! Channels (protocol v1.1): publish/subscribe between connections, with per-channel offsets,
//! epochs, history and recovery. The engine sits behind the [`Broker`] seam (`broker.rs`;
//! the in-memory engine in `memory.rs`, Redis with issue 17); the [`Hub`] fans the
//! publications of the channels subscribed here out to the connections' [`Inbox`]es. The
//! session layer above speaks the requests; nothing here knows a connection's socket.

mod broker;
#[cfg(test)]
pub(crate) mod conformance;
mod hub;
mod inbox;
mod memory;

use std::sync::Arc;

#[cfg(test)]
pub use broker::PublicationSink;
pub use broker::{Broker, BrokerError, NewPublication, Publication, StreamPosition};
pub use hub::{Hub, Slot, Subscriber};
pub use inbox::{Delivery, Inbox};
pub use memory::{EngineGauges, MemoryBroker, MemoryLimits};

use crate::config::{BrokerKind, ChannelsConfig};
use crate::metrics::ChannelMetrics;

/// The channels of the process: its broker and its hub.
pub struct Channels {
    pub broker: Arc<dyn Broker>,
    pub hub: Arc<Hub>,
}

impl Channels {
    /// Starts the configured engine and the hub (their tasks on the current runtime).
    pub fn start(config: &ChannelsConfig, metrics: &ChannelMetrics) -> Channels {
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
        };
        metrics.broker_up.set(i64::from(broker.is_up()));
        Channels { broker, hub }
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
