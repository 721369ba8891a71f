//! The live progress line on a terminal: users, connects/s, msgs/s, round-trip p95, errors.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stats::{Snapshot, ms};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Draws on stderr when it is a terminal, otherwise stays silent.
    pub fn new(enabled: bool) -> Self {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .expect("static template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar }
    }

    /// Shows the latest complete second and the errors of the whole run so far.
    pub fn show(&self, second: &Snapshot, errors_so_far: u64) {
        let p95 = if second.round_trip.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1} ms", ms(second.round_trip.value_at_quantile(0.95)))
        };
        self.bar.set_message(format!(
            "users {}  connects/s {}  msgs/s {}  rtt p95 {p95}  errors {}",
            second.active, second.counts.connects, second.counts.answered, errors_so_far
        ));
    }

    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}
