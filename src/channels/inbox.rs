//! The inbox of one connection: where the hub leaves the publications of the connection's
//! subscriptions for its task to move into its outbox. Bounded by bytes like the outbox: a
//! subscription whose publication does not fit is marked overflowed instead (its task ends
//! it with `insufficient_state`), and the others go on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A publication as sent: its `publication` message, serialised once for every subscriber.
#[derive(Debug)]
pub struct Frame {
    pub channel: Arc<str>,
    pub offset: u64,
    /// The JSON text, shared: each subscriber's copy is a reference count.
    pub text: Utf8Bytes,
}

/// One publication for one subscription of the connection (`key` tells which).
#[derive(Debug)]
pub struct Delivery {
    pub key: u32,
    pub frame: Arc<Frame>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The inbox was full: the subscription is marked overflowed (now or before).
    Overflowed,
}

#[derive(Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    bytes: usize,
    /// Subscriptions (keys) that lost a publication, for the task to end.
    overflowed: Vec<u32>,
}

/// The inbox of one connection.
pub struct Inbox {
    queue: Mutex<Queue>,
    ready: Notify,
    limit_bytes: usize,
}

impl Inbox {
    pub fn new(limit_bytes: usize) -> Arc<Inbox> {
        Arc::new(Inbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            limit_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves a publication for subscription `key`. One publication always fits into an empty
    /// inbox; after a refusal the subscription gets nothing more until its task took note.
    pub fn push(&self, key: u32, frame: &Arc<Frame>) -> Pushed {
        let mut queue = self.lock();
        if queue.overflowed.contains(&key) {
            return Pushed::Overflowed;
        }
        let was_idle = queue.deliveries.is_empty() && queue.overflowed.is_empty();
        let size = frame.text.len();
        let pushed = if !queue.deliveries.is_empty() && queue.bytes + size > self.limit_bytes {
            queue.overflowed.push(key);
            Pushed::Overflowed
        } else {
            queue.bytes += size;
            queue.deliveries.push_back(Delivery {
                key,
                frame: Arc::clone(frame),
            });
            Pushed::Queued
        };
        drop(queue);
        if was_idle {
            self.ready.notify_one();
        }
        pushed
    }

    /// Marks subscription `key` as having lost publications (its task ends it with
    /// `insufficient_state`), as a refused push does.
    pub fn mark_lost(&self, key: u32) {
        let mut queue = self.lock();
        if queue.overflowed.contains(&key) {
            return;
        }
        let was_idle = queue.deliveries.is_empty() && queue.overflowed.is_empty();
        queue.overflowed.push(key);
        drop(queue);
        if was_idle {
            self.ready.notify_one();
        }
    }

    /// Waits until something was left since the last [`Inbox::take`].
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Moves every waiting delivery into `into` (in order) and returns the overflowed
    /// subscriptions' keys.
    pub fn take(&self, into: &mut VecDeque<Delivery>) -> Vec<u32> {
        let mut queue = self.lock();
        queue.bytes = 0;
        into.append(&mut queue.deliveries);
        std::mem::take(&mut queue.overflowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Arc<Frame> {
        Arc::new(Frame {
            channel: "c".into(),
            offset: 1,
            text: text.to_owned().into(),
        })
    }

    #[test]
    fn a_full_inbox_marks_the_subscription_and_keeps_the_others() {
        let inbox = Inbox::new(8);
        assert_eq!(inbox.push(1, &frame("0123456789")), Pushed::Queued);
        assert_eq!(inbox.push(1, &frame("x")), Pushed::Overflowed);
        assert_eq!(
            inbox.push(1, &frame("")),
            Pushed::Overflowed,
            "stays marked"
        );
        assert_eq!(
            inbox.push(2, &frame("y")),
            Pushed::Overflowed,
            "the bound is the connection's"
        );
        let mut taken = VecDeque::new();
        assert_eq!(inbox.take(&mut taken), [1, 2]);
        assert_eq!(taken.iter().map(|d| d.key).collect::<Vec<_>>(), [1]);
        assert_eq!(inbox.push(1, &frame("x")), Pushed::Queued, "taken note of");
        assert_eq!(inbox.push(3, &frame("y")), Pushed::Queued);
    }

    #[tokio::test]
    async fn a_lost_mark_wakes_the_task_and_stops_the_subscription() {
        let inbox = Inbox::new(64);
        inbox.mark_lost(4);
        inbox.mark_lost(4);
        tokio::time::timeout(std::time::Duration::from_secs(5), inbox.ready())
            .await
            .expect("woken");
        assert_eq!(inbox.push(4, &frame("late")), Pushed::Overflowed);
        let mut taken = VecDeque::new();
        assert_eq!(inbox.take(&mut taken), [4], "once");
        assert!(taken.is_empty());
    }

    #[tokio::test]
    async fn a_push_into_an_empty_inbox_wakes_the_task() {
        let inbox = Inbox::new(64);
        inbox.push(1, &frame("a"));
        tokio::time::timeout(std::time::Duration::from_secs(5), inbox.ready())
            .await
            .expect("woken");
    }
}
