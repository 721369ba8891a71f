//! The WebSocket transport of one upgraded connection: frames in, frames out. It knows
//! RFC 6455 (its own frame reader and writer on the bare TCP stream, tungstenite's frame
//! types, the transport's close codes) and nothing of
//! the chat protocol or of metrics: it reports what happened (a frame, why a read failed, a
//! failed write, each answer's latency) and its session decides codes, reasons and counts.
//! The same shape as mini-redis's `Connection` (frames) under its `Handler` (commands).

mod close;
mod cork;
mod detach;
mod frames;
mod outbox;
mod spare;
mod stream;
mod utf8;

pub(crate) use close::{close_after_read_error, close_frame, close_gracefully};
pub(crate) use cork::{Io, next_io, poll_io};
pub(crate) use detach::{Detached, detach, resume};
pub(crate) use frames::{Incoming, ReadFailure};
pub(crate) use outbox::{Full, Outbox};
pub(crate) use stream::{HARD_LIMIT_FACTOR, WebSocket};
