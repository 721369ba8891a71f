//! concurrent-socket: a WebSocket server speaking protocol v1 (docs/protocol.md), built to hold
//! tens of thousands of connections per host and to be deployed several times a day without
//! dropping clients. `main.rs` only parses the command line and calls [`server::run`].

pub mod config;
#[cfg(feature = "fault-injection")]
pub(crate) mod faults;
pub(crate) mod http;
pub(crate) mod label;
pub(crate) mod lifecycle;
pub mod logging;
pub(crate) mod metrics;
pub mod protocol;
pub(crate) mod ratelimit;
pub(crate) mod registry;
pub mod server;
pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod ws;
