//! The pub/sub side of the Redis engine: one task owns the process's pub/sub connection, the
//! reference count of local subscribers per channel (SUBSCRIBE on the first, UNSUBSCRIBE
//! after the last; the requests queued at once served as one batch) and, per channel, the
//! epoch and last offset handed to the sink. Nothing is handed on out of sequence: an offset
//! that skips, a lost connection (resubscribed in batches on the next one) or a position check
//! that finds Redis ahead of what arrived are repaired from the history stream in order, and
//! when the history cannot fill the gap the sink is told so ([`SinkEvent::Gap`]: the hub ends
//! the local subscriptions with `insufficient_state`). Redis going back (an offset brought
//! twice, a top below what was delivered) is told to the history script, which gives the
//! channel a new epoch: a gap too, never reused offsets taken for duplicates. The connection is made again with
//! exponential backoff; meanwhile subscribes are refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use super::super::broker::{EpochId, SinkEvent, StreamPosition};
use super::shared::{ReadFrom, Shared};
use crate::metrics::{BrokerOperation, GapRepair};

mod check;
mod requests;

/// Channels named in one SUBSCRIBE (a new connection taking them all back), and requests
/// served together: a burst of subscribes costs one SUBSCRIBE and one round of position reads
/// per batch, and between batches the task can serve pub/sub again.
const SUBSCRIBE_BATCH: usize = 256;

/// What the broker's calls ask of the task.
pub(super) enum Control {
    /// One more local subscriber; answered once the channel's publications reach the sink.
    Subscribe(Arc<str>, oneshot::Sender<Result<(), ()>>),
    /// One local subscriber fewer.
    Unsubscribe(Arc<str>),
}

/// A channel subscribed here.
struct Tracker {
    /// The channel's name, shared with the sink's events.
    name: Arc<str>,
    subscribers: usize,
    epoch: Arc<str>,
    /// The last offset handed to the sink (or known to be in the subscribers' history reads).
    delivered: u64,
    /// The last offset pub/sub brought in this epoch. Redis publishes a channel's offsets in
    /// increasing order, so one at or below it means Redis went back (lost answered writes)
    /// and is reusing offsets.
    live: u64,
    /// Pub/sub brought an offset again: the next repair (until one reads) tells the history
    /// script so, which gives the channel a new epoch.
    went_back: bool,
    /// The top a position check saw ahead of `delivered`; still ahead at the next check means
    /// pub/sub lost it.
    seen_ahead: Option<u64>,
    /// A repair failed (Redis unreachable): tried again at the next check.
    unrepaired: bool,
}

/// How a connection ended.
enum Ended {
    /// Lost: connect again.
    Lost,
    /// The engine was dropped: stop.
    Closed,
}

struct Task {
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    channels: HashMap<Arc<str>, Tracker>,
}

/// The task: connect, serve, and on a loss connect again with backoff, until the engine is
/// dropped.
pub(super) async fn run(shared: Arc<Shared>, control: mpsc::UnboundedReceiver<Control>) {
    let mut task = Task {
        shared,
        control,
        channels: HashMap::new(),
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    let mut connected_before = false;
    loop {
        let ended = match task.connect().await {
            Some((sink, stream)) => {
                if connected_before {
                    task.shared.gauges.metrics.pubsub_reconnects.inc();
                    info!(
                        channels = task.channels.len(),
                        "redis pub/sub connected again"
                    );
                }
                connected_before = true;
                delays = backoff.build();
                let ended = task.serve(sink, stream).await;
                task.shared.set_pubsub_up(false);
                if matches!(ended, Ended::Lost) {
                    warn!("redis pub/sub connection lost");
                }
                ended
            }
            None => {
                let delay = delays.next().unwrap_or(Duration::from_secs(2));
                task.refuse_for(delay).await
            }
        };
        if matches!(ended, Ended::Closed) {
            return;
        }
        task.shared.gauges.metrics.error(BrokerOperation::Pubsub);
    }
}

impl Task {
    /// A pub/sub connection with every channel of `channels` subscribed again and repaired.
    async fn connect(&mut self) -> Option<(PubSubSink, PubSubStream)> {
        let timeout = self.shared.timeout;
        let pubsub = tokio::time::timeout(timeout, self.shared.client.get_async_pubsub());
        let (mut sink, stream) = match pubsub.await {
            Ok(Ok(pubsub)) => pubsub.split(),
            Ok(Err(error)) => {
                warn!(%error, "redis pub/sub connection refused");
                return None;
            }
            Err(_) => {
                warn!("redis pub/sub connection timed out");
                return None;
            }
        };
        let topics: Vec<String> = self
            .channels
            .keys()
            .map(|channel| self.shared.keys.topic(channel))
            .collect();
        subscribe(&mut sink, &topics, timeout).await.ok()?;
        self.shared.set_pubsub_up(true);
        self.shared.probe().await;
        // Whatever was published while no connection listened is in the history, or lost.
        self.check_after_loss().await;
        Some((sink, stream))
    }

    /// Serves a connection until it is lost or the engine dropped.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> Ended {
        let interval = self.shared.check_interval;
        let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The position check under way, read while pub/sub is served.
        let mut check = None;
        loop {
            // Requests first: an unsubscribe sent before a publication was even made is
            // served before that publication's message, so the sink never gets it.
            tokio::select! {
                biased;
                request = self.control.recv() => match request {
                    Some(request) => {
                        let requests = self.queued_behind(request);
                        if self.apply(requests, &mut sink).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                    None => return Ended::Closed,
                },
                message = stream.next() => match message {
                    Some(message) => self.dispatch(&message).await,
                    None => return Ended::Lost,
                },
                _ = checks.tick(), if check.is_none() => {
                    // A connection Redis stopped answering on ends no stream: ask it. Here,
                    // between the task's other requests: the client pairs pub/sub's answers
                    // with its requests in order, and a SUBSCRIBE of many topics has many.
                    let ping = tokio::time::timeout(self.shared.timeout, sink.ping::<redis::Value>());
                    if !matches!(ping.await, Ok(Ok(_))) {
                        return Ended::Lost;
                    }
                    check = Some(self.begin_check());
                }
                checked = Task::finish_check(&mut check), if check.is_some() => {
                    check = None;
                    self.judge(checked, false).await;
                    self.shared.local.sweep();
                }
            }
        }
    }

    /// Without a connection, for `delay`: subscribes are refused, unsubscribes counted.
    async fn refuse_for(&mut self, delay: Duration) -> Ended {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return Ended::Lost,
                request = self.control.recv() => match request {
                    Some(Control::Subscribe(_, reply)) => {
                        let _ = reply.send(Err(()));
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        self.release(&channel);
                    }
                    None => return Ended::Closed,
                },
            }
        }
    }

    /// One local subscriber fewer; `true` when it was the channel's last.
    fn release(&mut self, channel: &str) -> bool {
        let Some(tracker) = self.channels.get_mut(channel) else {
            return false;
        };
        tracker.subscribers -= 1;
        if tracker.subscribers > 0 {
            return false;
        }
        self.channels.remove(channel);
        true
    }

    /// A pub/sub message: handed on when it is the channel's next offset, dropped when
    /// already handed on, repaired from history otherwise.
    async fn dispatch(&mut self, message: &redis::Msg) {
        let Some(channel) = self.shared.keys.channel_of(message.get_channel_name()) else {
            return;
        };
        let Some(tracker) = self.channels.get_mut(channel) else {
            return; // no local subscriber left
        };
        let Some((offset, epoch, publication)) = super::wire::message(message.get_payload_bytes())
        else {
            warn!(channel, "unreadable pub/sub message");
            self.shared.gauges.metrics.error(BrokerOperation::Pubsub);
            return;
        };
        if *tracker.epoch == *epoch {
            if offset <= tracker.live {
                warn!(
                    channel,
                    offset,
                    last = tracker.live,
                    "redis assigned an offset again: it went back"
                );
                tracker.went_back = true;
                let name = Arc::clone(&tracker.name);
                self.repair(&name).await;
                return;
            }
            tracker.live = offset;
            if offset <= tracker.delivered {
                return; // handed on already, by a repair
            }
            if offset == tracker.delivered + 1 {
                tracker.delivered = offset;
                let epoch = EpochId::of(&tracker.epoch);
                let event = SinkEvent::Publication(Arc::new(publication), epoch);
                (self.shared.sink)(&tracker.name, event);
                return;
            }
        }
        // A hole before this offset, or another epoch (a newer one, or a late message of an
        // older one): the history says which. Unless Redis failed the channel's last repair:
        // then the next position check tries again, instead of every message of the channel
        // holding pub/sub up for a timeout while Redis is slow, and the process's unread
        // pub/sub messages piling up meanwhile.
        if tracker.unrepaired {
            return;
        }
        let name = Arc::clone(&tracker.name);
        self.repair(&name).await;
    }

    /// Brings the channel up to Redis's top: the missing publications from the history, in
    /// order, or a gap when the history no longer holds them (or Redis went back: the
    /// history script then gives the channel a new epoch).
    async fn repair(&mut self, channel: &Arc<str>) {
        let Some(tracker) = self.channels.get(channel) else {
            return;
        };
        let since = StreamPosition {
            offset: tracker.delivered,
            epoch: tracker.epoch.to_string(),
        };
        let from = if tracker.went_back {
            ReadFrom::WentBack(&since)
        } else {
            ReadFrom::Delivered(&since)
        };
        let read = self.shared.read(channel, from).await;
        let Some(tracker) = self.channels.get_mut(channel) else {
            return;
        };
        let Ok(history) = read else {
            tracker.unrepaired = true;
            return;
        };
        tracker.unrepaired = false;
        tracker.went_back = false;
        tracker.seen_ahead = None;
        let metrics = &self.shared.gauges.metrics;
        if history.complete {
            if history.publications.is_empty() {
                return; // nothing was missing
            }
            // Complete: in the channel's epoch.
            let epoch = EpochId::of(&tracker.epoch);
            for publication in history.publications {
                (self.shared.sink)(channel, SinkEvent::Publication(publication, epoch));
            }
            tracker.delivered = history.top;
            metrics.gap_repaired(GapRepair::Filled);
            info!(
                channel = &**channel,
                offset = history.top,
                "gap filled from history"
            );
        } else {
            (self.shared.sink)(channel, SinkEvent::Gap);
            if *tracker.epoch != *history.epoch {
                tracker.live = 0;
            }
            tracker.epoch = history.epoch;
            tracker.delivered = history.top;
            metrics.gap_repaired(GapRepair::InsufficientState);
            warn!(
                channel = &**channel,
                "gap the history cannot fill: subscribers told insufficient_state"
            );
        }
    }
}

/// SUBSCRIBEs to `topics`, [`SUBSCRIBE_BATCH`] in one command.
async fn subscribe(sink: &mut PubSubSink, topics: &[String], timeout: Duration) -> Result<(), ()> {
    for batch in topics.chunks(SUBSCRIBE_BATCH) {
        if !matches!(
            tokio::time::timeout(timeout, sink.subscribe(batch)).await,
            Ok(Ok(()))
        ) {
            return Err(());
        }
    }
    Ok(())
}
