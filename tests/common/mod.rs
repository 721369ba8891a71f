//! Test harness shared by the integration tests: spawns the real server binary on free
//! loopback ports with the given environment, waits for `/ready`, reads metrics, sends signals,
//! and a small WebSocket client (tokio-tungstenite) that speaks JSON with timeouts; `chat`
//! holds the channel requests, `redis_server` a real redis-server per test, `skip` the rule
//! for tests that cannot run on a machine. Each test file includes it with `mod common;` and
//! uses what it needs.
#![allow(dead_code)]

pub mod chat;
pub mod redis_server;
pub mod skip;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default wait for anything the server should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// The server binary built by cargo for these tests.
pub fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_concurrent-socket"))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    binary: PathBuf,
    env: HashMap<String, String>,
}

impl ServerBuilder {
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.insert(name.to_owned(), value.to_string());
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (name, value) in vars {
            self.env.insert((*name).to_owned(), (*value).to_owned());
        }
        self
    }

    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Starts the server on free ports and waits until `/ready` answers 200. Retries with other
    /// ports if one was taken between choosing and binding it.
    pub async fn start(self) -> Server {
        let mut last_output = String::new();
        for _ in 0..3 {
            let (port, metrics_port) = (free_port(), free_port());
            let mut server = self.spawn(port, metrics_port);
            if server.wait_ready(WAIT).await {
                return server;
            }
            last_output = server.output();
            server.kill().await;
        }
        panic!("server did not become ready; its output:\n{last_output}");
    }

    /// Spawns the server on these ports without waiting for anything.
    pub fn spawn(&self, port: u16, metrics_port: u16) -> Server {
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("SERVER_ID", "test")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the server binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(Either::Out),
            child.stderr.take().map(Either::Err),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            tokio::spawn(async move {
                let mut lines = match stream {
                    Either::Out(s) => Box::pin(BufReader::new(s))
                        as std::pin::Pin<Box<dyn tokio::io::AsyncBufRead + Send>>,
                    Either::Err(s) => Box::pin(BufReader::new(s)),
                }
                .lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Server {
            child,
            port,
            metrics_port,
            output,
            http: reqwest::Client::new(),
        }
    }
}

enum Either {
    Out(tokio::process::ChildStdout),
    Err(tokio::process::ChildStderr),
}

/// A running server process (killed when dropped).
pub struct Server {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    output: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            binary: server_binary(),
            env: HashMap::new(),
        }
    }

    /// A server with default settings (plus `SERVER_ID=test` and loopback ports).
    pub async fn start(vars: &[(&str, &str)]) -> Server {
        Server::builder().envs(vars).start().await
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// Everything the server printed so far (stdout and stderr, line by line).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Polls `/ready` until it answers 200, or the process exits, or `within` passes.
    pub async fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Not kept alive: an idle connection counts in `websocket_http_pending`.
            let ready = self
                .http
                .get(self.url("/ready"))
                .header("connection", "close");
            if let Ok(response) = ready.send().await
                && response.status() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("HTTP request to the server")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The metrics exposition text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        self.http
            .get(url)
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one series, written as in the exposition: `name{label="v",...}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        parse_metric(&self.metrics_text().await, series)
    }

    /// Polls a series until `check` holds (or `WAIT` passes); returns the last value.
    pub async fn wait_metric(&self, series: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.metric(series).await.unwrap_or(f64::NAN);
            if check(value) || tokio::time::Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// The value of `series` in an exposition text.
pub fn parse_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The status, JSON body and Retry-After of a refused upgrade.
pub async fn refusal(url: &str, headers: &[(&'static str, &str)]) -> (u16, Value, Option<String>) {
    match Client::connect_with(url, headers).await {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).expect("a JSON body"))
                .unwrap_or_default(),
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
    }
}

/// A WebSocket client for tests.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `url`, with extra request headers.
    pub async fn connect_with(
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(Client { ws })
    }

    pub async fn connect(url: &str) -> Result<Client, tungstenite::Error> {
        Client::connect_with(url, &[]).await
    }

    /// Connects to `/ws/chat/{id}` and reads `connection_established`.
    pub async fn chat(server: &Server, id: &str) -> (Client, Value) {
        let mut client = Client::connect(&server.ws_url(&format!("/ws/chat/{id}")))
            .await
            .expect("upgrade");
        let hello = client.recv_json().await;
        assert_eq!(hello["type"], "connection_established", "{hello}");
        (client, hello)
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(message).await
    }

    /// The next frame (pings and pongs included), or `None` on timeout or end of stream.
    pub async fn next_frame(
        &mut self,
        within: Duration,
    ) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(within, self.ws.next())
            .await
            .ok()
            .flatten()
    }

    /// The next text frame, skipping control frames; panics on anything else.
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.next_frame(WAIT).await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("server sent non-JSON {text:?}: {e}"))
    }

    /// The next JSON message whose `type` is not `heartbeat`.
    pub async fn recv_reply(&mut self) -> Value {
        loop {
            let value = self.recv_json().await;
            if value["type"] != "heartbeat" {
                return value;
            }
        }
    }

    /// Reads until the server's close frame; returns it with every JSON message seen before.
    pub async fn recv_until_close(&mut self, within: Duration) -> (Option<CloseFrame>, Vec<Value>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(Ok(Message::Text(text))) => {
                    seen.push(serde_json::from_str(&text).expect("JSON"))
                }
                Some(Ok(Message::Close(frame))) => return (frame, seen),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (None, seen),
            }
        }
    }
}
