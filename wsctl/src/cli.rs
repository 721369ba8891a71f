//! The command line: subcommands, flags and the environment variables behind them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::colour::Colour;
use crate::config::DataPath;

/// Blue/green deploys of concurrent-socket through Traefik, with automatic rollback
/// (docs/deploy.md).
#[derive(Debug, Parser)]
#[command(name = "wsctl", version)]
pub struct Cli {
    /// Print one JSON object on stdout (progress goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Configuration file (JSON); default /etc/concurrent-socket/wsctl.json when it exists.
    #[arg(long, global = true, env = "WSCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory: `active` and `deploy.lock` [default: /var/lib/concurrent-socket].
    #[arg(long, global = true, env = "WSCTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Traefik's file-provider directory holding routing.yml [default: STATE_DIR/traefik].
    #[arg(long, global = true, env = "WSCTL_TRAEFIK_DIR", value_name = "DIR")]
    pub traefik_dir: Option<PathBuf>,
    /// Traefik's entry point as clients reach it, for verification [default: ws://127.0.0.1:80].
    #[arg(
        long,
        global = true,
        env = "WSCTL_PUBLIC_URL",
        value_name = "ws[s]://HOST:PORT"
    )]
    pub public_url: Option<String>,
    /// Traefik's API, to see which routing it applies [default: http://127.0.0.1:8082].
    #[arg(
        long,
        global = true,
        env = "WSCTL_TRAEFIK_API",
        value_name = "http[s]://HOST:PORT"
    )]
    pub traefik_api: Option<String>,
    /// PEM CA certificate(s) to trust for a wss:// public URL or an https:// Traefik API,
    /// besides the system's roots (SSL_CERT_FILE or SSL_CERT_DIR replace those).
    #[arg(long, global = true, env = "WSCTL_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// How WebSockets reach the colours: through Traefik, or direct on a shared reuseport
    /// address [default: the config file's dataPath, else traefik].
    #[arg(long, global = true, env = "WSCTL_DATA_PATH", value_name = "PATH")]
    pub data_path: Option<DataPath>,
    /// The loadtest binary [default: loadtest from PATH].
    #[arg(long, global = true, env = "WSCTL_LOADTEST", value_name = "PATH")]
    pub loadtest: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move all traffic to COLOUR: deploy, health, load test, switch, verify, drain; roll
    /// back by itself when a step before the drain fails.
    Deploy(DeployArgs),
    /// Active colour, routing, and per colour: unit state, version, connections.
    Status,
    /// Switch back to a colour that still runs, then drain the one left.
    Rollback(RollbackArgs),
    /// Print the routing.yml that sends new connections to the given colour(s).
    RenderRouting(RenderArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The colour to deploy and move traffic to.
    #[arg(long, value_name = "COLOUR")]
    pub to: Colour,
    /// Check the preconditions and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Shift traffic in this many equal weight steps (1 = all at once).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub steps: u32,
    /// How long each intermediate weight step is held and watched.
    #[arg(long, default_value = "10s", value_parser = step_duration)]
    pub step_interval: Duration,
    /// From starting the units to systemd's READY and /ready 200.
    #[arg(long, default_value = "30s", value_parser = step_duration)]
    pub ready_timeout: Duration,
    /// The smoke load test must finish within this.
    #[arg(long, default_value = "3m", value_parser = step_duration)]
    pub load_test_timeout: Duration,
    /// Extra argument for `loadtest smoke` (repeat for several).
    #[arg(long = "load-test-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub load_test_args: Vec<String>,
    /// After the switch, how long the new colour is watched (new connections, crashes,
    /// error counters).
    #[arg(long, default_value = "10s", value_parser = step_duration)]
    pub verify_window: Duration,
    /// New errors and connection rejections of the new colour (its /metrics) tolerated
    /// while it is watched; 0: its error counters must stay flat.
    #[arg(long, default_value_t = 0)]
    pub allowed_errors: u32,
    #[command(flatten)]
    pub switch: SwitchArgs,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// New connections in a row through Traefik that must land on the new colour.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub verify_connections: u32,
    /// How long Traefik may take to apply a routing change.
    #[arg(long, default_value = "15s", value_parser = step_duration)]
    pub switch_timeout: Duration,
}

/// The longest wait a deploy's option may ask for. Any wait is added to the clock's now, and
/// one of centuries overflows it mid-deploy; no step of a deploy waits a day.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A duration as humantime writes it (`10s`, `3m`, `1h 30m`), at most [`LONGEST_WAIT`].
fn step_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > LONGEST_WAIT {
        let hours = LONGEST_WAIT.as_secs() / 3600;
        return Err(format!(
            "at most {hours}h (no step of a deploy waits longer)"
        ));
    }
    Ok(duration)
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The colour to switch back to [default: the other one].
    #[arg(long, value_name = "COLOUR")]
    pub to: Option<Colour>,
    /// Leave the colour switched away from running.
    #[arg(long)]
    pub no_drain: bool,
    #[command(flatten)]
    pub switch: SwitchArgs,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RenderArgs {
    /// Every new connection to this colour.
    #[arg(long, value_name = "COLOUR")]
    pub active: Option<Colour>,
    /// A split, for example `blue=3,green=1`.
    #[arg(long, value_name = "COLOUR=WEIGHT,...")]
    pub weights: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_deploy_with_its_defaults() {
        let cli = Cli::try_parse_from([
            "wsctl",
            "--json",
            "deploy",
            "--to",
            "green",
            "--load-test-arg",
            "--duration=5s",
        ])
        .unwrap();
        let Command::Deploy(d) = cli.command else {
            panic!("not a deploy")
        };
        assert!(cli.json);
        assert_eq!(d.to.as_str(), "green");
        assert_eq!((d.steps, d.switch.verify_connections), (1, 5));
        assert_eq!(d.load_test_args, ["--duration=5s"]);
        assert_eq!(d.verify_window, Duration::from_secs(10));
    }

    #[test]
    fn rejects_bad_values_with_a_message() {
        for args in [
            &["wsctl", "deploy", "--to", "Green"][..],
            &["wsctl", "deploy", "--to", "green", "--steps", "0"],
            &[
                "wsctl",
                "deploy",
                "--to",
                "green",
                "--ready-timeout",
                "soon",
            ],
            &[
                "wsctl",
                "deploy",
                "--to",
                "green",
                "--ready-timeout",
                "300000000000y",
            ],
            &["wsctl", "deploy", "--to", "green", "--verify-window", "25h"],
            &["wsctl", "render-routing"],
            &[
                "wsctl",
                "render-routing",
                "--active",
                "blue",
                "--weights",
                "blue=1",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }
}
