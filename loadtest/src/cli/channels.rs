//! The channel scenarios' command line (`fanout`, `rooms`): their flags and their validation
//! into a [`RunSpec`] whose users subscribe and publish ([`ChannelPlan`]).

use std::time::Duration;

use clap::Args;

use super::{
    MAX_PAYLOAD, MAX_RATE, MAX_USERS, MAX_WORKERS, OutputArgs, RunSpec, TargetArgs, millis,
    parse_duration, parse_percent, run_tag,
};
use crate::channels::{ChannelPlan, ChannelScenario, ChannelThresholds};
use crate::engine::EnginePlan;
use crate::net::Target;
use crate::profile::{Profile, Share};
use crate::thresholds::Thresholds;
use crate::vuser::Behaviour;

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscribers of each channel.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: u64,
    /// Publishes per second of each channel's one publisher.
    #[arg(long, default_value_t = 10.0)]
    pub publish_rate: f64,
    /// Channels, each with its own publisher and subscribers.
    #[arg(long, default_value_t = 1)]
    pub channels: u64,
    #[command(flatten)]
    pub channel: ChannelArgs,
}

#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// Rooms (channels).
    #[arg(long, default_value_t = 200)]
    pub rooms: u64,
    /// Users per room; each subscribes to its room and publishes to it.
    #[arg(long, default_value_t = 5)]
    pub room_size: u64,
    /// Publishes per second of each user.
    #[arg(long, default_value_t = 1.0)]
    pub publish_rate: f64,
    /// A room's users are every --rooms-th user (room = user number mod --rooms) instead of
    /// consecutive ones: they connect, and a server's drain moves them, at different moments.
    #[arg(long)]
    pub spread_rooms: bool,
    #[command(flatten)]
    pub channel: ChannelArgs,
}

impl FanoutArgs {
    pub(super) fn into_spec(self) -> Result<RunSpec, String> {
        if !(1..=MAX_USERS).contains(&self.channels) {
            return Err(format!("--channels must be between 1 and {MAX_USERS}"));
        }
        let shape = ChannelScenario::Fanout {
            subscribers: self.subscribers,
            rate: self.publish_rate,
            channels: self.channels,
        };
        channel_spec("fanout", shape, self.channel)
    }
}

impl RoomsArgs {
    pub(super) fn into_spec(self) -> Result<RunSpec, String> {
        let shape = ChannelScenario::Rooms {
            rooms: self.rooms,
            size: self.room_size,
            rate: self.publish_rate,
            spread: self.spread_rooms,
        };
        channel_spec("rooms", shape, self.channel)
    }
}

/// The flags of the channel scenarios.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// `fanout`: the server its publishers connect to (the subscribers use `--url`), so that
    /// every delivery crosses from one server to another through their shared broker.
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Time to connect and subscribe every user.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Time to hold every user after the ramp; publishing stops 2 s before its end (at most
    /// half of it), so that a publication not received live by the end counts as missing.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Start publishing only at the end of the ramp, so that delivery latency is measured
    /// with every user connected and no handshake in progress.
    #[arg(long)]
    pub publish_after_ramp: bool,
    /// Every subscriber leaves its channel about this often (jittered), stays away for up
    /// to half of it and subscribes again with `recover`: the seam between history and live
    /// delivery under load.
    #[arg(long, value_parser = parse_duration)]
    pub resubscribe_every: Option<Duration>,
    /// Bytes of padding in each publication's `data`.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Connect timeout, and how long a stopping user waits for its final check.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Threshold: connect time p95 must be below this.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub max_connect_p95: Duration,
    /// Threshold: connection success rate, percent, must be above this.
    #[arg(long, default_value = "95", value_parser = parse_percent)]
    pub min_success_rate: f64,
    /// Threshold: delivery latency p99 (publish to receipt) must be below this.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub max_delivery_p99: Duration,
    /// Threshold: missing publications must not exceed this.
    #[arg(long, default_value_t = 0)]
    pub max_missing: u64,
    /// Threshold: duplicate publications must not exceed this.
    #[arg(long, default_value_t = 0)]
    pub max_duplicates: u64,
    /// Threshold: publications received after a later one must not exceed this.
    #[arg(long, default_value_t = 0)]
    pub max_out_of_order: u64,
    /// Threshold: a publisher's acknowledged publications that never came back to it on its
    /// own subscription (without a `recovered: false` to excuse them) must not exceed this.
    #[arg(long, default_value_t = 0)]
    pub max_acked_lost: u64,
    /// Threshold: deliveries per second after the ramp must be above this.
    #[arg(long, default_value_t = 0.0)]
    pub min_deliveries_per_sec: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A channel scenario's spec: every user connected over the ramp and held; publishing until
/// 2 s (at most half the hold) before the end.
fn channel_spec(
    scenario: &'static str,
    shape: ChannelScenario,
    a: ChannelArgs,
) -> Result<RunSpec, String> {
    let (groups, rate) = match shape {
        ChannelScenario::Fanout {
            subscribers, rate, ..
        } => (subscribers, rate),
        ChannelScenario::Rooms {
            rooms, size, rate, ..
        } => {
            if !(1..=MAX_USERS).contains(&size) {
                return Err(format!("--room-size must be between 1 and {MAX_USERS}"));
            }
            if a.publish_url.is_some() {
                return Err(
                    "--publish-url is for fanout: every user of a room publishes and subscribes"
                        .into(),
                );
            }
            (rooms, rate)
        }
    };
    if !(1..=MAX_USERS).contains(&groups) {
        return Err(format!(
            "--subscribers and --rooms must be between 1 and {MAX_USERS}"
        ));
    }
    if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
        return Err(format!(
            "--publish-rate must be above 0 and at most {MAX_RATE} per second"
        ));
    }
    if a.payload_bytes > MAX_PAYLOAD {
        return Err(format!("--payload-bytes must be at most {MAX_PAYLOAD}"));
    }
    if a.duration < Duration::from_secs(1) {
        return Err("--duration must be at least 1s (publishing stops before its end)".into());
    }
    if a.timeout.is_zero() {
        return Err("--timeout must be above 0".into());
    }
    if a.resubscribe_every
        .is_some_and(|d| d < Duration::from_millis(100))
    {
        return Err("--resubscribe-every must be at least 100ms".into());
    }
    if a.target
        .workers
        .is_some_and(|w| !(1..=MAX_WORKERS).contains(&w))
    {
        return Err(format!("--workers must be between 1 and {MAX_WORKERS}"));
    }
    if !(a.min_deliveries_per_sec.is_finite() && a.min_deliveries_per_sec >= 0.0) {
        return Err("--min-deliveries-per-sec must be 0 or more".into());
    }
    let quiet = (a.duration / 2).min(Duration::from_secs(2));
    let channels = ChannelPlan {
        scenario: shape,
        publish_for_ms: millis(a.ramp + a.duration - quiet),
        publish_from_ms: if a.publish_after_ramp {
            millis(a.ramp)
        } else {
            0
        },
        resubscribe_every_ms: a.resubscribe_every.map(millis),
        measure_from_ms: u64::try_from(a.ramp.as_millis()).unwrap_or(u64::MAX),
    };
    let users = channels.users();
    if users > MAX_USERS {
        return Err(format!(
            "the scenario needs {users} users, more than {MAX_USERS}"
        ));
    }
    let (targets, sources) = a.target.resolve()?;
    let publish_target = a
        .publish_url
        .as_deref()
        .map(|url| Target::from_flags(url, a.target.ca_file.as_deref()))
        .transpose()?;
    Ok(RunSpec {
        scenario,
        plan: EnginePlan {
            targets,
            publish_target,
            profile: Profile::ramp_and_hold(users, a.ramp, a.duration),
            share: Share::WHOLE,
            sources,
            behaviour: Behaviour {
                rate: 0.0,
                closed_loop_window: None,
                payload_bytes: a.payload_bytes,
                timeout_ms: millis(a.timeout),
                churn: false,
                channels: Some(channels),
            },
            run_tag: run_tag(),
        },
        workers: a.target.workers,
        thresholds: Thresholds {
            connect_p95: a.max_connect_p95,
            min_success_pct: a.min_success_rate,
            channels: Some(ChannelThresholds {
                delivery_p99_ms: a.max_delivery_p99.as_secs_f64() * 1000.0,
                max_missing: a.max_missing,
                max_duplicates: a.max_duplicates,
                max_out_of_order: a.max_out_of_order,
                max_acked_lost: a.max_acked_lost,
                min_deliveries_per_s: a.min_deliveries_per_sec,
            }),
            ..Thresholds::default()
        },
        json: a.output.json,
        html: a.output.html,
        quiet: a.output.quiet,
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::spec;

    #[test]
    fn channel_scenarios_size_the_run_and_stop_publishing_before_its_end() {
        let fanout = spec(&["fanout"]).unwrap();
        assert_eq!(fanout.plan.profile.peak(), 1001);
        let plan = fanout.plan.behaviour.channels.unwrap();
        assert_eq!(
            (plan.measure_from_ms, plan.publish_for_ms),
            (10_000, 38_000)
        );
        assert!(fanout.thresholds.channels.is_some());
        let rooms = spec(&[
            "rooms",
            "--rooms",
            "3",
            "--room-size",
            "4",
            "--duration",
            "1s",
        ])
        .unwrap();
        assert_eq!(rooms.plan.profile.peak(), 12);
        let plan = rooms.plan.behaviour.channels.unwrap();
        assert_eq!((plan.publish_from_ms, plan.publish_for_ms), (0, 10_500));
        let many = spec(&["fanout", "--channels", "3", "--subscribers", "5"]).unwrap();
        assert_eq!(many.plan.profile.peak(), 18);
        assert!(many.plan.publish_target.is_none());
        let after_ramp = spec(&["fanout", "--ramp", "4s", "--publish-after-ramp"]).unwrap();
        let plan = after_ramp.plan.behaviour.channels.unwrap();
        assert_eq!((plan.publish_from_ms, plan.publish_for_ms), (4_000, 32_000));
    }

    #[test]
    fn publish_url_is_the_publishers_own_target() {
        let split = spec(&[
            "fanout",
            "--url",
            "ws://127.0.0.1:9",
            "--publish-url",
            "ws://127.0.0.1:8",
        ])
        .unwrap();
        let bases: Vec<_> = split.plan.targets.iter().map(|t| t.base.as_str()).collect();
        assert_eq!(bases, ["ws://127.0.0.1:9"]);
        assert_eq!(
            split.plan.publish_target.map(|t| t.base),
            Some("ws://127.0.0.1:8".to_owned())
        );
    }

    #[test]
    fn bad_channel_flags_are_refused_with_a_reason() {
        for (args, needle) in [
            (&["fanout", "--subscribers", "0"][..], "--subscribers"),
            (&["fanout", "--publish-rate", "0"], "--publish-rate"),
            (&["rooms", "--room-size", "0"], "--room-size"),
            (&["rooms", "--duration", "500ms"], "--duration"),
            (
                &["rooms", "--resubscribe-every", "1ms"],
                "--resubscribe-every",
            ),
            (
                &["rooms", "--rooms", "1000000", "--room-size", "1000"],
                "users",
            ),
            (&["fanout", "--channels", "0"], "--channels"),
            (
                &["fanout", "--channels", "1000", "--subscribers", "1000"],
                "users",
            ),
            (&["fanout", "--publish-url", "http://x"], "ws://"),
            (
                &["rooms", "--publish-url", "ws://127.0.0.1:9"],
                "--publish-url",
            ),
        ] {
            let err = spec(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
