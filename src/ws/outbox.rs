//! The bounded outbound queue of one connection: answers wait here, counted against
//! `OUTBOUND_QUEUE_BYTES`, until the socket takes them. Its head is kept inline, so a
//! connection answering one request at a time queues without allocating.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
    queued_bytes: usize,
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
            queued_bytes: 0,
            limit_bytes,
            unflushed: false,
            last_progress: now,
        }
    }

    /// Queues a message. One message is always accepted into an empty queue, whatever its size.
    pub fn push(&mut self, message: Message, received: Option<Instant>) -> Result<(), Full> {
        let size = message_len(&message);
        if !self.is_empty() && self.queued_bytes + size > self.limit_bytes {
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

    /// Drops everything queued (a slow consumer will not read it anyway).
    pub fn clear(&mut self) {
        self.head = None;
        self.rest = VecDeque::new();
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
        self.head.is_none()
    }

    pub(super) fn pop(&mut self) -> Option<Outgoing> {
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

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| c.reason.len() + 2),
        Message::Frame(f) => f.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_is_always_taken_then_the_bound_holds() {
        let now = Instant::now();
        let mut outbox = Outbox::new(4, now);
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
        assert_eq!(outbox.queued_bytes, 7);
        let mut order = Vec::new();
        while let Some(out) = outbox.pop() {
            order.push(out.message.into_text().unwrap().to_string());
        }
        assert_eq!(order, ["a", "b", "c", "last"]);
        assert_eq!((outbox.queued_bytes, outbox.rest.capacity()), (0, 0));
    }
}
