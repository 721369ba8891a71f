//! What every handler and connection shares ([`AppState`]: configuration, metrics, registry,
//! lifecycle, drain timing), and the accounting of a WebSocket's opening and closing, the
//! same for every kind of session.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Verifier;
use crate::channels::Channels;
use crate::config::Config;
use crate::lifecycle::{DrainPlan, Lifecycle};
use crate::metrics::Metrics;
use crate::protocol::DisconnectReason;
use crate::registry::{Admission, Command, Registration, Registry};

/// Everything the handlers and connections share.
pub struct AppState {
    pub config: Config,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    /// The channels (protocol v1.1): broker and hub.
    pub channels: Channels,
    pub lifecycle: Lifecycle,
    /// The timing of a graceful shutdown, from `SHUTDOWN_TIMEOUT`.
    pub drain_plan: DrainPlan,
    /// The public socket came from systemd: draining stops accepting instead of answering 503.
    pub socket_activated: bool,
    /// Checks tokens; `None` when authentication is off.
    pub auth: Option<Verifier>,
    #[cfg(feature = "fault-injection")]
    pub faults: crate::faults::Faults,
}

impl AppState {
    pub fn new(config: Config, socket_activated: bool) -> Arc<AppState> {
        let metrics = Metrics::new(
            config.max_connections,
            env!("CARGO_PKG_VERSION"),
            &config.server_id,
        );
        let registry = Registry::new(config.max_connections, config.max_connections_per_ip);
        let channels = Channels::start(
            &config.channels,
            &config.redis,
            &metrics.channels,
            &metrics.broker,
        );
        Arc::new(AppState {
            channels,
            metrics,
            registry,
            lifecycle: Lifecycle::default(),
            drain_plan: DrainPlan::for_timeout(config.shutdown_timeout),
            socket_activated,
            auth: config.auth.key.as_ref().map(Verifier::new),
            #[cfg(feature = "fault-injection")]
            faults: crate::faults::Faults::from_env(),
            config,
        })
    }

    /// Records an upgraded WebSocket (either endpoint) and counts it as open. One opened
    /// after the drain took its snapshot is told to leave at once.
    pub fn open_connection(&self, admission: Admission) -> Registration {
        let registration = self.registry.register(admission);
        if self.lifecycle.is_draining() {
            registration.control().send(Command::Shutdown);
        }
        self.metrics.connections_total.inc();
        self.metrics.connections_active.inc();
        registration
    }

    /// Counts the end of a WebSocket opened at `opened`.
    pub fn count_closed(&self, reason: DisconnectReason, opened: Instant) {
        self.metrics.disconnect(reason);
        self.metrics.connections_active.dec();
        self.metrics
            .connection_duration
            .observe(opened.elapsed().as_secs_f64());
    }
}
