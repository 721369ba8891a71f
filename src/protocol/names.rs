//! The closed sets of names of protocol v1, each declared once: error codes, goodbye reasons,
//! why a connection ended, and the message types as counted. Their names are what the wire
//! says and what the metrics label (`websocket_errors_total{code}`,
//! `websocket_disconnects_total{reason}`, `websocket_messages_total{type}`).

use crate::label::{Label, labels};

labels! {
    /// Error codes of `error` messages (and of `websocket_errors_total{code}`).
    pub enum ErrorCode {
        InvalidJson = "invalid_json",
        InvalidMessage = "invalid_message",
        UnknownType = "unknown_type",
        MessageTooLarge = "message_too_large",
        RateLimited = "rate_limited",
        UnsupportedFrame = "unsupported_frame",
        /// A WebSocket protocol violation (bad framing, invalid UTF-8): counted, never sent as an
        /// `error` message because the connection is closed with 1002 or 1007 instead.
        WebsocketProtocol = "websocket_protocol",
        /// v1.1: a missing or bad `channel`.
        InvalidChannel = "invalid_channel",
        NotSubscribed = "not_subscribed",
        AlreadySubscribed = "already_subscribed",
        SubscriptionLimit = "subscription_limit",
        ChannelLimit = "channel_limit",
        /// The connection's identity may not use this channel.
        Forbidden = "forbidden",
        BrokerUnavailable = "broker_unavailable",
    }
}

labels! {
    /// Why the server ended a subscription itself (`unsubscribed.reason`).
    pub enum UnsubscribeReason {
        /// A gap in the channel's offsets could not be excluded (the client's queue
        /// overflowed): subscribe again with `recover`.
        InsufficientState = "insufficient_state",
    }
}

labels! {
    /// Why the server says `goodbye`; each reason has its close code and reconnect advice.
    pub enum GoodbyeReason {
        ServerShutdown = "server_shutdown",
        IdleTimeout = "idle_timeout",
        Replaced = "replaced",
        PolicyViolation = "policy_violation",
        MessageTooLarge = "message_too_large",
        SlowConsumer = "slow_consumer",
    }
}

impl GoodbyeReason {
    /// The WebSocket close code sent after the goodbye.
    pub fn close_code(self) -> u16 {
        match self {
            GoodbyeReason::ServerShutdown => 1001,
            GoodbyeReason::IdleTimeout | GoodbyeReason::Replaced => 1000,
            GoodbyeReason::PolicyViolation => 1008,
            GoodbyeReason::MessageTooLarge => 1009,
            // "Try Again Later": the client did nothing wrong on purpose, its link was too slow.
            GoodbyeReason::SlowConsumer => 1013,
        }
    }

    /// Whether the client should reconnect (to this or another server).
    pub fn reconnect(self) -> bool {
        matches!(
            self,
            GoodbyeReason::ServerShutdown | GoodbyeReason::SlowConsumer
        )
    }
}

labels! {
    /// An ending nobody announced with a `goodbye`, caused on the peer's side.
    pub enum PeerEnding {
        /// The client sent a close frame.
        ClientClose = "client_close",
        /// Nothing came from the peer for two heartbeat intervals: dropped without a close.
        DeadPeer = "dead_peer",
        /// The connection broke: a reset, an end of stream without a close, a failed write,
        /// a frame that could not be read.
        TransportError = "transport_error",
    }
}

/// Why a connection ended: the one reason behind the `goodbye` said (if any), the
/// `websocket_disconnects_total{reason}` label and the `REASON` log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The server ended it for this reason: with a `goodbye` and the reason's close code on
    /// chat, with the close code alone on echo.
    Goodbye(GoodbyeReason),
    /// The peer's side ended it.
    Peer(PeerEnding),
}

impl DisconnectReason {
    pub const CLIENT_CLOSE: DisconnectReason = DisconnectReason::Peer(PeerEnding::ClientClose);
    pub const DEAD_PEER: DisconnectReason = DisconnectReason::Peer(PeerEnding::DeadPeer);
    pub const TRANSPORT_ERROR: DisconnectReason =
        DisconnectReason::Peer(PeerEnding::TransportError);

    /// Every reason: the goodbye reasons, then the peer's endings.
    pub const ALL: &'static [DisconnectReason] = &DISCONNECT_REASONS;

    /// The label value and log field.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Goodbye(reason) => reason.as_str(),
            DisconnectReason::Peer(ending) => ending.as_str(),
        }
    }
}

const DISCONNECT_REASON_COUNT: usize = GoodbyeReason::ALL.len() + PeerEnding::ALL.len();

/// Built from the two sets, so that a value added to either is a disconnect reason too.
const DISCONNECT_REASONS: [DisconnectReason; DISCONNECT_REASON_COUNT] = {
    let mut all = [DisconnectReason::CLIENT_CLOSE; DISCONNECT_REASON_COUNT];
    let mut i = 0;
    while i < GoodbyeReason::ALL.len() {
        all[i] = DisconnectReason::Goodbye(GoodbyeReason::ALL[i]);
        i += 1;
    }
    let mut j = 0;
    while j < PeerEnding::ALL.len() {
        all[i + j] = DisconnectReason::Peer(PeerEnding::ALL[j]);
        j += 1;
    }
    all
};

impl Label for DisconnectReason {
    const ALL: &'static [Self] = DisconnectReason::ALL;

    fn name(self) -> &'static str {
        self.as_str()
    }

    fn index(self) -> usize {
        match self {
            DisconnectReason::Goodbye(reason) => reason.index(),
            DisconnectReason::Peer(ending) => GoodbyeReason::ALL.len() + ending.index(),
        }
    }
}

labels! {
    /// The `type` of a client frame as counted: a valid request's type, or `invalid` for one
    /// answered with an `error` (or a binary frame).
    pub enum ClientType {
        Message = "message",
        Ping = "ping",
        Subscribe = "subscribe",
        Unsubscribe = "unsubscribe",
        Publish = "publish",
        Invalid = "invalid",
    }
}

labels! {
    /// The `type` of a server message.
    pub enum ServerType {
        ConnectionEstablished = "connection_established",
        Heartbeat = "heartbeat",
        MessageResponse = "message_response",
        Pong = "pong",
        Error = "error",
        Goodbye = "goodbye",
        Subscribed = "subscribed",
        Unsubscribed = "unsubscribed",
        Published = "published",
        Publication = "publication",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::is_consistent;

    #[test]
    fn every_set_lists_each_value_at_its_index() {
        assert!(is_consistent::<ErrorCode>());
        assert!(is_consistent::<GoodbyeReason>());
        assert!(is_consistent::<PeerEnding>());
        assert!(is_consistent::<DisconnectReason>());
        assert!(is_consistent::<ClientType>());
        assert!(is_consistent::<ServerType>());
        assert!(is_consistent::<UnsubscribeReason>());
    }

    #[test]
    fn disconnect_reasons_are_the_goodbyes_and_the_peer_endings() {
        let names: Vec<&str> = DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "server_shutdown",
                "idle_timeout",
                "replaced",
                "policy_violation",
                "message_too_large",
                "slow_consumer",
                "client_close",
                "dead_peer",
                "transport_error"
            ]
        );
    }

    #[test]
    fn names_serialise_as_themselves() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::WebsocketProtocol).unwrap(),
            r#""websocket_protocol""#
        );
        assert_eq!(
            serde_json::to_string(&GoodbyeReason::SlowConsumer).unwrap(),
            r#""slow_consumer""#
        );
    }
}
