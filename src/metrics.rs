//! Prometheus metrics (names and label values from docs/architecture.md): the registry, every
//! series created at start-up with value 0, and the text exposition served on the metrics
//! listener. Label children are resolved once, so the hot path does no label lookups.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::protocol::ErrorCode;

/// Why an upgrade was refused (`websocket_connections_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    AtCapacity,
    IpLimit,
    Draining,
    ForbiddenOrigin,
    InvalidConnectionId,
}

impl RejectReason {
    pub const ALL: [RejectReason; 5] = [
        RejectReason::AtCapacity,
        RejectReason::IpLimit,
        RejectReason::Draining,
        RejectReason::ForbiddenOrigin,
        RejectReason::InvalidConnectionId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::AtCapacity => "at_capacity",
            RejectReason::IpLimit => "ip_limit",
            RejectReason::Draining => "draining",
            RejectReason::ForbiddenOrigin => "forbidden_origin",
            RejectReason::InvalidConnectionId => "invalid_connection_id",
        }
    }
}

/// Why a WebSocket ended (`websocket_disconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientClose,
    ServerShutdown,
    IdleTimeout,
    Replaced,
    PolicyViolation,
    MessageTooLarge,
    SlowConsumer,
    DeadPeer,
    TransportError,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 9] = [
        DisconnectReason::ClientClose,
        DisconnectReason::ServerShutdown,
        DisconnectReason::IdleTimeout,
        DisconnectReason::Replaced,
        DisconnectReason::PolicyViolation,
        DisconnectReason::MessageTooLarge,
        DisconnectReason::SlowConsumer,
        DisconnectReason::DeadPeer,
        DisconnectReason::TransportError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClose => "client_close",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::PolicyViolation => "policy_violation",
            DisconnectReason::MessageTooLarge => "message_too_large",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::DeadPeer => "dead_peer",
            DisconnectReason::TransportError => "transport_error",
        }
    }
}

/// `type` label values of client messages.
pub const IN_TYPES: [&str; 3] = ["message", "ping", "invalid"];
/// `type` label values of server messages.
pub const OUT_TYPES: [&str; 6] = [
    "connection_established",
    "heartbeat",
    "message_response",
    "pong",
    "error",
    "goodbye",
];

const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
const DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 43_200.0, 86_400.0,
];
const RTT_BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    pub connections_active: IntGauge,
    pub connections_total: IntCounter,
    pub draining: IntGauge,
    pub message_latency: Histogram,
    pub connection_duration: Histogram,
    pub ping_rtt: Histogram,
    rejected: Children,
    errors: Children,
    disconnects: Children,
    messages_in: Children,
    messages_out: Children,
}

/// The children of a counter vector by label value, created up front so that each series
/// exists at 0. A handful of values, counted on every message: comparing a few short strings
/// costs less than hashing one.
struct Children(Box<[(&'static str, IntCounter)]>);

impl Children {
    /// `label_values` without the value that tells the children apart, which comes last.
    fn new(
        vec: &IntCounterVec,
        label_values: &[&str],
        values: impl IntoIterator<Item = &'static str>,
    ) -> Children {
        let child = |value| vec.with_label_values(&[label_values, &[value]].concat());
        Children(values.into_iter().map(|v| (v, child(v))).collect())
    }

    /// The child of `value`. Panics on a value not declared up front, as a new series must be.
    fn get(&self, value: &str) -> &IntCounter {
        self.0
            .iter()
            .find_map(|(v, counter)| (*v == value).then_some(counter))
            .unwrap_or_else(|| panic!("undeclared label value {value:?}"))
    }
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: T,
) -> T {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid histogram");
    register(registry, h)
}

impl Metrics {
    pub fn new(max_connections: u32, version: &str, server_id: &str) -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid gauge"))
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter"),
            )
        };

        let connections_active = gauge(
            "websocket_connections_active",
            "Open WebSocket connections right now.",
        );
        let limit = gauge(
            "websocket_connections_limit",
            "Configured maximum of open WebSocket connections (MAX_CONNECTIONS).",
        );
        limit.set(i64::from(max_connections));
        let connections_total = register(
            &registry,
            IntCounter::new(
                "websocket_connections_total",
                "WebSocket upgrades accepted since start.",
            )
            .expect("valid counter"),
        );
        let draining = gauge(
            "websocket_draining",
            "1 from the shutdown signal until exit, else 0.",
        );
        let rejected = counter_vec(
            "websocket_connections_rejected_total",
            "WebSocket upgrade requests refused, by reason.",
            "reason",
        );
        let errors = counter_vec(
            "websocket_errors_total",
            "Protocol errors answered or closed on, by code.",
            "code",
        );
        let disconnects = counter_vec(
            "websocket_disconnects_total",
            "WebSocket connections ended, by reason.",
            "reason",
        );
        let messages = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "websocket_messages_total",
                    "WebSocket protocol messages, by direction and type.",
                ),
                &["direction", "type"],
            )
            .expect("valid counter"),
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "websocket_build_info",
                    "Build and instance information; the value is always 1.",
                ),
                &["version", "server_id"],
            )
            .expect("valid gauge"),
        );
        build_info.with_label_values(&[version, server_id]).set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");

        Metrics {
            connections_active,
            connections_total,
            draining,
            message_latency: histogram(
                &registry,
                "websocket_message_latency_seconds",
                "Time from a client frame being read to its answer being written to the socket.",
                &LATENCY_BUCKETS,
            ),
            connection_duration: histogram(
                &registry,
                "websocket_connection_duration_seconds",
                "Lifetime of ended WebSocket connections.",
                &DURATION_BUCKETS,
            ),
            ping_rtt: histogram(
                &registry,
                "websocket_ping_rtt_seconds",
                "Round trip time of server WebSocket pings, from ping written to pong read.",
                &RTT_BUCKETS,
            ),
            rejected: Children::new(&rejected, &[], RejectReason::ALL.map(RejectReason::as_str)),
            errors: Children::new(&errors, &[], ErrorCode::ALL.map(ErrorCode::as_str)),
            disconnects: Children::new(
                &disconnects,
                &[],
                DisconnectReason::ALL.map(DisconnectReason::as_str),
            ),
            messages_in: Children::new(&messages, &["in"], IN_TYPES),
            messages_out: Children::new(&messages, &["out"], OUT_TYPES),
            registry,
        }
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.get(reason.as_str()).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.get(code.as_str()).inc();
    }

    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects.get(reason.as_str()).inc();
    }

    /// Counts a client message; `kind` is one of [`IN_TYPES`].
    pub fn message_in(&self, kind: &'static str) {
        self.messages_in.get(kind).inc();
    }

    /// Counts a server message; `kind` is one of [`OUT_TYPES`].
    pub fn message_out(&self, kind: &'static str) {
        self.messages_out.get(kind).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into memory");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_value_exists_at_zero() {
        let m = Metrics::new(10, "1.2.3", "blue");
        let text = m.render();
        for reason in RejectReason::ALL {
            assert!(text.contains(&format!(
                "websocket_connections_rejected_total{{reason=\"{}\"}} 0",
                reason.as_str()
            )));
        }
        for reason in DisconnectReason::ALL {
            assert!(text.contains(&format!(
                "websocket_disconnects_total{{reason=\"{}\"}} 0",
                reason.as_str()
            )));
        }
        for code in ErrorCode::ALL {
            assert!(text.contains(&format!(
                "websocket_errors_total{{code=\"{}\"}} 0",
                code.as_str()
            )));
        }
        assert!(text.contains("websocket_messages_total{direction=\"out\",type=\"goodbye\"} 0"));
        assert!(text.contains("websocket_build_info{server_id=\"blue\",version=\"1.2.3\"} 1"));
        assert!(text.contains("websocket_connections_limit 10"));
    }

    #[test]
    fn counters_move() {
        let m = Metrics::new(10, "1", "a");
        m.rejected(RejectReason::AtCapacity);
        m.message_in("ping");
        assert!(
            m.render()
                .contains("websocket_connections_rejected_total{reason=\"at_capacity\"} 1")
        );
        assert!(
            m.render()
                .contains("websocket_messages_total{direction=\"in\",type=\"ping\"} 1")
        );
    }
}
