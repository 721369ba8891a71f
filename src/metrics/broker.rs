//! The broker's series (issue 17): how long a publish takes in the broker, its errors by
//! operation, the pub/sub connection's reconnects, and the repairs of gaps in a channel by
//! outcome. Each exists from start-up, at 0 for every label value, whatever the engine (the
//! in-memory engine leaves them at 0). `websocket_broker_up` is the channels' own gauge.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::children::{Children, register};
use crate::label::labels;

labels! {
    /// What the broker was asked when it failed (`websocket_broker_errors_total{operation}`).
    pub enum BrokerOperation {
        Publish = "publish",
        History = "history",
        Subscribe = "subscribe",
        Unsubscribe = "unsubscribe",
        /// The pub/sub connection itself: lost, or refused.
        Pubsub = "pubsub",
    }
}

labels! {
    /// How a gap in a channel's publications ended (`websocket_broker_gap_repairs_total{outcome}`).
    pub enum GapRepair {
        /// The history held every missing publication: handed on in order.
        Filled = "filled",
        /// It did not (trimmed, expired, new epoch): the local subscribers were ended.
        InsufficientState = "insufficient_state",
    }
}

const PUBLISH_BUCKETS: [f64; 11] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The broker's metrics.
pub struct BrokerMetrics {
    pub publish_duration: Histogram,
    errors: Children<BrokerOperation>,
    pub pubsub_reconnects: IntCounter,
    gap_repairs: Children<GapRepair>,
}

impl BrokerMetrics {
    /// Registers the series in `registry` (the engine's tests give each engine its own).
    pub(crate) fn new(registry: &Registry) -> BrokerMetrics {
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter"),
            )
        };
        let publish_duration = Histogram::with_opts(
            HistogramOpts::new(
                "websocket_broker_publish_duration_seconds",
                "Time the broker took to accept a publish (offset assigned, stored, published).",
            )
            .buckets(PUBLISH_BUCKETS.to_vec()),
        )
        .expect("valid histogram");
        BrokerMetrics {
            publish_duration: register(registry, publish_duration),
            errors: Children::new(
                &counter_vec(
                    "websocket_broker_errors_total",
                    "Broker calls that failed (Redis unreachable, timed out or refusing), by operation.",
                    "operation",
                ),
                &[],
            ),
            pubsub_reconnects: register(
                registry,
                IntCounter::new(
                    "websocket_broker_pubsub_reconnects_total",
                    "Pub/sub connections to the broker made again after one was lost.",
                )
                .expect("valid counter"),
            ),
            gap_repairs: Children::new(
                &counter_vec(
                    "websocket_broker_gap_repairs_total",
                    "Gaps found in a channel's publications (out of sequence, pub/sub lost, position check), by outcome.",
                    "outcome",
                ),
                &[],
            ),
        }
    }

    pub fn error(&self, operation: BrokerOperation) {
        self.errors.get(operation).inc();
    }

    pub fn gap_repaired(&self, outcome: GapRepair) {
        self.gap_repairs.get(outcome).inc();
    }

    /// How many gaps ended so (for the engine's tests).
    #[cfg(test)]
    pub fn gap_repairs_of(&self, outcome: GapRepair) -> u64 {
        self.gap_repairs.get(outcome).get()
    }
}

/// Whether every label set lists its values in order (for the tests of `metrics`).
#[cfg(test)]
pub(super) fn labels_are_consistent() -> bool {
    crate::label::is_consistent::<BrokerOperation>() && crate::label::is_consistent::<GapRepair>()
}

#[cfg(test)]
pub(super) fn every_series_at_zero(text: &str) -> bool {
    use super::children::every_value_at_zero as all;
    all::<BrokerOperation>(text, "websocket_broker_errors_total{operation=")
        && all::<GapRepair>(text, "websocket_broker_gap_repairs_total{outcome=")
        && [
            "websocket_broker_pubsub_reconnects_total 0",
            "websocket_broker_publish_duration_seconds_count 0",
            "websocket_broker_publish_duration_seconds_bucket{le=\"0.0005\"} 0",
        ]
        .iter()
        .all(|series| text.contains(series))
}
