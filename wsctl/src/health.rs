//! Direct checks of one instance on its loopback listeners: `/health`, `/ready` (public
//! listener) and the error counters of `/metrics` (metrics listener), docs/architecture.md.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::Instance;
use crate::http::get;

/// The body of `GET /health`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
    pub connections: u64,
    pub uptime_seconds: f64,
    pub server_id: String,
    pub version: String,
}

/// Counters that must not move while a colour takes over traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorCounters {
    /// Sum of `websocket_errors_total` over its codes.
    pub errors: f64,
    /// Sum of `websocket_connections_rejected_total` over its reasons.
    pub rejections: f64,
}

impl ErrorCounters {
    /// What grew since `baseline`, as a sentence, when together more than `allowed`;
    /// `None` otherwise.
    pub fn growth_since(&self, baseline: &ErrorCounters, allowed: u32) -> Option<String> {
        let errors = self.errors - baseline.errors;
        let rejections = self.rejections - baseline.rejections;
        (errors + rejections > f64::from(allowed)).then(|| {
            format!("websocket_errors_total +{errors}, websocket_connections_rejected_total +{rejections}")
        })
    }

    fn parse(exposition: &str) -> Result<Self> {
        let errors = sum_of(exposition, "websocket_errors_total")
            .context("no websocket_errors_total series")?;
        let rejections = sum_of(exposition, "websocket_connections_rejected_total")
            .context("no websocket_connections_rejected_total series")?;
        Ok(ErrorCounters { errors, rejections })
    }
}

/// Sum of every sample of metric `name` in the Prometheus text format; `None` if none.
fn sum_of(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

pub fn health(inst: &Instance) -> Result<Health> {
    let url = inst.http_url("/health");
    let (status, body) = get(&url)?;
    if status != 200 {
        bail!("GET {url} answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body)
        .with_context(|| format!("GET {url}: unexpected body {}", body.trim()))
}

/// `Ok` when `/ready` answers 200; the error carries the status and body otherwise.
pub fn ready(inst: &Instance) -> Result<()> {
    let url = inst.http_url("/ready");
    match get(&url)? {
        (200, _) => Ok(()),
        (status, body) => bail!("GET {url} answered {status} {}", body.trim()),
    }
}

/// Poll `/ready` every 100 ms until it answers 200; past `timeout`, the last answer is the error.
pub fn wait_ready(inst: &Instance, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match ready(inst) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

pub fn error_counters(inst: &Instance) -> Result<ErrorCounters> {
    let url = inst.metrics_url();
    let (status, body) = get(&url)?;
    if status != 200 {
        bail!("GET {url} answered {status}");
    }
    ErrorCounters::parse(&body).with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP websocket_errors_total Errors sent to clients.
# TYPE websocket_errors_total counter
websocket_errors_total{code=\"invalid_json\"} 2
websocket_errors_total{code=\"rate_limited\"} 3
websocket_errors_total_extra 100
websocket_connections_rejected_total{reason=\"at_capacity\"} 0
websocket_connections_rejected_total{reason=\"draining\"} 1
";

    #[test]
    fn sums_every_label_of_a_counter_and_nothing_else() {
        let c = ErrorCounters::parse(EXPOSITION).unwrap();
        assert_eq!(
            c,
            ErrorCounters {
                errors: 5.0,
                rejections: 1.0
            }
        );
    }

    #[test]
    fn a_missing_series_is_an_error() {
        let err = ErrorCounters::parse("websocket_errors_total{code=\"x\"} 0\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("websocket_connections_rejected_total")
        );
    }

    #[test]
    fn growth_names_the_counters_that_moved() {
        let before = ErrorCounters {
            errors: 5.0,
            rejections: 1.0,
        };
        assert_eq!(before.growth_since(&before, 0), None);
        let after = ErrorCounters {
            errors: 7.0,
            rejections: 1.0,
        };
        assert_eq!(after.growth_since(&before, 2), None);
        assert!(
            after
                .growth_since(&before, 1)
                .unwrap()
                .contains("websocket_errors_total +2")
        );
    }

    #[test]
    fn parses_the_health_body_of_the_architecture_document() {
        let h: Health = serde_json::from_str(
            r#"{"status":"ok","connections":3,"uptimeSeconds":12,"serverId":"green","version":"0.1.0"}"#,
        )
        .unwrap();
        assert_eq!((h.server_id.as_str(), h.connections), ("green", 3));
    }
}
