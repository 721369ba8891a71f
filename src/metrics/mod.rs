//! Prometheus metrics (names and label values from docs/architecture.md): the registry, every
//! series created at start-up with value 0, and the text exposition served on the metrics
//! listener. Label values are typed ([`crate::label`]): each labelled series is created for
//! every value of its enum and found by the value's position, so the hot path does no label
//! lookup and cannot name a series that does not exist.

mod auth;
mod broker;
mod channels;
mod children;
mod handover;
mod pre_upgrade;
#[cfg(target_os = "linux")]
mod process;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::label::labels;
use crate::protocol::{ClientType, DisconnectReason, ErrorCode, ServerType};
pub use auth::AuthMetrics;
pub use broker::{BrokerMetrics, BrokerOperation, GapRepair};
pub use channels::{ChannelMetrics, PublishResult, RecoveryOutcome, SubscriptionEnd};
use children::{Children, register};
pub use handover::{HandoverMetrics, HandoverOutcome};
pub use pre_upgrade::{AcceptError, HttpRefusal, PreUpgradeMetrics};

labels! {
    /// Why an upgrade was refused (`websocket_connections_rejected_total{reason}`).
    pub enum RejectReason {
        AtCapacity = "at_capacity",
        IpLimit = "ip_limit",
        Draining = "draining",
        ForbiddenOrigin = "forbidden_origin",
        InvalidConnectionId = "invalid_connection_id",
        /// The `Authorization` token was refused (`websocket_auth_refusals_total` says why).
        Unauthorized = "unauthorized",
        /// The connection id is held by a connection this client (or user) may not
        /// replace.
        ConnectionIdInUse = "connection_id_in_use",
        /// `UPGRADE_RATE_PER_IP` exceeded by the client IP: `429`.
        UpgradeRateLimited = "upgrade_rate_limited",
    }
}

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

/// Connection counts since start, for the periodic log summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub opened: u64,
    pub closed: u64,
    pub refused: u64,
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    pub connections_active: IntGauge,
    pub connections_total: IntCounter,
    pub draining: IntGauge,
    pub message_latency: Histogram,
    pub connection_duration: Histogram,
    pub ping_rtt: Histogram,
    rejected: Children<RejectReason>,
    errors: Children<ErrorCode>,
    disconnects: Children<DisconnectReason>,
    messages_in: Children<ClientType>,
    messages_out: Children<ServerType>,
    /// The HTTP surface before the upgrade.
    pub http: PreUpgradeMetrics,
    /// Channels: publications, deliveries, subscriptions, history, recoveries.
    pub channels: ChannelMetrics,
    /// Authentication: refused tokens and denied channels.
    pub auth: AuthMetrics,
    /// The broker: publish duration, errors, pub/sub reconnects, gap repairs.
    pub broker: std::sync::Arc<BrokerMetrics>,
    /// Handovers to and from another process (docs/handover.md).
    pub handover: HandoverMetrics,
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
            .register(Box::new(process::ProcessMetrics::for_self()))
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
            rejected: Children::new(&rejected, &[]),
            errors: Children::new(&errors, &[]),
            disconnects: Children::new(&disconnects, &[]),
            messages_in: Children::new(&messages, &["in"]),
            messages_out: Children::new(&messages, &["out"]),
            http: PreUpgradeMetrics::new(&registry),
            channels: ChannelMetrics::new(&registry),
            auth: AuthMetrics::new(&registry),
            broker: std::sync::Arc::new(BrokerMetrics::new(&registry)),
            handover: HandoverMetrics::new(&registry),
            registry,
        }
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.get(reason).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.get(code).inc();
    }

    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects.get(reason).inc();
    }

    /// Connections opened, closed and refused (upgrades and pre-upgrade) since start.
    pub fn totals(&self) -> Totals {
        Totals {
            opened: self.connections_total.get(),
            closed: self.disconnects.total(),
            refused: self.rejected.total() + self.http.refused_total(),
        }
    }

    /// Counts a client message.
    pub fn message_in(&self, kind: ClientType) {
        self.messages_in.get(kind).inc();
    }

    /// Counts a server message.
    pub fn message_out(&self, kind: ServerType) {
        self.messages_out.get(kind).inc();
    }

    /// Counts `n` server messages of one type.
    pub fn messages_out(&self, kind: ServerType, n: u64) {
        self.messages_out.get(kind).inc_by(n);
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

    use super::children::every_value_at_zero as every_series_at_zero;

    #[test]
    fn every_label_value_exists_at_zero() {
        let m = Metrics::new(10, "1.2.3", "blue");
        let text = m.render();
        let rejected = "websocket_connections_rejected_total{reason=";
        assert!(every_series_at_zero::<RejectReason>(&text, rejected));
        let disconnects = "websocket_disconnects_total{reason=";
        assert!(every_series_at_zero::<DisconnectReason>(&text, disconnects));
        let errors = "websocket_errors_total{code=";
        assert!(every_series_at_zero::<ErrorCode>(&text, errors));
        let messages_in = "websocket_messages_total{direction=\"in\",type=";
        assert!(every_series_at_zero::<ClientType>(&text, messages_in));
        let messages_out = "websocket_messages_total{direction=\"out\",type=";
        assert!(every_series_at_zero::<ServerType>(&text, messages_out));
        assert!(text.contains("websocket_build_info{server_id=\"blue\",version=\"1.2.3\"} 1"));
        assert!(text.contains("websocket_connections_limit 10"));
        assert!(channels::every_series_at_zero(&text), "{text}");
        assert!(broker::every_series_at_zero(&text), "{text}");
    }

    #[test]
    fn reject_reasons_are_listed_in_order() {
        assert!(crate::label::is_consistent::<RejectReason>());
        assert!(channels::labels_are_consistent());
        assert!(broker::labels_are_consistent());
    }

    #[test]
    fn counters_move() {
        let m = Metrics::new(10, "1", "a");
        m.rejected(RejectReason::AtCapacity);
        m.message_in(ClientType::Ping);
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
