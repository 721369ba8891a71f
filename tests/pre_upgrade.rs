//! The HTTP surface before the upgrade over real sockets (issue 14): the request head bound
//! (431), the pending-connection caps (closed at accept), the opening handshake of RFC 6455
//! 4.2.1 (400 bad_handshake, 426 naming version 13), who may replace a connection id (409 from
//! another client), and the series that count each refusal.

mod common;

use common::{Client, Server, WAIT, refusal, send_and_read};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request for `path` with these extra header lines (and body).
fn upgrade_request(server: &Server, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n",
        server.port
    )
}

/// Sends `request` on a fresh connection: (status, the whole text read), status 0 when the
/// server closed without an answer.
async fn exchange(server: &Server, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    send_and_read(&mut stream, request).await
}

fn body(text: &str) -> serde_json::Value {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_default()
}

#[tokio::test]
async fn the_handshake_follows_rfc_6455() {
    let server = Server::start(&[]).await;
    let path = "/ws/chat/handshake";
    for key in [
        "",
        "not base64 at all!",
        "dGhlIHNhbXBsZSBub25j",
        "AAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let request = upgrade_request(
            &server,
            path,
            &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"),
        );
        let (status, text) = exchange(&server, request.as_bytes()).await;
        assert_eq!(
            (status, body(&text)),
            (400, json!({"error": "bad_handshake"})),
            "key {key:?}"
        );
    }
    let request = upgrade_request(
        &server,
        path,
        &format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n"),
    );
    let (status, text) = exchange(&server, request.as_bytes()).await;
    assert_eq!(status, 426);
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-version: 13\r\n"),
        "{text}"
    );
    let with_body = upgrade_request(
        &server,
        path,
        &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nContent-Length: 5\r\n"),
    ) + "hello";
    assert_eq!(exchange(&server, with_body.as_bytes()).await.0, 400);
    let valid = upgrade_request(
        &server,
        path,
        &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nContent-Length: 0\r\n"),
    );
    let (status, text) = exchange(&server, valid.as_bytes()).await;
    assert_eq!(status, 101, "{text}");
    assert!(
        text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the RFC's accept key: {text}"
    );
    let refused = server
        .wait_metric(
            r#"websocket_http_refused_total{reason="bad_handshake"}"#,
            |v| v == 6.0,
        )
        .await;
    assert_eq!(refused, 6.0, "4 keys, a version, a body");
}

#[tokio::test]
async fn a_head_over_max_header_bytes_gets_431_and_is_counted() {
    let server = Server::start(&[]).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Large: {}\r\n\r\n",
        "l".repeat(9000)
    );
    assert_eq!(exchange(&server, request.as_bytes()).await.0, 431);
    let within = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Large: {}\r\n\r\n",
        "l".repeat(7000)
    );
    assert_eq!(exchange(&server, within.as_bytes()).await.0, 200);
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_http_refused_total{reason="header_too_large"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
}

#[tokio::test]
async fn pending_connections_are_capped_per_client_and_timed_out() {
    let server = Server::start(&[
        ("MAX_PENDING_HTTP_PER_IP", "2"),
        ("HTTP_IDLE_TIMEOUT", "1000"),
    ])
    .await;
    // From an address of their own: the harness's requests come from 127.0.0.1.
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
        socket.connect(server.addr()).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect().await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    assert_eq!(
        server
            .wait_metric("websocket_http_pending", |v| v == 2.0)
            .await,
        2.0
    );
    // The third from the same address is closed at once, without an answer.
    let mut third = connect().await;
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, third.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?} {answer:?}");
    assert_eq!(
        server
            .metric(r#"websocket_http_refused_total{reason="pending_ip_limit"}"#)
            .await,
        Some(1.0)
    );
    // The two partial heads time out, are counted, and free their places.
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_http_refused_total{reason="header_timeout"}"#,
                |v| v == 2.0
            )
            .await,
        2.0
    );
    assert_eq!(
        server
            .wait_metric("websocket_http_pending", |v| v == 0.0)
            .await,
        0.0
    );
    assert_eq!(server.get("/health").await.status(), 200);
}

#[tokio::test]
async fn only_the_same_client_may_replace_a_connection_id() {
    // Through a trusted proxy, X-Forwarded-For tells the clients apart.
    let server = Server::start(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let url = server.ws_url("/ws/chat/mine");
    let alice = [("x-forwarded-for", "198.51.100.1")];
    let mut first = Client::connect_with(&url, &alice).await.unwrap();
    assert_eq!(first.recv_json().await["type"], "connection_established");
    let intruder = refusal(&url, &[("x-forwarded-for", "198.51.100.2")]).await;
    assert_eq!(
        intruder,
        (409, json!({"error": "connection_id_in_use"}), None)
    );
    // The holder is untouched.
    first.send_json(&json!({"type": "ping", "id": "1"})).await;
    assert_eq!(first.recv_reply().await["type"], "pong");
    let mut second = Client::connect_with(&url, &alice).await.unwrap();
    assert_eq!(second.recv_json().await["type"], "connection_established");
    let (frame, seen) = first.recv_until_close(WAIT).await;
    let goodbye = seen.last().expect("goodbye");
    assert_eq!(
        (goodbye["reason"].as_str(), goodbye["reconnect"].as_bool()),
        (Some("replaced"), Some(true))
    );
    assert_eq!(frame.expect("close frame").code, CloseCode::Normal);
    assert_eq!(
        server
            .metric(r#"websocket_connections_rejected_total{reason="connection_id_in_use"}"#)
            .await,
        Some(1.0)
    );
    // IPv6 clients of one /64 are one client.
    let url = server.ws_url("/ws/chat/v6");
    let _held = Client::connect_with(&url, &[("x-forwarded-for", "2001:db8:1:2::1")])
        .await
        .unwrap();
    let mut same_64 = Client::connect_with(&url, &[("x-forwarded-for", "2001:db8:1:2::99")])
        .await
        .unwrap();
    assert_eq!(same_64.recv_json().await["type"], "connection_established");
    let other_64 = refusal(&url, &[("x-forwarded-for", "2001:db8:1:3::1")]).await;
    assert_eq!(other_64.0, 409);
}
