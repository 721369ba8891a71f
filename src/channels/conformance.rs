//! The conformance tests of the [`Broker`] seam, written once, generic over the engine: the
//! in-memory engine runs them below, and the Redis engine of issue 17 runs the same
//! [`run_all`] with its own constructor.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use serde_json::value::RawValue;

use super::{
    Broker, BrokerError, EpochId, MemoryLimits, NewPublication, PublicationSink, SinkEvent,
    StreamPosition,
};

/// Builds a fresh engine (a fresh keyspace) with these limits and sink.
pub(crate) trait Engine<B: Broker>: Fn(MemoryLimits, PublicationSink) -> Arc<B> {}
impl<B: Broker, F: Fn(MemoryLimits, PublicationSink) -> Arc<B>> Engine<B> for F {}

/// What the sink was handed: (channel, offset), in order; offset 0 stands for a gap (offsets
/// count from 1).
pub(crate) type Seen = Arc<Mutex<Vec<(String, u64)>>>;

const LIMITS: MemoryLimits = MemoryLimits {
    history_size: 10,
    history_ttl: Duration::from_secs(300),
    history_max_bytes: 1 << 20,
    max_channels: 1000,
};

pub(crate) fn recorder() -> (PublicationSink, Seen) {
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    let sink: PublicationSink = Arc::new(move |channel, event| {
        let offset = match event {
            SinkEvent::Publication(publication, _) => publication.offset,
            SinkEvent::Gap => 0,
        };
        record.lock().unwrap().push((channel.to_string(), offset));
    });
    (sink, seen)
}

/// Waits until every publication accepted so far reached the sink: an engine may hand them
/// on after the publish returned (through Redis pub/sub). A publication on a channel
/// subscribed only for this, once seen, shows that those before it went through (one
/// engine's publications reach its sink in the order they were accepted), then the marker
/// channel is let go and its entries removed.
pub(crate) async fn settle<B: Broker>(broker: &B, seen: &Seen) {
    const MARKER: &str = "conformance.settle";
    broker.subscribe(MARKER).await.unwrap();
    let offset = broker
        .publish(MARKER, message("marker"))
        .await
        .unwrap()
        .offset;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let marker = (MARKER.to_owned(), offset);
    while !seen.lock().unwrap().contains(&marker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink got no marker"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.unsubscribe(MARKER).await;
    seen.lock()
        .unwrap()
        .retain(|(channel, _)| channel != MARKER);
}

pub(crate) fn message(text: &str) -> NewPublication {
    NewPublication {
        data: RawValue::from_string(format!("{{\"text\":\"{text}\"}}")).unwrap(),
        from: "alice".into(),
        user: None,
    }
}

pub(crate) fn at(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: epoch.into(),
    }
}

/// Every scenario, each on a fresh engine.
pub(crate) async fn run_all<B: Broker>(engine: impl Engine<B>) {
    offsets_count_from_one_in_one_epoch(&engine).await;
    history_after_a_position(&engine).await;
    history_beyond_the_ring_is_not_complete(&engine).await;
    another_epoch_or_a_future_offset_is_not_complete(&engine).await;
    the_sink_follows_the_reference_count(&engine).await;
    the_sink_names_each_publications_epoch(&engine).await;
    concurrent_publishers_get_every_offset_once_in_order(&engine).await;
    publishes_in_flight_get_offsets_in_the_order_polled(&engine).await;
    no_history_keeps_offsets(&engine).await;
    the_channel_limit_refuses_only_new_channels(&engine).await;
    expired_history_is_gone_and_a_freed_channel_starts_a_new_epoch(&engine).await;
}

async fn offsets_count_from_one_in_one_epoch<B: Broker>(engine: &impl Engine<B>) {
    let broker = engine(LIMITS, recorder().0);
    let first = broker.publish("c", message("a")).await.unwrap();
    let second = broker.publish("c", message("b")).await.unwrap();
    let other = broker.publish("d", message("x")).await.unwrap();
    assert_eq!((first.offset, second.offset, other.offset), (1, 2, 1));
    assert_eq!(first.epoch, second.epoch);
    let history = broker.history("c", None).await.unwrap();
    assert_eq!((history.top, &history.epoch), (2, &first.epoch));
    assert!(history.publications.is_empty());
}

async fn history_after_a_position<B: Broker>(engine: &impl Engine<B>) {
    let broker = engine(LIMITS, recorder().0);
    for text in ["a", "b", "c", "d"] {
        broker.publish("c", message(text)).await.unwrap();
    }
    let epoch = broker.history("c", None).await.unwrap().epoch;
    let history = broker.history("c", Some(&at(1, &epoch))).await.unwrap();
    assert!(history.complete);
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [2, 3, 4]);
    assert_eq!(history.publications[0].data.get(), r#"{"text":"b"}"#);
    assert_eq!(&*history.publications[0].from, "alice");
    let up_to_date = broker.history("c", Some(&at(4, &epoch))).await.unwrap();
    assert!(up_to_date.complete && up_to_date.publications.is_empty());
    let from_start = broker.history("c", Some(&at(0, &epoch))).await.unwrap();
    assert_eq!(from_start.publications.len(), 4);
}

async fn history_beyond_the_ring_is_not_complete<B: Broker>(engine: &impl Engine<B>) {
    let limits = MemoryLimits {
        history_size: 3,
        ..LIMITS
    };
    let broker = engine(limits, recorder().0);
    for text in ["a", "b", "c", "d", "e"] {
        broker.publish("c", message(text)).await.unwrap();
    }
    let epoch = broker.history("c", None).await.unwrap().epoch;
    let lost = broker.history("c", Some(&at(1, &epoch))).await.unwrap();
    assert!(!lost.complete && lost.publications.is_empty());
    assert_eq!(lost.top, 5);
    let kept = broker.history("c", Some(&at(2, &epoch))).await.unwrap();
    let offsets: Vec<u64> = kept.publications.iter().map(|p| p.offset).collect();
    assert!(kept.complete);
    assert_eq!(offsets, [3, 4, 5]);
}

async fn another_epoch_or_a_future_offset_is_not_complete<B: Broker>(engine: &impl Engine<B>) {
    let broker = engine(LIMITS, recorder().0);
    broker.publish("c", message("a")).await.unwrap();
    let epoch = broker.history("c", None).await.unwrap().epoch;
    let other_epoch = format!("{epoch}x");
    for since in [at(0, &other_epoch), at(2, &epoch)] {
        let history = broker.history("c", Some(&since)).await.unwrap();
        assert!(!history.complete, "{since:?}");
        assert!(history.publications.is_empty());
    }
}

async fn the_sink_follows_the_reference_count<B: Broker>(engine: &impl Engine<B>) {
    let (sink, seen) = recorder();
    let broker = engine(LIMITS, sink);
    broker.publish("c", message("before")).await.unwrap();
    broker.subscribe("c").await.unwrap();
    broker.subscribe("c").await.unwrap();
    broker.publish("c", message("two")).await.unwrap();
    broker.unsubscribe("c").await;
    broker.publish("c", message("one")).await.unwrap();
    broker
        .publish("other", message("not subscribed"))
        .await
        .unwrap();
    // Handed on before the last subscriber leaves (an engine may hand on after the publish
    // returned; after the last unsubscribe it must hand on nothing more).
    settle(&*broker, &seen).await;
    broker.unsubscribe("c").await;
    broker.publish("c", message("none")).await.unwrap();
    settle(&*broker, &seen).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [("c".to_owned(), 2), ("c".to_owned(), 3)]);
}

/// Each publication reaches the sink with the epoch its offset was accepted in: what a
/// subscription checks its deliveries against.
async fn the_sink_names_each_publications_epoch<B: Broker>(engine: &impl Engine<B>) {
    let (record, seen) = recorder();
    let epochs = Arc::new(Mutex::new(Vec::new()));
    let sink: PublicationSink = {
        let epochs = Arc::clone(&epochs);
        Arc::new(move |channel, event| {
            if let (SinkEvent::Publication(_, epoch), "c") = (&event, &**channel) {
                epochs.lock().unwrap().push(*epoch);
            }
            record(channel, event);
        })
    };
    let broker = engine(LIMITS, sink);
    broker.subscribe("c").await.unwrap();
    let accepted = broker.publish("c", message("a")).await.unwrap();
    settle(&*broker, &seen).await;
    assert_eq!(*epochs.lock().unwrap(), [EpochId::of(&accepted.epoch)]);
    broker.unsubscribe("c").await;
}

async fn concurrent_publishers_get_every_offset_once_in_order<B: Broker>(engine: &impl Engine<B>) {
    let (sink, seen) = recorder();
    let broker = engine(LIMITS, sink);
    broker.subscribe("c").await.unwrap();
    let publishers = (0..4).map(|_| {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for _ in 0..50 {
                offsets.push(broker.publish("c", message("x")).await.unwrap().offset);
            }
            offsets
        })
    });
    let mut acknowledged: Vec<u64> = Vec::new();
    for publisher in publishers.collect::<Vec<_>>() {
        acknowledged.extend(publisher.await.unwrap());
    }
    acknowledged.sort_unstable();
    assert_eq!(acknowledged, (1..=200).collect::<Vec<u64>>());
    settle(&*broker, &seen).await;
    let handed: Vec<u64> = seen.lock().unwrap().iter().map(|(_, o)| *o).collect();
    assert_eq!(handed, (1..=200).collect::<Vec<u64>>(), "in offset order");
}

/// The session's pipelining (session/chat/pipeline.rs): publishes made one after the other,
/// all in flight at once, each polled oldest first on every wake-up. Their offsets follow
/// that order in each channel.
async fn publishes_in_flight_get_offsets_in_the_order_polled<B: Broker>(engine: &impl Engine<B>) {
    const COUNT: usize = 64;
    let broker = engine(LIMITS, recorder().0);
    let channel = |n: usize| if n % 2 == 0 { "c" } else { "d" };
    let mut running: Vec<_> = (0..COUNT)
        .map(|n| Some(broker.publish(channel(n), message(&n.to_string()))))
        .collect();
    let mut offsets = [0; COUNT];
    poll_fn(|cx| {
        for (n, slot) in running.iter_mut().enumerate() {
            let Some(publish) = slot else { continue };
            if let Poll::Ready(accepted) = publish.as_mut().poll(cx) {
                offsets[n] = accepted.unwrap().offset;
                *slot = None;
            }
        }
        if running.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    for parity in 0..2 {
        let mine: Vec<u64> = offsets.iter().skip(parity).step_by(2).copied().collect();
        assert_eq!(
            mine,
            (1..=COUNT as u64 / 2).collect::<Vec<_>>(),
            "{offsets:?}"
        );
    }
}

async fn no_history_keeps_offsets<B: Broker>(engine: &impl Engine<B>) {
    let limits = MemoryLimits {
        history_size: 0,
        ..LIMITS
    };
    let broker = engine(limits, recorder().0);
    broker.publish("c", message("a")).await.unwrap();
    let second = broker.publish("c", message("b")).await.unwrap();
    assert_eq!(second.offset, 2);
    let history = broker
        .history("c", Some(&at(1, &second.epoch)))
        .await
        .unwrap();
    assert!(!history.complete && history.publications.is_empty());
    let current = broker
        .history("c", Some(&at(2, &second.epoch)))
        .await
        .unwrap();
    assert!(current.complete, "nothing missed is a complete recovery");
}

async fn the_channel_limit_refuses_only_new_channels<B: Broker>(engine: &impl Engine<B>) {
    let limits = MemoryLimits {
        max_channels: 2,
        ..LIMITS
    };
    let broker = engine(limits, recorder().0);
    broker.publish("a", message("x")).await.unwrap();
    broker.subscribe("b").await.unwrap();
    assert_eq!(
        broker.publish("c", message("x")).await.unwrap_err(),
        BrokerError::ChannelLimit
    );
    assert_eq!(
        broker.subscribe("c").await.unwrap_err(),
        BrokerError::ChannelLimit
    );
    assert!(broker.publish("a", message("y")).await.is_ok());
    assert!(broker.publish("b", message("y")).await.is_ok());
}

async fn expired_history_is_gone_and_a_freed_channel_starts_a_new_epoch<B: Broker>(
    engine: &impl Engine<B>,
) {
    let limits = MemoryLimits {
        history_ttl: Duration::from_millis(100),
        ..LIMITS
    };
    let broker = engine(limits, recorder().0);
    let first = broker.publish("c", message("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = broker.publish("c", message("b")).await.unwrap();
    assert_ne!(later.epoch, first.epoch, "history lost: a new epoch");
    assert_eq!(later.offset, 1);
    let history = broker
        .history("c", Some(&at(0, &first.epoch)))
        .await
        .unwrap();
    assert!(!history.complete);
}
