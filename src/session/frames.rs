//! The frame limits of one chat connection: every frame it sends (continuation and control
//! frames included) spends from a budget of `FRAME_RATE_LIMIT` per second, and one fragmented
//! message may take at most `MAX_FRAGMENTS` frames and `FRAGMENT_TIMEOUT`. The transport
//! reports each frame; this decides what it costs.

use std::time::Instant;

use crate::config::FrameLimits;
use crate::ratelimit::{RateLimiter, Verdict};
use crate::ws::Incoming;

/// What one frame means for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameVerdict {
    Pass,
    /// The budget is spent, for the first time in its window: the client is told
    /// `rate_limited`, once.
    OverBudget,
    /// A limit is broken: close 1008 (`policy_violation`).
    Violation,
}

/// The fragmented message in progress.
#[derive(Debug, Clone, Copy)]
struct Fragmented {
    started: Instant,
    frames: u32,
}

/// The frame limits of one connection.
pub(crate) struct FrameGuard {
    budget: RateLimiter,
    fragmented: Option<Fragmented>,
    limits: FrameLimits,
}

impl FrameGuard {
    pub(crate) fn new(limits: &FrameLimits, now: Instant) -> FrameGuard {
        FrameGuard {
            budget: RateLimiter::new(limits.frames_per_sec, now),
            fragmented: None,
            limits: limits.clone(),
        }
    }

    /// Counts one frame read at `now` (bytes of an unfinished frame are no frame).
    pub(crate) fn on_frame(&mut self, incoming: &Incoming, now: Instant) -> FrameVerdict {
        let budget = match self.budget.check(now) {
            Verdict::Allow | Verdict::Limited { first: false } => FrameVerdict::Pass,
            Verdict::Limited { first: true } => FrameVerdict::OverBudget,
            Verdict::Abusive => return FrameVerdict::Violation,
        };
        match incoming {
            Incoming::Fragment => {
                let message = self.fragmented.get_or_insert(Fragmented {
                    started: now,
                    frames: 0,
                });
                message.frames += 1;
                if message.frames > self.limits.max_fragments || self.is_overdue(now) {
                    return FrameVerdict::Violation;
                }
            }
            Incoming::Text(_) | Incoming::Binary(_) => {
                if let Some(message) = self.fragmented.take() {
                    let late = now >= message.started + self.limits.fragment_timeout;
                    if message.frames + 1 > self.limits.max_fragments || late {
                        return FrameVerdict::Violation;
                    }
                }
            }
            _ => {}
        }
        budget
    }

    /// When the fragmented message in progress, if any, runs out of time.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.fragmented
            .map(|message| message.started + self.limits.fragment_timeout)
    }

    /// Whether the fragmented message in progress has taken longer than allowed.
    pub(crate) fn is_overdue(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    pub(crate) fn frames_per_sec(&self) -> u32 {
        self.limits.frames_per_sec
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(frames_per_sec: u32) -> FrameLimits {
        FrameLimits {
            frames_per_sec,
            max_fragments: 3,
            fragment_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn every_frame_spends_the_budget_one_warning_then_a_violation() {
        let t0 = Instant::now();
        let mut guard = FrameGuard::new(&limits(20), t0);
        let ping = Incoming::Ping(Default::default());
        let verdicts: Vec<_> = (0..41).map(|_| guard.on_frame(&ping, t0)).collect();
        assert!(verdicts[..20].iter().all(|v| *v == FrameVerdict::Pass));
        assert_eq!(verdicts[20], FrameVerdict::OverBudget);
        assert!(verdicts[21..40].iter().all(|v| *v == FrameVerdict::Pass));
        assert_eq!(verdicts[40], FrameVerdict::Violation);
    }

    #[test]
    fn a_message_of_too_many_fragments_is_a_violation() {
        let t0 = Instant::now();
        let mut guard = FrameGuard::new(&limits(0), t0);
        for _ in 0..3 {
            assert_eq!(guard.on_frame(&Incoming::Fragment, t0), FrameVerdict::Pass);
        }
        assert_eq!(
            guard.on_frame(&Incoming::Fragment, t0),
            FrameVerdict::Violation
        );
        let mut guard = FrameGuard::new(&limits(0), t0);
        for _ in 0..2 {
            guard.on_frame(&Incoming::Fragment, t0);
        }
        let last = Incoming::Text("x".into());
        assert_eq!(
            guard.on_frame(&last, t0),
            FrameVerdict::Pass,
            "3 frames in all"
        );
        assert_eq!(guard.deadline(), None);
    }

    #[test]
    fn a_fragmented_message_has_a_deadline() {
        let t0 = Instant::now();
        let mut guard = FrameGuard::new(&limits(0), t0);
        assert_eq!(guard.deadline(), None);
        guard.on_frame(&Incoming::Fragment, t0);
        assert_eq!(guard.deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(!guard.is_overdue(t0 + Duration::from_millis(1999)));
        assert!(guard.is_overdue(t0 + Duration::from_secs(2)));
        let late = Incoming::Binary(Default::default());
        assert_eq!(
            guard.on_frame(&late, t0 + Duration::from_secs(3)),
            FrameVerdict::Violation
        );
    }
}
