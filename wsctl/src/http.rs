//! HTTP GETs, each bounded in time so that a hung peer fails a step instead of hanging the
//! deploy: plain HTTP on loopback (instances' /health, /ready, /metrics), and Traefik's API,
//! which may be `https://` (verified against the configured trust, tls.rs).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::tls::Trust;

const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// Status code and body of `GET url` over plain HTTP; any status is a response, not an error.
pub fn get(url: &str) -> Result<(u16, String)> {
    fetch(url, None)
}

/// The same for a URL that may be `https://`, whose server is verified against `trust`.
pub fn get_verified(url: &str, trust: &Trust) -> Result<(u16, String)> {
    fetch(url, Some(trust))
}

fn fetch(url: &str, trust: Option<&Trust>) -> Result<(u16, String)> {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false);
    if url.starts_with("https://") {
        let Some(trust) = trust else {
            bail!("GET {url}: only plain http:// is expected here");
        };
        config = config.tls_config(trust.http_config()?);
    }
    let agent = config.build().new_agent();
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
