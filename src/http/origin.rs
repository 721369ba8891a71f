//! Which browser origins may open a WebSocket: `ALLOWED_ORIGINS` (a list, or `*`) and
//! `PUBLIC_ORIGIN`; with `ALLOWED_ORIGINS` empty, also the request's own origin (scheme, host
//! and port equal to the request's) when its host is `localhost` or an IP literal. A DNS name
//! is never trusted as "same origin": under DNS rebinding, an attacker's name resolves to this
//! server and its page's Origin equals the Host it sends (docs/configuration.md, Origin).

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

use crate::config::{AllowedOrigins, normalize_origin};

/// What the Origin of one request is judged against.
pub(crate) struct OriginPolicy<'a> {
    pub allowed: &'a AllowedOrigins,
    pub public_origin: Option<&'a str>,
    /// The scheme the client reached the server by (`http`, or a trusted proxy's
    /// `X-Forwarded-Proto`).
    pub request_scheme: &'a str,
}

impl OriginPolicy<'_> {
    /// Whether the request's `Origin` may upgrade. No `Origin` (a non-browser client) may.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        let Some(origin) = origin.to_str().ok().and_then(normalize_origin) else {
            // `null` (sandboxed pages, file://) or garbage: only a wildcard policy accepts it.
            return *self.allowed == AllowedOrigins::Any;
        };
        if self.public_origin == Some(origin.as_str()) {
            return true;
        }
        match self.allowed {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.contains(&origin),
            AllowedOrigins::SameOrigin => {
                let host = headers.get(HOST).and_then(|h| h.to_str().ok());
                host.is_some_and(|host| self.is_local_same_origin(&origin, host))
            }
        }
    }

    /// `origin` is the request's own (scheme, host and port), and its host cannot be a
    /// rebound DNS name.
    fn is_local_same_origin(&self, origin: &str, host: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let (Some(theirs), Some(ours)) = (
            Authority::parse(authority, scheme),
            Authority::parse(&host, self.request_scheme),
        ) else {
            return false;
        };
        scheme == self.request_scheme && theirs == ours && ours.is_local_literal()
    }
}

/// `host[:port]` with the scheme's default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct Authority<'a> {
    host: &'a str,
    port: u16,
}

impl<'a> Authority<'a> {
    fn parse(authority: &'a str, scheme: &str) -> Option<Authority<'a>> {
        let (host, port) = match authority.rfind(':') {
            // A colon inside `[...]` belongs to an IPv6 literal, not to a port.
            Some(colon) if !authority[colon..].contains(']') => (
                &authority[..colon],
                Some(authority[colon + 1..].parse().ok()?),
            ),
            _ => (authority, None),
        };
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        (!host.is_empty()).then_some(Authority {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// `localhost`, an IPv4 literal or a bracketed IPv6 literal.
    fn is_local_literal(&self) -> bool {
        let bracketed = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'));
        self.host == "localhost"
            || self.host.parse::<Ipv4Addr>().is_ok()
            || bracketed.is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::headers;

    fn policy<'a>(allowed: &'a AllowedOrigins, scheme: &'a str) -> OriginPolicy<'a> {
        OriginPolicy {
            allowed,
            public_origin: None,
            request_scheme: scheme,
        }
    }

    fn allowed(policy: &OriginPolicy<'_>, origin: &str, host: &str) -> bool {
        policy.allows(&headers(&[("origin", origin), ("host", host)]))
    }

    #[test]
    fn same_origin_only_for_local_literals_with_the_same_scheme_and_port() {
        let same = AllowedOrigins::SameOrigin;
        let plain = policy(&same, "http");
        assert!(plain.allows(&headers(&[])), "no Origin: not a browser");
        assert!(allowed(&plain, "http://localhost:3001", "localhost:3001"));
        assert!(allowed(&plain, "http://127.0.0.1:3001", "127.0.0.1:3001"));
        assert!(allowed(&plain, "http://[::1]:3001", "[::1]:3001"));
        assert!(allowed(&plain, "http://LOCALHOST", "localhost:80"));
        assert!(!allowed(&plain, "http://evil.example", "evil.example"));
        assert!(!allowed(
            &plain,
            "http://evil.example:3001",
            "evil.example:3001"
        ));
        assert!(!allowed(&plain, "https://127.0.0.1:3001", "127.0.0.1:3001"));
        assert!(!allowed(&plain, "http://127.0.0.1:9", "127.0.0.1:3001"));
        assert!(!allowed(&plain, "null", "127.0.0.1:3001"));
        let proxied = policy(&same, "https");
        assert!(allowed(
            &proxied,
            "https://localhost:3001",
            "localhost:3001"
        ));
        assert!(!allowed(
            &proxied,
            "http://localhost:3001",
            "localhost:3001"
        ));
    }

    #[test]
    fn public_origin_and_lists() {
        let same = AllowedOrigins::SameOrigin;
        let public = OriginPolicy {
            public_origin: Some("https://chat.example.com"),
            ..policy(&same, "http")
        };
        assert!(allowed(&public, "https://chat.example.com", "backend:3001"));
        assert!(!allowed(&public, "http://chat.example.com", "backend:3001"));
        let list = AllowedOrigins::List(vec!["https://app.example".into()]);
        let listed = policy(&list, "http");
        assert!(allowed(&listed, "https://app.example", "x"));
        assert!(!allowed(&listed, "http://app.example", "x"));
        assert!(
            !allowed(&listed, "http://127.0.0.1:3001", "127.0.0.1:3001"),
            "a list replaces same-origin"
        );
        assert!(allowed(&policy(&AllowedOrigins::Any, "http"), "null", "x"));
    }
}
