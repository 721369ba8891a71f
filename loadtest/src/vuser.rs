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
}

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
    /// The server said `goodbye` and closed.
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
}

impl<'a> Session<'a> {
    fn new(ctx: &'a UserContext, ws: Ws) -> Self {
        Session {
            ctx,
            ws,
            pending: VecDeque::new(),
            next_id: 0,
            goodbye: None,
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
                () = stop.cancelled() => break self.finish(open_loop_due.zip(interval)).await,
                frame = self.ws.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        break end;
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
                let code =
                    frame.map_or_else(|| "1005".to_owned(), |f| u16::from(f.code).to_string());
                self.ctx.recorder.count(|c| bump(&mut c.close_codes, &code));
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
        self.ctx
            .recorder
            .count(|c| bump(&mut c.close_codes, "none"));
        match self.goodbye {
            Some(reconnect) => SessionEnd::Goodbye { reconnect },
            None => SessionEnd::Lost,
        }
    }

    /// The run is over for this user: wait a little for outstanding answers, then close.
    /// Sends still due on the open-loop `schedule` (next send time, interval) are written
    /// first; those the socket does not take before the grace ends count as `unsent`, so
    /// that a server that does not read cannot shrink the load it is judged on.
    async fn finish(&mut self, schedule: Option<(Instant, Duration)>) -> SessionEnd {
        let stopped = Instant::now();
        let deadline = stopped + self.ctx.drain_grace();
        if let Some((mut due, interval)) = schedule {
            while due <= stopped {
                match timeout_at(deadline, self.send(due)).await {
                    Ok(Ok(())) => due += interval,
                    _ => break,
                }
            }
            let unsent = overdue(due, stopped, interval);
            self.ctx.recorder.count(|c| c.unsent += unsent);
        }
        while !self.pending.is_empty() {
            match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.ws.next(),
            )
            .await
            {
                Ok(frame) => {
                    if let Some(end) = self.on_frame(frame) {
                        return end;
                    }
                }
                Err(_) => break,
            }
        }
        self.close().await;
        SessionEnd::Stopped
    }

    /// Sends a normal close and waits briefly for the server's close frame.
    async fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.ws.close(Some(frame)).await.is_ok() {
            let _ = timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = self.ws.next().await {}
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
