//! Every limit over real sockets: the connection cap, the per-IP cap (with X-Forwarded-For from
//! a trusted proxy), idle timeout, heartbeats and pings, dead peers, slow consumers.

mod common;

use common::{Client, Server, WAIT, refusal};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn connection_cap_answers_503_with_retry_after_until_a_slot_frees() {
    let server = Server::start(&[("MAX_CONNECTIONS", "2"), ("MAX_CONNECTIONS_PER_IP", "0")]).await;
    let (first, _) = Client::chat(&server, "c1").await;
    let (_second, _) = Client::chat(&server, "c2").await;
    let (status, body, retry_after) = refusal(&server.ws_url("/ws/chat/c3"), &[]).await;
    assert_eq!((status, body), (503, json!({"error": "at_capacity"})));
    assert!(retry_after.is_some_and(|s| s.parse::<u32>().is_ok_and(|n| n > 0)));
    assert_eq!(
        server
            .metric(r#"websocket_connections_rejected_total{reason="at_capacity"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        server.metric("websocket_connections_limit").await,
        Some(2.0)
    );

    drop(first);
    assert_eq!(
        server
            .wait_metric("websocket_connections_active", |v| v == 1.0)
            .await,
        1.0
    );
    Client::chat(&server, "c3").await;
}

#[tokio::test]
async fn per_ip_cap_counts_the_tcp_peer_when_no_proxy_is_trusted() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_IP", "1")]).await;
    let (_first, _) = Client::chat(&server, "ip1").await;
    // X-Forwarded-For from an untrusted peer is ignored.
    let (status, body, retry_after) = refusal(
        &server.ws_url("/ws/chat/ip2"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!((status, body), (429, json!({"error": "ip_limit"})));
    assert!(retry_after.is_some());
    assert_eq!(
        server
            .metric(r#"websocket_connections_rejected_total{reason="ip_limit"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn per_ip_cap_uses_x_forwarded_for_behind_a_trusted_proxy() {
    let server = Server::start(&[
        ("MAX_CONNECTIONS_PER_IP", "1"),
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    let url = |id: &str| server.ws_url(&format!("/ws/chat/{id}"));
    let _a = Client::connect_with(&url("a"), &[("x-forwarded-for", "198.51.100.1")])
        .await
        .unwrap();
    let _b = Client::connect_with(&url("b"), &[("x-forwarded-for", "198.51.100.2")])
        .await
        .unwrap();
    assert_eq!(
        refusal(&url("c"), &[("x-forwarded-for", "198.51.100.1")])
            .await
            .0,
        429
    );
    // A client cannot escape its limit by prepending a spoofed address: the rightmost
    // untrusted entry is the one the proxy saw.
    assert_eq!(
        refusal(
            &url("d"),
            &[("x-forwarded-for", "192.0.2.77, 198.51.100.1")]
        )
        .await
        .0,
        429
    );
    // Entries added by trusted proxies are skipped.
    assert_eq!(
        refusal(&url("e"), &[("x-forwarded-for", "198.51.100.2, 127.0.0.5")])
            .await
            .0,
        429
    );
    // Without the header the proxy itself is the client.
    let _f = Client::connect(&url("f")).await.unwrap();
}

#[tokio::test]
async fn idle_connection_gets_goodbye_idle_timeout_and_1000() {
    let server = Server::start(&[("CONNECTION_TIMEOUT", "300")]).await;
    let (mut client, _) = Client::chat(&server, "idle").await;
    let (frame, seen) = client.recv_until_close(WAIT).await;
    let goodbye = seen.last().expect("goodbye");
    assert_eq!(goodbye["type"], "goodbye");
    assert_eq!(goodbye["reason"], "idle_timeout");
    assert_eq!(goodbye["reconnect"], false);
    assert_eq!(frame.expect("close frame").code, CloseCode::Normal);
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_disconnects_total{reason="idle_timeout"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
}

#[tokio::test]
async fn heartbeats_and_pings_keep_a_responsive_client_connected() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "500")]).await;
    let (mut client, hello) = Client::chat(&server, "beat").await;
    assert_eq!(hello["heartbeatIntervalMs"], 500);
    // tungstenite answers each ping while reading; three heartbeats span more than the two
    // silent intervals after which an unresponsive peer is dropped.
    let (mut heartbeats, mut pings) = (0, 0);
    while heartbeats < 3 {
        match client.next_frame(WAIT).await {
            Some(Ok(Message::Text(text))) => {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(message["type"], "heartbeat", "{message}");
                assert!(message["ts"].is_u64());
                heartbeats += 1;
            }
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("connection ended: {other:?}"),
        }
    }
    assert!(pings >= 2, "a ping with each heartbeat");
    let rtt_count = server
        .wait_metric("websocket_ping_rtt_seconds_count", |v| v >= 1.0)
        .await;
    assert!(rtt_count >= 1.0);
    assert!(
        server
            .metric(r#"websocket_messages_total{direction="out",type="heartbeat"}"#)
            .await
            .unwrap()
            >= 3.0
    );
    assert_eq!(
        server
            .metric(r#"websocket_disconnects_total{reason="dead_peer"}"#)
            .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_dropped_as_dead() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "100")]).await;
    let (client, _) = Client::chat(&server, "silent").await;
    // Not reading means tungstenite never sends a pong: the peer is silent.
    assert_eq!(
        server
            .wait_metric(r#"websocket_disconnects_total{reason="dead_peer"}"#, |v| v
                == 1.0)
            .await,
        1.0
    );
    assert_eq!(
        server
            .wait_metric("websocket_connections_active", |v| v == 0.0)
            .await,
        0.0
    );
    drop(client);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_as_slow_consumer() {
    let server = Server::start(&[
        ("OUTBOUND_QUEUE_BYTES", "1024"),
        ("RATE_LIMIT_MSGS_PER_SEC", "0"),
    ])
    .await;
    let (mut client, _) = Client::chat(&server, "slow").await;
    // Each 60 KB message is answered with 60 KB; without reading, the kernel buffers fill
    // (about 10 MB on loopback), then the outbox, and the server gives up on the client.
    let message = json!({"type": "message", "data": "x".repeat(60_000)}).to_string();
    for _ in 0..2000 {
        if client.send(Message::text(message.clone())).await.is_err() {
            break;
        }
        if server
            .metric(r#"websocket_disconnects_total{reason="slow_consumer"}"#)
            .await
            == Some(1.0)
        {
            break;
        }
    }
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_disconnects_total{reason="slow_consumer"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
    // What the client reads now: answers, then possibly the goodbye if it got through.
    let (frame, seen) = client.recv_until_close(WAIT).await;
    if let Some(goodbye) = seen.iter().find(|m| m["type"] == "goodbye") {
        assert_eq!(
            (goodbye["reason"].as_str(), goodbye["reconnect"].as_bool()),
            (Some("slow_consumer"), Some(true))
        );
        assert_eq!(frame.expect("close after goodbye").code, CloseCode::Again);
    }
    assert_eq!(
        server
            .wait_metric("websocket_connections_active", |v| v == 0.0)
            .await,
        0.0
    );
}
