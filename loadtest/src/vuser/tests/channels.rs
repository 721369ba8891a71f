//! A channel user against a scripted v1.1 server: a refused subscription tried again, a
//! subscription ended with `insufficient_state` made again with `recover`, the publications
//! of the recovery and live ones accounted, and the final look at the channel.

use tokio::time::Instant;

use super::*;
use crate::channels::{ChannelPlan, ChannelScenario, Role};
use crate::vuser::channel_memory::ChannelMemory;
use crate::vuser::channels::ChannelSession;

/// The user's next frame, as JSON.
async fn request(ws: &mut Ws) -> Value {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// Sends a v1.1 message of type `kind` with `fields`: `type` first, as the server writes it
/// (and as the user's parser expects it).
async fn tell(ws: &mut Ws, kind: &str, fields: Value) {
    let rest = fields.to_string();
    let text = format!(r#"{{"type":"{kind}",{}"#, &rest[1..]);
    ws.send(Message::Text(text.into())).await.unwrap();
}

async fn publication(ws: &mut Ws, offset: u64, from: &str) {
    let fields =
        json!({"channel": "c", "offset": offset, "data": {"t": 1, "p": ""}, "from": from, "ts": 1});
    tell(ws, "publication", fields).await;
}

/// Accepts the user and answers its first request, a `subscribe`, at `offset` of epoch E.
async fn accept_subscriber(listener: &TcpListener, offset: u64) -> Ws {
    let mut ws = accept(listener).await;
    assert_eq!(request(&mut ws).await["type"], "subscribe");
    tell(
        &mut ws,
        "subscribed",
        json!({"channel": "c", "id": "s", "epoch": "E", "offset": offset, "ts": 1}),
    )
    .await;
    ws
}

fn subscriber(resubscribe_every_ms: Option<u64>) -> Behaviour {
    Behaviour {
        channels: Some(ChannelPlan {
            scenario: ChannelScenario::Rooms {
                rooms: 1,
                size: 1,
                rate: 1.0,
                spread: false,
            },
            publish_for_ms: 1,
            publish_from_ms: 0,
            resubscribe_every_ms,
            measure_from_ms: 0,
        }),
        ..closed_loop(10_000)
    }
}

/// Runs one channel session of user `u` on channel `c`, publishing `publish_rate` times a
/// second for up to 10 s, until `stop` and the user's final check are over, or the server
/// ends it.
async fn run_subscriber(
    ctx: &UserContext,
    stop: &CancellationToken,
    publish_rate: f64,
) -> SessionEnd {
    let (ws, _) = connect(ctx, "u", None).await.unwrap();
    let role = Role {
        channel: "c".into(),
        subscribes: true,
        publish_rate,
    };
    let mut memory = ChannelMemory::default();
    let session = ChannelSession::new(ctx, ws, &role, "u", &mut memory);
    let now = Instant::now();
    timeout(
        Duration::from_secs(20),
        session.run(stop, (now, now + Duration::from_secs(10))),
    )
    .await
    .expect("the user left by itself")
}

#[tokio::test]
async fn refusals_and_insufficient_state_are_recovered_from_and_accounted() {
    let (target, listener) = listen().await;
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let server = tokio::spawn(async move {
        let mut ws = accept(&listener).await;
        let first = request(&mut ws).await;
        assert_eq!(
            first,
            json!({"type": "subscribe", "channel": "c", "id": "s"})
        );
        tell(
            &mut ws,
            "error",
            json!({"code": "broker_unavailable", "id": "s", "ts": 1}),
        )
        .await;
        assert_eq!(request(&mut ws).await, first, "tried again, as it was");
        tell(
            &mut ws,
            "subscribed",
            json!({"channel": "c", "id": "s", "epoch": "E", "offset": 5, "ts": 1}),
        )
        .await;
        publication(&mut ws, 6, "u").await;
        tell(
            &mut ws,
            "unsubscribed",
            json!({"channel": "c", "reason": "insufficient_state", "resubscribe": true, "ts": 1}),
        )
        .await;
        let again = request(&mut ws).await;
        assert_eq!(again["recover"], json!({"offset": 6, "epoch": "E"}));
        tell(
            &mut ws,
            "subscribed",
            json!({"channel": "c", "id": "s", "epoch": "E", "offset": 8,
            "recovered": true, "publications": [
                {"offset": 7, "data": {"t": 1}, "from": "v"},
                {"offset": 8, "data": {"t": 1}, "from": "u"}], "ts": 1}),
        )
        .await;
        publication(&mut ws, 9, "v").await;
        // Offset 8 came back in the recovery: acknowledged and not lost.
        tell(
            &mut ws,
            "published",
            json!({"channel": "c", "id": "1", "offset": 8, "epoch": "E", "ts": 1}),
        )
        .await;
        // 11 skipped 10; 10 then comes late, 9 again.
        publication(&mut ws, 11, "v").await;
        publication(&mut ws, 10, "v").await;
        publication(&mut ws, 9, "v").await;
        stopper.cancel();
        assert_eq!(request(&mut ws).await["type"], "unsubscribe");
        tell(&mut ws, "unsubscribed", json!({"channel": "c", "ts": 1})).await;
        let last_look = request(&mut ws).await;
        assert_eq!(last_look["recover"], json!({"offset": 11, "epoch": "E"}));
        tell(
            &mut ws,
            "subscribed",
            json!({"channel": "c", "id": "s", "epoch": "E", "offset": 13,
            "recovered": true, "publications": [], "ts": 1}),
        )
        .await;
        read_to_end(&mut ws).await;
    });
    let ctx = context(target, subscriber(None));
    let end = run_subscriber(&ctx, &stop, 0.0).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Stopped);
    let c = ctx.recorder.take(1).counts.channels;
    assert_eq!(
        (c.subscribe_refused, c.insufficient_state, c.recovered),
        (1, 1, 1)
    );
    // Live and in order: 6, 9 and 11 (not 7 and 8: recovered, nor the late 10).
    assert_eq!(c.deliveries, 3);
    assert_eq!((c.published, c.acked_lost), (1, 0));
    // 10 skipped then late, 9 twice, and 12..13 never received by the end.
    assert_eq!((c.out_of_order, c.duplicates, c.missing), (1, 1, 3));
}

#[tokio::test]
async fn a_subscriber_told_to_resubscribe_leaves_and_comes_back_with_recover() {
    let (target, listener) = listen().await;
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let server = tokio::spawn(async move {
        let mut ws = accept_subscriber(&listener, 2).await;
        publication(&mut ws, 3, "v").await;
        // Within 50..150 ms: it leaves on its own.
        assert_eq!(request(&mut ws).await["type"], "unsubscribe");
        tell(&mut ws, "unsubscribed", json!({"channel": "c", "ts": 1})).await;
        // And comes back within 50 ms, from where it was.
        let back = request(&mut ws).await;
        assert_eq!(back["recover"], json!({"offset": 3, "epoch": "E"}));
        tell(
            &mut ws,
            "subscribed",
            json!({"channel": "c", "id": "s", "epoch": "E", "offset": 5,
            "recovered": true, "publications": [
                {"offset": 4, "data": {"t": 1}, "from": "v"},
                {"offset": 5, "data": {"t": 1}, "from": "v"}], "ts": 1}),
        )
        .await;
        publication(&mut ws, 5, "v").await;
        stopper.cancel();
        assert_eq!(request(&mut ws).await["type"], "unsubscribe");
        tell(&mut ws, "unsubscribed", json!({"channel": "c", "ts": 1})).await;
        assert_eq!(
            request(&mut ws).await["recover"],
            json!({"offset": 5, "epoch": "E"})
        );
        tell(
            &mut ws,
            "subscribed",
            json!({"channel": "c", "id": "s", "epoch": "E", "offset": 5,
            "recovered": true, "publications": [], "ts": 1}),
        )
        .await;
        read_to_end(&mut ws).await;
    });
    let ctx = context(target, subscriber(Some(100)));
    let end = run_subscriber(&ctx, &stop, 0.0).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Stopped);
    let c = ctx.recorder.take(1).counts.channels;
    assert_eq!((c.recovered, c.deliveries, c.missing), (1, 1, 0));
    assert_eq!(
        c.duplicates, 1,
        "offset 5 live after the recovery that brought it: the seam failed"
    );
}

#[tokio::test]
async fn publishes_that_crossed_the_goodbye_are_answered_and_counted_before_the_user_leaves() {
    let (target, listener) = listen().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_subscriber(&listener, 0).await;
        // The drain: `goodbye` comes between the first publish and its answer. The server
        // answers it and every later publish until the user's close, as it does in its grace.
        let mut offset = 0;
        let mut said_goodbye = false;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let publish: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(publish["type"], "publish");
                    if !said_goodbye {
                        say(&mut ws, goodbye("server_shutdown", true)).await;
                        said_goodbye = true;
                    }
                    offset += 1;
                    tell(
                        &mut ws,
                        "published",
                        json!({"channel": "c", "id": publish["id"], "offset": offset, "epoch": "E", "ts": 1}),
                    )
                    .await;
                    publication(&mut ws, offset, "u").await;
                }
                Some(Ok(Message::Close(_))) => break,
                other => panic!("expected a publish or the user's close, got {other:?}"),
            }
        }
        read_to_end(&mut ws).await;
        offset
    });
    let ctx = context(target, subscriber(None));
    let end = run_subscriber(&ctx, &CancellationToken::new(), 20.0).await;
    let answered = server.await.unwrap();
    assert_eq!(end, SessionEnd::Goodbye { reconnect: true });
    let c = ctx.recorder.take(1).counts.channels;
    assert!(answered >= 1);
    assert_eq!(
        (c.publishes, c.published),
        (answered, answered),
        "every publish answered and taken"
    );
    assert_eq!((c.deliveries, c.acked_lost, c.missing), (answered, 0, 0));
}
