//! Rate limits: per connection (messages, and frames of any kind: a token bucket of one
//! second of burst, plus a count of refusals that turns persistent flooding into a
//! `policy_violation` close), and per client ([`ClientRateLimiter`], the WebSocket upgrades of
//! one client IP), both on the same [`Bucket`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
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

/// A token bucket: tokens come back at `rate` per second up to `burst`; each use takes one.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f32,
    refilled: Instant,
}

impl Bucket {
    pub fn full(burst: f32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            refilled: now,
        }
    }

    /// Refills for the time since the last call; the tokens now held.
    fn refill(&mut self, rate: f32, burst: f32, now: Instant) -> f32 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f32();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.refilled = now;
        self.tokens
    }

    /// Takes a token if there is one (after refilling for the time since the last call).
    pub fn take(&mut self, rate: f32, burst: f32, now: Instant) -> bool {
        if self.refill(rate, burst, now) >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
    bucket: Bucket,
    strikes: u32,
    strike_window_start: Instant,
}

impl RateLimiter {
    pub fn new(messages_per_second: u32, now: Instant) -> RateLimiter {
        let rate = messages_per_second as f32;
        RateLimiter {
            rate,
            bucket: Bucket::full(rate, now),
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
        RateSnapshot {
            tokens: self.bucket.refill(self.rate, self.rate, now),
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
        limiter.bucket = Bucket::full(snapshot.tokens.clamp(0.0, limiter.rate), now);
        limiter.strikes = snapshot.strikes;
        limiter.strike_window_start = now
            .checked_sub(Duration::from_millis(snapshot.strike_window_ms))
            .unwrap_or(now);
        limiter
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Allow;
        }
        if self.bucket.take(self.rate, self.rate, now) {
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

/// Most clients a [`ClientRateLimiter`] holds a bucket for by default: 48 bytes each in the
/// table (`buckets_are_small` checks it), about 6 MiB at most with the table's spare room.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;
/// How often the buckets that have refilled completely are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A token bucket per client (the WebSocket upgrades of each client IP) with bounded memory:
/// a bucket that has refilled completely is the same as none, so it is forgotten (every
/// [`SWEEP_INTERVAL`], and when the table is full); and the table never holds more than
/// `max_clients` buckets. Full of busy clients (a flood from many addresses), it is emptied:
/// each of them gets a fresh burst, which is what a new address gets anyway.
#[derive(Debug)]
pub struct ClientRateLimiter {
    rate: f32,
    burst: f32,
    /// How long an empty bucket takes to fill up: one untouched this long is full.
    refill: Duration,
    max_clients: usize,
    clients: Mutex<Clients>,
}

#[derive(Debug)]
struct Clients {
    buckets: HashMap<IpAddr, Bucket>,
    swept: Instant,
}

impl ClientRateLimiter {
    /// `rate` per second, `burst` at once, per client; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32, max_clients: usize, now: Instant) -> Option<Self> {
        (rate > 0).then(|| ClientRateLimiter {
            rate: rate as f32,
            burst: burst.max(1) as f32,
            refill: Duration::from_secs_f64(f64::from(burst.max(1)) / f64::from(rate)),
            max_clients: max_clients.max(1),
            clients: Mutex::new(Clients {
                buckets: HashMap::new(),
                swept: now,
            }),
        })
    }

    /// Takes a token from `client`'s bucket: whether it had one, and how many clients hold a
    /// bucket now.
    pub fn allow(&self, client: IpAddr, now: Instant) -> (bool, usize) {
        // Every update is a single step on plain values: a poisoned lock is still consistent.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(clients.swept) >= SWEEP_INTERVAL {
            self.sweep(&mut clients, now);
        }
        let allowed = match clients.buckets.get_mut(&client) {
            Some(bucket) => bucket.take(self.rate, self.burst, now),
            None => {
                if clients.buckets.len() >= self.max_clients {
                    self.make_room(&mut clients, now);
                }
                let mut bucket = Bucket::full(self.burst, now);
                let allowed = bucket.take(self.rate, self.burst, now);
                clients.buckets.insert(client, bucket);
                allowed
            }
        };
        (allowed, clients.buckets.len())
    }

    /// Forgets the buckets that have refilled completely; gives the table's memory back when
    /// most of it is empty.
    fn sweep(&self, clients: &mut Clients, now: Instant) {
        clients
            .buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.refilled) < self.refill);
        clients.swept = now;
        if clients.buckets.capacity() > 4 * clients.buckets.len().max(64) {
            clients.buckets.shrink_to_fit();
        }
    }

    /// The table is full: forgets the idle buckets and, when more than half of them are busy,
    /// all of them (so that at least `max_clients / 2` new clients come before the next sweep:
    /// a flood of new addresses costs no full sweep per address).
    fn make_room(&self, clients: &mut Clients, now: Instant) {
        self.sweep(clients, now);
        if clients.buckets.len() > self.max_clients / 2 {
            clients.buckets.clear();
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
        limiter.bucket = Bucket {
            tokens: 0.0,
            refilled: later,
        };
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

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(i))
    }

    #[test]
    fn a_client_gets_its_burst_then_the_rate() {
        let t0 = Instant::now();
        let limiter = ClientRateLimiter::new(5, 10, 100, t0).unwrap();
        let allowed = (0..11).filter(|_| limiter.allow(ip(1), t0).0).count();
        assert_eq!(allowed, 10, "the burst");
        assert!(
            limiter.allow(ip(2), t0).0,
            "another client has its own bucket"
        );
        assert!(!limiter.allow(ip(1), t0 + Duration::from_millis(150)).0);
        assert!(
            limiter.allow(ip(1), t0 + Duration::from_millis(250)).0,
            "1/5 s"
        );
        assert!(ClientRateLimiter::new(0, 10, 100, t0).is_none(), "0 = off");
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let t0 = Instant::now();
        let limiter = ClientRateLimiter::new(5, 10, 100, t0).unwrap();
        for i in 0..50 {
            limiter.allow(ip(i), t0);
        }
        let busy = t0 + SWEEP_INTERVAL - Duration::from_millis(1);
        assert_eq!(limiter.allow(ip(1), busy), (true, 50), "no sweep yet");
        // Ten seconds on, every bucket but the one just used (2 s to refill) is full again.
        let later = busy + Duration::from_secs(1);
        assert_eq!(limiter.allow(ip(1), later), (true, 1));
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let t0 = Instant::now();
        let limiter = ClientRateLimiter::new(5, 10, 100, t0).unwrap();
        for i in 0..1000 {
            let (allowed, held) = limiter.allow(ip(i), t0);
            assert!(allowed, "a new client has its burst");
            assert!(held <= 100, "{held} buckets");
        }
        // Idle buckets go first: a full table of idle clients keeps the busy one.
        let limiter = ClientRateLimiter::new(5, 1, 4, t0).unwrap();
        let later = t0 + Duration::from_secs(1);
        for i in 0..3 {
            limiter.allow(ip(i), t0);
        }
        limiter.allow(ip(3), later);
        assert_eq!(limiter.allow(ip(4), later), (true, 2));
        assert!(!limiter.allow(ip(3), later).0, "ip 3's bucket was kept");
    }

    #[test]
    fn buckets_are_small() {
        assert!(std::mem::size_of::<(IpAddr, Bucket)>() <= 48);
    }
}
