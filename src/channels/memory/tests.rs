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
