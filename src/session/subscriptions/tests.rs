//! A connection's subscriptions against the real in-memory broker and hub, on a runtime of
//! one thread: the hub's fan-out task runs only when a test yields, so a publication can be
//! held in the hub's queue while the channel changes under it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::value::RawValue;

use super::{ChannelRequest, RequestKind, Subscriptions};
use crate::channels::NewPublication;
use crate::config::{Cli, Config};
use crate::state::AppState;
use crate::ws::Outbox;

fn state(history_ttl_ms: &str) -> Arc<AppState> {
    let args = [
        "concurrent-socket",
        "--server-id",
        "t",
        "--history-ttl",
        history_ttl_ms,
    ];
    let cli = Cli::try_parse_from(args).unwrap();
    AppState::new(Config::from_raw(&cli.settings).unwrap(), true)
}

fn request(channel: &str, kind: RequestKind) -> ChannelRequest {
    ChannelRequest {
        id: None,
        channel: channel.into(),
        kind,
    }
}

fn publication(text: &str) -> NewPublication {
    NewPublication {
        data: RawValue::from_string(format!("\"{text}\"")).unwrap(),
        from: "p".into(),
        user: None,
    }
}

/// Lets the hub's fan-out task take what waits in its queue.
async fn let_the_hub_run() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The channel is freed (no subscriber, its history's TTL over) and created again, with a
/// new epoch, while a publication of its first life still waits in the hub. Offsets count
/// from 1 again in the new epoch: without the epoch on each delivery the old publication
/// passed for the new life's offset 1, and the new life's own offset 1 was then dropped as
/// already delivered, a silent gap.
#[tokio::test(flavor = "current_thread")]
async fn a_publication_of_a_channels_earlier_life_is_not_taken_for_the_new_lifes() {
    let state = state("1");
    let mut outbox = Outbox::new(1 << 20, Instant::now());
    let (mut first, mut second) = (Subscriptions::new(1 << 20), Subscriptions::new(1 << 20));
    let subscribe = || request("x", RequestKind::Subscribe(None));
    first.handle(&state, None, "a", subscribe()).await.unwrap();
    let broker = &state.channels.broker;
    let old = broker.publish("x", publication("old life")).await.unwrap();
    first
        .handle(&state, None, "a", request("x", RequestKind::Unsubscribe))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(5)); // past HISTORY_TTL: the channel can go
    let (answer, _) = second.handle(&state, None, "b", subscribe()).await.unwrap();
    assert!(
        !answer.contains(&*old.epoch),
        "a new life, a new epoch: {answer}"
    );

    let_the_hub_run().await;
    let lost = second.deliver(&state, &mut outbox);
    let sent = outbox.take_texts();
    assert!(
        sent.iter().all(|text| !text.contains("old life")),
        "the old life's publication was delivered to the new life's subscriber: {sent:?}"
    );
    assert_eq!(
        lost.len(),
        1,
        "a gap cannot be excluded: insufficient_state"
    );
}

/// The same path when the channel lives on: a publication of its epoch reaches the
/// subscriber in order, and one already delivered is not sent twice.
#[tokio::test(flavor = "current_thread")]
async fn publications_of_the_subscriptions_epoch_are_delivered_once_in_order() {
    let state = state("300000");
    let mut outbox = Outbox::new(1 << 20, Instant::now());
    let mut subscriptions = Subscriptions::new(1 << 20);
    let subscribe = request("x", RequestKind::Subscribe(None));
    subscriptions
        .handle(&state, None, "a", subscribe)
        .await
        .unwrap();
    let broker = &state.channels.broker;
    for text in ["one", "two"] {
        broker.publish("x", publication(text)).await.unwrap();
    }
    let_the_hub_run().await;
    assert!(subscriptions.deliver(&state, &mut outbox).is_empty());
    let sent = outbox.take_texts();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].contains("\"one\"") && sent[0].contains("\"offset\":1"));
    assert!(sent[1].contains("\"two\"") && sent[1].contains("\"offset\":2"));
}
