//! The WebSocket transport of one upgraded connection: frames in, frames out. It knows
//! RFC 6455 (tungstenite on the bare TCP stream, close codes of the transport) and nothing of
//! the chat protocol or of metrics: it reports what happened and its session decides.

mod stream;

pub(crate) use stream::*;
