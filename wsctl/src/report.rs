//! What a command did, step by step: each step's outcome and timing printed as it finishes
//! (stdout, or stderr under `--json`), and the whole report at the end (a summary, or one
//! JSON object on stdout for automation). Also the exit codes that go with each outcome.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::colour::Colour;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Failed,
    /// `--dry-run`: what would be done.
    Planned,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub seconds: f64,
    pub detail: String,
}

/// How a command ended; each has its exit code (docs/deploy.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every step passed.
    Succeeded,
    /// `--dry-run` printed the plan and changed nothing.
    Planned,
    /// A step failed and the previous colour is serving again; the new one is stopped.
    RolledBack,
    /// Something failed that wsctl could not put back: the report says what state is left.
    NeedsOperator,
    /// A check failed before anything was changed.
    Refused,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Succeeded | Outcome::Planned => 0,
            Outcome::RolledBack => 1,
            Outcome::NeedsOperator => 4,
            Outcome::Refused => EXIT_REFUSED,
        }
    }
}

/// Exit code of a command refused before it changed anything (bad input, preconditions).
pub const EXIT_REFUSED: i32 = 2;
/// Exit code when another deploy holds the lock.
pub const EXIT_LOCKED: i32 = 3;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub command: String,
    pub from: Colour,
    pub to: Colour,
    pub outcome: Outcome,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    pub rollback: Vec<StepRecord>,
    pub total_seconds: f64,
}

/// Prints steps as they finish and the report at the end.
pub struct Reporter {
    json: bool,
    /// `--dry-run`: steps that succeed were only described; they are `planned`.
    rehearsal: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Self {
        Reporter {
            json,
            rehearsal: false,
        }
    }

    /// The same output, for a dry run.
    pub fn rehearsal(&self) -> Self {
        Reporter {
            json: self.json,
            rehearsal: true,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Progress goes to stderr under `--json`, so that stdout holds only the JSON.
    fn progress(&self, line: &str) {
        if self.json {
            say(&mut std::io::stderr(), line);
        } else {
            say(&mut std::io::stdout(), line);
        }
    }

    pub fn heading(&self, text: &str) {
        if self.rehearsal {
            self.progress(&format!("{text} (dry run)"));
        } else {
            self.progress(text);
        }
    }

    pub fn step(&self, record: &StepRecord) {
        let mark = match record.status {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "FAILED",
            StepStatus::Planned => "plan",
        };
        self.progress(&format!(
            "  [{mark:>6}] {:<16} {:>7.2}s  {}",
            record.name, record.seconds, record.detail
        ));
    }

    pub fn finish(&self, report: &Report) {
        if self.json {
            let json = serde_json::to_string_pretty(report).expect("a report serialises");
            say(&mut std::io::stdout(), &json);
            return;
        }
        let line = match report.outcome {
            Outcome::Succeeded => format!(
                "{}: {} is active ({:.1}s)",
                report.command, report.to, report.total_seconds
            ),
            Outcome::Planned => "dry run: nothing was changed".to_owned(),
            Outcome::RolledBack => format!(
                "{}: FAILED at {}, rolled back: {} is active, {} stopped ({:.1}s): {}",
                report.command,
                report.failed_step.as_deref().unwrap_or("?"),
                report.from,
                report.to,
                report.total_seconds,
                report.error.as_deref().unwrap_or("")
            ),
            Outcome::NeedsOperator => format!(
                "{}: FAILED at {} and could not be put back; check `wsctl status` (docs/deploy.md, rolling back by hand): {}",
                report.command,
                report.failed_step.as_deref().unwrap_or("?"),
                report.error.as_deref().unwrap_or("")
            ),
            Outcome::Refused => format!(
                "{}: refused, nothing was changed: {}",
                report.command,
                report.error.as_deref().unwrap_or("")
            ),
        };
        say(&mut std::io::stdout(), &line);
    }
}

/// Print a line, ignoring a closed terminal or pipe: a deploy whose SSH session dropped
/// must go on to its end (or its rollback) rather than die on its next progress line.
pub fn say(out: &mut impl Write, line: &str) {
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Runs named steps, timing each, recording and printing it.
pub struct StepLog<'r> {
    reporter: &'r Reporter,
    pub records: Vec<StepRecord>,
}

impl<'r> StepLog<'r> {
    pub fn new(reporter: &'r Reporter) -> Self {
        StepLog {
            reporter,
            records: Vec::new(),
        }
    }

    /// Run `action`; its `Ok` text or its error becomes the step's detail. In a rehearsal
    /// (`--dry-run`) the action only described itself: the step is `planned`, untimed.
    pub fn run(&mut self, name: &str, action: impl FnOnce() -> Result<String>) -> Result<()> {
        let started = Instant::now();
        let result = action();
        let (status, detail) = match &result {
            Ok(detail) if self.reporter.rehearsal => (StepStatus::Planned, detail.clone()),
            Ok(detail) => (StepStatus::Ok, detail.clone()),
            Err(e) => (StepStatus::Failed, format!("{e:#}")),
        };
        let seconds = match status {
            StepStatus::Planned => 0.0,
            _ => started.elapsed().as_secs_f64(),
        };
        self.push(StepRecord {
            name: name.to_owned(),
            status,
            seconds,
            detail,
        });
        result.map(drop)
    }

    fn push(&mut self, record: StepRecord) {
        self.reporter.step(&record);
        self.records.push(record);
    }

    /// The last failed step's name.
    pub fn failed_step(&self) -> Option<String> {
        self.records
            .iter()
            .rev()
            .find(|r| r.status == StepStatus::Failed)
            .map(|r| r.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_step_with_its_outcome() {
        let reporter = Reporter::new(true);
        let mut log = StepLog::new(&reporter);
        log.run("health", || Ok("green 0.1.0".to_owned())).unwrap();
        assert!(
            log.run("load-test", || anyhow::bail!("threshold failed"))
                .is_err()
        );
        let statuses: Vec<_> = log
            .records
            .iter()
            .map(|r| (r.name.as_str(), r.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("health", StepStatus::Ok),
                ("load-test", StepStatus::Failed)
            ]
        );
        assert_eq!(log.records[1].detail, "threshold failed");
        assert_eq!(log.failed_step().as_deref(), Some("load-test"));
    }

    #[test]
    fn a_rehearsal_plans_what_succeeds_and_still_fails_what_fails() {
        let reporter = Reporter::new(true).rehearsal();
        let mut log = StepLog::new(&reporter);
        log.run("switch", || Ok("write routing.yml".to_owned()))
            .unwrap();
        assert!(
            log.run("verify", || anyhow::bail!("no such colour"))
                .is_err()
        );
        let statuses: Vec<_> = log.records.iter().map(|r| (r.status, r.seconds)).collect();
        assert_eq!(
            statuses,
            [
                (StepStatus::Planned, 0.0),
                (StepStatus::Failed, statuses[1].1)
            ]
        );
    }

    #[test]
    fn exit_codes_tell_automation_what_happened() {
        let outcomes = [
            Outcome::Succeeded,
            Outcome::Planned,
            Outcome::RolledBack,
            Outcome::NeedsOperator,
            Outcome::Refused,
        ];
        let codes: Vec<i32> = outcomes.into_iter().map(Outcome::exit_code).collect();
        assert_eq!(codes, [0, 0, 1, 4, 2]);
        assert_ne!(EXIT_REFUSED, EXIT_LOCKED);
    }
}
