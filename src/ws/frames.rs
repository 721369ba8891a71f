//! Reading frames (RFC 6455 5): every frame a client sends is surfaced, fragments and control
//! frames included, so that the session can count each against its budgets; the bytes of an
//! unfinished frame are unmasked and, in a text message, checked for UTF-8 as they arrive;
//! a large frame's buffer is given back once the frame has been read.
//!
//! tungstenite's reader assembles whole messages and answers pings itself: it would hide the
//! continuation and control frames a flood is made of, and check UTF-8 only per frame.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tokio_util::io::poll_read_buf;

use super::spare;
use super::utf8::{InvalidUtf8, Utf8Stream, unmask};

/// The read buffer a connection reads into (tungstenite's default, 128 KiB, would be
/// allocated for every socket up front). It is lent by the thread ([`spare`]) for each read
/// and given back when everything read has been parsed, so an idle connection holds none.
/// Larger frames still arrive whole: the buffer is grown to the announced frame length, and
/// given back once the frame is read.
pub const READ_BUFFER_BYTES: usize = 1024;
/// The longest frame header (RFC 6455 5.2).
const HEADER_MAX_BYTES: usize = 14;

/// What reading produced.
#[derive(Debug)]
pub enum Incoming {
    /// A whole text message (one frame, or the last fragment of one).
    Text(Utf8Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A frame of a message that is not finished yet.
    Fragment,
    Ping(Bytes),
    Pong,
    /// The peer's close frame; an invalid code is reported (and answered) as 1002.
    Close(Option<CloseFrame>),
    /// Bytes arrived, but no frame is complete yet.
    Partial,
}

/// The frame being read, once its header is in.
struct FrameState {
    header: FrameHeader,
    len: usize,
    /// Payload bytes already unmasked (and checked, in a text message).
    unmasked: usize,
    /// The frame belongs to a text message.
    text: bool,
}

/// A fragmented message being assembled.
struct Assembly {
    text: bool,
    data: BytesMut,
}

/// The reading half of a WebSocket connection.
pub(super) struct FrameReader {
    buffer: BytesMut,
    frame: Option<FrameState>,
    message: Option<Assembly>,
    utf8: Utf8Stream,
    /// The peer's close frame was read: nothing more is.
    closed: bool,
    /// Frames and messages larger than this are refused (close 1009).
    hard_limit: usize,
}

impl FrameReader {
    pub(super) fn new(already_read: Vec<u8>, hard_limit: usize) -> FrameReader {
        FrameReader {
            // No memory unless the HTTP server read past the request: reads borrow a buffer.
            buffer: BytesMut::from(&already_read[..]),
            frame: None,
            message: None,
            utf8: Utf8Stream::default(),
            closed: false,
            hard_limit,
        }
    }

    /// Whether the peer's close frame has been read.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// No frame is half read and no fragmented message is open: what the buffer holds starts
    /// at a frame header, still masked, and another reader can take it up (a handover).
    pub(super) fn is_between_frames(&self) -> bool {
        self.frame.is_none() && self.message.is_none() && !self.closed
    }

    /// The bytes read and not parsed yet.
    pub(super) fn into_unparsed(self) -> Vec<u8> {
        self.buffer.to_vec()
    }

    /// The next frame: reads from `stream` until one is complete. `Ok(None)`: the stream
    /// ended. Pending when nothing arrived; [`Incoming::Partial`] when bytes arrived but no
    /// frame is complete.
    pub(super) fn poll_next(
        &mut self,
        stream: &mut (impl AsyncRead + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Incoming>, ReadFailure>> {
        let mut arrived = false;
        loop {
            if let Some(incoming) = self.next_frame()? {
                return Poll::Ready(Ok(Some(incoming)));
            }
            // Reads into the free capacity: a frame header's worth at least, the whole frame
            // when its header announced it (`next_frame` reserved it).
            if self.buffer.capacity() == 0 {
                self.buffer = spare::read_buffer(READ_BUFFER_BYTES);
            }
            self.buffer.reserve(HEADER_MAX_BYTES);
            match poll_read_buf(Pin::new(&mut *stream), cx, &mut self.buffer) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => arrived = true,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(ReadFailure::Transport)),
                Poll::Pending if arrived => return Poll::Ready(Ok(Some(Incoming::Partial))),
                Poll::Pending => {
                    self.give_back_if_parsed();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Everything read is parsed and no frame is half read: the buffer goes back to the
    /// thread until the next read, so that a connection waiting for data holds none.
    fn give_back_if_parsed(&mut self) {
        if self.buffer.is_empty() && self.frame.is_none() {
            spare::give_back_read_buffer(std::mem::take(&mut self.buffer), READ_BUFFER_BYTES);
        }
    }

    /// The next frame from what the buffer holds, `None` while it holds too little.
    fn next_frame(&mut self) -> Result<Option<Incoming>, ReadFailure> {
        if self.frame.is_none() {
            let Some(frame) = self.next_header()? else {
                return Ok(None);
            };
            // The payload is read into one piece of memory, reserved once.
            self.buffer.reserve(frame.len);
            self.frame = Some(frame);
        }
        let frame = self.frame.as_mut().expect("set above");
        let available = self.buffer.len().min(frame.len);
        if available < frame.len {
            // Unfinished: unmask what is here and check it now when it is text.
            if available > frame.unmasked {
                let mask = frame.header.mask.expect("client frames are masked");
                unmask(
                    &mut self.buffer[frame.unmasked..available],
                    mask,
                    frame.unmasked,
                );
                if frame.text {
                    self.utf8
                        .feed(&self.buffer[frame.unmasked..available])
                        .map_err(invalid)?;
                }
                frame.unmasked = available;
            }
            return Ok(None);
        }
        let frame = self.frame.take().expect("set above");
        let payload = self.take_payload(&frame);
        self.complete(frame, payload).map(Some)
    }

    /// Parses and checks the next frame header.
    fn next_header(&mut self) -> Result<Option<FrameState>, ReadFailure> {
        let mut cursor = Cursor::new(&self.buffer[..]);
        let Some((header, len)) =
            FrameHeader::parse(&mut cursor).map_err(|_| ReadFailure::Protocol)?
        else {
            return Ok(None);
        };
        let header_len = cursor.position() as usize;
        self.buffer.advance(header_len);
        if self.closed || header.rsv1 || header.rsv2 || header.rsv3 || header.mask.is_none() {
            return Err(ReadFailure::Protocol);
        }
        // A continuation adds to the message assembled so far.
        let so_far = match (header.opcode, &self.message) {
            (OpCode::Data(Data::Continue), Some(message)) => message.data.len() as u64,
            _ => 0,
        };
        if so_far + len > self.hard_limit as u64 {
            return Err(ReadFailure::TooLarge);
        }
        let text = match (header.opcode, &self.message) {
            (OpCode::Control(_), _) if !header.is_final || len > 125 => {
                return Err(ReadFailure::Protocol);
            }
            (OpCode::Control(_), _) => false,
            (OpCode::Data(Data::Continue), Some(message)) => message.text,
            (OpCode::Data(Data::Text), None) => {
                self.utf8 = Utf8Stream::default();
                true
            }
            (OpCode::Data(Data::Binary), None) => false,
            _ => return Err(ReadFailure::Protocol),
        };
        Ok(Some(FrameState {
            header,
            len: len as usize,
            unmasked: 0,
            text,
        }))
    }

    /// Takes the payload of the frame just read out of the buffer, unmasked. After a large
    /// frame, the bytes that follow it move to a small buffer of their own, so that the large
    /// one is freed with the message instead of staying with the connection.
    fn take_payload(&mut self, frame: &FrameState) -> BytesMut {
        let mut payload = self.buffer.split_to(frame.len);
        if let Some(mask) = frame.header.mask {
            unmask(&mut payload[frame.unmasked..], mask, frame.unmasked);
        }
        if frame.len > READ_BUFFER_BYTES {
            let mut rest = BytesMut::with_capacity(READ_BUFFER_BYTES.max(self.buffer.len()));
            rest.extend_from_slice(&self.buffer);
            self.buffer = rest;
        }
        payload
    }

    /// What a complete frame means.
    fn complete(&mut self, frame: FrameState, payload: BytesMut) -> Result<Incoming, ReadFailure> {
        let checked_from = frame.unmasked;
        let fin = frame.header.is_final;
        match frame.header.opcode {
            OpCode::Control(Control::Ping) => Ok(Incoming::Ping(payload.freeze())),
            OpCode::Control(Control::Pong) => Ok(Incoming::Pong),
            OpCode::Control(_) => {
                self.closed = true;
                close_frame(payload.freeze()).map(Incoming::Close)
            }
            // The common case: a whole text message in one frame, read at once, checked once.
            OpCode::Data(Data::Text) if fin && checked_from == 0 => {
                Utf8Bytes::try_from(payload.freeze())
                    .map(Incoming::Text)
                    .map_err(|_| ReadFailure::InvalidUtf8)
            }
            OpCode::Data(_) => {
                if frame.text {
                    self.utf8.feed(&payload[checked_from..]).map_err(invalid)?;
                }
                let message = match self.message.take() {
                    None => Assembly {
                        text: frame.text,
                        data: payload,
                    },
                    Some(mut message) => {
                        message.data.extend_from_slice(&payload);
                        message
                    }
                };
                if !fin {
                    self.message = Some(message);
                    return Ok(Incoming::Fragment);
                }
                finish_message(message, &mut self.utf8)
            }
        }
    }
}

/// The message whose last frame was just read.
fn finish_message(message: Assembly, utf8: &mut Utf8Stream) -> Result<Incoming, ReadFailure> {
    if !message.text {
        return Ok(Incoming::Binary(message.data.freeze()));
    }
    utf8.finish().map_err(invalid)?;
    Utf8Bytes::try_from(message.data.freeze())
        .map(Incoming::Text)
        .map_err(|_| ReadFailure::InvalidUtf8)
}

/// The close frame in `payload` (RFC 6455 5.5.1); a code that may not be sent is answered as
/// a protocol error (1002).
fn close_frame(payload: Bytes) -> Result<Option<CloseFrame>, ReadFailure> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ReadFailure::Protocol),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            let reason =
                Utf8Bytes::try_from(payload.slice(2..)).map_err(|_| ReadFailure::InvalidUtf8)?;
            Ok(Some(if code.is_allowed() {
                CloseFrame { code, reason }
            } else {
                CloseFrame {
                    code: CloseCode::Protocol,
                    reason: "protocol error".into(),
                }
            }))
        }
    }
}

fn invalid(_: InvalidUtf8) -> ReadFailure {
    ReadFailure::InvalidUtf8
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

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
