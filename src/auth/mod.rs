//! Token authentication, pure: verifying a JWT (signature, algorithm, `exp`, `nbf`, `sub`) with
//! the key read at start-up ([`crate::config::AuthConfig`]) into an [`Identity`], the user and
//! the channels its token allows, or into the typed reason it was refused
//! (`websocket_auth_refusals_total{reason}`). It neither logs nor counts: its callers (the
//! upgrade and the session) do, and never with the token.

mod patterns;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthKey;
use crate::label::labels;
pub use patterns::ChannelPatterns;

labels! {
    /// Why a token (or its absence) was refused, or a channel denied
    /// (`websocket_auth_refusals_total{reason}`).
    pub enum AuthRefusal {
        /// No token: the first frame was not `authenticate`.
        Missing = "missing",
        /// Not a JWT, or its claims are not what the contract requires (`sub`, `exp`).
        Malformed = "malformed",
        BadSignature = "bad_signature",
        /// `alg: none`, or an algorithm other than the configured key's.
        WrongAlgorithm = "wrong_algorithm",
        Expired = "expired",
        /// `nbf` is in the future.
        NotYetValid = "not_yet_valid",
        /// No `authenticate` within `AUTH_TIMEOUT`.
        Timeout = "timeout",
        /// A valid token whose `channels` do not allow the channel asked for.
        ForbiddenChannel = "forbidden_channel",
        /// A refresh carried another user's token.
        UserChanged = "user_changed",
    }
}

/// The longest a token is taken to live: an `exp` further away (even one no clock can hold)
/// still makes a deadline a timer can be set to.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A verified token: who the connection is and what it may do, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: Arc<str>,
    channels: ChannelPatterns,
    /// The token's `exp`, in seconds since the Unix epoch.
    expires_at: u64,
}

impl Identity {
    /// Whether the token allows subscribing and publishing to `channel`.
    pub fn may_access(&self, channel: &str) -> bool {
        self.channels.allow(channel)
    }

    /// How long from `now` until the token expires (zero when it has), at most
    /// [`MAX_LIFETIME`].
    pub fn lifetime_left(&self, now: SystemTime) -> Duration {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(self.expires_at))
            .map_or(MAX_LIFETIME, |expiry| {
                expiry.duration_since(now).unwrap_or(Duration::ZERO)
            })
            .min(MAX_LIFETIME)
    }
}

/// A verified identity as a handover carries it to the next process (docs/handover.md): the
/// token's `sub`, `exp` and `channels`, taken without the token, which is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRecord {
    pub sub: String,
    pub exp: u64,
    pub channels: Vec<String>,
}

impl Identity {
    /// What the next process needs to go on with this identity.
    pub fn record(&self) -> IdentityRecord {
        IdentityRecord {
            sub: self.user.to_string(),
            exp: self.expires_at,
            channels: self.channels.claim(),
        }
    }

    /// The identity a previous process verified; `None` for one no token could carry (an
    /// empty `sub`).
    pub fn from_record(record: IdentityRecord) -> Option<Identity> {
        (!record.sub.is_empty()).then(|| Identity {
            user: record.sub.into(),
            channels: ChannelPatterns::new(record.channels),
            expires_at: record.exp,
        })
    }
}

/// The claims the contract reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// Checks tokens against the configured key.
pub struct Verifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
}

impl Verifier {
    pub fn new(key: &AuthKey) -> Verifier {
        let mut validation = Validation::new(key.algorithm);
        validation.set_required_spec_claims(&["sub", "exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Expiry is exact: the connection ends at `exp`, so a token is not accepted past it.
        validation.leeway = 0;
        // No audience is configured: a token's `aud` is not ours to judge.
        validation.validate_aud = false;
        Verifier {
            key: key.decoding.clone(),
            algorithm: key.algorithm,
            validation,
        }
    }

    /// Verifies `token`: the identity it proves, or why it proves none.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthRefusal> {
        // jsonwebtoken cannot even parse `alg: none` (it knows no such algorithm) and would
        // call it malformed: read the header's `alg` first so that it is refused as what it is.
        if header_algorithm(token)?.as_deref() != Some(algorithm_name(self.algorithm)) {
            return Err(AuthRefusal::WrongAlgorithm);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| refusal(error.kind()))?
            .claims;
        if claims.sub.is_empty() {
            return Err(AuthRefusal::Malformed);
        }
        Ok(Identity {
            user: claims.sub.into(),
            channels: ChannelPatterns::new(claims.channels.unwrap_or_default()),
            expires_at: claims.exp,
        })
    }
}

/// The `alg` of a token's header (`None` when it has no string `alg`), or `Malformed` when
/// the token has no decodable JSON header.
fn header_algorithm(token: &str) -> Result<Option<String>, AuthRefusal> {
    #[derive(Deserialize)]
    struct Header {
        alg: Option<serde_json::Value>,
    }
    let (encoded, _) = token.split_once('.').ok_or(AuthRefusal::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthRefusal::Malformed)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| AuthRefusal::Malformed)?;
    Ok(match header.alg {
        Some(serde_json::Value::String(alg)) => Some(alg),
        _ => None,
    })
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // The configuration only ever picks the three above.
        _ => "unsupported",
    }
}

/// The refusal a jsonwebtoken error stands for.
fn refusal(kind: &ErrorKind) -> AuthRefusal {
    match kind {
        ErrorKind::InvalidSignature => AuthRefusal::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthRefusal::WrongAlgorithm
        }
        ErrorKind::ExpiredSignature => AuthRefusal::Expired,
        ErrorKind::ImmatureSignature => AuthRefusal::NotYetValid,
        // A signature that is not even the right shape for the key (an ECDSA signature of the
        // wrong length, say) is a bad signature too.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => AuthRefusal::BadSignature,
        _ => AuthRefusal::Malformed,
    }
}

#[cfg(test)]
mod tests;
