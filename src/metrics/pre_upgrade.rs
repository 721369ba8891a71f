//! The series of the HTTP surface before the upgrade (issue 14): connections waiting for
//! their upgrade, connections refused before it (by reason), failed `accept` calls (by
//! kind), and the clients the upgrade rate limit tracks. All exist from start-up at 0.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::children::{Children, register};
use crate::label::labels;

labels! {
    /// Why a connection was refused before any upgrade (`websocket_http_refused_total{reason}`).
    pub enum HttpRefusal {
        /// `MAX_PENDING_HTTP` reached: closed at accept.
        PendingLimit = "pending_limit",
        /// `MAX_PENDING_HTTP_PER_IP` reached: closed at accept.
        PendingIpLimit = "pending_ip_limit",
        /// The request head passed `MAX_HEADER_BYTES`: `431`.
        HeaderTooLarge = "header_too_large",
        /// No complete request head within `HTTP_IDLE_TIMEOUT`: closed.
        HeaderTimeout = "header_timeout",
        /// A request to a WebSocket route that is no valid opening handshake: `400`/`426`.
        BadHandshake = "bad_handshake",
        /// `PROXY_PROTOCOL=v2`: a `PROXY_PROTOCOL_TRUSTED` peer opened without the header.
        ProxyHeaderMissing = "proxy_header_missing",
        /// A PROXY header malformed, cut short, or longer than `MAX_HEADER_BYTES`.
        ProxyHeaderInvalid = "proxy_header_invalid",
        /// A PROXY header from a peer not in `PROXY_PROTOCOL_TRUSTED`.
        ProxyHeaderUntrusted = "proxy_header_untrusted",
        /// No complete PROXY header from a `PROXY_PROTOCOL_TRUSTED` peer within
        /// `HTTP_IDLE_TIMEOUT`.
        ProxyHeaderTimeout = "proxy_header_timeout",
    }
}

labels! {
    /// Why `accept` failed (`websocket_accept_errors_total{kind}`).
    pub enum AcceptError {
        /// Out of file descriptors (EMFILE, ENFILE): the connection was accepted on the
        /// reserved descriptor and closed.
        FdLimit = "fd_limit",
        Other = "other",
    }
}

/// The pre-upgrade series.
pub struct PreUpgradeMetrics {
    /// Connections accepted on the public listener and not yet upgraded or closed.
    pub pending: IntGauge,
    /// Client IPs the upgrade rate limit holds a bucket for.
    pub upgrade_rate_clients: IntGauge,
    refused: Children<HttpRefusal>,
    accept_errors: Children<AcceptError>,
}

impl PreUpgradeMetrics {
    pub(super) fn new(registry: &Registry) -> PreUpgradeMetrics {
        let pending = register(
            registry,
            IntGauge::new(
                "websocket_http_pending",
                "Connections on the public listener not yet upgraded (or plain HTTP).",
            )
            .expect("valid gauge"),
        );
        let upgrade_rate_clients = register(
            registry,
            IntGauge::new(
                "websocket_upgrade_rate_clients",
                "Client IPs the upgrade rate limit (UPGRADE_RATE_PER_IP) holds a bucket for.",
            )
            .expect("valid gauge"),
        );
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter"),
            )
        };
        let refused = counter_vec(
            "websocket_http_refused_total",
            "Connections refused before any upgrade, by reason.",
            "reason",
        );
        let accept_errors = counter_vec(
            "websocket_accept_errors_total",
            "Failed accept calls on the public listener, by kind.",
            "kind",
        );
        PreUpgradeMetrics {
            pending,
            upgrade_rate_clients,
            refused: Children::new(&refused, &[]),
            accept_errors: Children::new(&accept_errors, &[]),
        }
    }

    pub fn refused(&self, reason: HttpRefusal) {
        self.refused.get(reason).inc();
    }

    pub fn accept_error(&self, kind: AcceptError) {
        self.accept_errors.get(kind).inc();
    }

    /// Connections refused before the upgrade since start, every reason together.
    pub fn refused_total(&self) -> u64 {
        self.refused.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_at_zero_and_counts() {
        let registry = Registry::new();
        let metrics = PreUpgradeMetrics::new(&registry);
        assert!(crate::label::is_consistent::<HttpRefusal>());
        assert!(crate::label::is_consistent::<AcceptError>());
        metrics.refused(HttpRefusal::HeaderTimeout);
        metrics.refused(HttpRefusal::BadHandshake);
        metrics.accept_error(AcceptError::FdLimit);
        assert_eq!(metrics.refused_total(), 2);
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("websocket_http_pending 0"));
        assert!(text.contains("websocket_upgrade_rate_clients 0"));
        assert!(text.contains("websocket_http_refused_total{reason=\"proxy_header_missing\"} 0"));
        assert!(text.contains("websocket_http_refused_total{reason=\"header_timeout\"} 1"));
        assert!(text.contains("websocket_http_refused_total{reason=\"pending_limit\"} 0"));
        assert!(text.contains("websocket_accept_errors_total{kind=\"fd_limit\"} 1"));
        assert!(text.contains("websocket_accept_errors_total{kind=\"other\"} 0"));
    }
}
