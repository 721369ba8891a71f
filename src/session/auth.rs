//! The authentication of one chat connection: the token it showed at the upgrade or must
//! send as its first frame within `AUTH_TIMEOUT`, its expiry, and its refresh by a later
//! `authenticate` of the same user. Refusals are counted and logged here, with their reason
//! and never the token.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use tracing::{debug, info};

use crate::auth::{AuthRefusal, Identity};
use crate::protocol::{ClientType, GoodbyeReason};
use crate::registry::Owner;
use crate::state::AppState;

/// A token taken from an `authenticate` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// The connection's first: it can start.
    First,
    /// A fresh token of the same user: the connection lives on until its expiry.
    Refresh,
}

/// Where a connection stands with authentication.
#[derive(Debug)]
pub(crate) enum Credentials {
    /// Authentication is off.
    Off,
    /// The upgrade carried no token: the first frame must be `authenticate` by `deadline`.
    Awaiting { deadline: Instant },
    /// A verified token, good until `expires`.
    Verified {
        identity: Identity,
        expires: Instant,
    },
}

impl Credentials {
    /// The credentials of a connection just upgraded with `identity` (from an
    /// `Authorization` header) or without.
    pub(crate) fn at_upgrade(identity: Option<Identity>, state: &AppState, now: Instant) -> Self {
        match (identity, &state.auth) {
            (Some(identity), _) => Credentials::verified(identity, now),
            (None, Some(_)) => Credentials::Awaiting {
                deadline: now + state.config.auth.timeout,
            },
            (None, None) => Credentials::Off,
        }
    }

    fn verified(identity: Identity, now: Instant) -> Self {
        let expires = now + identity.lifetime_left(SystemTime::now());
        Credentials::Verified { identity, expires }
    }

    /// Who the connection is for the ownership of its id (without tokens, `client`: its
    /// per-client key); `None` until it has authenticated.
    pub(crate) fn owner(&self, client: IpAddr) -> Option<Owner> {
        match self {
            Credentials::Off => Some(Owner::Client(client)),
            Credentials::Awaiting { .. } => None,
            Credentials::Verified { identity, .. } => Some(Owner::User(identity.user.clone())),
        }
    }

    /// The verified identity, when authentication is on and done: what channels ask.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        match self {
            Credentials::Verified { identity, .. } => Some(identity),
            _ => None,
        }
    }

    pub(crate) fn is_awaiting(&self) -> bool {
        matches!(self, Credentials::Awaiting { .. })
    }

    /// When authentication next needs the timer: the first frame's deadline or the expiry.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Credentials::Off => None,
            Credentials::Awaiting { deadline } => Some(*deadline),
            Credentials::Verified { expires, .. } => Some(*expires),
        }
    }

    /// The goodbye due at `now`, if the wait for a token or the token's life is over.
    pub(crate) fn lapsed(&self, now: Instant) -> Option<GoodbyeReason> {
        match self {
            Credentials::Awaiting { deadline } if now >= *deadline => {
                Some(GoodbyeReason::Unauthorized)
            }
            Credentials::Verified { expires, .. } if now >= *expires => {
                Some(GoodbyeReason::TokenExpired)
            }
            _ => None,
        }
    }

    /// Takes a token sent in an `authenticate` frame: the first one, or a refresh, which must
    /// be the same user's. Authentication must be on.
    pub(crate) fn accept(
        &mut self,
        state: &AppState,
        token: &str,
        now: Instant,
    ) -> Result<Accepted, AuthRefusal> {
        let verifier = state.auth.as_ref().ok_or(AuthRefusal::Missing)?;
        let identity = verifier.verify(token)?;
        let accepted = match self {
            Credentials::Verified { identity: old, .. } if old.user != identity.user => {
                return Err(AuthRefusal::UserChanged);
            }
            Credentials::Verified { .. } => Accepted::Refresh,
            _ => Accepted::First,
        };
        debug!(
            user = &*identity.user,
            refresh = accepted == Accepted::Refresh,
            "token accepted"
        );
        *self = Credentials::verified(identity, now);
        Ok(accepted)
    }
}

/// Why a connection that owed a token first sent a frame of this type instead: a broken
/// `authenticate` (or no valid message at all) is malformed, any other message a missing token.
pub(crate) fn refusal_before_token(kind: ClientType) -> AuthRefusal {
    match kind {
        ClientType::Invalid | ClientType::Authenticate => AuthRefusal::Malformed,
        _ => AuthRefusal::Missing,
    }
}

/// Counts and logs a refused token (or its absence), never the token itself.
pub(crate) fn report_refusal(
    state: &AppState,
    reason: AuthRefusal,
    connection_id: &str,
    peer: IpAddr,
) {
    state.metrics.auth.refused(reason);
    info!(connection_id, peer = %peer, server_id = %state.config.server_id,
        reason = reason.as_str(), "authentication refused");
}
