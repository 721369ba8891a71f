//! Write corking: while a connection's task is awake, frames read are answered first and
//! every answer of the wake-up is written together, in one `write` when the kernel takes it,
//! instead of one system call per frame; reading goes on while the peer is slow to read.
//! The transport's own answers are queued here too: the pong to the latest ping, the reply
//! to the peer's close frame.

use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::frames::Incoming;
use super::frames::ReadFailure;
use super::outbox::Outbox;
use super::stream::WebSocket;

/// What happened on the socket.
pub enum Io {
    /// A frame (or bytes of one), `None` when the stream ended, or why reading failed.
    Read(Option<Result<Incoming, ReadFailure>>),
    /// Writing failed: the connection is gone.
    WriteFailed,
}

/// The next incoming frame; while none is ready, what the outbox holds is written, corked, as
/// far as the socket accepts it. Cancel-safe: nothing leaves the outbox before the socket's
/// write buffer has taken it.
///
/// `on_answered` is told, for each message that answered a request, how long after the
/// request was read it reached the socket's write buffer.
pub async fn next_io(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: impl Fn(Duration),
) -> Io {
    poll_fn(|cx| poll_io(socket, outbox, &on_answered, true, cx)).await
}

/// One poll of [`next_io`] when `read`; otherwise only writes what the outbox holds (ready
/// only when writing fails): a session that owes as many answers as it may stops reading, and
/// what it queued still leaves. A poll function, not a future, so that a session can queue
/// frames (its channels' publications) before the write of the same poll.
pub fn poll_io(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: &impl Fn(Duration),
    read: bool,
    cx: &mut Context<'_>,
) -> Poll<Io> {
    // Frames already read are answered before anything is written, so that the answers of
    // one wake-up leave together; a client that keeps the read side busy still gets its
    // answers once they fill the cork.
    if outbox.is_corked_full() && send_queued(socket, outbox, on_answered, cx).is_err() {
        return Poll::Ready(Io::WriteFailed);
    }
    let polled = if read {
        socket.poll_read(cx)
    } else {
        Poll::Pending
    };
    if let Poll::Ready(read) = polled {
        if let Some(Ok(incoming)) = &read {
            answer_control_frame(socket, outbox, incoming);
        }
        return Poll::Ready(Io::Read(read));
    }
    match send_queued(socket, outbox, on_answered, cx) {
        // The reply to the peer's close frame is written: the connection is over.
        Ok(()) if socket.is_finished() => Poll::Ready(Io::Read(None)),
        Ok(()) => Poll::Pending,
        Err(_) => Poll::Ready(Io::WriteFailed),
    }
}

/// RFC 6455 5.5: a ping is answered with a pong (only the latest one when several arrive
/// before the pong leaves, 5.5.3, unless the outbox answers every ping), the peer's close
/// frame with ours unless ours was sent.
fn answer_control_frame(socket: &WebSocket, outbox: &mut Outbox, incoming: &Incoming) {
    match incoming {
        Incoming::Ping(payload) if !socket.close_sent() => outbox.queue_pong(payload.clone()),
        Incoming::Close(frame) if !socket.close_sent() => {
            outbox.push_last(Message::Close(frame.clone()));
        }
        _ => {}
    }
}

/// Moves the outbox into the socket's write buffer and writes it, corked: every frame queued since the last
/// wake-up goes out in one `write` when the kernel takes it. While the kernel's send buffer
/// is full, frames stay in the outbox, where its bound counts them; the task is woken when
/// the socket is writable again.
pub(super) fn send_queued(
    socket: &mut WebSocket,
    outbox: &mut Outbox,
    on_answered: &impl Fn(Duration),
    cx: &mut Context<'_>,
) -> std::io::Result<()> {
    if outbox.is_written() {
        return Ok(());
    }
    let now = Instant::now();
    if outbox.unflushed {
        let flushed = socket.flush(cx)?;
        outbox.unsent_bytes = socket.unsent_bytes();
        if !flushed {
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
            outbox.unsent_bytes = socket.unsent_bytes();
            return Ok(());
        }
    }
    outbox.unflushed = !socket.flush(cx)?;
    outbox.unsent_bytes = socket.unsent_bytes();
    Ok(())
}
