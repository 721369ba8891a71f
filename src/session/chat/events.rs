//! One pass over a chat connection's socket and inbox: the event its session's loop handles
//! next, with the channels' publications moved into the outbox before the write of the same
//! poll.

use std::future::poll_fn;
use std::task::Poll;

use crate::session::ending::answered_into;
use crate::session::subscriptions::Subscriptions;
use crate::state::AppState;
use crate::ws::{self, Io, Outbox, WebSocket};

/// What one pass over a connection's socket and inbox found.
pub(super) enum Event {
    Io(Io),
    /// Subscriptions (keys) that lost a publication: they end with `insufficient_state`.
    Lost(Vec<u32>),
}

/// The socket's next event ([`ws::poll_io`]), with the publications that arrived moved into
/// the outbox before it is written: a wake-up by the inbox delivers and writes in one pass of
/// the session's loop, not one pass to deliver and another to write (each pass polls the
/// socket, the timer and the commands again). Delivering first never holds up the write: the
/// same poll writes what was delivered.
pub(super) fn next_event<'a>(
    socket: &'a mut WebSocket,
    outbox: &'a mut Outbox,
    mut subscriptions: Option<&'a mut Subscriptions>,
    state: &'a AppState,
    read: bool,
) -> impl Future<Output = Event> + 'a {
    let on_answered = answered_into(&state.metrics);
    poll_fn(move |cx| {
        if let Some(subscriptions) = subscriptions.as_deref_mut() {
            let lost = subscriptions.poll_deliver(state, outbox, cx);
            if !lost.is_empty() {
                return Poll::Ready(Event::Lost(lost));
            }
        }
        ws::poll_io(socket, outbox, &on_answered, read, cx).map(Event::Io)
    })
}
