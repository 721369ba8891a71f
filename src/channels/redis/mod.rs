//! The Redis engine (`BROKER=redis`): the channels of every process sharing one Redis. A
//! publish is one Lua script (`publish.lua`, run by its hash) that assigns the channel's next
//! offset, appends to its history stream, keeps its epoch and publishes to its pub/sub topic,
//! so every process agrees on offsets; commands go over one multiplexed connection that
//! reconnects by itself. The pub/sub connection, its per-channel reference counts and the
//! repair of gaps live in `pubsub.rs`; what is written in Redis, in `wire.rs`. Layout and
//! guarantees: docs/redis.md.

mod local;
mod pubsub;
mod shared;
mod wire;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::{mpsc, oneshot};

use super::broker::{
    Accepted, Broker, BrokerError, History, NewPublication, PublicationSink, StreamPosition,
};
use super::memory::MemoryLimits;
use crate::metrics::BrokerOperation;
use local::LocalChannels;
use pubsub::Control;
pub use shared::RedisGauges;
use shared::{ReadFrom, Shared};
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

/// The Redis broker.
pub struct RedisBroker {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

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
            publish: Script::new(shared::PUBLISH_SCRIPT),
            publish_cached: AtomicBool::new(false),
            publish_line: tokio::sync::Mutex::new(()),
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

/// A subscribe asked of the pub/sub task and not (or not yet) taken by its caller: given
/// up (timed out, refused, or its future dropped), it takes back exactly what was counted for
/// it. The task counts a subscriber only when its `Ok` reaches the answer, so the answer is
/// closed first: an `Ok` that arrived before is given back with an unsubscribe, one after
/// finds the answer closed and is not counted. (An unsubscribe sent for any subscribe that
/// timed out took another subscriber's place when the task had refused this one.)
struct Asked<'a> {
    broker: &'a RedisBroker,
    channel: &'a str,
    answer: oneshot::Receiver<Result<(), ()>>,
    taken: bool,
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        self.answer.close();
        if let Ok(Ok(())) = self.answer.try_recv() {
            let unsubscribe = Control::Unsubscribe(self.channel.into());
            let _ = self.broker.control.send(unsubscribe);
        }
        self.broker.shared.local.unsubscribed(self.channel);
    }
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
            let from = since.map_or(ReadFrom::Top, ReadFrom::Client);
            self.shared.read(channel, from).await
        }
        .boxed()
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            self.shared.local.subscribed(channel)?;
            let (reply, answer) = oneshot::channel();
            let mut asked = Asked {
                broker: self,
                channel,
                answer,
                taken: false,
            };
            if self
                .control
                .send(Control::Subscribe(channel.into(), reply))
                .is_ok()
            {
                // The task answers within its own timeouts (SUBSCRIBE, then the position
                // read), or later when a batch or a reconnection holds it up.
                let wait = 3 * self.shared.timeout;
                if let Ok(Ok(Ok(()))) = tokio::time::timeout(wait, &mut asked.answer).await {
                    asked.taken = true;
                    return Ok(());
                }
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
