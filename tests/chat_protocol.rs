//! Protocol v1 over a real socket: every client message type, every error code, and the
//! answers' fields.

mod common;

use common::{Client, Server};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn connection_established_then_message_and_ping_answers() {
    let server = Server::start(&[("HEARTBEAT_INTERVAL", "25000")]).await;
    let (mut client, hello) = Client::chat(&server, "alice").await;
    assert_eq!(hello["connectionId"], "alice");
    assert_eq!(hello["serverId"], "test");
    assert_eq!(hello["heartbeatIntervalMs"], 25000);
    assert!(hello["ts"].as_u64().unwrap() > 1_700_000_000_000);

    client
        .send_text(r#"{"type":"message","id":"1","data":{"z":1,"a":[1.0,2e3],"s":"é"}}"#)
        .await;
    let raw = client.recv_text().await;
    assert!(
        raw.starts_with(
            r#"{"type":"message_response","id":"1","data":{"z":1,"a":[1.0,2e3],"s":"é"},"ts":"#
        ),
        "{raw}"
    );

    client.send_json(&json!({"type": "ping", "id": "p"})).await;
    let pong = client.recv_reply().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("p"))
    );

    client.send_json(&json!({"type": "ping"})).await;
    let pong = client.recv_reply().await;
    assert!(pong.get("id").is_none());

    client.send_json(&json!({"type": "message"})).await;
    assert_eq!(client.recv_reply().await["data"], json!(null));
    let _ = client.send(Message::Close(None)).await;
}
