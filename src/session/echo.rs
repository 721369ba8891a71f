//! `/ws/echo` (when `ENABLE_ECHO=true`): every text and binary frame goes back unchanged, on the
//! same WebSocket settings, cap and drain as `/ws/chat`, so conformance suites (Autobahn) test
//! the stack the chat protocol runs on. No heartbeats or pings: a conformance client must see
//! only its own traffic.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use crate::metrics::DisconnectReason;
use crate::registry::{Admission, Control};
use crate::state::AppState;
use crate::ws::{self, Full, Io, Outbox, ReadFailure, WebSocket};

pub async fn run(mut socket: WebSocket, state: Arc<AppState>, admission: Admission, peer: IpAddr) {
    let opened = Instant::now();
    let registration = state.open_connection(admission, None);
    debug!(peer = %peer, "echo connection opened");
    let reason = echo_until_the_end(&mut socket, &state, registration.control(), opened).await;
    state.count_closed(reason, opened);
    debug!(peer = %peer, reason = reason.as_str(), "echo connection closed");
}

/// What to do after one socket event.
enum Next {
    Continue,
    /// Close with this code and reason string.
    Close(u16, &'static str, DisconnectReason),
    /// The connection is over.
    Over(DisconnectReason),
}

/// Echoes frames until the connection ends; returns why it ended.
async fn echo_until_the_end(
    socket: &mut WebSocket,
    state: &AppState,
    control: &Control,
    opened: Instant,
) -> DisconnectReason {
    let metrics = &state.metrics;
    // Echoes may be as large as the hard limit; the outbox holds one of them plus the next.
    let mut outbox = Outbox::new(
        state.config.max_message_bytes * ws::HARD_LIMIT_FACTOR,
        opened,
    );
    let idle_timeout = state.config.connection_timeout;
    let mut last_message = opened;
    let mut timer = pin!(sleep_until((opened + idle_timeout).into()));
    let mut received_close = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = control.recv() => Next::Close(1001, "server shutdown", DisconnectReason::ServerShutdown),
            () = &mut timer => {
                if Instant::now() >= last_message + idle_timeout {
                    Next::Close(1000, "idle timeout", DisconnectReason::IdleTimeout)
                } else {
                    timer.as_mut().reset((last_message + idle_timeout).into());
                    Next::Continue
                }
            }
            io = ws::next_io(socket, &mut outbox, metrics) => match io {
                Io::Read(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                    last_message = Instant::now();
                    match outbox.push(message, None) {
                        Ok(()) => Next::Continue,
                        Err(Full) => Next::Close(1013, "slow consumer", DisconnectReason::SlowConsumer),
                    }
                }
                Io::Read(Some(Ok(Message::Close(_)))) => {
                    received_close = true;
                    Next::Continue
                }
                Io::Read(Some(Ok(_))) => Next::Continue,
                Io::Read(Some(Err(error))) => {
                    let failure = ReadFailure::classify(&error);
                    if let Some(code) = failure.error_code() {
                        metrics.error(code);
                    }
                    if let Some(frame) = failure.close_frame() {
                        ws::close_after_read_error(socket, &mut outbox, metrics, vec![Message::Close(Some(frame))]).await;
                    }
                    Next::Over(failure.disconnect_reason())
                }
                Io::Read(None) if received_close => Next::Over(DisconnectReason::ClientClose),
                Io::Read(None) | Io::WriteFailed => Next::Over(DisconnectReason::TransportError),
            },
        };
        match next {
            Next::Continue => {}
            Next::Close(code, why, reason) => {
                ws::close_gracefully(socket, &mut outbox, metrics, ws::close_frame(code, why))
                    .await;
                return reason;
            }
            Next::Over(reason) => return reason,
        }
    }
}
