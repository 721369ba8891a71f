//! What every handler and connection shares ([`AppState`]: configuration, metrics, registry,
//! lifecycle, drain timing), and the accounting of a WebSocket's opening and closing, the
//! same for every kind of session.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::auth::Verifier;
use crate::channels::Channels;
use crate::config::Config;
use crate::lifecycle::{DrainPlan, Lifecycle};
use crate::metrics::Metrics;
use crate::protocol::DisconnectReason;
use crate::ratelimit::{ClientRateLimiter, MAX_TRACKED_CLIENTS};
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
    /// Connections parked for a handover (docs/handover.md).
    pub parked: Parked,
    /// Checks tokens; `None` when authentication is off.
    pub auth: Option<Verifier>,
    /// The upgrade rate per client IP; `None` when `UPGRADE_RATE_PER_IP` is 0.
    pub upgrade_rate: Option<ClientRateLimiter>,
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
            upgrade_rate: ClientRateLimiter::new(
                config.edge.upgrade_rate_per_ip,
                config.edge.upgrade_burst_per_ip,
                MAX_TRACKED_CLIENTS,
                Instant::now(),
            ),
            parked: Parked::default(),
            #[cfg(feature = "fault-injection")]
            faults: crate::faults::Faults::from_env(),
            config,
        })
    }

    /// Records an upgraded WebSocket (either endpoint) and counts it as open. One opened
    /// while a handover parks the others (even after it stopped accepting: an upgrade it
    /// answers then) is told to park too; one opened after the drain took its snapshot is
    /// told to leave at once.
    pub fn open_connection(&self, admission: Admission) -> Registration {
        let registration = self.registry.register(admission);
        // Registered first, then the flags read: the handover sets them, then looks at the
        // registry (both under its lock), so either it sees this connection or this sees them.
        // Collecting comes first: a handover marks the process draining when it stops
        // accepting, and a connection that finds the parked list taken says goodbye then.
        if self.parked.is_collecting() {
            registration.control().send(Command::Handover);
        } else if self.lifecycle.is_draining() {
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

/// Connections parked for a handover: each socket, off the runtime, with its session's
/// record (opaque here), in the order they parked; and whether a handover is collecting
/// them (connections opened meanwhile park as well). The handover takes them once: a
/// connection that would park after that finds no [`Place`] and says goodbye instead of
/// being left in a list nobody reads.
pub struct Parked(Mutex<Option<Vec<ParkedSocket>>>, AtomicBool);

/// A parked connection: its socket and its session's record.
pub type ParkedSocket = (TcpStream, Vec<u8>);

impl Default for Parked {
    fn default() -> Parked {
        Parked(Mutex::new(Some(Vec::new())), AtomicBool::new(false))
    }
}

impl Parked {
    /// From now on, every connection that opens is told to park (the handover has begun
    /// and the process still accepts).
    pub fn collect(&self) {
        self.1.store(true, Ordering::SeqCst);
    }

    pub fn is_collecting(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    /// A place in the list, held while the connection leaves the runtime (so the handover
    /// cannot take the list in between), or `None` once the handover has taken it.
    pub fn place(&self) -> Option<Place<'_>> {
        let list = self.lock();
        list.is_some().then_some(Place(list))
    }

    /// Every connection parked, once: later connections find no place.
    pub fn take(&self) -> Vec<ParkedSocket> {
        self.lock().take().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<ParkedSocket>>> {
        // A push or a take cannot leave the list half-updated.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection's place in the parked list ([`Parked::place`]).
pub struct Place<'a>(MutexGuard<'a, Option<Vec<ParkedSocket>>>);

impl Place<'_> {
    pub fn park(mut self, stream: TcpStream, record: Vec<u8>) {
        if let Some(list) = self.0.as_mut() {
            list.push((stream, record));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use clap::Parser;
    use futures_util::FutureExt;

    use super::*;
    use crate::config::Cli;
    use crate::lifecycle::Phase;

    fn opened(state: &AppState) -> Registration {
        let admission = state
            .registry
            .admit(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .unwrap();
        state.open_connection(admission)
    }

    fn pending(registration: &Registration) -> Option<Command> {
        registration.control().recv().now_or_never()
    }

    fn state() -> Arc<AppState> {
        let cli = Cli::try_parse_from(["concurrent-socket", "--server-id", "t"]).unwrap();
        AppState::new(Config::from_raw(&cli.settings).unwrap(), true)
    }

    #[tokio::test]
    async fn a_connection_opened_during_a_handover_parks_even_after_accepting_stopped() {
        let state = state();
        let before = opened(&state);
        assert_eq!(pending(&before), None, "serving: nothing asked");
        state.parked.collect();
        let during = opened(&state);
        assert_eq!(pending(&during), Some(Command::Handover));
        state.lifecycle.set(Phase::Draining); // the handover stopped accepting
        let answered_late = opened(&state);
        assert_eq!(pending(&answered_late), Some(Command::Handover));
    }

    #[tokio::test]
    async fn a_connection_opened_during_a_drain_leaves() {
        let state = state();
        state.lifecycle.set(Phase::Draining);
        let after = opened(&state);
        assert_eq!(pending(&after), Some(Command::Shutdown));
    }

    #[test]
    fn once_the_handover_took_the_parked_connections_none_finds_a_place() {
        let parked = Parked::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = || TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        parked
            .place()
            .expect("a place before the take")
            .park(socket(), b"a".to_vec());
        let taken = parked.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1, b"a");
        assert!(parked.place().is_none(), "a place after the take");
        assert!(parked.take().is_empty());
    }
}
