//! Channel requests (protocol v1.1) as the tests send them: ask and wait for the answer,
//! subscribe, publish, read publications.

use serde_json::{Value, json};

use super::Client;

/// Reads until a message whose `id` is `id` (or, for `None`, one that is not a
/// `publication` or `heartbeat`); returns it and the publications read on the way.
pub async fn reply_to(client: &mut Client, id: Option<&str>) -> (Value, Vec<Value>) {
    let mut publications = Vec::new();
    loop {
        let message = client.recv_reply().await;
        let answers = match id {
            Some(id) => message["id"] == id,
            None => message["type"] != "publication",
        };
        if answers {
            return (message, publications);
        }
        assert_eq!(message["type"], "publication", "unexpected {message}");
        publications.push(message);
    }
}

/// Sends `request` and returns its answer (`id` required in `request`).
pub async fn ask(client: &mut Client, request: Value) -> Value {
    client.send_json(&request).await;
    let id = request["id"].as_str().expect("an id").to_owned();
    reply_to(client, Some(&id)).await.0
}

pub async fn subscribe(client: &mut Client, channel: &str) -> Value {
    let answer = ask(
        client,
        json!({"type":"subscribe","channel":channel,"id":"s"}),
    )
    .await;
    assert_eq!(answer["type"], "subscribed", "{answer}");
    answer
}

pub async fn publish(client: &mut Client, channel: &str, data: Value) -> Value {
    let answer = ask(
        client,
        json!({"type":"publish","channel":channel,"id":"p","data":data}),
    )
    .await;
    assert_eq!(answer["type"], "published", "{answer}");
    answer
}

/// Publishes to a channel `client` is subscribed to; returns the `publication` it gets back,
/// which may come before or after `published` (docs/protocol.md: with `BROKER=redis` it comes
/// through Redis while the answer is on its way).
pub async fn publish_own(client: &mut Client, channel: &str, data: Value) -> Value {
    let request = json!({"type":"publish","channel":channel,"id":"p","data":data});
    client.send_json(&request).await;
    let (answer, mut seen) = reply_to(client, Some("p")).await;
    assert_eq!(answer["type"], "published", "{answer}");
    if seen.is_empty() {
        seen = publications(client, 1).await;
    }
    seen.remove(0)
}

/// The next `count` publications (skipping heartbeats).
pub async fn publications(client: &mut Client, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = client.recv_reply().await;
        assert_eq!(message["type"], "publication", "{message}");
        seen.push(message);
    }
    seen
}

pub fn offsets(publications: &[Value]) -> Vec<u64> {
    publications
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}
