//! One chat connection (protocol v1 and v1.1), from upgrade to close, in a single task: it
//! reads client frames (judged and answered in [`requests`]) and answers them through the
//! bounded outbox, delivers its channels' publications, sends heartbeats and pings, watches for
//! idle and dead peers, slow consumers, floods and its token's expiry, and obeys `replaced` and
//! shutdown commands. One task and one timer per connection keep an idle socket small.

mod closing;
mod events;
pub(crate) mod handover;
mod pipeline;
mod requests;

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{Sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::auth::Credentials;
use super::ending::goodbye_frame;
use super::frames::FrameGuard;
use super::subscriptions::Subscriptions;
use crate::auth::{AuthRefusal, Identity};
use crate::protocol::{
    ClientType, DisconnectReason, ErrorCode, GoodbyeReason, ProtocolError, ServerMessage,
    ServerType, now_ms,
};
use crate::ratelimit::RateLimiter;
use crate::registry::{Admission, Command, Registration};
use crate::state::AppState;
use crate::ws::{Full, Incoming, Io, Outbox, ReadFailure, WebSocket};
use events::{Event, next_event};

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
    /// The server hands its connections to the next process: park, or say goodbye.
    Handover,
}

/// The state of one connection beyond its socket.
struct Session {
    state: Arc<AppState>,
    registration: Registration,
    outbox: Outbox,
    limiter: RateLimiter,
    frames: FrameGuard,
    id: Box<str>,
    peer: IpAddr,
    opened: Instant,
    next_heartbeat: Instant,
    last_message: Instant,
    /// When bytes last arrived (a partial frame included): the peer is alive.
    last_received: Instant,
    ping_sent: Option<Instant>,
    received_close: bool,
    /// The code of the client's close frame, if it sent one with a code.
    client_close_code: Option<u16>,
    /// A `goodbye` already said, and when its grace ends (shutdown only).
    leaving: Option<(GoodbyeReason, Instant)>,
    /// Channel subscriptions (protocol v1.1), from the first channel request on.
    subscriptions: Option<Box<Subscriptions>>,
    /// The answers owed while publishes are in flight (`pipeline.rs`), from a channel request
    /// until nothing is owed.
    work: Option<Box<pipeline::Work>>,
    /// Where the connection stands with authentication; its identity is what channels ask.
    credentials: Credentials,
}

/// Runs a chat connection to its end. `admission` is the slot reserved before the upgrade;
/// `identity` the token of its `Authorization` header, when it had one.
///
/// The set-up is synchronous and the returned future captures only the session and the
/// socket: an `async fn` would keep its arguments and its locals in separate slots of the
/// task, and the task's size is paid by every idle connection.
pub fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    admission: Admission,
    id: String,
    peer: IpAddr,
    identity: Option<Identity>,
) -> impl Future<Output = ()> + Send {
    let opened = Instant::now();
    let registration = state.open_connection(admission);
    let credentials = Credentials::at_upgrade(identity, &state, opened);
    let mut session = Session::new(state, registration, id.into_boxed_str(), peer, credentials);
    debug!(connection_id = %session.id, peer = %peer, server_id = %session.state.config.server_id, "connection opened");
    let started = session.start();
    session.live(socket, started)
}

impl Session {
    /// A session opened now, with nothing said or read yet.
    fn new(
        state: Arc<AppState>,
        registration: Registration,
        id: Box<str>,
        peer: IpAddr,
        credentials: Credentials,
    ) -> Session {
        let opened = Instant::now();
        let config = &state.config;
        Session {
            outbox: Outbox::new(config.outbound_queue_bytes, opened),
            limiter: RateLimiter::new(config.rate_limit_msgs_per_sec, opened),
            frames: FrameGuard::new(&config.frames, opened),
            next_heartbeat: opened + config.heartbeat_interval,
            opened,
            last_message: opened,
            last_received: opened,
            ping_sent: None,
            received_close: false,
            client_close_code: None,
            leaving: None,
            subscriptions: None,
            work: None,
            credentials,
            registration,
            peer,
            id,
            state,
        }
    }

    /// The connection's life once set up: served until it ends, then closed, or parked for
    /// the next process. The future holds only the session and the socket, once: an `async fn`
    /// would keep its arguments twice, as captured and as locals (rust-lang/rust#62958), and
    /// they are most of an idle connection's task (2,432 bytes with an `async fn`, 1,408 now).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice"
    )]
    fn live(
        mut self,
        mut socket: WebSocket,
        started: Result<(), Ending>,
    ) -> impl Future<Output = ()> + Send {
        async move {
            let mut ending = match started {
                Ok(()) => self.serve(&mut socket).await,
                Err(ending) => ending,
            };
            if matches!(ending, Ending::Handover) {
                // Boxed: allocated only for a handover. Not parked: `finish` ends it.
                let Some((back, why)) = Box::pin(self.park_or_end(socket)).await else {
                    return;
                };
                (socket, ending) = (back, why);
            }
            // Boxed: the closing steps are allocated only when closing.
            let (reason, close_code) = Box::pin(self.finish(&mut socket, ending)).await;
            if let Some(subscriptions) = self.subscriptions.take() {
                Box::pin(subscriptions.release_all(&self.state)).await;
            }
            self.report_closed(reason, close_code);
        }
    }

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

    /// Once the connection is known (at once, unless a token must come first): takes its id
    /// and says `connection_established`.
    fn start(&mut self) -> Result<(), Ending> {
        let Some(owner) = self.credentials.owner(self.registration.client()) else {
            return Ok(());
        };
        if self.registration.claim(&self.id, owner).is_err() {
            return Err(Ending::Goodbye(GoodbyeReason::ConnectionIdInUse));
        }
        self.welcome().map_err(slow)
    }

    fn welcome(&mut self) -> Result<(), Full> {
        let config = &self.state.config;
        let hello = ServerMessage::ConnectionEstablished {
            connection_id: &self.id,
            server_id: &config.server_id,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
            user: self.credentials.identity().map(|identity| &*identity.user),
            ts: now_ms(),
        };
        // `hello` borrows the session: serialise it before queueing.
        let (json, kind) = (hello.to_json(), hello.kind());
        self.queue(json, kind, None)
    }

    /// Counts and logs the end of the connection.
    fn report_closed(&self, reason: DisconnectReason, close_code: Option<u16>) {
        self.state.count_closed(reason, self.opened);
        debug!(connection_id = %self.id, peer = %self.peer, server_id = %self.state.config.server_id,
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
    /// heartbeat, the idle deadline or the deadline of a fragmented message.
    fn next_deadline(&self) -> Instant {
        if let Some((_, grace_end)) = self.leaving {
            return grace_end;
        }
        let next = self
            .next_heartbeat
            .min(self.last_message + self.idle_timeout());
        let next = self.frames.deadline().map_or(next, |end| next.min(end));
        match self.credentials.deadline() {
            // Nothing else is due before the token: no heartbeat precedes the welcome.
            Some(deadline) if self.credentials.is_awaiting() => deadline,
            Some(deadline) => next.min(deadline),
            None => next,
        }
    }

    async fn serve(&mut self, socket: &mut WebSocket) -> Ending {
        let mut timer: std::pin::Pin<&mut Sleep> = pin!(sleep_until(self.next_deadline().into()));
        let state = Arc::clone(&self.state);
        let control = Arc::clone(self.registration.control());
        loop {
            let reading = self.reads();
            let step = tokio::select! {
                biased;
                command = control.recv(), if self.leaving.is_none() => match command {
                    Command::Replaced => Err(Ending::Goodbye(GoodbyeReason::Replaced)),
                    Command::Handover => Err(Ending::Handover),
                    // Every request read before the goodbye is answered before it.
                    Command::Shutdown => match Box::pin(self.answer_all()).await {
                        Ok(()) => {
                            self.say_goodbye_with_grace(GoodbyeReason::ServerShutdown);
                            timer.as_mut().reset(self.next_deadline().into());
                            Ok(())
                        }
                        Err(ending) => Err(ending),
                    },
                },
                () = &mut timer => {
                    let step = self.on_timer(Instant::now());
                    timer.as_mut().reset(self.next_deadline().into());
                    step
                }
                // Before reading on: a publisher's answers leave as they come.
                () = pipeline::answer_ready(self.work.as_deref_mut()) => {
                    Box::pin(self.settle()).await
                }
                event = next_event(
                    socket, &mut self.outbox, self.subscriptions.as_deref_mut(), &state, reading,
                ) => match event {
                    Event::Io(io) => {
                        let fragment_deadline = self.frames.deadline();
                        let mut step = self.on_io(io);
                        if step.is_ok() && self.work.is_some() {
                            step = Box::pin(self.settle()).await;
                        }
                        if self.frames.deadline() != fragment_deadline {
                            timer.as_mut().reset(self.next_deadline().into());
                        }
                        #[cfg(feature = "fault-injection")]
                        state.faults.delay_response().await;
                        step
                    }
                    Event::Lost(lost) => {
                        // Boxed: the awaits of ending subscriptions are allocated only then.
                        Box::pin(self.end_lost_subscriptions(lost)).await;
                        Ok(())
                    }
                },
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
        if let Some(reason) = self.credentials.lapsed(now) {
            if reason == GoodbyeReason::Unauthorized {
                self.refuse(AuthRefusal::Timeout);
            }
            return Err(Ending::Goodbye(reason));
        }
        if self.credentials.is_awaiting() {
            return Ok(());
        }
        if now >= self.last_message + self.idle_timeout() {
            return Err(Ending::Goodbye(GoodbyeReason::IdleTimeout));
        }
        if self.frames.is_overdue(now) {
            return Err(Ending::Goodbye(GoodbyeReason::PolicyViolation));
        }
        if now < self.next_heartbeat {
            return Ok(());
        }
        let silent_limit = self.heartbeat() * 2;
        if now.saturating_duration_since(self.last_received) >= silent_limit {
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
        let incoming = match io {
            Io::Read(Some(Ok(incoming))) => incoming,
            Io::Read(Some(Err(failure))) => return Err(Ending::ReadError(failure)),
            Io::Read(None) => return Err(Ending::Closed(self.closed_reason())),
            Io::WriteFailed => return Err(Ending::Closed(DisconnectReason::TRANSPORT_ERROR)),
        };
        let now = Instant::now();
        self.last_received = now;
        if matches!(incoming, Incoming::Partial) {
            return Ok(());
        }
        self.spend_frame(&incoming, now)?;
        match incoming {
            Incoming::Text(text) => self.on_text(text.as_str(), now),
            Incoming::Binary(_) => {
                if !self.admit_message(now)? {
                    return Ok(());
                }
                self.state.metrics.message_in(ClientType::Invalid);
                if self.credentials.is_awaiting() {
                    return Err(self.refuse(AuthRefusal::Missing));
                }
                let error = ProtocolError {
                    code: ErrorCode::UnsupportedFrame,
                    message: "binary frames are not supported".into(),
                    id: None,
                };
                self.reject(error, now)
            }
            Incoming::Pong => {
                if let Some(sent) = self.ping_sent.take() {
                    self.state
                        .metrics
                        .ping_rtt
                        .observe(now.duration_since(sent).as_secs_f64());
                }
                Ok(())
            }
            // The transport answers pings, and the peer's close frame.
            Incoming::Ping(_) | Incoming::Fragment | Incoming::Partial => Ok(()),
            Incoming::Close(frame) => {
                self.received_close = true;
                self.client_close_code = frame.as_ref().map(|f| u16::from(f.code));
                debug!(close_code = self.client_close_code, "client closed");
                self.hold_close();
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
}

fn slow(_: Full) -> Ending {
    Ending::Goodbye(GoodbyeReason::SlowConsumer)
}
