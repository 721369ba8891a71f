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
    /// Channel runs (`--publish-url`): the server of the users that only publish, so that
    /// publishers and subscribers sit on different servers sharing one broker.
    #[serde(default)]
    pub publish_target: Option<Target>,
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

    /// The index of user `global`'s server in [`EnginePlan::all_targets`]: the publish
    /// target (last) for a publish-only channel user when there is one, otherwise the
    /// targets round-robin.
    fn target_for(&self, global: u64) -> usize {
        let publish_only = self.publish_target.is_some()
            && self
                .behaviour
                .channels
                .as_ref()
                .is_some_and(|c| c.publishes_only(global));
        if publish_only {
            self.targets.len()
        } else {
            (global % self.targets.len().max(1) as u64) as usize
        }
    }

    /// The targets, then the publish target if any.
    fn all_targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().chain(&self.publish_target)
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
        .all_targets()
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
            let ctx = contexts[plan.target_for(global)].clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::{ChannelPlan, ChannelScenario};

    fn plan(publish_url: Option<&str>, scenario: ChannelScenario) -> EnginePlan {
        let target = |url: &str| Target::parse(url, None).unwrap();
        EnginePlan {
            targets: vec![target("ws://127.0.0.1:1"), target("ws://127.0.0.1:2")],
            publish_target: publish_url.map(target),
            profile: Profile::ramp_and_hold(8, Duration::ZERO, Duration::from_secs(1)),
            share: Share::WHOLE,
            sources: Vec::new(),
            behaviour: Behaviour {
                rate: 0.0,
                closed_loop_window: None,
                payload_bytes: 0,
                timeout_ms: 1000,
                churn: false,
                channels: Some(ChannelPlan {
                    scenario,
                    publish_for_ms: 1000,
                    publish_from_ms: 0,
                    resubscribe_every_ms: None,
                    measure_from_ms: 0,
                }),
            },
            run_tag: "t".into(),
        }
    }

    fn servers(plan: &EnginePlan) -> Vec<&str> {
        let all: Vec<_> = plan.all_targets().collect();
        (0..8)
            .map(|global| all[plan.target_for(global)].base.as_str())
            .collect()
    }

    #[test]
    fn publishers_go_to_the_publish_url_and_subscribers_round_robin() {
        let fanout = ChannelScenario::Fanout {
            subscribers: 3,
            rate: 1.0,
            channels: 2,
        };
        let split = plan(Some("ws://127.0.0.1:3"), fanout.clone());
        let (a, b, p) = ("ws://127.0.0.1:1", "ws://127.0.0.1:2", "ws://127.0.0.1:3");
        assert_eq!(servers(&split), [p, b, a, b, p, b, a, b]);
        // Without --publish-url, and in rooms (no publish-only user), all round-robin.
        assert_eq!(servers(&plan(None, fanout)), [a, b, a, b, a, b, a, b]);
        let rooms = ChannelScenario::Rooms {
            rooms: 2,
            size: 4,
            rate: 1.0,
            spread: false,
        };
        assert_eq!(servers(&plan(Some(p), rooms)), [a, b, a, b, a, b, a, b]);
    }
}
