//! The metric family of handovers (docs/handover.md): what became of each connection handed
//! from one process to the next, `websocket_handover_connections_total{outcome}`, and how
//! long the handover that started this process took, until it served
//! (`websocket_handover_seconds`) and until it had resumed every connection
//! (`websocket_handover_resume_seconds`), all at 0 from start-up.

use prometheus::{Gauge, IntCounterVec, Opts, Registry};

use super::children::{Children, register};
use crate::label::labels;

labels! {
    /// What became of a connection in a handover.
    pub enum HandoverOutcome {
        /// Parked and given to the next process (counted by the old process).
        HandedOver = "handed_over",
        /// Taken up and served on (counted by the new process).
        Resumed = "resumed",
        /// Received but not understood, or over the capacity: closed with `goodbye`
        /// `server_shutdown` (counted by whichever process closed it).
        Unresumable = "unresumable",
    }
}

/// Counts handed-over connections and times the handover that started this process.
pub struct HandoverMetrics {
    connections: Children<HandoverOutcome>,
    /// From the old process's signal to this process serving (0: it started without one).
    pub seconds: Gauge,
    /// From the old process's signal to this process having resumed every connection.
    pub resume_seconds: Gauge,
}

impl HandoverMetrics {
    pub(super) fn new(registry: &Registry) -> HandoverMetrics {
        let connections = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "websocket_handover_connections_total",
                    "Connections handed over to or taken over from another process, by outcome.",
                ),
                &["outcome"],
            )
            .expect("valid counter"),
        );
        let seconds = register(
            registry,
            Gauge::new(
                "websocket_handover_seconds",
                "Seconds from the previous process's handover signal to this process serving \
                (0: this process started without a handover).",
            )
            .expect("valid gauge"),
        );
        let resume_seconds = register(
            registry,
            Gauge::new(
                "websocket_handover_resume_seconds",
                "Seconds from the previous process's handover signal to this process having \
                resumed every handed-over connection (0: this process started without a handover).",
            )
            .expect("valid gauge"),
        );
        HandoverMetrics {
            connections: Children::new(&connections, &[]),
            seconds,
            resume_seconds,
        }
    }

    pub fn count(&self, outcome: HandoverOutcome, connections: u64) {
        self.connections.get(outcome).inc_by(connections);
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::label::{Label, is_consistent};

    #[test]
    fn every_outcome_exists_at_zero_and_counts() {
        assert!(is_consistent::<HandoverOutcome>());
        let registry = Registry::new();
        let metrics = HandoverMetrics::new(&registry);
        let render = || {
            let mut text = Vec::new();
            TextEncoder::new()
                .encode(&registry.gather(), &mut text)
                .unwrap();
            String::from_utf8(text).unwrap()
        };
        let text = render();
        for outcome in HandoverOutcome::ALL {
            let series = format!(
                "websocket_handover_connections_total{{outcome=\"{}\"}} 0",
                outcome.name()
            );
            assert!(text.contains(&series), "{series}");
        }
        assert!(text.contains("websocket_handover_seconds 0"));
        assert!(text.contains("websocket_handover_resume_seconds 0"));
        metrics.count(HandoverOutcome::Resumed, 3);
        assert!(render().contains("websocket_handover_connections_total{outcome=\"resumed\"} 3"));
    }
}
