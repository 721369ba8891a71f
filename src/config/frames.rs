//! The limits on what one WebSocket connection may send, frame by frame (issue 14): a budget
//! of frames per second covering every frame (continuation and control frames included), and
//! the bounds of one fragmented message in frames and in time.

use std::fmt;
use std::time::Duration;

use clap::Args;

use super::validator::Validator;
use super::values::{integer_in, millis_in};

/// The frame limits as given.
#[derive(Debug, Clone, Args)]
pub struct RawFrameLimits {
    /// Frames of any kind per second per connection (burst: one second's worth); beyond it
    /// `error rate_limited` once, then close 1008 when it goes on (0 = no limit)
    #[arg(long, env = "FRAME_RATE_LIMIT", default_value = "1000")]
    pub frame_rate_limit: String,
    /// Frames one fragmented message may take; beyond it close 1008
    #[arg(long, env = "MAX_FRAGMENTS", default_value = "64")]
    pub max_fragments: String,
    /// Milliseconds one fragmented message may take from its first to its last frame; beyond
    /// it close 1008
    #[arg(long, env = "FRAGMENT_TIMEOUT", default_value = "10000")]
    pub fragment_timeout: String,
}

/// The validated frame limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLimits {
    /// Frames per second per connection; 0 = no limit.
    pub frames_per_sec: u32,
    pub max_fragments: u32,
    pub fragment_timeout: Duration,
}

impl FrameLimits {
    pub(super) fn check(raw: &RawFrameLimits, v: &mut Validator) -> Option<FrameLimits> {
        let frames_per_sec = v.check(
            "FRAME_RATE_LIMIT",
            &raw.frame_rate_limit,
            integer_in(0u32, 10_000_000),
        );
        let max_fragments = v.check(
            "MAX_FRAGMENTS",
            &raw.max_fragments,
            integer_in(2u32, 1_000_000),
        );
        let fragment_timeout = v.check(
            "FRAGMENT_TIMEOUT",
            &raw.fragment_timeout,
            millis_in(100, 3_600_000),
        );
        Some(FrameLimits {
            frames_per_sec: frames_per_sec?,
            max_fragments: max_fragments?,
            fragment_timeout: fragment_timeout?,
        })
    }
}

impl fmt::Display for FrameLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "FRAME_RATE_LIMIT={}", self.frames_per_sec)?;
        writeln!(f, "MAX_FRAGMENTS={}", self.max_fragments)?;
        writeln!(f, "FRAGMENT_TIMEOUT={}", self.fragment_timeout.as_millis())
    }
}
