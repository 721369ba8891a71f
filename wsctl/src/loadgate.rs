//! The load-test gate: `loadtest smoke --url ws://127.0.0.1:PORT --json` against the new
//! colour alone, before it gets any traffic. loadtest's exit status is the verdict
//! (docs/architecture.md): 0 every threshold passed, 1 a threshold failed, 2 it could not run.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Run the smoke scenario; `Ok` carries a one-line summary of the thresholds.
pub fn smoke(
    loadtest: &Path,
    url: &str,
    extra_args: &[String],
    timeout: Duration,
) -> Result<String> {
    let mut child = Command::new(loadtest)
        .args(smoke_args(url, extra_args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (set --loadtest or WSCTL_LOADTEST)",
                loadtest.display()
            )
        })?;
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = wait_with_deadline(&mut child, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    verdict(status.code(), &stdout, &stderr)
}

/// The arguments of the smoke run against `url`: the scenario, the URL, JSON output, then
/// the operator's extra arguments.
pub fn smoke_args(url: &str, extra_args: &[String]) -> Vec<String> {
    ["smoke", "--url", url, "--json"]
        .into_iter()
        .map(str::to_owned)
        .chain(extra_args.iter().cloned())
        .collect()
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for loadtest")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "loadtest did not finish within {}; killed",
                humantime::format_duration(timeout)
            );
        }
        sleep(Duration::from_millis(100));
    }
}

/// Judge loadtest's exit code, naming the thresholds of its JSON report.
fn verdict(code: Option<i32>, stdout: &str, stderr: &str) -> Result<String> {
    let report: Option<Value> = serde_json::from_str(stdout.trim()).ok();
    let all = describe(report.as_ref(), |_| true);
    match code {
        Some(0) if all.is_empty() => Ok("passed".to_owned()),
        Some(0) => Ok(format!("passed: {all}")),
        Some(1) => {
            let failed = describe(report.as_ref(), |t| t["status"] == "fail");
            bail!(
                "threshold failed: {}",
                if failed.is_empty() {
                    last_line(stderr)
                } else {
                    &failed
                }
            )
        }
        Some(code) => bail!(
            "loadtest could not run (exit {code}): {}",
            last_line(stderr)
        ),
        None => bail!("loadtest was killed by a signal: {}", last_line(stderr)),
    }
}

/// `rule [status observed]` for the chosen thresholds of a loadtest-report/1.
fn describe(report: Option<&Value>, chosen: impl Fn(&Value) -> bool) -> String {
    let Some(list) = report.and_then(|r| r["thresholds"].as_array()) else {
        return String::new();
    };
    list.iter()
        .filter(|t| chosen(t))
        .map(|t| {
            let observed = t["observed"]
                .as_f64()
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "no sample".into());
            format!(
                "{} [{} {observed}]",
                t["rule"].as_str().unwrap_or("?"),
                t["status"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or("(no output)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"schema":"loadtest-report/1","passed":false,"failed_thresholds":["round_trip_p95"],
      "thresholds":[
        {"name":"connect_p95","rule":"connect_p95 < 2000 ms","limit":2000,"observed":3.2,"unit":"ms","status":"pass"},
        {"name":"round_trip_p95","rule":"round_trip_p95 < 1000 ms","limit":1000,"observed":1500.04,"unit":"ms","status":"fail"}]}"#;

    #[test]
    fn exit_1_names_the_failed_threshold_only() {
        let err = verdict(Some(1), REPORT, "").unwrap_err().to_string();
        assert_eq!(
            err,
            "threshold failed: round_trip_p95 < 1000 ms [fail 1500.0]"
        );
    }

    #[test]
    fn exit_0_summarises_every_threshold() {
        let ok = verdict(Some(0), REPORT, "").unwrap();
        assert!(
            ok.starts_with("passed: connect_p95 < 2000 ms [pass 3.2]"),
            "{ok}"
        );
    }

    #[test]
    fn exit_2_and_signals_show_the_last_error_line() {
        let err = verdict(
            Some(2),
            "",
            "starting\nerror: cannot connect to ws://127.0.0.1:3002\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exit 2): error: cannot connect"),
            "{err}"
        );
        assert!(verdict(None, "", "").is_err());
    }

    #[test]
    fn a_missing_binary_and_a_hung_run_are_errors() {
        let err = smoke(
            Path::new("/nonexistent/loadtest"),
            "ws://127.0.0.1:1",
            &[],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("WSCTL_LOADTEST"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let hung = dir.path().join("loadtest");
        std::fs::write(&hung, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = smoke(&hung, "ws://127.0.0.1:1", &[], Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err:#}");
    }
}
