//! Protocol v1 over a real socket: every client message type, every error code, every goodbye
//! a client can provoke with its messages, and the close codes that follow.

mod common;

use common::{Client, Server, WAIT};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn connection_established_then_message_and_ping_answers() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "25000")]).await;
    let (mut client, hello) = Client::chat(&server, "alice").await;
    assert_eq!(hello["connectionId"], "alice");
    assert_eq!(hello["serverId"], "test");
    assert_eq!(hello["heartbeatIntervalMs"], 25000);
    assert!(hello["ts"].as_u64().unwrap() > 1_700_000_000_000);

    // `data` comes back byte for byte: key order, number spelling and escapes untouched.
    client
        .send_text(r#"{"type":"message","id":"1","data":{"z":1,"a":[1.0,2e3],"s":"é\u0041"}}"#)
        .await;
    let raw = client.recv_text().await;
    assert!(
        raw.starts_with(r#"{"type":"message_response","id":"1","data":{"z":1,"a":[1.0,2e3],"s":"é\u0041"},"ts":"#),
        "{raw}"
    );

    client.send_json(&json!({"type": "ping", "id": "p"})).await;
    let pong = client.recv_reply().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("p"))
    );
    assert!(pong["ts"].is_u64());

    client.send_json(&json!({"type": "ping"})).await;
    let pong = client.recv_reply().await;
    assert!(pong.get("id").is_none(), "{pong}");

    client
        .send_json(&json!({"type": "message", "extra": true}))
        .await;
    let answer = client.recv_reply().await;
    assert_eq!(answer["data"], Value::Null);
    assert!(answer.get("id").is_none());

    client.send(Message::Close(None)).await.unwrap();
    let (frame, _) = client.recv_until_close(WAIT).await;
    assert!(frame.is_none() || frame.unwrap().code == CloseCode::Normal);
}

/// Sends `text` and returns the `error` it is answered with.
async fn error_for(client: &mut Client, text: &str) -> Value {
    client.send_text(text).await;
    let reply = client.recv_reply().await;
    assert_eq!(reply["type"], "error", "{text} -> {reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(reply["ts"].is_u64());
    reply
}

#[tokio::test]
async fn every_error_code_and_the_connection_survives_them() {
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "1024")]).await;
    let (mut client, _) = Client::chat(&server, "errors").await;
    let cases = [
        ("{not json", "invalid_json", None),
        ("[1,2]", "invalid_message", None),
        (r#""a string""#, "invalid_message", None),
        (r#"{"id":"5"}"#, "invalid_message", Some("5")),
        (r#"{"type":7,"id":"6"}"#, "invalid_message", Some("6")),
        (r#"{"type":"ping","id":42}"#, "invalid_message", None),
        (
            r#"{"type":"ping","type":"message"}"#,
            "invalid_message",
            None,
        ),
        (r#"{"type":"shout","id":"7"}"#, "unknown_type", Some("7")),
    ];
    for (text, code, id) in cases {
        let reply = error_for(&mut client, text).await;
        assert_eq!(reply["code"], code, "{text}");
        assert_eq!(reply["id"].as_str(), id, "{text}");
    }
    let long_id = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(129));
    assert_eq!(
        error_for(&mut client, &long_id).await["code"],
        "invalid_message"
    );
    let unknown = error_for(&mut client, r#"{"type":"shout"}"#).await;
    assert_eq!(unknown["message"], "unknown message type 'shout'");

    // Over MAX_MESSAGE_BYTES but within the hard limit (4x): an error, not a close.
    let big = json!({"type": "message", "data": "x".repeat(2000)}).to_string();
    assert_eq!(
        error_for(&mut client, &big).await["code"],
        "message_too_large"
    );

    client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let reply = client.recv_reply().await;
    assert_eq!(reply["code"], "unsupported_frame");

    // Still serving after all of that.
    client
        .send_json(&json!({"type": "ping", "id": "alive"}))
        .await;
    assert_eq!(client.recv_reply().await["type"], "pong");

    let metrics = server.metrics_text().await;
    for (code, count) in [
        ("invalid_json", 1),
        ("invalid_message", 7),
        ("unknown_type", 2),
        ("message_too_large", 1),
        ("unsupported_frame", 1),
    ] {
        let series = format!("websocket_errors_total{{code=\"{code}\"}}");
        assert_eq!(
            common::parse_metric(&metrics, &series),
            Some(count as f64),
            "{series}"
        );
    }
    assert_eq!(
        common::parse_metric(
            &metrics,
            r#"websocket_messages_total{direction="in",type="invalid"}"#
        ),
        Some(12.0)
    );
}

#[tokio::test]
async fn a_frame_far_over_the_limit_gets_goodbye_and_1009() {
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "1024")]).await;
    let (mut client, _) = Client::chat(&server, "huge").await;
    // Over 4 x MAX_MESSAGE_BYTES: not even read.
    let huge = json!({"type": "message", "data": "x".repeat(5000)}).to_string();
    client.send_text(&huge).await;
    let (frame, seen) = client.recv_until_close(WAIT).await;
    let goodbye = seen.last().expect("a goodbye before the close");
    assert_eq!(
        (goodbye["type"].as_str(), goodbye["reason"].as_str()),
        (Some("goodbye"), Some("message_too_large"))
    );
    assert_eq!(goodbye["reconnect"], false);
    assert_eq!(frame.expect("a close frame").code, CloseCode::Size);
    let disconnects = server
        .wait_metric(
            r#"websocket_disconnects_total{reason="message_too_large"}"#,
            |v| v == 1.0,
        )
        .await;
    assert_eq!(disconnects, 1.0);
}

#[tokio::test]
async fn flooding_gets_rate_limited_then_policy_violation() {
    let server = Server::start(&[("RATE_LIMIT_MSGS_PER_SEC", "10")]).await;
    let (mut client, _) = Client::chat(&server, "flood").await;
    // A burst of 10 is allowed, then `rate_limited`; more than max(rate, 10) = 10 refusals
    // within 10 s is abuse. 200 messages reach all three stages however slowly they go out.
    for i in 0..200 {
        if client
            .send(Message::text(
                json!({"type": "ping", "id": i.to_string()}).to_string(),
            ))
            .await
            .is_err()
        {
            break; // closed for abuse while still sending
        }
    }
    let (frame, seen) = client.recv_until_close(WAIT).await;
    let types: Vec<&str> = seen.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert!(
        types[..10].iter().all(|t| *t == "pong"),
        "the burst is served: {types:?}"
    );
    let limited = seen.iter().filter(|m| m["code"] == "rate_limited").count();
    assert!(limited >= 10, "{types:?}");
    let goodbye = seen.last().unwrap();
    assert_eq!(
        (goodbye["type"].as_str(), goodbye["reason"].as_str()),
        (Some("goodbye"), Some("policy_violation"))
    );
    assert_eq!(frame.expect("close frame").code, CloseCode::Policy);
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_disconnects_total{reason="policy_violation"}"#,
                |v| v == 1.0
            )
            .await,
        1.0
    );
}

#[tokio::test]
async fn same_connection_id_replaces_the_older_connection() {
    let server = Server::start(&[]).await;
    let (mut first, _) = Client::chat(&server, "dup").await;
    let (mut second, _) = Client::chat(&server, "dup").await;
    let (frame, seen) = first.recv_until_close(WAIT).await;
    let goodbye = seen.last().expect("goodbye");
    assert_eq!(
        (goodbye["reason"].as_str(), goodbye["reconnect"].as_bool()),
        (Some("replaced"), Some(true))
    );
    assert_eq!(frame.expect("close frame").code, CloseCode::Normal);
    // The newer connection is unaffected.
    second.send_json(&json!({"type": "ping"})).await;
    assert_eq!(second.recv_reply().await["type"], "pong");
    assert_eq!(
        server
            .wait_metric(r#"websocket_disconnects_total{reason="replaced"}"#, |v| v
                == 1.0)
            .await,
        1.0
    );
    // Another id is a separate connection.
    let (mut other, _) = Client::chat(&server, "dup2").await;
    other.send_json(&json!({"type": "ping"})).await;
    assert_eq!(other.recv_reply().await["type"], "pong");
}
