//! When a connection sends its next `message`. Open loop (`--rate`): send times fixed in
//! advance, one per interval from a random phase, so that a slow server shows as latency
//! instead of slowing the client down. Closed loop (`--closed-loop N`): the next as soon as
//! fewer than N are in flight.

use std::time::Duration;

use tokio::time::Instant;

use super::settings::Behaviour;

pub(super) enum Schedule {
    /// Idle: `--rate 0`.
    Idle,
    OpenLoop {
        next: Instant,
        interval: Duration,
    },
    ClosedLoop {
        window: usize,
    },
}

impl Schedule {
    /// The schedule of a connection established now.
    pub(super) fn start(behaviour: &Behaviour) -> Self {
        if let Some(window) = behaviour.closed_loop_window {
            return Schedule::ClosedLoop {
                window: window as usize,
            };
        }
        if behaviour.rate <= 0.0 {
            return Schedule::Idle;
        }
        let interval = Duration::from_secs_f64(1.0 / behaviour.rate);
        // A random phase spreads the sends of users that connected together.
        Schedule::OpenLoop {
            next: Instant::now() + interval.mul_f64(fastrand::f64()),
            interval,
        }
    }

    /// Open loop: when the next `message` is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        match *self {
            Schedule::OpenLoop { next, .. } => Some(next),
            _ => None,
        }
    }

    /// Closed loop: whether another `message` may go out while `in_flight` are pending.
    pub(super) fn window_open(&self, in_flight: usize) -> bool {
        matches!(*self, Schedule::ClosedLoop { window } if in_flight < window)
    }

    /// Open loop: the send due now was taken; the next falls due one interval later.
    pub(super) fn advance(&mut self) {
        if let Schedule::OpenLoop { next, interval } = self {
            *next += *interval;
        }
    }

    /// Open loop: the next due time and the interval, from which a leaving user counts the
    /// sends it still owes.
    pub(super) fn owed(&self) -> Option<(Instant, Duration)> {
        match *self {
            Schedule::OpenLoop { next, interval } => Some((next, interval)),
            _ => None,
        }
    }
}

/// How many sends, one per `interval` from `next_due` on, are due by `now`.
pub(super) fn overdue(next_due: Instant, now: Instant, interval: Duration) -> u64 {
    if next_due > now {
        return 0;
    }
    let periods = (now - next_due).as_nanos() / interval.as_nanos().max(1);
    u64::try_from(periods).unwrap_or(u64::MAX).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(rate: f64, closed_loop_window: Option<u32>) -> Behaviour {
        Behaviour {
            rate,
            closed_loop_window,
            payload_bytes: 1,
            timeout_ms: 1000,
            churn: false,
            channels: None,
        }
    }

    #[test]
    fn overdue_sends_are_counted_from_the_schedule() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(overdue(t0 + ms(1), t0, ms(50)), 0, "not due yet");
        assert_eq!(overdue(t0, t0, ms(50)), 1, "due right now");
        assert_eq!(overdue(t0, t0 + ms(149), ms(50)), 3);
        assert_eq!(overdue(t0, t0 + ms(150), ms(50)), 4);
    }

    #[test]
    fn open_loop_sends_fall_due_one_interval_apart_within_a_random_phase() {
        let before = Instant::now();
        let mut schedule = Schedule::start(&behaviour(10.0, None));
        let first = schedule.next_due().unwrap();
        assert!(first >= before && first <= Instant::now() + Duration::from_millis(100));
        schedule.advance();
        assert_eq!(
            schedule.next_due(),
            Some(first + Duration::from_millis(100))
        );
        assert_eq!(
            schedule.owed(),
            Some((
                first + Duration::from_millis(100),
                Duration::from_millis(100)
            ))
        );
        assert!(!schedule.window_open(0), "no window in open loop");
    }

    #[test]
    fn a_closed_loop_ignores_the_rate_and_keeps_its_window_full() {
        let schedule = Schedule::start(&behaviour(10.0, Some(2)));
        assert_eq!(schedule.next_due(), None);
        assert_eq!(schedule.owed(), None, "a closed loop owes nothing");
        assert!(schedule.window_open(1));
        assert!(!schedule.window_open(2));
    }

    #[test]
    fn rate_zero_sends_nothing() {
        let schedule = Schedule::start(&behaviour(0.0, None));
        assert_eq!(schedule.next_due(), None);
        assert!(!schedule.window_open(0));
    }
}
