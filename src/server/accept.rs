//! The public accept loop: a listener that survives running out of file descriptors (it backs
//! off, logs at most once a second, and sheds queued connections on a reserved descriptor so
//! that clients see a closed connection instead of a queue that hangs), that the watchdog can
//! check without a descriptor of its own, and that can stop accepting for good at the start of
//! a drain.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::AcceptError;
use crate::state::AppState;

/// First pause after a failed accept; it doubles up to [`MAX_ERROR_PAUSE`] while failing.
const FIRST_ERROR_PAUSE: Duration = Duration::from_millis(10);
const MAX_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one log line per this interval while accepting fails.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Most queued connections closed on the reserved descriptor per failed accept.
const SHED_BATCH: usize = 64;

/// Whether the accept loop works, for the watchdog: accept calls made, the start of the
/// current run of failures other than running out of descriptors, and the listener.
#[derive(Debug)]
pub struct AcceptHealth {
    /// Milliseconds after `epoch` when accepting started failing; 0 = accepting works.
    failing_since_ms: AtomicU64,
    /// Accept calls that returned (a connection, an error, or one shed).
    attempts: AtomicU64,
    listener: Weak<TcpListener>,
    epoch: Instant,
}

impl AcceptHealth {
    /// How long accepting has failed (for a reason other than the descriptor limit, which
    /// a restart would not cure) without a single success.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since)),
            ),
        }
    }

    /// Proves the accept loop works without needing a descriptor: when connections wait in
    /// the listening socket's queue, the loop must take one (or fail trying) within `within`.
    /// A stopped listener, or an empty queue, has nothing to prove.
    pub async fn probe(&self, within: Duration) -> Result<(), String> {
        let queued = match self.listener.upgrade() {
            Some(listener) => accept_queue_len(&listener).unwrap_or(0),
            None => 0,
        };
        if queued == 0 {
            return Ok(());
        }
        let before = self.attempts.load(Ordering::Relaxed);
        let taken = async {
            while self.attempts.load(Ordering::Relaxed) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(within, taken).await.map_err(|_| {
            format!("{queued} connections wait to be accepted and the loop took none in {within:?}")
        })
    }
}

/// Connections waiting in the accept queue of a listening socket (Linux reports it in
/// `tcpi_unacked` of TCP_INFO, as `ss` shows it in Recv-Q). No descriptor is needed.
#[cfg(target_os = "linux")]
fn accept_queue_len(listener: &TcpListener) -> Option<u32> {
    use std::mem::{MaybeUninit, size_of};
    use std::os::fd::AsRawFd;
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is the live socket `listener` borrows, and getsockopt writes at
    // most `len` bytes, the size of `info`.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // SAFETY: zero is a valid value of every field, and the kernel filled in the rest.
    (rc == 0).then(|| unsafe { info.assume_init() }.tcpi_unacked)
}

#[cfg(not(target_os = "linux"))]
fn accept_queue_len(_listener: &TcpListener) -> Option<u32> {
    None
}

/// Whether an accept error is the descriptor table being full (the process's or the system's).
fn kind_of(error: &io::Error) -> AcceptError {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => AcceptError::FdLimit,
        _ => AcceptError::Other,
    }
}

/// A descriptor held in reserve (`/dev/null`): when the table is full, giving it back lets one
/// queued connection be accepted and closed at once.
struct Reserve(Option<File>);

impl Reserve {
    fn new() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Closes queued connections on the reserved descriptor (at most [`SHED_BATCH`]): their
    /// clients see the connection closed instead of waiting in a queue nobody takes from.
    /// Returns how many.
    fn shed(&mut self, listener: &TcpListener) -> usize {
        if self.0.is_none() {
            // Lost earlier to another open: take it back if a descriptor is free now.
            self.0 = File::open("/dev/null").ok();
        }
        let mut shed = 0;
        while shed < SHED_BATCH && self.0.take().is_some() {
            // The accepted stream is a temporary: closed before the reserve is opened again.
            let closed_one = matches!(listener.accept().now_or_never(), Some(Ok(_)));
            self.0 = File::open("/dev/null").ok();
            if !closed_one {
                break;
            }
            shed += 1;
        }
        shed
    }
}

/// Accept failures of one run, logged at most once per [`ERROR_LOG_INTERVAL`] with a count.
#[derive(Default)]
struct FailureLog {
    last_logged: Option<Instant>,
    /// Failures since the last line.
    unlogged: u64,
    /// Connections closed on the reserve since the last line.
    shed: u64,
}

impl FailureLog {
    fn failed(&mut self, error: &io::Error, kind: AcceptError, shed: usize) {
        self.unlogged += 1;
        self.shed += shed as u64;
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < ERROR_LOG_INTERVAL)
        {
            return;
        }
        warn!(error = %error, kind = kind.as_str(), failures = self.unlogged, shed = self.shed,
            "accept failing (logged at most once a second)");
        self.last_logged = Some(now);
        (self.unlogged, self.shed) = (0, 0);
    }

    fn recovered(&mut self) {
        if self.last_logged.take().is_some() {
            info!(
                failures = self.unlogged,
                shed = self.shed,
                "accepting again"
            );
        }
        (self.unlogged, self.shed) = (0, 0);
    }
}

/// The public listener (an `axum::serve::Listener`, served by [`super::serve::serve`]):
/// survives accept failures, records them, and can stop accepting for good (dropping its
/// socket) while the connections already accepted go on being served.
pub struct TrackedListener {
    inner: Option<Arc<TcpListener>>,
    local_addr: SocketAddr,
    health: Arc<AcceptHealth>,
    state: Arc<AppState>,
    reserve: Reserve,
    failures: FailureLog,
    stop: CancellationToken,
}

impl TrackedListener {
    /// `stop` cancelled: close the listening socket and accept nothing more.
    pub fn new(
        inner: TcpListener,
        state: Arc<AppState>,
        epoch: Instant,
        stop: CancellationToken,
    ) -> io::Result<Self> {
        let local_addr = inner.local_addr()?;
        let inner = Arc::new(inner);
        let health = Arc::new(AcceptHealth {
            failing_since_ms: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            listener: Arc::downgrade(&inner),
            epoch,
        });
        Ok(TrackedListener {
            inner: Some(inner),
            local_addr,
            health,
            state,
            reserve: Reserve::new(),
            failures: FailureLog::default(),
            stop,
        })
    }

    pub fn health(&self) -> Arc<AcceptHealth> {
        Arc::clone(&self.health)
    }

    async fn accept_one(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        let mut pause = FIRST_ERROR_PAUSE;
        loop {
            let accepted = listener.accept().await;
            let health = &self.health;
            health.attempts.fetch_add(1, Ordering::Relaxed);
            match accepted {
                Ok((stream, addr)) => {
                    health.failing_since_ms.store(0, Ordering::Relaxed);
                    self.failures.recovered();
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    return (stream, addr);
                }
                Err(e) => {
                    let kind = kind_of(&e);
                    self.state.metrics.http.accept_error(kind);
                    let shed = match kind {
                        AcceptError::FdLimit => self.reserve.shed(listener),
                        AcceptError::Other => {
                            let now = (health.epoch.elapsed().as_millis() as u64).max(1);
                            let _ = health.failing_since_ms.compare_exchange(
                                0,
                                now,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            0
                        }
                    };
                    self.failures.failed(&e, kind, shed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_ERROR_PAUSE);
                }
            }
        }
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        if let Some(listener) = self.inner.clone() {
            let stop = self.stop.clone();
            tokio::select! {
                accepted = self.accept_one(&listener) => return accepted,
                () = stop.cancelled() => {}
            }
        }
        // Stopped: under socket activation systemd keeps the socket and queues new
        // connections for the next process.
        if self.inner.take().is_some() {
            info!(addr = %self.local_addr, "stopped accepting on the public socket");
        }
        std::future::pending().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sockets::bind;
    use tokio::io::AsyncReadExt;

    fn listener() -> TcpListener {
        TcpListener::from_std(bind("127.0.0.1:0".parse().unwrap(), 16).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_reserve_closes_what_waits_and_is_held_again() {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the kernel finish the handshakes and tokio see the socket readable.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut reserve = Reserve::new();
        assert_eq!(reserve.shed(&listener), 3);
        assert!(reserve.0.is_some(), "the reserve is held again");
        for client in &mut clients {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed: {read:?}");
        }
        assert_eq!(reserve.shed(&listener), 0, "nothing waits any more");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_probe_sees_a_queue_nobody_takes_from() {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let tracked = TrackedListener::new(
            listener,
            crate::state::AppState::new(test_config(), false),
            Instant::now(),
            CancellationToken::new(),
        )
        .unwrap();
        let health = tracked.health();
        let within = Duration::from_millis(300);
        assert_eq!(health.probe(within).await, Ok(()), "an empty queue");
        let _waiting = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(health.probe(within).await.is_err(), "nothing accepts");
        let mut tracked = tracked;
        let accepting = tokio::spawn(async move {
            loop {
                axum::serve::Listener::accept(&mut tracked).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(health.probe(within).await, Ok(()), "taken");
        accepting.abort();
    }

    fn test_config() -> crate::config::Config {
        use clap::Parser;
        let cli =
            crate::config::Cli::try_parse_from(["concurrent-socket", "--server-id", "t"]).unwrap();
        crate::config::Config::from_raw(&cli.settings).unwrap()
    }
}
