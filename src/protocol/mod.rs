//! Wire protocol v1 (docs/protocol.md): the client messages and their validation into protocol
//! error codes, the server messages and their serialisation, and the closed sets of names
//! (error codes, goodbye reasons with their close codes, why a connection ended, message
//! types) that the wire and the metrics share. Pure functions, no I/O.

mod channel;
mod client;
mod names;
mod server;

pub use channel::{MAX_CHANNEL_CHARS, Recover, is_valid_channel};
pub use client::{
    ClientMessage, MAX_CONNECTION_ID_CHARS, MAX_ID_CHARS, ProtocolError, is_valid_connection_id,
    parse_client_frame,
};
pub use names::{
    ClientType, DisconnectReason, ErrorCode, GoodbyeReason, PeerEnding, ServerType,
    UnsubscribeReason,
};
pub use server::{PublicationItem, ServerMessage, now_ms};
