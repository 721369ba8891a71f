//! `BROKER=redis` over real sockets, on a real redis-server (skipped with the reason when the
//! machine has none; a failure under `REQUIRE_ALL_TESTS=1`): two server processes on one
//! Redis are one chat; while Redis is down publishes and subscribes are refused with
//! `broker_unavailable` (never acknowledged) and v1 keeps working; a lost pub/sub connection
//! leaves no gap; a gap the history cannot fill ends the subscription with
//! `insufficient_state`, and the client recovers.

mod common;

use common::chat::{ask, offsets, publications, publish, publish_own, reply_to, subscribe};
use common::redis_server::RedisServer;
use common::{Client, Server};
use serde_json::{Value, json};

async fn server_on(redis: &RedisServer, vars: &[(&str, &str)]) -> Server {
    Server::builder()
        .env("BROKER", "redis")
        .env("REDIS_URL", redis.url())
        .env("REDIS_POSITION_CHECK_INTERVAL", "300")
        .envs(vars)
        .start()
        .await
}

/// `check-config` with these variables: (success, stdout + stderr).
async fn check_config(vars: &[(&str, &str)]) -> (bool, String) {
    let output = tokio::process::Command::new(common::server_binary())
        .arg("check-config")
        .envs(vars.iter().copied())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn check_config_shows_the_redis_settings_without_the_password() {
    let url = ("REDIS_URL", "rediss://app:s3cret@cache.example:6380");
    let (ok, text) = check_config(&[("BROKER", "redis"), url]).await;
    assert!(ok, "{text}");
    assert!(text.contains("BROKER=redis\n"), "{text}");
    assert!(
        text.contains("REDIS_URL=rediss://app:***@cache.example:6380\n"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    let bad = [("BROKER", "redis"), ("REDIS_URL", "http://x:s3cret@h")];
    let (ok, text) = check_config(&bad).await;
    assert!(
        !ok && text.contains("REDIS_URL") && !text.contains("s3cret"),
        "{text}"
    );
}

#[tokio::test]
async fn two_servers_on_one_redis_deliver_each_others_publications_in_order() {
    let test = "two_servers_on_one_redis_deliver_each_others_publications_in_order";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let (blue, green) = (server_on(&redis, &[]).await, server_on(&redis, &[]).await);
    let (mut on_blue, _) = Client::chat(&blue, "reader-blue").await;
    let (mut on_green, _) = Client::chat(&green, "reader-green").await;
    subscribe(&mut on_blue, "room:x").await;
    subscribe(&mut on_green, "room:x").await;
    let (mut alice, _) = Client::chat(&blue, "alice").await;
    let (mut bob, _) = Client::chat(&green, "bob").await;
    for i in 0..20 {
        let alice_said = publish(&mut alice, "room:x", json!({"n": 2 * i})).await;
        let bob_said = publish(&mut bob, "room:x", json!({"n": 2 * i + 1})).await;
        assert_eq!(alice_said["offset"], 2 * i + 1);
        assert_eq!(bob_said["offset"], 2 * i + 2);
        assert_eq!(
            alice_said["epoch"], bob_said["epoch"],
            "one channel, one epoch"
        );
    }
    for reader in [&mut on_blue, &mut on_green] {
        let seen = publications(reader, 40).await;
        assert_eq!(offsets(&seen), (1..=40).collect::<Vec<u64>>());
        let from: Vec<&str> = seen.iter().map(|p| p["from"].as_str().unwrap()).collect();
        assert_eq!(&from[..2], ["alice", "bob"]);
        assert!(seen.iter().enumerate().all(|(i, p)| p["data"]["n"] == i));
    }
}

/// Asks and expects `error` `broker_unavailable`, with nothing acknowledged.
async fn refused_unavailable(client: &mut Client, request: Value) {
    let answer = ask(client, request).await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("broker_unavailable")),
        "{answer}"
    );
}

#[tokio::test]
async fn while_redis_is_down_requests_get_broker_unavailable_and_v1_goes_on() {
    let test = "while_redis_is_down_requests_get_broker_unavailable_and_v1_goes_on";
    let Some(mut redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let server = server_on(&redis, &[("REDIS_TIMEOUT", "500")]).await;
    server
        .wait_metric("websocket_broker_up", |v| v == 1.0)
        .await;
    let (mut alice, _) = Client::chat(&server, "alice").await;
    subscribe(&mut alice, "room:down").await;
    let own = publish_own(&mut alice, "room:down", json!("before")).await;
    assert_eq!(own["offset"], 1);

    redis.kill();
    let publish_request = json!({"type":"publish","channel":"room:down","id":"p","data":"lost?"});
    refused_unavailable(&mut alice, publish_request.clone()).await;
    let subscribe_request = json!({"type":"subscribe","channel":"room:other","id":"s"});
    refused_unavailable(&mut alice, subscribe_request).await;
    let echo = ask(&mut alice, json!({"type":"ping","id":"ping"})).await;
    assert_eq!(echo["type"], "pong", "v1 is not the broker's");
    assert_eq!(server.get("/ready").await.status(), 200);
    server
        .wait_metric("websocket_broker_up", |v| v == 0.0)
        .await;
    let refused = "websocket_publications_total{result=\"refused\"}";
    assert!(server.metric(refused).await.unwrap() >= 1.0);
    assert!(
        server
            .metric("websocket_broker_errors_total{operation=\"publish\"}")
            .await
            .unwrap()
            >= 1.0
    );

    redis.run();
    server
        .wait_metric("websocket_broker_up", |v| v == 1.0)
        .await;
    // Redis came back empty (no persistence): a new epoch, so the subscription that may have
    // missed publications is ended rather than left with a silent gap.
    let (ended, _) = reply_to(&mut alice, None).await;
    assert_eq!(ended["type"], "unsubscribed", "{ended}");
    assert_eq!(ended["reason"], "insufficient_state");
    let back = ask(&mut alice, publish_request).await;
    assert_eq!(back["type"], "published", "{back}");
    assert_eq!(back["offset"], 1, "the new epoch counts from 1");
}

#[tokio::test]
async fn a_killed_pubsub_connection_is_made_again_and_nothing_is_missed() {
    let test = "a_killed_pubsub_connection_is_made_again_and_nothing_is_missed";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let (reading, writing) = (server_on(&redis, &[]).await, server_on(&redis, &[]).await);
    let (mut reader, _) = Client::chat(&reading, "reader").await;
    subscribe(&mut reader, "room:k").await;
    let (mut writer, _) = Client::chat(&writing, "writer").await;
    publish(&mut writer, "room:k", json!(1)).await;
    assert_eq!(offsets(&publications(&mut reader, 1).await), [1]);
    // Both servers' pub/sub connections go; the writer's publishes still go through.
    redis.cli(&["client", "kill", "type", "pubsub"]);
    for n in 2..=6 {
        publish(&mut writer, "room:k", json!(n)).await;
    }
    let seen = publications(&mut reader, 5).await;
    assert_eq!(offsets(&seen), [2, 3, 4, 5, 6], "no gap, no duplicate");
    reading
        .wait_metric("websocket_broker_pubsub_reconnects_total", |v| v >= 1.0)
        .await;
    publish(&mut writer, "room:k", json!(7)).await;
    assert_eq!(offsets(&publications(&mut reader, 1).await), [7]);
}

#[tokio::test]
async fn a_gap_the_history_cannot_fill_ends_the_subscription_with_insufficient_state() {
    let test = "a_gap_the_history_cannot_fill_ends_the_subscription_with_insufficient_state";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let server = server_on(&redis, &[("HISTORY_SIZE", "2")]).await;
    let (mut reader, _) = Client::chat(&server, "reader").await;
    let epoch = subscribe(&mut reader, "room:g").await["epoch"].clone();
    let (mut writer, _) = Client::chat(&server, "writer").await;
    publish(&mut writer, "room:g", json!(1)).await;
    assert_eq!(offsets(&publications(&mut reader, 1).await), [1]);
    // Three publications pub/sub never brings (as a Redis failover can lose them), then one
    // it does: offsets 2..4 are missing and the history (2 entries) holds only 3 and 4.
    let script = include_str!("../src/channels/redis/publish.lua");
    let body = r#"{"f":"ghost","d":"unseen"}"#;
    for _ in 0..3 {
        let args = [
            "eval",
            script,
            "2",
            "cs:{room:g}:meta",
            "cs:{room:g}:history",
            "2",
            "300000",
            "nobody-listens",
            "unused",
            body,
        ];
        redis.cli(&args);
    }
    publish(&mut writer, "room:g", json!(5)).await;
    let (ended, before) = reply_to(&mut reader, None).await;
    assert!(before.is_empty(), "nothing out of order: {before:?}");
    assert_eq!(
        ended,
        json!({"type":"unsubscribed","channel":"room:g","reason":"insufficient_state","resubscribe":true,"ts":ended["ts"]})
    );
    server
        .wait_metric(
            "websocket_broker_gap_repairs_total{outcome=\"insufficient_state\"}",
            |v| v == 1.0,
        )
        .await;
    // The client recovers from its last offset: beyond the history, so not recovered.
    let again = ask(
        &mut reader,
        json!({"type":"subscribe","channel":"room:g","id":"r","recover":{"offset":1,"epoch":epoch}}),
    )
    .await;
    assert_eq!(again["type"], "subscribed", "{again}");
    assert_eq!(
        (again["recovered"].as_bool(), again["offset"].as_u64()),
        (Some(false), Some(5))
    );
}

/// Makes Redis forget `room`'s last two publications of five, epoch kept, as a failover to a
/// replica that lagged (or a crash between fsyncs) does: top 3, entries 4 and 5 gone, the
/// stream's last id 3.
fn go_back_two(redis: &RedisServer, room: &str) {
    let meta = format!("cs:{{{room}}}:meta");
    let history = format!("cs:{{{room}}}:history");
    redis.cli(&["hset", &meta, "top", "3"]);
    redis.cli(&["xdel", &history, "4-0", "5-0"]);
    // A replica that never had them never moved the stream's last id past 3 either.
    redis.cli(&["xsetid", &history, "3-0"]);
}

/// Subscribes `reader` to `room` and has `writer` publish 1..=5 to it, all delivered;
/// returns the channel's epoch.
async fn five_delivered(reader: &mut Client, writer: &mut Client, room: &str) -> Value {
    let epoch = subscribe(reader, room).await["epoch"].clone();
    for n in 1..=5 {
        publish(writer, room, json!(n)).await;
    }
    assert_eq!(offsets(&publications(reader, 5).await), [1, 2, 3, 4, 5]);
    epoch
}

/// Reads the `unsubscribed` `insufficient_state` that ends `room`'s subscription, with no
/// publication before it.
async fn ended_with_insufficient_state(reader: &mut Client, room: &str) {
    let (ended, before) = reply_to(reader, None).await;
    assert!(
        before.is_empty(),
        "nothing delivered from a Redis that went back: {before:?}"
    );
    assert_eq!(
        (&ended["type"], &ended["channel"], &ended["reason"]),
        (
            &json!("unsubscribed"),
            &json!(room),
            &json!("insufficient_state")
        ),
        "{ended}"
    );
}

/// Recovers `room` from offset 5 of `epoch`: answered `recovered: false` in a new epoch.
async fn recovery_is_refused_in_a_new_epoch(reader: &mut Client, room: &str, epoch: &Value) {
    let again = ask(
        reader,
        json!({"type":"subscribe","channel":room,"id":"r","recover":{"offset":5,"epoch":epoch}}),
    )
    .await;
    assert_eq!(again["type"], "subscribed", "{again}");
    assert_eq!(again["recovered"], false, "{again}");
    assert_ne!(&again["epoch"], epoch, "{again}");
}

#[tokio::test]
async fn an_offset_redis_assigns_again_gives_the_channel_a_new_epoch() {
    let test = "an_offset_redis_assigns_again_gives_the_channel_a_new_epoch";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    // The position check is slow here: the reused offset itself must give it away.
    let server = server_on(&redis, &[("REDIS_POSITION_CHECK_INTERVAL", "60000")]).await;
    let (mut reader, _) = Client::chat(&server, "reader").await;
    let (mut writer, _) = Client::chat(&server, "writer").await;
    let epoch = five_delivered(&mut reader, &mut writer, "room:w").await;
    go_back_two(&redis, "room:w");
    // Redis answers this one with offset 4 again: a reader that took it for a duplicate of
    // the 4 it holds would silently miss it.
    let reused = publish(&mut writer, "room:w", json!("after")).await;
    assert_eq!(reused["offset"], 4, "{reused}");
    ended_with_insufficient_state(&mut reader, "room:w").await;
    recovery_is_refused_in_a_new_epoch(&mut reader, "room:w", &epoch).await;
    server
        .wait_metric(
            "websocket_broker_gap_repairs_total{outcome=\"insufficient_state\"}",
            |v| v == 1.0,
        )
        .await;
}

#[tokio::test]
async fn a_position_check_that_finds_redis_behind_gives_the_channel_a_new_epoch() {
    let test = "a_position_check_that_finds_redis_behind_gives_the_channel_a_new_epoch";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let server = server_on(&redis, &[]).await;
    let (mut reader, _) = Client::chat(&server, "reader").await;
    let (mut writer, _) = Client::chat(&server, "writer").await;
    let epoch = five_delivered(&mut reader, &mut writer, "room:c").await;
    // A client's claim of an offset beyond the top is its own business: recovered: false
    // for it, the channel untouched.
    let (mut claimant, _) = Client::chat(&server, "claimant").await;
    let claim = ask(
        &mut claimant,
        json!({"type":"subscribe","channel":"room:c","id":"c","recover":{"offset":999,"epoch":epoch}}),
    )
    .await;
    assert_eq!(
        (&claim["recovered"], &claim["epoch"]),
        (&json!(false), &epoch),
        "{claim}"
    );
    // Redis goes back with nothing published after: the next position check (300 ms here)
    // sees a top below what was delivered.
    go_back_two(&redis, "room:c");
    ended_with_insufficient_state(&mut reader, "room:c").await;
    recovery_is_refused_in_a_new_epoch(&mut reader, "room:c", &epoch).await;
}
