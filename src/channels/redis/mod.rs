//! The Redis engine (`BROKER=redis`): the channels of every process sharing one Redis. A
//! publish is one Lua script (`publish.lua`, run by its hash) that assigns the channel's next
//! offset, appends to its history stream, keeps its epoch and publishes to its pub/sub topic,
//! so every process agrees on offsets; commands go over one multiplexed connection that
//! reconnects by itself. The pub/sub connection, its per-channel reference counts and the
//! repair of gaps live in `pubsub.rs`; what is written in Redis, in `wire.rs`. Layout and
//! guarantees: docs/redis.md.

mod local;
mod pubsub;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use prometheus::IntGauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::broker::{
    Accepted, Broker, BrokerError, History, NewPublication, PublicationSink, StreamPosition,
};
use super::memory::MemoryLimits;
use crate::metrics::{BrokerMetrics, BrokerOperation};
use local::LocalChannels;
use pubsub::Control;
use wire::Keys;

/// Where Redis is and how long to wait for it (from `RedisConfig`). No `Debug`: the
/// connection holds the password.
#[derive(Clone)]
pub struct RedisSettings {
    pub connection: redis::ConnectionInfo,
    pub key_prefix: String,
    /// For one command; past it the call fails `Unavailable`.
    pub timeout: Duration,
    pub position_check_interval: Duration,
}

/// What the engine reports to: `websocket_broker_up`, `websocket_channels_active`, and the
/// broker's own series.
#[derive(Clone)]
pub struct RedisGauges {
    pub up: IntGauge,
    pub channels: IntGauge,
    pub metrics: Arc<BrokerMetrics>,
}

/// The Redis broker.
pub struct RedisBroker {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

/// What the broker's calls and its pub/sub task share.
struct Shared {
    commands: ConnectionManager,
    client: Client,
    keys: Keys,
    limits: MemoryLimits,
    timeout: Duration,
    check_interval: Duration,
    publish: Script,
    history: Script,
    local: LocalChannels,
    sink: PublicationSink,
    gauges: RedisGauges,
    commands_up: AtomicBool,
    pubsub_up: AtomicBool,
}

/// A history read as Redis answered it: epoch, top, and `(id, [field, value])` entries.
type RawHistory = (String, u64, Vec<(String, Vec<Vec<u8>>)>);

impl RedisBroker {
    /// An engine on the Redis of `settings`, handing publications to `sink`; its pub/sub
    /// task runs on the current runtime until the engine is dropped. Redis need not be up:
    /// until it is, calls fail `Unavailable`.
    pub fn start(
        settings: RedisSettings,
        limits: MemoryLimits,
        gauges: RedisGauges,
        sink: PublicationSink,
    ) -> Arc<RedisBroker> {
        // rediss://: one process-wide provider; already installed is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = Client::open(settings.connection).expect("a parsed ConnectionInfo opens");
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(1);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .expect("no automatic resubscription asked, so no push sender needed");
        let shared = Arc::new(Shared {
            commands,
            client,
            keys: Keys::new(&settings.key_prefix),
            limits,
            timeout: settings.timeout,
            check_interval: settings.position_check_interval,
            publish: Script::new(include_str!("publish.lua")),
            history: Script::new(include_str!("history.lua")),
            local: LocalChannels::new(limits, gauges.channels.clone()),
            sink,
            gauges,
            commands_up: AtomicBool::new(false),
            pubsub_up: AtomicBool::new(false),
        });
        shared.refresh_up();
        let (control, requests) = mpsc::unbounded_channel();
        tokio::spawn(pubsub::run(Arc::clone(&shared), requests));
        Arc::new(RedisBroker { shared, control })
    }
}

impl Shared {
    /// `websocket_broker_up`: both connections work.
    fn refresh_up(&self) {
        let up = self.is_up();
        self.gauges.up.set(i64::from(up));
    }

    fn is_up(&self) -> bool {
        self.commands_up.load(Ordering::Relaxed) && self.pubsub_up.load(Ordering::Relaxed)
    }

    fn set_commands_up(&self, up: bool) {
        if self.commands_up.swap(up, Ordering::Relaxed) != up {
            self.refresh_up();
        }
    }

    fn set_pubsub_up(&self, up: bool) {
        if self.pubsub_up.swap(up, Ordering::Relaxed) != up {
            self.refresh_up();
        }
    }

    /// Runs one command future within `REDIS_TIMEOUT`; a failure counts under `operation`.
    async fn call<T>(
        &self,
        operation: BrokerOperation,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let result = tokio::time::timeout(self.timeout, command).await;
        match result {
            Ok(Ok(value)) => {
                self.set_commands_up(true);
                Ok(value)
            }
            Ok(Err(error)) => {
                // A server's error reply (out of memory, a script error) is no connection
                // loss, but the call failed all the same: refused, never acknowledged.
                if !matches!(error.kind(), redis::ErrorKind::Server(_)) {
                    self.set_commands_up(false);
                }
                self.gauges.metrics.error(operation);
                debug!(?operation, %error, "redis command failed");
                Err(BrokerError::Unavailable)
            }
            Err(_elapsed) => {
                self.set_commands_up(false);
                self.gauges.metrics.error(operation);
                debug!(?operation, "redis command timed out");
                Err(BrokerError::Unavailable)
            }
        }
    }

    /// Whether the command connection answers (sets `websocket_broker_up` accordingly): for
    /// when no call has told since it failed.
    async fn probe(&self) {
        let mut commands = self.commands.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<()>(&mut commands);
        let answered = matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(())));
        self.set_commands_up(answered);
    }

    async fn publish(
        &self,
        channel: &str,
        publication: NewPublication,
    ) -> Result<Accepted, BrokerError> {
        self.local.published(channel)?;
        let started = Instant::now();
        let [meta, history] = self.keys.channel(channel);
        let mut commands = self.commands.clone();
        let mut invocation = self.publish.key(meta);
        invocation
            .key(history)
            .arg(self.limits.history_size)
            .arg(self.limits.history_ttl.as_millis() as u64)
            .arg(self.keys.topic(channel))
            .arg(&*wire::new_epoch())
            .arg(wire::body(&publication));
        let (offset, epoch): (u64, String) = self
            .call(
                BrokerOperation::Publish,
                invocation.invoke_async(&mut commands),
            )
            .await?;
        self.gauges
            .metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(Accepted {
            offset,
            epoch: epoch.into(),
        })
    }

    /// The channel's epoch and top, and with `since` the publications after it when the
    /// stream holds every one of them.
    async fn read(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<History, BrokerError> {
        let [meta, history] = self.keys.channel(channel);
        let mut commands = self.commands.clone();
        let mut invocation = self.history.key(meta);
        invocation
            .key(history)
            .arg(self.limits.history_ttl.as_millis() as u64)
            .arg(&*wire::new_epoch())
            .arg(since.map_or(String::new(), |s| s.offset.to_string()))
            .arg(since.map_or("", |s| s.epoch.as_str()));
        let (epoch, top, entries): RawHistory = self
            .call(
                BrokerOperation::History,
                invocation.invoke_async(&mut commands),
            )
            .await?;
        Ok(history_of(channel, epoch.into(), top, since, &entries))
    }
}

/// A [`History`] from what the script returned: complete when `since` is in this epoch and
/// the entries run without a hole from just after it to the top.
fn history_of(
    channel: &str,
    epoch: Arc<str>,
    top: u64,
    since: Option<&StreamPosition>,
    entries: &[(String, Vec<Vec<u8>>)],
) -> History {
    let mut history = History {
        epoch,
        top,
        publications: Vec::new(),
        complete: false,
    };
    let Some(since) = since else {
        return history;
    };
    if *since.epoch != *history.epoch || since.offset > top {
        return history;
    }
    let first = entries.first().and_then(|(id, _)| wire::entry_offset(id));
    if since.offset < top && first != Some(since.offset + 1) {
        return history; // trimmed or expired: the stream starts after what is missing
    }
    let mut publications = Vec::with_capacity(entries.len());
    for (expected, (id, fields)) in (since.offset + 1..).zip(entries) {
        let publication = wire::entry_offset(id)
            .filter(|&offset| offset == expected)
            .zip(fields.get(1))
            .and_then(|(offset, body)| wire::publication(offset, body));
        let Some(publication) = publication else {
            warn!(channel, id, "unreadable history entry");
            return history;
        };
        publications.push(Arc::new(publication));
    }
    history.complete = since.offset + publications.len() as u64 == top;
    if history.complete {
        history.publications = publications;
    }
    history
}

impl Broker for RedisBroker {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: NewPublication,
    ) -> BoxFuture<'a, Result<Accepted, BrokerError>> {
        self.shared.publish(channel, publication).boxed()
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<&'a StreamPosition>,
    ) -> BoxFuture<'a, Result<History, BrokerError>> {
        async move {
            self.shared.local.admits(channel)?;
            self.shared.read(channel, since).await
        }
        .boxed()
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            self.shared.local.subscribed(channel)?;
            let (reply, answer) = oneshot::channel();
            let sent = self.control.send(Control::Subscribe(channel.into(), reply));
            // The task answers within its own timeouts (SUBSCRIBE, then the position read);
            // this bound only guards against a task that is gone.
            let answered = tokio::time::timeout(3 * self.shared.timeout, answer).await;
            let live = sent.is_ok() && matches!(answered, Ok(Ok(Ok(()))));
            if live {
                return Ok(());
            }
            self.shared.local.unsubscribed(channel);
            if sent.is_ok() && answered.is_err() {
                // Timed out: the task may still count this subscriber; take it back.
                let _ = self.control.send(Control::Unsubscribe(channel.into()));
            }
            self.shared.gauges.metrics.error(BrokerOperation::Subscribe);
            Err(BrokerError::Unavailable)
        }
        .boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, ()> {
        self.shared.local.unsubscribed(channel);
        // Fails only when the task is gone (runtime shutting down): nothing left to undo.
        let _ = self.control.send(Control::Unsubscribe(channel.into()));
        futures_util::future::ready(()).boxed()
    }

    fn is_up(&self) -> bool {
        self.shared.is_up()
    }
}
