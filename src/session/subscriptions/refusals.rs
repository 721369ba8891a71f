//! What a channel request is answered with: the [`Reply`], and the refusals that subscribe
//! and publish share (a channel the token does not allow, the broker's refusals).

use crate::auth::{AuthRefusal, Identity};
use crate::channels::BrokerError;
use crate::protocol::{ErrorCode, ProtocolError, ServerType};
use crate::state::AppState;

/// The answer to a channel request: a serialised message, or the `error` to answer with.
pub(in crate::session) type Reply = Result<(String, ServerType), ProtocolError>;

/// `forbidden` when authentication is on and the token does not allow `channel`.
pub(super) fn forbidden(
    state: &AppState,
    identity: Option<&Identity>,
    channel: &str,
    id: Option<&str>,
) -> Result<(), ProtocolError> {
    if identity.is_none_or(|who| who.may_access(channel)) {
        return Ok(());
    }
    state.metrics.auth.refused(AuthRefusal::ForbiddenChannel);
    let message = "the token does not allow this channel";
    Err(ProtocolError::new(ErrorCode::Forbidden, message, id))
}

/// The `error` a broker refusal is answered with.
pub(super) fn broker_error(
    error: BrokerError,
    state: &AppState,
    id: Option<&str>,
) -> ProtocolError {
    match error {
        BrokerError::Unavailable => ProtocolError::new(
            ErrorCode::BrokerUnavailable,
            "the broker cannot take this request now; retry",
            id,
        ),
        BrokerError::ChannelLimit => ProtocolError::new(
            ErrorCode::ChannelLimit,
            format!(
                "the server holds its maximum of {} channels; existing channels still work",
                state.config.channels.max_channels
            ),
            id,
        ),
    }
}
