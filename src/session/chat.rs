//! One protocol v1 chat connection, from upgrade to close, in a single task: it reads client
//! frames, answers them through the bounded outbox, sends heartbeats and pings, watches for
//! idle and dead peers, slow consumers and floods, and obeys `replaced` and shutdown commands.
//! One task and one timer per connection keep an idle socket small.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{Sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info};

use super::ending::{self, Farewell, answered_into, goodbye_frame};
use super::identity::Identity;
use super::subscriptions::{ChannelRequest, Subscriptions};
use crate::protocol::{
    ClientType, DisconnectReason, ErrorCode, GoodbyeReason, ProtocolError, ServerMessage,
    ServerType, now_ms, parse_client_frame,
};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::registry::{Admission, Command, Registration};
use crate::state::AppState;
use crate::ws::{self, Full, Io, Outbox, ReadFailure, WebSocket};

/// How a connection ends.
enum Ending {
    /// Say `goodbye` with this reason, then close with its code.
    Goodbye(GoodbyeReason),
    /// The `goodbye` was said and its grace is over: close with its code.
    GraceOver(GoodbyeReason),
    /// The peer closed, or the connection broke.
    Closed(DisconnectReason),
    /// A read error: close with the error's code when possible.
    ReadError(ReadFailure),
}

/// The state of one connection beyond its socket.
struct Session {
    state: Arc<AppState>,
    registration: Registration,
    outbox: Outbox,
    limiter: RateLimiter,
    id: Box<str>,
    peer: IpAddr,
    opened: Instant,
    next_heartbeat: Instant,
    last_message: Instant,
    last_frame: Instant,
    ping_sent: Option<Instant>,
    received_close: bool,
    /// The code of the client's close frame, if it sent one with a code.
    client_close_code: Option<u16>,
    /// A `goodbye` already said, and when its grace ends (shutdown only).
    leaving: Option<(GoodbyeReason, Instant)>,
    /// Channel subscriptions (protocol v1.1), from the first channel request on.
    subscriptions: Option<Box<Subscriptions>>,
    /// A channel request read, to serve before the next read (the broker may take time).
    pending: Option<Box<(ChannelRequest, Instant)>>,
    /// The verified token when authentication is on; `None` allows every channel.
    identity: Option<Arc<Identity>>,
}

/// Runs a chat connection to its end. `admission` is the slot reserved before the upgrade.
///
/// The set-up is synchronous and the returned future captures only the session and the
/// socket: an `async fn` would keep its arguments and its locals in separate slots of the
/// task, and the task's size is paid by every idle connection.
pub fn run(
    mut socket: WebSocket,
    state: Arc<AppState>,
    admission: Admission,
    id: String,
    peer: IpAddr,
) -> impl Future<Output = ()> + Send {
    let opened = Instant::now();
    let registration = state.open_connection(admission, Some(&id));
    let config = &state.config;
    let mut session = Session {
        outbox: Outbox::new(config.outbound_queue_bytes, opened),
        limiter: RateLimiter::new(config.rate_limit_msgs_per_sec, opened),
        next_heartbeat: opened + config.heartbeat_interval,
        opened,
        last_message: opened,
        last_frame: opened,
        ping_sent: None,
        received_close: false,
        client_close_code: None,
        leaving: None,
        subscriptions: None,
        pending: None,
        identity: None,
        registration,
        peer,
        id: id.into_boxed_str(),
        state,
    };
    info!(connection_id = %session.id, peer = %peer, server_id = %session.state.config.server_id, "connection opened");
    let welcomed = session.welcome();
    async move {
        let ending = match welcomed {
            Ok(()) => session.serve(&mut socket).await,
            Err(Full) => Ending::Goodbye(GoodbyeReason::SlowConsumer),
        };
        // Boxed: the closing steps are allocated only when closing.
        let (reason, close_code) = Box::pin(session.finish(&mut socket, ending)).await;
        if let Some(subscriptions) = session.subscriptions.take() {
            Box::pin(subscriptions.release_all(&session.state)).await;
        }
        session.report_closed(reason, close_code);
    }
}

impl Session {
    /// Queues a serialised server message of type `kind` (answering a frame read at `received`).
    fn queue(
        &mut self,
        json: String,
        kind: ServerType,
        received: Option<Instant>,
    ) -> Result<(), Full> {
        self.outbox.push(Message::Text(json.into()), received)?;
        self.state.metrics.message_out(kind);
        Ok(())
    }

    fn send(&mut self, message: &ServerMessage<'_>, received: Option<Instant>) -> Result<(), Full> {
        self.queue(message.to_json(), message.kind(), received)
    }

    fn welcome(&mut self) -> Result<(), Full> {
        let config = &self.state.config;
        let hello = ServerMessage::ConnectionEstablished {
            connection_id: &self.id,
            server_id: &config.server_id,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
            ts: now_ms(),
        };
        // `hello` borrows the session: serialise it before queueing.
        let (json, kind) = (hello.to_json(), hello.kind());
        self.queue(json, kind, None)
    }

    /// Counts and logs the end of the connection.
    fn report_closed(&self, reason: DisconnectReason, close_code: Option<u16>) {
        self.state.count_closed(reason, self.opened);
        info!(connection_id = %self.id, peer = %self.peer, server_id = %self.state.config.server_id,
            reason = reason.as_str(), close_code, duration_ms = self.opened.elapsed().as_millis() as u64,
            "connection closed");
    }

    fn heartbeat(&self) -> Duration {
        self.state.config.heartbeat_interval
    }

    fn idle_timeout(&self) -> Duration {
        self.state.config.connection_timeout
    }

    /// When the single timer must fire next: the end of a goodbye's grace, else the next
    /// heartbeat or the idle deadline.
    fn next_deadline(&self) -> Instant {
        if let Some((_, grace_end)) = self.leaving {
            return grace_end;
        }
        self.next_heartbeat
            .min(self.last_message + self.idle_timeout())
    }

    async fn serve(&mut self, socket: &mut WebSocket) -> Ending {
        let mut timer: std::pin::Pin<&mut Sleep> = pin!(sleep_until(self.next_deadline().into()));
        let state = Arc::clone(&self.state);
        let control = Arc::clone(self.registration.control());
        loop {
            let step = tokio::select! {
                biased;
                command = control.recv(), if self.leaving.is_none() => match command {
                    Command::Replaced => Err(Ending::Goodbye(GoodbyeReason::Replaced)),
                    Command::Shutdown => {
                        self.say_goodbye_with_grace(GoodbyeReason::ServerShutdown);
                        timer.as_mut().reset(self.next_deadline().into());
                        Ok(())
                    }
                },
                () = &mut timer => {
                    let step = self.on_timer(Instant::now());
                    timer.as_mut().reset(self.next_deadline().into());
                    step
                }
                io = ws::next_io(socket, &mut self.outbox, answered_into(&state.metrics)) => {
                    let mut step = self.on_io(io);
                    if let Some(request) = self.pending.take() {
                        step = Box::pin(self.on_channel_request(*request)).await;
                    }
                    #[cfg(feature = "fault-injection")]
                    state.faults.delay_response().await;
                    step
                }
                // After the socket: polling it is what writes the outbox, so a busy channel
                // must not keep the session from writing what it delivered.
                () = inbox_ready(self.subscriptions.as_deref()) => {
                    Box::pin(self.deliver_publications()).await;
                    Ok(())
                }
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// Says `goodbye` but keeps answering until the client closes or the grace ends: a
    /// request already on the wire when the goodbye left is answered, not lost (a close frame
    /// would forbid the answer).
    fn say_goodbye_with_grace(&mut self, reason: GoodbyeReason) {
        self.queue_goodbye(reason);
        self.leaving = Some((reason, Instant::now() + self.state.drain_plan.goodbye_grace));
    }

    /// Queues the last message, past the outbox's bound: it must go out.
    fn queue_goodbye(&mut self, reason: GoodbyeReason) {
        let goodbye = goodbye_frame(reason, &self.state.metrics);
        self.outbox.push_last(goodbye);
    }

    fn on_timer(&mut self, now: Instant) -> Result<(), Ending> {
        if let Some((reason, grace_end)) = self.leaving {
            return if now >= grace_end {
                Err(Ending::GraceOver(reason))
            } else {
                Ok(())
            };
        }
        if now >= self.last_message + self.idle_timeout() {
            return Err(Ending::Goodbye(GoodbyeReason::IdleTimeout));
        }
        if now < self.next_heartbeat {
            return Ok(());
        }
        let silent_limit = self.heartbeat() * 2;
        if now.saturating_duration_since(self.last_frame) >= silent_limit {
            return Err(Ending::Closed(DisconnectReason::DEAD_PEER));
        }
        if self
            .outbox
            .stalled_for(now)
            .is_some_and(|stall| stall >= silent_limit)
        {
            return Err(Ending::Goodbye(GoodbyeReason::SlowConsumer));
        }
        self.next_heartbeat = now + self.heartbeat();
        self.send(&ServerMessage::Heartbeat { ts: now_ms() }, None)
            .map_err(slow)?;
        self.outbox
            .push(Message::Ping(Default::default()), None)
            .map_err(slow)?;
        self.ping_sent = Some(now);
        Ok(())
    }

    fn on_io(&mut self, io: Io) -> Result<(), Ending> {
        let frame = match io {
            Io::Read(Some(Ok(frame))) => frame,
            Io::Read(Some(Err(failure))) => return Err(Ending::ReadError(failure)),
            Io::Read(None) => return Err(Ending::Closed(self.closed_reason())),
            Io::WriteFailed => return Err(Ending::Closed(DisconnectReason::TRANSPORT_ERROR)),
        };
        let now = Instant::now();
        self.last_frame = now;
        match frame {
            Message::Text(text) => self.on_text(text.as_str(), now),
            Message::Binary(_) => {
                if !self.admit_message(now)? {
                    return Ok(());
                }
                self.state.metrics.message_in(ClientType::Invalid);
                let error = ProtocolError {
                    code: ErrorCode::UnsupportedFrame,
                    message: "binary frames are not supported".into(),
                    id: None,
                };
                self.reject(&error, now)
            }
            Message::Pong(_) => {
                if let Some(sent) = self.ping_sent.take() {
                    self.state
                        .metrics
                        .ping_rtt
                        .observe(now.duration_since(sent).as_secs_f64());
                }
                Ok(())
            }
            // tungstenite answers pings itself, and yields raw frames only when writing.
            Message::Ping(_) | Message::Frame(_) => Ok(()),
            Message::Close(frame) => {
                // tungstenite queues the close reply; the next read flushes it and ends the stream.
                self.received_close = true;
                self.client_close_code = frame.as_ref().map(|f| u16::from(f.code));
                debug!(close_code = self.client_close_code, "client closed");
                Ok(())
            }
        }
    }

    /// Why a connection ended that the peer closed or broke: a client that closes after our
    /// goodbye leaves for the goodbye's reason.
    fn closed_reason(&self) -> DisconnectReason {
        match (self.leaving, self.received_close) {
            (Some((reason, _)), _) => DisconnectReason::Goodbye(reason),
            (None, true) => DisconnectReason::CLIENT_CLOSE,
            (None, false) => DisconnectReason::TRANSPORT_ERROR,
        }
    }

    /// Every client message (text or binary frame) resets the idle timer and costs a token:
    /// `Ok(false)` when it was refused with `rate_limited`, an error when it is abuse.
    fn admit_message(&mut self, now: Instant) -> Result<bool, Ending> {
        self.last_message = now;
        match self.limiter.check(now) {
            Verdict::Allow => Ok(true),
            Verdict::Limited => {
                self.state.metrics.message_in(ClientType::Invalid);
                let error = ProtocolError {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "more than {} messages per second",
                        self.state.config.rate_limit_msgs_per_sec
                    ),
                    id: None,
                };
                self.reject(&error, now).map(|()| false)
            }
            Verdict::Abusive => {
                self.state.metrics.message_in(ClientType::Invalid);
                self.state.metrics.error(ErrorCode::RateLimited);
                Err(Ending::Goodbye(GoodbyeReason::PolicyViolation))
            }
        }
    }

    fn on_text(&mut self, text: &str, now: Instant) -> Result<(), Ending> {
        if !self.admit_message(now)? {
            return Ok(());
        }
        match parse_client_frame(text, self.state.config.max_message_bytes) {
            Ok(request) => {
                self.state.metrics.message_in(request.kind());
                match ServerMessage::answer(&request, now_ms()) {
                    Some(answer) => self.send(&answer, Some(now)).map_err(slow),
                    None => {
                        self.pending = ChannelRequest::from_message(&request)
                            .map(|channel_request| Box::new((channel_request, now)));
                        Ok(())
                    }
                }
            }
            Err(error) => {
                self.state.metrics.message_in(ClientType::Invalid);
                self.reject(&error, now)
            }
        }
    }

    /// Serves a channel request (subscribe, unsubscribe, publish) read at `received`.
    async fn on_channel_request(
        &mut self,
        (request, received): (ChannelRequest, Instant),
    ) -> Result<(), Ending> {
        let inbox_bytes = self.state.config.outbound_queue_bytes;
        let subscriptions = self
            .subscriptions
            .get_or_insert_with(|| Subscriptions::new(inbox_bytes));
        let identity = self.identity.as_deref();
        match subscriptions
            .handle(&self.state, identity, &self.id, request)
            .await
        {
            Ok((json, kind)) => self.queue(json, kind, Some(received)).map_err(slow),
            Err(error) => self.reject(&error, received),
        }
    }

    /// Moves the publications waiting for this connection into its outbox.
    async fn deliver_publications(&mut self) {
        if let Some(subscriptions) = self.subscriptions.as_mut() {
            subscriptions
                .deliver(&self.state, &self.id, &mut self.outbox)
                .await;
        }
    }

    /// Answers a request that cannot be served with an `error`.
    fn reject(&mut self, error: &ProtocolError, received: Instant) -> Result<(), Ending> {
        self.state.metrics.error(error.code);
        self.send(&ServerMessage::error(error, now_ms()), Some(received))
            .map_err(slow)
    }

    /// Ends the connection as `ending` says; returns why, and the close code sent or received
    /// (none when the connection broke without a close frame).
    async fn finish(
        &mut self,
        socket: &mut WebSocket,
        ending: Ending,
    ) -> (DisconnectReason, Option<u16>) {
        match ending {
            Ending::Goodbye(reason) => {
                if reason == GoodbyeReason::SlowConsumer {
                    self.outbox.clear();
                }
                self.queue_goodbye(reason);
                self.close_after_goodbye(socket, reason).await
            }
            Ending::GraceOver(reason) => self.close_after_goodbye(socket, reason).await,
            Ending::Closed(reason) => (reason, self.client_close_code),
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
        ending::close_for(socket, &mut self.outbox, metrics, reason, reason.as_str()).await
    }
}

/// Ready when publications wait in the connection's inbox; never without subscriptions.
async fn inbox_ready(subscriptions: Option<&Subscriptions>) {
    match subscriptions {
        Some(subscriptions) => subscriptions.inbox().ready().await,
        None => std::future::pending().await,
    }
}

fn slow(_: Full) -> Ending {
    Ending::Goodbye(GoodbyeReason::SlowConsumer)
}
