//! The close policy: the close frame each read failure calls for, and the bounded closing
//! handshakes, after a goodbye (the queue written, then the close frame, the peer's close
//! awaited) and after a read error (what can still be written, then a linger).

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;

use super::cork::{Io, next_io, send_queued};
use super::frames::ReadFailure;
use super::outbox::Outbox;
use super::stream::WebSocket;

/// How long writing the last words after a read error may take before the TCP connection
/// is dropped.
const LAST_WORDS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection stays open after the close frame that ends a read error. The stream
/// cannot be read any more after an error, so the peer's unread bytes (the rest of an
/// oversized frame, say) make the kernel answer our close with an RST; without this pause the
/// RST overtakes the close frame in browsers: Chromium reports 1006 instead of 1009
/// (ci/suites/21-browser.sh).
pub const CLOSE_LINGER: Duration = Duration::from_millis(250);

impl ReadFailure {
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

/// Sends what is queued and the close frame, then waits for the peer's close so that the
/// handshake completes, at most `wait` in all; returns when the connection may be dropped.
pub async fn close_gracefully(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: impl Fn(Duration),
    frame: CloseFrame,
    wait: Duration,
) {
    outbox.push_last(Message::Close(Some(frame)));
    let handshake = async {
        loop {
            match next_io(socket, outbox, &on_answered).await {
                Io::Read(Some(Ok(_))) => continue,
                Io::Read(None | Some(Err(_))) | Io::WriteFailed => return,
            }
        }
    };
    let _ = tokio::time::timeout(wait, handshake).await;
}

/// After a read error the stream is finished; what is queued (the answers to the frames read
/// before the bad one, in the same wake-up) and then `last_words` (a goodbye, the close
/// frame) can still be written.
pub async fn close_after_read_error(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: impl Fn(Duration),
    last_words: Vec<Message>,
) {
    for message in last_words {
        outbox.push_last(message);
    }
    let written = poll_fn(|cx| match send_queued(socket, outbox, &on_answered, cx) {
        Err(error) => Poll::Ready(Err(error)),
        Ok(()) if outbox.is_written() => Poll::Ready(Ok(())),
        Ok(()) => Poll::Pending,
    });
    if let Ok(Ok(())) = tokio::time::timeout(LAST_WORDS_TIMEOUT, written).await {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_failures_map_to_their_close_codes() {
        let code = |failure: ReadFailure| failure.close_frame().map(|f| u16::from(f.code));
        assert_eq!(code(ReadFailure::TooLarge), Some(1009));
        assert_eq!(code(ReadFailure::Protocol), Some(1002));
        assert_eq!(code(ReadFailure::InvalidUtf8), Some(1007));
        assert_eq!(code(ReadFailure::Transport), None);
    }
}
