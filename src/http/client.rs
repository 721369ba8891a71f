//! Who the client is: the TCP peer or, when the peer is a trusted proxy, the rightmost
//! untrusted `X-Forwarded-For` entry (and the scheme it was reached by, `X-Forwarded-Proto`);
//! and the key every per-client limit counts under, where an IPv6 client is its
//! `/CLIENT_IPV6_PREFIX` (one subscriber holds a whole /64, so counting exact addresses would
//! give one client 2^64 budgets).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

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

/// Whether `ip` is one of the `TRUSTED_PROXIES`.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's IP: the peer, unless the peer is a trusted proxy; then the `X-Forwarded-For`
/// chain is walked from the right, skipping trusted proxies, and the first untrusted address is
/// the client. An unparseable entry stops the walk at the last address known to be real.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut client = canonical(peer);
    if !is_trusted(client, trusted) {
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
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The scheme the client used: `X-Forwarded-Proto` (its first entry) when the peer is a
/// trusted proxy, else `http` (this server speaks plain HTTP; TLS ends at the proxy).
pub(crate) fn request_scheme(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|scheme| scheme.trim().to_ascii_lowercase());
    match forwarded {
        Some(scheme) if is_trusted(peer, trusted) && !scheme.is_empty() => scheme,
        _ => "http".to_owned(),
    }
}

/// The key a client is counted under by every per-client limit: an IPv4 address itself, an
/// IPv6 address cut to its first `ipv6_prefix` bits.
pub(crate) fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// A header map of `pairs`, for tests.
#[cfg(test)]
pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, axum::http::HeaderValue::from_str(value).unwrap());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn forwarded_scheme_only_from_a_trusted_peer() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-proto", "HTTPS, http")]);
        assert_eq!(request_scheme(ip("127.0.0.1"), &h, &trusted), "https");
        assert_eq!(request_scheme(ip("127.0.0.2"), &h, &trusted), "http");
        assert_eq!(
            request_scheme(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            "http"
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let key = |s: &str, prefix| client_key(ip(s), prefix);
        assert_eq!(
            key("2001:db8:aa:bb::1", 64),
            key("2001:db8:aa:bb:ffff::9", 64)
        );
        assert_ne!(key("2001:db8:aa:bb::1", 64), key("2001:db8:aa:bc::1", 64));
        assert_eq!(key("2001:db8:aa:bb::1", 48), key("2001:db8:aa:cc::1", 48));
        assert_eq!(key("2001:db8::1", 128), ip("2001:db8::1"));
        assert_eq!(key("10.1.2.3", 1), ip("10.1.2.3"));
        assert_eq!(key("::ffff:10.1.2.3", 64), ip("10.1.2.3"));
    }
}
