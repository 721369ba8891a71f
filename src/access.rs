//! Who may open a WebSocket, judged from the upgrade request: the `Origin` policy
//! (`ALLOWED_ORIGINS`) and the client's IP address, which is the TCP peer or, when the peer is
//! a trusted proxy, the rightmost untrusted `X-Forwarded-For` entry.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};
use ipnet::IpNet;

use crate::config::{AllowedOrigins, normalize_origin};

/// Whether the request's `Origin` may upgrade. No `Origin` (a non-browser client) is allowed.
pub fn origin_allowed(headers: &HeaderMap, policy: &AllowedOrigins) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(normalize_origin) else {
        // `null` (sandboxed pages, file://) or garbage: only a wildcard policy accepts it.
        return *policy == AllowedOrigins::Any;
    };
    match policy {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => list.contains(&origin),
        AllowedOrigins::SameOrigin => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase);
            let authority = origin.split_once("://").map(|(_, authority)| authority);
            host.is_some() && authority == host.as_deref()
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 client a.b.c.d (dual-stack listeners report it so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// The client's IP: the peer, unless the peer is a trusted proxy; then the `X-Forwarded-For`
/// chain is walked from the right, skipping trusted proxies, and the first untrusted address is
/// the client. An unparseable entry stops the walk at the last address known to be real.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_ip(ip("9.9.9.9"), &h, &["10.0.0.0/8".parse().unwrap()]),
            ip("9.9.9.9")
        );
    }

    #[test]
    fn rightmost_untrusted_entry_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 2.2.2.2"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted),
            ip("2.2.2.2"),
            "spoofed 6.6.6.6 ignored"
        );
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted),
            ip("10.2.2.2"),
            "all trusted: leftmost"
        );
        let h = headers(&[("x-forwarded-for", "garbage, 10.1.1.1")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("10.1.1.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn origin_policies() {
        let same = AllowedOrigins::SameOrigin;
        assert!(origin_allowed(&headers(&[]), &same));
        assert!(origin_allowed(
            &headers(&[
                ("origin", "http://Example.com:3001"),
                ("host", "example.com:3001")
            ]),
            &same
        ));
        assert!(!origin_allowed(
            &headers(&[("origin", "http://evil.com"), ("host", "example.com")]),
            &same
        ));
        assert!(!origin_allowed(
            &headers(&[("origin", "null"), ("host", "example.com")]),
            &same
        ));
        let list = AllowedOrigins::List(vec!["https://app.example".into()]);
        assert!(origin_allowed(
            &headers(&[("origin", "https://app.example")]),
            &list
        ));
        assert!(!origin_allowed(
            &headers(&[("origin", "http://app.example")]),
            &list
        ));
        assert!(origin_allowed(
            &headers(&[("origin", "null")]),
            &AllowedOrigins::Any
        ));
    }
}
