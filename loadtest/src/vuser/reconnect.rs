//! A user's life: connect, run the session, and after the server ended it (a `goodbye`
//! asking to reconnect, a lost connection, a failed attempt) connect again after a jittered
//! exponential backoff, until the run stops it or the server says goodbye for good.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::channel_memory::ChannelMemory;
use super::channels::ChannelSession;
use super::connect::connect;
use super::session::{Session, SessionEnd};
use super::settings::UserContext;
use crate::stats::ConnectFailure;

/// Runs user number `global` until `stop` fires (or the server says goodbye for good).
pub async fn run_user(
    ctx: Arc<UserContext>,
    global: u64,
    source: Option<IpAddr>,
    stop: CancellationToken,
) {
    let id = format!("{}-{global}", ctx.run_tag);
    let role = ctx
        .behaviour
        .channels
        .as_ref()
        .map(|plan| plan.role(&ctx.run_tag, global));
    let mut memory = ChannelMemory::default();
    let mut failures_in_a_row = 0u32;
    let mut reconnecting = false;
    while !stop.is_cancelled() {
        let attempt = tokio::select! {
            biased;
            () = stop.cancelled() => {
                // A server that never completes a handshake must not pass for lack of data.
                ctx.recorder.connect_failed(ConnectFailure::Unfinished, reconnecting);
                return;
            }
            result = connect(&ctx, &id, source) => result,
        };
        let end = match attempt {
            Ok((ws, took)) => {
                failures_in_a_row = 0;
                ctx.recorder.connected(took, reconnecting);
                let end = match &role {
                    None => Session::new(&ctx, ws).run(&stop).await,
                    Some(role) => {
                        ChannelSession::new(&ctx, ws, role, &id, &mut memory)
                            .run(&stop, ctx.publishing())
                            .await
                    }
                };
                ctx.recorder.disconnected();
                end
            }
            Err(failure) => {
                ctx.recorder.connect_failed(failure, reconnecting);
                failures_in_a_row += 1;
                SessionEnd::Lost
            }
        };
        match end {
            SessionEnd::Stopped | SessionEnd::Goodbye { reconnect: false } => return,
            SessionEnd::Churned => reconnecting = false,
            SessionEnd::Goodbye { reconnect: true } | SessionEnd::Lost => {
                reconnecting = true;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = sleep(backoff(failures_in_a_row)) => {}
                }
            }
        }
    }
}

/// Full-jitter exponential backoff: between half and all of 100 ms x 2^n, at most 5 s, so
/// that users told to reconnect together do not come back together.
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let ceiling = (100u64 << failures_in_a_row.min(6)).min(5_000);
    Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        for n in 0..20 {
            let d = backoff(n);
            let ceiling = Duration::from_millis((100u64 << n.min(6)).min(5_000));
            assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
        }
    }
}
