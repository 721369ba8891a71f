//! The I/O side of one upgraded WebSocket, driven from the connection's single task: a
//! bounded outbound queue written as fast as the peer reads, reading frames at the same time,
//! the WebSocket settings that keep an idle socket small, how read errors map to close codes,
//! and the bounded closing handshake.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

use crate::metrics::{DisconnectReason, Metrics};
use crate::protocol::ErrorCode;

/// tungstenite reads into a buffer of this size (its default, 128 KiB, is allocated and
/// zero-filled for every socket up front). Larger frames still arrive whole: the buffer is
/// grown to the announced frame length.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Frames larger than this many times `MAX_MESSAGE_BYTES` are not read at all: the
/// connection is closed with 1009. Between 1x and this, the message is read and answered with
/// an `error` `message_too_large`.
pub const HARD_LIMIT_FACTOR: usize = 4;
/// How long a closing handshake may take before the TCP connection is dropped.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection stays open after the close frame that ends a read error. The stream
/// cannot be read any more (tokio-tungstenite fuses it after an error), so the peer's unread
/// bytes (the rest of an oversized frame, say) make the kernel answer our close with an RST;
/// without this pause the RST overtakes the close frame in browsers: Chromium reports 1006
/// instead of 1009 (ci/suites/21-browser.sh).
pub const CLOSE_LINGER: Duration = Duration::from_millis(250);

/// Applies the per-socket WebSocket settings to an upgrade.
pub fn configure<F>(upgrade: WebSocketUpgrade<F>, max_message_bytes: usize) -> WebSocketUpgrade<F> {
    let hard_limit = max_message_bytes.saturating_mul(HARD_LIMIT_FACTOR);
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write every message to the kernel at once: no user-space write buffer to hold.
        .write_buffer_size(0)
        // A safety net only: the outbox below hands tungstenite one frame at a time.
        .max_write_buffer_size(hard_limit.saturating_mul(2))
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
}

/// A message waiting to be written, with when its request was read (for the latency metric).
struct Outgoing {
    message: Message,
    received: Option<Instant>,
}

/// The bounded outbound queue of one connection.
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    limit_bytes: usize,
    unflushed: bool,
    last_progress: Instant,
}

/// The outbox is over its byte bound: the peer does not read fast enough.
#[derive(Debug)]
pub struct Full;

impl Outbox {
    pub fn new(limit_bytes: usize, now: Instant) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            limit_bytes,
            unflushed: false,
            last_progress: now,
        }
    }

    /// Queues a message. One message is always accepted into an empty queue, whatever its size.
    pub fn push(&mut self, message: Message, received: Option<Instant>) -> Result<(), Full> {
        let size = message_len(&message);
        if !self.queue.is_empty() && self.queued_bytes + size > self.limit_bytes {
            return Err(Full);
        }
        self.queued_bytes += size;
        self.queue.push_back(Outgoing { message, received });
        Ok(())
    }

    /// Queues a connection's last message (goodbye, close frame) past the bound.
    pub fn push_last(&mut self, message: Message) {
        self.queued_bytes += message_len(&message);
        self.queue.push_back(Outgoing {
            message,
            received: None,
        });
    }

    /// Drops everything queued (a slow consumer will not read it anyway).
    pub fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.queued_bytes = 0;
    }

    /// How long writing has been stuck, if something is waiting to be written.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        (!self.queue.is_empty()).then(|| now.saturating_duration_since(self.last_progress))
    }

    fn pop(&mut self) -> Option<Outgoing> {
        let out = self.queue.pop_front()?;
        self.queued_bytes -= message_len(&out.message);
        if self.queue.is_empty() {
            // Give the memory back: an idle socket should hold no queue at all.
            self.queue = VecDeque::new();
        }
        Some(out)
    }
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
    }
}

/// What happened on the socket.
pub enum Io {
    /// A frame, `None` when the stream ended, or a read error.
    Read(Option<Result<Message, axum::Error>>),
    /// Writing failed: the connection is gone.
    WriteFailed(axum::Error),
}

/// Writes what the outbox holds as far as the socket accepts it, then waits for the next
/// incoming frame. Cancel-safe: nothing leaves the outbox before tungstenite has taken it.
pub async fn next_io(socket: &mut WebSocket, outbox: &mut Outbox, metrics: &Metrics) -> Io {
    poll_fn(|cx| poll_io(socket, outbox, metrics, cx)).await
}

fn poll_io(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    cx: &mut Context<'_>,
) -> Poll<Io> {
    while !outbox.queue.is_empty() {
        match socket.poll_ready_unpin(cx) {
            Poll::Ready(Ok(())) => {
                let out = outbox.pop().expect("queue is not empty");
                if let Err(e) = socket.start_send_unpin(out.message) {
                    return Poll::Ready(Io::WriteFailed(e));
                }
                // With write_buffer_size 0, start_send has written the frame to the kernel
                // (or parked it in tungstenite if the kernel buffer was full).
                let now = Instant::now();
                outbox.last_progress = now;
                outbox.unflushed = true;
                if let Some(received) = out.received {
                    metrics
                        .message_latency
                        .observe(now.duration_since(received).as_secs_f64());
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Io::WriteFailed(e)),
            Poll::Pending => break,
        }
    }
    if outbox.unflushed {
        match socket.poll_flush_unpin(cx) {
            Poll::Ready(Ok(())) => outbox.unflushed = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Io::WriteFailed(e)),
            Poll::Pending => {}
        }
    }
    socket.poll_next_unpin(cx).map(Io::Read)
}

/// The close code a read error calls for, when the peer can still be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFailure {
    /// The message or frame is over the hard limit: close 1009.
    TooLarge,
    /// Bad framing or control frames: close 1002.
    Protocol,
    /// A text frame that is not UTF-8: close 1007.
    InvalidUtf8,
    /// The connection is gone (reset, EOF without close): nothing to send.
    Transport,
}

impl ReadFailure {
    pub fn classify(error: &axum::Error) -> ReadFailure {
        use tungstenite::error::{Error as WsError, ProtocolError};
        let inner = std::error::Error::source(error).and_then(|e| e.downcast_ref::<WsError>());
        match inner {
            Some(WsError::Capacity(_)) => ReadFailure::TooLarge,
            Some(WsError::Utf8(_)) => ReadFailure::InvalidUtf8,
            Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                ReadFailure::Transport
            }
            Some(WsError::Protocol(_)) => ReadFailure::Protocol,
            _ => ReadFailure::Transport,
        }
    }

    /// The `websocket_errors_total` code to count, if the peer misbehaved.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            ReadFailure::TooLarge => Some(ErrorCode::MessageTooLarge),
            ReadFailure::Protocol | ReadFailure::InvalidUtf8 => Some(ErrorCode::WebsocketProtocol),
            ReadFailure::Transport => None,
        }
    }

    /// The `websocket_disconnects_total` reason.
    pub fn disconnect_reason(self) -> DisconnectReason {
        match self {
            ReadFailure::TooLarge => DisconnectReason::MessageTooLarge,
            _ => DisconnectReason::TransportError,
        }
    }

    /// The close frame for the peer, if one can be sent.
    pub fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            ReadFailure::TooLarge => (1009, "message too large"),
            ReadFailure::Protocol => (1002, "protocol error"),
            ReadFailure::InvalidUtf8 => (1007, "invalid utf-8"),
            ReadFailure::Transport => return None,
        };
        Some(close_frame(code, reason))
    }
}

pub fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Sends what is queued and the close frame, then waits (bounded) for the peer's close so
/// that the handshake completes; returns when the connection may be dropped.
pub async fn close_gracefully(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    frame: CloseFrame,
) {
    outbox.push_last(Message::Close(Some(frame)));
    let handshake = async {
        loop {
            match next_io(socket, outbox, metrics).await {
                Io::Read(Some(Ok(_))) => continue,
                Io::Read(None | Some(Err(_))) | Io::WriteFailed(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, handshake).await;
}

/// After a read error the stream is finished; only `last_words` (a goodbye, then the close
/// frame) can still be written.
pub async fn close_after_read_error(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    last_words: Vec<Message>,
) {
    outbox.clear();
    let write = async {
        for message in last_words {
            socket.feed(message).await?;
        }
        socket.flush().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, write).await {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
}
