//! The stream adapter: one WebSocket on the connection's own TCP stream, driven from the
//! connection's task (no extra task, no waker proxy): frames read by [`FrameReader`], frames
//! written through one corking buffer that the thread lends while frames wait for the kernel,
//! and the state of the closing handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::frames::{FrameReader, Incoming, ReadFailure};
use super::spare;

/// Frames queued in one wake-up are gathered up to this many bytes before they are written:
/// one `write` system call carries every answer of a wake-up (a pipelining client, a
/// heartbeat with its ping) instead of one call per frame.
pub const CORK_BYTES: usize = 16 * 1024;
/// A written-out buffer goes back to the thread ([`spare`]) for the next connection it
/// writes for, unless it grew beyond this for a large answer: then it is freed.
const WRITE_BUFFER_KEPT_BYTES: usize = 2 * CORK_BYTES;
/// Frames larger than this many times `MAX_MESSAGE_BYTES` are not read at all: the
/// connection is closed with 1009. Between 1x and this, the message is read and answered with
/// an `error` `message_too_large`.
pub const HARD_LIMIT_FACTOR: usize = 4;

/// An upgraded WebSocket on the bare TCP stream.
pub struct WebSocket {
    stream: TcpStream,
    reader: FrameReader,
    /// Frames formatted and not yet taken by the kernel; no memory while empty (lent by the
    /// thread while frames are written).
    unsent: Vec<u8>,
    /// Our close frame is in `unsent` or sent: nothing more may be (RFC 6455 5.5.1).
    close_sent: bool,
    /// Reading failed or the stream ended: it yields nothing more.
    ended: bool,
}

impl WebSocket {
    /// Starts the WebSocket protocol on an upgraded connection. `already_read`: the bytes the
    /// HTTP server read past the upgrade request.
    pub fn new(stream: TcpStream, already_read: Vec<u8>, max_message_bytes: usize) -> WebSocket {
        let hard_limit = max_message_bytes.saturating_mul(HARD_LIMIT_FACTOR);
        WebSocket {
            stream,
            reader: FrameReader::new(already_read, hard_limit),
            unsent: Vec::new(),
            close_sent: false,
            ended: false,
        }
    }

    /// The next frame, `None` once the stream has ended (the peer left, or both close frames
    /// have been exchanged and written), or why reading failed (after which it has ended too).
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, ReadFailure>>> {
        if self.ended || self.is_finished() {
            self.ended = true;
            return Poll::Ready(None);
        }
        if self.reader.is_closed() {
            // The peer's close was read; ours is on its way (`is_finished` then ends it).
            return Poll::Pending;
        }
        match self.reader.poll_next(&mut self.stream, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(incoming))) => Poll::Ready(Some(Ok(incoming))),
            Poll::Ready(Ok(None)) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(failure)) => {
                self.ended = true;
                Poll::Ready(Some(Err(failure)))
            }
        }
    }

    /// A WebSocket taken up again from a socket handed over by another process: `unparsed`
    /// is read before the socket, `unwritten` (whole frames) written before anything else.
    pub(super) fn resume(
        stream: TcpStream,
        unparsed: Vec<u8>,
        unwritten: Vec<u8>,
        max_message_bytes: usize,
    ) -> WebSocket {
        let mut socket = WebSocket::new(stream, unparsed, max_message_bytes);
        socket.unsent = unwritten;
        socket
    }

    /// Whether the socket can be handed over: between two frames of an open connection.
    pub fn is_between_frames(&self) -> bool {
        !self.ended && !self.close_sent && self.reader.is_between_frames()
    }

    /// Formats `message` behind what waits, without writing.
    pub(super) fn queue_frame(&mut self, message: Message) {
        format_frame(message, self.write_buffer());
    }

    /// The buffer frames are formatted into, borrowed from the thread when empty.
    fn write_buffer(&mut self) -> &mut Vec<u8> {
        if self.unsent.capacity() == 0 {
            self.unsent = spare::write_buffer();
        }
        &mut self.unsent
    }

    /// Takes `written` bytes off the front of the write buffer; an empty one goes back to
    /// the thread (a large one is freed), so that an idle connection holds none.
    fn consume_written(&mut self, written: usize) {
        self.unsent.drain(..written);
        if self.unsent.is_empty() {
            spare::give_back_write_buffer(
                std::mem::take(&mut self.unsent),
                WRITE_BUFFER_KEPT_BYTES,
            );
        }
    }

    /// Writes what the kernel takes now, without waiting; stops at the first error (the
    /// bytes stay, and whoever takes the socket up meets the error again).
    pub(super) fn write_available(&mut self) {
        let mut written = 0;
        while written < self.unsent.len() {
            match self.stream.try_write(&self.unsent[written..]) {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        self.consume_written(written);
    }

    /// The socket off the runtime, the bytes read and not parsed, the frames not written.
    pub(super) fn into_parts(self) -> io::Result<(std::net::TcpStream, Vec<u8>, Vec<u8>)> {
        let stream = self.stream.into_std()?;
        Ok((stream, self.reader.into_unparsed(), self.unsent))
    }

    /// Both close frames are exchanged and ours is written: the TCP connection may go.
    pub(super) fn is_finished(&self) -> bool {
        self.reader.is_closed() && self.close_sent && self.unsent.is_empty()
    }

    /// Whether our close frame is queued or sent.
    pub(super) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Bytes formatted but not yet taken by the kernel.
    pub(super) fn unsent_bytes(&self) -> usize {
        self.unsent.len()
    }

    /// Formats `message`, and writes once a cork's worth is gathered; `Ok(false)` when the
    /// kernel's send buffer is full, so that nothing more should be added until a flush gets
    /// through. Nothing is sent after our close frame.
    pub(super) fn write(&mut self, message: Message, cx: &mut Context<'_>) -> io::Result<bool> {
        if !self.close_sent {
            self.close_sent = matches!(message, Message::Close(_));
            format_frame(message, self.write_buffer());
        }
        if self.unsent.len() <= CORK_BYTES {
            return Ok(true);
        }
        self.flush(cx)
    }

    /// Writes what is formatted; `Ok(false)` while the kernel does not take all of it.
    pub(super) fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            if written == self.unsent.len() {
                break Ok(true);
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.unsent[written..]) {
                Poll::Ready(Ok(0)) => break Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(error)) => break Err(error),
                Poll::Pending => break Ok(false),
            }
        };
        self.consume_written(written);
        result
    }
}

/// Appends `message` as one unmasked frame (a server's frames are not masked).
fn format_frame(message: Message, out: &mut Vec<u8>) {
    let (opcode, payload) = match message {
        Message::Text(text) => (OpCode::Data(Data::Text), Bytes::from(text)),
        Message::Binary(data) => (OpCode::Data(Data::Binary), data),
        Message::Ping(data) => (OpCode::Control(Control::Ping), data),
        Message::Pong(data) => (OpCode::Control(Control::Pong), data),
        Message::Close(frame) => {
            let mut payload = Vec::new();
            if let Some(frame) = frame {
                payload.extend_from_slice(&u16::from(frame.code).to_be_bytes());
                payload.extend_from_slice(frame.reason.as_bytes());
            }
            (OpCode::Control(Control::Close), Bytes::from(payload))
        }
        Message::Frame(frame) => {
            frame.format(out).expect("writing to a Vec cannot fail");
            return;
        }
    };
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    out.reserve(payload.len() + 10);
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(&payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    #[test]
    fn frames_are_formatted_unmasked() {
        let mut out = Vec::new();
        format_frame(Message::text("hi"), &mut out);
        format_frame(Message::Pong(Bytes::from_static(b"p")), &mut out);
        let close = CloseFrame {
            code: 1008.into(),
            reason: "no".into(),
        };
        format_frame(Message::Close(Some(close)), &mut out);
        assert_eq!(
            out,
            [
                0x81, 2, b'h', b'i', 0x8A, 1, b'p', 0x88, 4, 0x03, 0xF0, b'n', b'o'
            ]
        );
    }
}
