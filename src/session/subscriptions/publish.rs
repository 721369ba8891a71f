//! A connection's publish, served on its own: a future that owns everything it needs (the
//! state, the request, the publisher's names), so that the session reads on while the broker
//! works. The session keeps these futures and their answers in request order
//! (`session/chat/pipeline.rs`).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, ready};
use serde_json::value::RawValue;
use tracing::debug;

use super::refusals::{Reply, broker_error, forbidden};
use crate::auth::Identity;
use crate::channels::NewPublication;
use crate::metrics::PublishResult;
use crate::protocol::{ServerMessage, ServerType, now_ms};
use crate::state::AppState;

/// A `publish` read: its `id`, `channel` and `data`, owned.
pub(in crate::session) struct PublishRequest {
    pub(super) id: Option<Box<str>>,
    pub(super) channel: Box<str>,
    pub(super) data: Box<RawValue>,
}

impl PublishRequest {
    /// The publish of connection `from` as a future that owns all it needs: the broker call
    /// starts when it is first polled (the session polls its publishes oldest first, so the
    /// broker gets them in request order). A channel the token does not allow is refused
    /// without a call.
    pub(in crate::session) fn serve(
        self,
        state: Arc<AppState>,
        identity: Option<&Identity>,
        from: &str,
    ) -> BoxFuture<'static, Reply> {
        let PublishRequest { id, channel, data } = self;
        if let Err(refused) = forbidden(&state, identity, &channel, id.as_deref()) {
            return ready(Err(refused)).boxed();
        }
        let from: Box<str> = from.into();
        let publication = NewPublication {
            data,
            from: from.clone(),
            user: identity.map(|who| Box::from(&*who.user)),
        };
        async move { publish(&state, &from, id.as_deref(), &channel, publication).await }.boxed()
    }
}

async fn publish(
    state: &AppState,
    from: &str,
    id: Option<&str>,
    channel: &str,
    publication: NewPublication,
) -> Reply {
    let metrics = &state.metrics.channels;
    match state.channels.broker.publish(channel, publication).await {
        Ok(accepted) => {
            metrics.publication(PublishResult::Accepted);
            let answer = ServerMessage::Published {
                channel,
                id,
                offset: accepted.offset,
                epoch: &accepted.epoch,
                ts: now_ms(),
            };
            Ok((answer.to_json(), ServerType::Published))
        }
        Err(error) => {
            metrics.publication(PublishResult::Refused);
            debug!(connection_id = from, channel, ?error, "publish refused");
            Err(broker_error(error, state, id))
        }
    }
}
