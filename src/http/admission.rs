//! Who may open a WebSocket, judged before the upgrade, in order: the `Origin` policy
//! (`ALLOWED_ORIGINS`), draining, the global cap and the per-IP limit (a slot reserved in the
//! registry), with the client's IP address being the TCP peer or, when the peer is a trusted
//! proxy, the rightmost untrusted `X-Forwarded-For` entry. A refusal is counted, logged and
//! answered with its status.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ipnet::IpNet;
use tracing::debug;

use super::response::{json_error, retry_later};
use crate::config::{AllowedOrigins, normalize_origin};
use crate::metrics::RejectReason;
use crate::registry::{Admission, AdmitError};
use crate::state::AppState;

/// Whether the request's `Origin` may upgrade. No `Origin` (a non-browser client) is allowed.
fn origin_allowed(headers: &HeaderMap, policy: &AllowedOrigins) -> bool {
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
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
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

/// Seconds a client should wait before retrying when the server is full.
const RETRY_AFTER_FULL: &str = "5";
/// Seconds before retrying a draining server (a healthy peer usually takes over at once).
const RETRY_AFTER_DRAINING: &str = "1";

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    ForbiddenOrigin,
    Draining,
    AtCapacity,
    IpLimit,
}

impl Refusal {
    fn reason(self) -> RejectReason {
        match self {
            Refusal::ForbiddenOrigin => RejectReason::ForbiddenOrigin,
            Refusal::Draining => RejectReason::Draining,
            Refusal::AtCapacity => RejectReason::AtCapacity,
            Refusal::IpLimit => RejectReason::IpLimit,
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let error = self.reason().as_str();
        match self {
            Refusal::ForbiddenOrigin => json_error(StatusCode::FORBIDDEN, error),
            Refusal::Draining => {
                retry_later(StatusCode::SERVICE_UNAVAILABLE, error, RETRY_AFTER_DRAINING)
            }
            Refusal::AtCapacity => {
                retry_later(StatusCode::SERVICE_UNAVAILABLE, error, RETRY_AFTER_FULL)
            }
            Refusal::IpLimit => retry_later(StatusCode::TOO_MANY_REQUESTS, error, RETRY_AFTER_FULL),
        }
    }
}

/// The checks every upgrade passes, in order: Origin, draining, capacity, per-IP.
fn check_admission(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(Admission, IpAddr), Refusal> {
    if !origin_allowed(headers, &state.config.allowed_origins) {
        return Err(Refusal::ForbiddenOrigin);
    }
    // Under socket activation the listening socket is closed when draining starts, so what
    // still arrives came on a connection accepted before: serve it, its goodbye follows at once.
    if state.lifecycle.is_draining() && !state.socket_activated {
        return Err(Refusal::Draining);
    }
    let ip = client_ip(peer.ip(), headers, &state.config.trusted_proxies);
    match state.registry.admit(ip) {
        Ok(admission) => Ok((admission, ip)),
        Err(AdmitError::AtCapacity) => Err(Refusal::AtCapacity),
        Err(AdmitError::IpLimit) => Err(Refusal::IpLimit),
    }
}

/// Admits an upgrade, or counts and logs the refusal.
pub(crate) fn admit(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(Admission, IpAddr), Refusal> {
    check_admission(state, headers, peer).inspect_err(|refusal| {
        state.metrics.rejected(refusal.reason());
        debug!(peer = %peer, reason = refusal.reason().as_str(), "upgrade refused");
    })
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
