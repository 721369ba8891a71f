//! The process around the HTTP surface: `run` opens the sockets (systemd's or bound here),
//! serves both listeners, reports to systemd (`READY=1`, `STATUS=`, the watchdog,
//! `STOPPING=1`) and, on SIGTERM or SIGINT, drains every WebSocket before it returns; on
//! SIGUSR2 it hands them to the next process instead (`handover`, docs/handover.md).

mod accept;
mod drain;
mod handover;
mod pending;
mod proxy_header;
mod run;
mod serve;
mod sockets;
mod summary;
mod systemd;

pub use run::{Exit, StartError, run};
