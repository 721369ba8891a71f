//! Who may open a WebSocket, judged before the upgrade: first, as a layer on the WebSocket
//! routes, the upgrade rate of the client IP (`UPGRADE_RATE_PER_IP`); then, once the request
//! is a valid handshake, the `Origin` policy ([`super::origin`]), before any token is read
//! (a page of another site is refused as such, whatever it sends); then, after the token
//! ([`super::auth`]), draining and in the registry the connection id (held by another
//! client: `409`), the global cap and the per-IP limit, the client being identified by
//! [`super::client`]. A refusal is counted, logged and answered with its status.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::debug;

use super::client::{client_ip, client_key, request_scheme};
use super::origin::OriginPolicy;
use super::response::{json_error, retry_later};
use crate::metrics::RejectReason;
use crate::registry::{Admission, AdmitError, Owner};
use crate::state::AppState;

/// Seconds a client should wait before retrying when the server is full.
const RETRY_AFTER_FULL: &str = "5";
/// Seconds before retrying a draining server (a healthy peer usually takes over at once).
const RETRY_AFTER_DRAINING: &str = "1";
/// Seconds before retrying over the upgrade rate: a token comes back within 1/rate, at most 1 s.
const RETRY_AFTER_RATE: &str = "1";

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    ForbiddenOrigin,
    Draining,
    AtCapacity,
    IpLimit,
    ConnectionIdInUse,
    UpgradeRateLimited,
}

impl Refusal {
    fn reason(self) -> RejectReason {
        match self {
            Refusal::ForbiddenOrigin => RejectReason::ForbiddenOrigin,
            Refusal::Draining => RejectReason::Draining,
            Refusal::AtCapacity => RejectReason::AtCapacity,
            Refusal::IpLimit => RejectReason::IpLimit,
            Refusal::ConnectionIdInUse => RejectReason::ConnectionIdInUse,
            Refusal::UpgradeRateLimited => RejectReason::UpgradeRateLimited,
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
            Refusal::ConnectionIdInUse => json_error(StatusCode::CONFLICT, error),
            Refusal::UpgradeRateLimited => {
                retry_later(StatusCode::TOO_MANY_REQUESTS, error, RETRY_AFTER_RATE)
            }
        }
    }
}

/// The `Origin` policy, or counts and logs the refusal.
pub(crate) fn check_origin(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let config = &state.config;
    let origins = OriginPolicy {
        allowed: &config.allowed_origins,
        public_origin: config.http.public_origin.as_deref(),
        request_scheme: &request_scheme(peer.ip(), headers, &config.trusted_proxies),
    };
    if origins.allows(headers) {
        return Ok(());
    }
    count_refusal(state, peer, Refusal::ForbiddenOrigin);
    Err(Refusal::ForbiddenOrigin)
}

/// The checks an upgrade passes after its Origin and token, in order: draining, connection
/// id, capacity, per-IP. `id` is the connection id asked for (chat), if any.
fn check_admission(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    peer: SocketAddr,
    id: Option<&str>,
) -> Result<(Admission, IpAddr), Refusal> {
    let config = &state.config;
    // Under socket activation the listening socket is closed when draining starts, so what
    // still arrives came on a connection accepted before: serve it, its goodbye follows at once.
    if state.lifecycle.is_draining() && !state.socket_activated {
        return Err(Refusal::Draining);
    }
    let ip = client_ip(peer.ip(), headers, &config.trusted_proxies);
    let client = client_key(ip, config.http.client_ipv6_prefix);
    // With tokens the owner is a user, checked with the token (`super::auth`) or, when the
    // token comes as the first frame, when the session claims the id.
    if state.auth.is_none()
        && let Some(id) = id
        && state.registry.id_in_use(id, &Owner::Client(client))
    {
        return Err(Refusal::ConnectionIdInUse);
    }
    match state.registry.admit(client) {
        Ok(admission) => Ok((admission, ip)),
        Err(AdmitError::AtCapacity) => Err(Refusal::AtCapacity),
        Err(AdmitError::IpLimit) => Err(Refusal::IpLimit),
    }
}

/// Admits an upgrade whose Origin ([`check_origin`]) and token passed, or counts and logs
/// the refusal.
pub(crate) fn admit(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    peer: SocketAddr,
    id: Option<&str>,
) -> Result<(Admission, IpAddr), Refusal> {
    check_admission(state, headers, peer, id)
        .inspect_err(|refusal| count_refusal(state, peer, *refusal))
}

fn count_refusal(state: &AppState, peer: SocketAddr, refusal: Refusal) {
    state.metrics.rejected(refusal.reason());
    debug!(peer = %peer, reason = refusal.reason().as_str(), "upgrade refused");
}

/// The upgrade rate limit, a layer on the WebSocket routes (present only when
/// `UPGRADE_RATE_PER_IP` is set): every request to them takes a token from its client's
/// bucket before anything else is looked at, as Traefik's rate limit did in front of them.
pub(crate) async fn limit_upgrade_rate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limiter) = &state.upgrade_rate {
        let config = &state.config;
        let ip = client_ip(peer.ip(), request.headers(), &config.trusted_proxies);
        let client = client_key(ip, config.http.client_ipv6_prefix);
        let (allowed, clients) = limiter.allow(client, Instant::now());
        state
            .metrics
            .http
            .upgrade_rate_clients
            .set(i64::try_from(clients).unwrap_or(i64::MAX));
        if !allowed {
            count_refusal(&state, peer, Refusal::UpgradeRateLimited);
            return Refusal::UpgradeRateLimited.into_response();
        }
    }
    next.run(request).await
}
