//! The hub of a process: who listens to which channel here, and the fan-out of each
//! publication the broker hands on. A publication is serialised once into shared bytes and
//! the same bytes are left in every subscriber's inbox. The fan-out runs on the hub's own
//! tasks (one per shard of channels, a channel always on the same shard, so its order
//! holds), never on the publisher's, and yields to the runtime after every batch of
//! subscribers, so that a channel of 10,000 subscribers does not hold a worker thread.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntCounter;
use tokio::sync::mpsc;

use super::broker::{EpochId, Publication, PublicationSink, SinkEvent};
use super::inbox::{Frame, Inbox};
use crate::protocol::{ServerMessage, now_ms};

/// Deliveries (subscribers times publications) made between two yields to the runtime.
pub const FAN_OUT_BATCH: usize = 512;
/// Events a shard's task takes off its queue at once: how many publications of a channel can
/// go to its subscribers together.
const RECEIVED_TOGETHER: usize = 64;

/// A subscription as the hub knows it: the connection's inbox, and which of its subscriptions.
#[derive(Clone)]
pub struct Subscriber {
    pub inbox: Arc<Inbox>,
    pub key: u32,
}

/// Where a subscriber sits in its channel's list, to remove it (32 bits: it is kept with
/// every subscription, and no channel has 4 billion subscribers in one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

/// The local subscribers of one channel. Slots keep their place while a fan-out is between
/// batches; a freed slot is reused.
#[derive(Default)]
struct Listeners {
    slots: Vec<Option<Subscriber>>,
    free: Vec<usize>,
}

type ChannelMap = HashMap<Arc<str>, Listeners>;

struct Shard {
    channels: Arc<Mutex<ChannelMap>>,
    queue: mpsc::UnboundedSender<(Arc<str>, SinkEvent)>,
}

/// The hub of the process.
pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Hub {
    /// A hub of `shards` fan-out tasks (spawned on the current runtime); `deliveries` counts
    /// every publication left in an inbox.
    pub fn start(shards: usize, deliveries: IntCounter) -> Arc<Hub> {
        let shards = (0..shards.max(1))
            .map(|_| {
                let channels = Arc::new(Mutex::new(ChannelMap::new()));
                let (queue, publications) = mpsc::unbounded_channel();
                tokio::spawn(fan_out(
                    Arc::clone(&channels),
                    publications,
                    deliveries.clone(),
                ));
                Shard { channels, queue }
            })
            .collect();
        Arc::new(Hub {
            shards,
            hasher: RandomState::new(),
        })
    }

    fn shard(&self, channel: &str) -> &Shard {
        let index = self.hasher.hash_one(channel) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Adds a local subscriber of `channel`: from now on it is left every publication the
    /// hub fans out for the channel. Returns the channel's name as the hub holds it, for the
    /// subscriber to share rather than allocate its own copy.
    pub fn add(&self, channel: &str, subscriber: Subscriber) -> (Arc<str>, Slot) {
        let mut channels = lock(&self.shard(channel).channels);
        let name = match channels.get_key_value(channel) {
            Some((name, _)) => Arc::clone(name),
            None => {
                let name: Arc<str> = channel.into();
                channels.insert(Arc::clone(&name), Listeners::default());
                name
            }
        };
        let listeners = channels
            .get_mut(channel)
            .expect("present: just found or added");
        let slot = match listeners.free.pop() {
            Some(index) => {
                listeners.slots[index] = Some(subscriber);
                index
            }
            None => {
                listeners.slots.push(Some(subscriber));
                listeners.slots.len() - 1
            }
        };
        (
            name,
            Slot(u32::try_from(slot).expect("fewer than 2^32 subscribers")),
        )
    }

    /// Removes the subscriber at `slot` of `channel`.
    pub fn remove(&self, channel: &str, slot: Slot) {
        let mut channels = lock(&self.shard(channel).channels);
        let Some(listeners) = channels.get_mut(channel) else {
            return;
        };
        let index = slot.0 as usize;
        if listeners
            .slots
            .get_mut(index)
            .and_then(Option::take)
            .is_some()
        {
            listeners.free.push(index);
        }
        if listeners.free.len() == listeners.slots.len() {
            channels.remove(channel);
        }
    }

    /// What the broker calls with each publication (or gap) of a channel subscribed here.
    pub fn sink(self: &Arc<Self>) -> PublicationSink {
        let hub = Arc::clone(self);
        Arc::new(move |channel: &Arc<str>, event: SinkEvent| {
            // Fails only when the fan-out task is gone, that is when the runtime shuts down.
            let _ = hub.shard(channel).queue.send((Arc::clone(channel), event));
        })
    }
}

fn lock(channels: &Mutex<ChannelMap>) -> MutexGuard<'_, ChannelMap> {
    channels.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `publication` message, serialised once, in its epoch.
fn frame(channel: &str, publication: &Publication, epoch: EpochId) -> Frame {
    let text = ServerMessage::Publication {
        channel,
        offset: publication.offset,
        data: &publication.data,
        from: &publication.from,
        user: publication.user.as_deref(),
        ts: now_ms(),
    }
    .to_json();
    Frame {
        offset: publication.offset,
        epoch,
        text: text.into(),
    }
}

/// One shard's task: every publication handed on, in order, left in each local subscriber's
/// inbox, a batch of subscribers at a time; a gap marks every local subscriber of its channel
/// lost. Publications of one channel that queued up behind each other while the task was busy
/// are left together: each subscriber takes them in one push and one wake-up, and writes them
/// in one send. So the busier the hub, the more each write carries (as uWebSockets sends what
/// a loop iteration published to a subscriber at the iteration's end), while a hub that keeps
/// up fans each publication out alone, at once.
async fn fan_out(
    channels: Arc<Mutex<ChannelMap>>,
    mut events: mpsc::UnboundedReceiver<(Arc<str>, SinkEvent)>,
    deliveries: IntCounter,
) {
    let mut received = Vec::with_capacity(RECEIVED_TOGETHER);
    let mut frames = Vec::new();
    while events.recv_many(&mut received, RECEIVED_TOGETHER).await > 0 {
        let mut pending = received.drain(..).peekable();
        while let Some((channel, event)) = pending.next() {
            let SinkEvent::Publication(publication, epoch) = event else {
                mark_lost(&channels, &channel);
                continue;
            };
            frames.push(frame(&channel, &publication, epoch));
            while let Some((_, SinkEvent::Publication(next, epoch))) =
                pending.next_if(|(next, event)| {
                    *next == channel && matches!(event, SinkEvent::Publication(..))
                })
            {
                frames.push(frame(&channel, &next, epoch));
            }
            leave_with_subscribers(&channels, &channel, &frames, &deliveries).await;
            frames.clear();
        }
    }
}

/// Leaves `frames` (one channel's, in order) with every local subscriber of `channel`, about
/// [`FAN_OUT_BATCH`] deliveries between two yields to the runtime.
async fn leave_with_subscribers(
    channels: &Mutex<ChannelMap>,
    channel: &str,
    frames: &[Frame],
    deliveries: &IntCounter,
) {
    let per_batch = (FAN_OUT_BATCH / frames.len()).max(1);
    let mut next = 0;
    loop {
        let (left, done) = deliver_batch(channels, channel, frames, next..next + per_batch);
        deliveries.inc_by(left);
        next += per_batch;
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
}

/// Tells every local subscriber of `channel` that it lost publications. Rare (a broker fault):
/// done in one pass.
fn mark_lost(channels: &Mutex<ChannelMap>, channel: &str) {
    let channels = lock(channels);
    let Some(listeners) = channels.get(channel) else {
        return;
    };
    for subscriber in listeners.slots.iter().flatten() {
        subscriber.inbox.mark_lost(subscriber.key);
    }
}

/// Leaves `frames` with the subscribers in `slots`; returns how many publications they took
/// and whether the list ends there. A subscriber added between two batches subscribed after
/// the publications were accepted: its history read covers them, whichever slot it took.
fn deliver_batch(
    channels: &Mutex<ChannelMap>,
    channel: &str,
    frames: &[Frame],
    slots: Range<usize>,
) -> (u64, bool) {
    let channels = lock(channels);
    let Some(listeners) = channels.get(channel) else {
        return (0, true);
    };
    let end = slots.end.min(listeners.slots.len());
    let mut left = 0;
    for subscriber in listeners
        .slots
        .get(slots.start..end)
        .unwrap_or_default()
        .iter()
        .flatten()
    {
        left += subscriber.inbox.push(subscriber.key, frames) as u64;
    }
    (left, end >= listeners.slots.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// A publication of the channel at `offset`, in one epoch.
    fn publication(offset: u64) -> SinkEvent {
        let publication = Arc::new(Publication {
            offset,
            data: serde_json::value::RawValue::from_string(r#"{"b":1, "a":2}"#.into()).unwrap(),
            from: "alice".into(),
            user: None,
        });
        SinkEvent::Publication(publication, EpochId::of("e"))
    }

    async fn take_all(inbox: &Inbox, want: usize) -> VecDeque<super::super::inbox::Delivery> {
        let mut taken = VecDeque::new();
        while taken.len() < want {
            tokio::time::timeout(Duration::from_secs(5), inbox.ready())
                .await
                .expect("delivered");
            inbox.take(&mut taken);
        }
        taken
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_bytes_in_order() {
        let deliveries = IntCounter::new("d", "d").unwrap();
        let hub = Hub::start(2, deliveries.clone());
        let subscribers = 3 * FAN_OUT_BATCH + 1;
        let inboxes: Vec<_> = (0..subscribers).map(|_| Inbox::new(1 << 20)).collect();
        for (i, inbox) in inboxes.iter().enumerate() {
            let subscriber = Subscriber {
                inbox: Arc::clone(inbox),
                key: i as u32,
            };
            hub.add("room", subscriber);
        }
        let sink = hub.sink();
        let name: Arc<str> = "room".into();
        for offset in 1..=3 {
            sink(&name, publication(offset));
        }
        let first = take_all(&inboxes[0], 3).await;
        let text = &*first[0].text;
        let head = r#"{"type":"publication","channel":"room","offset":1,"data":{"b":1, "a":2},"from":"alice","ts":"#;
        assert!(
            text.starts_with(head) && text.ends_with('}'),
            "data byte for byte: {text}"
        );
        for inbox in &inboxes[1..] {
            let taken = take_all(inbox, 3).await;
            let offsets: Vec<u64> = taken.iter().map(|d| d.offset).collect();
            assert_eq!(offsets, [1, 2, 3]);
            // Shared, not copied: the same allocation as the first subscriber's.
            assert_eq!(taken[0].text.as_ptr(), first[0].text.as_ptr());
        }
        assert_eq!(deliveries.get(), 3 * subscribers as u64);
    }

    /// Publications of a channel that queued while the hub was busy go to each subscriber
    /// together: its task's first take finds all of them, on a channel of more subscribers
    /// than one batch too.
    #[tokio::test(flavor = "current_thread")]
    async fn publications_queued_together_are_left_together() {
        let hub = Hub::start(1, IntCounter::new("d", "d").unwrap());
        let inboxes: Vec<_> = (0..2 * FAN_OUT_BATCH)
            .map(|_| Inbox::new(1 << 20))
            .collect();
        for inbox in &inboxes {
            let inbox = Arc::clone(inbox);
            hub.add("busy", Subscriber { inbox, key: 0 });
        }
        let sink = hub.sink();
        let name: Arc<str> = "busy".into();
        for offset in 1..=3 {
            sink(&name, publication(offset));
        }
        // The hub runs while this task yields, as a subscriber's task would.
        let mut taken = VecDeque::new();
        while taken.is_empty() {
            tokio::task::yield_now().await;
            inboxes[0].take(&mut taken);
        }
        let offsets: Vec<u64> = taken.iter().map(|d| d.offset).collect();
        assert_eq!(offsets, [1, 2, 3]);
    }

    /// On a single thread, a task woken during the fan-out to 10,000 subscribers runs before
    /// the fan-out ends: the hub gives the runtime back between batches.
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_fan_out_yields_to_other_tasks() {
        let deliveries = IntCounter::new("d", "d").unwrap();
        let hub = Hub::start(1, deliveries.clone());
        let inboxes: Vec<_> = (0..10_000).map(|_| Inbox::new(1024)).collect();
        for inbox in &inboxes {
            hub.add(
                "big",
                Subscriber {
                    inbox: Arc::clone(inbox),
                    key: 0,
                },
            );
        }
        hub.sink()(&"big".into(), publication(1));
        let probe = tokio::spawn({
            let deliveries = deliveries.clone();
            async move { deliveries.get() }
        });
        let seen_by_probe = probe.await.unwrap();
        while deliveries.get() < 10_000 {
            tokio::task::yield_now().await;
        }
        assert!(
            seen_by_probe > 0 && seen_by_probe < 10_000,
            "{seen_by_probe}"
        );
    }

    #[tokio::test]
    async fn a_removed_subscriber_gets_nothing_more() {
        let hub = Hub::start(1, IntCounter::new("d", "d").unwrap());
        let (kept, gone) = (Inbox::new(1024), Inbox::new(1024));
        let (first, _) = hub.add(
            "c",
            Subscriber {
                inbox: Arc::clone(&kept),
                key: 0,
            },
        );
        let (name, slot) = hub.add(
            "c",
            Subscriber {
                inbox: Arc::clone(&gone),
                key: 0,
            },
        );
        assert!(Arc::ptr_eq(&first, &name), "one name per channel, shared");
        hub.remove("c", slot);
        hub.sink()(&"c".into(), publication(1));
        take_all(&kept, 1).await;
        let mut taken = VecDeque::new();
        gone.take(&mut taken);
        assert!(taken.is_empty());
    }

    #[tokio::test]
    async fn a_gap_marks_every_local_subscriber_of_its_channel_lost() {
        let hub = Hub::start(1, IntCounter::new("d", "d").unwrap());
        let (a, b, other) = (Inbox::new(1024), Inbox::new(1024), Inbox::new(1024));
        for (channel, inbox, key) in [("c", &a, 1), ("c", &b, 2), ("d", &other, 3)] {
            let inbox = Arc::clone(inbox);
            hub.add(channel, Subscriber { inbox, key });
        }
        let sink = hub.sink();
        sink(&"c".into(), publication(1));
        sink(&"c".into(), SinkEvent::Gap);
        sink(&"d".into(), publication(1));
        take_all(&other, 1).await;
        for (inbox, key) in [(&a, 1), (&b, 2)] {
            let mut taken = VecDeque::new();
            assert_eq!(inbox.take(&mut taken), [key]);
            let offsets: Vec<u64> = taken.iter().map(|d| d.offset).collect();
            assert_eq!(offsets, [1], "what came before the gap is delivered");
        }
        let mut taken = VecDeque::new();
        assert!(other.take(&mut taken).is_empty(), "another channel goes on");
    }
}
