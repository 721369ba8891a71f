//! The settings of the HTTP surface before the upgrade (issue 14): how large a request head may
//! be, how many connections may wait for their upgrade at once (overall and per client), how
//! IPv6 clients are grouped for every per-client limit, and the public origin of the page.

use std::fmt;

use clap::Args;

use super::origins::normalize_origin;
use super::validator::Validator;
use super::values::integer_in;

/// The settings as text (flattened into [`super::RawSettings`]).
#[derive(Debug, Clone, Args)]
pub struct RawHttpSettings {
    /// Bytes of one request's line and headers; beyond it `431`
    #[arg(long, env = "MAX_HEADER_BYTES", default_value = "8192")]
    pub max_header_bytes: String,
    /// Connections accepted but not yet upgraded (or plain HTTP) at once; beyond it closed
    #[arg(long, env = "MAX_PENDING_HTTP", default_value = "1024")]
    pub max_pending_http: String,
    /// The same per client address (0 = no limit; TRUSTED_PROXIES peers are exempt)
    #[arg(long, env = "MAX_PENDING_HTTP_PER_IP", default_value = "32")]
    pub max_pending_http_per_ip: String,
    /// IPv6 clients are counted per prefix of this length for every per-IP limit
    #[arg(long, env = "CLIENT_IPV6_PREFIX", default_value = "64")]
    pub client_ipv6_prefix: String,
    /// `scheme://host[:port]` the public page is served from; allowed besides ALLOWED_ORIGINS
    #[arg(long, env = "PUBLIC_ORIGIN", default_value = "")]
    pub public_origin: String,
}

/// The validated settings of the HTTP surface before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub max_header_bytes: usize,
    pub max_pending_http: u32,
    /// 0 = no per-client limit.
    pub max_pending_http_per_ip: u32,
    pub client_ipv6_prefix: u8,
    /// Normalised `scheme://host[:port]`, if set.
    pub public_origin: Option<String>,
}

fn public_origin(s: &str) -> Result<Option<String>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    normalize_origin(s).map(Some).ok_or_else(|| {
        format!("{s:?} is not an origin like https://chat.example.com[:port] (scheme required)")
    })
}

impl HttpSettings {
    /// Validates every setting, each bad one reported to `v`; `None` if any was bad.
    pub(super) fn check(raw: &RawHttpSettings, v: &mut Validator) -> Option<HttpSettings> {
        // hyper's read buffer holds the head; it is never below 8 KiB, so neither is this.
        let max_header_bytes = v.check(
            "MAX_HEADER_BYTES",
            &raw.max_header_bytes,
            integer_in(1024usize, 1 << 20),
        );
        let max_pending_http = v.check(
            "MAX_PENDING_HTTP",
            &raw.max_pending_http,
            integer_in(1u32, 1_000_000),
        );
        let max_pending_http_per_ip = v.check(
            "MAX_PENDING_HTTP_PER_IP",
            &raw.max_pending_http_per_ip,
            integer_in(0u32, 1_000_000),
        );
        let client_ipv6_prefix = v.check(
            "CLIENT_IPV6_PREFIX",
            &raw.client_ipv6_prefix,
            integer_in(1u8, 128),
        );
        let public_origin = v.check("PUBLIC_ORIGIN", &raw.public_origin, public_origin);
        Some(HttpSettings {
            max_header_bytes: max_header_bytes?,
            max_pending_http: max_pending_http?,
            max_pending_http_per_ip: max_pending_http_per_ip?,
            client_ipv6_prefix: client_ipv6_prefix?,
            public_origin: public_origin?,
        })
    }
}

impl fmt::Display for HttpSettings {
    /// One `VARIABLE=value` line per setting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MAX_HEADER_BYTES={}", self.max_header_bytes)?;
        writeln!(f, "MAX_PENDING_HTTP={}", self.max_pending_http)?;
        writeln!(
            f,
            "MAX_PENDING_HTTP_PER_IP={}",
            self.max_pending_http_per_ip
        )?;
        writeln!(f, "CLIENT_IPV6_PREFIX={}", self.client_ipv6_prefix)?;
        writeln!(
            f,
            "PUBLIC_ORIGIN={}",
            self.public_origin.as_deref().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawHttpSettings {
        RawHttpSettings {
            max_header_bytes: "8192".into(),
            max_pending_http: "1024".into(),
            max_pending_http_per_ip: "32".into(),
            client_ipv6_prefix: "64".into(),
            public_origin: String::new(),
        }
    }

    /// The settings, or the names of the bad variables.
    fn check(raw: &RawHttpSettings) -> Result<HttpSettings, Vec<&'static str>> {
        let mut v = Validator { errors: Vec::new() };
        HttpSettings::check(raw, &mut v)
            .ok_or_else(|| v.errors.iter().map(|error| error.variable).collect())
    }

    #[test]
    fn defaults_are_valid() {
        let settings = check(&raw()).unwrap();
        assert_eq!(settings.max_header_bytes, 8192);
        assert_eq!(settings.client_ipv6_prefix, 64);
        assert_eq!(settings.public_origin, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let mut bad = raw();
        bad.client_ipv6_prefix = "129".into();
        bad.public_origin = "chat.example.com".into();
        bad.max_pending_http = "0".into();
        assert_eq!(
            check(&bad).unwrap_err(),
            ["MAX_PENDING_HTTP", "CLIENT_IPV6_PREFIX", "PUBLIC_ORIGIN"]
        );
    }

    #[test]
    fn public_origin_is_normalised() {
        let mut given = raw();
        given.public_origin = "https://Chat.Example.com/".into();
        assert_eq!(
            check(&given).unwrap().public_origin.as_deref(),
            Some("https://chat.example.com")
        );
    }
}
