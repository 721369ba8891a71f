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

use super::ending::{self, Farewell, answered_into};
use crate::protocol::{DisconnectReason, GoodbyeReason};
use crate::registry::{Admission, Control};
use crate::state::AppState;
use crate::ws::{self, Full, Io, Outbox, WebSocket};

pub async fn run(mut socket: WebSocket, state: Arc<AppState>, admission: Admission, peer: IpAddr) {
    let opened = Instant::now();
    let registration = state.open_connection(admission);
    debug!(peer = %peer, "echo connection opened");
    let reason = echo_until_the_end(&mut socket, &state, registration.control(), opened).await;
    state.count_closed(reason, opened);
    debug!(peer = %peer, reason = reason.as_str(), "echo connection closed");
}

/// What to do after one socket event.
enum Next {
    Continue,
    /// Close with the reason's code and this reason string (echo says no `goodbye`).
    Close(GoodbyeReason, &'static str),
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
            _ = control.recv() => Next::Close(GoodbyeReason::ServerShutdown, "server shutdown"),
            () = &mut timer => {
                if Instant::now() >= last_message + idle_timeout {
                    Next::Close(GoodbyeReason::IdleTimeout, "idle timeout")
                } else {
                    timer.as_mut().reset((last_message + idle_timeout).into());
                    Next::Continue
                }
            }
            io = ws::next_io(socket, &mut outbox, answered_into(metrics)) => match io {
                Io::Read(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                    last_message = Instant::now();
                    match outbox.push(message, None) {
                        Ok(()) => Next::Continue,
                        Err(Full) => Next::Close(GoodbyeReason::SlowConsumer, "slow consumer"),
                    }
                }
                Io::Read(Some(Ok(Message::Close(_)))) => {
                    received_close = true;
                    Next::Continue
                }
                Io::Read(Some(Ok(_))) => Next::Continue,
                Io::Read(Some(Err(failure))) => {
                    let (reason, _) = ending::after_read_failure(
                        socket, &mut outbox, metrics, failure, Farewell::CloseFrameOnly,
                    ).await;
                    Next::Over(reason)
                }
                Io::Read(None) if received_close => Next::Over(DisconnectReason::CLIENT_CLOSE),
                Io::Read(None) | Io::WriteFailed => Next::Over(DisconnectReason::TRANSPORT_ERROR),
            },
        };
        match next {
            Next::Continue => {}
            Next::Close(reason, text) => {
                let (reason, _) =
                    ending::close_for(socket, &mut outbox, metrics, reason, text).await;
                return reason;
            }
            Next::Over(reason) => return reason,
        }
    }
}
