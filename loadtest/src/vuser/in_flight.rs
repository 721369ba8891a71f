//! The `message`s a connection sent and has not had answered: ids in send order, each with
//! the time it was scheduled for (latency counts from there), settled by their answer or
//! expired by the timeout.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

pub(super) struct InFlight {
    /// (id, scheduled send time), oldest first.
    pending: VecDeque<(u64, Instant)>,
    last_id: u64,
    timeout: Duration,
}

impl InFlight {
    pub(super) fn new(timeout: Duration) -> Self {
        InFlight {
            pending: VecDeque::new(),
            last_id: 0,
            timeout,
        }
    }

    /// Registers the next message, scheduled for `scheduled`; returns its id.
    pub(super) fn open(&mut self, scheduled: Instant) -> u64 {
        self.last_id += 1;
        self.pending.push_back((self.last_id, scheduled));
        self.last_id
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the oldest pending message times out.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.pending.front().map(|&(_, at)| at + self.timeout)
    }

    /// Drops the messages timed out by `now`; returns how many.
    pub(super) fn expire(&mut self, now: Instant) -> u64 {
        let mut expired = 0;
        while self
            .pending
            .front()
            .is_some_and(|&(_, at)| at + self.timeout <= now)
        {
            self.pending.pop_front();
            expired += 1;
        }
        expired
    }

    /// Takes the pending entry for `id` off the list and returns its scheduled time.
    pub(super) fn settle(&mut self, id: Option<&str>) -> Option<Instant> {
        let id: u64 = id?.parse().ok()?;
        let at = self
            .pending
            .iter()
            .position(|&(pending, _)| pending == id)?;
        self.pending.remove(at).map(|(_, scheduled)| scheduled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_settle_in_any_order_and_only_once() {
        let t0 = Instant::now();
        let mut in_flight = InFlight::new(Duration::from_secs(1));
        let (a, b) = (
            in_flight.open(t0),
            in_flight.open(t0 + Duration::from_millis(5)),
        );
        assert_eq!((a, b), (1, 2));
        assert_eq!(
            in_flight.settle(Some("2")),
            Some(t0 + Duration::from_millis(5))
        );
        assert_eq!(in_flight.settle(Some("2")), None, "already settled");
        assert_eq!(in_flight.settle(Some("x")), None);
        assert_eq!(in_flight.settle(None), None);
        assert_eq!(in_flight.len(), 1);
    }

    #[test]
    fn messages_expire_oldest_first_at_their_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut in_flight = InFlight::new(ms(100));
        in_flight.open(t0);
        in_flight.open(t0 + ms(50));
        assert_eq!(in_flight.next_expiry(), Some(t0 + ms(100)));
        assert_eq!(in_flight.expire(t0 + ms(99)), 0);
        assert_eq!(in_flight.expire(t0 + ms(100)), 1);
        assert_eq!(in_flight.next_expiry(), Some(t0 + ms(150)));
        assert_eq!(in_flight.expire(t0 + ms(500)), 1);
        assert!(in_flight.is_empty());
    }
}
