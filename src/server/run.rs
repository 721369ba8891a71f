//! The server assembled: the shared state, the public and metrics listeners, readiness, the
//! systemd notifications and watchdog, and the shutdown sequence from signal to exit.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::accept::{AcceptHealth, TrackedListener};
use super::drain::Stop;
use super::pending::PendingGate;
use super::proxy_header::ProxyHeaders;
use super::serve::HttpBounds;
use super::sockets::{self, OpenSockets};
use super::summary::{SUMMARY_INTERVAL, Summary};
use super::{drain, handover, serve, systemd};
use crate::config::Config;
use crate::http;
use crate::lifecycle::Phase;
use crate::state::AppState;

/// How often `STATUS=` is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// Accepting may fail this long (for a reason other than the descriptor limit, which a
/// restart would not cure) before the watchdog stops.
const ACCEPT_FAILURE_TOLERANCE: Duration = Duration::from_secs(10);
/// Longest wait for the accept loop to take a queued connection while the watchdog looks.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the HTTP servers' requests in flight after a handover.
const HTTP_STOP_WAIT: Duration = Duration::from_secs(1);

/// The `STATUS=` line: the connection count and the phase.
fn status_line(state: &AppState) -> String {
    format!(
        "{} connections, {}",
        state.registry.len(),
        state.lifecycle.phase().as_str()
    )
}

/// Why the server could not run.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn tokio_listener(listener: StdListener, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::from_std(listener)
        .map_err(|e| StartError(format!("cannot use the {what} socket: {e}")))
}

/// File descriptors the process needs besides one per WebSocket (listeners, logs, the
/// metrics scrapes, HTTP requests in flight).
const FD_RESERVE: u64 = 256;

/// Raises the soft open-files limit to the hard one (systemd and most shells start services
/// at a soft 1024, far below `MAX_CONNECTIONS`) and warns when it is still too low.
fn raise_fd_limit(max_connections: u32) {
    let needed = u64::from(max_connections) + FD_RESERVE;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => warn!(
            limit,
            needed,
            "the open-files limit is below MAX_CONNECTIONS plus a reserve: \
            connections beyond it will fail to be accepted (raise LimitNOFILE=)"
        ),
        Ok(limit) => info!(limit, "open-files limit"),
        Err(e) => warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}

/// The running HTTP servers and the switches that stop them.
struct Servers {
    /// One server per public socket (the colour's own, then any shared reuseport one).
    public: Vec<JoinHandle<()>>,
    metrics: JoinHandle<()>,
    public_addr: SocketAddr,
    metrics_addr: SocketAddr,
    accept_health: Arc<AcceptHealth>,
    summary: Arc<Summary>,
    /// Closes the public listening socket (socket activation: systemd keeps it).
    stop_accepting: CancellationToken,
    /// Ends both HTTP servers (in-flight requests finish).
    stop_http: CancellationToken,
    /// The public listeners' connections waiting for their upgrade.
    pending: Arc<PendingGate>,
}

impl Servers {
    /// Waits for the HTTP servers to finish (once `stop_http` was cancelled).
    async fn stopped(&mut self) {
        for public in self.public.drain(..) {
            let _ = public.await;
        }
        let _ = (&mut self.metrics).await;
    }

    fn start(
        state: &Arc<AppState>,
        sockets: OpenSockets,
        epoch: Instant,
    ) -> Result<Servers, StartError> {
        let public = tokio_listener(sockets.public, "public")?;
        let also_public = sockets
            .also_public
            .into_iter()
            .map(|listener| tokio_listener(listener, "public"))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = tokio_listener(sockets.metrics, "metrics")?;
        let public_addr = public.local_addr().map_err(|e| StartError(e.to_string()))?;
        let metrics_addr = metrics
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let (stop_accepting, stop_http) = (CancellationToken::new(), CancellationToken::new());
        let track = |listener| {
            TrackedListener::new(listener, Arc::clone(state), epoch, stop_accepting.clone())
                .map_err(|e| StartError(format!("cannot use the public socket: {e}")))
        };
        let public = track(public)?;
        // The watchdog probes the colour's own socket; a shared one is served the same way.
        let accept_health = public.health();
        let also_public = also_public
            .into_iter()
            .map(track)
            .collect::<Result<Vec<_>, _>>()?;
        let bounds = HttpBounds {
            max_header_bytes: state.config.http.max_header_bytes,
            idle_timeout: state.config.http_idle_timeout,
            gate: None,
            proxy: None,
        };
        // The pending caps and PROXY headers are the public listener's: scrapes get through
        // while the caps are full, and come from Prometheus, not through a load balancer.
        let pending = PendingGate::new(Arc::clone(state));
        let public_bounds = HttpBounds {
            gate: Some(Arc::clone(&pending)),
            proxy: ProxyHeaders::new(state),
            ..bounds.clone()
        };
        let serve_public = |listener: TrackedListener| {
            tokio::spawn(serve::serve(
                listener,
                http::router(Arc::clone(state)),
                public_bounds.clone(),
                stop_http.clone(),
            ))
        };
        Ok(Servers {
            public: std::iter::once(public)
                .chain(also_public)
                .map(serve_public)
                .collect(),
            metrics: tokio::spawn(serve::serve(
                metrics,
                http::metrics_router(Arc::clone(state)),
                bounds,
                stop_http.clone(),
            )),
            public_addr,
            metrics_addr,
            accept_health,
            summary: Arc::default(),
            stop_accepting,
            stop_http,
            pending,
        })
    }
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every connection was said goodbye (SIGTERM, SIGINT).
    Drained,
    /// The connections were handed to the next process: exit with
    /// [`Exit::HANDOVER_STATUS`], on which the unit restarts.
    HandedOver,
}

impl Exit {
    pub const HANDOVER_STATUS: u8 = handover::EXIT_STATUS;
}

/// Runs the server until a signal has drained it or handed its connections over.
pub async fn run(config: Config) -> Result<Exit, StartError> {
    raise_fd_limit(config.max_connections);
    let mut sockets = sockets::open_sockets(&config).map_err(StartError)?;
    let inherited = std::mem::take(&mut sockets.handover);
    let mut signals =
        drain::Signals::install().map_err(|e| StartError(format!("cannot handle signals: {e}")))?;
    let state = AppState::new(config, sockets.activated);
    #[cfg(feature = "fault-injection")]
    state.faults.arm_crash();

    // The store is emptied and the channels restored before serving; the connections are
    // resumed after it: new clients are served at once, and each old one still goes on in
    // its own order.
    let inherited = handover::take_over(&state, inherited);
    let epoch = Instant::now();
    let servers = Servers::start(&state, sockets, epoch)?;
    state.lifecycle.set(Phase::Ready);
    info!(addr = %servers.public_addr, metrics_addr = %servers.metrics_addr, socket_activated = state.socket_activated,
        server_id = %state.config.server_id, version = env!("CARGO_PKG_VERSION"), "listening");
    systemd::ready(&status_line(&state));
    let mut resuming = Some(tokio::spawn(handover::resume(
        Arc::clone(&state),
        inherited,
    )));
    let background = spawn_background(&state, &servers);
    tokio::spawn(crate::memory::trim_periodically());

    let exit = loop {
        let stop = signals.recv().await;
        // A drain or a handover covers the resumed connections only once they all are.
        if let Some(resuming) = resuming.take() {
            let _ = resuming.await;
        }
        match stop {
            Stop::Drain(signal) => {
                shut_down(&state, servers, signal).await;
                break Exit::Drained;
            }
            Stop::Handover => match handover::unavailable() {
                Some(why) => warn!(%why, "SIGUSR2: cannot hand over, serving on"),
                None => {
                    hand_over(&state, servers).await;
                    break Exit::HandedOver;
                }
            },
        }
    };
    background.abort();
    Ok(exit)
}

/// Hands every WebSocket to the next process, then stops the HTTP servers: bounded by the
/// handover, not by the drain window.
async fn hand_over(state: &Arc<AppState>, mut servers: Servers) {
    let signalled_at = SystemTime::now();
    state.metrics.draining.set(1);
    systemd::stopping(&status_line(state));
    info!(
        connections = state.registry.len(),
        "SIGUSR2: handing the connections over"
    );
    // Once the connections are parked: systemd keeps the socket and queues new connections
    // for the next process.
    let stop_accepting = || {
        servers.stop_accepting.cancel();
        state.lifecycle.set(Phase::Draining);
    };
    let unanswered = || servers.pending.unanswered();
    handover::hand_over(state, signalled_at, stop_accepting, unanswered).await;
    servers.stop_http.cancel();
    let _ = tokio::time::timeout(HTTP_STOP_WAIT, servers.stopped()).await;
}

/// Drains every WebSocket (goodbyes spread over the window), then stops the HTTP servers, all
/// before the deadline.
async fn shut_down(state: &AppState, mut servers: Servers, signal: &str) {
    let started = Instant::now();
    state.lifecycle.set(Phase::Draining);
    state.metrics.draining.set(1);
    systemd::stopping(&status_line(state));
    info!(
        signal,
        connections = state.registry.len(),
        "shutdown: draining"
    );
    if state.socket_activated {
        // systemd keeps the socket and queues new connections for the next process: refuse
        // nobody, accept nothing more here (docs/architecture.md, systemd units).
        servers.stop_accepting.cancel();
    }
    let plan = state.drain_plan;
    let left = drain::drain(&state.registry, plan, started).await;
    servers.stop_http.cancel();
    let remaining = (started + plan.deadline).saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining, servers.stopped()).await;
    servers.summary.log(&state.metrics, true);
    info!(
        left,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shutdown complete"
    );
}

/// The status refresher, the log summary and, when systemd asks for one, the watchdog.
fn spawn_background(state: &Arc<AppState>, servers: &Servers) -> JoinHandle<()> {
    let state = Arc::clone(state);
    let public_loops: Vec<_> = servers
        .public
        .iter()
        .map(JoinHandle::abort_handle)
        .collect();
    let accept = Arc::clone(&servers.accept_health);
    let summary = Arc::clone(&servers.summary);
    tokio::spawn(async move {
        let status = async {
            let mut tick = tokio::time::interval(STATUS_INTERVAL);
            let mut summary_tick = tokio::time::interval(SUMMARY_INTERVAL);
            summary_tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => systemd::status(&status_line(&state)),
                    _ = summary_tick.tick() => summary.log(&state.metrics, false),
                }
            }
        };
        let Some(period) = systemd::watchdog_interval() else {
            return status.await;
        };
        #[cfg(feature = "fault-injection")]
        let stall_after = state.faults.watchdog_stall_after;
        let healthy = || async {
            if public_loops.iter().any(|public| public.is_finished()) {
                return Err("a public accept loop has stopped".to_owned());
            }
            if let Some(failing) = accept
                .failing_for()
                .filter(|d| *d > ACCEPT_FAILURE_TOLERANCE)
            {
                return Err(format!("accepting connections has failed for {failing:?}"));
            }
            // While draining the loop may have stopped accepting on purpose.
            if !state.lifecycle.is_draining() {
                accept.probe((period / 4).min(PROBE_TIMEOUT)).await?;
            }
            #[cfg(feature = "fault-injection")]
            if stall_after.is_some_and(|after| state.lifecycle.started.elapsed() >= after) {
                return Err("FAULT_WATCHDOG_STALL_AFTER_MS reached".to_owned());
            }
            Ok(())
        };
        info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog enabled"
        );
        tokio::join!(status, systemd::run_watchdog(period, healthy));
    })
}
