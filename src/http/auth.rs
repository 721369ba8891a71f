//! Authentication at the upgrade: the token of an `Authorization: Bearer` header, verified
//! before anything is reserved (a bad one is answered 401 `unauthorized` and not upgraded),
//! and the ownership of the connection id it asks for (held by another user: 409
//! `connection_id_in_use`). Without the header the token comes as the first frame.

use std::net::SocketAddr;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::response::json_error;
use crate::auth::{AuthRefusal, Identity};
use crate::metrics::RejectReason;
use crate::registry::Owner;
use crate::session::auth::report_refusal;
use crate::state::AppState;

/// Why an upgrade was refused on authentication's account (already counted and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthorized,
    IdInUse,
}

impl Refusal {
    pub(crate) fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => json_error(StatusCode::UNAUTHORIZED, "unauthorized"),
            Refusal::IdInUse => json_error(StatusCode::CONFLICT, "connection_id_in_use"),
        }
    }
}

/// The identity the upgrade request proves, if any; the refusal to answer otherwise.
pub(crate) fn upgrade_identity(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    peer: SocketAddr,
) -> Result<Option<Identity>, Refusal> {
    let Some(verifier) = &state.auth else {
        return Ok(None);
    };
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let identity = bearer_token(header.as_bytes())
        .ok_or(AuthRefusal::Malformed)
        .and_then(|token| verifier.verify(token));
    let identity = identity.map_err(|reason| {
        report_refusal(state, reason, id, peer.ip());
        state.metrics.rejected(RejectReason::Unauthorized);
        Refusal::Unauthorized
    })?;
    if state
        .registry
        .id_in_use(id, &Owner::User(identity.user.clone()))
    {
        state.metrics.rejected(RejectReason::ConnectionIdInUse);
        return Err(Refusal::IdInUse);
    }
    Ok(Some(identity))
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_tokens_are_read() {
        assert_eq!(bearer_token(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token(b"bearer   abc "), Some("abc"));
        assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer \xff"), None);
    }
}
