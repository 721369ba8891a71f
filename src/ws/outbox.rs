//! The bounded outbound queue of one connection: everything sent to a client (answers, the
//! pong, close frames) waits here until the socket takes it, and one bound,
//! `OUTBOUND_QUEUE_BYTES`, covers what waits here plus what the socket's write buffer still
//! holds. Its head is kept inline, so a connection answering one request at a time queues
//! without allocating.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::stream::CORK_BYTES;

/// A message waiting to be written, with when its request was read (for the latency sample).
pub(super) struct Outgoing {
    pub(super) message: Message,
    pub(super) received: Option<Instant>,
}

/// The bounded outbound queue of one connection.
pub struct Outbox {
    /// The oldest queued message, kept inline: a connection that answers one request at a
    /// time queues and writes without allocating a queue.
    head: Option<Outgoing>,
    /// The messages behind `head`, in order; empty while `head` is `None`.
    rest: VecDeque<Outgoing>,
    /// The pong to the latest ping, sent before the queue: a newer ping replaces it.
    pong: Option<Bytes>,
    /// Every ping gets its own pong, queued with the answers (conformance suites check it).
    pong_per_ping: bool,
    /// What the messages above hold, each counted with its bookkeeping.
    queued_bytes: usize,
    /// What the socket's write buffer holds, not yet taken by the kernel.
    pub(super) unsent_bytes: usize,
    limit_bytes: usize,
    /// Frames handed to tungstenite that the kernel has not taken yet.
    pub(super) unflushed: bool,
    pub(super) last_progress: Instant,
}

/// The outbox is over its byte bound: the peer does not read fast enough.
#[derive(Debug)]
pub struct Full;

impl Outbox {
    pub fn new(limit_bytes: usize, now: Instant) -> Outbox {
        Outbox {
            head: None,
            rest: VecDeque::new(),
            pong: None,
            pong_per_ping: false,
            queued_bytes: 0,
            unsent_bytes: 0,
            limit_bytes,
            unflushed: false,
            last_progress: now,
        }
    }

    /// The outbox of a resumed connection whose socket still holds `unsent` bytes of frames.
    pub(super) fn resumed(limit_bytes: usize, now: Instant, unsent: usize) -> Outbox {
        let mut outbox = Outbox::new(limit_bytes, now);
        outbox.unsent_bytes = unsent;
        outbox.unflushed = unsent > 0;
        outbox
    }

    /// Queues a message. One message is always accepted when nothing waits, whatever its size.
    pub fn push(&mut self, message: Message, received: Option<Instant>) -> Result<(), Full> {
        let size = message_len(&message);
        let waiting = self.queued_bytes + self.unsent_bytes;
        if waiting > 0 && waiting + size > self.limit_bytes {
            return Err(Full);
        }
        self.enqueue(Outgoing { message, received });
        Ok(())
    }

    /// Queues a connection's last message (goodbye, close frame) past the bound.
    pub fn push_last(&mut self, message: Message) {
        self.enqueue(Outgoing {
            message,
            received: None,
        });
    }

    fn enqueue(&mut self, out: Outgoing) {
        self.queued_bytes += message_len(&out.message);
        if self.head.is_none() {
            self.head = Some(out);
        } else {
            self.rest.push_back(out);
        }
    }

    /// Takes back the reply to the peer's close frame, queued last when the close was read:
    /// a session that still owes answers queues them first, then the reply again
    /// ([`Outbox::push_last`]). `None` when the last message queued is no close frame.
    pub fn take_close(&mut self) -> Option<Message> {
        let is_close = |out: &Outgoing| matches!(out.message, Message::Close(_));
        let out = if self.rest.back().is_some_and(is_close) {
            self.rest.pop_back()
        } else if self.rest.is_empty() && self.head.as_ref().is_some_and(is_close) {
            self.head.take()
        } else {
            None
        }?;
        self.queued_bytes -= message_len(&out.message);
        Some(out.message)
    }

    /// An outbox that answers every ping instead of the latest: RFC 6455 5.5.3 allows either,
    /// Autobahn's cases 2.10 and 2.11 expect every pong. For the echo endpoint only: a chat
    /// client's ping flood must not cost one write each.
    pub fn answering_every_ping(mut self) -> Outbox {
        self.pong_per_ping = true;
        self
    }

    /// Queues the pong to a ping: in place of any pong not yet written (RFC 6455 5.5.3), so
    /// that however fast pings come one pong at most waits, unless every ping is answered
    /// (then within the bound: a pong that does not fit is not sent).
    pub(super) fn queue_pong(&mut self, payload: Bytes) {
        if self.pong_per_ping {
            let _ = self.push(Message::Pong(payload), None);
            return;
        }
        if let Some(old) = self.pong.replace(payload) {
            self.queued_bytes -= control_len(&old);
        }
        self.queued_bytes += control_len(self.pong.as_ref().expect("just set"));
    }

    /// Drops everything queued (a slow consumer will not read it anyway).
    pub fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
        self.pong = None;
        self.queued_bytes = 0;
    }

    /// How long writing has been stuck, if something is waiting to be written.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        (!self.is_written()).then(|| now.saturating_duration_since(self.last_progress))
    }

    /// Whether enough is queued to be written now, more reading or not: a cork's worth, or
    /// half the bound (a small bound must not fill up while frames are still being read).
    pub(super) fn is_corked_full(&self) -> bool {
        self.unflushed || self.queued_bytes >= CORK_BYTES.min(self.limit_bytes / 2)
    }

    /// Whether everything queued has reached the kernel.
    pub(super) fn is_written(&self) -> bool {
        self.is_empty() && !self.unflushed
    }

    pub(super) fn is_empty(&self) -> bool {
        self.head.is_none() && self.pong.is_none()
    }

    /// The texts queued, taken out in order: what a session's tests read of what it sent.
    #[cfg(test)]
    pub(crate) fn take_texts(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.pop())
            .filter_map(|out| match out.message {
                Message::Text(text) => Some(text.to_string()),
                _ => None,
            })
            .collect()
    }

    pub(super) fn pop(&mut self) -> Option<Outgoing> {
        if let Some(pong) = self.pong.take() {
            self.queued_bytes -= control_len(&pong);
            return Some(Outgoing {
                message: Message::Pong(pong),
                received: None,
            });
        }
        let out = self.head.take()?;
        self.queued_bytes -= message_len(&out.message);
        self.head = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // Give the memory back: an idle socket should hold no queue at all.
            self.rest = VecDeque::new();
        }
        Some(out)
    }
}

/// What a queued message costs: its payload, its frame header, and its place in the queue
/// with the allocator's bookkeeping of its payload, so that many small answers count for what
/// they hold.
fn message_len(message: &Message) -> usize {
    let payload = match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
        Message::Frame(f) => f.len(),
    };
    payload + ENTRY_OVERHEAD_BYTES
}

/// The pong's cost: it has its own slot, no place in the queue.
fn control_len(payload: &Bytes) -> usize {
    payload.len() + FRAME_HEADER_BYTES
}

/// The longest header of a frame the server sends (unmasked, 64-bit length).
const FRAME_HEADER_BYTES: usize = 10;
/// A queued message's frame header, its slot in the queue, and the allocator's bookkeeping of
/// its payload.
const ENTRY_OVERHEAD_BYTES: usize = FRAME_HEADER_BYTES + size_of::<Outgoing>() + 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_reply_is_taken_back_only_when_queued_last() {
        let now = Instant::now();
        let mut outbox = Outbox::new(1 << 20, now);
        outbox.push(Message::text("answer"), None).unwrap();
        assert!(outbox.take_close().is_none());
        outbox.push_last(Message::Close(None));
        let before = outbox.queued_bytes;
        assert!(matches!(outbox.take_close(), Some(Message::Close(None))));
        assert_eq!(
            outbox.queued_bytes,
            before - message_len(&Message::Close(None))
        );
        assert!(matches!(
            outbox.pop().map(|o| o.message),
            Some(Message::Text(_))
        ));
        outbox.push_last(Message::Close(None));
        assert!(outbox.take_close().is_some());
        assert!(outbox.is_empty());
    }

    #[test]
    fn one_message_is_always_taken_then_the_bound_holds() {
        let now = Instant::now();
        let mut outbox = Outbox::new(4 + ENTRY_OVERHEAD_BYTES, now);
        outbox
            .push(Message::text("longer than four"), None)
            .unwrap();
        assert!(outbox.push(Message::text("x"), None).is_err());
        assert_eq!(outbox.stalled_for(now), Some(Duration::ZERO));
        outbox.pop();
        assert_eq!(outbox.stalled_for(now), None);
    }

    #[test]
    fn messages_leave_in_order_and_an_empty_outbox_holds_no_queue() {
        let mut outbox = Outbox::new(1024, Instant::now());
        for text in ["a", "b", "c"] {
            outbox.push(Message::text(text), None).unwrap();
        }
        outbox.push_last(Message::text("last"));
        assert_eq!(outbox.queued_bytes, 7 + 4 * ENTRY_OVERHEAD_BYTES);
        let mut order = Vec::new();
        while let Some(out) = outbox.pop() {
            order.push(out.message.into_text().unwrap().to_string());
        }
        assert_eq!(order, ["a", "b", "c", "last"]);
        assert_eq!((outbox.queued_bytes, outbox.rest.capacity()), (0, 0));
    }

    #[test]
    fn one_pong_waits_for_the_latest_ping_and_leaves_first() {
        let mut outbox = Outbox::new(1024, Instant::now());
        outbox.push(Message::text("answer"), None).unwrap();
        for ping in ["1", "2", "3"] {
            outbox.queue_pong(Bytes::from(ping));
        }
        assert_eq!(
            outbox.queued_bytes,
            6 + ENTRY_OVERHEAD_BYTES + 1 + FRAME_HEADER_BYTES
        );
        assert!(matches!(outbox.pop().unwrap().message, Message::Pong(p) if p == "3"));
        assert!(matches!(outbox.pop().unwrap().message, Message::Text(_)));
        assert!(outbox.pop().is_none());
        assert_eq!(outbox.queued_bytes, 0);
    }

    #[test]
    fn what_the_socket_still_holds_counts_against_the_bound() {
        let mut outbox = Outbox::new(1000, Instant::now());
        outbox.unsent_bytes = 990;
        assert!(outbox.push(Message::text("x"), None).is_err());
        outbox.unsent_bytes = 0;
        assert!(outbox.push(Message::text("x"), None).is_ok());
    }
}
