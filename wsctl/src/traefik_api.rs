//! What Traefik has applied, from its API (`/api/http/services/ws-active@file`): a rewritten
//! routing.yml takes effect only once Traefik's file watcher has reloaded it, and a switch
//! is not done before that.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::http::get_verified;
use crate::routing::{ACTIVE_SERVICE, Weights};
use crate::tls::Trust;

/// The routing Traefik applies now.
pub fn applied(api_url: &str, trust: &Trust) -> Result<Weights> {
    let url = format!("{api_url}/api/http/services/{ACTIVE_SERVICE}@file");
    let (status, body) =
        get_verified(&url, trust).context("Traefik's API (set traefikApi or WSCTL_TRAEFIK_API)")?;
    if status != 200 {
        bail!(
            "GET {url} answered {status}: {} (does Traefik load routing.yml?)",
            body.trim()
        );
    }
    let service: Value =
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))?;
    if let Some(errors) = service.get("error") {
        bail!("Traefik reports {ACTIVE_SERVICE} broken: {errors}");
    }
    Weights::from_weighted(&service["weighted"]).with_context(|| format!("GET {url}"))
}

/// Wait until Traefik applies `wanted`; returns how long that took.
pub fn wait_applied(
    api_url: &str,
    trust: &Trust,
    wanted: &Weights,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let last = applied(api_url, trust);
        match &last {
            Ok(now) if now == wanted => return Ok(started.elapsed()),
            _ if started.elapsed() >= timeout => {
                let seen = last.map_or_else(|e| format!("{e:#}"), |w| w.to_string());
                bail!(
                    "Traefik did not apply routing {wanted} within {}; it applies {seen}",
                    humantime::format_duration(timeout)
                );
            }
            _ => sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_weighted_service_as_traefiks_api_shows_it() {
        // GET /api/http/services/ws-active@file of Traefik 3.7, verbatim.
        let api: Value = serde_json::from_str(
            r#"{"weighted":{"services":[{"name":"ws-blue","weight":2},{"name":"ws-green","weight":1}],"healthCheck":{}},
                "status":"enabled","usedBy":["ws-http@file","ws@file"],"name":"ws-active@file","provider":"file","type":"weighted"}"#,
        )
        .unwrap();
        let w = Weights::from_weighted(&api["weighted"]).unwrap();
        assert_eq!(w, Weights::parse_spec("blue=2,green=1").unwrap());
    }

    #[test]
    fn an_unreachable_api_is_an_error_naming_the_setting() {
        let err = applied("http://127.0.0.1:1", &Trust::default()).unwrap_err();
        assert!(format!("{err:#}").contains("WSCTL_TRAEFIK_API"), "{err:#}");
    }
}
