//! The systemd service protocol (sd_notify): `READY=1` once serving, `STATUS=` with the
//! connection count, `WATCHDOG=1` at half of `WATCHDOG_USEC` only while the runtime and the
//! accept loop are healthy, and `STOPPING=1` when draining starts. Without `NOTIFY_SOCKET`
//! every call is a no-op. The datagram socket is opened once and kept: opening one per
//! message (as `sd_notify::notify` does) fails when the descriptor table is full, and the
//! watchdog would fall silent exactly when an fd flood is under way.

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// The socket to `NOTIFY_SOCKET`, connected on first use and kept; reconnected after an error.
static NOTIFY: Mutex<Option<UnixDatagram>> = Mutex::new(None);

fn connect(path: &std::ffi::OsStr) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

fn send(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message: String = states.iter().map(|state| format!("{state}\n")).collect();
    let mut kept = NOTIFY.lock().unwrap_or_else(|p| p.into_inner());
    let socket = match kept.take() {
        Some(socket) => socket,
        None => connect(&path)?,
    };
    // After an error the socket is dropped: the manager may have re-created its end.
    socket.send(message.as_bytes())?;
    *kept = Some(socket);
    Ok(())
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = send(states) {
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
