//! Channels (protocol v1.1) over real sockets: every row of the contract (docs/protocol.md,
//! "Channels"): subscribe, publish and delivery to every subscriber, concurrent publishers,
//! recovery and recovery beyond history, the limits and errors, `insufficient_state` when a
//! subscriber's queue overflows, and the release of subscriptions on disconnect.

mod common;

use common::chat::{ask, offsets, publications, publish, reply_to, subscribe};
use common::{Client, Server};
use serde_json::{Value, json};

#[tokio::test]
async fn a_publication_reaches_every_subscriber_byte_for_byte() {
    let server = Server::start(&[]).await;
    let (mut alice, _) = Client::chat(&server, "alice").await;
    let (mut bob, _) = Client::chat(&server, "bob").await;
    let subscribed = subscribe(&mut bob, "room:1").await;
    assert_eq!(subscribed["offset"], 0);
    assert!(subscribed.get("recovered").is_none() && subscribed.get("publications").is_none());
    let epoch = subscribed["epoch"].as_str().unwrap().to_owned();
    let text = r#"{"type":"publish","channel":"room:1","id":"p1","data":{"z":1,"a":[1.50,"é"]}}"#;
    alice.send_text(text).await;
    let published = alice.recv_reply().await;
    assert_eq!(
        published,
        json!({"type":"published","channel":"room:1","id":"p1","offset":1,"epoch":epoch,"ts":published["ts"]})
    );
    let raw = bob.recv_text().await;
    let head = r#"{"type":"publication","channel":"room:1","offset":1,"data":{"z":1,"a":[1.50,"é"]},"from":"alice","ts":"#;
    assert!(
        raw.starts_with(head) && raw.ends_with('}'),
        "type first, data as sent, ts last: {raw}"
    );
    let answered = server
        .metric("websocket_publications_total{result=\"accepted\"}")
        .await;
    assert_eq!(answered, Some(1.0));
    server
        .wait_metric("websocket_deliveries_total", |v| v == 1.0)
        .await;
}

#[tokio::test]
async fn concurrent_publishers_every_subscriber_sees_every_offset_once_in_order() {
    // Bursts of publications: neither the message nor the frame budget may refuse them.
    let server =
        Server::start(&[("RATE_LIMIT_MSGS_PER_SEC", "0"), ("FRAME_RATE_LIMIT", "0")]).await;
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let (mut client, _) = Client::chat(&server, &format!("sub{i}")).await;
        subscribe(&mut client, "room:busy").await;
        subscribers.push(client);
    }
    let publishers = (0..4).map(|p| {
        let url = server.ws_url(&format!("/ws/chat/pub{p}"));
        tokio::spawn(async move {
            let mut client = Client::connect(&url).await.unwrap();
            client.recv_json().await;
            for n in 0..50 {
                let request = json!({"type":"publish","channel":"room:busy","data":{"p":p,"n":n}});
                client.send_json(&request).await;
            }
            for _ in 0..50 {
                let answer = client.recv_reply().await;
                assert_eq!(answer["type"], "published", "{answer}");
            }
        })
    });
    for publisher in publishers.collect::<Vec<_>>() {
        publisher.await.unwrap();
    }
    for client in &mut subscribers {
        let seen = publications(client, 200).await;
        assert_eq!(offsets(&seen), (1..=200).collect::<Vec<u64>>());
    }
}

#[tokio::test]
async fn recovery_returns_what_was_missed_then_goes_live() {
    let server = Server::start(&[]).await;
    let (mut alice, _) = Client::chat(&server, "alice").await;
    let epoch = subscribe(&mut alice, "room:r").await["epoch"].clone();
    for n in 1..=3 {
        publish(&mut alice, "room:r", json!(n)).await;
    }
    let (mut bob, _) = Client::chat(&server, "bob").await;
    let request = json!({"type":"subscribe","channel":"room:r","id":"s2","recover":{"offset":1,"epoch":epoch}});
    let answer = ask(&mut bob, request).await;
    assert_eq!(answer["recovered"], true);
    assert_eq!(answer["offset"], 3);
    assert_eq!(
        answer["publications"],
        json!([{"offset":2,"data":2,"from":"alice"},{"offset":3,"data":3,"from":"alice"}])
    );
    publish(&mut alice, "room:r", json!(4)).await;
    assert_eq!(offsets(&publications(&mut bob, 1).await), [4]);
    let recovered = "websocket_recoveries_total{outcome=\"recovered\"}";
    assert_eq!(server.metric(recovered).await, Some(1.0));
}

#[tokio::test]
async fn recovery_beyond_history_or_from_another_epoch_is_not_recovered() {
    let server = Server::start(&[("HISTORY_SIZE", "2")]).await;
    let (mut alice, _) = Client::chat(&server, "alice").await;
    let epoch = subscribe(&mut alice, "room:h").await["epoch"].clone();
    for n in 1..=5 {
        publish(&mut alice, "room:h", json!(n)).await;
    }
    let (mut bob, _) = Client::chat(&server, "bob").await;
    for recover in [
        json!({"offset":1,"epoch":epoch}),
        json!({"offset":4,"epoch":"other"}),
        json!({"offset":9,"epoch":epoch}),
    ] {
        let _ = ask(
            &mut bob,
            json!({"type":"unsubscribe","channel":"room:h","id":"u"}),
        )
        .await;
        let answer = ask(
            &mut bob,
            json!({"type":"subscribe","channel":"room:h","id":"s","recover":recover}),
        )
        .await;
        assert_eq!(
            (
                &answer["recovered"],
                &answer["publications"],
                &answer["offset"]
            ),
            (&json!(false), &json!([]), &json!(5)),
            "{recover}"
        );
    }
    let answer = ask(
        &mut bob,
        json!({"type":"unsubscribe","channel":"room:h","id":"u"}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"type":"unsubscribed","channel":"room:h","id":"u","ts":answer["ts"]})
    );
    let answer = ask(&mut bob, json!({"type":"subscribe","channel":"room:h","id":"s","recover":{"offset":3,"epoch":epoch}})).await;
    assert_eq!(answer["recovered"], true);
    assert_eq!(offsets(answer["publications"].as_array().unwrap()), [4, 5]);
}

/// Sends `request` and checks it is refused with `code`, the request's id echoed.
async fn refused(client: &mut Client, mut request: Value, code: &str) {
    request["id"] = json!("r");
    let answer = ask(client, request.clone()).await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some(code)),
        "{request} -> {answer}"
    );
    assert!(!answer["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn every_limit_and_error_of_the_contract() {
    let vars = [
        ("MAX_SUBSCRIPTIONS_PER_CONNECTION", "2"),
        ("MAX_CHANNELS", "3"),
    ];
    let server = Server::start(&vars).await;
    let (mut c, _) = Client::chat(&server, "c").await;
    for bad in [
        json!(null),
        json!(5),
        json!(""),
        json!("a b"),
        json!("x".repeat(129)),
        json!("room/1"),
    ] {
        refused(
            &mut c,
            json!({"type":"subscribe","channel":bad}),
            "invalid_channel",
        )
        .await;
        refused(
            &mut c,
            json!({"type":"publish","channel":bad,"data":1}),
            "invalid_channel",
        )
        .await;
    }
    refused(&mut c, json!({"type":"unsubscribe"}), "invalid_channel").await;
    for recover in [
        json!({"offset":-1,"epoch":"e"}),
        json!({"epoch":"e"}),
        json!("1"),
    ] {
        refused(
            &mut c,
            json!({"type":"subscribe","channel":"a","recover":recover}),
            "invalid_message",
        )
        .await;
    }
    refused(
        &mut c,
        json!({"type":"unsubscribe","channel":"a"}),
        "not_subscribed",
    )
    .await;
    subscribe(&mut c, "a").await;
    refused(
        &mut c,
        json!({"type":"subscribe","channel":"a"}),
        "already_subscribed",
    )
    .await;
    subscribe(&mut c, "b").await;
    refused(
        &mut c,
        json!({"type":"subscribe","channel":"c"}),
        "subscription_limit",
    )
    .await;
    // Channels a, b exist; c makes 3; a fourth is refused, the existing ones keep working.
    publish(&mut c, "c", json!(1)).await;
    refused(
        &mut c,
        json!({"type":"publish","channel":"d","data":1}),
        "channel_limit",
    )
    .await;
    let (mut other, _) = Client::chat(&server, "other").await;
    refused(
        &mut other,
        json!({"type":"subscribe","channel":"d"}),
        "channel_limit",
    )
    .await;
    subscribe(&mut other, "a").await;
    let errors = server
        .metric("websocket_errors_total{code=\"channel_limit\"}")
        .await;
    assert_eq!(errors, Some(2.0));
}

#[tokio::test]
async fn publishes_count_toward_the_rate_limit_and_the_size_limit() {
    let server = Server::start(&[
        ("RATE_LIMIT_MSGS_PER_SEC", "5"),
        ("MAX_MESSAGE_BYTES", "256"),
    ])
    .await;
    let (mut c, _) = Client::chat(&server, "c").await;
    let big = json!({"type":"publish","channel":"a","id":"big","data":"x".repeat(300)});
    c.send_json(&big).await;
    assert_eq!(c.recv_reply().await["code"], "message_too_large");
    for _ in 0..8 {
        c.send_json(&json!({"type":"publish","channel":"a","data":1}))
            .await;
    }
    let mut codes = Vec::new();
    for _ in 0..8 {
        let answer = c.recv_reply().await;
        codes.push(
            answer["code"]
                .as_str()
                .unwrap_or(answer["type"].as_str().unwrap())
                .to_owned(),
        );
    }
    assert!(
        codes.iter().filter(|c| *c == "published").count() <= 5,
        "{codes:?}"
    );
    assert!(codes.contains(&"rate_limited".to_owned()), "{codes:?}");
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_loses_the_subscription_not_the_order() {
    let vars = [
        ("RATE_LIMIT_MSGS_PER_SEC", "0"),
        ("FRAME_RATE_LIMIT", "0"),
        ("OUTBOUND_QUEUE_BYTES", "1024"),
        ("HISTORY_SIZE", "10000"),
        // A recovery of up to 4 x 4 MiB fits in one answer.
        ("MAX_MESSAGE_BYTES", "4194304"),
    ];
    let server = Server::start(&vars).await;
    let (mut slow, _) = Client::chat(&server, "slow").await;
    subscribe(&mut slow, "room:flood").await;
    let (mut publisher, _) = Client::chat(&server, "fast").await;
    // 2,500 publications of 6 KiB: more than the socket buffers between the two hold, and a
    // recovery that fits the test client's largest frame (16 MiB).
    let data = json!("y".repeat(6 * 1024));
    for _ in 0..2500 {
        publisher
            .send_json(&json!({"type":"publish","channel":"room:flood","data":data}))
            .await;
    }
    for n in 0..2500 {
        let answer = publisher.recv_reply().await;
        assert_eq!(
            answer["type"],
            "published",
            "{n}: {answer} {}",
            server.output()
        );
    }
    server
        .wait_metric(
            "websocket_subscription_ends_total{reason=\"insufficient_state\"}",
            |v| v == 1.0,
        )
        .await;
    // The slow reader now reads: offsets 1.. in order with no gap, then the end of the
    // subscription; it recovers the rest from history.
    let (ended, seen) = reply_to(&mut slow, None).await;
    assert_eq!(
        ended,
        json!({"type":"unsubscribed","channel":"room:flood","reason":"insufficient_state","resubscribe":true,"ts":ended["ts"]})
    );
    let last = seen.len() as u64;
    assert!(last < 2500);
    assert_eq!(offsets(&seen), (1..=last).collect::<Vec<u64>>());
    let epoch = ask(
        &mut publisher,
        json!({"type":"subscribe","channel":"room:flood","id":"e"}),
    )
    .await["epoch"]
        .clone();
    let recover = json!({"type":"subscribe","channel":"room:flood","id":"again","recover":{"offset":last,"epoch":epoch}});
    let answer = ask(&mut slow, recover).await;
    assert_eq!(answer["recovered"], true);
    assert_eq!(
        offsets(answer["publications"].as_array().unwrap()),
        (last + 1..=2500).collect::<Vec<u64>>()
    );
}

#[tokio::test]
async fn subscriptions_end_with_their_connection() {
    let server = Server::start(&[]).await;
    let (mut c, _) = Client::chat(&server, "c").await;
    subscribe(&mut c, "a").await;
    subscribe(&mut c, "b").await;
    server
        .wait_metric("websocket_subscriptions_active", |v| v == 2.0)
        .await;
    server
        .wait_metric("websocket_channels_active", |v| v == 2.0)
        .await;
    drop(c);
    server
        .wait_metric("websocket_subscriptions_active", |v| v == 0.0)
        .await;
    server
        .wait_metric(
            "websocket_subscription_ends_total{reason=\"disconnect\"}",
            |v| v == 2.0,
        )
        .await;
    server
        .wait_metric("websocket_channels_active", |v| v == 0.0)
        .await;
    assert_eq!(server.metric("websocket_broker_up").await, Some(1.0));
}

#[tokio::test]
async fn broker_redis_is_refused_naming_the_variable() {
    let output = tokio::process::Command::new(common::server_binary())
        .arg("check-config")
        .env("BROKER", "redis")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("BROKER"), "{text}");
}

#[tokio::test]
async fn a_recovery_larger_than_one_message_is_not_recovered() {
    // 4 x 512 bytes: the largest message the server writes; three 300-byte publications
    // and their fields are more.
    let server = Server::start(&[("MAX_MESSAGE_BYTES", "512")]).await;
    let (mut c, _) = Client::chat(&server, "c").await;
    let epoch = subscribe(&mut c, "big").await["epoch"].clone();
    for _ in 0..8 {
        publish(&mut c, "big", json!("z".repeat(300))).await;
    }
    let (mut late, _) = Client::chat(&server, "late").await;
    let recover = |offset: u64| json!({"type":"subscribe","channel":"big","id":"s","recover":{"offset":offset,"epoch":epoch}});
    let answer = ask(&mut late, recover(0)).await;
    assert_eq!(
        (&answer["recovered"], &answer["publications"]),
        (&json!(false), &json!([]))
    );
    ask(
        &mut late,
        json!({"type":"unsubscribe","channel":"big","id":"u"}),
    )
    .await;
    let answer = ask(&mut late, recover(6)).await;
    assert_eq!(answer["recovered"], true);
    assert_eq!(offsets(answer["publications"].as_array().unwrap()), [7, 8]);
}
