//! Runs a validated [`RunSpec`]: chooses the worker count, starts the sources, merges what
//! they report while showing progress, and builds the report.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::sync::mpsc::unbounded_channel;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::aggregate::Aggregate;
use crate::cli::RunSpec;
use crate::engine::EnginePlan;
use crate::net;
use crate::profile::Share;
use crate::progress::Progress;
use crate::report::{Point, Report, Settings};
use crate::stats::Snapshot;
use crate::workers::{self, Event};

/// Extra time, beyond a plan's own bound, before a run that did not end is declared stuck.
const STUCK_MARGIN: Duration = Duration::from_secs(15);

/// How many processes a run of `peak` users needs when each holds at most `capacity`
/// sockets; an explicit `requested` count is checked against it.
pub fn worker_count(peak: u64, capacity: u64, requested: Option<u64>) -> Result<u64, String> {
    if capacity == 0 {
        return Err("the open-file limit leaves no room for connections".into());
    }
    let needed = peak.div_ceil(capacity).max(1);
    match requested {
        None => Ok(needed),
        Some(w) if peak.div_ceil(w) <= capacity => Ok(w),
        Some(w) => Err(format!(
            "{peak} users over {w} worker(s) is more than the {capacity} sockets one process may open here \
             (open-file limit); use --workers {needed} or more"
        )),
    }
}

/// The outcome of a run: the report, and the merged totals (for the HTML histogram).
pub struct Outcome {
    pub report: Report,
    pub totals: Snapshot,
}

/// Runs the spec to its end. `Err` is a setup or worker failure (exit code 2).
pub async fn execute(spec: &RunSpec) -> Result<Outcome, String> {
    let capacity = net::raise_fd_limit()?;
    let workers = worker_count(spec.plan.profile.peak(), capacity, spec.workers)?;
    net::check_sources(&spec.plan.sources)?;

    let (events, mut received) = unbounded_channel();
    let children = if workers == 1 {
        let interrupt = CancellationToken::new();
        let on_signal = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        workers::spawn_local(spec.plan.clone(), events, interrupt);
        Vec::new()
    } else {
        // Ctrl-C reaches the workers too (same process group); they stop and report, and
        // this process stays to merge their reports.
        tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
        workers::spawn_workers(split(&spec.plan, workers), events)?
    };

    let start = Instant::now();
    let deadline = start + spec.plan.bound() + STUCK_MARGIN;
    let mut aggregate = Aggregate::new(workers as usize);
    let progress = Progress::new(!spec.quiet && std::io::stderr().is_terminal());
    let mut shown = 0;
    let mut running = workers;
    while running > 0 {
        let event = timeout_at(deadline, received.recv()).await.map_err(|_| {
            format!(
                "the run did not end within {:?} of its planned length",
                STUCK_MARGIN
            )
        })?;
        match event {
            None => break,
            Some(Event::Snapshot(source, snapshot)) => aggregate.add(source, &snapshot),
            Some(Event::Done(source)) => {
                aggregate.finish(source);
                running -= 1;
            }
            Some(Event::Failed(_, message)) => return Err(message),
        }
        if let Some(latest) = aggregate.latest_complete().filter(|s| s.second > shown) {
            let counts = &aggregate.totals().counts;
            progress.show(latest, counts.connect_failed() + counts.messages_failed());
            shown = latest.second;
        }
    }
    progress.clear();
    let elapsed = start.elapsed().as_secs_f64();
    workers::reap(children).await?;

    let settings = settings(spec, workers);
    let timeline = aggregate.timeline().map(Point::of).collect();
    let report = Report::build(
        settings,
        &spec.thresholds,
        aggregate.totals(),
        timeline,
        aggregate.peak_active(),
        elapsed,
    );
    Ok(Outcome {
        report,
        totals: aggregate.totals().clone(),
    })
}

/// One plan per worker: the same run, each with its share of the users and sources.
fn split(plan: &EnginePlan, workers: u64) -> Vec<EnginePlan> {
    (0..workers)
        .map(|index| EnginePlan {
            share: Share {
                index,
                count: workers,
            },
            ..plan.clone()
        })
        .collect()
}

fn settings(spec: &RunSpec, workers: u64) -> Settings {
    let plan = &spec.plan;
    Settings {
        scenario: spec.scenario.to_owned(),
        url: plan
            .targets
            .iter()
            .map(|t| t.base.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        publish_url: plan.publish_target.as_ref().map(|t| t.base.clone()),
        peak_users: plan.profile.peak(),
        planned_seconds: plan.profile.total().as_secs_f64(),
        rate_per_user: plan.behaviour.rate,
        closed_loop_window: plan.behaviour.closed_loop_window,
        payload_bytes: plan.behaviour.payload_bytes,
        timeout_ms: plan.behaviour.timeout_ms,
        churn: plan.behaviour.churn,
        workers,
        source_addresses: plan.sources.len(),
        channels: plan.behaviour.channels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_default_to_as_few_as_the_fd_limit_allows() {
        assert_eq!(worker_count(100, 19_936, None), Ok(1));
        assert_eq!(worker_count(19_000, 19_936, None), Ok(1));
        assert_eq!(worker_count(19_937, 19_936, None), Ok(2));
        assert_eq!(worker_count(50_000, 19_936, None), Ok(3));
    }

    #[test]
    fn too_few_workers_is_a_setup_error_naming_the_minimum() {
        assert_eq!(worker_count(19_000, 19_936, Some(2)), Ok(2));
        let err = worker_count(40_000, 19_936, Some(2)).unwrap_err();
        assert!(err.contains("--workers 3"), "{err}");
        assert!(worker_count(1, 0, None).is_err());
    }
}
