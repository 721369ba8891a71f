//! Pipelined publishes over real sockets, with both engines (the Redis ones on a real
//! redis-server, skipped with the reason when the machine has none): a client that sends a
//! burst of publishes without waiting gets every one answered, in request order, with offsets
//! that grow in that order per channel, and every subscriber gets each publication once, in
//! order; requests of other kinds read between publishes are answered in request order too (a
//! subscribe after the publishes before it are done); a client that closes with publishes in
//! flight, or a drain that starts with some in flight, gets every answer before the close
//! frame (docs/protocol.md, "Pipelined publishes"). No timing is asserted.

mod common;

use std::time::Duration;

use common::chat::{offsets, publications, subscribe};
use common::redis_server::RedisServer;
use common::{Client, Server};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Without limits: the bursts below are not floods.
const UNLIMITED: [(&str, &str); 2] = [("RATE_LIMIT_MSGS_PER_SEC", "0"), ("FRAME_RATE_LIMIT", "0")];

const CHANNELS: [&str; 2] = ["room:a", "room:b"];

async fn memory_server() -> Server {
    Server::start(&UNLIMITED).await
}

async fn redis_server(redis: &RedisServer, vars: &[(&str, &str)]) -> Server {
    Server::builder()
        .env("BROKER", "redis")
        .env("REDIS_URL", redis.url())
        .envs(vars)
        .start()
        .await
}

fn publish_request(n: usize) -> Value {
    let channel = CHANNELS[n % 2];
    json!({"type":"publish","channel":channel,"id":format!("p{n}"),"data":{"n":n}})
}

/// The next `count` messages that are not publications (heartbeats skipped too).
async fn answers(client: &mut Client, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = client.recv_reply().await;
        if message["type"] != "publication" {
            seen.push(message);
        }
    }
    seen
}

/// 200 publishes sent without waiting, alternating between two channels, with two
/// subscribers of both.
async fn burst_is_answered_in_order(server: &Server) {
    let mut subscribers = Vec::new();
    for i in 0..2 {
        let (mut client, _) = Client::chat(server, &format!("sub{i}")).await;
        for channel in CHANNELS {
            subscribe(&mut client, channel).await;
        }
        subscribers.push(client);
    }
    let (mut publisher, _) = Client::chat(server, "publisher").await;
    const COUNT: usize = 200;
    for n in 0..COUNT {
        publisher.send_json(&publish_request(n)).await;
    }
    let answered = answers(&mut publisher, COUNT).await;
    let mut last = [0, 0];
    for (n, answer) in answered.iter().enumerate() {
        assert_eq!(answer["type"], "published", "{answer}");
        assert_eq!(answer["id"], format!("p{n}"), "answers in request order");
        let offset = answer["offset"].as_u64().unwrap();
        assert!(offset > last[n % 2], "offsets grow per channel: {answer}");
        last[n % 2] = offset;
    }
    println!("pipelined: {COUNT} publishes answered in order, last offsets {last:?}");
    for subscriber in &mut subscribers {
        let seen = publications(subscriber, COUNT).await;
        for (i, channel) in CHANNELS.iter().enumerate() {
            let mine: Vec<&Value> = seen.iter().filter(|p| p["channel"] == *channel).collect();
            let sent: Vec<u64> = mine
                .iter()
                .map(|p| p["data"]["n"].as_u64().unwrap())
                .collect();
            let expected: Vec<u64> = (0..COUNT as u64).filter(|n| *n as usize % 2 == i).collect();
            assert_eq!(sent, expected, "each publication once, in order");
            let owned: Vec<Value> = mine.into_iter().cloned().collect();
            assert_eq!(offsets(&owned), (1..=COUNT as u64 / 2).collect::<Vec<_>>());
        }
    }
}

/// Publishes, then a `message`, a `ping`, a frame that is not JSON and a `subscribe`, more
/// publishes, a `message` and one more publish, all sent without waiting: answered in
/// exactly that order; the subscribe is served after the publishes before it (its offset
/// counts them), and the subscriber gets the later ones.
async fn other_requests_keep_their_place(server: &Server) {
    let (mut client, _) = Client::chat(server, "mixed").await;
    // (frame, the answer's id, its type)
    let publish = |n: usize| {
        let request = json!({"type":"publish","channel":"room:m","id":format!("p{n}"),"data":n});
        (request.to_string(), format!("p{n}"), "published")
    };
    let other = |request: Value, kind| {
        let id = request["id"].as_str().unwrap().to_owned();
        (request.to_string(), id, kind)
    };
    let mut requests: Vec<(String, String, &str)> = (0..20).map(publish).collect();
    requests.push(other(
        json!({"type":"message","id":"m1","data":"x"}),
        "message_response",
    ));
    requests.push(other(json!({"type":"ping","id":"g1"}), "pong"));
    requests.push(("not json".into(), String::new(), "error"));
    requests.push(other(
        json!({"type":"subscribe","channel":"room:m","id":"s1"}),
        "subscribed",
    ));
    requests.extend((20..40).map(publish));
    requests.push(other(
        json!({"type":"message","id":"m2","data":"y"}),
        "message_response",
    ));
    requests.push(publish(40));
    for (frame, _, _) in &requests {
        client.send_text(frame).await;
    }
    let expected: Vec<(String, &str)> = requests
        .into_iter()
        .map(|(_, id, kind)| (id, kind))
        .collect();

    let mut seen_publications = Vec::new();
    for (id, kind) in &expected {
        let answer = loop {
            let message = client.recv_reply().await;
            if message["type"] != "publication" {
                break message;
            }
            seen_publications.push(message);
        };
        assert_eq!(answer["type"], *kind, "in request order: {answer}");
        assert_eq!(answer["id"].as_str().unwrap_or(""), id, "{answer}");
        if *kind == "subscribed" {
            assert_eq!(answer["offset"], 20, "served after the publishes before it");
        }
    }
    let missing = 21 - seen_publications.len();
    seen_publications.extend(publications(&mut client, missing).await);
    assert_eq!(
        offsets(&seen_publications),
        (21..=41).collect::<Vec<_>>(),
        "the subscriber gets the publishes after its subscribe, once, in order"
    );
}

/// 50 publishes, then the client's close frame at once: every publish is answered before
/// the server's close.
async fn close_waits_for_the_answers(server: &Server) {
    let (mut client, _) = Client::chat(server, "closer").await;
    for n in 0..50 {
        client.send_json(&publish_request(n)).await;
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    client.send(Message::Close(Some(close))).await.unwrap();
    let (close, seen) = client.recv_until_close(Duration::from_secs(10)).await;
    let code = close.map(|frame| u16::from(frame.code));
    assert_eq!(code, Some(1000), "the server answers the close");
    let ids: Vec<&str> = seen
        .iter()
        .filter(|m| m["type"] != "heartbeat")
        .map(|m| m["id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (0..50).map(|n| format!("p{n}")).collect();
    assert_eq!(
        ids, expected,
        "every publish answered, in order, before the close"
    );
}

/// A drain with publishes in flight: 100 publishes, then SIGTERM; the client closes on its
/// `goodbye` as docs/protocol.md asks. Every publish is answered, in order, before the
/// server's close; those read before the drain began, before the goodbye.
async fn a_drain_answers_every_publish(server: &Server) {
    let (mut client, _) = Client::chat(server, "drained").await;
    for n in 0..100 {
        client.send_json(&publish_request(n)).await;
    }
    server.signal("TERM");
    let mut seen = Vec::new();
    loop {
        let message = client.recv_reply().await;
        if message["type"] == "goodbye" {
            break;
        }
        seen.push(message);
    }
    let before_goodbye = seen.len();
    client.send(Message::Close(None)).await.unwrap();
    let (_, after) = client.recv_until_close(Duration::from_secs(10)).await;
    seen.extend(after.into_iter().filter(|m| m["type"] != "heartbeat"));
    let ids: Vec<&str> = seen
        .iter()
        .map(|m| m["id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (0..100).map(|n| format!("p{n}")).collect();
    assert_eq!(ids, expected, "every publish answered, in order: {seen:?}");
    println!("drain: {before_goodbye} of 100 answers before the goodbye, the rest after it");
}

/// 18 publishes at `RATE_LIMIT_MSGS_PER_SEC=10`: each costs a token when read, in flight or
/// not, so some are refused `rate_limited`; every one is answered, in request order.
async fn rate_limited_publishes_are_refused_in_place(server: &Server) {
    let (mut client, _) = Client::chat(server, "eager").await;
    for n in 0..18 {
        client.send_json(&publish_request(n)).await;
    }
    let answered = answers(&mut client, 18).await;
    let published: Vec<u64> = answered
        .iter()
        .filter(|a| a["type"] == "published")
        .map(|a| a["id"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    let limited = answered
        .iter()
        .filter(|a| a["code"] == "rate_limited")
        .count();
    assert_eq!(published.len() + limited, 18, "{answered:?}");
    assert!(
        limited > 0 && published.windows(2).all(|w| w[0] < w[1]),
        "{answered:?}"
    );
    println!(
        "rate limit: {} published, {limited} refused rate_limited",
        published.len()
    );
}

/// A server on a fresh redis-server, or `None` after saying why the test is skipped.
async fn on_redis(test: &str) -> Option<(RedisServer, Server)> {
    on_redis_with(test, &UNLIMITED).await
}

async fn on_redis_with(test: &str, vars: &[(&str, &str)]) -> Option<(RedisServer, Server)> {
    let redis = RedisServer::start_or_skip(test)?;
    let server = redis_server(&redis, vars).await;
    Some((redis, server))
}

/// For each scenario, a test with the in-memory engine and one with the Redis engine
/// (skipped, saying why, without redis-server).
macro_rules! on_both_engines {
    ($($scenario:ident => $memory:ident, $redis:ident;)*) => {$(
        #[tokio::test]
        async fn $memory() {
            $scenario(&memory_server().await).await;
        }

        #[tokio::test]
        async fn $redis() {
            if let Some((_redis, server)) = on_redis(stringify!($redis)).await {
                $scenario(&server).await;
            }
        }
    )*};
}

on_both_engines! {
    burst_is_answered_in_order =>
        a_burst_of_publishes_is_answered_in_order_memory,
        a_burst_of_publishes_is_answered_in_order_redis;
    other_requests_keep_their_place =>
        requests_between_publishes_are_answered_in_request_order_memory,
        requests_between_publishes_are_answered_in_request_order_redis;
    close_waits_for_the_answers =>
        a_close_with_publishes_in_flight_comes_after_their_answers_memory,
        a_close_with_publishes_in_flight_comes_after_their_answers_redis;
    a_drain_answers_every_publish =>
        a_drain_answers_every_publish_in_flight_memory,
        a_drain_answers_every_publish_in_flight_redis;
}

const LIMITED: [(&str, &str); 1] = [("RATE_LIMIT_MSGS_PER_SEC", "10")];

#[tokio::test]
async fn publishes_count_toward_the_rate_limit_when_read_memory() {
    rate_limited_publishes_are_refused_in_place(&Server::start(&LIMITED).await).await;
}

#[tokio::test]
async fn publishes_count_toward_the_rate_limit_when_read_redis() {
    let test = "publishes_count_toward_the_rate_limit_when_read_redis";
    if let Some((_redis, server)) = on_redis_with(test, &LIMITED).await {
        rate_limited_publishes_are_refused_in_place(&server).await;
    }
}

#[tokio::test]
async fn a_publish_after_script_flush_is_refused_or_published_never_reordered() {
    let test = "a_publish_after_script_flush_is_refused_or_published_never_reordered";
    let Some((redis, server)) = on_redis(test).await else {
        return;
    };
    let (mut client, _) = Client::chat(&server, "flusher").await;
    for n in 0..10 {
        client.send_json(&publish_request(n)).await;
    }
    let before = answers(&mut client, 10).await;
    assert!(
        before.iter().all(|a| a["type"] == "published"),
        "{before:?}"
    );
    redis.cli(&["SCRIPT", "FLUSH"]);
    for n in 10..60 {
        client.send_json(&publish_request(n)).await;
    }
    let after = answers(&mut client, 50).await;
    let mut last = [0, 0];
    let mut refused = 0;
    for (answer, n) in after.iter().zip(10..) {
        assert_eq!(answer["id"], format!("p{n}"), "in request order: {answer}");
        match answer["type"].as_str() {
            Some("published") => {
                let offset = answer["offset"].as_u64().unwrap();
                assert!(offset > last[n % 2], "offsets grow per channel: {answer}");
                last[n % 2] = offset;
            }
            _ => {
                assert_eq!(answer["code"], "broker_unavailable", "{answer}");
                refused += 1;
            }
        }
    }
    println!(
        "after SCRIPT FLUSH: {} published, {refused} refused",
        50 - refused
    );
    assert!(
        refused < 50,
        "publishing goes on once the script is sent again"
    );
}
