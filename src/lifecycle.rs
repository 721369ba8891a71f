//! The server's lifecycle: its phase (starting, ready, draining), shared lock-free by every
//! handler and connection, and the timing of a graceful shutdown derived from
//! `SHUTDOWN_TIMEOUT` (the drain itself runs in `server::drain`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
        }
    }
}

/// The shared, lock-free phase.
#[derive(Debug)]
pub struct Lifecycle {
    phase: AtomicU8,
    pub started: Instant,
    /// The same moment on the wall clock (`/health` shows it: a restart is seen).
    pub started_at: SystemTime,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: AtomicU8::new(Phase::Starting as u8),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }
}

/// `at` in milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The timing of a drain, all derived from `SHUTDOWN_TIMEOUT`.
#[derive(Debug, Clone, Copy)]
pub struct DrainPlan {
    /// Goodbyes are spread evenly over this window from the signal.
    pub window: Duration,
    /// Whatever is still open at this moment is dropped, and the process exits.
    pub deadline: Duration,
    /// After its goodbye a connection keeps answering for this long, or until the client
    /// closes, before it sends its close frame: requests that crossed the goodbye on the wire
    /// are answered instead of lost (nothing may be sent after a close frame).
    pub goodbye_grace: Duration,
    /// After its close frame a connection waits this long for the peer's before it is dropped.
    pub close_wait: Duration,
}

impl DrainPlan {
    /// Goodbyes over the first half of the timeout, so that grace periods and closing
    /// handshakes have the second half; the grace is a fifth of the timeout, at most a second;
    /// the close wait a fifth too, at most two seconds; the hard deadline leaves a margin (a
    /// tenth, at most one second) to exit before whoever sent the signal gives up (systemd's
    /// TimeoutStopSec). So the last goodbye's grace and close wait end by the deadline
    /// whatever the timeout (1/2 + 1/5 + 1/5 + 1/10 = 1).
    pub fn for_timeout(timeout: Duration) -> DrainPlan {
        let margin = (timeout / 10).min(Duration::from_secs(1));
        DrainPlan {
            window: timeout / 2,
            deadline: timeout - margin,
            goodbye_grace: (timeout / 5).min(Duration::from_secs(1)),
            close_wait: (timeout / 5).min(Duration::from_secs(2)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_leaves_room_before_the_timeout() {
        let plan = DrainPlan::for_timeout(Duration::from_secs(10));
        assert_eq!(plan.window, Duration::from_secs(5));
        assert_eq!(plan.deadline, Duration::from_secs(9));
        assert_eq!(plan.goodbye_grace, Duration::from_secs(1));
        assert_eq!(plan.close_wait, Duration::from_secs(2));
        let plan = DrainPlan::for_timeout(Duration::from_millis(500));
        assert_eq!(plan.deadline, Duration::from_millis(450));
    }

    #[test]
    fn the_last_goodbye_grace_and_close_wait_fit_before_the_deadline() {
        for ms in [1000, 1500, 2000, 4000, 10_000, 60_000, 3_600_000] {
            let plan = DrainPlan::for_timeout(Duration::from_millis(ms));
            let last_close = plan.window + plan.goodbye_grace + plan.close_wait;
            assert!(
                last_close <= plan.deadline,
                "SHUTDOWN_TIMEOUT={ms}: {plan:?}"
            );
        }
    }

    #[test]
    fn phases_round_trip() {
        let lifecycle = Lifecycle::default();
        assert_eq!(lifecycle.phase(), Phase::Starting);
        lifecycle.set(Phase::Draining);
        assert!(lifecycle.is_draining());
    }
}
