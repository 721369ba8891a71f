//! The network side of the setup: the target URL (and its TLS for `wss://`), the local source
//! addresses users connect from, and the open-file limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tls::{self, Tls};

/// Where users connect: `ws://HOST[:PORT][/prefix]` or `wss://...`; each user appends
/// `/ws/chat/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The URL as given, without a trailing slash.
    pub base: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// `wss://`: how to open TLS to it.
    pub tls: Option<Tls>,
}

impl Target {
    /// `ca_pem`: the CA certificates of `--ca-file`, trusted besides the system's for `wss://`.
    pub fn parse(url: &str, ca_pem: Option<String>) -> Result<Self, String> {
        let (scheme, rest, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
            ("ws", rest, 80)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            ("wss", rest, 443)
        } else {
            return Err(format!("{url}: the URL must start with ws:// or wss://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port))
                if !authority.ends_with(']') && port.chars().all(|c| c.is_ascii_digit()) =>
            {
                (host, port.to_owned())
            }
            _ => (authority, default_port.to_string()),
        };
        let addr = format!("{host}:{port}")
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {authority} resolves to no address"))?;
        let prefix = path.trim_end_matches('/').to_owned();
        if prefix.contains(['?', '#']) {
            return Err(format!(
                "{url}: no query or fragment allowed; /ws/chat/{{id}} is appended to the URL"
            ));
        }
        let tls = match (scheme, ca_pem) {
            ("wss", extra_roots) => {
                let name = host.trim_start_matches('[').trim_end_matches(']');
                Some(Tls::new(name, extra_roots).map_err(|e| format!("{url}: {e}"))?)
            }
            (_, Some(_)) => return Err(format!("{url}: --ca-file is for wss:// URLs")),
            (_, None) => None,
        };
        Ok(Target {
            base: format!("{scheme}://{authority}{prefix}"),
            addr,
            tls,
        })
    }

    /// `--url` and `--ca-file`, checked as far as they can be before the run: the CA file is
    /// read and every root loaded, so that no worker can fail on them later.
    pub fn from_flags(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let ca_pem = ca_file.map(tls::read_ca_file).transpose()?;
        let target = Target::parse(url, ca_pem)?;
        if let Some(tls) = &target.tls {
            tls.client()?;
        }
        Ok(target)
    }

    /// The URL a user with connection id `id` opens.
    pub fn chat_url(&self, id: &str) -> String {
        format!("{}/ws/chat/{id}", self.base)
    }
}

/// Parses `127.0.0.2-127.0.0.40`, `10.0.0.1,10.0.0.2` or a mix of both.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                let parse = |s: &str| {
                    s.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("source range {part}: {s:?} is not an IPv4 address"))
                };
                let (from, to) = (u32::from(parse(from)?), u32::from(parse(to)?));
                if from > to {
                    return Err(format!(
                        "source range {part}: the first address is above the last"
                    ));
                }
                if to - from >= 65_536 {
                    return Err(format!("source range {part}: more than 65,536 addresses"));
                }
                out.extend((from..=to).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            }
            None => out.push(
                part.parse()
                    .map_err(|_| format!("source address {part:?} is not an IP address"))?,
            ),
        }
    }
    if out.is_empty() {
        return Err("--source-ips names no address".into());
    }
    Ok(out)
}

/// Loopback source addresses used when the target is loopback and none are given: 39
/// addresses hold about 39 x 28,000 ephemeral ports, and stay under per-IP limits.
pub const DEFAULT_LOOPBACK_SOURCES: &str = "127.0.0.2-127.0.0.40";

/// The sources to use: the given ones, or spread over loopback for a loopback target, or
/// none (the kernel chooses).
pub fn choose_sources(given: Option<&str>, target: &Target) -> Result<Vec<IpAddr>, String> {
    match given {
        Some(spec) => parse_sources(spec),
        None if target.addr.ip().is_loopback() && target.addr.is_ipv4() => {
            parse_sources(DEFAULT_LOOPBACK_SOURCES)
        }
        None => Ok(Vec::new()),
    }
}

/// Checks that every source address can be bound here, so that a typo fails the setup
/// rather than every connection.
pub fn check_sources(sources: &[IpAddr]) -> Result<(), String> {
    for ip in sources {
        std::net::TcpListener::bind(SocketAddr::new(*ip, 0))
            .map_err(|e| format!("source address {ip} cannot be used here: {e}"))?;
    }
    Ok(())
}

/// File descriptors kept free for everything but user sockets (stdio, runtime, listeners).
pub const RESERVED_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard one and returns how many users fit in this
/// process.
pub fn raise_fd_limit() -> Result<u64, String> {
    let (_, hard) =
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    let soft = rlimit::increase_nofile_limit(hard)
        .map_err(|e| format!("raising the open-file limit: {e}"))?;
    Ok(soft.saturating_sub(RESERVED_FDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gets_a_default_port_and_keeps_its_prefix() {
        let t = Target::parse("ws://127.0.0.1:3001", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:3001".parse().unwrap());
        assert_eq!(t.chat_url("u1"), "ws://127.0.0.1:3001/ws/chat/u1");
        assert_eq!(t.tls, None);
        let t = Target::parse("ws://127.0.0.1/edge/", None).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.chat_url("x"), "ws://127.0.0.1/edge/ws/chat/x");
    }

    #[test]
    fn wss_urls_get_port_443_and_tls_to_their_host() {
        let t = Target::parse("wss://127.0.0.1/edge", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:443".parse().unwrap());
        assert_eq!(t.chat_url("x"), "wss://127.0.0.1/edge/ws/chat/x");
        assert_eq!(t.tls.unwrap().server_name, "127.0.0.1");
        let t = Target::parse("wss://[::1]:8443", Some("pem".into())).unwrap();
        assert_eq!(t.addr, "[::1]:8443".parse().unwrap());
        let tls = t.tls.unwrap();
        assert_eq!(
            (tls.server_name.as_str(), tls.extra_roots.as_deref()),
            ("::1", Some("pem"))
        );
    }

    #[test]
    fn bad_urls_are_explained() {
        assert!(
            Target::parse("http://127.0.0.1:1", None)
                .unwrap_err()
                .contains("ws:// or wss://")
        );
        assert!(
            Target::parse("ws://127.0.0.1:1", Some("pem".into()))
                .unwrap_err()
                .contains("--ca-file is for wss://")
        );
        assert!(
            Target::parse("ws://", None)
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            Target::parse("ws://127.0.0.1:1/?a=b", None)
                .unwrap_err()
                .contains("query")
        );
        assert!(Target::parse("ws://127.0.0.1:99999", None).is_err());
    }

    #[test]
    fn sources_parse_ranges_and_lists() {
        let s = parse_sources("127.0.0.2-127.0.0.4, 10.1.1.1").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "10.1.1.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s, want);
        assert_eq!(parse_sources(DEFAULT_LOOPBACK_SOURCES).unwrap().len(), 39);
    }

    #[test]
    fn bad_sources_are_explained() {
        assert!(
            parse_sources("127.0.0.9-127.0.0.2")
                .unwrap_err()
                .contains("above")
        );
        assert!(
            parse_sources("127.0.0.1-nope")
                .unwrap_err()
                .contains("not an IPv4")
        );
        assert!(parse_sources("banana").unwrap_err().contains("not an IP"));
        assert!(parse_sources(" , ").unwrap_err().contains("no address"));
        assert!(
            parse_sources("10.0.0.0-10.2.0.0")
                .unwrap_err()
                .contains("65,536")
        );
    }

    #[test]
    fn loopback_targets_get_spread_sources_by_default() {
        let local = Target::parse("ws://127.0.0.1:3001", None).unwrap();
        assert_eq!(choose_sources(None, &local).unwrap().len(), 39);
        assert_eq!(choose_sources(Some("127.0.0.5"), &local).unwrap().len(), 1);
    }
}
