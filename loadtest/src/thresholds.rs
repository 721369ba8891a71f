//! Pass/fail rules of a run (the original design's four, each configurable) and their
//! evaluation against what was measured.

use std::time::Duration;

use serde::Serialize;

/// The limits a run must stay within.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Connect time p95 must be below this.
    pub connect_p95: Duration,
    /// Round-trip p95 must be below this.
    pub round_trip_p95: Duration,
    /// Connection success rate (percent) must be above this.
    pub min_success_pct: f64,
    /// Message error rate (percent) must be below this.
    pub max_error_pct: f64,
    /// A channel run's own limits.
    pub channels: Option<crate::channels::ChannelThresholds>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            connect_p95: Duration::from_secs(2),
            round_trip_p95: Duration::from_secs(1),
            min_success_pct: 95.0,
            max_error_pct: 1.0,
            channels: None,
        }
    }
}

/// The measured figures the thresholds look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub connect_attempts: u64,
    pub connect_p95_ms: Option<f64>,
    /// Messages sent or due to be sent (the error rate's denominator).
    pub messages_due: u64,
    pub round_trip_p95_ms: Option<f64>,
    pub success_pct: Option<f64>,
    pub error_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Nothing to judge (no connection attempted, or no message sent).
    Skipped,
}

/// One threshold's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `connect_p95`, `round_trip_p95`, `success_rate`, `error_rate`, or for channel runs
    /// `delivery_p99`, `missing`, `duplicates`, `out_of_order`, `acked_lost`,
    /// `deliveries_per_s`.
    pub name: &'static str,
    /// Human-readable rule, e.g. `connect_p95 < 2000 ms`.
    pub rule: String,
    pub limit: f64,
    /// `null` when there was no sample.
    pub observed: Option<f64>,
    pub unit: &'static str,
    pub status: Status,
}

impl Verdict {
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }

    /// One line saying what was expected and what was seen.
    pub fn describe(&self) -> String {
        let seen = match self.observed {
            Some(v) => format!("{v:.3} {}", self.unit),
            None => "no sample".to_owned(),
        };
        format!(
            "{}: {} (observed {seen})",
            self.rule,
            format!("{:?}", self.status).to_uppercase()
        )
    }
}

/// Which side of its limit a figure must stay on.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Below,
    Above,
    /// At most the limit (counts that must be 0).
    AtMost,
}

pub(crate) fn judge(
    name: &'static str,
    direction: Direction,
    limit: f64,
    unit: &'static str,
    observed: Option<f64>,
    applicable: bool,
) -> Verdict {
    let sign = match direction {
        Direction::Below => "<",
        Direction::Above => ">",
        Direction::AtMost => "<=",
    };
    let status = match (applicable, observed) {
        (false, _) => Status::Skipped,
        (true, None) => Status::Fail,
        (true, Some(v)) => {
            let ok = match direction {
                Direction::Below => v < limit,
                Direction::Above => v > limit,
                Direction::AtMost => v <= limit,
            };
            if ok { Status::Pass } else { Status::Fail }
        }
    };
    Verdict {
        name,
        rule: format!("{name} {sign} {limit} {unit}"),
        limit,
        observed,
        unit,
        status,
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Judges every threshold. A latency threshold with attempts but no sample fails: a server
/// that never answers must not pass a deploy gate.
pub fn evaluate(limits: &Thresholds, seen: &Observed) -> Vec<Verdict> {
    let connected = seen.connect_attempts > 0;
    let messaged = seen.messages_due > 0;
    vec![
        judge(
            "connect_p95",
            Direction::Below,
            millis(limits.connect_p95),
            "ms",
            seen.connect_p95_ms,
            connected,
        ),
        judge(
            "round_trip_p95",
            Direction::Below,
            millis(limits.round_trip_p95),
            "ms",
            seen.round_trip_p95_ms,
            messaged,
        ),
        judge(
            "success_rate",
            Direction::Above,
            limits.min_success_pct,
            "%",
            seen.success_pct,
            connected,
        ),
        judge(
            "error_rate",
            Direction::Below,
            limits.max_error_pct,
            "%",
            seen.error_pct,
            messaged,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observed {
        Observed {
            connect_attempts: 100,
            connect_p95_ms: Some(12.0),
            messages_due: 1000,
            round_trip_p95_ms: Some(3.5),
            success_pct: Some(100.0),
            error_pct: Some(0.0),
        }
    }

    #[test]
    fn a_healthy_run_passes_every_default_threshold() {
        let verdicts = evaluate(&Thresholds::default(), &healthy());
        assert_eq!(verdicts.len(), 4);
        assert!(
            verdicts.iter().all(|v| v.status == Status::Pass),
            "{verdicts:?}"
        );
    }

    #[test]
    fn each_threshold_fails_on_its_own_figure() {
        type Spoil = fn(&mut Observed);
        let cases: [(&str, Spoil); 4] = [
            ("connect_p95", |o| o.connect_p95_ms = Some(2000.0)),
            ("round_trip_p95", |o| o.round_trip_p95_ms = Some(1500.0)),
            ("success_rate", |o| o.success_pct = Some(95.0)),
            ("error_rate", |o| o.error_pct = Some(1.0)),
        ];
        for (name, spoil) in cases {
            let mut seen = healthy();
            spoil(&mut seen);
            let failed: Vec<_> = evaluate(&Thresholds::default(), &seen)
                .into_iter()
                .filter(Verdict::failed)
                .collect();
            assert_eq!(failed.len(), 1, "{name}: {failed:?}");
            assert_eq!(failed[0].name, name);
            assert!(failed[0].describe().contains("FAIL"));
        }
    }

    #[test]
    fn an_impossible_limit_fails_and_names_itself() {
        let limits = Thresholds {
            round_trip_p95: Duration::from_micros(1),
            ..Thresholds::default()
        };
        let failed: Vec<_> = evaluate(&limits, &healthy())
            .into_iter()
            .filter(Verdict::failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rule, "round_trip_p95 < 0.001 ms");
    }

    #[test]
    fn unreachable_server_fails_instead_of_passing_for_lack_of_samples() {
        let seen = Observed {
            connect_attempts: 10,
            success_pct: Some(0.0),
            ..Observed::default()
        };
        let verdicts = evaluate(&Thresholds::default(), &seen);
        let status: Vec<_> = verdicts.iter().map(|v| (v.name, v.status)).collect();
        assert_eq!(
            status,
            [
                ("connect_p95", Status::Fail),
                ("round_trip_p95", Status::Skipped),
                ("success_rate", Status::Fail),
                ("error_rate", Status::Skipped),
            ]
        );
    }

    #[test]
    fn messages_sent_but_never_answered_fail_the_latency_threshold() {
        let seen = Observed {
            round_trip_p95_ms: None,
            error_pct: Some(100.0),
            ..healthy()
        };
        let failed: Vec<_> = evaluate(&Thresholds::default(), &seen)
            .into_iter()
            .filter(Verdict::failed)
            .map(|v| v.name)
            .collect();
        assert_eq!(failed, ["round_trip_p95", "error_rate"]);
    }
}
