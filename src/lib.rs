//! concurrent-socket: a WebSocket server speaking protocol v1 (docs/protocol.md), built to hold
//! tens of thousands of connections per host and to be deployed several times a day without
//! dropping clients. `main.rs` only parses the command line and calls [`app::run`].

pub mod access;
pub mod app;
pub mod config;
pub mod connection;
pub mod echo;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod ratelimit;
pub mod registry;
pub mod routes;
pub mod serve;
pub mod shutdown;
pub mod socket;
pub mod systemd;
pub mod upgrade;
