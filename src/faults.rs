//! Test-only fault switches (cargo feature `fault-injection`, docs/architecture.md): read from
//! the environment at start-up, they make this build misbehave on purpose so that the
//! watchdog, readiness gating and load-test thresholds can be shown to catch it.

use std::time::Duration;

use tracing::warn;

/// The switches that are on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Stop sending `WATCHDOG=1` this long after start.
    pub watchdog_stall_after: Option<Duration>,
    /// `/ready` always answers 503.
    pub ready_503: bool,
    /// Delay answers by this much.
    pub response_delay: Option<Duration>,
    /// Abort the process this long after start.
    pub crash_after: Option<Duration>,
    /// Treat a handed-over state as unreadable (docs/handover.md).
    pub handover_unreadable: bool,
}

fn millis(name: &str) -> Option<Duration> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => {
            warn!(variable = name, value = %value, "ignoring fault switch: not a number of milliseconds");
            None
        }
    }
}

impl Faults {
    pub fn from_env() -> Faults {
        let faults = Faults {
            watchdog_stall_after: millis("FAULT_WATCHDOG_STALL_AFTER_MS"),
            ready_503: std::env::var("FAULT_READY_503").is_ok_and(|v| v.trim() == "1"),
            response_delay: millis("FAULT_RESPONSE_DELAY_MS"),
            crash_after: millis("FAULT_CRASH_AFTER_MS"),
            handover_unreadable: std::env::var("FAULT_HANDOVER_UNREADABLE")
                .is_ok_and(|v| v.trim() == "1"),
        };
        if faults.watchdog_stall_after.is_some()
            || faults.ready_503
            || faults.response_delay.is_some()
            || faults.crash_after.is_some()
            || faults.handover_unreadable
        {
            warn!(
                ?faults,
                "FAULT INJECTION ACTIVE: this build misbehaves on purpose"
            );
        }
        faults
    }

    /// Sleeps for the configured response delay, if any.
    pub async fn delay_response(&self) {
        if let Some(delay) = self.response_delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// Starts the crash timer, if configured.
    pub fn arm_crash(&self) {
        if let Some(after) = self.crash_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                warn!("FAULT_CRASH_AFTER_MS reached: aborting");
                std::process::abort();
            });
        }
    }
}
