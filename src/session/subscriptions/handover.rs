//! A connection's subscriptions across a handover (docs/handover.md): parked as records
//! (channel, epoch, last delivered offset) for the next process, and resumed there: each
//! subscribed again, what it missed queued from history before the live publications, or
//! ended with `insufficient_state` when history cannot give it.

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::Subscriptions;
use super::insufficient::tell_insufficient;
use crate::channels::{BrokerError, History, StreamPosition};
use crate::protocol::ServerType;
use crate::state::AppState;
use crate::ws::Outbox;

/// One subscription as a handover carries it to the next process (docs/handover.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SubscriptionRecord {
    channel: String,
    epoch: String,
    /// The last offset delivered to the client (written, or in the record's unwritten bytes).
    offset: u64,
}

impl Subscriptions {
    /// Parks the subscriptions for a handover: out of this process's hub (their publications
    /// go on in the broker, whose history the next process fills the gap from), and their
    /// records for the next process. The broker keeps them counted: a channel must not be
    /// freed, and come back with a new epoch, before the channels are handed over.
    pub(in crate::session) fn park(&mut self, state: &AppState) -> Vec<SubscriptionRecord> {
        std::mem::take(&mut self.list)
            .into_iter()
            .map(|s| {
                state.channels.hub.remove(&s.channel, s.slot);
                SubscriptionRecord {
                    channel: s.channel.to_string(),
                    epoch: s.epoch.to_string(),
                    offset: s.position,
                }
            })
            .collect()
    }

    /// Resumes the subscriptions a previous process parked, before anything else of the
    /// connection: each subscribed again, and the publications it missed since its offset
    /// queued from history ahead of the live ones, in offset order. One whose gap the history
    /// cannot fill (another epoch, trimmed, no room) ends with `insufficient_state`.
    pub(in crate::session) async fn resume(
        &mut self,
        state: &AppState,
        from: &str,
        records: Vec<SubscriptionRecord>,
        outbox: &mut Outbox,
    ) {
        let mut lost = Vec::new();
        for SubscriptionRecord {
            channel,
            epoch,
            offset,
        } in records
        {
            let full = self.list.len() >= state.config.channels.max_subscriptions_per_connection;
            let since = StreamPosition { offset, epoch };
            let attached = match full {
                true => Err(BrokerError::Unavailable),
                false => self.attach(state, &channel, Some(&since)).await,
            };
            let (name, history) = match attached {
                Ok(attached) => attached,
                Err(error) => {
                    debug!(
                        connection_id = from,
                        channel,
                        ?error,
                        "handover: cannot resubscribe"
                    );
                    tell_insufficient(state, &channel, outbox);
                    continue;
                }
            };
            let key = self.list.last().expect("just attached").key;
            if !(history.complete && queue_missed(state, &name, &history, outbox)) {
                lost.push(key);
            }
        }
        if !lost.is_empty() {
            self.end_insufficient(state, from, lost, outbox).await;
        }
    }
}

/// Queues the publications of `history` (all of those after the resumed offset) as
/// `publication` messages; `false` when the outbox cannot take them all.
fn queue_missed(state: &AppState, channel: &str, history: &History, outbox: &mut Outbox) -> bool {
    for publication in &history.publications {
        let text = publication.message(channel).to_json();
        if outbox.push(Message::Text(text.into()), None).is_err() {
            return false;
        }
        state.metrics.message_out(ServerType::Publication);
    }
    true
}
