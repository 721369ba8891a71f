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

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{FrameHeader, Utf8Bytes};
use tokio_util::io::poll_read_buf;

use super::stream::{READ_BUFFER_BYTES, ReadFailure};
use super::utf8::{InvalidUtf8, Utf8Stream, unmask};

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
            buffer: {
                let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES.max(already_read.len()));
                buffer.extend_from_slice(&already_read);
                buffer
            },
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
            self.buffer.reserve(HEADER_MAX_BYTES);
            match poll_read_buf(Pin::new(&mut *stream), cx, &mut self.buffer) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => arrived = true,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(ReadFailure::Transport)),
                Poll::Pending if arrived => return Poll::Ready(Ok(Some(Incoming::Partial))),
                Poll::Pending => return Poll::Pending,
            }
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
        let _ = self.buffer.split_to(header_len);
        if self.closed || header.rsv1 || header.rsv2 || header.rsv3 || header.mask.is_none() {
            return Err(ReadFailure::Protocol);
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.data.len() as u64);
        if len > self.hard_limit as u64 || so_far + len > self.hard_limit as u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut bytes = vec![first, 0x80 | payload.len() as u8];
        bytes.extend_from_slice(&MASK);
        let mut masked = payload.to_vec();
        unmask(&mut masked, MASK, 0);
        bytes.extend_from_slice(&masked);
        bytes
    }

    /// Feeds `pieces` one read (and one wake-up) at a time; what reading produced, up to the
    /// first result that is not a frame.
    fn read_pieces(pieces: &[&[u8]]) -> Vec<Result<Option<String>, ReadFailure>> {
        let mut reader = FrameReader::new(Vec::new(), 1 << 20);
        let mut stream = Pieces::new(pieces.iter().map(|p| p.to_vec()));
        let mut results = Vec::new();
        loop {
            match next(&mut reader, &mut stream) {
                Some(result) => {
                    let end = !matches!(result, Ok(Some(_)));
                    results.push(result.map(|i| i.map(|i| format!("{i:?}"))));
                    if end {
                        return results;
                    }
                }
                None if stream.pieces.is_empty() => return results,
                None => {}
            }
        }
    }

    fn next(
        reader: &mut FrameReader,
        stream: &mut Pieces,
    ) -> Option<Result<Option<Incoming>, ReadFailure>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match reader.poll_next(stream, &mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }

    /// Hands out one piece per read, with a pending read after each (a new wake-up).
    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
        paused: bool,
    }

    impl Pieces {
        fn new(pieces: impl Iterator<Item = Vec<u8>>) -> Pieces {
            Pieces {
                pieces: pieces.collect(),
                paused: false,
            }
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if std::mem::take(&mut self.paused) {
                return Poll::Pending;
            }
            let Some(mut piece) = self.pieces.pop_front() else {
                return Poll::Pending;
            };
            let rest = piece.split_off(piece.len().min(buf.remaining()));
            buf.put_slice(&piece);
            if rest.is_empty() {
                self.paused = true;
            } else {
                self.pieces.push_front(rest);
            }
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn every_frame_surfaces_fragments_and_control_frames_included() {
        let mut bytes = frame(0x01, b"he");
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x00, b"l"));
        bytes.extend(frame(0x80, b"lo"));
        let results = read_pieces(&[&bytes]);
        let kinds: Vec<String> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Fragment",
                "Ping(b\"p\")",
                "Fragment",
                "Text(Utf8Bytes(b\"hello\"))"
            ]
        );
    }

    #[test]
    fn invalid_utf8_fails_before_its_frame_is_complete() {
        // One text frame in three reads, the second making it invalid (Autobahn 6.4.3).
        let whole = frame(0x81, b"ok \xF4\x90\x80\x80 and the rest");
        let results = read_pieces(&[&whole[..8], &whole[8..12], &whole[12..]]);
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0], Ok(Some("Partial".into())));
        assert_eq!(results[1], Err(ReadFailure::InvalidUtf8));
    }

    #[test]
    fn a_code_point_split_across_fragments_is_valid() {
        let mut bytes = frame(0x01, b"caf\xC3");
        bytes.extend(frame(0x80, b"\xA9"));
        let results = read_pieces(&[&bytes]);
        assert_eq!(
            results[1],
            Ok(Some("Text(Utf8Bytes(b\"caf\\xc3\\xa9\"))".into()))
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        let continuation_first = frame(0x80, b"x");
        assert_eq!(
            read_pieces(&[&continuation_first])[0],
            Err(ReadFailure::Protocol)
        );
        let fragmented_ping = frame(0x09, b"x");
        assert_eq!(
            read_pieces(&[&fragmented_ping])[0],
            Err(ReadFailure::Protocol)
        );
        let unmasked = [0x81, 0x01, b'x'];
        assert_eq!(read_pieces(&[&unmasked])[0], Err(ReadFailure::Protocol));
        let one_byte_close = frame(0x88, b"x");
        assert_eq!(
            read_pieces(&[&one_byte_close])[0],
            Err(ReadFailure::Protocol)
        );
    }

    #[test]
    fn a_forbidden_close_code_reads_as_a_protocol_error() {
        let close = frame(0x88, &[0x03, 0xED]); // 1005 may not be sent
        let results = read_pieces(&[&close]);
        assert!(
            results[0]
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap()
                .contains("Protocol")
        );
    }

    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        let mut reader = FrameReader::new(Vec::new(), 1 << 20);
        let payload = vec![b'a'; 200_000];
        let mut bytes = vec![0x82, 0x80 | 127];
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&payload);
        bytes.extend(frame(0x89, b""));
        let mut stream = Pieces::new(bytes.chunks(1024).map(<[u8]>::to_vec));
        let message = loop {
            match next(&mut reader, &mut stream) {
                None | Some(Ok(Some(Incoming::Partial))) => continue,
                Some(other) => break other.unwrap(),
            }
        };
        assert!(matches!(message, Some(Incoming::Binary(b)) if b.len() == 200_000));
        assert!(reader.buffer.capacity() < 4 * READ_BUFFER_BYTES);
    }
}
