//! The metric family of authentication: `websocket_auth_refusals_total{reason}`, every reason
//! at 0 from start-up.

use prometheus::{IntCounterVec, Opts, Registry};

use super::children::{Children, register};
use crate::auth::AuthRefusal;

/// Counts refused tokens (at the upgrade and in the session) and denied channels.
pub struct AuthMetrics {
    refusals: Children<AuthRefusal>,
}

impl AuthMetrics {
    pub(super) fn new(registry: &Registry) -> AuthMetrics {
        let refusals = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "websocket_auth_refusals_total",
                    "Tokens refused and channels denied by authentication, by reason.",
                ),
                &["reason"],
            )
            .expect("valid counter"),
        );
        AuthMetrics {
            refusals: Children::new(&refusals, &[]),
        }
    }

    pub fn refused(&self, reason: AuthRefusal) {
        self.refusals.get(reason).inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::label::Label;

    fn render(registry: &Registry) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn every_reason_exists_at_zero_and_counts() {
        let registry = Registry::new();
        let metrics = AuthMetrics::new(&registry);
        let text = render(&registry);
        for reason in AuthRefusal::ALL {
            let series = format!(
                "websocket_auth_refusals_total{{reason=\"{}\"}} 0",
                reason.name()
            );
            assert!(text.contains(&series), "{series}");
        }
        metrics.refused(AuthRefusal::Expired);
        assert!(render(&registry).contains("websocket_auth_refusals_total{reason=\"expired\"} 1"));
    }
}
