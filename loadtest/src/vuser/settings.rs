//! What every user of a run does ([`Behaviour`], part of the plan a worker receives) and
//! what the users of one process share ([`UserContext`]): the target and its TLS client, the
//! recorder, the payload, and the waits derived from the timeout.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::channels::ChannelPlan;
use crate::net::Target;
use crate::stats::Recorder;
use crate::tls::TlsClient;

/// What every user of a run does, apart from when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// `message`s per second per user on an open-loop schedule (0 = idle users).
    pub rate: f64,
    /// When set, closed loop instead: keep this many `message`s in flight, send the next as
    /// soon as one is answered (for throughput benchmarks; latency is then from the send).
    pub closed_loop_window: Option<u32>,
    /// Size of the string sent as `data`.
    pub payload_bytes: usize,
    /// Connect and answer timeout.
    pub timeout_ms: u64,
    /// Close as soon as the connection is established and open a new one (handshake rate).
    pub churn: bool,
    /// A channel scenario instead of `message`s.
    pub channels: Option<ChannelPlan>,
}

/// Settings and shared state of all users of one process.
pub struct UserContext {
    pub target: Target,
    pub behaviour: Behaviour,
    pub recorder: Arc<Recorder>,
    /// Makes connection ids unique per run, so that runs never `replace` each other.
    pub run_tag: String,
    pub(super) payload: String,
    pub(super) timeout: Duration,
    /// For a `wss://` target.
    pub(super) tls: Option<TlsClient>,
    /// When the process's run began: channel users publish from `publish_from_ms` to `publish_for_ms` after it.
    pub(super) started: Instant,
}

/// The longest a user waits for its answers after a `goodbye`: the server answers for at most
/// 1 s after its goodbye (a fifth of `SHUTDOWN_TIMEOUT`, capped) and then closes anyway, so a
/// longer wait could only delay the reconnect.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

impl UserContext {
    /// Fails only when TLS for a `wss://` target cannot be set up (no root certificate).
    pub fn new(
        target: Target,
        behaviour: Behaviour,
        recorder: Arc<Recorder>,
        run_tag: String,
    ) -> Result<Self, String> {
        let payload = "x".repeat(behaviour.payload_bytes);
        let timeout = Duration::from_millis(behaviour.timeout_ms);
        let tls = target.tls.as_ref().map(|tls| tls.client()).transpose()?;
        Ok(UserContext {
            target,
            behaviour,
            recorder,
            run_tag,
            payload,
            timeout,
            tls,
            started: Instant::now(),
        })
    }

    /// When channel users start and stop publishing.
    pub(super) fn publishing(&self) -> (Instant, Instant) {
        let (from, until) = self
            .behaviour
            .channels
            .as_ref()
            .map_or((0, 0), |p| (p.publish_from_ms, p.publish_for_ms));
        let at = |ms| self.started + Duration::from_millis(ms);
        (at(from), at(until))
    }

    /// How long a stopping user waits for its outstanding answers.
    pub(super) fn drain_grace(&self) -> Duration {
        self.timeout.min(Duration::from_secs(5))
    }

    /// How long a user told `goodbye` waits for its outstanding answers before it closes.
    pub(super) fn goodbye_grace(&self) -> Duration {
        self.timeout.min(GOODBYE_GRACE)
    }
}
