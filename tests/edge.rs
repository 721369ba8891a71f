//! What the server does in place of a proxy on the direct data path (issue 20), over real
//! sockets: the upgrade rate limit per client IP (`UPGRADE_RATE_PER_IP`), and the client
//! address from PROXY protocol headers (v2, and v1's text line) of the trusted load balancers
//! (`PROXY_PROTOCOL`).
//! The balancer is played by connections bound to 127.0.0.2; the harness itself (127.0.0.1)
//! is an untrusted peer, served as before.

mod common;

use std::time::Instant;

use common::{Client, Server, WAIT, refusal_of, send_and_read};
use ppp::v2::{Addresses, Builder, Command, IPv4, PROTOCOL_PREFIX, Protocol, Version};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const BALANCER: &str = "127.0.0.2";

fn proxy_settings() -> Vec<(&'static str, &'static str)> {
    proxy_settings_for("v2")
}

fn proxy_settings_for(versions: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("PROXY_PROTOCOL", versions),
        ("PROXY_PROTOCOL_TRUSTED", BALANCER),
        ("MAX_CONNECTIONS_PER_IP", "1"),
    ]
}

/// A v1 (text) header naming `client`, as nginx's `proxy_protocol on` sends it.
fn text_header(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 10.0.0.5 40000 3001\r\n").into_bytes()
}

/// A connection to `server` from `source` (any 127/8 address is local).
async fn connect_from(source: &str, server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server.addr()).await.unwrap()
}

fn upgrade(server: &Server, id: &str) -> String {
    format!(
        "GET /ws/chat/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.port
    )
}

/// A v2 header naming `client` (`PROXY`), or the balancer's own health check (`LOCAL`).
fn header(command: Command, client: [u8; 4]) -> Vec<u8> {
    let addresses: Addresses = IPv4::new(client, [10, 0, 0, 5], 40_000, 3001).into();
    Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
        .build()
        .unwrap()
}

/// From the balancer: `prefix` then `request` on one connection, kept open for the caller.
async fn through_balancer(server: &Server, prefix: &[u8], request: &str) -> (u16, TcpStream) {
    let mut stream = connect_from(BALANCER, server).await;
    let bytes = [prefix, request.as_bytes()].concat();
    let (status, _) = send_and_read(&mut stream, &bytes).await;
    (status, stream)
}

fn refused(reason: &str) -> String {
    format!("websocket_http_refused_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn the_headers_source_is_the_client_for_the_per_ip_limit() {
    let server = Server::start(&proxy_settings()).await;
    let alice = header(Command::Proxy, [203, 0, 113, 1]);
    let (status, _alice) = through_balancer(&server, &alice, &upgrade(&server, "a1")).await;
    assert_eq!(status, 101);
    // The same client again: at MAX_CONNECTIONS_PER_IP=1, refused; another client is not.
    let (status, _) = through_balancer(&server, &alice, &upgrade(&server, "a2")).await;
    assert_eq!(status, 429, "ip_limit of 203.0.113.1");
    let bob = header(Command::Proxy, [203, 0, 113, 2]);
    let (status, _bob) = through_balancer(&server, &bob, &upgrade(&server, "b1")).await;
    assert_eq!(status, 101, "203.0.113.2 has its own share");
    // An untrusted peer without a header is served as the client it is.
    let (_harness, hello) = Client::chat(&server, "harness").await;
    assert_eq!(hello["type"], "connection_established");
    let rejected = r#"websocket_connections_rejected_total{reason="ip_limit"}"#;
    assert_eq!(server.wait_metric(rejected, |v| v == 1.0).await, 1.0);
}

#[tokio::test]
async fn with_any_version_a_text_or_binary_header_names_the_same_client() {
    let server = Server::start(&proxy_settings_for("any")).await;
    let (status, _alice) = through_balancer(
        &server,
        &text_header("203.0.113.1"),
        &upgrade(&server, "a1"),
    )
    .await;
    assert_eq!(status, 101);
    let binary = header(Command::Proxy, [203, 0, 113, 1]);
    let (status, _) = through_balancer(&server, &binary, &upgrade(&server, "a2")).await;
    assert_eq!(status, 429, "203.0.113.1 again, in the other version");
    // A text header that comes in pieces is read to its end, and not a byte further.
    let mut bob = connect_from(BALANCER, &server).await;
    let text = text_header("203.0.113.2");
    bob.write_all(&text[..9]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let rest = [&text[9..], upgrade(&server, "b1").as_bytes()].concat();
    assert_eq!(send_and_read(&mut bob, &rest).await.0, 101);
    let unknown = b"PROXY UNKNOWN\r\n";
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(through_balancer(&server, unknown, health).await.0, 200);
}

#[tokio::test]
async fn a_header_of_a_version_not_configured_is_refused() {
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let text_only = Server::start(&proxy_settings_for("v1")).await;
    let binary = header(Command::Proxy, [203, 0, 113, 1]);
    assert_eq!(through_balancer(&text_only, &binary, health).await.0, 0);
    // No line end within the 107 bytes a text header may take.
    let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
    assert_eq!(through_balancer(&text_only, &endless, health).await.0, 0);
    let good = text_header("203.0.113.1");
    assert_eq!(through_balancer(&text_only, &good, health).await.0, 200);
    let binary_only = Server::start(&proxy_settings()).await;
    assert_eq!(through_balancer(&binary_only, &good, health).await.0, 0);
    for (server, reason) in [
        (&text_only, "proxy_header_missing"),
        (&text_only, "proxy_header_invalid"),
        (&binary_only, "proxy_header_missing"),
    ] {
        assert_eq!(
            server.wait_metric(&refused(reason), |v| v == 1.0).await,
            1.0,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_local_header_keeps_the_balancer_as_the_peer() {
    let server = Server::start(&proxy_settings()).await;
    let local = header(Command::Local, [203, 0, 113, 1]);
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(through_balancer(&server, &local, health).await.0, 200);
    let (status, _first) = through_balancer(&server, &local, &upgrade(&server, "l1")).await;
    assert_eq!(status, 101);
    let (status, _) = through_balancer(&server, &local, &upgrade(&server, "l2")).await;
    assert_eq!(status, 429, "both counted under 127.0.0.2, the TCP peer");
}

#[tokio::test]
async fn bad_or_misplaced_headers_close_the_connection_and_are_counted() {
    let server = Server::builder()
        .envs(&proxy_settings())
        .env("HTTP_IDLE_TIMEOUT", "500")
        .start()
        .await;
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let good = header(Command::Proxy, [203, 0, 113, 1]);

    // A header from a peer that is not trusted: closed unanswered.
    let mut untrusted = TcpStream::connect(server.addr()).await.unwrap();
    let bytes = [good.as_slice(), health.as_bytes()].concat();
    assert_eq!(send_and_read(&mut untrusted, &bytes).await.0, 0);
    // The trusted balancer without a header.
    assert_eq!(through_balancer(&server, b"", health).await.0, 0);
    // Garbage after the signature: a version 1 in the binary header.
    let mut garbage = good.clone();
    garbage[12] = 0x11;
    assert_eq!(through_balancer(&server, &garbage, health).await.0, 0);
    // Longer than MAX_HEADER_BYTES (8192): 16 + 65535 announced.
    let mut oversized = PROTOCOL_PREFIX.to_vec();
    oversized.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(through_balancer(&server, &oversized, health).await.0, 0);
    // Cut short: the balancer closes its side after 10 bytes.
    let mut truncated = connect_from(BALANCER, &server).await;
    truncated.write_all(&good[..10]).await.unwrap();
    truncated.shutdown().await.unwrap();
    assert_eq!(send_and_read(&mut truncated, b"").await.0, 0);
    // Slow: part of a header, then nothing until HTTP_IDLE_TIMEOUT closes it.
    let started = Instant::now();
    let mut slow = connect_from(BALANCER, &server).await;
    assert_eq!(send_and_read(&mut slow, &good[..10]).await.0, 0);
    assert!(
        started.elapsed() < WAIT,
        "closed by the timeout, not by the test"
    );

    for (reason, count) in [
        ("proxy_header_untrusted", 1.0),
        ("proxy_header_missing", 1.0),
        ("proxy_header_invalid", 3.0),
        ("proxy_header_timeout", 1.0),
    ] {
        let seen = server.wait_metric(&refused(reason), |v| v == count).await;
        assert_eq!(seen, count, "{reason}");
    }
    // Nothing of this hurt the server: a good header is still served.
    assert_eq!(through_balancer(&server, &good, health).await.0, 200);
}

#[tokio::test]
async fn upgrades_over_the_rate_of_one_ip_get_429_and_other_ips_do_not() {
    let server = Server::start(&[
        ("UPGRADE_RATE_PER_IP", "1"),
        ("UPGRADE_BURST_PER_IP", "3"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let url = |id: &str| server.ws_url(&format!("/ws/chat/{id}"));
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let started = Instant::now();
    let mut open = Vec::new();
    let mut upgraded = 0;
    let refusal = loop {
        let id = format!("r{upgraded}");
        match Client::connect_with(&url(&id), &from("198.51.100.1")).await {
            Ok(client) => open.push(client),
            refused => break refusal_of(refused),
        }
        upgraded += 1;
        assert!(upgraded <= 10, "no refusal after {upgraded} upgrades");
    };
    // A token bucket: the burst, plus one a second for the time the test took.
    let allowed = 3 + started.elapsed().as_secs() as usize;
    assert!(
        (3..=allowed).contains(&upgraded),
        "{upgraded} upgrades passed"
    );
    assert_eq!(
        refusal,
        (
            429,
            json!({"error": "upgrade_rate_limited"}),
            Some("1".to_owned())
        )
    );
    let (_other, hello) = {
        let mut other = Client::connect_with(&url("other"), &from("198.51.100.2"))
            .await
            .expect("another client IP has its own bucket");
        let hello = other.recv_json().await;
        (other, hello)
    };
    assert_eq!(hello["type"], "connection_established");
    let rejected = r#"websocket_connections_rejected_total{reason="upgrade_rate_limited"}"#;
    assert_eq!(server.wait_metric(rejected, |v| v == 1.0).await, 1.0);
    assert_eq!(
        server.metric("websocket_upgrade_rate_clients").await,
        Some(2.0)
    );
}
