//! The `ALLOWED_ORIGINS` policy: its three forms and the normalised `scheme://host[:port]`
//! both the setting and a request's `Origin` are compared as.

use super::values::comma_list;

/// Which browser origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Only an `Origin` whose host equals the request's `Host` header.
    SameOrigin,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`, lower-cased).
    List(Vec<String>),
}

/// Parses `scheme://host[:port]` and returns it lower-cased, without a trailing slash.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = matches!(scheme, "http" | "https");
    let authority_ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
    (scheme_ok && authority_ok).then_some(origin)
}

pub(super) fn origins(s: &str) -> Result<AllowedOrigins, String> {
    if s.is_empty() {
        return Ok(AllowedOrigins::SameOrigin);
    }
    if s == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for item in comma_list(s) {
        match normalize_origin(item) {
            Some(origin) => list.push(origin),
            None => {
                return Err(format!(
                    "{item:?} is not an origin like https://example.com[:port], and `*` must stand alone"
                ));
            }
        }
    }
    Ok(AllowedOrigins::List(list))
}
