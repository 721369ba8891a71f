//! concurrent-socket: a WebSocket server speaking protocol v1 (docs/protocol.md), built to hold
//! tens of thousands of connections per host and to be deployed several times a day without
//! dropping clients. `main.rs` parses the command line and calls [`server::run`].
//!
//! # Layout
//!
//! Layers, top first. A module uses only the layers below its own, never one beside or above
//! it (`ci/check_layers.py` fails CI otherwise; docs/architecture.md, "Source layout").
//!
//! * `server`: the process. `run` takes the sockets from systemd or binds them, serves both
//!   listeners (the accept loop, PROXY headers from trusted load balancers), talks sd_notify,
//!   and drains every WebSocket on SIGTERM.
//! * `http`: the public router with the admission of an upgrade (the upgrade rate per client
//!   IP, Origin, client IP, draining, connection id, capacity, per-IP, the `Authorization`
//!   token), the WebSocket handshake, and the metrics router.
//! * `session`: what runs on an upgraded WebSocket until it ends: the chat session
//!   (protocol v1 and v1.1's channel requests, `subscriptions`; its credentials, `auth`;
//!   the frame limits, `frames`), the echo session, and how a session ends.
//! * `ws`: the transport of one WebSocket: frames in and out, the bounded outbox, write
//!   corking, the close handshake. It knows neither the protocol nor the metrics.
//! * `state`: `AppState`, what every handler and connection shares, and the accounting of a
//!   WebSocket's opening and closing.
//! * `channels`: protocol v1.1's channels of the process: the `Broker` seam and its
//!   in-memory engine (offsets, epochs, history), the hub that fans publications out into
//!   the connections' inboxes.
//! * `metrics`: every Prometheus series, created at start-up for every label value.
//! * `protocol`: the wire protocol, pure: client messages parsed, server messages written,
//!   and the closed sets of names (error codes, goodbye and disconnect reasons, message
//!   types) that the wire and the metrics share.
//! * `auth`: token verification, pure: a JWT checked against the key of `config` into an
//!   identity (user, allowed channels, expiry) or a typed refusal.
//! * foundation: `config`, `lifecycle` (phase, drain timing), `registry` (admission slots,
//!   connection ids and who may replace whose, live connections and their mailboxes), `ratelimit`, `logging`, `memory` (freed memory
//!   back to the OS), `faults` (test builds), `label` (how a set of names is declared).
//!
//! # One message's path
//!
//! 1. `server::serve` accepts the TCP connection and runs hyper on it; the upgrade request
//!    reaches `http::router`.
//! 2. `http::admission` checks it and reserves a slot in `registry`; `http::upgrade` answers
//!    `101` and takes the TCP stream back from hyper.
//! 3. `session::chat::run` registers the connection (`state`), claims its id in `registry`
//!    and says `connection_established` (with tokens on, once `auth` accepted the token: the
//!    upgrade's, or the first frame's), then waits on `ws::next_io`, beside its timer and its mailbox.
//! 4. A text frame arrives: `ws` reads it on the bare stream (its own frame reader, UTF-8
//!    checked as bytes arrive) and returns it.
//! 5. The session spends a frame and a message `ratelimit` token, parses the frame
//!    (`protocol`), counts it (`metrics`) and queues the serialised answer in its outbox.
//! 6. Before the task sleeps again, `ws` writes every answer of the wake-up in one `write`
//!    and reports each answer's latency, which the session records.

pub mod auth;
pub(crate) mod channels;
pub mod config;
#[cfg(feature = "fault-injection")]
pub(crate) mod faults;
pub(crate) mod http;
pub(crate) mod label;
pub(crate) mod lifecycle;
pub mod logging;
pub(crate) mod memory;
pub(crate) mod metrics;
pub mod protocol;
pub(crate) mod ratelimit;
pub(crate) mod registry;
pub mod server;
pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod ws;
