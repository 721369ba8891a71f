//! The `process_*` series: the `prometheus` crate's process collector (memory, file
//! descriptors, threads, start time), with `process_cpu_seconds_total` to the clock tick.
//! The crate reports it in whole seconds (tikv/rust-prometheus#451), so a server that uses
//! less than a core shows a CPU rate that jumps between 0 and 1/window and dashboards that
//! lie; the counter here is the kernel's own `utime + stime` over `CLK_TCK`.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, MetricFamily};

const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// The crate's process collector with the CPU counter to the tick.
pub(super) struct ProcessMetrics {
    crate_collector: ProcessCollector,
}

impl ProcessMetrics {
    pub(super) fn for_self() -> ProcessMetrics {
        ProcessMetrics {
            crate_collector: ProcessCollector::for_self(),
        }
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.crate_collector.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.crate_collector.collect();
        if let Some(seconds) = cpu_seconds() {
            let cpu = families
                .iter_mut()
                .filter(|family| family.name() == CPU_SECONDS);
            for metric in cpu.flat_map(|family| family.mut_metric()) {
                let mut counter = Counter::new();
                counter.set_value(seconds);
                metric.set_counter(counter);
            }
        }
        families
    }
}

/// This process's user and system CPU seconds, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported_cpu_seconds(collector: &ProcessMetrics) -> f64 {
        let families = collector.collect();
        let cpu = families.iter().find(|family| family.name() == CPU_SECONDS);
        cpu.expect("the CPU counter is collected").get_metric()[0]
            .get_counter()
            .value()
    }

    fn read_cpu_seconds() -> f64 {
        cpu_seconds().expect("readable /proc/self/stat")
    }

    #[test]
    fn cpu_seconds_are_exported_to_the_tick() {
        let collector = ProcessMetrics::for_self();
        // Spend CPU until the process's total is not a whole number of seconds, which the
        // crate's own counter (whole seconds, rounded down) could not show.
        let mut x = 0u64;
        while read_cpu_seconds().fract() == 0.0 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let before = read_cpu_seconds();
        let exported = exported_cpu_seconds(&collector);
        let after = read_cpu_seconds();
        assert!(
            (before..=after).contains(&exported),
            "exported {exported}, read {before} before and {after} after"
        );
    }
}
