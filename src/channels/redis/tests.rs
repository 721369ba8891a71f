//! The Redis engine against a real redis-server (skipped with the reason when the machine has
//! none, a failure under `REQUIRE_ALL_TESTS=1`): the conformance tests every engine passes,
//! then what only a shared, faulty broker does: gaps repaired from history, gaps it cannot
//! fill, a lost pub/sub connection, Redis down and back.

#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;
#[path = "../../../tests/common/skip.rs"]
mod skip;

mod counts;

use std::sync::atomic::{AtomicU32, Ordering};

use prometheus::{IntGauge, Registry};
use redis_server::RedisServer;

use super::*;
use crate::channels::conformance::{self, Seen, at, message, recorder, settle};
use crate::metrics::{BrokerMetrics, GapRepair};
use redis::IntoConnectionInfo;

const LIMITS: MemoryLimits = MemoryLimits {
    history_size: 10,
    history_ttl: Duration::from_secs(300),
    history_max_bytes: 1 << 20,
    max_channels: 1000,
};

const CHECK: Duration = Duration::from_millis(200);

/// A key prefix no other engine of this test run uses: a fresh keyspace.
fn fresh_prefix() -> String {
    static ENGINES: AtomicU32 = AtomicU32::new(0);
    format!("t{}", ENGINES.fetch_add(1, Ordering::Relaxed))
}

fn gauges() -> RedisGauges {
    RedisGauges {
        up: IntGauge::new("up", "up").unwrap(),
        channels: IntGauge::new("c", "c").unwrap(),
        metrics: Arc::new(BrokerMetrics::new(&Registry::new())),
    }
}

fn engine(
    redis: &RedisServer,
    prefix: &str,
    limits: MemoryLimits,
    gauges: RedisGauges,
    sink: PublicationSink,
) -> Arc<RedisBroker> {
    engine_checking(redis, prefix, CHECK, limits, gauges, sink)
}

/// An engine whose position checks run every `check`.
fn engine_checking(
    redis: &RedisServer,
    prefix: &str,
    check: Duration,
    limits: MemoryLimits,
    gauges: RedisGauges,
    sink: PublicationSink,
) -> Arc<RedisBroker> {
    let settings = RedisSettings {
        connection: redis.url().as_str().into_connection_info().unwrap(),
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(1),
        position_check_interval: check,
    };
    RedisBroker::start(settings, limits, gauges, sink)
}

/// Publishes as the script does but to no subscriber: what pub/sub losing a message looks
/// like to a process.
async fn publish_unseen(redis: &RedisServer, prefix: &str, channel: &str, history_size: usize) {
    let client = Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys = wire::Keys::new(prefix);
    let (_, _): (u64, String) = Script::new(include_str!("publish.lua"))
        .key(keys.meta(channel))
        .key(keys.history(channel))
        .arg(history_size)
        .arg(300_000)
        .arg("nobody-listens")
        .arg("unused-epoch")
        .arg(wire::Body(&message("unseen")))
        .invoke_async(&mut connection)
        .await
        .unwrap();
}

/// Waits until what the sink saw (offsets, 0 for a gap) passes `done`; fails with it after
/// 10 s.
async fn wait_until(seen: &Seen, what: &str, done: impl Fn(&[u64]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<u64> = seen.lock().unwrap().iter().map(|(_, o)| *o).collect();
        if done(&got) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink got {got:?}, expected {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the sink saw exactly `want`.
async fn wait_for(seen: &Seen, want: &[u64]) {
    wait_until(seen, &format!("{want:?}"), |got| got == want).await;
}

/// Gap repairs counted: (filled, insufficient_state).
fn repairs(gauges: &RedisGauges) -> (u64, u64) {
    let metrics = &gauges.metrics;
    (
        metrics.gap_repairs_of(GapRepair::Filled),
        metrics.gap_repairs_of(GapRepair::InsufficientState),
    )
}

/// One test's engine on a keyspace of its own, with its gauges and what its sink saw.
struct Fixture {
    prefix: String,
    limits: MemoryLimits,
    gauges: RedisGauges,
    seen: Seen,
    broker: Arc<RedisBroker>,
}

impl Fixture {
    /// An engine on `redis` with position checks every [`CHECK`].
    fn new(redis: &RedisServer, limits: MemoryLimits) -> Fixture {
        let (prefix, gauges, (sink, seen)) = (fresh_prefix(), gauges(), recorder());
        let broker = engine(redis, &prefix, limits, gauges.clone(), sink);
        Fixture {
            prefix,
            limits,
            gauges,
            seen,
            broker,
        }
    }

    /// An engine subscribed to channel `c`, after that channel's first publication (offset
    /// 1, delivered or on its way).
    async fn listening(redis: &RedisServer, limits: MemoryLimits) -> Fixture {
        let fixture = Fixture::new(redis, limits);
        fixture.broker.subscribe("c").await.unwrap();
        fixture.broker.publish("c", message("1")).await.unwrap();
        fixture
    }

    /// `count` publications to `c` that pub/sub does not bring to this engine.
    async fn publish_unseen(&self, redis: &RedisServer, count: usize) {
        for _ in 0..count {
            publish_unseen(redis, &self.prefix, "c", self.limits.history_size).await;
        }
    }
}

#[tokio::test]
async fn the_redis_engine_conforms() {
    let Some(redis) = RedisServer::start_or_skip("the_redis_engine_conforms") else {
        return;
    };
    conformance::run_all(|limits, sink| engine(&redis, &fresh_prefix(), limits, gauges(), sink))
        .await;
}

#[tokio::test]
async fn an_offset_out_of_sequence_is_filled_from_history_in_order() {
    let name = "an_offset_out_of_sequence_is_filled_from_history_in_order";
    let Some(redis) = RedisServer::start_or_skip(name) else {
        return;
    };
    let test = Fixture::listening(&redis, LIMITS).await;
    test.publish_unseen(&redis, 2).await;
    test.broker.publish("c", message("4")).await.unwrap();
    wait_for(&test.seen, &[1, 2, 3, 4]).await;
    assert_eq!(repairs(&test.gauges), (1, 0));
}

#[tokio::test]
async fn the_position_check_finds_what_pubsub_dropped_silently() {
    let name = "the_position_check_finds_what_pubsub_dropped_silently";
    let Some(redis) = RedisServer::start_or_skip(name) else {
        return;
    };
    let test = Fixture::listening(&redis, LIMITS).await;
    test.publish_unseen(&redis, 1).await;
    // No later publication shows the hole: two checks later it is filled.
    wait_for(&test.seen, &[1, 2]).await;
    assert_eq!(repairs(&test.gauges), (1, 0));
}

#[tokio::test]
async fn a_gap_beyond_the_history_ends_the_local_subscribers() {
    let name = "a_gap_beyond_the_history_ends_the_local_subscribers";
    let Some(redis) = RedisServer::start_or_skip(name) else {
        return;
    };
    let limits = MemoryLimits {
        history_size: 2,
        ..LIMITS
    };
    let test = Fixture::listening(&redis, limits).await;
    test.publish_unseen(&redis, 3).await;
    test.broker.publish("c", message("5")).await.unwrap();
    // 2 was trimmed away: a gap (0) and no publication out of order; the channel then goes on
    // from Redis's top (5, or 4 when a position check found the hole first).
    wait_until(&test.seen, "[1, 0]", |got| got.starts_with(&[1, 0])).await;
    test.broker.publish("c", message("6")).await.unwrap();
    let after_the_gap = |got: &[u64]| got == [1, 0, 6] || got == [1, 0, 5, 6];
    wait_until(&test.seen, "[1, 0, 6]", after_the_gap).await;
    assert_eq!(repairs(&test.gauges), (0, 1));
}

#[tokio::test]
async fn a_new_epoch_is_a_gap() {
    let Some(redis) = RedisServer::start_or_skip("a_new_epoch_is_a_gap") else {
        return;
    };
    let test = Fixture::listening(&redis, LIMITS).await;
    wait_for(&test.seen, &[1]).await;
    let first = test.broker.history("c", None).await.unwrap().epoch;
    // Redis loses the channel (a restart without persistence, a flush).
    redis.cli(&["flushall"]);
    let later = test.broker.publish("c", message("again")).await.unwrap();
    assert_eq!(later.offset, 1);
    assert_ne!(later.epoch, first);
    // The gap, found by the new epoch's message or by a position check; what follows in the
    // new epoch is handed on.
    wait_until(&test.seen, "[1, 0]", |got| got.starts_with(&[1, 0])).await;
    test.broker.publish("c", message("next")).await.unwrap();
    let after_the_gap = |got: &[u64]| got == [1, 0, 2] || got == [1, 0, 1, 2];
    wait_until(&test.seen, "[1, 0, 2]", after_the_gap).await;
    assert_eq!(repairs(&test.gauges), (0, 1));
}

#[tokio::test]
async fn a_lost_pubsub_connection_is_made_again_without_a_gap() {
    let name = "a_lost_pubsub_connection_is_made_again_without_a_gap";
    let Some(redis) = RedisServer::start_or_skip(name) else {
        return;
    };
    let test = Fixture::listening(&redis, LIMITS).await;
    wait_for(&test.seen, &[1]).await;
    redis.cli(&["client", "kill", "type", "pubsub"]);
    for text in ["2", "3", "4"] {
        test.broker.publish("c", message(text)).await.unwrap();
    }
    wait_for(&test.seen, &[1, 2, 3, 4]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while test.gauges.metrics.pubsub_reconnects.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnect counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    test.broker.publish("c", message("5")).await.unwrap();
    wait_for(&test.seen, &[1, 2, 3, 4, 5]).await;
    assert_eq!(repairs(&test.gauges).1, 0);
}

#[tokio::test]
async fn while_redis_is_down_calls_are_refused_and_service_comes_back() {
    let test = "while_redis_is_down_calls_are_refused_and_service_comes_back";
    let Some(mut redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let Fixture {
        gauges,
        seen,
        broker,
        ..
    } = Fixture::new(&redis, LIMITS);
    broker.subscribe("c").await.unwrap();
    settle(&*broker, &seen).await;
    assert!(broker.is_up() && gauges.up.get() == 1);
    redis.kill();
    let refused = broker.publish("c", message("lost?")).await.unwrap_err();
    assert_eq!(refused, BrokerError::Unavailable);
    assert_eq!(
        broker.subscribe("d").await.unwrap_err(),
        BrokerError::Unavailable
    );
    assert_eq!(
        broker.history("c", None).await.unwrap_err(),
        BrokerError::Unavailable
    );
    assert!(!broker.is_up() && gauges.up.get() == 0);
    redis.run();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !broker.is_up() || broker.publish("c", message("back")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no service after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauges.up.get(), 1);
    broker.subscribe("d").await.unwrap();
    let history = broker.history("c", Some(&at(0, "x"))).await.unwrap();
    assert!(
        !history.complete,
        "a restart without persistence: another epoch"
    );
}

/// `INFO commandstats` calls of `command` so far.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    let stats = redis.cli(&["info", "commandstats"]);
    let count = stats.lines().find_map(|line| line.strip_prefix(&prefix));
    count
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

/// The topics Redis has subscribers for.
fn topics(redis: &RedisServer) -> Vec<String> {
    let listed = redis.cli(&["pubsub", "channels"]);
    listed.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_subscribes_all_succeed_and_deliveries_go_on() {
    const BURST: usize = 2000;
    let test = "a_burst_of_subscribes_all_succeed_and_deliveries_go_on";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let limits = MemoryLimits {
        max_channels: 2 * BURST,
        ..LIMITS
    };
    let (prefix, (sink, seen)) = (fresh_prefix(), recorder());
    // No position check within the test: every EVALSHA counted is a subscribe's or publish's.
    let hour = Duration::from_secs(3600);
    let broker = engine_checking(&redis, &prefix, hour, limits, gauges(), sink);
    broker.subscribe("early").await.unwrap();
    let before = [calls(&redis, "subscribe"), calls(&redis, "evalsha")];
    let started = std::time::Instant::now();
    let delivered = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            wait_for(&seen, &[1]).await;
            started.elapsed()
        }
    });
    let burst = (0..BURST).map(|i| {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move { broker.subscribe(&format!("burst{i}")).await })
    });
    let burst = futures_util::future::join_all(burst);
    let (answers, published) = tokio::join!(burst, broker.publish("early", message("during")));
    let elapsed = started.elapsed();
    let refused = answers.iter().filter(|a| !matches!(a, Ok(Ok(())))).count();
    assert_eq!(refused, 0, "subscribes refused in the burst");
    assert_eq!(published.unwrap().offset, 1);
    let delivered = delivered.await.unwrap();
    assert_eq!(topics(&redis).len(), BURST + 1, "one topic per channel");
    let after = [calls(&redis, "subscribe"), calls(&redis, "evalsha")];
    println!(
        "{BURST} subscribes from {BURST} tasks at once: {elapsed:?}, {} SUBSCRIBE and {} EVALSHA \
         commands (the publication's included); the publication made with them delivered after \
         {delivered:?}",
        after[0] - before[0],
        after[1] - before[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_and_deliveries_go_on_while_position_checks_read() {
    const CHANNELS: usize = 1000;
    const WAVES: usize = 20;
    let test = "subscribes_and_deliveries_go_on_while_position_checks_read";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let limits = MemoryLimits {
        max_channels: 2 * CHANNELS + 1,
        ..LIMITS
    };
    let (prefix, (sink, seen)) = (fresh_prefix(), recorder());
    // Checks back to back, each reading every channel subscribed so far, 256 reads at a time.
    let check = Duration::from_millis(1);
    let broker = engine_checking(&redis, &prefix, check, limits, gauges(), sink);
    broker.subscribe("watched").await.unwrap();
    let subscribe_wave = |wave: usize| {
        let subscribes = (0..CHANNELS / WAVES).map(|i| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move { broker.subscribe(&format!("wave{wave}-{i}")).await })
        });
        futures_util::future::join_all(subscribes)
    };
    let mut refused = 0;
    for wave in 0..2 * WAVES {
        let answers = subscribe_wave(wave).await;
        refused += answers.iter().filter(|a| !matches!(a, Ok(Ok(())))).count();
        if wave == WAVES {
            broker.publish("watched", message("during")).await.unwrap();
        }
    }
    // Every read is an EVALSHA: one per channel subscribed, the rest the checks'.
    let check_reads = (calls(&redis, "evalsha") as usize).saturating_sub(2 * CHANNELS + 1);
    assert_eq!(
        refused, 0,
        "subscribes refused beside {check_reads} check reads"
    );
    wait_for(&seen, &[1]).await;
    println!(
        "{} subscribes in {} waves of {}, beside {check_reads} position reads of the checks: \
         none refused, the publication made meanwhile delivered",
        2 * CHANNELS,
        2 * WAVES,
        CHANNELS / WAVES
    );
}
