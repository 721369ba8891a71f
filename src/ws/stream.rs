//! The I/O side of one upgraded WebSocket, driven from the connection's single task: the
//! WebSocket protocol (tungstenite) on the connection's own TCP stream, a bounded outbound
//! queue written as fast as the peer reads, with all the frames of one wake-up corked into
//! one `write`, reading frames at the same time, the settings that keep an idle socket small,
//! how read errors map to close codes, and the bounded closing handshake.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::metrics::{DisconnectReason, Metrics};
use crate::protocol::ErrorCode;

/// tungstenite reads into a buffer of this size (its default, 128 KiB, is allocated and
/// zero-filled for every socket up front). Larger frames still arrive whole: the buffer is
/// grown to the announced frame length.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Frames queued in one wake-up are gathered up to this many bytes before tungstenite writes
/// them: one `write` system call carries every answer of a wake-up (a pipelining client, a
/// heartbeat with its ping) instead of one call per frame.
pub const CORK_BYTES: usize = 16 * 1024;
/// Frames larger than this many times `MAX_MESSAGE_BYTES` are not read at all: the
/// connection is closed with 1009. Between 1x and this, the message is read and answered with
/// an `error` `message_too_large`.
pub const HARD_LIMIT_FACTOR: usize = 4;
/// How long a closing handshake may take before the TCP connection is dropped.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection stays open after the close frame that ends a read error. The stream
/// cannot be read any more after an error, so the peer's unread bytes (the rest of an
/// oversized frame, say) make the kernel answer our close with an RST; without this pause the
/// RST overtakes the close frame in browsers: Chromium reports 1006 instead of 1009
/// (ci/suites/21-browser.sh).
pub const CLOSE_LINGER: Duration = Duration::from_millis(250);

/// An upgraded WebSocket: tungstenite's protocol state on the bare TCP stream.
pub struct WebSocket {
    stream: TcpStream,
    protocol: WebSocketContext,
    /// The stream ended or failed: reading yields nothing more.
    ended: bool,
}

impl WebSocket {
    /// Starts the WebSocket protocol on an upgraded connection, with the per-socket settings.
    /// `already_read`: the bytes the HTTP server read past the upgrade request.
    pub fn new(stream: TcpStream, already_read: Vec<u8>, max_message_bytes: usize) -> WebSocket {
        let protocol = WebSocketContext::from_partially_read(
            already_read,
            Role::Server,
            Some(config(max_message_bytes)),
        );
        WebSocket {
            stream,
            protocol,
            ended: false,
        }
    }

    /// The next frame, `None` once the stream has ended, or a read error (after which the
    /// stream has ended too). Pending until a whole frame has arrived.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut io = TaskIo::new(&mut self.stream, cx);
        match self.protocol.read(&mut io) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(error) if would_block(&error) => Poll::Pending,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Err(error) => {
                self.ended = true;
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    /// Hands `message` to tungstenite; `Ok(false)` when it was taken but the kernel's send
    /// buffer is full, so that nothing more should be added until a flush gets through.
    fn write(&mut self, message: Message, cx: &mut Context<'_>) -> Result<bool, WsError> {
        let mut io = TaskIo::new(&mut self.stream, cx);
        match self.protocol.write(&mut io, message) {
            Ok(()) => Ok(true),
            Err(error) if would_block(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Writes what tungstenite holds; `Ok(false)` while the kernel does not take all of it.
    fn flush(&mut self, cx: &mut Context<'_>) -> Result<bool, WsError> {
        let mut io = TaskIo::new(&mut self.stream, cx);
        match self.protocol.flush(&mut io) {
            // A close handshake just completed: nothing is left to write.
            Ok(()) | Err(WsError::ConnectionClosed) => Ok(true),
            Err(error) if would_block(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

fn config(max_message_bytes: usize) -> WebSocketConfig {
    let hard_limit = max_message_bytes.saturating_mul(HARD_LIMIT_FACTOR);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(CORK_BYTES)
        // A safety net only: the outbox stops feeding tungstenite while the kernel is full.
        .max_write_buffer_size(CORK_BYTES + hard_limit.saturating_mul(2))
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

fn would_block(error: &WsError) -> bool {
    matches!(error, WsError::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// The TCP stream as tungstenite sees it: blocking-style `Read` and `Write` that answer
/// `WouldBlock` when the socket is not ready, after registering the task to be woken when it
/// is.
struct TaskIo<'a, 'b> {
    stream: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl<'a, 'b> TaskIo<'a, 'b> {
    fn new(stream: &'a mut TcpStream, cx: &'a mut Context<'b>) -> Self {
        TaskIo { stream, cx }
    }
}

fn ready<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for TaskIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        ready(Pin::new(&mut *self.stream).poll_read(self.cx, &mut buf))?;
        Ok(buf.filled().len())
    }
}

impl Write for TaskIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ready(Pin::new(&mut *self.stream).poll_write(self.cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        // TCP streams buffer nothing in user space.
        Ok(())
    }
}

/// A message waiting to be written, with when its request was read (for the latency metric).
struct Outgoing {
    message: Message,
    received: Option<Instant>,
}

/// The bounded outbound queue of one connection.
pub struct Outbox {
    /// The oldest queued message, kept inline: a connection that answers one request at a
    /// time queues and writes without allocating a queue.
    head: Option<Outgoing>,
    /// The messages behind `head`, in order; empty while `head` is `None`.
    rest: VecDeque<Outgoing>,
    queued_bytes: usize,
    limit_bytes: usize,
    /// Frames handed to tungstenite that the kernel has not taken yet.
    unflushed: bool,
    last_progress: Instant,
}

/// The outbox is over its byte bound: the peer does not read fast enough.
#[derive(Debug)]
pub struct Full;

impl Outbox {
    pub fn new(limit_bytes: usize, now: Instant) -> Outbox {
        Outbox {
            head: None,
            rest: VecDeque::new(),
            queued_bytes: 0,
            limit_bytes,
            unflushed: false,
            last_progress: now,
        }
    }

    /// Queues a message. One message is always accepted into an empty queue, whatever its size.
    pub fn push(&mut self, message: Message, received: Option<Instant>) -> Result<(), Full> {
        let size = message_len(&message);
        if !self.is_empty() && self.queued_bytes + size > self.limit_bytes {
            return Err(Full);
        }
        self.enqueue(Outgoing { message, received });
        Ok(())
    }

    /// Queues a connection's last message (goodbye, close frame) past the bound.
    pub fn push_last(&mut self, message: Message) {
        self.enqueue(Outgoing {
            message,
            received: None,
        });
    }

    fn enqueue(&mut self, out: Outgoing) {
        self.queued_bytes += message_len(&out.message);
        if self.head.is_none() {
            self.head = Some(out);
        } else {
            self.rest.push_back(out);
        }
    }

    /// Drops everything queued (a slow consumer will not read it anyway).
    pub fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
        self.queued_bytes = 0;
    }

    /// How long writing has been stuck, if something is waiting to be written.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        (!self.is_written()).then(|| now.saturating_duration_since(self.last_progress))
    }

    /// Whether enough is queued to be written now, more reading or not: a cork's worth, or
    /// half the bound (a small bound must not fill up while frames are still being read).
    fn is_corked_full(&self) -> bool {
        self.unflushed || self.queued_bytes >= CORK_BYTES.min(self.limit_bytes / 2)
    }

    /// Whether everything queued has reached the kernel.
    fn is_written(&self) -> bool {
        self.is_empty() && !self.unflushed
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn pop(&mut self) -> Option<Outgoing> {
        let out = self.head.take()?;
        self.queued_bytes -= message_len(&out.message);
        self.head = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // Give the memory back: an idle socket should hold no queue at all.
            self.rest = VecDeque::new();
        }
        Some(out)
    }
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
        Message::Frame(f) => f.len(),
    }
}

/// What happened on the socket.
pub enum Io {
    /// A frame, `None` when the stream ended, or a read error.
    Read(Option<Result<Message, WsError>>),
    /// Writing failed: the connection is gone.
    WriteFailed,
}

/// The next incoming frame; while none is ready, what the outbox holds is written, corked, as
/// far as the socket accepts it. Cancel-safe: nothing leaves the outbox before tungstenite
/// has taken it.
pub async fn next_io(socket: &mut WebSocket, outbox: &mut Outbox, metrics: &Metrics) -> Io {
    poll_fn(|cx| {
        // Frames already read are answered before anything is written, so that the answers
        // of one wake-up leave together; a client that keeps the read side busy still gets
        // its answers once they fill the cork.
        if outbox.is_corked_full() && send_queued(socket, outbox, metrics, cx).is_err() {
            return Poll::Ready(Io::WriteFailed);
        }
        if let Poll::Ready(read) = socket.poll_read(cx) {
            return Poll::Ready(Io::Read(read));
        }
        match send_queued(socket, outbox, metrics, cx) {
            Ok(()) => Poll::Pending,
            Err(_) => Poll::Ready(Io::WriteFailed),
        }
    })
    .await
}

/// Moves the outbox into tungstenite and writes it, corked: every frame queued since the last
/// wake-up goes out in one `write` when the kernel takes it. While the kernel's send buffer
/// is full, frames stay in the outbox, where its bound counts them; the task is woken when
/// the socket is writable again.
fn send_queued(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    cx: &mut Context<'_>,
) -> Result<(), WsError> {
    if outbox.is_written() {
        return Ok(());
    }
    let now = Instant::now();
    if outbox.unflushed {
        if !socket.flush(cx)? {
            return Ok(());
        }
        outbox.unflushed = false;
        outbox.last_progress = now;
    }
    if outbox.is_empty() {
        return Ok(());
    }
    outbox.last_progress = now;
    while let Some(out) = outbox.pop() {
        let taken_whole = socket.write(out.message, cx)?;
        if let Some(received) = out.received {
            metrics
                .message_latency
                .observe(now.duration_since(received).as_secs_f64());
        }
        if !taken_whole {
            outbox.unflushed = true;
            return Ok(());
        }
    }
    outbox.unflushed = !socket.flush(cx)?;
    Ok(())
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
    pub fn classify(error: &WsError) -> ReadFailure {
        match error {
            WsError::Capacity(_) => ReadFailure::TooLarge,
            WsError::Utf8(_) => ReadFailure::InvalidUtf8,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                ReadFailure::Transport
            }
            WsError::Protocol(_) => ReadFailure::Protocol,
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
        code: code.into(),
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
                Io::Read(None | Some(Err(_))) | Io::WriteFailed => return,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, handshake).await;
}

/// After a read error the stream is finished; what is queued (the answers to the frames read
/// before the bad one, in the same wake-up) and then `last_words` (a goodbye, the close
/// frame) can still be written.
pub async fn close_after_read_error(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    metrics: &Metrics,
    last_words: Vec<Message>,
) {
    for message in last_words {
        outbox.push_last(message);
    }
    let written = poll_fn(|cx| match send_queued(socket, outbox, metrics, cx) {
        Err(error) => Poll::Ready(Err(error)),
        Ok(()) if outbox.is_written() => Poll::Ready(Ok(())),
        Ok(()) => Poll::Pending,
    });
    if let Ok(Ok(())) = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, written).await {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cork_fits_in_the_write_buffer_bound() {
        // tungstenite panics on a configuration whose bound is not above the cork; 64 is the
        // smallest MAX_MESSAGE_BYTES the configuration accepts.
        let config = config(64);
        assert!(config.max_write_buffer_size > config.write_buffer_size);
    }

    #[test]
    fn read_errors_map_to_their_close_codes() {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let too_large = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(
            ReadFailure::classify(&too_large)
                .close_frame()
                .map(|f| u16::from(f.code)),
            Some(1009)
        );
        let bad_opcode = WsError::Protocol(ProtocolError::InvalidOpcode(3));
        assert_eq!(
            ReadFailure::classify(&bad_opcode)
                .close_frame()
                .map(|f| u16::from(f.code)),
            Some(1002)
        );
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(ReadFailure::classify(&reset), ReadFailure::Transport);
    }

    #[test]
    fn one_message_is_always_taken_then_the_bound_holds() {
        let now = Instant::now();
        let mut outbox = Outbox::new(4, now);
        outbox
            .push(Message::text("longer than four"), None)
            .unwrap();
        assert!(outbox.push(Message::text("x"), None).is_err());
        assert_eq!(outbox.stalled_for(now), Some(Duration::ZERO));
        outbox.pop();
        assert_eq!(outbox.stalled_for(now), None);
    }

    #[test]
    fn messages_leave_in_order_and_an_empty_outbox_holds_no_queue() {
        let mut outbox = Outbox::new(1024, Instant::now());
        for text in ["a", "b", "c"] {
            outbox.push(Message::text(text), None).unwrap();
        }
        outbox.push_last(Message::text("last"));
        assert_eq!(outbox.queued_bytes, 7);
        let mut order = Vec::new();
        while let Some(out) = outbox.pop() {
            order.push(out.message.into_text().unwrap().to_string());
        }
        assert_eq!(order, ["a", "b", "c", "last"]);
        assert_eq!((outbox.queued_bytes, outbox.rest.capacity()), (0, 0));
    }
}
