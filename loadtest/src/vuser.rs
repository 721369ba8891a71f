//! One virtual user: holds a connection to `/ws/chat/{id}`, sends `message`s on its
//! schedule, matches each `message_response` by `id`, and reconnects when the server asks.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};
use tokio_util::sync::CancellationToken;

use crate::net::Target;
use crate::stats::{ConnectFailure, Recorder, bump};

/// What every user of a run does, apart from when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// `message`s per second per user on an open-loop schedule (0 = idle users).
    pub rate: f64,
    /// When set, closed loop instead: keep this many `message`s in flight, send the next as
    /// soon as one is answered (for throughput benchmarks; latency is then from the send).
    pub closed_loop_window: Option<u32>,
    /// Size of the string sent as `data`.
    pub payload_bytes: usize,
    /// Connect and answer timeout.
    pub timeout_ms: u64,
    /// Close as soon as the connection is established and open a new one (handshake rate).
    pub churn: bool,
}

/// Settings and shared state of all users of one process.
pub struct UserContext {
    pub target: Target,
    pub behaviour: Behaviour,
    pub recorder: Arc<Recorder>,
    /// Makes connection ids unique per run, so that runs never `replace` each other.
    pub run_tag: String,
    payload: String,
    timeout: Duration,
}

impl UserContext {
    pub fn new(
        target: Target,
        behaviour: Behaviour,
        recorder: Arc<Recorder>,
        run_tag: String,
    ) -> Self {
        let payload = "x".repeat(behaviour.payload_bytes);
        let timeout = Duration::from_millis(behaviour.timeout_ms);
        UserContext {
            target,
            behaviour,
            recorder,
            run_tag,
            payload,
            timeout,
        }
    }

    /// How long a stopping user waits for its outstanding answers.
    fn drain_grace(&self) -> Duration {
        self.timeout.min(Duration::from_secs(5))
    }

    /// How long a user told `goodbye` waits for its outstanding answers before it closes.
    fn goodbye_grace(&self) -> Duration {
        self.timeout.min(GOODBYE_GRACE)
    }
}

/// The longest a user waits for its answers after a `goodbye`: the server answers for at most
/// 1 s after its goodbye (a fifth of `SHUTDOWN_TIMEOUT`, capped) and then closes anyway, so a
/// longer wait could only delay the reconnect.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// How long a user waits for the server's reply to its close frame, or for its close reply
/// to be written.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<TcpStream>;

/// Small buffers: a load generator holds tens of thousands of mostly idle connections.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
}

/// Runs user number `global` until `stop` fires (or the server says goodbye for good).
pub async fn run_user(
    ctx: Arc<UserContext>,
    global: u64,
    source: Option<IpAddr>,
    stop: CancellationToken,
) {
    let id = format!("{}-{global}", ctx.run_tag);
    let mut failures_in_a_row = 0u32;
    let mut reconnecting = false;
    while !stop.is_cancelled() {
        let attempt = tokio::select! {
            biased;
            () = stop.cancelled() => {
                // A server that never completes a handshake must not pass for lack of data.
                ctx.recorder.connect_failed(ConnectFailure::Unfinished, reconnecting);
                return;
            }
            result = connect(&ctx, &id, source) => result,
        };
        let end = match attempt {
            Ok((ws, took)) => {
                failures_in_a_row = 0;
                ctx.recorder.connected(took, reconnecting);
                let end = Session::new(&ctx, ws).run(&stop).await;
                ctx.recorder.disconnected();
                end
            }
            Err(failure) => {
                ctx.recorder.connect_failed(failure, reconnecting);
                failures_in_a_row += 1;
                SessionEnd::Lost
            }
        };
        match end {
            SessionEnd::Stopped | SessionEnd::Goodbye { reconnect: false } => return,
            SessionEnd::Churned => reconnecting = false,
            SessionEnd::Goodbye { reconnect: true } | SessionEnd::Lost => {
                reconnecting = true;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = sleep(backoff(failures_in_a_row)) => {}
                }
            }
        }
    }
}

/// Full-jitter exponential backoff: between half and all of 100 ms x 2^n, at most 5 s, so
/// that users told to reconnect together do not come back together.
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let ceiling = (100u64 << failures_in_a_row.min(6)).min(5_000);
    Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))
}

fn classify_io(e: &io::Error) -> ConnectFailure {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => ConnectFailure::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => ConnectFailure::Reset,
        TimedOut => ConnectFailure::Timeout,
        AddrNotAvailable | AddrInUse => ConnectFailure::AddressUnavailable,
        _ => ConnectFailure::Other,
    }
}

fn classify_ws(e: &WsError) -> ConnectFailure {
    match e {
        WsError::Io(io) => classify_io(io),
        WsError::Http(response) => ConnectFailure::HttpStatus(response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ConnectFailure::Reset,
        WsError::Protocol(
            ProtocolError::HandshakeIncomplete | ProtocolError::ResetWithoutClosingHandshake,
        ) => ConnectFailure::Reset,
        _ => ConnectFailure::Protocol,
    }
}

async fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// TCP connect, upgrade, and `connection_established`, within the timeout.
async fn connect(
    ctx: &UserContext,
    id: &str,
    source: Option<IpAddr>,
) -> Result<(Ws, Duration), ConnectFailure> {
    let started = Instant::now();
    let steps = async {
        let stream = open_socket(ctx.target.addr, source)
            .await
            .map_err(|e| classify_io(&e))?;
        let url = ctx.target.chat_url(id);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .map_err(|e| classify_ws(&e))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return match parse(&text) {
                        Some(m) if m.kind == "connection_established" => Ok(ws),
                        _ => Err(ConnectFailure::Protocol),
                    };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(_)) => return Err(ConnectFailure::Protocol),
                Some(Err(e)) => return Err(classify_ws(&e)),
                None => return Err(ConnectFailure::Reset),
            }
        }
    };
    match timeout(ctx.timeout, steps).await {
        Ok(Ok(ws)) => Ok((ws, started.elapsed())),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(ConnectFailure::Timeout),
    }
}

/// How many sends, one per `interval` from `next_due` on, are due by `now`.
fn overdue(next_due: Instant, now: Instant, interval: Duration) -> u64 {
    if next_due > now {
        return 0;
    }
    let periods = (now - next_due).as_nanos() / interval.as_nanos().max(1);
    u64::try_from(periods).unwrap_or(u64::MAX).saturating_add(1)
}

/// The fields of a server message that a user looks at; `data` is skipped unread.
#[derive(Deserialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<&'a str>,
    code: Option<&'a str>,
    reason: Option<&'a str>,
    reconnect: Option<bool>,
}

fn parse(text: &str) -> Option<ServerMessage<'_>> {
    serde_json::from_str(text).ok()
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    /// The run no longer wants this user.
    Stopped,
    /// The server said `goodbye`; the connection is closed (by whichever side closed first).
    Goodbye { reconnect: bool },
    /// Closed without `goodbye`, or the transport failed.
    Lost,
    /// Churn mode closed it on purpose.
    Churned,
}

/// One established connection.
struct Session<'a> {
    ctx: &'a UserContext,
    ws: Ws,
    /// Sent and not yet answered: (id, scheduled send time), oldest first.
    pending: VecDeque<(u64, Instant)>,
    next_id: u64,
    /// The `reconnect` flag of the `goodbye` received, if any.
    goodbye: Option<bool>,
    /// We sent our close frame (the run stopped, churn, or we left after a `goodbye`).
    closed_by_us: bool,
    /// The server's close frame has been read.
    closed_by_server: bool,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a UserContext, ws: Ws) -> Self {
        Session {
            ctx,
            ws,
            pending: VecDeque::new(),
            next_id: 0,
            goodbye: None,
            closed_by_us: false,
            closed_by_server: false,
        }
    }

    async fn run(mut self, stop: &CancellationToken) -> SessionEnd {
        if self.ctx.behaviour.churn {
            self.close().await;
            return SessionEnd::Churned;
        }
        let interval = (self.ctx.behaviour.rate > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.ctx.behaviour.rate));
        // A random phase spreads the sends of users that connected together.
        let mut next_send = interval.map(|i| Instant::now() + i.mul_f64(fastrand::f64()));
        let end = loop {
            let closed_loop_due = self
                .ctx
                .behaviour
                .closed_loop_window
                .is_some_and(|w| self.pending.len() < w as usize);
            let open_loop_due =
                next_send.filter(|_| self.ctx.behaviour.closed_loop_window.is_none());
            let expiry = self.pending.front().map(|&(_, at)| at + self.ctx.timeout);
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    let owed = open_loop_due.zip(interval);
                    let end = self.leave(owed, self.ctx.drain_grace()).await;
                    break end.unwrap_or(SessionEnd::Stopped);
                }
                frame = self.ws.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        break end;
                    }
                    if let Some(reconnect) = self.goodbye {
                        // The server asked us to leave: nothing falls due any more; we take
                        // the answers still on their way (its grace answers them) and close.
                        let owed = open_loop_due.zip(interval);
                        let end = self.leave(owed, self.ctx.goodbye_grace()).await;
                        break end.unwrap_or(SessionEnd::Goodbye { reconnect });
                    }
                }
                () = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => self.expire(),
                () = async {}, if closed_loop_due => {
                    if self.send(Instant::now()).await.is_err() {
                        break self.lost();
                    }
                }
                () = sleep_until(open_loop_due.unwrap_or_else(Instant::now)), if open_loop_due.is_some() => {
                    let scheduled = open_loop_due.expect("guarded by the branch condition");
                    next_send = interval.map(|i| scheduled + i);
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
        self.ctx
            .recorder
            .count(|c| c.unanswered += self.pending.len() as u64);
        end
    }

    /// Sends one `message`; its latency will count from `scheduled`.
    async fn send(&mut self, scheduled: Instant) -> Result<(), WsError> {
        self.next_id += 1;
        let id = self.next_id;
        let text = format!(
            r#"{{"type":"message","id":"{id}","data":"{}"}}"#,
            self.ctx.payload
        );
        self.pending.push_back((id, scheduled));
        self.ctx.recorder.count(|c| c.sent += 1);
        self.ws.send(Message::Text(text.into())).await
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let mut expired = 0;
        while self
            .pending
            .front()
            .is_some_and(|&(_, at)| at + self.ctx.timeout <= now)
        {
            self.pending.pop_front();
            expired += 1;
        }
        self.ctx.recorder.count(|c| c.timed_out += expired);
    }

    /// Takes the pending entry for `id` off the list and returns its scheduled time.
    fn settle(&mut self, id: Option<&str>) -> Option<Instant> {
        let id: u64 = id?.parse().ok()?;
        let at = self
            .pending
            .iter()
            .position(|&(pending, _)| pending == id)?;
        self.pending.remove(at).map(|(_, scheduled)| scheduled)
    }

    /// Handles what the server sent; `Some` when the connection is over.
    fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Option<SessionEnd> {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Close(frame))) => {
                self.closed_by_server = true;
                let code =
                    frame.map_or_else(|| "1005".to_owned(), |f| u16::from(f.code).to_string());
                self.record_close(&code);
                return Some(match self.goodbye {
                    Some(reconnect) => SessionEnd::Goodbye { reconnect },
                    None => SessionEnd::Lost,
                });
            }
            Some(Ok(Message::Binary(_))) => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Some(self.lost()),
        }
        None
    }

    fn on_text(&mut self, text: &str) {
        let Some(message) = parse(text) else {
            self.ctx.recorder.count(|c| c.protocol_errors += 1);
            return;
        };
        match message.kind {
            "message_response" => match self.settle(message.id) {
                Some(scheduled) => self.ctx.recorder.answered(scheduled.elapsed()),
                None => self.ctx.recorder.count(|c| c.late += 1),
            },
            "heartbeat" | "pong" => {}
            "error" => {
                let errored = self.settle(message.id).is_some();
                let code = message.code.unwrap_or("missing_code");
                self.ctx.recorder.count(|c| {
                    c.errored += u64::from(errored);
                    bump(&mut c.server_errors, code);
                });
            }
            "goodbye" => {
                self.goodbye = Some(message.reconnect.unwrap_or(false));
                let reason = message.reason.unwrap_or("missing_reason");
                self.ctx
                    .recorder
                    .count(|c| bump(&mut c.goodbye_reasons, reason));
            }
            _ => self.ctx.recorder.count(|c| c.protocol_errors += 1),
        }
    }

    /// The transport failed or ended without a close frame.
    fn lost(&self) -> SessionEnd {
        self.record_close("none");
        match self.goodbye {
            Some(reconnect) => SessionEnd::Goodbye { reconnect },
            None => SessionEnd::Lost,
        }
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
        while !self.pending.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counts;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;

    #[test]
    fn backoff_is_jittered_and_capped() {
        for n in 0..20 {
            let d = backoff(n);
            let ceiling = Duration::from_millis((100u64 << n.min(6)).min(5_000));
            assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
        }
    }

    #[test]
    fn overdue_sends_are_counted_from_the_schedule() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(overdue(t0 + ms(1), t0, ms(50)), 0, "not due yet");
        assert_eq!(overdue(t0, t0, ms(50)), 1, "due right now");
        assert_eq!(overdue(t0, t0 + ms(149), ms(50)), 3);
        assert_eq!(overdue(t0, t0 + ms(150), ms(50)), 4);
    }

    #[test]
    fn server_messages_parse_without_reading_data() {
        let m = parse(
            r#"{"type":"message_response","id":"7","data":{"deep":[1,2,{"x":"y\n"}]},"ts":1}"#,
        )
        .unwrap();
        assert_eq!((m.kind, m.id), ("message_response", Some("7")));
        let g = parse(r#"{"type":"goodbye","reason":"server_shutdown","reconnect":true,"ts":1}"#)
            .unwrap();
        assert_eq!(
            (g.reason, g.reconnect),
            (Some("server_shutdown"), Some(true))
        );
        assert!(parse("not json").is_none());
        assert!(parse(r#"{"id":"1"}"#).is_none(), "type is required");
    }

    /// A scripted protocol v1 server on loopback: the tests play the server's side by hand.
    async fn listen() -> (Target, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        (Target::parse(&url).unwrap(), listener)
    }

    /// Accepts one user and greets it with `connection_established`.
    async fn accept(listener: &TcpListener) -> Ws {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let hello = json!({"type": "connection_established", "connectionId": "t",
            "serverId": "script", "heartbeatIntervalMs": 30000, "ts": 1});
        say(&mut ws, hello).await;
        ws
    }

    async fn say(ws: &mut Ws, message: Value) {
        ws.send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    fn goodbye(reason: &str, reconnect: bool) -> Value {
        json!({"type": "goodbye", "reason": reason, "reconnect": reconnect, "ts": 1})
    }

    fn answer(id: &str) -> Value {
        json!({"type": "message_response", "id": id, "data": "x", "ts": 1})
    }

    /// The user's next frame: the id of a `message`, or the code of its close.
    async fn next_from_user(ws: &mut Ws) -> Result<String, CloseCode> {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(message["type"], "message");
                Ok(message["id"].as_str().unwrap().to_owned())
            }
            Some(Ok(Message::Close(Some(frame)))) => Err(frame.code),
            other => panic!("expected a message or a close frame, got {other:?}"),
        }
    }

    /// Reads to the end: sends tungstenite's reply to the user's close, and tells whether
    /// the user answered our own close with a close frame.
    async fn read_to_end(ws: &mut Ws) -> bool {
        let mut close_seen = false;
        while let Some(Ok(frame)) = ws.next().await {
            close_seen |= frame.is_close();
        }
        close_seen
    }

    fn context(target: Target, behaviour: Behaviour) -> UserContext {
        UserContext::new(target, behaviour, Arc::default(), "t".into())
    }

    fn closed_loop(timeout_ms: u64) -> Behaviour {
        Behaviour {
            rate: 0.0,
            closed_loop_window: Some(1),
            payload_bytes: 8,
            timeout_ms,
            churn: false,
        }
    }

    /// Connects and runs one session, bounded so that a user that never leaves fails the
    /// test instead of hanging it.
    async fn one_session(ctx: &UserContext) -> (SessionEnd, Counts) {
        let (ws, _) = connect(ctx, "u", None).await.unwrap();
        let stop = CancellationToken::new();
        let end = timeout(Duration::from_secs(20), Session::new(ctx, ws).run(&stop))
            .await
            .expect("the user left by itself");
        (end, ctx.recorder.take(1).counts)
    }

    #[tokio::test]
    async fn after_goodbye_a_user_sends_nothing_new_takes_its_answer_and_closes_first() {
        let (target, listener) = listen().await;
        let server = tokio::spawn(async move {
            let mut ws = accept(&listener).await;
            let id = next_from_user(&mut ws).await.unwrap();
            // The answer follows the goodbye, as during the server's grace.
            say(&mut ws, goodbye("server_shutdown", true)).await;
            say(&mut ws, answer(&id)).await;
            // A closed loop would send its next message at once: the old behaviour did.
            assert_eq!(next_from_user(&mut ws).await, Err(CloseCode::Normal));
            read_to_end(&mut ws).await;
        });
        let ctx = context(target, closed_loop(10_000));
        let (end, counts) = one_session(&ctx).await;
        server.await.unwrap();
        assert_eq!(end, SessionEnd::Goodbye { reconnect: true });
        assert_eq!(
            (counts.sent, counts.answered, counts.messages_failed()),
            (1, 1, 0)
        );
        assert_eq!(counts.goodbye_reasons["server_shutdown"], 1);
        assert_eq!(
            counts.close_codes,
            [("1000".to_owned(), 1)].into(),
            "the server's echo of our close"
        );
    }

    #[tokio::test]
    async fn open_loop_sends_due_after_goodbye_are_neither_sent_nor_unsent() {
        let (target, listener) = listen().await;
        let server = tokio::spawn(async move {
            let mut ws = accept(&listener).await;
            let mut goodbye_said = false;
            // Answer everything, as the server's grace does, until the user closes.
            loop {
                match next_from_user(&mut ws).await {
                    Ok(id) => {
                        if !goodbye_said {
                            say(&mut ws, goodbye("server_shutdown", false)).await;
                            goodbye_said = true;
                        }
                        say(&mut ws, answer(&id)).await;
                    }
                    Err(code) => {
                        assert_eq!(code, CloseCode::Normal);
                        break;
                    }
                }
            }
            read_to_end(&mut ws).await;
        });
        let behaviour = Behaviour {
            rate: 50.0,
            closed_loop_window: None,
            ..closed_loop(10_000)
        };
        let ctx = context(target, behaviour);
        let (end, counts) = one_session(&ctx).await;
        server.await.unwrap();
        assert_eq!(end, SessionEnd::Goodbye { reconnect: false });
        assert!(counts.sent >= 1, "{counts:?}");
        assert_eq!(counts.answered, counts.sent, "{counts:?}");
        assert_eq!(
            (counts.unsent, counts.messages_failed()),
            (0, 0),
            "{counts:?}"
        );
        assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
    }

    #[tokio::test]
    async fn answers_missing_when_the_goodbye_grace_ends_count_as_failed() {
        let (target, listener) = listen().await;
        let server = tokio::spawn(async move {
            let mut ws = accept(&listener).await;
            next_from_user(&mut ws).await.unwrap();
            say(&mut ws, goodbye("server_shutdown", true)).await;
            // Never answered: the user gives up after its short grace and closes.
            assert_eq!(next_from_user(&mut ws).await, Err(CloseCode::Normal));
            read_to_end(&mut ws).await;
        });
        let ctx = context(target, closed_loop(200));
        let (end, counts) = one_session(&ctx).await;
        server.await.unwrap();
        assert_eq!(end, SessionEnd::Goodbye { reconnect: true });
        assert_eq!((counts.sent, counts.answered), (1, 0));
        assert_eq!(counts.timed_out + counts.unanswered, 1, "{counts:?}");
        assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
    }

    #[tokio::test]
    async fn a_server_that_closes_right_after_goodbye_gets_our_close_reply() {
        let (target, listener) = listen().await;
        let server = tokio::spawn(async move {
            let mut ws = accept(&listener).await;
            next_from_user(&mut ws).await.unwrap();
            say(&mut ws, goodbye("idle_timeout", false)).await;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "idle_timeout".into(),
            };
            ws.close(Some(frame)).await.unwrap();
            assert!(read_to_end(&mut ws).await, "the user replies to our close");
        });
        let ctx = context(target, closed_loop(10_000));
        let (end, counts) = one_session(&ctx).await;
        server.await.unwrap();
        assert_eq!(end, SessionEnd::Goodbye { reconnect: false });
        assert_eq!((counts.sent, counts.unanswered), (1, 1));
        assert_eq!(counts.goodbye_reasons["idle_timeout"], 1);
        assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
    }

    #[tokio::test]
    async fn a_user_reconnects_after_goodbye_and_a_stopped_connection_is_not_counted() {
        let (target, listener) = listen().await;
        let stop = CancellationToken::new();
        let stop_when_back = stop.clone();
        let server = tokio::spawn(async move {
            let mut first = accept(&listener).await;
            let id = next_from_user(&mut first).await.unwrap();
            say(&mut first, goodbye("server_shutdown", true)).await;
            say(&mut first, answer(&id)).await;
            assert_eq!(next_from_user(&mut first).await, Err(CloseCode::Normal));
            read_to_end(&mut first).await;
            let mut second = accept(&listener).await;
            // Its first message shows that the user is past its handshake.
            let id = next_from_user(&mut second).await.unwrap();
            stop_when_back.cancel();
            say(&mut second, answer(&id)).await;
            assert_eq!(next_from_user(&mut second).await, Err(CloseCode::Normal));
            read_to_end(&mut second).await;
        });
        let ctx = Arc::new(context(target, closed_loop(10_000)));
        let user = run_user(ctx.clone(), 1, None, stop);
        timeout(Duration::from_secs(20), user)
            .await
            .expect("the user stops when told");
        server.await.unwrap();
        let counts = ctx.recorder.take(1).counts;
        assert_eq!((counts.connects, counts.reconnects), (2, 1));
        assert_eq!(counts.goodbye_reasons["server_shutdown"], 1);
        assert_eq!(
            counts.close_codes,
            [("1000".to_owned(), 1)].into(),
            "only the connection the server ended"
        );
    }
}
