//! Load generator for concurrent-socket: protocol v1 virtual users, channel (v1.1) scenarios,
//! scenario shapes, HDR-histogram statistics merged across worker processes, thresholds and
//! reports.

pub mod aggregate;
pub mod channels;
pub mod cli;
pub mod engine;
pub mod html;
pub mod net;
pub mod profile;
pub mod progress;
pub mod report;
pub mod runner;
pub mod stats;
pub mod thresholds;
pub mod tls;
pub mod vuser;
pub mod workers;
