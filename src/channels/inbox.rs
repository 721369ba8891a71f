//! The inbox of one connection: where the hub leaves the publications of the connection's
//! subscriptions for its task to move into its outbox. Bounded by bytes like the outbox: a
//! subscription whose publication does not fit is marked overflowed instead (its task ends
//! it with `insufficient_state`), and the others go on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::broker::EpochId;

/// A publication as sent: its `publication` message, serialised once for every subscriber.
#[derive(Debug)]
pub struct Frame {
    pub offset: u64,
    pub epoch: EpochId,
    /// The JSON text, shared: each subscriber's copy is a reference count.
    pub text: Utf8Bytes,
}

/// One publication for one subscription of the connection (`key` tells which): its offset, its
/// epoch and its text (a reference to the bytes every subscriber shares, moved on into the
/// outbox).
#[derive(Debug)]
pub struct Delivery {
    pub key: u32,
    pub offset: u64,
    pub epoch: EpochId,
    pub text: Utf8Bytes,
}

#[derive(Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    bytes: usize,
    /// Subscriptions (keys) that lost a publication, for the task to end.
    overflowed: Vec<u32>,
}

impl Queue {
    /// Queues `frames` for `key` in order until `limit_bytes` would be passed (the first always
    /// fits into an empty queue), then marks `key` overflowed. Returns how many were queued.
    fn push(&mut self, key: u32, frames: &[Frame], limit_bytes: usize) -> usize {
        let mut queued = 0;
        for frame in frames {
            let size = frame.text.len();
            if !self.deliveries.is_empty() && self.bytes + size > limit_bytes {
                self.overflowed.push(key);
                break;
            }
            self.bytes += size;
            self.deliveries.push_back(Delivery {
                key,
                offset: frame.offset,
                epoch: frame.epoch,
                text: frame.text.clone(),
            });
            queued += 1;
        }
        queued
    }
}

/// The inbox of one connection.
pub struct Inbox {
    queue: Mutex<Queue>,
    /// Set by a push into an idle inbox, cleared by [`Inbox::poll_ready`]; the connection's
    /// task is woken through `waker`. Neither takes a lock: the task polls `poll_ready` on
    /// every wake-up of its loop.
    pending: AtomicBool,
    waker: AtomicWaker,
    limit_bytes: usize,
}

impl Inbox {
    pub fn new(limit_bytes: usize) -> Arc<Inbox> {
        Arc::new(Inbox {
            queue: Mutex::default(),
            pending: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            limit_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves publications for subscription `key`, in order, and wakes the task once. One
    /// publication always fits into an empty inbox. Returns how many were queued: fewer than
    /// given when the inbox filled, and the subscription is then marked overflowed and gets
    /// nothing more until its task took note.
    pub fn push(&self, key: u32, frames: &[Frame]) -> usize {
        self.leave(key, |queue| queue.push(key, frames, self.limit_bytes))
    }

    /// Marks subscription `key` as having lost publications (its task ends it with
    /// `insufficient_state`), as a refused push does.
    pub fn mark_lost(&self, key: u32) {
        self.leave(key, |queue| {
            queue.overflowed.push(key);
            1
        });
    }

    /// Applies `leave` (which returns how much it left) unless subscription `key` already
    /// overflowed, and wakes the task when the inbox was idle before: a busy inbox's task is
    /// already on its way to take it.
    fn leave(&self, key: u32, leave: impl FnOnce(&mut Queue) -> usize) -> usize {
        let mut queue = self.lock();
        if queue.overflowed.contains(&key) {
            return 0;
        }
        let was_idle = queue.deliveries.is_empty() && queue.overflowed.is_empty();
        let left = leave(&mut queue);
        drop(queue);
        if was_idle && left > 0 {
            self.wake();
        }
        left
    }

    fn wake(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready when something was left since the last [`Inbox::take`]. Either way the task is
    /// woken by the next push into an idle inbox: a session that takes what is ready and goes
    /// on without polling again must still hear of the next publication.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        // Registered first: a push after this swap finds the waker.
        if self.pending.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until something was left since the last [`Inbox::take`].
    #[cfg(test)]
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await;
    }

    /// Moves every waiting delivery into `into` (in order) and returns the overflowed
    /// subscriptions' keys.
    pub fn take(&self, into: &mut VecDeque<Delivery>) -> Vec<u32> {
        let mut queue = self.lock();
        queue.bytes = 0;
        if into.is_empty() {
            // Trade queues rather than copy: each keeps its capacity for the next time.
            std::mem::swap(into, &mut queue.deliveries);
        } else {
            into.append(&mut queue.deliveries);
        }
        std::mem::take(&mut queue.overflowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Frame {
        Frame {
            epoch: EpochId::of("e"),
            offset: 1,
            text: text.to_owned().into(),
        }
    }

    #[test]
    fn a_full_inbox_marks_the_subscription_and_keeps_the_others() {
        let inbox = Inbox::new(8);
        assert_eq!(inbox.push(1, &[frame("0123456789")]), 1);
        assert_eq!(inbox.push(1, &[frame("x")]), 0);
        assert_eq!(inbox.push(1, &[frame("")]), 0, "stays marked");
        assert_eq!(
            inbox.push(2, &[frame("y")]),
            0,
            "the bound is the connection's"
        );
        let mut taken = VecDeque::new();
        assert_eq!(inbox.take(&mut taken), [1, 2]);
        assert_eq!(taken.iter().map(|d| d.key).collect::<Vec<_>>(), [1]);
        assert_eq!(inbox.push(1, &[frame("x")]), 1, "taken note of");
        assert_eq!(inbox.push(3, &[frame("y")]), 1);
        inbox.take(&mut taken);
        let order: Vec<_> = taken.iter().map(|d| (d.key, &*d.text)).collect();
        assert_eq!(
            order,
            [(1, "0123456789"), (1, "x"), (3, "y")],
            "appended in order"
        );
    }

    #[test]
    fn publications_left_together_stop_where_the_inbox_fills() {
        let inbox = Inbox::new(8);
        let frames = [frame("abcd"), frame("efgh"), frame("ijkl")];
        assert_eq!(inbox.push(1, &frames), 2);
        let mut taken = VecDeque::new();
        assert_eq!(inbox.take(&mut taken), [1], "marked overflowed");
        let texts: Vec<_> = taken.iter().map(|d| &*d.text).collect();
        assert_eq!(texts, ["abcd", "efgh"], "in order, up to the bound");
    }

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_that_took_what_was_ready_is_woken_by_the_next_push() {
        let inbox = Inbox::new(64);
        let counter = Arc::new(CountingWaker(0.into()));
        let waker = std::task::Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(inbox.poll_ready(&mut cx).is_pending());
        inbox.push(1, &[frame("a")]);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        // The task takes the publication and goes on without polling the inbox again.
        assert!(inbox.poll_ready(&mut cx).is_ready());
        inbox.take(&mut VecDeque::new());
        inbox.push(1, &[frame("b")]);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "woken again");
    }

    #[tokio::test]
    async fn a_lost_mark_wakes_the_task_and_stops_the_subscription() {
        let inbox = Inbox::new(64);
        inbox.mark_lost(4);
        inbox.mark_lost(4);
        tokio::time::timeout(std::time::Duration::from_secs(5), inbox.ready())
            .await
            .expect("woken");
        assert_eq!(inbox.push(4, &[frame("late")]), 0);
        let mut taken = VecDeque::new();
        assert_eq!(inbox.take(&mut taken), [4], "once");
        assert!(taken.is_empty());
    }

    #[tokio::test]
    async fn a_push_into_an_empty_inbox_wakes_the_task_once() {
        let inbox = Inbox::new(64);
        let wait = std::time::Duration::from_secs(5);
        inbox.push(1, &[frame("a")]);
        inbox.push(1, &[frame("b")]);
        tokio::time::timeout(wait, inbox.ready())
            .await
            .expect("woken");
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), inbox.ready());
        assert!(
            pending.await.is_err(),
            "one wake-up for both: the second found it busy"
        );
        inbox.take(&mut VecDeque::new());
        let waiting = tokio::spawn({
            let inbox = Arc::clone(&inbox);
            async move { inbox.ready().await }
        });
        tokio::task::yield_now().await;
        inbox.push(2, &[frame("c")]);
        tokio::time::timeout(wait, waiting)
            .await
            .expect("woken while waiting")
            .unwrap();
    }
}
