//! Runs one process's share of the users along the profile, and emits a snapshot of what
//! they measured at every second of the run.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};
use tokio_util::sync::CancellationToken;

use crate::net::Target;
use crate::profile::{Profile, Share};
use crate::stats::{Recorder, Snapshot};
use crate::vuser::{Behaviour, UserContext, run_user};

/// Everything one process needs to play its part; what a worker receives on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnginePlan {
    /// The servers, used round-robin by global user index (at least one).
    pub targets: Vec<Target>,
    pub profile: Profile,
    pub share: Share,
    /// Source addresses, used round-robin by global user index (empty: the kernel picks).
    pub sources: Vec<IpAddr>,
    pub behaviour: Behaviour,
    pub run_tag: String,
}

/// How often the engine adjusts the user count to the profile.
const TICK: Duration = Duration::from_millis(10);

/// How long stopping users get, beyond their answer grace, before they are abandoned.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl EnginePlan {
    /// The longest a run of this plan can last: the profile, the users' drain, the close.
    pub fn bound(&self) -> Duration {
        self.profile.total()
            + Duration::from_millis(self.behaviour.timeout_ms).min(Duration::from_secs(5))
            + CLOSE_GRACE
    }

    fn target_for(global: u64, count: usize) -> usize {
        (global % count.max(1) as u64) as usize
    }

    fn source_for(&self, global: u64) -> Option<IpAddr> {
        let n = self.sources.len() as u64;
        (n > 0).then(|| self.sources[(global % n) as usize])
    }
}

/// Runs the plan; returns when every user is gone. `interrupt` ends the run early. `Err`
/// when the users cannot be set up (TLS without any root certificate): nothing ran.
pub async fn run(
    plan: EnginePlan,
    out: UnboundedSender<Snapshot>,
    interrupt: CancellationToken,
) -> Result<(), String> {
    let recorder = Arc::new(Recorder::default());
    // One context per server; all of them count into the one recorder.
    let contexts = plan
        .targets
        .iter()
        .map(|target| {
            UserContext::new(
                target.clone(),
                plan.behaviour.clone(),
                recorder.clone(),
                plan.run_tag.clone(),
            )
            .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let everyone = CancellationToken::new();
    let mut running: Vec<CancellationToken> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut started = 0u64;
    let mut second = 1u32;
    let start = Instant::now();
    let total = plan.profile.total();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = interrupt.cancelled() => break,
        }
        let elapsed = start.elapsed();
        if elapsed >= total {
            break;
        }
        let wanted = plan.share.of(plan.profile.users_at(elapsed));
        while (running.len() as u64) < wanted {
            // Ids and sources follow a never-reused global index, so a user started after a
            // ramp-down never takes over the id of one still closing.
            let global = plan.share.global(started);
            started += 1;
            let stop = everyone.child_token();
            running.push(stop.clone());
            let ctx = contexts[EnginePlan::target_for(global, contexts.len())].clone();
            tasks.spawn(run_user(ctx, global, plan.source_for(global), stop));
        }
        while (running.len() as u64) > wanted {
            if let Some(stop) = running.pop() {
                stop.cancel();
            }
        }
        while start + Duration::from_secs(u64::from(second)) <= Instant::now() {
            let _ = out.send(recorder.take(second));
            second += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    everyone.cancel();
    let drain = plan.bound().saturating_sub(total);
    let _ = timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    let _ = out.send(recorder.take(second));
    Ok(())
}
