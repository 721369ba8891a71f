//! The systemd service protocol (sd_notify): `READY=1` once serving, `STATUS=` with the
//! connection count, `WATCHDOG=1` at half of `WATCHDOG_USEC` only while the runtime and the
//! accept loop are healthy, and `STOPPING=1` when draining starts. Without `NOTIFY_SOCKET`
//! every call is a no-op. The datagram socket is opened once and kept: opening one per
//! message (as `sd_notify::notify` does) fails when the descriptor table is full, and the
//! watchdog would fall silent exactly when an fd flood is under way. The file descriptor
//! store (`FDSTORE=1`, `FDSTOREREMOVE=1`) and `BARRIER=1` serve the handover.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use rustix::pipe::{PipeFlags, pipe_with};

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
    let message: String = states.iter().map(|state| format!("{state}\n")).collect();
    send_with_fds(&message, &[]).map(drop)
}

/// Sends `message` with `fds` attached; `Ok(false)` without `NOTIFY_SOCKET` (nothing sent).
fn send_with_fds(message: &str, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let mut kept = NOTIFY.lock().unwrap_or_else(|p| p.into_inner());
    let socket = match kept.take() {
        Some(socket) => socket,
        None => connect(&path)?,
    };
    // After an error the socket is dropped: the manager may have re-created its end.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "too many descriptors for one notification",
        ));
    }
    sendmsg(
        &socket,
        &[IoSlice::new(message.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    *kept = Some(socket);
    Ok(true)
}

/// Whether systemd listens to our notifications (`NOTIFY_SOCKET` is set).
pub fn is_notifying() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Puts `fd` in the service's file descriptor store under `name`.
pub fn store_fd(name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    let message = format!("FDSTORE=1\nFDNAME={name}\n");
    match send_with_fds(&message, &[fd])? {
        true => Ok(()),
        false => Err(io::Error::other("no NOTIFY_SOCKET: not run by systemd")),
    }
}

/// Removes the store's entries named `name` (systemd closes its copies).
pub fn remove_stored(name: &str) -> io::Result<()> {
    send_with_fds(&format!("FDSTOREREMOVE=1\nFDNAME={name}\n"), &[]).map(drop)
}

/// Waits until systemd has read every notification sent before (`BARRIER=1`, systemd 246+):
/// systemd closes the pipe end it received once it got there. A message still queued when
/// the process exits would be read after systemd forgot the main process, and dropped.
pub fn barrier(timeout: Duration) -> io::Result<()> {
    let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC)?;
    if !send_with_fds("BARRIER=1\n", &[write_end.as_fd()])? {
        return Ok(());
    }
    drop(write_end);
    let timeout = Timespec::try_from(timeout).map_err(io::Error::other)?;
    let mut fds = [PollFd::new(&read_end, PollFlags::IN)];
    match poll(&mut fds, Some(&timeout))? {
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "systemd did not answer BARRIER=1",
        )),
        _ => Ok(()),
    }
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
