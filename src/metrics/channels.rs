//! The channels' series (protocol v1.1): publications, deliveries, subscriptions, channels,
//! history, recoveries, why subscriptions ended, and whether the broker takes work. Each
//! exists from start-up, at 0 for every label value.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::children::{Children, register};
use crate::label::labels;

labels! {
    /// What became of a `publish` (`websocket_publications_total{result}`).
    pub enum PublishResult {
        Accepted = "accepted",
        Refused = "refused",
    }
}

labels! {
    /// How a `subscribe` with `recover` ended (`websocket_recoveries_total{outcome}`).
    pub enum RecoveryOutcome {
        Recovered = "recovered",
        NotRecovered = "not_recovered",
    }
}

labels! {
    /// Why a subscription ended (`websocket_subscription_ends_total{reason}`).
    pub enum SubscriptionEnd {
        Unsubscribe = "unsubscribe",
        Disconnect = "disconnect",
        InsufficientState = "insufficient_state",
    }
}

/// The channels' metrics.
pub struct ChannelMetrics {
    publications: Children<PublishResult>,
    pub deliveries: IntCounter,
    pub subscriptions_active: IntGauge,
    pub channels_active: IntGauge,
    pub history_bytes: IntGauge,
    recoveries: Children<RecoveryOutcome>,
    ends: Children<SubscriptionEnd>,
    pub broker_up: IntGauge,
}

impl ChannelMetrics {
    pub(super) fn new(registry: &Registry) -> ChannelMetrics {
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid gauge"))
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter"),
            )
        };
        ChannelMetrics {
            publications: Children::new(
                &counter_vec(
                    "websocket_publications_total",
                    "Channel publishes, by result (accepted by the broker, or refused).",
                    "result",
                ),
                &[],
            ),
            deliveries: register(
                registry,
                IntCounter::new(
                    "websocket_deliveries_total",
                    "Publications left for subscribers of this process (one per subscriber).",
                )
                .expect("valid counter"),
            ),
            subscriptions_active: gauge(
                "websocket_subscriptions_active",
                "Channel subscriptions held by connections right now.",
            ),
            channels_active: gauge(
                "websocket_channels_active",
                "Channels alive in the process (subscribed, or holding history or offsets).",
            ),
            history_bytes: gauge(
                "websocket_history_bytes",
                "Bytes of publications kept in channel history (HISTORY_MAX_BYTES bounds it).",
            ),
            recoveries: Children::new(
                &counter_vec(
                    "websocket_recoveries_total",
                    "Subscribes with recover, by outcome.",
                    "outcome",
                ),
                &[],
            ),
            ends: Children::new(
                &counter_vec(
                    "websocket_subscription_ends_total",
                    "Channel subscriptions ended, by reason.",
                    "reason",
                ),
                &[],
            ),
            broker_up: gauge(
                "websocket_broker_up",
                "1 when the channels' broker accepts work, else 0.",
            ),
        }
    }

    pub fn publication(&self, result: PublishResult) {
        self.publications.get(result).inc();
    }

    pub fn recovery(&self, outcome: RecoveryOutcome) {
        self.recoveries.get(outcome).inc();
    }

    pub fn subscription_ended(&self, reason: SubscriptionEnd) {
        self.ends.get(reason).inc();
        self.subscriptions_active.dec();
    }
}

/// Whether every label set lists its values in order (for the tests of `metrics`).
#[cfg(test)]
pub(super) fn labels_are_consistent() -> bool {
    crate::label::is_consistent::<PublishResult>()
        && crate::label::is_consistent::<RecoveryOutcome>()
        && crate::label::is_consistent::<SubscriptionEnd>()
}

#[cfg(test)]
pub(super) fn every_series_at_zero(text: &str) -> bool {
    use super::children::every_value_at_zero as all;
    all::<PublishResult>(text, "websocket_publications_total{result=")
        && all::<RecoveryOutcome>(text, "websocket_recoveries_total{outcome=")
        && all::<SubscriptionEnd>(text, "websocket_subscription_ends_total{reason=")
        && [
            "websocket_deliveries_total 0",
            "websocket_subscriptions_active 0",
            "websocket_channels_active 0",
            "websocket_history_bytes 0",
        ]
        .iter()
        .all(|series| text.contains(series))
}
