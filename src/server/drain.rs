//! Graceful shutdown: waiting for SIGTERM or SIGINT, telling every open WebSocket to say
//! goodbye at evenly spaced moments over the drain window (so that thousands of clients do not
//! reconnect in the same instant), and waiting for them to close until the deadline. axum's
//! graceful shutdown does not see upgraded sockets, so the registry is the source of truth here.

use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::sleep_until;
use tracing::{info, warn};

use crate::lifecycle::DrainPlan;
use crate::registry::{Command, Registry};

/// SIGTERM and SIGINT (drain), SIGUSR2 (hand over, docs/handover.md), caught from the moment
/// this exists. Install it before serving: until then a signal takes its default action and
/// kills the process without a drain.
pub struct Signals {
    term: Signal,
    int: Signal,
    usr2: Signal,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Say goodbye to everyone: the signal's name.
    Drain(&'static str),
    /// Hand the connections to the next process.
    Handover,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Drain("SIGTERM"),
            _ = self.int.recv() => Stop::Drain("SIGINT"),
            _ = self.usr2.recv() => Stop::Handover,
        }
    }
}

/// Says goodbye to every open WebSocket over the drain window, then waits until all are closed
/// or the deadline passes. Returns how many were still open at the end.
pub async fn drain(registry: &Registry, plan: DrainPlan, started: Instant) -> usize {
    let connections = registry.snapshot();
    let count = connections.len() as u32;
    info!(
        connections = count,
        window_ms = plan.window.as_millis() as u64,
        "draining: spreading goodbyes"
    );
    for (index, control) in connections.iter().enumerate() {
        let at = started
            + plan
                .window
                .mul_f64(f64::from(index as u32) / f64::from(count.max(1)));
        sleep_until(at.into()).await;
        control.send(Command::Shutdown);
    }
    drop(connections);
    let deadline = started + plan.deadline;
    while !registry.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = registry.len();
    if left > 0 {
        warn!(
            connections = left,
            "shutdown deadline reached: dropping the connections still open"
        );
    }
    left
}
