//! Graceful shutdown over real sockets: on SIGTERM or SIGINT every client gets `goodbye`
//! `server_shutdown` (reconnect) and close 1001 after the answers to what it already sent,
//! `/ready` and new upgrades answer 503 while draining, and the process exits 0 by its deadline
//! even when a client never completes the closing handshake.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, Server, WAIT};
use serde_json::json;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CLIENTS: usize = 20;
/// The drain's configured bound in this test.
const SHUTDOWN_TIMEOUT_MS: u64 = 2500;
/// Goodbyes are spread evenly over the first half of `SHUTDOWN_TIMEOUT` (docs/protocol.md).
const WINDOW_MS: u64 = SHUTDOWN_TIMEOUT_MS / 2;
/// After its goodbye a connection is answered for a grace of a fifth of the timeout, then its
/// close frame is awaited for another fifth (both derived from `SHUTDOWN_TIMEOUT`, so that
/// they fit before the deadline: docs/configuration.md).
const GRACE_AND_CLOSE_WAIT_MS: u64 = 2 * (SHUTDOWN_TIMEOUT_MS / 5);
/// The stuck client, the newest connection, gets the last goodbye slot (the drain goes oldest
/// first) and never answers the close: it holds the server until its close wait ends.
const STUCK_END_MS: u64 =
    WINDOW_MS * CLIENTS as u64 / (CLIENTS as u64 + 1) + GRACE_AND_CLOSE_WAIT_MS;
/// Slack for scheduling on a busy machine: an exit after the timeout.
const MARGIN_MS: u64 = 500;
/// How late a goodbye may come after its slot (they come within milliseconds here): tight
/// enough that a window stretched by a third fails.
const GOODBYE_LATENESS_MS: u64 = 250;

/// Milliseconds since the Unix epoch, the clock of the messages' `ts`.
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks sorted goodbye times (ms after the signal) against the evenly spaced slots of the
/// drain window, one slot per open connection: a goodbye never comes before its slot (the
/// drain waits for each one; 1 ms for the rounding of both clocks to milliseconds) and at most
/// `GOODBYE_LATENESS_MS` after it. One slot, the stuck client's,
/// is not among `after_signal`, so the k-th goodbye seen sits in slot k or k + 1.
fn assert_spread_over_window(after_signal: &[u64], connections: u64) {
    let slot = |index: u64| WINDOW_MS * index / connections;
    for (k, &at) in (0u64..).zip(after_signal) {
        assert!(
            at + 1 >= slot(k) && at <= slot(k + 1) + GOODBYE_LATENESS_MS,
            "goodbye {k} came {at} ms after the signal, expected between {} and {} ms \
             ({connections} goodbyes spread over {WINDOW_MS} ms); all: {after_signal:?}",
            slot(k),
            slot(k + 1) + GOODBYE_LATENESS_MS
        );
    }
}

#[tokio::test]
async fn sigterm_drains_every_client_and_exits_zero_before_the_deadline() {
    let timeout = SHUTDOWN_TIMEOUT_MS.to_string();
    let mut server = Server::start(&[("SHUTDOWN_TIMEOUT", &timeout)]).await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(Client::chat(&server, &format!("drain{i}")).await.0);
    }
    // This one never reads again, so it never answers the close: the deadline must end it.
    let (stuck, _) = Client::chat(&server, "stuck").await;
    for client in &mut clients {
        client
            .send_json(&json!({"type": "ping", "id": "before"}))
            .await;
    }

    let signalled = Instant::now();
    let signalled_ms = epoch_ms();
    server.signal("TERM");
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { client.recv_until_close(WAIT).await }))
        .collect();

    // While draining: not ready, no new upgrades, still alive.
    let mut ready = server.get_json("/ready").await;
    while ready.0 == 200 {
        ready = server.get_json("/ready").await;
    }
    assert_eq!(ready, (503, json!({"status": "draining"})));
    match Client::connect(&server.ws_url("/ws/chat/late")).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_ref().unwrap()).unwrap();
            assert_eq!(body, json!({"error": "draining"}));
        }
        other => panic!(
            "expected 503 while draining, got {:?}",
            other.map(|_| "an upgrade")
        ),
    }
    let (status, health) = server.get_json("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("draining")));
    assert_eq!(server.metric("websocket_draining").await, Some(1.0));

    let mut goodbye_times = Vec::new();
    for reader in readers {
        let (frame, seen) = reader.await.unwrap();
        let types: Vec<&str> = seen.iter().map(|m| m["type"].as_str().unwrap()).collect();
        let pong = types
            .iter()
            .position(|t| *t == "pong")
            .expect("the ping sent before the signal is answered");
        let goodbye = seen.last().expect("a goodbye");
        assert_eq!(goodbye["type"], "goodbye", "{types:?}");
        assert!(pong < types.len() - 1, "answer before goodbye: {types:?}");
        assert_eq!(
            (goodbye["reason"].as_str(), goodbye["reconnect"].as_bool()),
            (Some("server_shutdown"), Some(true))
        );
        assert_eq!(frame.expect("a close frame").code, CloseCode::Away);
        goodbye_times.push(goodbye["ts"].as_u64().unwrap());
    }

    // Waiting longer than the bound lets a late exit be measured and named.
    let status = server
        .wait_exit(Duration::from_millis(3 * SHUTDOWN_TIMEOUT_MS))
        .await
        .expect("the server exits");
    let elapsed = signalled.elapsed().as_millis() as u64;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        (STUCK_END_MS..=SHUTDOWN_TIMEOUT_MS + MARGIN_MS).contains(&elapsed),
        "exit {elapsed} ms after SIGTERM, expected once the stuck client's close wait ended \
         ({STUCK_END_MS} ms) and within SHUTDOWN_TIMEOUT {SHUTDOWN_TIMEOUT_MS} ms + {MARGIN_MS} ms"
    );
    let dropped = server
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|record| {
            record["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown deadline reached"))
        });
    // Its close wait ends by the deadline by design; on a busy machine it may just miss it.
    let dropped = dropped.map(|record| record["connections"].clone());
    assert!(
        dropped.is_none() || dropped == Some(json!(1)),
        "at most the stuck client is left for the deadline to drop: {}",
        server.output()
    );
    goodbye_times.sort_unstable();
    let after_signal: Vec<u64> = goodbye_times
        .iter()
        .map(|ts| ts.saturating_sub(signalled_ms))
        .collect();
    assert_spread_over_window(&after_signal, CLIENTS as u64 + 1);
    println!(
        "MEASURED shutdown: {CLIENTS} goodbyes from {} to {} ms after SIGTERM (window \
         {WINDOW_MS} ms), exit after {elapsed} ms (SHUTDOWN_TIMEOUT {SHUTDOWN_TIMEOUT_MS} ms)",
        after_signal[0],
        after_signal[CLIENTS - 1]
    );
    drop(stuck);
}

#[tokio::test]
async fn a_request_that_crosses_the_goodbye_is_still_answered() {
    // SHUTDOWN_TIMEOUT 10 s: a grace of 1 s after the goodbye. Connection lines are debug.
    let mut server = Server::start(&[
        ("SHUTDOWN_TIMEOUT", "10000"),
        ("LOG_LEVEL", "info,concurrent_socket=debug"),
    ])
    .await;
    let (mut client, _) = Client::chat(&server, "crossing").await;
    server.signal("TERM");
    let goodbye = client.recv_reply().await;
    assert_eq!(goodbye["reason"], "server_shutdown");

    // Sent after the goodbye left the server, as a client that has not read it yet would.
    client
        .send_json(&json!({"type": "message", "id": "crossed", "data": 1}))
        .await;
    let answer = client.recv_reply().await;
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("message_response"), Some("crossed"))
    );

    // The client leaves as asked; the server counts it as a shutdown, not a client close.
    client.send(Message::Close(None)).await.unwrap();
    let (frame, _) = client.recv_until_close(WAIT).await;
    // The echo of our empty close frame, not a close 1001 of the server's own after its grace.
    assert!(frame.is_none(), "{frame:?}");
    assert!(server.wait_exit(WAIT).await.expect("exits").success());
    let log = server.output();
    assert!(
        log.contains(r#""reason":"server_shutdown""#),
        "closed as a shutdown: {log}"
    );
}

#[tokio::test]
async fn sigint_drains_too() {
    let mut server = Server::start(&[("SHUTDOWN_TIMEOUT", "1000")]).await;
    let (mut client, _) = Client::chat(&server, "int").await;
    server.signal("INT");
    let (frame, seen) = client.recv_until_close(WAIT).await;
    assert_eq!(seen.last().unwrap()["reason"], "server_shutdown");
    assert_eq!(frame.unwrap().code, CloseCode::Away);
    assert!(server.wait_exit(WAIT).await.expect("exits").success());
}

#[tokio::test]
async fn an_idle_server_exits_at_once() {
    let mut server = Server::start(&[("SHUTDOWN_TIMEOUT", "60000")]).await;
    server.signal("TERM");
    // Nothing to drain: no need to wait for the 60 s timeout.
    assert!(
        server
            .wait_exit(WAIT)
            .await
            .expect("exits well before the timeout")
            .success()
    );
}
