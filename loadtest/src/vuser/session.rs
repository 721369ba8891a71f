//! One established connection, from its first send to the close handshake: sends on the
//! schedule, answers matched to what is in flight, the `goodbye` the server may say (take the
//! answers still on their way, then close first), the run's stop (write what the schedule
//! owes, wait for answers, close), and how the connection ended, counted for the report.

use std::pin::pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::aim;
use super::connect::Ws;
use super::in_flight::InFlight;
use super::schedule::{Schedule, overdue};
use super::settings::UserContext;
use super::wire::{self, Incoming};
use crate::stats::bump;

/// How long a user waits for the server's reply to its close frame, or for its close reply
/// to be written.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SessionEnd {
    /// The run no longer wants this user.
    Stopped,
    /// The server said `goodbye`; the connection is closed (by whichever side closed first).
    Goodbye { reconnect: bool },
    /// Closed without `goodbye`, or the transport failed.
    Lost,
    /// Churn mode closed it on purpose.
    Churned,
}

/// The code of the server's close frame, as the report counts it (`1005`: none in it).
pub(super) fn close_code(frame: Option<&CloseFrame>) -> String {
    frame.map_or_else(|| "1005".to_owned(), |f| u16::from(f.code).to_string())
}

/// How a connection the server ended ends the session: as its `goodbye` said, else lost.
pub(super) fn ended(goodbye: Option<bool>) -> SessionEnd {
    match goodbye {
        Some(reconnect) => SessionEnd::Goodbye { reconnect },
        None => SessionEnd::Lost,
    }
}

/// One established connection.
pub(super) struct Session<'a> {
    ctx: &'a UserContext,
    ws: Ws,
    in_flight: InFlight,
    /// The `reconnect` flag of the `goodbye` received, if any.
    goodbye: Option<bool>,
    /// We sent our close frame (the run stopped, churn, or we left after a `goodbye`).
    closed_by_us: bool,
    /// The server's close frame has been read.
    closed_by_server: bool,
}

impl<'a> Session<'a> {
    pub(super) fn new(ctx: &'a UserContext, ws: Ws) -> Self {
        Session {
            ctx,
            ws,
            in_flight: InFlight::new(ctx.timeout),
            goodbye: None,
            closed_by_us: false,
            closed_by_server: false,
        }
    }

    pub(super) async fn run(mut self, stop: &CancellationToken) -> SessionEnd {
        if self.ctx.behaviour.churn {
            self.close().await;
            return SessionEnd::Churned;
        }
        let mut schedule = Schedule::start(&self.ctx.behaviour);
        // Made once, not on every turn: see `aim`. A wait for the stop, too, enters the
        // token's list of waiters when first polled and leaves it when dropped.
        let mut stopped = pin!(stop.cancelled());
        let mut expiry_timer = pin!(sleep_until(Instant::now()));
        let mut due_timer = pin!(sleep_until(Instant::now()));
        let end = loop {
            let window_open = schedule.window_open(self.in_flight.len());
            let next_due = schedule.next_due();
            let expiry = self.in_flight.next_expiry();
            aim(expiry_timer.as_mut(), expiry);
            aim(due_timer.as_mut(), next_due);
            tokio::select! {
                biased;
                () = &mut stopped => {
                    let end = self.leave(schedule.owed(), self.ctx.drain_grace()).await;
                    break end.unwrap_or(SessionEnd::Stopped);
                }
                frame = self.ws.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        break end;
                    }
                    if let Some(reconnect) = self.goodbye {
                        // The server asked us to leave: nothing falls due any more; we take
                        // the answers still on their way (its grace answers them) and close.
                        let end = self.leave(schedule.owed(), self.ctx.goodbye_grace()).await;
                        break end.unwrap_or(SessionEnd::Goodbye { reconnect });
                    }
                }
                () = &mut expiry_timer, if expiry.is_some() => self.expire(),
                () = async {}, if window_open => {
                    if self.send(Instant::now()).await.is_err() {
                        break self.lost();
                    }
                }
                () = &mut due_timer, if next_due.is_some() => {
                    let scheduled = next_due.expect("guarded by the branch condition");
                    schedule.advance();
                    if self.send(scheduled).await.is_err() {
                        break self.lost();
                    }
                }
            }
        };
        if self.closed_by_server && !self.closed_by_us {
            // tungstenite queued the reply to the server's close; it goes out on a flush.
            let _ = timeout(CLOSE_REPLY_WAIT, self.ws.flush()).await;
        }
        self.expire();
        let unanswered = self.in_flight.len() as u64;
        self.ctx.recorder.count(|c| c.unanswered += unanswered);
        end
    }

    /// Sends one `message`; its latency will count from `scheduled`.
    async fn send(&mut self, scheduled: Instant) -> Result<(), WsError> {
        let id = self.in_flight.open(scheduled);
        let text = wire::message(id, &self.ctx.payload);
        self.ctx.recorder.count(|c| c.sent += 1);
        self.ws.send(Message::Text(text.into())).await
    }

    fn expire(&mut self) {
        let expired = self.in_flight.expire(Instant::now());
        self.ctx.recorder.count(|c| c.timed_out += expired);
    }

    /// Handles what the server sent; `Some` when the connection is over.
    fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Option<SessionEnd> {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Close(frame))) => {
                self.closed_by_server = true;
                self.record_close(&close_code(frame.as_ref()));
                return Some(ended(self.goodbye));
            }
            Some(Ok(Message::Binary(_))) => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Some(self.lost()),
        }
        None
    }

    fn on_text(&mut self, text: &str) {
        match wire::parse(text) {
            Some(Incoming::Answer { id }) => match self.in_flight.settle(id) {
                Some(scheduled) => self.ctx.recorder.answered(scheduled.elapsed()),
                None => self.ctx.recorder.count(|c| c.late += 1),
            },
            Some(Incoming::Chatter) => {}
            Some(Incoming::Error { id, code }) => {
                let errored = self.in_flight.settle(id).is_some();
                self.ctx.recorder.count(|c| {
                    c.errored += u64::from(errored);
                    bump(&mut c.server_errors, code);
                });
            }
            Some(Incoming::Goodbye { reason, reconnect }) => {
                self.goodbye = Some(reconnect);
                self.ctx
                    .recorder
                    .count(|c| bump(&mut c.goodbye_reasons, reason));
            }
            Some(Incoming::Established | Incoming::Unexpected) | None => {
                self.ctx.recorder.count(|c| c.protocol_errors += 1);
            }
        }
    }

    /// The transport failed or ended without a close frame.
    fn lost(&self) -> SessionEnd {
        self.record_close("none");
        ended(self.goodbye)
    }

    /// Counts how the connection ended when the server ended it: it closed first, or it said
    /// `goodbye` and we closed (then `code` is its reply to our close). Connections the run
    /// ended (stop, churn) are not the server's doing and are not counted.
    fn record_close(&self, code: &str) {
        if self.goodbye.is_some() || !self.closed_by_us {
            self.ctx.recorder.count(|c| bump(&mut c.close_codes, code));
        }
    }

    /// Ends the connection from our side, because the run no longer wants this user or the
    /// server said `goodbye`: writes the sends the open-loop `schedule` (next send time,
    /// interval) owed by now, waits up to `grace` for the answers still pending, then closes
    /// with 1000. Sends that fall due later are not owed: nobody wants them any more. Owed
    /// sends the socket does not take before the grace ends count as `unsent`, so that a
    /// server that does not read cannot shrink the load it is judged on. `Some` when the
    /// server ended the connection while we waited.
    async fn leave(
        &mut self,
        schedule: Option<(Instant, Duration)>,
        grace: Duration,
    ) -> Option<SessionEnd> {
        let now = Instant::now();
        let deadline = now + grace;
        if let Some((next_due, interval)) = schedule {
            self.write_owed(next_due, interval, now, deadline).await;
        }
        while !self.in_flight.is_empty() {
            match timeout_at(deadline, self.ws.next()).await {
                Ok(frame) => {
                    // An answer after its timeout is late here too, as in the session loop.
                    self.expire();
                    if let Some(end) = self.on_frame(frame) {
                        return Some(end);
                    }
                }
                Err(_) => break,
            }
        }
        self.close().await;
        None
    }

    /// Writes the sends due from `due` on up to `now`, one per `interval`, until `deadline`;
    /// counts those not written as `unsent`.
    async fn write_owed(
        &mut self,
        mut due: Instant,
        interval: Duration,
        now: Instant,
        deadline: Instant,
    ) {
        while due <= now {
            match timeout_at(deadline, self.send(due)).await {
                Ok(Ok(())) => due += interval,
                _ => break,
            }
        }
        let unsent = overdue(due, now, interval);
        self.ctx.recorder.count(|c| c.unsent += unsent);
    }

    /// Sends a normal close and waits briefly for the server's close frame, still matching
    /// the answers that come before it.
    async fn close(&mut self) {
        self.closed_by_us = true;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        // A failed write shows as the end of the stream below.
        let _ = self.ws.close(Some(frame)).await;
        let replied = timeout(CLOSE_REPLY_WAIT, async {
            loop {
                let frame = self.ws.next().await;
                if self.on_frame(frame).is_some() {
                    break;
                }
            }
        })
        .await;
        if replied.is_err() {
            self.record_close("none");
        }
    }
}
