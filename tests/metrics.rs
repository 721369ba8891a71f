//! The metrics listener over real sockets: every documented series exists at start-up, values
//! move as connections come and go and messages flow, the public port never serves metrics,
//! and `promtool check metrics` (when installed) finds nothing.

mod common;

use common::{Client, Server, WAIT, parse_metric};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const REJECT_REASONS: [&str; 7] = [
    "at_capacity",
    "ip_limit",
    "draining",
    "forbidden_origin",
    "invalid_connection_id",
    "unauthorized",
    "connection_id_in_use",
];
const HTTP_REFUSED_REASONS: [&str; 5] = [
    "pending_limit",
    "pending_ip_limit",
    "header_too_large",
    "header_timeout",
    "bad_handshake",
];
const ERROR_CODES: [&str; 7] = [
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "message_too_large",
    "rate_limited",
    "unsupported_frame",
    "websocket_protocol",
];
const DISCONNECT_REASONS: [&str; 12] = [
    "client_close",
    "server_shutdown",
    "idle_timeout",
    "replaced",
    "policy_violation",
    "message_too_large",
    "slow_consumer",
    "unauthorized",
    "token_expired",
    "connection_id_in_use",
    "dead_peer",
    "transport_error",
];

#[tokio::test]
async fn every_series_exists_at_zero_from_start_up() {
    let server = Server::start(&[("MAX_CONNECTIONS", "123")]).await;
    // The readiness probe's connection may take a moment to be seen closed.
    server
        .wait_metric("websocket_http_pending", |v| v == 0.0)
        .await;
    let text = server.metrics_text().await;
    let value =
        |series: &str| parse_metric(&text, series).unwrap_or_else(|| panic!("missing {series}"));
    assert_eq!(value("websocket_connections_active"), 0.0);
    assert_eq!(value("websocket_connections_total"), 0.0);
    assert_eq!(value("websocket_connections_limit"), 123.0);
    assert_eq!(value("websocket_draining"), 0.0);
    for reason in REJECT_REASONS {
        assert_eq!(
            value(&format!(
                "websocket_connections_rejected_total{{reason=\"{reason}\"}}"
            )),
            0.0
        );
    }
    for code in ERROR_CODES {
        assert_eq!(
            value(&format!("websocket_errors_total{{code=\"{code}\"}}")),
            0.0
        );
    }
    assert_eq!(value("websocket_http_pending"), 0.0);
    for reason in HTTP_REFUSED_REASONS {
        assert_eq!(
            value(&format!(
                "websocket_http_refused_total{{reason=\"{reason}\"}}"
            )),
            0.0
        );
    }
    for kind in ["fd_limit", "other"] {
        assert_eq!(
            value(&format!("websocket_accept_errors_total{{kind=\"{kind}\"}}")),
            0.0
        );
    }
    for reason in DISCONNECT_REASONS {
        assert_eq!(
            value(&format!(
                "websocket_disconnects_total{{reason=\"{reason}\"}}"
            )),
            0.0
        );
    }
    for kind in ["message", "ping", "authenticate", "invalid"] {
        assert_eq!(
            value(&format!(
                "websocket_messages_total{{direction=\"in\",type=\"{kind}\"}}"
            )),
            0.0
        );
    }
    for kind in [
        "connection_established",
        "heartbeat",
        "message_response",
        "pong",
        "error",
        "goodbye",
    ] {
        assert_eq!(
            value(&format!(
                "websocket_messages_total{{direction=\"out\",type=\"{kind}\"}}"
            )),
            0.0
        );
    }
    for histogram in [
        "websocket_message_latency_seconds",
        "websocket_connection_duration_seconds",
        "websocket_ping_rtt_seconds",
    ] {
        assert_eq!(value(&format!("{histogram}_count")), 0.0);
        assert_eq!(value(&format!("{histogram}_bucket{{le=\"+Inf\"}}")), 0.0);
    }
    assert_eq!(
        value(&format!(
            "websocket_build_info{{server_id=\"test\",version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(value(process) >= 0.0, "{process}");
    }
}

#[tokio::test]
async fn values_move_as_connections_come_and_go() {
    let server = Server::start(&[]).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::chat(&server, &format!("m{i}")).await.0);
    }
    assert_eq!(
        server.metric("websocket_connections_active").await,
        Some(3.0)
    );
    assert_eq!(
        server.metric("websocket_connections_total").await,
        Some(3.0)
    );

    let client = &mut clients[0];
    client
        .send_json(&json!({"type": "message", "id": "a", "data": 1}))
        .await;
    client.recv_reply().await;
    client.send_json(&json!({"type": "ping"})).await;
    client.recv_reply().await;
    let text = server.metrics_text().await;
    assert_eq!(
        parse_metric(
            &text,
            r#"websocket_messages_total{direction="in",type="message"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        parse_metric(
            &text,
            r#"websocket_messages_total{direction="in",type="ping"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        parse_metric(
            &text,
            r#"websocket_messages_total{direction="out",type="message_response"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        parse_metric(
            &text,
            r#"websocket_messages_total{direction="out",type="pong"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        parse_metric(
            &text,
            r#"websocket_messages_total{direction="out",type="connection_established"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        parse_metric(&text, "websocket_message_latency_seconds_count"),
        Some(2.0)
    );

    let mut closing = clients.remove(0);
    closing.send(Message::Close(None)).await.unwrap();
    closing.recv_until_close(WAIT).await;
    assert_eq!(
        server
            .wait_metric("websocket_connections_active", |v| v == 2.0)
            .await,
        2.0
    );
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_disconnects_total{reason="client_close"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("websocket_connection_duration_seconds_count")
            .await,
        Some(1.0)
    );
    // A dropped TCP connection without a close frame is a transport error.
    drop(clients.remove(0));
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_disconnects_total{reason="transport_error"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
    assert_eq!(
        server
            .wait_metric("websocket_connections_active", |v| v == 1.0)
            .await,
        1.0
    );
    assert_eq!(
        server.metric("websocket_connections_total").await,
        Some(3.0),
        "a counter never goes down"
    );
    assert_eq!(server.get_json("/health").await.1["connections"], 1);
}

#[tokio::test]
async fn metrics_are_not_on_the_public_port() {
    let server = Server::start(&[]).await;
    assert_eq!(server.get("/metrics").await.status(), 404);
    let response = server
        .http
        .get(format!("http://127.0.0.1:{}/metrics", server.metrics_port))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
}

#[tokio::test]
async fn promtool_finds_nothing() {
    let Ok(promtool) = which("promtool") else {
        common::skip::skip(
            "promtool_finds_nothing",
            "promtool is not installed (Debian package `prometheus`; CI installs it)",
        );
        return;
    };
    let server = Server::start(&[]).await;
    let (mut client, _) = Client::chat(&server, "p").await;
    client.send_json(&json!({"type": "ping"})).await;
    client.recv_reply().await;
    let text = server.metrics_text().await;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}
