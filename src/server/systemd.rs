//! The systemd service protocol (sd_notify): `READY=1` once serving, `STATUS=` with the
//! connection count, `WATCHDOG=1` at half of `WATCHDOG_USEC` only while the runtime and the
//! accept loop are healthy, and `STOPPING=1` when draining starts. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The watchdog period requested by systemd, if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Pets the watchdog at half its period while `healthy()` holds. Running as a task on the
/// runtime is itself the runtime probe: a stuck runtime sends nothing.
pub async fn run_watchdog<F>(period: Duration, healthy: impl Fn() -> F)
where
    F: Future<Output = Result<(), String>>,
{
    let mut tick = tokio::time::interval(period / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match healthy().await {
            Ok(()) => {
                debug!("watchdog ping");
                notify(&[NotifyState::Watchdog]);
            }
            Err(problem) => warn!(problem, "unhealthy: withholding the watchdog ping"),
        }
    }
}
