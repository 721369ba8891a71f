//! HTTP: the public router (the test page, `/health`, `/ready`, and the WebSocket routes with
//! their admission: Origin, client IP, draining, limits), the WebSocket opening handshake, and
//! the metrics listener's `/metrics`. An admitted upgrade is handed to its session.

mod admission;
mod auth;
mod client;
mod metrics;
mod origin;
mod response;
mod router;
mod upgrade;

pub(crate) use client::{client_key, is_trusted};
pub(crate) use metrics::router as metrics_router;
pub(crate) use router::router;
