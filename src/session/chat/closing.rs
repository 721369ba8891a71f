//! How a chat connection ends: the close that each [`Ending`] calls for, after the answers
//! still owed (publishes in flight) and the goodbye when the server decided it. A connection
//! that broke, or whose client closed, owes nothing it could still send: its publishes in
//! flight are dropped unanswered (one the broker already took is still published).

use super::super::ending::{self, Farewell};
use super::{Ending, Session};
use crate::protocol::{DisconnectReason, GoodbyeReason};
use crate::ws::WebSocket;

impl Session {
    /// Ends the connection as `ending` says; returns why, and the close code sent or received
    /// (none when the connection broke without a close frame).
    pub(super) async fn finish(
        &mut self,
        socket: &mut WebSocket,
        ending: Ending,
    ) -> (DisconnectReason, Option<u16>) {
        // Every request read is answered before the goodbye or the close frame.
        let answered = match ending {
            Ending::Closed(_) | Ending::Goodbye(GoodbyeReason::SlowConsumer) => Ok(()),
            _ => Box::pin(self.answer_all()).await,
        };
        match ending {
            Ending::Goodbye(reason) => {
                let reason = answered.map_or(GoodbyeReason::SlowConsumer, |()| reason);
                if reason == GoodbyeReason::SlowConsumer {
                    self.outbox.clear();
                }
                self.queue_goodbye(reason);
                self.close_after_goodbye(socket, reason).await
            }
            Ending::GraceOver(reason) => self.close_after_goodbye(socket, reason).await,
            Ending::Closed(reason) => (reason, self.client_close_code),
            // Not parked: leave at once, as in a drain without its window.
            Ending::Handover => {
                self.queue_goodbye(GoodbyeReason::ServerShutdown);
                self.close_after_goodbye(socket, GoodbyeReason::ServerShutdown)
                    .await
            }
            Ending::ReadError(failure) => {
                let metrics = &self.state.metrics;
                ending::after_read_failure(
                    socket,
                    &mut self.outbox,
                    metrics,
                    failure,
                    Farewell::Goodbye,
                )
                .await
            }
        }
    }

    /// Closes with the goodbye's code once the outbox (the goodbye last) is written.
    async fn close_after_goodbye(
        &mut self,
        socket: &mut WebSocket,
        reason: GoodbyeReason,
    ) -> (DisconnectReason, Option<u16>) {
        let metrics = &self.state.metrics;
        let wait = self.state.drain_plan.close_wait;
        ending::close_for(
            socket,
            &mut self.outbox,
            metrics,
            reason,
            reason.as_str(),
            wait,
        )
        .await
    }
}
