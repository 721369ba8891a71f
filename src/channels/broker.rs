//! The broker seam: what an engine (in-memory here, Redis with issue 17) does for the channels
//! of a process. It orders a channel's publications (offsets, one epoch per history), keeps
//! their history, tells whether a history covers what a client missed, and counts this
//! process's interest in a channel, so that it hands the process's hub exactly the
//! publications of channels someone here listens to. The shape follows centrifuge's
//! `Broker` (publish with history, history since a stream position, per-node subscribe).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use super::snapshot::{ChannelsSnapshot, Restored};
use crate::protocol::{ServerMessage, now_ms};

/// One publication as the broker stores and hands it on.
#[derive(Debug)]
pub struct Publication {
    pub offset: u64,
    /// The published `data`, byte for byte as the publisher sent it.
    pub data: Box<RawValue>,
    /// The publisher's connection id.
    pub from: Box<str>,
    /// The publisher's verified user (token subject) when authentication is on.
    pub user: Option<Box<str>>,
}

impl Publication {
    /// The `publication` message of this publication in `channel`, stamped now.
    pub fn message<'a>(&'a self, channel: &'a str) -> ServerMessage<'a> {
        ServerMessage::Publication {
            channel,
            offset: self.offset,
            data: &self.data,
            from: &self.from,
            user: self.user.as_deref(),
            ts: now_ms(),
        }
    }

    /// Bytes of memory the publication holds (what `HISTORY_MAX_BYTES` counts).
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Publication>()
            + self.data.get().len()
            + self.from.len()
            + self.user.as_ref().map_or(0, |u| u.len())
    }
}

/// What a publisher hands the broker.
#[derive(Debug)]
pub struct NewPublication {
    pub data: Box<RawValue>,
    pub from: Box<str>,
    pub user: Option<Box<str>>,
}

/// Where a client was in a channel: the last offset it saw, in which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

/// A publication accepted: its offset and the channel's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub offset: u64,
    pub epoch: Arc<str>,
}

/// A history read: the channel's epoch and newest offset, and the publications after the
/// asked position (oldest first) when the history holds every one of them.
#[derive(Debug, Clone)]
pub struct History {
    pub epoch: Arc<str>,
    /// The newest offset (0 when nothing was published in this epoch).
    pub top: u64,
    /// Publications `since.offset + 1 ..= top`; empty unless `complete`.
    pub publications: Vec<Arc<Publication>>,
    /// Whether `since` was in this epoch and the history still holds everything after it.
    pub complete: bool,
}

/// Why the broker refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker cannot take work now (no connection to it, or it timed out or refused).
    /// The in-memory engine is unavailable only once it handed its channels to the next
    /// process; the session answers it with `broker_unavailable`.
    Unavailable,
    /// The channel does not exist and the process already holds `MAX_CHANNELS` channels.
    ChannelLimit,
}

/// An epoch as a queued publication carries it: a 64-bit digest of the epoch's name, which
/// every delivery copies (a shared name would cost each one a reference count). A subscription
/// takes only its own epoch's publications: a channel freed and created again while some of
/// its publications still waited in the hub must not hand them to the new life's
/// subscribers, whose offsets count again from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochId(u64);

impl EpochId {
    pub fn of(epoch: &str) -> EpochId {
        use std::hash::{DefaultHasher, Hash, Hasher};
        // Keyed the same in every process (no random key): a digest, not a defence.
        let mut hasher = DefaultHasher::new();
        epoch.hash(&mut hasher);
        EpochId(hasher.finish())
    }
}

/// What the broker hands the hub for a channel this process subscribed to.
#[derive(Debug)]
pub enum SinkEvent {
    /// The channel's next publication, in offset order, and the epoch its offset counts in.
    Publication(Arc<Publication>, EpochId),
    /// Publications of the channel were lost on their way here and the history could not
    /// give them back (trimmed, expired, or the channel has a new epoch): every subscriber
    /// the channel has here now must be ended with `insufficient_state`.
    Gap,
}

/// Where the broker hands every publication of a channel this process subscribed to, in
/// offset order per channel, and the gaps it could not fill: the process's hub.
pub type PublicationSink = Arc<dyn Fn(&Arc<str>, SinkEvent) + Send + Sync>;

/// A channels engine. Every call on one channel is ordered: a publication accepted before a
/// `history` call began is in its answer, and one accepted after it is handed to the sink.
pub trait Broker: Send + Sync + 'static {
    /// Assigns the next offset, appends to the history (when history is on) and hands the
    /// publication to the sink of every process subscribed to the channel. Publishes whose
    /// futures one task polls oldest first (a connection's pipelined publishes) get offsets
    /// in that order: an engine takes a publish's place in line when first polled (the
    /// in-memory engine does all its work then; the Redis engine queues it as one command,
    /// never retried, on its one connection, first in first out, across a reconnection too).
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
    ) -> BoxFuture<'a, Result<Accepted, BrokerError>>;

    /// The channel's epoch and newest offset, and with `since` the publications after it.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, BrokerError>>;

    /// One more local subscriber of `channel`: from the first, its publications reach the
    /// sink. Done before the history is read, so that nothing falls between the two.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// One local subscriber fewer; after the last, the sink gets nothing more of `channel`.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, ()>;

    /// Whether the broker accepts work (`websocket_broker_up`).
    fn is_up(&self) -> bool;

    /// For a handover (docs/handover.md): refuses every later publish (`Unavailable`) and
    /// returns the channels' state for the next process; `None` when the engine keeps none in
    /// this process (Redis keeps it in Redis).
    fn hand_over(&self) -> Option<ChannelsSnapshot> {
        None
    }

    /// Takes the channels a previous process handed over, within this process's history
    /// bounds; before any subscriber resumes. An engine without channel state of its own
    /// ignores them: the resumed subscriptions then find other epochs and end
    /// `insufficient_state`.
    fn take_over(&self, snapshot: ChannelsSnapshot) -> Restored {
        Restored {
            refused: snapshot.channels.len(),
            ..Restored::default()
        }
    }
}
