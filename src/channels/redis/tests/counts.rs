//! The pub/sub task's count of local subscribers per channel, which decides when the process
//! subscribes to a channel's topic in Redis and when it lets go: requests served in one batch,
//! and subscribes whose callers gave up.

use super::*;

/// A fresh engine, on one thread (the default of `#[tokio::test]`): its pub/sub task runs
/// only when the test awaits.
fn counted(redis: &RedisServer) -> (Fixture, wire::Keys) {
    let fixture = Fixture::new(redis, LIMITS);
    let keys = wire::Keys::new(&fixture.prefix);
    (fixture, keys)
}

#[tokio::test]
async fn a_subscribe_and_an_unsubscribe_in_one_batch_keep_the_count() {
    let test = "a_subscribe_and_an_unsubscribe_in_one_batch_keep_the_count";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let (Fixture { broker, seen, .. }, keys) = counted(&redis);
    // Both requests are queued before the pub/sub task runs.
    let mut subscribing = broker.subscribe("new");
    assert!(futures_util::poll!(&mut subscribing).is_pending());
    broker.unsubscribe("new").await;
    subscribing.await.unwrap();
    broker.subscribe("kept").await.unwrap();
    broker.unsubscribe("kept").await;
    broker.subscribe("kept").await.unwrap();
    assert_eq!(topics(&redis), [keys.topic("kept")]);
    // One subscriber each now: one publication each, and one unsubscribe each ends them.
    broker.subscribe("new").await.unwrap();
    broker.publish("new", message("1")).await.unwrap();
    broker.publish("kept", message("1")).await.unwrap();
    wait_until(&seen, "[1, 1]", |got| got == [1, 1]).await;
    broker.unsubscribe("new").await;
    broker.unsubscribe("kept").await;
    settle(&*broker, &seen).await;
    assert_eq!(topics(&redis), [keys.topic("conformance.settle")]);
}

/// A subscribe whose caller gave up (timed out, or its future dropped) leaves the count as it
/// was, whether the pub/sub task answered it before or after. Before, an unsubscribe sent for
/// every subscribe that timed out took another subscriber's place when the task had refused
/// that one, and a dropped one was counted for good.
#[tokio::test]
async fn a_subscribe_given_up_leaves_the_count_as_it_was() {
    let test = "a_subscribe_given_up_leaves_the_count_as_it_was";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let (Fixture { broker, seen, .. }, keys) = counted(&redis);
    broker.subscribe("kept").await.unwrap();
    // Given up before the pub/sub task runs: it answers a closed call.
    for channel in ["kept", "new"] {
        let mut subscribing = broker.subscribe(channel);
        assert!(futures_util::poll!(&mut subscribing).is_pending());
        drop(subscribing);
    }
    // Given up after the task could answer (a channel it holds: answered at once).
    let mut subscribing = broker.subscribe("kept");
    assert!(futures_util::poll!(&mut subscribing).is_pending());
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    drop(subscribing);
    broker.unsubscribe("kept").await;
    settle(&*broker, &seen).await;
    assert_eq!(topics(&redis), [keys.topic("conformance.settle")]);
}
