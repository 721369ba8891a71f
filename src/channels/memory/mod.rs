//! The in-memory engine (`BROKER=memory`): the channels of one process. Per channel an offset
//! counter, an epoch made new whenever the channel is created (so at process start), and a
//! history ring of `HISTORY_SIZE` publications kept `HISTORY_TTL` after the last one. A
//! channel with no local subscriber whose history expired is freed, so memory follows the
//! live subscriptions and history, not the channels ever used; `HISTORY_MAX_BYTES` bounds all
//! history together, the oldest publications of the process going first. A handover hands
//! the channels to the next process (`handover.rs`).

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, ready};
use prometheus::IntGauge;

use super::broker::{
    Accepted, Broker, BrokerError, EpochId, History, NewPublication, Publication, PublicationSink,
    SinkEvent, StreamPosition,
};
use super::snapshot::{ChannelsSnapshot, Restored};

mod handover;

/// How often expired history is looked for besides at each call.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The engine's bounds (from `ChannelsConfig`).
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub history_max_bytes: usize,
    pub max_channels: usize,
}

/// The gauges the engine keeps current (`websocket_channels_active`, `websocket_history_bytes`).
#[derive(Clone)]
pub struct EngineGauges {
    pub channels: IntGauge,
    pub history_bytes: IntGauge,
}

/// The in-memory broker.
pub struct MemoryBroker {
    engine: Mutex<Engine>,
    sink: PublicationSink,
}

struct Channel {
    name: Arc<str>,
    epoch: Arc<str>,
    /// Tells this channel from an earlier one of the same name (freed, then created again).
    generation: u64,
    top: u64,
    history: VecDeque<Arc<Publication>>,
    last_publish: Option<Instant>,
    subscribers: usize,
    /// Whether an expiry for this channel waits in `Engine::expiries`.
    expiry_queued: bool,
}

/// One publication in the process-wide age order of history.
struct Appended {
    channel: Arc<str>,
    generation: u64,
    offset: u64,
}

struct Engine {
    limits: MemoryLimits,
    gauges: EngineGauges,
    channels: HashMap<Arc<str>, Channel>,
    /// Every publication appended to a history, oldest first, for the byte budget. Entries
    /// whose publication already left (ring full, expired, channel freed) are skipped, and
    /// compacted away when they outnumber the live ones.
    order: VecDeque<Appended>,
    entries: usize,
    history_bytes: usize,
    /// When each channel's history expires, at most one entry per channel.
    expiries: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    generations: u64,
    /// Random per process: epochs of two processes (or two runs) never match.
    nonce: u32,
    /// The channels went to the next process: no publication may follow.
    handed_over: bool,
}

impl MemoryBroker {
    /// An engine handing publications to `sink`; with a runtime, a task frees expired history
    /// every second until the engine is dropped.
    pub fn start(
        limits: MemoryLimits,
        gauges: EngineGauges,
        sink: PublicationSink,
    ) -> Arc<MemoryBroker> {
        let broker = Arc::new(MemoryBroker {
            engine: Mutex::new(Engine::new(limits, gauges)),
            sink,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep_until_dropped(Arc::downgrade(&broker)));
        }
        broker
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic while holding the lock leaves the maps consistent (no step is half done
        // across an await): keep serving.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_now(
        &self,
        channel: &str,
        publication: NewPublication,
    ) -> Result<Accepted, BrokerError> {
        let now = Instant::now();
        let mut engine = self.engine();
        if engine.handed_over {
            // Its offset would be the next process's too.
            return Err(BrokerError::Unavailable);
        }
        engine.expire(now);
        let (name, ch) = engine.channel(channel)?;
        ch.top += 1;
        let publication = Arc::new(Publication {
            offset: ch.top,
            data: publication.data,
            from: publication.from,
            user: publication.user,
        });
        ch.last_publish = Some(now);
        let accepted = Accepted {
            offset: ch.top,
            epoch: Arc::clone(&ch.epoch),
        };
        let subscribed = ch.subscribers > 0;
        let queue_expiry = !std::mem::replace(&mut ch.expiry_queued, true);
        // Handed on under the lock: the sink sees a channel's publications in offset order.
        if subscribed {
            let epoch = EpochId::of(&ch.epoch);
            (self.sink)(
                &name,
                SinkEvent::Publication(Arc::clone(&publication), epoch),
            );
        }
        if queue_expiry {
            let ttl = engine.limits.history_ttl;
            engine
                .expiries
                .push(Reverse((now + ttl, Arc::clone(&name))));
        }
        engine.append(name, publication);
        Ok(accepted)
    }

    fn history_now(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, BrokerError> {
        let mut engine = self.engine();
        engine.expire(Instant::now());
        let (name, ch) = engine.channel(channel)?;
        let history = ch.history_since(since);
        if ch.subscribers == 0 && !ch.expiry_queued {
            // Nothing else keeps it alive: a read must not leave channels behind.
            engine.channels.remove(&name);
            engine.gauges.channels.set(engine.channels.len() as i64);
        }
        Ok(history)
    }

    /// Frees expired history and the channels left with nothing.
    pub fn sweep(&self) {
        self.engine().expire(Instant::now());
    }
}

async fn sweep_until_dropped(broker: Weak<MemoryBroker>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match broker.upgrade() {
            Some(broker) => broker.sweep(),
            None => return,
        }
    }
}

impl Channel {
    /// The epoch and newest offset, and the publications after `since` when all are held.
    fn history_since(&self, since: Option<&StreamPosition>) -> History {
        let mut history = History {
            epoch: Arc::clone(&self.epoch),
            top: self.top,
            publications: Vec::new(),
            complete: false,
        };
        let Some(since) = since else {
            return history;
        };
        let oldest_kept = self.history.front().map_or(self.top + 1, |p| p.offset);
        history.complete = *since.epoch == *self.epoch
            && since.offset <= self.top
            && since.offset + 1 >= oldest_kept;
        if history.complete {
            let skip = (since.offset + 1).saturating_sub(oldest_kept) as usize;
            history.publications = self.history.iter().skip(skip).cloned().collect();
        }
        history
    }
}

impl Engine {
    fn new(limits: MemoryLimits, gauges: EngineGauges) -> Engine {
        Engine {
            limits,
            gauges,
            channels: HashMap::new(),
            order: VecDeque::new(),
            entries: 0,
            history_bytes: 0,
            expiries: BinaryHeap::new(),
            generations: 0,
            nonce: RandomState::new().hash_one(std::process::id()) as u32,
            handed_over: false,
        }
    }

    /// The channel, created (with a new epoch) when absent and `MAX_CHANNELS` allows it.
    fn channel(&mut self, name: &str) -> Result<(Arc<str>, &mut Channel), BrokerError> {
        if !self.channels.contains_key(name) {
            if self.channels.len() >= self.limits.max_channels {
                return Err(BrokerError::ChannelLimit);
            }
            self.generations += 1;
            let generation = self.generations;
            let name: Arc<str> = name.into();
            let channel = Channel {
                name: Arc::clone(&name),
                epoch: format!("{:08x}{generation:x}", self.nonce).into(),
                generation,
                top: 0,
                history: VecDeque::new(),
                last_publish: None,
                subscribers: 0,
                expiry_queued: false,
            };
            self.channels.insert(name, channel);
            self.gauges.channels.set(self.channels.len() as i64);
        }
        let channel = self
            .channels
            .get_mut(name)
            .expect("present or just inserted");
        Ok((Arc::clone(&channel.name), channel))
    }

    /// Appends to the channel's ring, then enforces the ring's size and the byte budget.
    fn append(&mut self, name: Arc<str>, publication: Arc<Publication>) {
        if self.limits.history_size == 0 {
            return;
        }
        let ch = self.channels.get_mut(&name).expect("the channel published");
        let (generation, offset, cost) = (ch.generation, publication.offset, publication.cost());
        ch.history.push_back(publication);
        let evicted = (ch.history.len() > self.limits.history_size)
            .then(|| ch.history.pop_front())
            .flatten();
        self.entries += 1;
        self.history_bytes += cost;
        if let Some(old) = evicted {
            self.forget(&old);
        }
        self.order.push_back(Appended {
            channel: name,
            generation,
            offset,
        });
        while self.history_bytes > self.limits.history_max_bytes && self.evict_oldest() {}
        if self.order.len() > 2 * self.entries + 1024 {
            self.compact_order();
        }
        self.gauges.history_bytes.set(self.history_bytes as i64);
    }

    fn forget(&mut self, publication: &Publication) {
        self.entries -= 1;
        self.history_bytes -= publication.cost();
    }

    /// Drops the oldest publication still held, whichever channel it is in; `false` when
    /// none is left.
    fn evict_oldest(&mut self) -> bool {
        while let Some(oldest) = self.order.pop_front() {
            let Some(ch) = self.channels.get_mut(&oldest.channel) else {
                continue;
            };
            let is_front = ch.generation == oldest.generation
                && ch
                    .history
                    .front()
                    .is_some_and(|p| p.offset == oldest.offset);
            if is_front {
                let publication = ch.history.pop_front().expect("front checked");
                self.forget(&publication);
                return true;
            }
        }
        false
    }

    fn compact_order(&mut self) {
        let channels = &self.channels;
        self.order.retain(|a| {
            channels.get(&a.channel).is_some_and(|ch| {
                ch.generation == a.generation
                    && ch.history.front().is_some_and(|p| p.offset <= a.offset)
            })
        });
    }

    /// Drops the history of channels silent for `HISTORY_TTL`, and frees those with no
    /// subscriber left.
    fn expire(&mut self, now: Instant) {
        let ttl = self.limits.history_ttl;
        while let Some(Reverse((deadline, _))) = self.expiries.peek() {
            if *deadline > now {
                break;
            }
            let Reverse((_, name)) = self.expiries.pop().expect("peeked");
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            // None: a channel restored from a handover that never published.
            let fresh_until = ch.last_publish.map(|last| last + ttl);
            if let Some(deadline) = fresh_until.filter(|deadline| *deadline > now) {
                // Published again since: wait for the new deadline.
                self.expiries.push(Reverse((deadline, name)));
                continue;
            }
            ch.expiry_queued = false;
            let dropped = std::mem::take(&mut ch.history);
            let idle = ch.subscribers == 0;
            for publication in &dropped {
                self.forget(publication);
            }
            if idle {
                self.channels.remove(&name);
            }
        }
        self.gauges.channels.set(self.channels.len() as i64);
        self.gauges.history_bytes.set(self.history_bytes as i64);
    }

    fn subscribe(&mut self, name: &str) -> Result<(), BrokerError> {
        self.expire(Instant::now());
        self.channel(name)?.1.subscribers += 1;
        Ok(())
    }

    fn unsubscribe(&mut self, name: &str) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        ch.subscribers = ch.subscribers.saturating_sub(1);
        // Kept while its history (or its offsets, with history off) may still be asked for.
        if ch.subscribers == 0 && !ch.expiry_queued {
            self.channels.remove(name);
            self.gauges.channels.set(self.channels.len() as i64);
        }
    }
}

impl Broker for MemoryBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
    ) -> BoxFuture<'a, Result<Accepted, BrokerError>> {
        ready(self.publish_now(channel, publication)).boxed()
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, BrokerError>> {
        ready(self.history_now(channel, since)).boxed()
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        ready(self.engine().subscribe(channel)).boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, ()> {
        self.engine().unsubscribe(channel);
        ready(()).boxed()
    }

    fn is_up(&self) -> bool {
        true
    }

    fn hand_over(&self) -> Option<ChannelsSnapshot> {
        let mut engine = self.engine();
        engine.handed_over = true;
        Some(engine.snapshot(Instant::now()))
    }

    fn take_over(&self, snapshot: ChannelsSnapshot) -> Restored {
        let now = Instant::now();
        let mut engine = self.engine();
        engine.expire(now);
        engine.restore(snapshot, now)
    }
}

#[cfg(test)]
mod tests;
