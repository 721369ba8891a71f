//! The handover (docs/handover.md): on `SIGUSR2` (`systemctl reload`) this process parks
//! every connection and leaves their sockets and state in systemd's file descriptor store,
//! then exits for systemd to start the next one; at start-up, a process takes back what the
//! previous one left there and resumes each connection where it stopped.

mod export;
mod import;
mod queue;
mod state_file;

pub(super) use export::{hand_over, unavailable};
pub(super) use import::{resume, take_over};

/// The exit status after a handover: the unit restarts on it (`RestartForceExitStatus=75`)
/// and does not count it as a failure (`SuccessExitStatus=75`).
pub const EXIT_STATUS: u8 = 75;
