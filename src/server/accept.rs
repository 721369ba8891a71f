//! The public accept loop: a listener that records accept failures for the watchdog, can be
//! probed end to end, and can stop accepting for good at the start of a drain.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

/// Pause after a failed accept (out of file descriptors, for example) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Whether the accept loop works: the start of the current run of accept errors, if any.
#[derive(Debug, Default)]
pub struct AcceptHealth {
    /// Milliseconds after `epoch` when accepting started failing; 0 = accepting works.
    failing_since_ms: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

impl AcceptHealth {
    /// How long accepting has failed without a single success.
    pub fn failing_for(&self, epoch: Instant) -> Option<Duration> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(epoch.elapsed().saturating_sub(Duration::from_millis(since))),
        }
    }

    /// Proves the accept loop works end to end: connects to the public socket at `addr` and
    /// waits until the loop has accepted a connection since (this one or any other).
    pub async fn probe(&self, addr: SocketAddr, within: Duration) -> Result<(), String> {
        let before = self.accepted.load(Ordering::Relaxed);
        let probe = async {
            let _connection = TcpStream::connect(probe_target(addr))
                .await
                .map_err(|e| format!("cannot connect to the public socket {addr}: {e}"))?;
            while self.accepted.load(Ordering::Relaxed) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        };
        tokio::time::timeout(within, probe)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the accept loop took no connection within {within:?}"
                ))
            })
    }
}

/// Where to connect to reach a listener bound to `addr` from this host.
fn probe_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The public listener (an `axum::serve::Listener`, served by [`super::serve::serve`]): records
/// accept failures, and can stop accepting for good (dropping its socket) while the
/// connections already accepted go on being served.
pub struct TrackedListener {
    inner: Option<TcpListener>,
    local_addr: SocketAddr,
    health: Arc<AcceptHealth>,
    epoch: Instant,
    stop: CancellationToken,
}

impl TrackedListener {
    /// `stop` cancelled: close the listening socket and accept nothing more.
    pub fn new(
        inner: TcpListener,
        health: Arc<AcceptHealth>,
        epoch: Instant,
        stop: CancellationToken,
    ) -> io::Result<Self> {
        let local_addr = inner.local_addr()?;
        Ok(TrackedListener {
            inner: Some(inner),
            local_addr,
            health,
            epoch,
            stop,
        })
    }

    async fn accept_one(
        listener: &TcpListener,
        health: &AcceptHealth,
        epoch: Instant,
    ) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    health.failing_since_ms.store(0, Ordering::Relaxed);
                    health.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    return (stream, addr);
                }
                Err(e) => {
                    let now = (epoch.elapsed().as_millis() as u64).max(1);
                    let _ = health.failing_since_ms.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        if let Some(listener) = &self.inner {
            tokio::select! {
                accepted = Self::accept_one(listener, &self.health, self.epoch) => return accepted,
                () = self.stop.cancelled() => {}
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

    #[tokio::test]
    async fn probe_sees_the_accept_loop_work_and_stall() {
        let listener =
            TcpListener::from_std(bind("0.0.0.0:0".parse().unwrap(), 16).unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AcceptHealth::default());
        let within = Duration::from_millis(500);
        // Nothing accepts yet: the kernel completes the handshake, but the loop takes nothing.
        assert!(health.probe(addr, within).await.is_err());
        let stop = CancellationToken::new();
        let mut tracked =
            TrackedListener::new(listener, Arc::clone(&health), Instant::now(), stop.clone())
                .unwrap();
        let accepting = tokio::spawn(async move {
            loop {
                axum::serve::Listener::accept(&mut tracked).await;
            }
        });
        assert_eq!(health.probe(addr, within).await, Ok(()));
        stop.cancel();
        accepting.abort();
    }
}
