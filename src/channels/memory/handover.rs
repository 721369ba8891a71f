//! The in-memory engine's side of a handover (docs/handover.md): its channels written out for
//! the next process once publishing has stopped, and taken back there within that process's
//! own bounds (`HISTORY_SIZE`, `HISTORY_TTL`, `HISTORY_MAX_BYTES`, `MAX_CHANNELS`), with the
//! same epochs and offsets.

use super::*;
use crate::channels::snapshot::{ChannelSnapshot, ChannelsSnapshot, PublicationSnapshot, Restored};

/// How long a restored channel stays, however old its history, for its subscribers to resume:
/// freed earlier, it would come back with a new epoch and they would all lose their place.
const RESUME_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// Every channel as it stands at `now`.
    pub(super) fn snapshot(&self, now: Instant) -> ChannelsSnapshot {
        let channels = self.channels.values().map(|ch| ch.snapshot(now)).collect();
        ChannelsSnapshot { channels }
    }

    /// Restores the channels of `snapshot` that are consistent and not already here (a client
    /// of this process created it first: its epoch stands), up to `MAX_CHANNELS`.
    pub(super) fn restore(&mut self, snapshot: ChannelsSnapshot, now: Instant) -> Restored {
        let mut restored = Restored::default();
        for channel in snapshot.channels {
            let fits = self.channels.len() < self.limits.max_channels;
            if !fits || !is_consistent(&channel) || self.channels.contains_key(&*channel.name) {
                restored.refused += 1;
                continue;
            }
            restored.publications += self.restore_channel(channel, now);
            restored.channels += 1;
        }
        self.gauges.channels.set(self.channels.len() as i64);
        self.gauges.history_bytes.set(self.history_bytes as i64);
        restored
    }

    /// Restores one channel; returns how many publications of its history it keeps.
    fn restore_channel(&mut self, snapshot: ChannelSnapshot, now: Instant) -> usize {
        self.generations += 1;
        let name: Arc<str> = snapshot.name.into();
        let ttl = self.limits.history_ttl;
        let last_publish = snapshot
            .published_ms_ago
            .map(|ms| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now));
        self.channels.insert(
            Arc::clone(&name),
            Channel {
                name: Arc::clone(&name),
                epoch: snapshot.epoch.into(),
                generation: self.generations,
                top: snapshot.top,
                history: VecDeque::new(),
                last_publish,
                subscribers: 0,
                expiry_queued: true,
            },
        );
        let expires = last_publish.map_or(now, |last| last + ttl);
        let deadline = expires.max(now + RESUME_GRACE);
        self.expiries.push(Reverse((deadline, Arc::clone(&name))));
        if expires <= now {
            return 0; // its history outlived this process's HISTORY_TTL
        }
        let history = snapshot.history;
        let skip = history.len().saturating_sub(self.limits.history_size);
        let mut kept = 0;
        for publication in history.into_iter().skip(skip) {
            self.append(Arc::clone(&name), Arc::new(publication.into()));
            kept += 1;
        }
        kept
    }
}

/// Whether a channel's history is what an engine leaves: consecutive offsets ending at its
/// newest, under a name.
fn is_consistent(channel: &ChannelSnapshot) -> bool {
    let first = (channel.top + 1).checked_sub(channel.history.len() as u64);
    let consecutive = channel
        .history
        .iter()
        .zip(first.unwrap_or(0)..)
        .all(|(p, offset)| p.offset == offset && offset >= 1);
    !channel.name.is_empty() && first.is_some() && consecutive
}

impl Channel {
    fn snapshot(&self, now: Instant) -> ChannelSnapshot {
        ChannelSnapshot {
            name: self.name.to_string(),
            epoch: self.epoch.to_string(),
            top: self.top,
            published_ms_ago: self
                .last_publish
                .map(|last| now.saturating_duration_since(last).as_millis() as u64),
            history: self.history.iter().map(|p| p.as_ref().into()).collect(),
        }
    }
}

impl From<&Publication> for PublicationSnapshot {
    fn from(p: &Publication) -> Self {
        PublicationSnapshot {
            offset: p.offset,
            data: p.data.clone(),
            from: p.from.to_string(),
            user: p.user.as_deref().map(str::to_owned),
        }
    }
}

impl From<PublicationSnapshot> for Publication {
    fn from(p: PublicationSnapshot) -> Self {
        Publication {
            offset: p.offset,
            data: p.data,
            from: p.from.into(),
            user: p.user.map(Box::from),
        }
    }
}
