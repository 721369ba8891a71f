//! The order of a blue/green deploy and what is undone when a step fails: deploy, health
//! check, load test, switch, verify, drain, and the rollback (routing back to the old colour,
//! new colour stopped) for a failure in any step before the drain. Also the manual
//! `rollback` command's order. The actions themselves are the `Host`'s.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::colour::Colour;
use crate::interrupt::Interrupt;
use crate::report::{Outcome, Report, Reporter, StepLog};
use crate::routing::Weights;

/// The actions of a deploy on one host. Each returns a line for the step's report.
pub trait Host {
    /// Start the colour's sockets and service; wait for systemd's READY, then `/ready`.
    fn start(&mut self, colour: &Colour) -> Result<String>;
    /// `/health` and `/ready` of the colour, directly.
    fn check_health(&mut self, colour: &Colour) -> Result<String>;
    /// The smoke load test against the colour alone.
    fn load_test(&mut self, colour: &Colour) -> Result<String>;
    /// Remember the colour's error counters and process, for `watch` and `verify`.
    fn mark_baseline(&mut self, colour: &Colour) -> Result<()>;
    /// Rewrite Traefik's routing (and the active colour once one colour has it all).
    fn route(&mut self, weights: &Weights) -> Result<String>;
    /// Keep an eye on the colour for `period` while it takes a share of the traffic.
    fn watch(&mut self, colour: &Colour, period: Duration) -> Result<String>;
    /// New connections through Traefik land on the colour; it stays healthy.
    fn verify(&mut self, colour: &Colour) -> Result<String>;
    /// New connections through Traefik land on the colour (a rollback's check).
    fn confirm_routing(&mut self, colour: &Colour) -> Result<String>;
    /// Stop the colour after its clients have moved (goodbye, reconnect) to `successor`.
    fn drain(&mut self, colour: &Colour, successor: &Colour) -> Result<String>;
    /// Stop the colour (a rollback's cleanup).
    fn stop(&mut self, colour: &Colour) -> Result<String>;
}

pub struct DeployPlan {
    pub from: Colour,
    pub to: Colour,
    /// Successive routings of the switch; the last sends everything to `to`.
    pub shift: Vec<Weights>,
    /// How long each intermediate routing is watched.
    pub step_interval: Duration,
}

/// Run the deploy; a signal (`interrupt`) fails the step that starts next, which rolls back
/// like any failure. The drain, once begun, is finished.
pub fn deploy(
    plan: &DeployPlan,
    host: &mut impl Host,
    reporter: &Reporter,
    interrupt: &Interrupt,
) -> Report {
    let started = Instant::now();
    reporter.heading(&format!("deploy {} -> {}", plan.from, plan.to));
    let mut steps = StepLog::new(reporter);
    let mut routed = false;
    let forward = forward_steps(plan, host, &mut steps, &mut routed, interrupt);
    let failed_step = steps.failed_step();
    let (outcome, error, rollback) = match forward {
        Ok(()) => match steps.run("drain", || host.drain(&plan.from, &plan.to)) {
            Ok(()) => (Outcome::Succeeded, None, Vec::new()),
            // The new colour serves every new connection by now: no rollback, but the old
            // colour's state needs a look.
            Err(e) => (Outcome::NeedsOperator, Some(format!("{e:#}")), Vec::new()),
        },
        Err(e) => {
            reporter.heading("rollback");
            let mut undo = StepLog::new(reporter);
            let clean = roll_back(plan, host, &mut undo, routed);
            let outcome = if clean {
                Outcome::RolledBack
            } else {
                Outcome::NeedsOperator
            };
            (outcome, Some(format!("{e:#}")), undo.records)
        }
    };
    Report {
        command: format!("deploy --to {}", plan.to),
        from: plan.from.clone(),
        to: plan.to.clone(),
        outcome,
        failed_step: failed_step.or_else(|| steps.failed_step()),
        error,
        steps: steps.records,
        rollback,
        total_seconds: started.elapsed().as_secs_f64(),
    }
}

/// Everything before the drain; `routed` tells the rollback whether routing was touched.
fn forward_steps(
    plan: &DeployPlan,
    host: &mut impl Host,
    steps: &mut StepLog,
    routed: &mut bool,
    interrupt: &Interrupt,
) -> Result<()> {
    let to = &plan.to;
    steps.run("deploy", || interrupt.check().and_then(|()| host.start(to)))?;
    steps.run("health", || {
        interrupt.check().and_then(|()| host.check_health(to))
    })?;
    steps.run("load-test", || {
        interrupt.check().and_then(|()| host.load_test(to))
    })?;
    steps.run("switch", || {
        host.mark_baseline(to)?;
        let mut shown = Vec::new();
        for (i, weights) in plan.shift.iter().enumerate() {
            interrupt.check()?;
            *routed = true;
            shown.push(host.route(weights)?);
            if i + 1 < plan.shift.len() {
                shown.push(host.watch(to, plan.step_interval)?);
            }
        }
        Ok(shown.join("; "))
    })?;
    steps.run("verify", || {
        let verified = host.verify(to)?;
        // A signal during the verification still means: do not go on to the drain.
        interrupt.check().map(|()| verified)
    })
}

/// Routing back to the old colour (when it was touched), then the new colour stopped.
/// Every action is tried even when one fails, but one: while new connections cannot be shown
/// to reach the old colour again, the new colour is left running, since stopping it could
/// leave them no server at all (a slightly bad release made an outage). `true` when all of
/// them succeeded.
pub fn roll_back(
    plan: &DeployPlan,
    host: &mut impl Host,
    undo: &mut StepLog,
    routed: bool,
) -> bool {
    let mut clean = true;
    let mut routed_back = true;
    if routed {
        clean &= undo
            .run("restore-routing", || host.route(&Weights::only(&plan.from)))
            .is_ok();
        routed_back = undo
            .run("confirm-routing", || host.confirm_routing(&plan.from))
            .is_ok();
    }
    let stop = format!("stop-{}", plan.to);
    let stopped = if routed_back {
        undo.run(&stop, || host.stop(&plan.to))
    } else {
        undo.run(&stop, || {
            bail!(
                "{} left running: new connections were not seen to reach {} again",
                plan.to,
                plan.from
            )
        })
    };
    clean && routed_back && stopped.is_ok()
}

/// `wsctl rollback`: everything back to `to`, which must still be running; `from`, the
/// colour left, is drained unless `drain` is false. Nothing is undone automatically here:
/// a failure needs an operator.
pub fn switch_back(
    from: &Colour,
    to: &Colour,
    drain: bool,
    host: &mut impl Host,
    reporter: &Reporter,
) -> Report {
    let started = Instant::now();
    reporter.heading(&format!("rollback {from} -> {to}"));
    let mut steps = StepLog::new(reporter);
    let checked = steps.run("health", || host.check_health(to));
    let result = checked.and_then(|()| {
        steps.run("switch", || host.route(&Weights::only(to)))?;
        steps.run("verify", || host.confirm_routing(to))?;
        if drain {
            steps.run("drain", || host.drain(from, to))?;
        }
        Ok(())
    });
    let outcome = match (&result, steps.records.len()) {
        (Ok(()), _) => Outcome::Succeeded,
        // Only the health check ran: nothing was changed.
        (Err(_), 1) => Outcome::Refused,
        (Err(_), _) => Outcome::NeedsOperator,
    };
    Report {
        command: format!("rollback --to {to}"),
        from: from.clone(),
        to: to.clone(),
        outcome,
        failed_step: steps.failed_step(),
        error: result.err().map(|e| format!("{e:#}")),
        steps: steps.records,
        rollback: Vec::new(),
        total_seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::StepStatus;
    use anyhow::bail;

    /// Records every action; fails the ones named in `fail`; raises the interrupt during
    /// the one named in `signal_during`.
    struct Recorder {
        fail: Vec<&'static str>,
        calls: Vec<String>,
        signal_during: Option<(&'static str, Interrupt)>,
    }

    impl Recorder {
        fn failing(fail: &[&'static str]) -> Self {
            Recorder {
                fail: fail.to_vec(),
                calls: Vec::new(),
                signal_during: None,
            }
        }

        fn act(&mut self, action: &'static str, arg: impl std::fmt::Display) -> Result<String> {
            self.calls.push(format!("{action} {arg}"));
            if let Some((during, interrupt)) = &self.signal_during
                && *during == action
            {
                interrupt.raise();
            }
            if self.fail.contains(&action) {
                bail!("{action} broke");
            }
            Ok(format!("{action} done"))
        }
    }

    impl Host for Recorder {
        fn start(&mut self, c: &Colour) -> Result<String> {
            self.act("start", c)
        }
        fn check_health(&mut self, c: &Colour) -> Result<String> {
            self.act("health", c)
        }
        fn load_test(&mut self, c: &Colour) -> Result<String> {
            self.act("load-test", c)
        }
        fn mark_baseline(&mut self, c: &Colour) -> Result<()> {
            self.act("baseline", c).map(drop)
        }
        fn route(&mut self, w: &Weights) -> Result<String> {
            self.act("route", w)
        }
        fn watch(&mut self, c: &Colour, _: Duration) -> Result<String> {
            self.act("watch", c)
        }
        fn verify(&mut self, c: &Colour) -> Result<String> {
            self.act("verify", c)
        }
        fn confirm_routing(&mut self, c: &Colour) -> Result<String> {
            self.act("confirm", c)
        }
        fn drain(&mut self, c: &Colour, _: &Colour) -> Result<String> {
            self.act("drain", c)
        }
        fn stop(&mut self, c: &Colour) -> Result<String> {
            self.act("stop", c)
        }
    }

    fn plan(steps: u32) -> DeployPlan {
        let (from, to) = ("blue".parse().unwrap(), "green".parse().unwrap());
        DeployPlan {
            shift: Weights::shift(&from, &to, steps).unwrap(),
            from,
            to,
            step_interval: Duration::ZERO,
        }
    }

    fn run(fail: &[&'static str], steps: u32) -> (Report, Vec<String>) {
        let mut host = Recorder::failing(fail);
        let report = deploy(
            &plan(steps),
            &mut host,
            &Reporter::new(true),
            &Interrupt::default(),
        );
        (report, host.calls)
    }

    #[test]
    fn a_signal_fails_the_next_step_and_rolls_back() {
        let interrupt = Interrupt::default();
        // The signal arrives while the load test runs: the switch never happens.
        let mut host = Recorder {
            signal_during: Some(("load-test", interrupt.clone())),
            ..Recorder::failing(&[])
        };
        let report = deploy(&plan(1), &mut host, &Reporter::new(true), &interrupt);
        assert_eq!(report.outcome, Outcome::RolledBack);
        assert_eq!(report.failed_step.as_deref(), Some("switch"));
        assert_eq!(report.error.as_deref(), Some("interrupted by a signal"));
        assert!(
            !host.calls.iter().any(|c| c.starts_with("route")),
            "{:?}",
            host.calls
        );
        assert_eq!(host.calls.last().unwrap(), "stop green");
    }

    #[test]
    fn a_clean_deploy_runs_every_step_in_order_and_drains_the_old_colour() {
        let (report, calls) = run(&[], 1);
        assert_eq!(report.outcome, Outcome::Succeeded);
        assert_eq!(
            calls,
            [
                "start green",
                "health green",
                "load-test green",
                "baseline green",
                "route green=1",
                "verify green",
                "drain blue"
            ]
        );
        let names: Vec<_> = report.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["deploy", "health", "load-test", "switch", "verify", "drain"]
        );
        assert!(report.rollback.is_empty());
    }

    #[test]
    fn a_failure_before_the_switch_stops_the_new_colour_and_leaves_routing_alone() {
        for failing in ["start", "health", "load-test"] {
            let (report, calls) = run(&[failing], 1);
            assert_eq!(report.outcome, Outcome::RolledBack, "{failing}");
            assert!(
                !calls.iter().any(|c| c.starts_with("route")),
                "{failing}: {calls:?}"
            );
            assert_eq!(calls.last().unwrap(), "stop green");
            assert_eq!(
                report.error.as_deref(),
                Some(format!("{failing} broke").as_str())
            );
        }
    }

    #[test]
    fn a_failed_verification_routes_back_confirms_and_stops_the_new_colour() {
        let (report, calls) = run(&["verify"], 1);
        assert_eq!(report.outcome, Outcome::RolledBack);
        assert_eq!(report.failed_step.as_deref(), Some("verify"));
        assert_eq!(
            &calls[calls.len() - 3..],
            ["route blue=1", "confirm blue", "stop green"]
        );
        assert!(!calls.contains(&"drain blue".to_owned()));
        let undo: Vec<_> = report.rollback.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(undo, ["restore-routing", "confirm-routing", "stop-green"]);
    }

    #[test]
    fn a_failure_while_shifting_gradually_routes_back() {
        let (report, calls) = run(&["watch"], 4);
        assert_eq!(report.outcome, Outcome::RolledBack);
        assert_eq!(report.failed_step.as_deref(), Some("switch"));
        assert!(
            calls.contains(&"route blue=3,green=1".to_owned()),
            "{calls:?}"
        );
        assert_eq!(
            &calls[calls.len() - 3..],
            ["route blue=1", "confirm blue", "stop green"]
        );
    }

    #[test]
    fn a_gradual_shift_watches_between_routings() {
        let (report, calls) = run(&[], 2);
        assert_eq!(report.outcome, Outcome::Succeeded);
        let switch: Vec<_> = calls
            .iter()
            .filter(|c| c.starts_with("route") || c.starts_with("watch"))
            .collect();
        assert_eq!(
            switch,
            ["route blue=1,green=1", "watch green", "route green=1"]
        );
    }

    #[test]
    fn a_failed_rollback_action_needs_an_operator_but_the_rest_is_still_tried() {
        let (report, calls) = run(&["verify", "stop"], 1);
        assert_eq!(report.outcome, Outcome::NeedsOperator);
        assert_eq!(
            calls[calls.len() - 3..],
            ["route blue=1", "confirm blue", "stop green"]
        );
        assert_eq!(report.rollback[2].status, StepStatus::Failed);
        assert_eq!(report.outcome.exit_code(), 4);
    }

    #[test]
    fn the_new_colour_keeps_running_while_connections_are_not_seen_back_on_the_old() {
        let (report, calls) = run(&["verify", "confirm"], 1);
        assert_eq!(report.outcome, Outcome::NeedsOperator);
        assert_eq!(calls.last().unwrap(), "confirm blue", "green not stopped");
        let stop = &report.rollback[2];
        assert_eq!(
            (stop.name.as_str(), stop.status),
            ("stop-green", StepStatus::Failed)
        );
        assert!(
            stop.detail.contains("green left running"),
            "{}",
            stop.detail
        );
    }

    #[test]
    fn a_failed_drain_is_not_rolled_back() {
        let (report, calls) = run(&["drain"], 1);
        assert_eq!(report.outcome, Outcome::NeedsOperator);
        assert_eq!(report.failed_step.as_deref(), Some("drain"));
        assert!(report.rollback.is_empty());
        assert_eq!(calls.last().unwrap(), "drain blue");
    }

    #[test]
    fn switch_back_checks_the_target_first_and_drains_unless_told_not_to() {
        let (green, blue) = ("green".parse().unwrap(), "blue".parse().unwrap());
        let mut host = Recorder::failing(&[]);
        let report = switch_back(&green, &blue, true, &mut host, &Reporter::new(true));
        assert_eq!(report.outcome, Outcome::Succeeded);
        assert_eq!(
            host.calls,
            ["health blue", "route blue=1", "confirm blue", "drain green"]
        );

        let mut host = Recorder::failing(&["health"]);
        let report = switch_back(&green, &blue, false, &mut host, &Reporter::new(true));
        assert_eq!(report.outcome, Outcome::Refused);
        assert_eq!(host.calls, ["health blue"]);

        let mut host = Recorder::failing(&["confirm"]);
        let report = switch_back(&green, &blue, false, &mut host, &Reporter::new(true));
        assert_eq!(report.outcome, Outcome::NeedsOperator);
        assert_eq!(report.failed_step.as_deref(), Some("verify"));
    }
}
