//! How a session ends, the same on every endpoint: the code, count and close that a read
//! failure calls for, the closing handshake after the server's decision to end, the `goodbye`
//! frame, and the latency samples of the answers written on the way.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::metrics::Metrics;
use crate::protocol::{
    DisconnectReason, ErrorCode, GoodbyeReason, ServerMessage, ServerType, now_ms,
};
use crate::ws::{self, Outbox, ReadFailure, WebSocket};

/// Where the transport's latency samples go: `websocket_message_latency_seconds`.
pub(crate) fn answered_into(metrics: &Metrics) -> impl Fn(Duration) + Copy + '_ {
    move |latency| metrics.message_latency.observe(latency.as_secs_f64())
}

/// The `goodbye` text frame for `reason`, counted as sent.
pub(crate) fn goodbye_frame(reason: GoodbyeReason, metrics: &Metrics) -> Message {
    let goodbye = ServerMessage::goodbye(reason, now_ms());
    metrics.message_out(ServerType::Goodbye);
    Message::Text(goodbye.to_json().into())
}

/// The `websocket_errors_total` code a read failure counts, if the peer misbehaved.
fn error_code(failure: ReadFailure) -> Option<ErrorCode> {
    match failure {
        ReadFailure::TooLarge => Some(ErrorCode::MessageTooLarge),
        ReadFailure::Protocol | ReadFailure::InvalidUtf8 => Some(ErrorCode::WebsocketProtocol),
        ReadFailure::Transport => None,
    }
}

/// Why a connection ended on a read failure.
fn disconnect_reason(failure: ReadFailure) -> DisconnectReason {
    match failure {
        ReadFailure::TooLarge => DisconnectReason::Goodbye(GoodbyeReason::MessageTooLarge),
        _ => DisconnectReason::TRANSPORT_ERROR,
    }
}

/// Whether the session speaks protocol v1, and so says `goodbye` before a 1009 close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Farewell {
    Goodbye,
    CloseFrameOnly,
}

/// Ends a session whose read failed: counts the error, writes what can still be written (the
/// `goodbye` of an oversized message, if the session says goodbyes, then the close frame).
/// Returns why it ended and the close code sent, if any.
pub(crate) async fn after_read_failure(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    failure: ReadFailure,
    farewell: Farewell,
) -> (DisconnectReason, Option<u16>) {
    if let Some(code) = error_code(failure) {
        metrics.error(code);
    }
    let Some(close) = failure.close_frame() else {
        return (disconnect_reason(failure), None);
    };
    let close_code = u16::from(close.code);
    let mut last_words = Vec::new();
    if failure == ReadFailure::TooLarge && farewell == Farewell::Goodbye {
        last_words.push(goodbye_frame(GoodbyeReason::MessageTooLarge, metrics));
    }
    last_words.push(Message::Close(Some(close)));
    ws::close_after_read_error(socket, outbox, answered_into(metrics), last_words).await;
    (disconnect_reason(failure), Some(close_code))
}

/// Ends a session the server decided to end for `reason`: what is queued (the goodbye last,
/// on chat) is written, then the close frame with the reason's code and `text`, and the
/// peer's close is awaited, `wait` at most (the drain plan's close wait).
pub(crate) async fn close_for(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    reason: GoodbyeReason,
    text: &'static str,
    wait: Duration,
) -> (DisconnectReason, Option<u16>) {
    let frame = ws::close_frame(reason.close_code(), text);
    ws::close_gracefully(socket, outbox, answered_into(metrics), frame, wait).await;
    (DisconnectReason::Goodbye(reason), Some(reason.close_code()))
}
