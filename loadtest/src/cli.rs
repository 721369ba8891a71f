//! The command line: scenarios with the original design's defaults, the flags that shape a
//! run, and their validation into a [`RunSpec`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::engine::EnginePlan;
use crate::profile::{Profile, Share};
use crate::thresholds::Thresholds;
use crate::vuser::Behaviour;

mod channels;
mod target;
pub use channels::{ChannelArgs, FanoutArgs, RoomsArgs};
pub use target::TargetArgs;

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for concurrent-socket (protocol v1, and channels of v1.1)"
)]
#[command(
    after_help = "Exit codes: 0 every threshold passed, 1 a threshold failed (the report names it), 2 usage or setup error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ramp from 0 to --users (1,000) over --ramp (60 s), then hold for --duration (30 s).
    Ramp(CommonArgs),
    /// Sustained load: --users (2,000) reached over --ramp (30 s), held for --duration (10 min).
    Stress(CommonArgs),
    /// --base-users (100) for --warmup, a sudden jump to --users (5,000) within --ramp (1 s),
    /// --duration (30 s) at the peak, a sudden fall back to the base, --recovery (10 s).
    Spike(SpikeArgs),
    /// A few seconds of light load, for deploy gates: 20 users over 1 s, held 5 s.
    Smoke(CommonArgs),
    /// Long steady load: --users (500) over --ramp (60 s), held for --duration (1 h).
    Soak(CommonArgs),
    /// Your own shape: --users (100), --ramp (10 s), --duration (60 s), --rate, --payload-bytes.
    Custom(CommonArgs),
    /// Channels: one channel, --subscribers (1,000) subscribed, one publisher at --publish-rate
    /// (10/s), ramped over --ramp (10 s), held --duration (30 s).
    Fanout(FanoutArgs),
    /// Channels: --rooms (200) rooms of --room-size (5) users, each subscribed to its room and
    /// publishing --publish-rate (1/s) to it, ramped over --ramp (10 s), held --duration (30 s).
    Rooms(RoomsArgs),
    /// Internal: one worker process of a --workers run (plan on stdin, snapshots on stdout).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct SpikeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Users before and after the spike.
    #[arg(long, default_value_t = 100)]
    pub base_users: u64,
    /// Time to connect the base users before the spike.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Time at the base after the spike, to see the recovery.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub recovery: Duration,
}

/// What the run writes besides the table.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the report as one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No live progress line, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Users (connections) at the peak.
    #[arg(long)]
    pub users: Option<u64>,
    /// Time to go from 0 (or the base) to --users.
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Time to hold --users after the ramp (e.g. 30s, 10m, 1h).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Messages per second per user, on an open-loop schedule (0: idle connections).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of the `data` string of each message.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Closed loop instead of --rate: keep N messages in flight per user (throughput tests).
    #[arg(long, value_name = "N")]
    pub closed_loop: Option<u32>,
    /// Close each connection once established and open a new one (handshake rate).
    #[arg(long)]
    pub churn: bool,
    /// Connect timeout and message answer timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Threshold: connect time p95 must be below this.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub max_connect_p95: Duration,
    /// Threshold: message round-trip p95 must be below this.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub max_rtt_p95: Duration,
    /// Threshold: connection success rate, percent, must be above this.
    #[arg(long, default_value = "95", value_parser = parse_percent)]
    pub min_success_rate: f64,
    /// Threshold: message error rate, percent, must be below this.
    #[arg(long, default_value = "1", value_parser = parse_percent)]
    pub max_error_rate: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 10m, 1h)"))?;
    if d > MAX_PHASE {
        return Err("longer than 7 days".into());
    }
    Ok(d)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{v} is not between 0 and 100"));
    }
    Ok(v)
}

const MAX_PHASE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_USERS: u64 = 1_000_000;
const MAX_RATE: f64 = 10_000.0;
const MAX_PAYLOAD: usize = 16 << 20;
const MAX_WORKERS: u64 = 64;

/// A scenario's shape when the flags do not say otherwise.
struct Defaults {
    users: u64,
    ramp: Duration,
    duration: Duration,
    rate: f64,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub scenario: &'static str,
    /// The whole run's plan (share = all users); split per worker by the runner.
    pub plan: EnginePlan,
    /// `None`: choose from the open-file limit.
    pub workers: Option<u64>,
    pub thresholds: Thresholds,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub quiet: bool,
}

impl Command {
    /// Validates the flags; `Ok(None)` for the worker subcommand.
    pub fn into_spec(self) -> Result<Option<RunSpec>, String> {
        let (scenario, common, defaults, spike) = match self {
            Command::Fanout(f) => return f.into_spec().map(Some),
            Command::Rooms(r) => return r.into_spec().map(Some),
            Command::Ramp(c) => (
                "ramp",
                c,
                Defaults {
                    users: 1000,
                    ramp: secs(60),
                    duration: secs(30),
                    rate: 1.0,
                },
                None,
            ),
            Command::Stress(c) => (
                "stress",
                c,
                Defaults {
                    users: 2000,
                    ramp: secs(30),
                    duration: secs(600),
                    rate: 1.0,
                },
                None,
            ),
            Command::Spike(s) => {
                let d = Defaults {
                    users: 5000,
                    ramp: secs(1),
                    duration: secs(30),
                    rate: 1.0,
                };
                (
                    "spike",
                    s.common,
                    d,
                    Some((s.base_users, s.warmup, s.recovery)),
                )
            }
            Command::Smoke(c) => (
                "smoke",
                c,
                Defaults {
                    users: 20,
                    ramp: secs(1),
                    duration: secs(5),
                    rate: 2.0,
                },
                None,
            ),
            Command::Soak(c) => (
                "soak",
                c,
                Defaults {
                    users: 500,
                    ramp: secs(60),
                    duration: secs(3600),
                    rate: 1.0,
                },
                None,
            ),
            Command::Custom(c) => (
                "custom",
                c,
                Defaults {
                    users: 100,
                    ramp: secs(10),
                    duration: secs(60),
                    rate: 1.0,
                },
                None,
            ),
            Command::Worker => return Ok(None),
        };
        let users = common.users.unwrap_or(defaults.users);
        let ramp = common.ramp.unwrap_or(defaults.ramp);
        let duration = common.duration.unwrap_or(defaults.duration);
        let rate = common.rate.unwrap_or(defaults.rate);
        if !(1..=MAX_USERS).contains(&users) {
            return Err(format!("--users must be between 1 and {MAX_USERS}"));
        }
        if !(rate.is_finite() && (0.0..=MAX_RATE).contains(&rate)) {
            return Err(format!(
                "--rate must be between 0 and {MAX_RATE} messages per second per user"
            ));
        }
        if common.payload_bytes > MAX_PAYLOAD {
            return Err(format!("--payload-bytes must be at most {MAX_PAYLOAD}"));
        }
        if common.closed_loop.is_some_and(|w| !(1..=1000).contains(&w)) {
            return Err("--closed-loop must be between 1 and 1000 messages in flight".into());
        }
        if common.timeout.is_zero() {
            return Err("--timeout must be above 0".into());
        }
        if common
            .target
            .workers
            .is_some_and(|w| !(1..=MAX_WORKERS).contains(&w))
        {
            return Err(format!("--workers must be between 1 and {MAX_WORKERS}"));
        }
        let profile = match spike {
            Some((base, warmup, recovery)) => {
                if base > users {
                    return Err("--base-users must not exceed --users".into());
                }
                Profile::spike(base, warmup, users, ramp, duration, recovery)
            }
            None => Profile::ramp_and_hold(users, ramp, duration),
        };
        if profile.total().is_zero() {
            return Err("the run would last 0 s: give --ramp or --duration".into());
        }
        let (targets, sources) = common.target.resolve()?;
        let plan = EnginePlan {
            targets,
            publish_target: None,
            profile,
            share: Share::WHOLE,
            sources,
            behaviour: Behaviour {
                rate,
                closed_loop_window: common.closed_loop,
                payload_bytes: common.payload_bytes,
                timeout_ms: millis(common.timeout),
                churn: common.churn,
                channels: None,
            },
            run_tag: run_tag(),
        };
        Ok(Some(RunSpec {
            scenario,
            plan,
            workers: common.target.workers,
            thresholds: Thresholds {
                connect_p95: common.max_connect_p95,
                round_trip_p95: common.max_rtt_p95,
                min_success_pct: common.min_success_rate,
                max_error_pct: common.max_error_rate,
                channels: None,
            },
            json: common.output.json,
            html: common.output.html,
            quiet: common.output.quiet,
        }))
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A short tag unique to this run, the prefix of every connection id.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "lt{:x}",
        (u64::from(std::process::id()) << 20) ^ u64::from(nanos)
    )
}

/// The run `loadtest ARGS...` asks for, or clap's or the plan's complaint (for the tests of
/// every scenario's flags).
#[cfg(test)]
fn spec(args: &[&str]) -> Result<RunSpec, String> {
    let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    cli.command.into_spec().map(|s| s.expect("not a worker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_carry_the_original_designs_targets() {
        assert_eq!(spec(&["ramp"]).unwrap().plan.profile.peak(), 1000);
        let stress = spec(&["stress"]).unwrap();
        assert_eq!(stress.plan.profile.peak(), 2000);
        assert_eq!(stress.plan.profile.total(), secs(630));
        assert_eq!(spec(&["spike"]).unwrap().plan.profile.peak(), 5000);
        assert!(spec(&["smoke"]).unwrap().plan.profile.total() <= secs(10));
    }

    #[test]
    fn flags_override_the_defaults() {
        let s = spec(&[
            "stress",
            "--users",
            "300",
            "--duration",
            "2m",
            "--ramp",
            "0s",
            "--rate",
            "0.5",
        ])
        .unwrap();
        assert_eq!(
            s.plan.profile,
            Profile::ramp_and_hold(300, secs(0), secs(120))
        );
        assert_eq!(s.plan.behaviour.rate, 0.5);
        let t = spec(&[
            "smoke",
            "--max-rtt-p95",
            "1us",
            "--min-success-rate",
            "99.5%",
        ])
        .unwrap()
        .thresholds;
        assert_eq!(t.round_trip_p95, Duration::from_micros(1));
        assert_eq!(t.min_success_pct, 99.5);
    }

    #[test]
    fn several_urls_are_several_targets() {
        let s = spec(&[
            "smoke",
            "--url",
            "ws://127.0.0.1:9",
            "--url",
            "ws://127.0.0.1:10/x",
        ])
        .unwrap();
        let bases: Vec<_> = s.plan.targets.iter().map(|t| t.base.as_str()).collect();
        assert_eq!(bases, ["ws://127.0.0.1:9", "ws://127.0.0.1:10/x"]);
    }

    #[test]
    fn loopback_targets_spread_over_source_addresses() {
        assert_eq!(
            spec(&["smoke", "--url", "ws://127.0.0.1:9"])
                .unwrap()
                .plan
                .sources
                .len(),
            39
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for (args, needle) in [
            (&["smoke", "--users", "0"][..], "--users"),
            (&["smoke", "--rate=-1"], "--rate"),
            (&["smoke", "--rate", "NaN"], "--rate"),
            (&["smoke", "--url", "http://x"], "ws://"),
            (
                &[
                    "smoke",
                    "--url",
                    "ws://127.0.0.1:9",
                    "--ca-file",
                    "/nonexistent.pem",
                ],
                "/nonexistent.pem",
            ),
            (&["smoke", "--duration", "forever"], "500ms"),
            (&["smoke", "--max-error-rate", "150"], "between 0 and 100"),
            (&["smoke", "--ramp", "0s", "--duration", "0s"], "0 s"),
            (
                &["spike", "--users", "10", "--base-users", "20"],
                "--base-users",
            ),
            (&["smoke", "--workers", "0"], "--workers"),
            (&["smoke", "--source-ips", "1.2.3"], "not an IP"),
        ] {
            let err = spec(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn run_tags_are_valid_connection_id_prefixes() {
        let tag = run_tag();
        assert!(
            tag.len() < 40 && tag.chars().all(|c| c.is_ascii_alphanumeric()),
            "{tag}"
        );
    }
}
