//! Checking a text message while it arrives: UTF-8 validated piece by piece (a code point may
//! straddle two reads or two fragments), so that a bad byte closes the connection with 1007 as
//! soon as it is read, not when the message completes (Autobahn 6.4.x), and the unmasking of a
//! payload from any offset in its frame.

use std::str;

/// The UTF-8 state of one text message whose bytes arrive in pieces: at most the first bytes
/// of one code point carried from one piece to the next.
#[derive(Debug, Default)]
pub(super) struct Utf8Stream {
    carry: [u8; 4],
    carried: usize,
}

/// A byte sequence that is not UTF-8, whatever follows it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InvalidUtf8;

impl Utf8Stream {
    /// Checks the next piece of the message.
    pub(super) fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carried > 0 {
            let width = sequence_width(self.carry[0]);
            let take = (width - self.carried).min(piece.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&piece[..take]);
            self.carried += take;
            piece = &piece[take..];
            check_prefix(&self.carry[..self.carried])?;
            if self.carried < width {
                return Ok(());
            }
            self.carried = 0;
        }
        match str::from_utf8(piece) {
            Ok(_) => Ok(()),
            // The piece ends inside a code point that may still complete.
            Err(error) if error.error_len().is_none() => {
                let tail = &piece[error.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message ended: a code point left unfinished makes it invalid.
    pub(super) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.carried > 0;
        self.carried = 0;
        if unfinished { Err(InvalidUtf8) } else { Ok(()) }
    }
}

/// The bytes of a code point, from its first byte (1 for a byte that cannot start one: the
/// check then fails on it).
fn sequence_width(first: u8) -> usize {
    match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Whether `bytes` is a complete code point or the valid start of one.
fn check_prefix(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    match str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(error) if error.error_len().is_none() => Ok(()),
        Err(_) => Err(InvalidUtf8),
    }
}

/// Unmasks `bytes`, which start `offset` bytes into their frame's payload (RFC 6455 5.3).
pub(super) fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    let mask = {
        let mut rotated = mask;
        rotated.rotate_left(offset % 4);
        rotated
    };
    let word = u32::from_ne_bytes(mask);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, mask_byte) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= mask_byte;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(bytes: &[u8], cut: usize) -> Result<(), InvalidUtf8> {
        let mut stream = Utf8Stream::default();
        for piece in bytes.chunks(cut) {
            stream.feed(piece)?;
        }
        stream.finish()
    }

    #[test]
    fn valid_text_passes_whatever_the_cuts() {
        let text = "κόσμε, 世界, 🎉 and ascii".as_bytes();
        for cut in 1..=text.len() {
            assert_eq!(feed_in_pieces(text, cut), Ok(()), "cut every {cut} bytes");
        }
    }

    #[test]
    fn a_bad_byte_fails_in_the_piece_that_holds_it() {
        // Autobahn 6.4.3: valid, then a piece holding F4 90 (above U+10FFFF), then more.
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(
            stream.feed(&[0xF4]),
            Ok(()),
            "F4 may still start a code point"
        );
        assert_eq!(stream.feed(&[0x90, 0x80, 0x80]), Err(InvalidUtf8));
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(&[0xCE, 0xBA, 0xFF]), Err(InvalidUtf8));
    }

    #[test]
    fn an_unfinished_code_point_fails_at_the_end() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(&[b'a', 0xE2, 0x82]), Ok(()));
        assert_eq!(stream.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn unmasking_from_any_offset_matches_unmasking_at_once() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let plain: Vec<u8> = (0..=255).collect();
        let mut whole = plain.clone();
        unmask(&mut whole, mask, 0);
        for cut in [1, 3, 5, 7, 64] {
            let mut pieces = plain.clone();
            let mut offset = 0;
            for piece in pieces.chunks_mut(cut) {
                let len = piece.len();
                unmask(piece, mask, offset);
                offset += len;
            }
            assert_eq!(pieces, whole, "cut every {cut} bytes");
        }
    }
}
