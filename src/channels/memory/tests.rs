//! The in-memory engine against the conformance tests, and its own bounds.

use super::*;
use crate::channels::conformance;
use serde_json::value::RawValue;

fn gauges() -> EngineGauges {
    EngineGauges {
        channels: IntGauge::new("c", "c").unwrap(),
        history_bytes: IntGauge::new("h", "h").unwrap(),
    }
}

fn limits(history_max_bytes: usize) -> MemoryLimits {
    MemoryLimits {
        history_size: 100,
        history_ttl: Duration::from_secs(300),
        history_max_bytes,
        max_channels: 100,
    }
}

fn message(size: usize) -> NewPublication {
    NewPublication {
        data: RawValue::from_string(format!("\"{}\"", "x".repeat(size))).unwrap(),
        from: "a".into(),
        user: None,
    }
}

#[tokio::test]
async fn the_memory_engine_conforms() {
    conformance::run_all(|limits, sink| MemoryBroker::start(limits, gauges(), sink)).await;
}

#[test]
fn the_byte_budget_evicts_the_oldest_publications_of_the_process() {
    let cost = Publication {
        offset: 1,
        data: message(100).data,
        from: "a".into(),
        user: None,
    }
    .cost();
    let gauges = gauges();
    let broker = MemoryBroker::start(limits(3 * cost), gauges.clone(), Arc::new(|_, _| {}));
    broker.publish_now("a", message(100)).unwrap();
    broker.publish_now("b", message(100)).unwrap();
    broker.publish_now("a", message(100)).unwrap();
    assert_eq!(gauges.history_bytes.get() as usize, 3 * cost);
    broker.publish_now("b", message(100)).unwrap();
    assert_eq!(gauges.history_bytes.get() as usize, 3 * cost);
    let epoch = broker.history_now("a", None).unwrap().epoch.to_string();
    let since = |offset| StreamPosition {
        offset,
        epoch: epoch.clone(),
    };
    assert!(
        !broker.history_now("a", Some(&since(0))).unwrap().complete,
        "a:1 went first"
    );
    assert!(broker.history_now("a", Some(&since(1))).unwrap().complete);
}

#[test]
fn channels_are_freed_when_idle_and_expired() {
    let gauges = gauges();
    let mut engine = Engine::new(
        MemoryLimits {
            history_ttl: Duration::from_millis(10),
            ..limits(1 << 20)
        },
        gauges.clone(),
    );
    engine.subscribe("quiet").unwrap();
    assert_eq!(gauges.channels.get(), 1);
    engine.unsubscribe("quiet");
    assert_eq!(gauges.channels.get(), 0, "no history: freed at once");
    let broker = MemoryBroker {
        engine: Mutex::new(engine),
        sink: Arc::new(|_, _| {}),
    };
    for _ in 0..1000 {
        broker.publish_now("busy", message(10)).unwrap();
    }
    assert!(gauges.history_bytes.get() > 0);
    broker
        .engine()
        .expire(Instant::now() + Duration::from_millis(20));
    assert_eq!((gauges.channels.get(), gauges.history_bytes.get()), (0, 0));
    let engine = broker.engine();
    assert_eq!((engine.entries, engine.history_bytes), (0, 0));
    assert!(
        engine.order.len() <= 1024 + 200,
        "the age order is compacted"
    );
}

/// The snapshot as the handover's state carries it: through its JSON.
fn through_json(snapshot: ChannelsSnapshot) -> ChannelsSnapshot {
    serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap()
}

fn position(broker: &MemoryBroker, channel: &str, offset: u64) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: broker.history_now(channel, None).unwrap().epoch.to_string(),
    }
}

#[tokio::test]
async fn a_handover_carries_epochs_offsets_and_history_to_the_next_engine() {
    let old = MemoryBroker::start(limits(1 << 20), gauges(), Arc::new(|_, _| {}));
    for _ in 0..5 {
        old.publish_now("room", message(3)).unwrap();
    }
    old.engine().subscribe("quiet").unwrap(); // a subscriber, nothing published
    let since = position(&old, "room", 2);
    let quiet = position(&old, "quiet", 0);
    let snapshot = old.hand_over().expect("the memory engine has channels");
    assert_eq!(
        old.publish_now("room", message(3)).unwrap_err(),
        BrokerError::Unavailable,
        "no offset may be given out after the snapshot"
    );

    let new = MemoryBroker::start(limits(1 << 20), gauges(), Arc::new(|_, _| {}));
    let restored = new.take_over(through_json(snapshot));
    assert_eq!((restored.channels, restored.publications), (2, 5));
    let history = new.history_now("room", Some(&since)).unwrap();
    assert!(history.complete);
    assert_eq!(*history.epoch, *since.epoch);
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [3, 4, 5]);
    assert_eq!(history.publications[0].data.get(), r#""xxx""#);
    let accepted = new.publish_now("room", message(3)).unwrap();
    assert_eq!((accepted.offset, &*accepted.epoch), (6, &*since.epoch));
    new.engine().subscribe("quiet").unwrap();
    assert!(new.history_now("quiet", Some(&quiet)).unwrap().complete);
}

#[tokio::test]
async fn a_restored_history_keeps_within_the_new_bounds() {
    let old = MemoryBroker::start(limits(1 << 20), gauges(), Arc::new(|_, _| {}));
    for _ in 0..10 {
        old.publish_now("room", message(3)).unwrap();
    }
    old.publish_now("taken", message(3)).unwrap();
    let since = position(&old, "room", 7);
    let snapshot = through_json(old.hand_over().unwrap());

    let smaller = MemoryLimits {
        history_size: 3,
        ..limits(1 << 20)
    };
    let new = MemoryBroker::start(smaller, gauges(), Arc::new(|_, _| {}));
    new.publish_now("taken", message(3)).unwrap(); // created here first: its epoch stands
    let restored = new.take_over(snapshot);
    assert_eq!((restored.channels, restored.publications), (1, 3));
    assert_eq!(restored.refused, 1);
    let history = new.history_now("room", Some(&since)).unwrap();
    assert!(history.complete, "8..=10 are the 3 kept");
    assert!(
        !new.history_now("room", Some(&position(&new, "room", 6)))
            .unwrap()
            .complete
    );

    let expired = MemoryBroker::start(
        MemoryLimits {
            history_ttl: Duration::from_millis(1),
            ..limits(1 << 20)
        },
        gauges(),
        Arc::new(|_, _| {}),
    );
    std::thread::sleep(Duration::from_millis(5));
    let old = MemoryBroker::start(limits(1 << 20), gauges(), Arc::new(|_, _| {}));
    old.publish_now("room", message(3)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let restored = expired.take_over(through_json(old.hand_over().unwrap()));
    assert_eq!((restored.channels, restored.publications), (1, 0));
    let kept = expired.history_now("room", None).unwrap();
    assert_eq!(kept.top, 1, "the offsets go on without the history");
}

#[test]
fn an_inconsistent_channel_is_refused() {
    let broker = MemoryBroker::start(limits(1 << 20), gauges(), Arc::new(|_, _| {}));
    let snapshot: ChannelsSnapshot = serde_json::from_value(serde_json::json!({"channels": [
        {"name": "gap", "epoch": "e", "top": 3, "publishedMsAgo": 0,
         "history": [{"offset": 1, "data": 1, "from": "a"}, {"offset": 3, "data": 1, "from": "a"}]},
        {"name": "short", "epoch": "e", "top": 0, "publishedMsAgo": 0,
         "history": [{"offset": 1, "data": 1, "from": "a"}]},
        {"name": "fine", "epoch": "e", "top": 9, "publishedMsAgo": null, "history": []}
    ]}))
    .unwrap();
    let restored = broker.take_over(snapshot);
    assert_eq!((restored.channels, restored.refused), (1, 2));
    assert_eq!(broker.history_now("fine", None).unwrap().top, 9);
}
