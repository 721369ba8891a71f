//! The live progress line on a terminal: users, connects/s, msgs/s, round-trip p95, errors;
//! in channel runs also publishes/s, deliveries/s and delivery p99.

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
        let channels = if second.delivery.is_empty() && second.counts.channels.publishes == 0 {
            String::new()
        } else {
            let c = &second.counts.channels;
            let p99 = if second.delivery.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1} ms", ms(second.delivery.value_at_quantile(0.99)))
            };
            format!(
                "  publishes/s {}  deliveries/s {}  delivery p99 {p99}",
                c.publishes, c.deliveries
            )
        };
        self.bar.set_message(format!(
            "users {}  connects/s {}  msgs/s {}  rtt p95 {p95}{channels}  errors {}",
            second.active, second.counts.connects, second.counts.answered, errors_so_far
        ));
    }

    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }
}
