//! What a chat client sends, judged and answered: every frame spends from the frame budget,
//! every message from the message rate; text requests are parsed and answered at once (v1),
//! served through the connection's subscriptions (v1.1's channel requests) or taken by its
//! credentials (`authenticate`); the publications waiting in its inbox are moved to the outbox.

use std::time::Instant;

use super::super::auth::{Accepted, refusal_before_token, report_refusal};
use super::super::frames::FrameVerdict;
use super::super::subscriptions::{ChannelRequest, Request, Subscriptions};
use super::{Ending, Session};
use crate::auth::AuthRefusal;
use crate::protocol::{
    ClientMessage, ClientType, ErrorCode, GoodbyeReason, ProtocolError, ServerMessage, now_ms,
    parse_client_frame,
};
use crate::ratelimit::Verdict;
use crate::ws::Incoming;

impl Session {
    /// Every frame spends from the frame budget: the first over it is told `rate_limited`,
    /// a client that goes on is closed 1008, as is a fragmented message beyond its bounds.
    pub(super) fn spend_frame(&mut self, incoming: &Incoming, now: Instant) -> Result<(), Ending> {
        match self.frames.on_frame(incoming, now) {
            FrameVerdict::Pass => Ok(()),
            FrameVerdict::OverBudget => {
                let error = ProtocolError {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "more than {} frames per second",
                        self.frames.frames_per_sec()
                    ),
                    id: None,
                };
                self.reject(error, now)
            }
            FrameVerdict::Violation => Err(Ending::Goodbye(GoodbyeReason::PolicyViolation)),
        }
    }

    /// Every client message (text or binary frame) resets the idle timer and costs a token:
    /// `Ok(false)` when it was refused with `rate_limited`, an error when it is abuse.
    pub(super) fn admit_message(&mut self, now: Instant) -> Result<bool, Ending> {
        self.last_message = now;
        match self.limiter.check(now) {
            Verdict::Allow => Ok(true),
            Verdict::Limited { .. } => {
                self.state.metrics.message_in(ClientType::Invalid);
                let error = ProtocolError {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "more than {} messages per second",
                        self.state.config.rate_limit_msgs_per_sec
                    ),
                    id: None,
                };
                self.reject(error, now).map(|()| false)
            }
            Verdict::Abusive => {
                self.state.metrics.message_in(ClientType::Invalid);
                self.state.metrics.error(ErrorCode::RateLimited);
                Err(Ending::Goodbye(GoodbyeReason::PolicyViolation))
            }
        }
    }

    pub(super) fn on_text(&mut self, text: &str, now: Instant) -> Result<(), Ending> {
        if !self.admit_message(now)? {
            return Ok(());
        }
        let parsed = parse_client_frame(text, self.state.config.max_message_bytes);
        let kind = parsed
            .as_ref()
            .map_or(ClientType::Invalid, ClientMessage::kind);
        self.state.metrics.message_in(kind);
        match parsed {
            Ok(ClientMessage::Authenticate { token, .. }) if self.state.auth.is_some() => {
                match self.credentials.accept(&self.state, &token.0, now) {
                    Ok(Accepted::First) => self.start(),
                    Ok(Accepted::Refresh) => Ok(()),
                    Err(reason) => Err(self.refuse(reason)),
                }
            }
            _ if self.credentials.is_awaiting() => Err(self.refuse(refusal_before_token(kind))),
            Ok(ClientMessage::Authenticate { id, .. }) => {
                let message = "authentication is off on this server";
                let error = ProtocolError::new(ErrorCode::InvalidMessage, message, id.as_deref());
                self.reject(error, now)
            }
            Ok(request) => match ServerMessage::answer(&request, now_ms()) {
                Some(answer) => self.answer(Ok((answer.to_json(), answer.kind())), now),
                None => {
                    match Request::from_message(&request) {
                        Some(Request::Publish(publish)) => self.start_publish(publish, now),
                        Some(Request::Channel(channel)) => self.hold(channel, now),
                        None => {}
                    }
                    Ok(())
                }
            },
            Err(error) => self.reject(error, now),
        }
    }

    /// Serves a subscribe or unsubscribe read at `received`, once nothing is owed before it.
    pub(super) async fn on_channel_request(
        &mut self,
        (request, received): (ChannelRequest, Instant),
    ) -> Result<(), Ending> {
        let inbox_bytes = self.state.config.outbound_queue_bytes;
        let subscriptions = self
            .subscriptions
            .get_or_insert_with(|| Subscriptions::new(inbox_bytes));
        let identity = self.credentials.identity();
        let reply = subscriptions
            .handle(&self.state, identity, &self.id, request)
            .await;
        self.answer(reply, received)
    }

    /// Ends the subscriptions that lost a publication with `insufficient_state`.
    pub(super) async fn end_lost_subscriptions(&mut self, lost: Vec<u32>) {
        if let Some(subscriptions) = self.subscriptions.as_mut() {
            subscriptions
                .end_insufficient(&self.state, &self.id, lost, &mut self.outbox)
                .await;
        }
    }

    /// Counts and logs a refused token; the connection ends with `goodbye unauthorized`.
    pub(super) fn refuse(&self, reason: AuthRefusal) -> Ending {
        report_refusal(&self.state, reason, &self.id, self.peer);
        Ending::Goodbye(GoodbyeReason::Unauthorized)
    }

    /// Answers a request that cannot be served with an `error`, in request order.
    pub(super) fn reject(&mut self, error: ProtocolError, received: Instant) -> Result<(), Ending> {
        self.answer(Err(error), received)
    }
}
