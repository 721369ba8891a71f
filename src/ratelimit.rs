//! Per-connection rate limits (messages, and frames of any kind): a token bucket (one second
//! of burst), plus a count of refusals that turns persistent flooding into a
//! `policy_violation` close.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Window in which rejected messages are counted towards a policy violation.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Fewest rejected messages per window that count as abuse, for small rates.
const MIN_STRIKES: u32 = 10;

/// What to do with one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the rate: refuse. `first`: the first refusal of its window, the one a client
    /// must be told about when not every refusal is answered.
    Limited {
        first: bool,
    },
    /// Over the rate for too long: close with `policy_violation`.
    Abusive,
}

/// A limiter's state, carried across a handover (docs/handover.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateSnapshot {
    tokens: f32,
    strikes: u32,
    /// How long the current strike window has run.
    strike_window_ms: u64,
}

/// The limiter of one connection (rate 0 = never limits).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f32,
    tokens: f32,
    refilled: Instant,
    strikes: u32,
    strike_window_start: Instant,
}

impl RateLimiter {
    pub fn new(messages_per_second: u32, now: Instant) -> RateLimiter {
        let rate = messages_per_second as f32;
        RateLimiter {
            rate,
            tokens: rate,
            refilled: now,
            strikes: 0,
            strike_window_start: now,
        }
    }

    /// More rejected messages than this within [`STRIKE_WINDOW`] is abuse: one second's worth
    /// of the allowed rate, at least [`MIN_STRIKES`].
    fn strike_limit(&self) -> u32 {
        (self.rate as u32).max(MIN_STRIKES)
    }

    /// What the limiter stands at, for another process to take up ([`RateLimiter::resume`]).
    pub fn snapshot(&mut self, now: Instant) -> RateSnapshot {
        self.refill(now);
        RateSnapshot {
            tokens: self.tokens,
            strikes: self.strikes,
            strike_window_ms: now
                .saturating_duration_since(self.strike_window_start)
                .as_millis() as u64,
        }
    }

    /// A limiter at `messages_per_second` that goes on from `snapshot` (tokens capped at the
    /// rate: the new process's setting wins).
    pub fn resume(messages_per_second: u32, snapshot: &RateSnapshot, now: Instant) -> RateLimiter {
        let mut limiter = RateLimiter::new(messages_per_second, now);
        limiter.tokens = snapshot.tokens.clamp(0.0, limiter.rate);
        limiter.strikes = snapshot.strikes;
        limiter.strike_window_start = now
            .checked_sub(Duration::from_millis(snapshot.strike_window_ms))
            .unwrap_or(now);
        limiter
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f32();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Allow;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.strike_window_start) > STRIKE_WINDOW {
            self.strike_window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > self.strike_limit() {
            Verdict::Abusive
        } else {
            Verdict::Limited {
                first: self.strikes == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_rate_then_limits_then_calls_it_abuse() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(20, t0);
        let verdicts: Vec<Verdict> = (0..51).map(|_| limiter.check(t0)).collect();
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Allow));
        assert_eq!(verdicts[20], Verdict::Limited { first: true });
        assert!(
            verdicts[21..40]
                .iter()
                .all(|v| *v == Verdict::Limited { first: false })
        );
        assert_eq!(verdicts[40], Verdict::Abusive);
    }

    #[test]
    fn tokens_refill_over_time() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, t0);
        for _ in 0..10 {
            assert_eq!(limiter.check(t0), Verdict::Allow);
        }
        assert_eq!(limiter.check(t0), Verdict::Limited { first: true });
        assert_eq!(
            limiter.check(t0 + Duration::from_millis(100)),
            Verdict::Allow
        );
    }

    #[test]
    fn strikes_reset_after_the_window() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1, t0);
        limiter.check(t0);
        for _ in 0..MIN_STRIKES {
            assert!(matches!(limiter.check(t0), Verdict::Limited { .. }));
        }
        let later = t0 + STRIKE_WINDOW + Duration::from_millis(1);
        limiter.tokens = 0.0;
        limiter.refilled = later;
        assert_eq!(limiter.check(later), Verdict::Limited { first: true });
    }

    #[test]
    fn a_resumed_limiter_goes_on_where_the_snapshot_stood() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, t0);
        for _ in 0..12 {
            limiter.check(t0);
        }
        let snapshot = limiter.snapshot(t0);
        let t1 = t0 + Duration::from_secs(60);
        let mut resumed = RateLimiter::resume(10, &snapshot, t1);
        assert_eq!(resumed.check(t1), Verdict::Limited { first: false });
        assert_eq!(resumed.strikes, 3);
    }

    #[test]
    fn zero_rate_is_off() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0, t0);
        assert!((0..1000).all(|_| limiter.check(t0) == Verdict::Allow));
    }
}
