//! Write corking: while a connection's task is awake, frames read are answered first and
//! every answer of the wake-up is written together, in one `write` when the kernel takes it,
//! instead of one system call per frame; reading goes on while the peer is slow to read.

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;

use super::outbox::Outbox;
use super::stream::{ReadFailure, WebSocket};

/// What happened on the socket.
pub enum Io {
    /// A frame, `None` when the stream ended, or why reading failed.
    Read(Option<Result<Message, ReadFailure>>),
    /// Writing failed: the connection is gone.
    WriteFailed,
}

/// The next incoming frame; while none is ready, what the outbox holds is written, corked, as
/// far as the socket accepts it. Cancel-safe: nothing leaves the outbox before tungstenite
/// has taken it.
///
/// `on_answered` is told, for each message that answered a request, how long after the
/// request was read it reached tungstenite.
pub async fn next_io(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: impl Fn(Duration),
) -> Io {
    poll_fn(|cx| {
        // Frames already read are answered before anything is written, so that the answers
        // of one wake-up leave together; a client that keeps the read side busy still gets
        // its answers once they fill the cork.
        if outbox.is_corked_full() && send_queued(socket, outbox, &on_answered, cx).is_err() {
            return Poll::Ready(Io::WriteFailed);
        }
        if let Poll::Ready(read) = socket.poll_read(cx) {
            return Poll::Ready(Io::Read(read));
        }
        match send_queued(socket, outbox, &on_answered, cx) {
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
pub(super) fn send_queued(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: &impl Fn(Duration),
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
            on_answered(now.duration_since(received));
        }
        if !taken_whole {
            outbox.unflushed = true;
            return Ok(());
        }
    }
    outbox.unflushed = !socket.flush(cx)?;
    Ok(())
}
