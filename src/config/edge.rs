//! The settings of what a proxy in front used to do on the WebSocket path, for hosts where
//! clients reach the server directly (issue 20, the direct data path): the upgrade rate limit
//! per client IP, and PROXY protocol v2 from the load balancers allowed to send it.

use std::fmt;

use clap::Args;
use ipnet::IpNet;

use super::validator::Validator;
use super::values::{integer_in, proxies};

/// The settings as text (flattened into [`super::RawSettings`]).
#[derive(Debug, Clone, Args)]
pub struct RawEdgeSettings {
    /// WebSocket upgrade requests per second per client IP, token bucket (0 = off)
    #[arg(long, env = "UPGRADE_RATE_PER_IP", default_value = "0")]
    pub upgrade_rate_per_ip: String,
    /// Upgrade requests one client IP may make at once (the bucket's size)
    #[arg(long, env = "UPGRADE_BURST_PER_IP", default_value = "10")]
    pub upgrade_burst_per_ip: String,
    /// `off`, `v1`, `v2` or `any`: PROXY_PROTOCOL_TRUSTED peers must open with a PROXY
    /// protocol header of that version (`any`: either, as HAProxy's `accept-proxy` takes them)
    #[arg(long, env = "PROXY_PROTOCOL", default_value = "off")]
    pub proxy_protocol: String,
    /// Comma list of IPs or CIDRs allowed (and required) to send a PROXY header
    #[arg(long, env = "PROXY_PROTOCOL_TRUSTED", default_value = "")]
    pub proxy_protocol_trusted: String,
}

/// Whether connections may carry a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    /// The text header (nginx's `proxy_protocol on`, HAProxy's `send-proxy`).
    V1,
    /// The binary header (AWS NLB, HAProxy's `send-proxy-v2`).
    V2,
    /// Either, told apart by its first byte.
    Any,
}

impl ProxyProtocol {
    fn parse(s: &str) -> Result<ProxyProtocol, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(ProxyProtocol::Off),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            "any" => Ok(ProxyProtocol::Any),
            _ => Err("expected off, v1, v2 or any".into()),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "any",
        }
    }

    /// Whether a header of version 1 (`text`) or 2 is accepted.
    pub fn accepts_v1(self) -> bool {
        matches!(self, ProxyProtocol::V1 | ProxyProtocol::Any)
    }

    pub fn accepts_v2(self) -> bool {
        matches!(self, ProxyProtocol::V2 | ProxyProtocol::Any)
    }
}

/// The validated settings of the direct path's edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Upgrades per second per client IP; 0 = no limit.
    pub upgrade_rate_per_ip: u32,
    pub upgrade_burst_per_ip: u32,
    pub proxy_protocol: ProxyProtocol,
    /// Peers whose PROXY header is believed (and required, with `proxy_protocol` on).
    pub proxy_protocol_trusted: Vec<IpNet>,
}

impl EdgeSettings {
    /// Validates every setting, each bad one reported to `v`; `None` if any was bad.
    pub(super) fn check(raw: &RawEdgeSettings, v: &mut Validator) -> Option<EdgeSettings> {
        let rate = v.check(
            "UPGRADE_RATE_PER_IP",
            &raw.upgrade_rate_per_ip,
            integer_in(0u32, 1_000_000),
        );
        let burst = v.check(
            "UPGRADE_BURST_PER_IP",
            &raw.upgrade_burst_per_ip,
            integer_in(1u32, 1_000_000),
        );
        let proxy_protocol = v.check("PROXY_PROTOCOL", &raw.proxy_protocol, ProxyProtocol::parse);
        // Without a list, a header would either be trusted from everyone or refused from
        // everyone: both are wrong.
        let needs_peers = proxy_protocol.is_some_and(|p| p != ProxyProtocol::Off);
        let trusted =
            v.check(
                "PROXY_PROTOCOL_TRUSTED",
                &raw.proxy_protocol_trusted,
                |s| match proxies(s)? {
                    list if list.is_empty() && needs_peers => Err(
                        "PROXY_PROTOCOL needs the addresses of the load balancers sending it"
                            .into(),
                    ),
                    list => Ok(list),
                },
            );
        Some(EdgeSettings {
            upgrade_rate_per_ip: rate?,
            upgrade_burst_per_ip: burst?,
            proxy_protocol: proxy_protocol?,
            proxy_protocol_trusted: trusted?,
        })
    }
}

impl fmt::Display for EdgeSettings {
    /// One `VARIABLE=value` line per setting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trusted: Vec<String> = self
            .proxy_protocol_trusted
            .iter()
            .map(ToString::to_string)
            .collect();
        writeln!(f, "UPGRADE_RATE_PER_IP={}", self.upgrade_rate_per_ip)?;
        writeln!(f, "UPGRADE_BURST_PER_IP={}", self.upgrade_burst_per_ip)?;
        writeln!(f, "PROXY_PROTOCOL={}", self.proxy_protocol.as_str())?;
        writeln!(f, "PROXY_PROTOCOL_TRUSTED={}", trusted.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEdgeSettings {
        RawEdgeSettings {
            upgrade_rate_per_ip: "0".into(),
            upgrade_burst_per_ip: "10".into(),
            proxy_protocol: "off".into(),
            proxy_protocol_trusted: String::new(),
        }
    }

    /// The settings, or the names of the bad variables.
    fn check(raw: &RawEdgeSettings) -> Result<EdgeSettings, Vec<&'static str>> {
        let mut v = Validator { errors: Vec::new() };
        EdgeSettings::check(raw, &mut v)
            .ok_or_else(|| v.errors.iter().map(|error| error.variable).collect())
    }

    #[test]
    fn defaults_limit_nothing_and_read_no_header() {
        let settings = check(&raw()).unwrap();
        assert_eq!(settings.upgrade_rate_per_ip, 0);
        assert_eq!(settings.upgrade_burst_per_ip, 10);
        assert_eq!(settings.proxy_protocol, ProxyProtocol::Off);
        assert!(settings.proxy_protocol_trusted.is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let mut bad = raw();
        bad.upgrade_rate_per_ip = "-5".into();
        bad.upgrade_burst_per_ip = "0".into();
        bad.proxy_protocol = "v3".into();
        bad.proxy_protocol_trusted = "10.0.0.0/33".into();
        assert_eq!(
            check(&bad).unwrap_err(),
            [
                "UPGRADE_RATE_PER_IP",
                "UPGRADE_BURST_PER_IP",
                "PROXY_PROTOCOL",
                "PROXY_PROTOCOL_TRUSTED"
            ]
        );
    }

    #[test]
    fn every_version_needs_its_trusted_peers() {
        for (value, version) in [
            ("v1", ProxyProtocol::V1),
            ("V2", ProxyProtocol::V2),
            ("any", ProxyProtocol::Any),
        ] {
            let mut on = raw();
            on.proxy_protocol = value.into();
            assert_eq!(
                check(&on).unwrap_err(),
                ["PROXY_PROTOCOL_TRUSTED"],
                "{value}"
            );
            on.proxy_protocol_trusted = "10.0.0.1".into();
            assert_eq!(check(&on).unwrap().proxy_protocol, version);
        }
        let mut on = raw();
        on.proxy_protocol = "V2".into();
        on.proxy_protocol_trusted = "10.0.0.0/16, 192.0.2.7".into();
        let settings = check(&on).unwrap();
        assert_eq!(settings.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(
            settings.to_string(),
            "UPGRADE_RATE_PER_IP=0\nUPGRADE_BURST_PER_IP=10\nPROXY_PROTOCOL=v2\n\
             PROXY_PROTOCOL_TRUSTED=10.0.0.0/16,192.0.2.7/32\n"
        );
    }
}
