//! What the Redis engine's calls and its pub/sub task share: the command connection with
//! its timeout and health (`websocket_broker_up`), the two scripts, the keys, the local
//! channel table and the sink. A publish and a history read are one script call each, built
//! in one buffer; a publish is one command, never retried, so that a connection's publishes
//! reach Redis in the order the session issued them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus::IntGauge;
use redis::aio::ConnectionManager;
use redis::{Client, Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};
use tracing::{debug, warn};

use super::super::broker::{
    Accepted, BrokerError, History, NewPublication, PublicationSink, StreamPosition,
};
use super::super::memory::MemoryLimits;
use super::local::LocalChannels;
use super::wire::{self, Keys};
use crate::metrics::{BrokerMetrics, BrokerOperation};

/// What the engine reports to: `websocket_broker_up`, `websocket_channels_active`, and the
/// broker's own series.
#[derive(Clone)]
pub struct RedisGauges {
    pub up: IntGauge,
    pub channels: IntGauge,
    pub metrics: Arc<BrokerMetrics>,
}

/// The publish script's text, sent with `EVAL` while Redis may not hold it.
pub(super) const PUBLISH_SCRIPT: &str = include_str!("publish.lua");

/// What the broker's calls and its pub/sub task share.
pub(super) struct Shared {
    pub(super) commands: ConnectionManager,
    pub(super) client: Client,
    pub(super) keys: Keys,
    pub(super) limits: MemoryLimits,
    pub(super) timeout: Duration,
    pub(super) check_interval: Duration,
    pub(super) publish: Script,
    /// Whether Redis is believed to hold the publish script: publishes send `EVALSHA` then;
    /// otherwise (at start, and after any failed publish: a new Redis, a `SCRIPT FLUSH`)
    /// `EVAL` with its text, which runs it and caches it, until one succeeds.
    pub(super) publish_cached: AtomicBool,
    /// Publishes take their place in line here, first come first served: see [`Shared::publish`].
    pub(super) publish_line: tokio::sync::Mutex<()>,
    pub(super) history: Script,
    pub(super) local: LocalChannels,
    pub(super) sink: PublicationSink,
    pub(super) gauges: RedisGauges,
    pub(super) commands_up: AtomicBool,
    pub(super) pubsub_up: AtomicBool,
}

/// Where a history read starts.
#[derive(Clone, Copy)]
pub(super) enum ReadFrom<'a> {
    /// Nowhere: the channel's position only.
    Top,
    /// After a client's position: its claim, which never changes the channel.
    Client(&'a StreamPosition),
    /// After what this process delivered from Redis: a position beyond Redis's top in the
    /// same epoch proves that Redis lost answered writes, and the history script gives the
    /// channel a new epoch (docs/redis.md, "Redis going back").
    Delivered(&'a StreamPosition),
    /// After what this process delivered, once its pub/sub brought an offset it had brought
    /// before in the same epoch: Redis went back, and the channel gets a new epoch.
    WentBack(&'a StreamPosition),
}

impl<'a> ReadFrom<'a> {
    fn position(self) -> Option<&'a StreamPosition> {
        match self {
            ReadFrom::Top => None,
            ReadFrom::Client(position)
            | ReadFrom::Delivered(position)
            | ReadFrom::WentBack(position) => Some(position),
        }
    }

    /// The history script's word for whose position it is.
    fn claim(self) -> &'static str {
        match self {
            ReadFrom::Top | ReadFrom::Client(_) => "",
            ReadFrom::Delivered(_) => "delivered",
            ReadFrom::WentBack(_) => "went-back",
        }
    }
}

/// A history read as Redis answered it: epoch, top, and `(id, [field, value])` entries.
type RawHistory = (String, u64, Vec<(String, Vec<Vec<u8>>)>);

impl Shared {
    /// `websocket_broker_up`: both connections work.
    pub(super) fn refresh_up(&self) {
        let up = self.is_up();
        self.gauges.up.set(i64::from(up));
    }

    pub(super) fn is_up(&self) -> bool {
        self.commands_up.load(Ordering::Relaxed) && self.pubsub_up.load(Ordering::Relaxed)
    }

    pub(super) fn set_commands_up(&self, up: bool) {
        if self.commands_up.swap(up, Ordering::Relaxed) != up {
            self.refresh_up();
        }
    }

    pub(super) fn set_pubsub_up(&self, up: bool) {
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
    pub(super) async fn probe(&self) {
        let mut commands = self.commands.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<()>(&mut commands);
        let answered = matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(())));
        self.set_commands_up(answered);
    }

    pub(super) async fn publish(
        &self,
        channel: &str,
        publication: NewPublication,
    ) -> Result<Accepted, BrokerError> {
        self.local.published(channel)?;
        let started = Instant::now();
        let cached = self.publish_cached.load(Ordering::Relaxed);
        let command = self.publish_command(cached, channel, &publication);
        let mut commands = self.commands.clone();
        let query = command.query_async(&mut commands);
        let answer = self
            .in_line(self.call(BrokerOperation::Publish, query))
            .await;
        // No `SCRIPT LOAD` and retry on `NOSCRIPT` (what `Script::invoke_async` does): a retry
        // would reach Redis after the publishes issued behind this one, and take a later
        // offset. A refused publish was not run; the next ones send the text.
        if answer.is_ok() != cached {
            self.publish_cached.store(answer.is_ok(), Ordering::Relaxed);
        }
        let (offset, epoch): (u64, String) = answer?;
        self.gauges
            .metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(Accepted {
            offset,
            epoch: epoch.into(),
        })
    }

    /// Runs a publish's call in request order: the publishes of a connection come here in
    /// the order it read them (its session polls them oldest first), and take their place in
    /// the publish line in that order. While the command connection is up, a call's first
    /// poll writes its command to the connection's queue, first in first out, so the line is
    /// left right after it and the publishes are pipelined. Otherwise (at start, or after a
    /// failed call) the connection may still be under way, and a later publish polled just
    /// as it arrives would go first: then the line is held until the call ends, one publish
    /// at a time, until one succeeds. The wait for a place is bounded by `REDIS_TIMEOUT` too:
    /// past it the publish is refused without being sent, so while Redis is away the line
    /// refuses publishes as calls do (a publish is answered within twice `REDIS_TIMEOUT`).
    async fn in_line<T>(
        &self,
        call: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let line = tokio::time::timeout(self.timeout, self.publish_line.lock()).await;
        let Ok(place) = line else {
            self.gauges.metrics.error(BrokerOperation::Publish);
            debug!("redis publish refused: no place in the publish line within the timeout");
            return Err(BrokerError::Unavailable);
        };
        let mut call = std::pin::pin!(call);
        if !self.commands_up.load(Ordering::Relaxed) {
            return call.await;
        }
        if let std::task::Poll::Ready(answer) = futures_util::poll!(call.as_mut()) {
            return answer;
        }
        drop(place);
        call.await
    }

    /// The publish script's call: `EVALSHA` when Redis is believed to hold it, else `EVAL`
    /// with its text.
    fn publish_command(&self, cached: bool, channel: &str, publication: &NewPublication) -> Cmd {
        let size = channel.len() * 3 + publication.data.get().len() + publication.from.len();
        let mut call = if cached {
            self.script_call("EVALSHA", self.publish.get_hash(), channel, size)
        } else {
            self.script_call("EVAL", PUBLISH_SCRIPT, channel, size + PUBLISH_SCRIPT.len())
        };
        call.arg(self.limits.history_size)
            .arg(self.limits.history_ttl.as_millis() as u64)
            .arg(self.keys.topic_arg(channel))
            .arg(wire::new_epoch())
            .arg(wire::Body(publication));
        call
    }

    /// The channel's epoch and top, and after a position the publications since it when
    /// the stream holds every one of them.
    pub(super) async fn read(
        &self,
        channel: &str,
        from: ReadFrom<'_>,
    ) -> Result<History, BrokerError> {
        let since = from.position();
        let hash = self.history.get_hash();
        let mut call = self.script_call("EVALSHA", hash, channel, channel.len() * 2);
        call.arg(self.limits.history_ttl.as_millis() as u64)
            .arg(wire::new_epoch())
            .arg(since.map_or(String::new(), |s| s.offset.to_string()))
            .arg(since.map_or("", |s| s.epoch.as_str()))
            .arg(from.claim());
        let (epoch, top, entries): RawHistory = self
            .call(BrokerOperation::History, self.eval(&self.history, &call))
            .await?;
        Ok(history_of(channel, epoch.into(), top, since, &entries))
    }

    /// `verb` (`EVALSHA` with a script's hash, or `EVAL` with its text) of `script` on
    /// `channel`'s two keys (meta hash, history stream), its arguments to follow, in a buffer
    /// sized for about `size` bytes of them.
    fn script_call(&self, verb: &str, script: &str, channel: &str, size: usize) -> Cmd {
        let mut call = Cmd::with_capacity(10, 128 + 2 * self.keys.prefix_len() + size);
        call.arg(verb)
            .arg(script)
            .arg(2)
            .arg(self.keys.meta(channel))
            .arg(self.keys.history(channel));
        call
    }

    /// Runs a script call; a Redis without the script (restarted, flushed) gets it loaded
    /// and the call again.
    async fn eval<T: FromRedisValue>(&self, script: &Script, call: &Cmd) -> RedisResult<T> {
        let mut commands = self.commands.clone();
        match call.query_async(&mut commands).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(&mut commands).await?;
                call.query_async(&mut commands).await
            }
            result => result,
        }
    }

    /// The positions of `channels`, read all at once: the reads share the multiplexed
    /// connection, so they cost one round trip together rather than one each.
    pub(super) async fn positions(
        &self,
        channels: &[Arc<str>],
    ) -> Vec<Result<History, BrokerError>> {
        join_all(
            channels
                .iter()
                .map(|channel| self.read(channel, ReadFrom::Top)),
        )
        .await
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
