//! `/ws/echo` (when `ENABLE_ECHO=true`): every text and binary frame goes back unchanged, on the
//! same WebSocket settings, cap and drain as `/ws/chat`, so conformance suites (Autobahn) test
//! the stack the chat protocol runs on. No heartbeats or pings: a conformance client must see
//! only its own traffic.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use tokio::time::sleep_until;
use tracing::debug;

use crate::app::AppState;
use crate::metrics::DisconnectReason;
use crate::protocol::ErrorCode;
use crate::registry::Admission;
use crate::socket::{self, Io, Outbox, ReadFailure};

pub async fn run(mut ws: WebSocket, state: Arc<AppState>, admission: Admission, peer: IpAddr) {
    let opened = Instant::now();
    let registration = state.open_connection(admission, None);
    let metrics = &state.metrics;
    debug!(peer = %peer, "echo connection opened");

    // Echoes may be as large as the hard limit; the outbox holds one of them plus the next.
    let mut outbox = Outbox::new(
        state.config.max_message_bytes * socket::HARD_LIMIT_FACTOR,
        opened,
    );
    let idle_timeout = state.config.connection_timeout;
    let mut last_message = opened;
    let mut timer = pin!(sleep_until((opened + idle_timeout).into()));
    let mut received_close = false;
    let reason = loop {
        tokio::select! {
            biased;
            _ = registration.control().recv() => {
                let frame = socket::close_frame(1001, "server shutdown");
                socket::close_gracefully(&mut ws, &mut outbox, metrics, frame).await;
                break DisconnectReason::ServerShutdown;
            }
            () = &mut timer => {
                if Instant::now() >= last_message + idle_timeout {
                    let frame = socket::close_frame(1000, "idle timeout");
                    socket::close_gracefully(&mut ws, &mut outbox, metrics, frame).await;
                    break DisconnectReason::IdleTimeout;
                }
                timer.as_mut().reset((last_message + idle_timeout).into());
            }
            io = socket::next_io(&mut ws, &mut outbox, metrics) => match io {
                Io::Read(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                    last_message = Instant::now();
                    if outbox.push(message, None).is_err() {
                        let frame = socket::close_frame(1013, "slow consumer");
                        socket::close_gracefully(&mut ws, &mut outbox, metrics, frame).await;
                        break DisconnectReason::SlowConsumer;
                    }
                }
                Io::Read(Some(Ok(Message::Close(_)))) => received_close = true,
                Io::Read(Some(Ok(_))) => {}
                Io::Read(Some(Err(error))) => {
                    let failure = ReadFailure::classify(&error);
                    if let Some(frame) = failure.close_frame() {
                        metrics.error(if failure == ReadFailure::TooLarge { ErrorCode::MessageTooLarge } else { ErrorCode::WebsocketProtocol });
                        socket::close_after_read_error(&mut ws, &mut outbox, vec![Message::Close(Some(frame))]).await;
                    }
                    break if failure == ReadFailure::TooLarge { DisconnectReason::MessageTooLarge } else { DisconnectReason::TransportError };
                }
                Io::Read(None) if received_close => break DisconnectReason::ClientClose,
                Io::Read(None) | Io::WriteFailed(_) => break DisconnectReason::TransportError,
            },
        }
    };
    state.count_closed(reason, opened);
    debug!(peer = %peer, reason = reason.as_str(), "echo connection closed");
    drop(registration);
}
