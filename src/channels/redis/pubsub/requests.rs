//! The pub/sub task's requests, served in batches: the subscribes and unsubscribes queued at
//! once are counted in their order, then Redis gets one UNSUBSCRIBE for the channels left
//! without subscribers, one SUBSCRIBE for the new ones and one round of position reads, so a
//! burst of subscribes holds pub/sub delivery up for two round trips per batch, not per
//! channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::PubSubSink;
use tokio::sync::oneshot;

use super::{Control, SUBSCRIBE_BATCH, Task, Tracker, subscribe};
use crate::metrics::BrokerOperation;

/// A channel not subscribed here when a batch of requests began: its local subscribers after
/// the batch's requests so far, and the subscribes that wait for it to be subscribed.
#[derive(Default)]
struct Pending {
    subscribers: usize,
    waiting: Vec<oneshot::Sender<Result<(), ()>>>,
}

impl Task {
    /// `first` and the requests queued behind it, up to [`SUBSCRIBE_BATCH`], in their order.
    pub(super) fn queued_behind(&mut self, first: Control) -> Vec<Control> {
        let mut requests = vec![first];
        while requests.len() < SUBSCRIBE_BATCH {
            match self.control.try_recv() {
                Ok(request) => requests.push(request),
                Err(_) => break, // empty, or closed: the next `recv` says so
            }
        }
        requests
    }

    /// Serves a batch of requests; an error means the connection failed under it. The counts
    /// follow the requests in order; Redis then gets one UNSUBSCRIBE for the channels left
    /// without subscribers and one SUBSCRIBE for those that got their first. A channel whose
    /// count passes through zero within the batch stays as it was in Redis: no pub/sub
    /// message is dispatched in between, so that is what serving them one by one gives.
    pub(super) async fn apply(
        &mut self,
        requests: Vec<Control>,
        sink: &mut PubSubSink,
    ) -> Result<(), ()> {
        let mut pending: HashMap<Arc<str>, Pending> = HashMap::new();
        let mut released = Vec::new();
        for request in requests {
            match request {
                Control::Subscribe(channel, reply) => {
                    if let Some(tracker) = self.channels.get_mut(&channel) {
                        // Counted only when the caller takes the answer: see `Asked`.
                        if reply.send(Ok(())).is_ok() {
                            tracker.subscribers += 1;
                        }
                    } else {
                        let waiting = pending.entry(channel).or_default();
                        waiting.subscribers += 1;
                        waiting.waiting.push(reply);
                    }
                }
                Control::Unsubscribe(channel) => {
                    if let Some(tracker) = self.channels.get_mut(&channel) {
                        tracker.subscribers = tracker.subscribers.saturating_sub(1);
                        released.push(channel);
                    } else if let Some(waiting) = pending.get_mut(&channel) {
                        waiting.subscribers = waiting.subscribers.saturating_sub(1);
                    }
                }
            }
        }
        if self.unsubscribe_unused(released, sink).await.is_err() {
            refuse(pending.into_values());
            return Err(());
        }
        // Subscribed and unsubscribed again within the batch: served, never in Redis.
        pending.retain(|_, waiting| {
            let unused = waiting.subscribers == 0;
            if unused {
                answer(std::mem::take(&mut waiting.waiting), Ok(()));
            }
            !unused
        });
        self.subscribe_new(pending, sink).await
    }

    /// Drops the channels of `released` left without subscribers, in one UNSUBSCRIBE.
    async fn unsubscribe_unused(
        &mut self,
        released: Vec<Arc<str>>,
        sink: &mut PubSubSink,
    ) -> Result<(), ()> {
        let mut topics = Vec::new();
        for channel in released {
            let unused = self
                .channels
                .get(&channel)
                .is_some_and(|tracker| tracker.subscribers == 0);
            if unused {
                self.channels.remove(&channel);
                topics.push(self.shared.keys.topic(&channel));
            }
        }
        let result = unsubscribe(sink, &topics, self.shared.timeout).await;
        if result.is_err() {
            self.shared
                .gauges
                .metrics
                .error(BrokerOperation::Unsubscribe);
        }
        result
    }

    /// Subscribes the channels of `pending` in one SUBSCRIBE, reads their positions in one
    /// round, and answers their waiting subscribes: a channel whose read failed is refused
    /// and unsubscribed; a SUBSCRIBE that failed refuses them all and is the connection's end.
    async fn subscribe_new(
        &mut self,
        pending: HashMap<Arc<str>, Pending>,
        sink: &mut PubSubSink,
    ) -> Result<(), ()> {
        if pending.is_empty() {
            return Ok(());
        }
        let timeout = self.shared.timeout;
        let (names, pending): (Vec<Arc<str>>, Vec<Pending>) = pending.into_iter().unzip();
        let topics: Vec<String> = names.iter().map(|c| self.shared.keys.topic(c)).collect();
        if subscribe(sink, &topics, timeout).await.is_err() {
            refuse(pending);
            return Err(());
        }
        // From here on every publication reaches this connection; the position reads after
        // it say which ones the subscribers' history reads will cover.
        let positions = self.shared.positions(&names).await;
        let mut unread = Vec::new();
        for (((channel, topic), waiting), position) in
            names.into_iter().zip(topics).zip(pending).zip(positions)
        {
            let Ok(position) = position else {
                answer(waiting.waiting, Err(()));
                unread.push(topic);
                continue;
            };
            // Callers that gave up meanwhile are not counted (`Asked`).
            let gone = answer(waiting.waiting, Ok(()));
            let subscribers = waiting.subscribers.saturating_sub(gone);
            if subscribers == 0 {
                unread.push(topic);
                continue;
            }
            let tracker = Tracker {
                name: Arc::clone(&channel),
                subscribers,
                epoch: position.epoch,
                delivered: position.top,
                live: 0,
                went_back: false,
                seen_ahead: None,
                unrepaired: false,
            };
            self.channels.insert(channel, tracker);
        }
        unsubscribe(sink, &unread, timeout).await
    }
}

/// Refuses every subscribe waiting for these channels: the connection failed under them.
fn refuse(pending: impl IntoIterator<Item = Pending>) {
    for waiting in pending {
        answer(waiting.waiting, Err(()));
    }
}

/// Answers every subscribe of `waiting` with `result`; returns how many callers had given up
/// (their answer closed).
fn answer(waiting: Vec<oneshot::Sender<Result<(), ()>>>, result: Result<(), ()>) -> usize {
    waiting
        .into_iter()
        .map(|reply| usize::from(reply.send(result).is_err()))
        .sum()
}

/// UNSUBSCRIBEs from `topics` in one command; none is no command (an UNSUBSCRIBE naming no
/// topic would drop them all).
async fn unsubscribe(
    sink: &mut PubSubSink,
    topics: &[String],
    timeout: Duration,
) -> Result<(), ()> {
    if topics.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(timeout, sink.unsubscribe(topics)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
