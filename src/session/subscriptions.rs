//! The channel requests of one chat connection (protocol v1.1): its subscriptions, what it
//! may access, and the move of its publications from its inbox into its outbox, merged by
//! offset so that a subscriber sees each offset once, in order, or is told
//! `insufficient_state` (`insufficient.rs`); parked and resumed across a handover
//! (`handover.rs`). Publishes are served apart, each a future of its own (`publish.rs`). Created on the connection's first channel request: a v1 connection pays
//! one empty pointer for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use crate::auth::Identity;
use crate::channels::{
    BrokerError, Delivery, EpochId, History, Inbox, Publication, Slot, StreamPosition, Subscriber,
};
use crate::metrics::{RecoveryOutcome, SubscriptionEnd};
use crate::protocol::{
    ClientMessage, ErrorCode, ProtocolError, PublicationItem, Recover, ServerMessage, ServerType,
    now_ms,
};
use crate::state::AppState;
use crate::ws::{self, Outbox};

pub(super) mod handover;
mod insufficient;
mod publish;
mod refusals;

pub(super) use publish::PublishRequest;
pub(super) use refusals::Reply;
use refusals::{broker_error, forbidden};

/// A channel request read, owned: it outlives the frame it was read from while the broker
/// works. A publish is served on its own ([`PublishRequest`]); the others through the
/// connection's [`Subscriptions`].
pub(super) enum Request {
    Publish(PublishRequest),
    Channel(ChannelRequest),
}

/// A subscribe or an unsubscribe.
pub(super) struct ChannelRequest {
    id: Option<Box<str>>,
    channel: Box<str>,
    kind: RequestKind,
}

enum RequestKind {
    Subscribe(Option<Recover>),
    Unsubscribe,
}

impl Request {
    /// The request, when `message` is a channel request.
    pub(super) fn from_message(message: &ClientMessage<'_>) -> Option<Request> {
        let owned = |id: &Option<std::borrow::Cow<'_, str>>, channel: &str| {
            (id.as_deref().map(Box::from), Box::from(channel))
        };
        let (id, channel, kind) = match message {
            ClientMessage::Subscribe {
                id,
                channel,
                recover,
            } => (id, channel, RequestKind::Subscribe(recover.clone())),
            ClientMessage::Unsubscribe { id, channel } => (id, channel, RequestKind::Unsubscribe),
            ClientMessage::Publish { id, channel, data } => {
                let (id, channel) = owned(id, channel);
                let data = (*data).to_owned();
                return Some(Request::Publish(PublishRequest { id, channel, data }));
            }
            ClientMessage::Message { .. }
            | ClientMessage::Ping { .. }
            | ClientMessage::Authenticate { .. } => return None,
        };
        let (id, channel) = owned(id, channel);
        Some(Request::Channel(ChannelRequest { id, channel, kind }))
    }
}

/// One subscription: its channel (the name the hub holds, shared), its epoch, which key its
/// deliveries carry, its place in the hub, and the newest offset the client has (or was told
/// it needs no older one).
struct Subscription {
    channel: Arc<str>,
    /// The epoch its offsets count in (shared with the broker's): what a handover carries.
    epoch: Arc<str>,
    /// The same, as its deliveries carry it: a publication of another epoch is not this
    /// subscription's to count.
    epoch_id: EpochId,
    key: u32,
    slot: Slot,
    position: u64,
}

/// The subscriptions of one connection.
pub(super) struct Subscriptions {
    inbox: Arc<Inbox>,
    /// A list, not a map: a connection holds few (at most
    /// `MAX_SUBSCRIPTIONS_PER_CONNECTION`), and an idle connection's memory is what a fleet
    /// is sized by; a scan of a few keys costs less than hashing a name.
    list: Vec<Subscription>,
    next_key: u32,
    /// Deliveries taken from the inbox, kept between wake-ups for its capacity.
    taken: VecDeque<Delivery>,
}

impl Subscriptions {
    /// No subscription yet; the inbox holds at most `inbox_bytes` of publications.
    pub(super) fn new(inbox_bytes: usize) -> Box<Subscriptions> {
        Box::new(Subscriptions {
            inbox: Inbox::new(inbox_bytes),
            list: Vec::new(),
            next_key: 0,
            taken: VecDeque::new(),
        })
    }

    fn position_of(&self, channel: &str) -> Option<usize> {
        self.list.iter().position(|s| *s.channel == *channel)
    }

    /// Takes a subscription out of the list.
    fn remove(&mut self, index: usize) -> Subscription {
        let subscription = self.list.remove(index);
        if self.list.is_empty() {
            self.list = Vec::new(); // nothing kept for a connection that left every channel
        }
        subscription
    }

    /// Serves a subscribe or an unsubscribe of connection `from`.
    pub(super) async fn handle(
        &mut self,
        state: &AppState,
        identity: Option<&Identity>,
        from: &str,
        request: ChannelRequest,
    ) -> Reply {
        let ChannelRequest { id, channel, kind } = request;
        let id = id.as_deref();
        match kind {
            RequestKind::Subscribe(recover) => {
                forbidden(state, identity, &channel, id)?;
                self.subscribe(state, from, id, &channel, recover).await
            }
            RequestKind::Unsubscribe => self.unsubscribe(state, from, id, &channel).await,
        }
    }

    async fn subscribe(
        &mut self,
        state: &AppState,
        from: &str,
        id: Option<&str>,
        channel: &str,
        recover: Option<Recover>,
    ) -> Reply {
        if self.position_of(channel).is_some() {
            let message = "already subscribed to this channel";
            return Err(ProtocolError::new(
                ErrorCode::AlreadySubscribed,
                message,
                id,
            ));
        }
        let limit = state.config.channels.max_subscriptions_per_connection;
        if self.list.len() >= limit {
            let message = format!("at most {limit} subscriptions per connection");
            return Err(ProtocolError::new(
                ErrorCode::SubscriptionLimit,
                message,
                id,
            ));
        }
        let since = recover.map(|r| StreamPosition {
            offset: r.offset,
            epoch: r.epoch,
        });
        let (channel, mut history) = self
            .attach(state, channel, since.as_ref())
            .await
            .map_err(|error| broker_error(error, state, id))?;
        if history.complete && recovery_bytes(&history.publications) > recovery_limit(state) {
            // Larger than one message the transport writes: told, not sent.
            history.complete = false;
            history.publications.clear();
        }
        let metrics = &state.metrics.channels;
        let recovered = since.is_some().then_some(history.complete);
        if let Some(recovered) = recovered {
            metrics.recovery(if recovered {
                RecoveryOutcome::Recovered
            } else {
                RecoveryOutcome::NotRecovered
            });
        }
        debug!(
            connection_id = from,
            channel = &*channel,
            recovered,
            offset = history.top,
            "subscribed"
        );
        let items: Vec<PublicationItem<'_>> = history
            .publications
            .iter()
            .map(|p| PublicationItem {
                offset: p.offset,
                data: &p.data,
                from: &p.from,
                user: p.user.as_deref(),
            })
            .collect();
        let answer = ServerMessage::Subscribed {
            channel: &channel,
            id,
            epoch: &history.epoch,
            offset: history.top,
            recovered,
            publications: recovered.map(|_| &items[..]),
            ts: now_ms(),
        };
        Ok((answer.to_json(), ServerType::Subscribed))
    }

    /// Subscribes to `channel` in the hub and the broker and reads its history since `since`:
    /// the subscription is listed from the history's newest offset on. Returns the channel's
    /// name as the hub holds it, and the history.
    async fn attach(
        &mut self,
        state: &AppState,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<(Arc<str>, History), BrokerError> {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let channels = &state.channels;
        // Live first, then the history: a publication accepted in between is in both and
        // the merge by offset keeps one (`deliver`).
        let subscriber = Subscriber {
            inbox: Arc::clone(&self.inbox),
            key,
        };
        let (channel, slot) = channels.hub.add(channel, subscriber);
        if let Err(error) = channels.broker.subscribe(&channel).await {
            channels.hub.remove(&channel, slot);
            return Err(error);
        }
        let history = match channels.broker.history(&channel, since).await {
            Ok(history) => history,
            Err(error) => {
                channels.hub.remove(&channel, slot);
                channels.broker.unsubscribe(&channel).await;
                return Err(error);
            }
        };
        // Exactly what it holds: most connections subscribe to a few channels and stay.
        self.list.reserve_exact(1);
        self.list.push(Subscription {
            channel: Arc::clone(&channel),
            epoch: Arc::clone(&history.epoch),
            epoch_id: EpochId::of(&history.epoch),
            key,
            slot,
            position: history.top,
        });
        state.metrics.channels.subscriptions_active.inc();
        Ok((channel, history))
    }

    async fn unsubscribe(
        &mut self,
        state: &AppState,
        from: &str,
        id: Option<&str>,
        channel: &str,
    ) -> Reply {
        let Some(index) = self.position_of(channel) else {
            let message = "not subscribed to this channel";
            return Err(ProtocolError::new(ErrorCode::NotSubscribed, message, id));
        };
        let Subscription { channel, slot, .. } = self.remove(index);
        release(state, &channel, slot, SubscriptionEnd::Unsubscribe).await;
        debug!(connection_id = from, channel = &*channel, "unsubscribed");
        let answer = ServerMessage::Unsubscribed {
            channel: &channel,
            id,
            reason: None,
            resubscribe: None,
            ts: now_ms(),
        };
        Ok((answer.to_json(), ServerType::Unsubscribed))
    }

    /// Moves the publications waiting in the inbox into the outbox, each subscription's in
    /// offset order with none twice. Returns the keys of the subscriptions that lost one (their
    /// inbox or the outbox was full, or their offsets jumped), for
    /// [`Subscriptions::end_insufficient`]; empty, without allocating, when none did.
    pub(super) fn deliver(&mut self, state: &AppState, outbox: &mut Outbox) -> Vec<u32> {
        let mut lost = self.inbox.take(&mut self.taken);
        let mut delivered = 0;
        while let Some(Delivery {
            key,
            offset,
            epoch,
            text,
        }) = self.taken.pop_front()
        {
            let Some(subscription) = self.list.iter_mut().find(|s| s.key == key) else {
                continue; // an ended subscription's
            };
            let in_epoch = epoch == subscription.epoch_id;
            if in_epoch && offset <= subscription.position {
                continue; // already in its history
            }
            // Another epoch's offset says nothing of this one's: a gap cannot be excluded.
            let in_order = in_epoch && offset == subscription.position + 1;
            if in_order && outbox.push(Message::Text(text), None).is_ok() {
                subscription.position = offset;
                delivered += 1;
            } else if !lost.contains(&key) {
                lost.push(key);
            }
        }
        state
            .metrics
            .messages_out(ServerType::Publication, delivered);
        lost
    }

    /// [`Subscriptions::deliver`] when publications arrived since the last call; otherwise
    /// the task is woken by the next one.
    pub(super) fn poll_deliver(
        &mut self,
        state: &AppState,
        outbox: &mut Outbox,
        cx: &mut Context<'_>,
    ) -> Vec<u32> {
        match self.inbox.poll_ready(cx) {
            Poll::Ready(()) => self.deliver(state, outbox),
            Poll::Pending => Vec::new(),
        }
    }

    /// Releases every subscription of a connection that ended.
    pub(super) async fn release_all(self: Box<Self>, state: &AppState) {
        for Subscription { channel, slot, .. } in self.list {
            release(state, &channel, slot, SubscriptionEnd::Disconnect).await;
        }
    }
}

/// The largest recovery sent in one `subscribed`: the transport's largest message
/// (`MAX_MESSAGE_BYTES` × [`ws::HARD_LIMIT_FACTOR`]). It also bounds what one request can make
/// a connection queue.
fn recovery_limit(state: &AppState) -> usize {
    state
        .config
        .max_message_bytes
        .saturating_mul(ws::HARD_LIMIT_FACTOR)
}

/// About how long the recovered publications are as JSON (their fields' bytes plus the
/// field names and punctuation of each).
fn recovery_bytes(publications: &[Arc<Publication>]) -> usize {
    const ITEM_OVERHEAD: usize = 64;
    publications
        .iter()
        .map(|p| {
            p.data.get().len()
                + p.from.len()
                + p.user.as_ref().map_or(0, |u| u.len())
                + ITEM_OVERHEAD
        })
        .sum()
}

/// Takes a subscription out of the hub and the broker, and counts why it ended.
async fn release(state: &AppState, channel: &str, slot: Slot, why: SubscriptionEnd) {
    state.channels.hub.remove(channel, slot);
    state.channels.broker.unsubscribe(channel).await;
    state.metrics.channels.subscription_ended(why);
}

#[cfg(test)]
mod tests;
