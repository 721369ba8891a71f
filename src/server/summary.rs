//! The periodic summary at info level: connections opened, closed and refused since the last
//! summary, once a minute when anything happened and once at shutdown. Each connection's own
//! open and close lines are at debug: at thousands of upgrades a second, two info lines each
//! would trip journald's rate limit and lose the lines that matter.

use std::sync::Mutex;
use std::time::Duration;

use tracing::info;

use crate::metrics::{Metrics, Totals};

/// How often the summary is written.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// The counts at the last summary.
#[derive(Default)]
pub struct Summary {
    last: Mutex<Totals>,
}

impl Summary {
    /// Writes the counts since the last summary; when `always` is false, only if anything
    /// happened.
    pub fn log(&self, metrics: &Metrics, always: bool) {
        let now = metrics.totals();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let since = Totals {
            opened: now.opened - last.opened,
            closed: now.closed - last.closed,
            refused: now.refused - last.refused,
        };
        *last = now;
        drop(last);
        if always || since != Totals::default() {
            info!(
                opened = since.opened,
                closed = since.closed,
                refused = since.refused,
                active = metrics.connections_active.get(),
                "connections since the last summary"
            );
        }
    }
}
