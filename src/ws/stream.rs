//! The stream adapter: tungstenite's protocol state on the connection's own TCP stream, driven
//! from the connection's task (no extra task, no waker proxy), with the settings that keep an
//! idle socket small, and reads that say why they failed.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

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

    /// The next frame, `None` once the stream has ended, or why reading failed (after which
    /// the stream has ended too). Pending until a whole frame has arrived.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, ReadFailure>>> {
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
                Poll::Ready(Some(Err(ReadFailure::classify(&error))))
            }
        }
    }

    /// Hands `message` to tungstenite; `Ok(false)` when it was taken but the kernel's send
    /// buffer is full, so that nothing more should be added until a flush gets through.
    pub(super) fn write(
        &mut self,
        message: Message,
        cx: &mut Context<'_>,
    ) -> Result<bool, WsError> {
        let mut io = TaskIo::new(&mut self.stream, cx);
        match self.protocol.write(&mut io, message) {
            Ok(()) => Ok(true),
            Err(error) if would_block(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Writes what tungstenite holds; `Ok(false)` while the kernel does not take all of it.
    pub(super) fn flush(&mut self, cx: &mut Context<'_>) -> Result<bool, WsError> {
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

/// Why reading failed: the kind of error, which decides the close code, if the peer can still
/// be told.
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
    fn classify(error: &WsError) -> ReadFailure {
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
    fn read_errors_are_classified() {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let too_large = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(ReadFailure::classify(&too_large), ReadFailure::TooLarge);
        let bad_opcode = WsError::Protocol(ProtocolError::InvalidOpcode(3));
        assert_eq!(ReadFailure::classify(&bad_opcode), ReadFailure::Protocol);
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(ReadFailure::classify(&reset), ReadFailure::Transport);
    }
}
