//! The end of a connection's subscriptions that lost a publication (protocol v1.1, "No silent
//! gap"): each ended with `unsubscribed` `insufficient_state` `resubscribe: true`, queued past
//! the outbox's bound, so that the client recovers from the last offset it saw.

use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::{Subscription, Subscriptions, release};
use crate::metrics::SubscriptionEnd;
use crate::protocol::{ServerMessage, ServerType, UnsubscribeReason, now_ms};
use crate::state::AppState;
use crate::ws::Outbox;

impl Subscriptions {
    /// Ends the subscriptions (by key) that may have missed a publication with
    /// `insufficient_state`: the client resubscribes with `recover` from the last offset it saw.
    pub(in crate::session) async fn end_insufficient(
        &mut self,
        state: &AppState,
        from: &str,
        lost: Vec<u32>,
        outbox: &mut Outbox,
    ) {
        for key in lost {
            let Some(index) = self.list.iter().position(|s| s.key == key) else {
                continue; // already ended
            };
            let Subscription {
                channel,
                slot,
                position,
                ..
            } = self.remove(index);
            release(state, &channel, slot, SubscriptionEnd::InsufficientState).await;
            debug!(
                connection_id = from,
                channel = &*channel,
                offset = position,
                "subscription ended: insufficient_state"
            );
            tell_insufficient(state, &channel, outbox);
        }
    }
}

/// Tells the client that its subscription to `channel` ended with `insufficient_state`: it
/// resubscribes with `recover` from the last offset it saw.
pub(super) fn tell_insufficient(state: &AppState, channel: &str, outbox: &mut Outbox) {
    let ended = ServerMessage::Unsubscribed {
        channel,
        id: None,
        reason: Some(UnsubscribeReason::InsufficientState),
        resubscribe: Some(true),
        ts: now_ms(),
    };
    // Past the bound: one per subscription at most, and the client must learn of the gap.
    outbox.push_last(Message::Text(ended.to_json().into()));
    state.metrics.message_out(ServerType::Unsubscribed);
}
