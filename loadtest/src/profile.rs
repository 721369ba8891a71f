//! Scenario shaping: how many users should be connected at each moment of a run, and which
//! of them belong to which worker process.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Move linearly from the previous stage's user count to `users` over `duration`
/// (a zero duration is a sudden jump). The run starts at 0 users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    #[serde(with = "millis")]
    pub duration: Duration,
    pub users: u64,
}

/// The user count over time: a sequence of stages, after which every user leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub stages: Vec<Stage>,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Profile {
    /// Ramp from 0 to `users` over `ramp`, then hold them for `hold`.
    pub fn ramp_and_hold(users: u64, ramp: Duration, hold: Duration) -> Self {
        Profile {
            stages: vec![
                Stage {
                    duration: ramp,
                    users,
                },
                Stage {
                    duration: hold,
                    users,
                },
            ],
        }
    }

    /// `base` users (connected over `warmup`), a jump to `peak` within `jump`, `hold` at the
    /// peak, a sudden fall back to `base`, and `recovery` there.
    pub fn spike(
        base: u64,
        warmup: Duration,
        peak: u64,
        jump: Duration,
        hold: Duration,
        recovery: Duration,
    ) -> Self {
        Profile {
            stages: vec![
                Stage {
                    duration: warmup,
                    users: base,
                },
                Stage {
                    duration: jump,
                    users: peak,
                },
                Stage {
                    duration: hold,
                    users: peak,
                },
                Stage {
                    duration: Duration::ZERO,
                    users: base,
                },
                Stage {
                    duration: recovery,
                    users: base,
                },
            ],
        }
    }

    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The most users connected at any time.
    pub fn peak(&self) -> u64 {
        self.stages.iter().map(|s| s.users).max().unwrap_or(0)
    }

    /// Users that should be connected `elapsed` into the run (0 once the run is over).
    pub fn users_at(&self, elapsed: Duration) -> u64 {
        let mut start = Duration::ZERO;
        let mut from = 0u64;
        for stage in &self.stages {
            let end = start + stage.duration;
            if elapsed < end {
                let done = (elapsed - start).as_secs_f64() / stage.duration.as_secs_f64();
                let span = stage.users as f64 - from as f64;
                return (from as f64 + span * done).floor() as u64;
            }
            start = end;
            from = stage.users;
        }
        0
    }
}

/// One worker's part of the users: global user `i` belongs to worker `i % count`, so that
/// every worker ramps at the same pace and sources and ids never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub index: u64,
    pub count: u64,
}

impl Share {
    pub const WHOLE: Share = Share { index: 0, count: 1 };

    /// How many of the first `total` global users are this worker's.
    pub fn of(self, total: u64) -> u64 {
        (total + self.count - 1 - self.index) / self.count
    }

    /// The global index of this worker's `local`-th user.
    pub fn global(self, local: u64) -> u64 {
        self.index + local * self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn ramp_grows_linearly_then_holds_then_ends() {
        let p = Profile::ramp_and_hold(1000, S(10), S(5));
        assert_eq!(p.users_at(S(0)), 0);
        assert_eq!(p.users_at(Duration::from_millis(2500)), 250);
        assert_eq!(p.users_at(S(5)), 500);
        assert_eq!(p.users_at(Duration::from_millis(9999)), 999);
        assert_eq!(p.users_at(S(10)), 1000);
        assert_eq!(p.users_at(Duration::from_millis(14_999)), 1000);
        assert_eq!(p.users_at(S(15)), 0);
        assert_eq!(p.total(), S(15));
        assert_eq!(p.peak(), 1000);
    }

    #[test]
    fn zero_ramp_starts_everyone_at_once() {
        let p = Profile::ramp_and_hold(20, Duration::ZERO, S(3));
        assert_eq!(p.users_at(S(0)), 20);
        assert_eq!(p.users_at(S(2)), 20);
    }

    #[test]
    fn spike_jumps_holds_and_falls_back() {
        let p = Profile::spike(100, S(10), 5000, S(1), S(30), S(10));
        assert_eq!(p.users_at(S(5)), 50);
        assert_eq!(p.users_at(S(10)), 100);
        assert_eq!(p.users_at(Duration::from_millis(10_500)), 2550);
        assert_eq!(p.users_at(S(11)), 5000);
        assert_eq!(p.users_at(S(40)), 5000);
        assert_eq!(p.users_at(S(41)), 100, "the fall is sudden");
        assert_eq!(p.users_at(S(50)), 100);
        assert_eq!(p.users_at(S(51)), 0);
        assert_eq!(p.peak(), 5000);
    }

    #[test]
    fn shares_partition_users_exactly() {
        for count in 1..=5 {
            for total in 0..40 {
                let shares: Vec<u64> = (0..count)
                    .map(|index| Share { index, count }.of(total))
                    .collect();
                assert_eq!(
                    shares.iter().sum::<u64>(),
                    total,
                    "count {count} total {total}"
                );
                let mut globals: Vec<u64> = (0..count)
                    .flat_map(|index| {
                        let share = Share { index, count };
                        (0..share.of(total)).map(move |local| share.global(local))
                    })
                    .collect();
                globals.sort_unstable();
                assert_eq!(globals, (0..total).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn profile_survives_serialization() {
        let p = Profile::spike(1, S(1), 2, Duration::from_millis(1500), S(3), S(4));
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
