//! Plain HTTP GETs on loopback (instances' /health, /ready, /metrics; Traefik's API), each
//! bounded in time so that a hung peer fails a step instead of hanging the deploy.

use std::time::Duration;

use anyhow::{Context, Result};

const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// Status code and body of `GET url`; any status is a response, not an error.
pub fn get(url: &str) -> Result<(u16, String)> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}: reading the body"))?;
    Ok((response.status().as_u16(), body))
}
