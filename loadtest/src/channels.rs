//! The channel scenarios (protocol v1.1): `fanout` (C channels of N subscribers, each with
//! one publisher at P publishes/s) and `rooms` (R rooms of K users, each subscribed to its room and
//! publishing at a rate). What each user does ([`ChannelPlan::role`]), what they count
//! ([`ChannelCounts`]), and how a run is judged on it: delivery latency (a publication's send
//! time on its publisher's clock to its receipt), missing, duplicate and out-of-order
//! publications and acknowledged publications lost (all must be 0), and deliveries per second.

use serde::{Deserialize, Serialize};

use crate::stats::LatencySummary;
use crate::thresholds::{Direction, Verdict, judge};

/// The shape of a channel run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ChannelScenario {
    /// `channels` groups of `subscribers` + 1 users: the group's first user publishes `rate`
    /// times a second to the group's channel, the others subscribe to it.
    Fanout {
        subscribers: u64,
        rate: f64,
        #[serde(default = "one")]
        channels: u64,
    },
    /// `rooms` rooms of `size` users; each user subscribes to its room and publishes `rate`
    /// times a second to it. A room's users are consecutive user numbers, or with `spread`
    /// every `rooms`-th one, so that they connect (and a drain moves them) at different
    /// moments rather than together.
    Rooms {
        rooms: u64,
        size: u64,
        rate: f64,
        #[serde(default)]
        spread: bool,
    },
}

/// What every user of a channel run does (part of the plan a worker receives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPlan {
    pub scenario: ChannelScenario,
    /// Publishing stops this long after the run starts, so that the last publications have
    /// the rest of the run to arrive: one not received live by the end counts as missing.
    pub publish_for_ms: u64,
    /// Publishing starts this long after the run starts (`--publish-after-ramp`: the end of
    /// the ramp, so that no delivery is measured while users still connect); 0: as soon as
    /// each publisher is connected.
    #[serde(default)]
    pub publish_from_ms: u64,
    /// When set, every subscriber leaves its channel about this often, stays away for up to
    /// half of it, and subscribes again with `recover` (the history/live seam under load).
    pub resubscribe_every_ms: Option<u64>,
    /// Deliveries per second are judged over the seconds from this (the end of the ramp) to
    /// the end of publishing.
    pub measure_from_ms: u64,
}

/// One user's part.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub channel: String,
    pub subscribes: bool,
    /// Publishes per second (0: none).
    pub publish_rate: f64,
}

fn one() -> u64 {
    1
}

impl ChannelPlan {
    /// The users the scenario needs.
    pub fn users(&self) -> u64 {
        match self.scenario {
            ChannelScenario::Fanout {
                subscribers,
                channels,
                ..
            } => (subscribers + 1) * channels,
            ChannelScenario::Rooms { rooms, size, .. } => rooms * size,
        }
    }

    /// Whether user number `global` only publishes (a `fanout` channel's publisher): the
    /// users that `--publish-url` sends to their own server.
    pub fn publishes_only(&self, global: u64) -> bool {
        match self.scenario {
            ChannelScenario::Fanout { subscribers, .. } => global.is_multiple_of(subscribers + 1),
            ChannelScenario::Rooms { .. } => false,
        }
    }

    /// What user number `global` of the run tagged `run_tag` does.
    pub fn role(&self, run_tag: &str, global: u64) -> Role {
        match self.scenario {
            ChannelScenario::Fanout {
                rate,
                subscribers,
                channels,
            } => {
                let publisher = self.publishes_only(global);
                Role {
                    // One channel keeps the name it always had.
                    channel: if channels == 1 {
                        format!("lt:{run_tag}:fanout")
                    } else {
                        format!("lt:{run_tag}:fanout-{}", global / (subscribers + 1))
                    },
                    subscribes: !publisher,
                    publish_rate: if publisher { rate } else { 0.0 },
                }
            }
            ChannelScenario::Rooms {
                rooms,
                size,
                rate,
                spread,
            } => Role {
                channel: format!(
                    "lt:{run_tag}:room-{}",
                    if spread {
                        global % rooms.max(1)
                    } else {
                        global / size.max(1)
                    }
                ),
                subscribes: true,
                publish_rate: rate,
            },
        }
    }
}

/// What channel users count. Every field adds up when windows or processes merge.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCounts {
    /// `publish` requests written.
    pub publishes: u64,
    /// `published` acknowledgements received.
    pub published: u64,
    /// Publishes answered with an `error` (`broker_unavailable` while the broker is down;
    /// the report's errors by code say which).
    pub publish_refused: u64,
    /// `subscribe`s answered with an `error` (and tried again a moment later).
    pub subscribe_refused: u64,
    /// Publications received live, in order, once (each also in the delivery histogram).
    pub deliveries: u64,
    /// Offsets a subscription skipped, or had not received when it ended (those that came
    /// later are also counted in `out_of_order`).
    pub missing: u64,
    /// Publications received again on one subscription.
    pub duplicates: u64,
    /// Skipped offsets that arrived after a later one.
    pub out_of_order: u64,
    /// A publisher's own acknowledged publications that never came back to it on its
    /// subscription to the channel, with no `recovered: false` to excuse them: lost after
    /// the acknowledgement.
    pub acked_lost: u64,
    /// A publisher's own acknowledged publications that a `recovered: false` excused (the
    /// broker lost the channel's history, e.g. a Redis restarted without persistence).
    pub acked_unrecovered: u64,
    /// Subscriptions the server ended with `insufficient_state`.
    pub insufficient_state: u64,
    /// Resubscriptions with `recover` answered `recovered: true` / `false`.
    pub recovered: u64,
    pub not_recovered: u64,
    /// Resubscriptions answered with another epoch than the subscription had.
    pub epoch_changes: u64,
    /// Publications received in order in a recovery's `publications` (not live, so not
    /// deliveries).
    #[serde(default)]
    pub recovered_publications: u64,
    /// The channel's offset at each user's first subscription: publications made before
    /// it joined, never owed to it. In `rooms`, where every user receives its room's
    /// publications, `deliveries + recovered_publications + published_before_joining` =
    /// `published` x the room size when every publish was answered and none was lost.
    #[serde(default)]
    pub published_before_joining: u64,
}

impl ChannelCounts {
    pub fn merge(&mut self, other: &ChannelCounts) {
        self.publishes += other.publishes;
        self.published += other.published;
        self.publish_refused += other.publish_refused;
        self.subscribe_refused += other.subscribe_refused;
        self.deliveries += other.deliveries;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.acked_lost += other.acked_lost;
        self.acked_unrecovered += other.acked_unrecovered;
        self.insufficient_state += other.insufficient_state;
        self.recovered += other.recovered;
        self.not_recovered += other.not_recovered;
        self.epoch_changes += other.epoch_changes;
        self.recovered_publications += other.recovered_publications;
        self.published_before_joining += other.published_before_joining;
    }

    /// `publish`es that got neither `published` nor an `error` (lost with a connection, or
    /// still unanswered when the run ended).
    pub fn unanswered(&self) -> u64 {
        self.publishes
            .saturating_sub(self.published + self.publish_refused)
    }
}

/// The limits a channel run must stay within.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelThresholds {
    /// Delivery latency p99 must be below this (ms).
    pub delivery_p99_ms: f64,
    /// Missing publications must not exceed this (0 by default).
    pub max_missing: u64,
    /// Duplicate publications must not exceed this (0 by default).
    pub max_duplicates: u64,
    /// Out-of-order publications must not exceed this (0 by default).
    pub max_out_of_order: u64,
    /// Acknowledged publications lost must not exceed this (0 by default).
    pub max_acked_lost: u64,
    /// Deliveries per second while publishing must be above this.
    pub min_deliveries_per_s: f64,
}

impl ChannelReport {
    /// The section, from the run's totals and the deliveries of each second.
    pub fn of(
        plan: &ChannelPlan,
        counts: &ChannelCounts,
        delivery: &hdrhistogram::Histogram<u64>,
        per_second: &[(u32, u64)],
    ) -> Self {
        let from = plan.measure_from_ms / 1000;
        let to = plan.publish_for_ms / 1000;
        let window: Vec<u64> = per_second
            .iter()
            .filter(|(s, _)| u64::from(*s) > from && u64::from(*s) <= to)
            .map(|&(_, n)| n)
            .collect();
        let deliveries_per_s = if window.is_empty() {
            0.0
        } else {
            window.iter().sum::<u64>() as f64 / window.len() as f64
        };
        ChannelReport {
            counts: counts.clone(),
            deliveries_per_s,
            delivery_latency: LatencySummary::of(delivery),
        }
    }
}

/// The channel section of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelReport {
    pub counts: ChannelCounts,
    /// Mean deliveries per second over the seconds after the ramp while publishing.
    pub deliveries_per_s: f64,
    pub delivery_latency: Option<LatencySummary>,
}

impl ChannelReport {
    /// Judges the channel thresholds; no delivery at all fails the latency threshold.
    pub fn verdicts(&self, limits: &ChannelThresholds) -> Vec<Verdict> {
        let c = &self.counts;
        vec![
            judge(
                "delivery_p99",
                Direction::Below,
                limits.delivery_p99_ms,
                "ms",
                self.delivery_latency.as_ref().map(|l| l.p99_ms),
                true,
            ),
            judge(
                "missing",
                Direction::AtMost,
                limits.max_missing as f64,
                "publications",
                Some(c.missing as f64),
                true,
            ),
            judge(
                "duplicates",
                Direction::AtMost,
                limits.max_duplicates as f64,
                "publications",
                Some(c.duplicates as f64),
                true,
            ),
            judge(
                "out_of_order",
                Direction::AtMost,
                limits.max_out_of_order as f64,
                "publications",
                Some(c.out_of_order as f64),
                true,
            ),
            judge(
                "acked_lost",
                Direction::AtMost,
                limits.max_acked_lost as f64,
                "publications",
                Some(c.acked_lost as f64),
                true,
            ),
            judge(
                "deliveries_per_s",
                Direction::Above,
                limits.min_deliveries_per_s,
                "/s",
                Some(self.deliveries_per_s),
                true,
            ),
        ]
    }

    /// The lines of the summary table.
    pub fn table(&self) -> String {
        let c = &self.counts;
        format!(
            "  channels     publishes {}  published {}  refused {}  unanswered {}  deliveries {} ({:.0}/s)\n               missing {}  duplicates {}  out of order {}  acked lost {}  acked not recovered {}\n               insufficient_state {}  recovered {} ({} publications)  not recovered {}  epoch changes {}  subscribes refused {}\n",
            c.publishes,
            c.published,
            c.publish_refused,
            c.unanswered(),
            c.deliveries,
            self.deliveries_per_s,
            c.missing,
            c.duplicates,
            c.out_of_order,
            c.acked_lost,
            c.acked_unrecovered,
            c.insufficient_state,
            c.recovered,
            c.recovered_publications,
            c.not_recovered,
            c.epoch_changes,
            c.subscribe_refused
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ChannelThresholds {
        ChannelThresholds {
            delivery_p99_ms: 500.0,
            max_missing: 0,
            max_duplicates: 0,
            max_out_of_order: 0,
            max_acked_lost: 0,
            min_deliveries_per_s: 1.0,
        }
    }

    #[test]
    fn fanout_has_one_publisher_and_rooms_group_users() {
        let fanout = ChannelPlan {
            scenario: ChannelScenario::Fanout {
                subscribers: 3,
                rate: 10.0,
                channels: 1,
            },
            publish_for_ms: 1000,
            publish_from_ms: 0,
            resubscribe_every_ms: None,
            measure_from_ms: 0,
        };
        assert_eq!(fanout.users(), 4);
        assert_eq!(fanout.role("t", 0).publish_rate, 10.0);
        assert!(!fanout.role("t", 0).subscribes);
        assert!(fanout.role("t", 3).subscribes && fanout.role("t", 3).publish_rate == 0.0);
        assert_eq!(fanout.role("t", 3).channel, "lt:t:fanout");
        assert!(fanout.publishes_only(0) && !fanout.publishes_only(1));
        let many = ChannelPlan {
            scenario: ChannelScenario::Fanout {
                subscribers: 3,
                rate: 10.0,
                channels: 2,
            },
            ..fanout.clone()
        };
        assert_eq!(many.users(), 8);
        assert_eq!(many.role("t", 3).channel, "lt:t:fanout-0");
        assert_eq!(many.role("t", 4).channel, "lt:t:fanout-1");
        assert!(many.publishes_only(4) && many.role("t", 4).publish_rate == 10.0);
        assert!(!many.role("t", 4).subscribes && many.role("t", 5).subscribes);
        let rooms = ChannelPlan {
            scenario: ChannelScenario::Rooms {
                rooms: 2,
                size: 5,
                rate: 1.0,
                spread: false,
            },
            publish_for_ms: 1000,
            publish_from_ms: 0,
            resubscribe_every_ms: None,
            measure_from_ms: 0,
        };
        assert_eq!(rooms.users(), 10);
        assert_eq!(rooms.role("t", 4).channel, "lt:t:room-0");
        assert_eq!(rooms.role("t", 5).channel, "lt:t:room-1");
        assert!(!rooms.publishes_only(0));
        let spread = ChannelPlan {
            scenario: ChannelScenario::Rooms {
                rooms: 2,
                size: 5,
                rate: 1.0,
                spread: true,
            },
            ..rooms
        };
        assert_eq!(spread.users(), 10);
        let members = |room: &str| {
            (0..10)
                .filter(|&u| spread.role("t", u).channel == room)
                .collect::<Vec<_>>()
        };
        assert_eq!(members("lt:t:room-0"), [0, 2, 4, 6, 8]);
        assert_eq!(members("lt:t:room-1"), [1, 3, 5, 7, 9]);
    }

    #[test]
    fn a_missing_or_doubled_publication_fails_its_threshold() {
        let healthy = ChannelReport {
            counts: ChannelCounts {
                deliveries: 100,
                ..ChannelCounts::default()
            },
            deliveries_per_s: 50.0,
            delivery_latency: Some(LatencySummary {
                count: 100,
                min_ms: 1.0,
                mean_ms: 2.0,
                p50_ms: 2.0,
                p90_ms: 3.0,
                p95_ms: 3.0,
                p99_ms: 4.0,
                p999_ms: 5.0,
                max_ms: 5.0,
            }),
        };
        assert!(healthy.verdicts(&limits()).iter().all(|v| !v.failed()));
        for (name, spoil) in [
            (
                "missing",
                ChannelCounts {
                    missing: 1,
                    ..healthy.counts.clone()
                },
            ),
            (
                "duplicates",
                ChannelCounts {
                    duplicates: 1,
                    ..healthy.counts.clone()
                },
            ),
            (
                "out_of_order",
                ChannelCounts {
                    out_of_order: 1,
                    ..healthy.counts.clone()
                },
            ),
            (
                "acked_lost",
                ChannelCounts {
                    acked_lost: 1,
                    ..healthy.counts.clone()
                },
            ),
        ] {
            let report = ChannelReport {
                counts: spoil,
                ..healthy.clone()
            };
            let failed: Vec<_> = report
                .verdicts(&limits())
                .into_iter()
                .filter(Verdict::failed)
                .map(|v| v.name)
                .collect();
            assert_eq!(failed, [name]);
        }
        let silent = ChannelReport {
            delivery_latency: None,
            deliveries_per_s: 0.0,
            ..healthy
        };
        let failed: Vec<_> = silent
            .verdicts(&limits())
            .into_iter()
            .filter(Verdict::failed)
            .map(|v| v.name)
            .collect();
        assert_eq!(failed, ["delivery_p99", "deliveries_per_s"]);
    }
}
