//! The frame reader, fed piece by piece as a socket would.

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

#[test]
fn a_reader_waiting_for_data_holds_no_buffer_but_one_with_half_a_frame_does() {
    let mut reader = FrameReader::new(Vec::new(), 1 << 20);
    let whole = frame(0x81, b"hello");
    let mut stream = Pieces::new([whole.clone(), whole[..3].to_vec()].into_iter());
    assert!(matches!(
        next(&mut reader, &mut stream),
        Some(Ok(Some(Incoming::Text(_))))
    ));
    assert!(next(&mut reader, &mut stream).is_none());
    assert_eq!(
        reader.buffer.capacity(),
        0,
        "idle: the buffer went back to the thread"
    );
    assert!(matches!(
        next(&mut reader, &mut stream),
        Some(Ok(Some(Incoming::Partial)))
    ));
    assert!(next(&mut reader, &mut stream).is_none());
    assert!(reader.buffer.capacity() > 0, "half a frame keeps its bytes");
}
