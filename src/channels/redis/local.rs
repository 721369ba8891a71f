//! The channels this process holds with the Redis engine, for `MAX_CHANNELS` and
//! `websocket_channels_active`: a channel counts while it has local subscribers, and for
//! `HISTORY_TTL` after this process last published to it (as the in-memory engine keeps a
//! channel while its history lives). The history itself is in Redis.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use prometheus::IntGauge;

use super::super::broker::BrokerError;
use super::super::memory::MemoryLimits;

#[derive(Default)]
struct Held {
    subscribers: usize,
    /// When a publication from here stops keeping the channel.
    kept_until: Option<Instant>,
}

impl Held {
    fn idle(&self, now: Instant) -> bool {
        self.subscribers == 0 && self.kept_until.is_none_or(|until| until <= now)
    }
}

pub(super) struct LocalChannels {
    held: Mutex<HashMap<Box<str>, Held>>,
    limits: MemoryLimits,
    gauge: IntGauge,
}

impl LocalChannels {
    pub(super) fn new(limits: MemoryLimits, gauge: IntGauge) -> LocalChannels {
        LocalChannels {
            held: Mutex::default(),
            limits,
            gauge,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `channel` is held or there is room for it; idle channels are let go first
    /// when there is not.
    fn room(&self, held: &mut HashMap<Box<str>, Held>, channel: &str) -> Result<(), BrokerError> {
        if held.contains_key(channel) || held.len() < self.limits.max_channels {
            return Ok(());
        }
        let now = Instant::now();
        held.retain(|_, h| !h.idle(now));
        self.gauge.set(held.len() as i64);
        if held.len() < self.limits.max_channels {
            Ok(())
        } else {
            Err(BrokerError::ChannelLimit)
        }
    }

    /// Changes the channel's entry, made when `MAX_CHANNELS` leaves room (a channel already
    /// held, as on every publish but its first, costs no allocation).
    fn with(&self, channel: &str, change: impl FnOnce(&mut Held)) -> Result<(), BrokerError> {
        let mut held = self.lock();
        if let Some(entry) = held.get_mut(channel) {
            change(entry);
            return Ok(());
        }
        self.room(&mut held, channel)?;
        change(held.entry(channel.into()).or_default());
        self.gauge.set(held.len() as i64);
        Ok(())
    }

    /// A publish from here: refused on a new channel beyond `MAX_CHANNELS`.
    pub(super) fn published(&self, channel: &str) -> Result<(), BrokerError> {
        let until = Instant::now() + self.limits.history_ttl;
        self.with(channel, |held| held.kept_until = Some(until))
    }

    /// One more local subscriber, refused on a new channel beyond `MAX_CHANNELS`.
    pub(super) fn subscribed(&self, channel: &str) -> Result<(), BrokerError> {
        self.with(channel, |held| held.subscribers += 1)
    }

    /// Whether a history read may touch `channel` (refused as a new one would be).
    pub(super) fn admits(&self, channel: &str) -> Result<(), BrokerError> {
        self.room(&mut self.lock(), channel)
    }

    /// One local subscriber fewer.
    pub(super) fn unsubscribed(&self, channel: &str) {
        let mut held = self.lock();
        if let Some(h) = held.get_mut(channel) {
            h.subscribers = h.subscribers.saturating_sub(1);
            if h.idle(Instant::now()) {
                held.remove(channel);
            }
        }
        self.gauge.set(held.len() as i64);
    }

    /// Lets go of the channels nothing keeps any more.
    pub(super) fn sweep(&self) {
        let mut held = self.lock();
        let now = Instant::now();
        held.retain(|_, h| !h.idle(now));
        self.gauge.set(held.len() as i64);
    }
}
