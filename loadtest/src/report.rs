//! The run's report: the JSON document (`--json`, parsed by `wsctl`'s deploy gate; schema in
//! docs/loadtest.md) and the summary table printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::channels::{ChannelPlan, ChannelReport};
use crate::stats::{LatencySummary, Snapshot, ms};
use crate::thresholds::{Observed, Thresholds, Verdict, evaluate};

/// Identifies the JSON layout; bumped on any incompatible change.
pub const SCHEMA: &str = "loadtest-report/1";

/// What was asked for, echoed in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub scenario: String,
    pub url: String,
    /// `--publish-url`: the publishers' server, when not among `url`.
    pub publish_url: Option<String>,
    pub peak_users: u64,
    pub planned_seconds: f64,
    pub rate_per_user: f64,
    pub closed_loop_window: Option<u32>,
    pub payload_bytes: usize,
    pub timeout_ms: u64,
    pub churn: bool,
    pub workers: u64,
    pub source_addresses: usize,
    /// A channel run's scenario and publishing window.
    pub channels: Option<ChannelPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connections {
    pub attempts: u64,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// `null` when nothing was attempted.
    pub success_rate_pct: Option<f64>,
    pub reconnects: u64,
    pub peak_active: u64,
    pub established_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disconnects {
    /// Connections the server ended, by close code (`none`: without a close frame).
    pub by_close_code: BTreeMap<String, u64>,
    pub by_goodbye_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub answered: u64,
    pub errored: u64,
    pub timed_out: u64,
    pub unanswered: u64,
    pub unsent: u64,
    pub late: u64,
    pub failed: u64,
    /// `null` when nothing was sent.
    pub error_rate_pct: Option<f64>,
    pub answered_per_s: f64,
    pub protocol_errors: u64,
    pub server_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub connect: Option<LatencySummary>,
    pub round_trip: Option<LatencySummary>,
}

/// One second of the run, all workers merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub second: u32,
    pub active: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    pub round_trip_p50_ms: Option<f64>,
    pub round_trip_p95_ms: Option<f64>,
    pub round_trip_p99_ms: Option<f64>,
    /// Channel runs: `publish` requests written, publications received in order and their
    /// latency percentiles.
    pub publishes: u64,
    pub deliveries: u64,
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
}

impl Point {
    pub fn of(s: &Snapshot) -> Self {
        let q = |quantile| {
            (!s.round_trip.is_empty()).then(|| ms(s.round_trip.value_at_quantile(quantile)))
        };
        let d =
            |quantile| (!s.delivery.is_empty()).then(|| ms(s.delivery.value_at_quantile(quantile)));
        Point {
            second: s.second,
            active: s.active,
            connects: s.counts.connects,
            connect_failures: s.counts.connect_failed(),
            sent: s.counts.sent,
            answered: s.counts.answered,
            failed: s.counts.messages_failed(),
            round_trip_p50_ms: q(0.50),
            round_trip_p95_ms: q(0.95),
            round_trip_p99_ms: q(0.99),
            publishes: s.counts.channels.publishes,
            deliveries: s.counts.channels.deliveries,
            delivery_p50_ms: d(0.50),
            delivery_p99_ms: d(0.99),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// True when no threshold failed: the same as exit code 0.
    pub passed: bool,
    /// Names of the failed thresholds (empty when passed).
    pub failed_thresholds: Vec<&'static str>,
    pub thresholds: Vec<Verdict>,
    pub settings: Settings,
    pub elapsed_s: f64,
    pub connections: Connections,
    pub disconnects: Disconnects,
    pub messages: Messages,
    pub latency: Latency,
    /// Channel runs only.
    pub channels: Option<ChannelReport>,
    pub timeline: Vec<Point>,
}

fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

impl Report {
    /// Builds the report from the merged totals and timeline and judges the thresholds.
    pub fn build(
        settings: Settings,
        limits: &Thresholds,
        totals: &Snapshot,
        timeline: Vec<Point>,
        peak_active: u64,
        elapsed_s: f64,
    ) -> Self {
        let c = &totals.counts;
        let latency = Latency {
            connect: LatencySummary::of(&totals.connect),
            round_trip: LatencySummary::of(&totals.round_trip),
        };
        let connections = Connections {
            attempts: c.connect_attempts,
            established: c.connects,
            failed: c.connect_failed(),
            failures: c.connect_failures.clone(),
            success_rate_pct: pct(c.connects, c.connect_attempts),
            reconnects: c.reconnects,
            peak_active,
            established_per_s: per_second(c.connects, elapsed_s),
        };
        let messages = Messages {
            sent: c.sent,
            answered: c.answered,
            errored: c.errored,
            timed_out: c.timed_out,
            unanswered: c.unanswered,
            unsent: c.unsent,
            late: c.late,
            failed: c.messages_failed(),
            error_rate_pct: pct(c.messages_failed(), c.messages_due()),
            answered_per_s: per_second(c.answered, elapsed_s),
            protocol_errors: c.protocol_errors,
            server_errors: c.server_errors.clone(),
        };
        let observed = Observed {
            connect_attempts: connections.attempts,
            connect_p95_ms: latency.connect.as_ref().map(|l| l.p95_ms),
            messages_due: c.messages_due(),
            round_trip_p95_ms: latency.round_trip.as_ref().map(|l| l.p95_ms),
            success_pct: connections.success_rate_pct,
            error_pct: messages.error_rate_pct,
        };
        let channels = settings.channels.as_ref().map(|plan| {
            let per_second: Vec<(u32, u64)> =
                timeline.iter().map(|p| (p.second, p.deliveries)).collect();
            ChannelReport::of(plan, &c.channels, &totals.delivery, &per_second)
        });
        let mut thresholds = evaluate(limits, &observed);
        if let (Some(section), Some(channel_limits)) = (&channels, &limits.channels) {
            thresholds.extend(section.verdicts(channel_limits));
        }
        let failed_thresholds: Vec<_> = thresholds
            .iter()
            .filter(|v| v.failed())
            .map(|v| v.name)
            .collect();
        Report {
            schema: SCHEMA,
            passed: failed_thresholds.is_empty(),
            failed_thresholds,
            thresholds,
            settings,
            elapsed_s,
            connections,
            disconnects: Disconnects {
                by_close_code: c.close_codes.clone(),
                by_goodbye_reason: c.goodbye_reasons.clone(),
            },
            messages,
            latency,
            channels,
            timeline,
        }
    }

    /// The summary table shown at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let s = &self.settings;
        let c = &self.connections;
        let m = &self.messages;
        let _ = writeln!(
            t,
            "loadtest {} against {} ({:.1} s, {} worker(s))",
            s.scenario, s.url, self.elapsed_s, s.workers
        );
        let _ = writeln!(
            t,
            "  connections  attempts {}  established {}  failed {}  success {}  reconnects {}  peak {}",
            c.attempts,
            c.established,
            c.failed,
            opt_pct(c.success_rate_pct),
            c.reconnects,
            c.peak_active
        );
        if !c.failures.is_empty() {
            let _ = writeln!(t, "               failures {}", kv(&c.failures));
        }
        let _ = writeln!(
            t,
            "  messages     sent {}  answered {}  failed {} (errored {}, timed out {}, unanswered {}, unsent {})  error rate {}  {:.0}/s",
            m.sent,
            m.answered,
            m.failed,
            m.errored,
            m.timed_out,
            m.unanswered,
            m.unsent,
            opt_pct(m.error_rate_pct),
            m.answered_per_s
        );
        if !m.server_errors.is_empty() || m.protocol_errors > 0 || m.late > 0 {
            let _ = writeln!(
                t,
                "               server errors {}  protocol errors {}  late answers {}",
                kv(&m.server_errors),
                m.protocol_errors,
                m.late
            );
        }
        if let Some(channels) = &self.channels {
            t.push_str(&channels.table());
        }
        if !self.disconnects.by_close_code.is_empty() {
            let _ = writeln!(
                t,
                "  disconnects  close codes {}  goodbyes {}",
                kv(&self.disconnects.by_close_code),
                kv(&self.disconnects.by_goodbye_reason)
            );
        }
        let _ = writeln!(
            t,
            "  latency (ms)      count      p50      p90      p95      p99    p99.9      max"
        );
        let delivery = self
            .channels
            .as_ref()
            .and_then(|c| c.delivery_latency.clone());
        for (name, l) in [
            ("connect", &self.latency.connect),
            ("round trip", &self.latency.round_trip),
            ("delivery", &delivery),
        ] {
            if name == "delivery" && self.channels.is_none() {
                continue;
            }
            match l {
                Some(l) => {
                    let _ = writeln!(
                        t,
                        "    {name:<12} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                        l.count, l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms
                    );
                }
                None => {
                    let _ = writeln!(t, "    {name:<12} {:>9}", 0);
                }
            }
        }
        let _ = writeln!(t, "  thresholds");
        for v in &self.thresholds {
            let _ = writeln!(t, "    {}", v.describe());
        }
        let verdict = if self.passed {
            "PASSED".to_owned()
        } else {
            format!("FAILED: {}", self.failed_thresholds.join(", "))
        };
        let _ = writeln!(t, "  {verdict}");
        t
    }
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}%"))
}

fn kv(map: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::bump;

    fn settings() -> Settings {
        Settings {
            scenario: "smoke".into(),
            url: "ws://127.0.0.1:3001".into(),
            publish_url: None,
            peak_users: 10,
            planned_seconds: 6.0,
            rate_per_user: 2.0,
            closed_loop_window: None,
            payload_bytes: 64,
            timeout_ms: 10_000,
            churn: false,
            workers: 1,
            source_addresses: 39,
            channels: None,
        }
    }

    fn totals() -> Snapshot {
        let mut s = Snapshot::empty(0);
        s.counts.connect_attempts = 10;
        s.counts.connects = 10;
        s.counts.sent = 200;
        s.counts.answered = 199;
        s.counts.timed_out = 1;
        for v in 1..=10 {
            s.connect.record(v * 1000).unwrap();
        }
        for v in 1..=199 {
            s.round_trip.record(v * 10).unwrap();
        }
        bump(&mut s.counts.close_codes, "1001");
        bump(&mut s.counts.goodbye_reasons, "server_shutdown");
        s
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = Report::build(
            settings(),
            &Thresholds::default(),
            &totals(),
            vec![Point::of(&totals())],
            10,
            6.2,
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["passed"], true);
        assert_eq!(v["failed_thresholds"], serde_json::json!([]));
        assert_eq!(v["connections"]["success_rate_pct"], 100.0);
        assert_eq!(v["messages"]["error_rate_pct"], 0.5);
        assert_eq!(v["messages"]["failed"], 1);
        assert_eq!(v["disconnects"]["by_close_code"]["1001"], 1);
        assert_eq!(v["disconnects"]["by_goodbye_reason"]["server_shutdown"], 1);
        assert_eq!(v["thresholds"].as_array().unwrap().len(), 4);
        assert_eq!(v["thresholds"][0]["status"], "pass");
        assert!(v["latency"]["round_trip"]["p99_ms"].as_f64().unwrap() > 1.9);
        assert_eq!(v["timeline"][0]["answered"], 199);
        assert_eq!(v["settings"]["scenario"], "smoke");
    }

    #[test]
    fn a_failed_threshold_is_named_in_json_and_table() {
        let limits = Thresholds {
            max_error_pct: 0.1,
            ..Thresholds::default()
        };
        let report = Report::build(settings(), &limits, &totals(), Vec::new(), 10, 6.2);
        assert!(!report.passed);
        assert_eq!(report.failed_thresholds, ["error_rate"]);
        assert!(report.table().contains("FAILED: error_rate"));
    }

    #[test]
    fn empty_run_has_null_rates_instead_of_nan() {
        let report = Report::build(
            settings(),
            &Thresholds::default(),
            &Snapshot::empty(0),
            Vec::new(),
            0,
            0.0,
        );
        let v = serde_json::to_value(&report).unwrap();
        assert!(v["connections"]["success_rate_pct"].is_null());
        assert!(v["latency"]["connect"].is_null());
        assert_eq!(v["passed"], true, "nothing attempted, nothing to fail");
    }
}
