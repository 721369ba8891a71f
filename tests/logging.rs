//! Logs on stdout (no journald here): one JSON object per line with the structured fields of
//! every connection event (at debug), the connection summary at info (at shutdown here), and
//! never a message payload.

mod common;

use common::{Client, Server, WAIT};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "payload-marker-7f3a9c";

#[tokio::test]
async fn json_lines_with_connection_fields_and_no_payloads() {
    let server = Server::start(&[
        ("SERVER_ID", "logs-1"),
        ("LOG_LEVEL", "info,concurrent_socket=debug"),
    ])
    .await;
    let (mut client, _) = Client::chat(&server, "logged").await;
    client
        .send_json(&json!({"type": "message", "id": SECRET, "data": SECRET}))
        .await;
    client.recv_reply().await;
    client.send_text(&format!("{{not json {SECRET}")).await;
    client.recv_reply().await;
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    client.send(Message::Close(Some(bye))).await.unwrap();
    client.recv_until_close(WAIT).await;

    let closed = |output: &str| output.lines().any(|l| l.contains("connection closed"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !closed(&server.output()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let output = server.output();
    let records: Vec<Value> = output
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    let find = |message: &str| {
        records
            .iter()
            .find(|r| r["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} record in:\n{output}"))
    };
    let opened = find("connection opened");
    assert_eq!(
        (
            opened["connection_id"].as_str(),
            opened["server_id"].as_str()
        ),
        (Some("logged"), Some("logs-1"))
    );
    assert_eq!(opened["peer"], "127.0.0.1");
    assert_eq!(opened["level"], "DEBUG", "one line per connection is debug");
    let closed = find("connection closed");
    assert_eq!(closed["connection_id"], "logged");
    assert_eq!(closed["reason"], "client_close");
    assert_eq!(closed["close_code"], 1000);
    assert!(closed["duration_ms"].is_u64());
    assert!(
        !output.contains(SECRET),
        "a payload reached the logs:\n{output}"
    );
}

#[tokio::test]
async fn connections_are_summarised_at_info_at_shutdown() {
    let mut server = Server::start(&[]).await;
    for id in ["s1", "s2", "s3"] {
        let (mut client, _) = Client::chat(&server, id).await;
        client.send(Message::Close(None)).await.unwrap();
        client.recv_until_close(WAIT).await;
    }
    let _refused = common::refusal(&server.ws_url("/ws/chat/s4"), &[("origin", "null")]).await;
    server.signal("TERM");
    assert!(server.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    let output = server.output();
    assert!(
        !output.contains("connection opened"),
        "per-connection lines are debug:\n{output}"
    );
    let summary: Value = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|r| r["message"] == "connections since the last summary")
        .unwrap_or_else(|| panic!("no summary in:\n{output}"));
    assert_eq!(summary["level"], "INFO");
    assert_eq!(
        (&summary["opened"], &summary["closed"], &summary["refused"]),
        (&json!(3), &json!(3), &json!(1)),
        "{summary}"
    );
}
