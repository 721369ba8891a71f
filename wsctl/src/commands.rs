//! Each subcommand from parsed arguments to an exit code: configuration, preconditions,
//! the lock, then the deploy or rollback order of deploy.rs on the real host (or, for
//! `--dry-run`, on the host that only describes its actions).

use anyhow::{Context, Result, bail, ensure};

use crate::cli::{Cli, Command, DeployArgs, RenderArgs, RollbackArgs};
use crate::colour::Colour;
use crate::config::{Config, DataPath, Overrides};
use crate::deploy::{self, DeployPlan, Host};
use crate::dry_run::{self, DryRunHost};
use crate::host::{Checks, SystemdHost};
use crate::interrupt::Interrupt;
use crate::lock::{DeployLock, LockError};
use crate::plan::{self, OnDisk};
use crate::report::{EXIT_LOCKED, EXIT_REFUSED, Reporter};
use crate::reuseport;
use crate::routing::{RoutingFile, Weights};
use crate::state::ActiveFile;
use crate::status;
use crate::systemd;
use crate::traefik_api;

/// A command that stopped before changing anything.
pub struct Refusal {
    pub code: i32,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Refusal {
    fn from(error: anyhow::Error) -> Self {
        Refusal {
            code: EXIT_REFUSED,
            error,
        }
    }
}

impl From<LockError> for Refusal {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { .. } => Refusal {
                code: EXIT_LOCKED,
                error: e.into(),
            },
            LockError::Io(error) => Refusal {
                code: EXIT_REFUSED,
                error,
            },
        }
    }
}

pub fn run(cli: Cli) -> Result<i32, Refusal> {
    let reporter = Reporter::new(cli.json);
    let config = Config::load(Overrides {
        config: cli.config,
        public_url: cli.public_url,
        traefik_api: cli.traefik_api,
        loadtest: cli.loadtest,
        state_dir: cli.state_dir,
        traefik_dir: cli.traefik_dir,
        ca_file: cli.ca_file,
        data_path: cli.data_path,
    });
    match cli.command {
        Command::RenderRouting(args) => render_routing(&args),
        Command::Status => {
            let status = status::gather(&config?);
            if reporter.json() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).expect("status serialises")
                );
            } else {
                status.print();
            }
            Ok(0)
        }
        Command::Deploy(args) => deploy(&config?, &args, &reporter),
        Command::Rollback(args) => rollback(&config?, &args, &reporter),
    }
}

fn render_routing(args: &RenderArgs) -> Result<i32, Refusal> {
    let weights = match (&args.active, &args.weights) {
        (Some(colour), _) => Weights::only(colour),
        (None, Some(spec)) => Weights::parse_spec(spec)?,
        (None, None) => unreachable!("clap requires one of --active and --weights"),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&weights.render()).expect("a JSON value serialises")
    );
    Ok(0)
}

/// The recorded colour and the routing: routing.yml, or on the direct path the reuseport
/// group (the colours whose shared socket is open).
fn on_disk(config: &Config) -> Result<OnDisk> {
    let routing = match config.data_path {
        DataPath::Traefik => RoutingFile::in_dir(&config.traefik_dir).read()?,
        DataPath::Direct => match reuseport::group(config)? {
            Some(group) => Some(group),
            None => bail!(
                "no colour is in the reuseport group (no ws-public@ socket is active): \
                 start the active colour's with `systemctl start ws-public@COLOUR.socket`"
            ),
        },
    };
    Ok(OnDisk {
        recorded: ActiveFile::in_dir(&config.state_dir).read()?,
        routing,
    })
}

/// The switch of a deploy. Through Traefik: `steps` equal weight shifts. On the direct path
/// all at once (docs/deploy.md says why): the new colour joins the group, which then spreads
/// evenly over both, and the drain takes the old colour out.
fn shift(config: &Config, from: &Colour, to: &Colour, steps: u32) -> Result<Vec<Weights>> {
    match config.data_path {
        DataPath::Traefik => Weights::shift(from, to, steps),
        DataPath::Direct => {
            ensure!(
                steps == 1,
                "--steps {steps}: the direct data path flips all at once (the kernel spreads \
                 new connections evenly over the reuseport group; docs/deploy.md)"
            );
            Ok(vec![Weights::new([(from.clone(), 1), (to.clone(), 1)])?])
        }
    }
}

/// Before a deploy: the colour left serves all new connections, as routing says.
fn check_serving(config: &Config, from: &Colour) -> Result<()> {
    match config.data_path {
        DataPath::Traefik => {
            let applied = traefik_api::applied(&config.traefik_api, &config.trust)?;
            ensure!(
                applied == Weights::only(from),
                "Traefik applies routing {applied}, not routing.yml's {from}=1: is it watching {}?",
                config.traefik_dir.display()
            );
        }
        DataPath::Direct => {
            reuseport::ensure_migration()?;
            let pid = systemd::show(&from.service_unit())?.main_pid;
            reuseport::ensure_holds(from, pid, config.public_port())?;
        }
    }
    Ok(())
}

fn checks(args: &DeployArgs) -> Checks {
    Checks {
        ready_timeout: args.ready_timeout,
        load_test_timeout: args.load_test_timeout,
        load_test_args: args.load_test_args.clone(),
        verify_connections: args.switch.verify_connections,
        verify_window: args.verify_window,
        switch_timeout: args.switch.switch_timeout,
        allowed_errors: args.allowed_errors,
    }
}

fn deploy(config: &Config, args: &DeployArgs, reporter: &Reporter) -> Result<i32, Refusal> {
    config.instance(&args.to)?;
    let lock = DeployLock::acquire(&config.state_dir, &format!("deploy --to {}", args.to))?;
    Ok(deploy_locked(config, args, reporter, lock)?)
}

fn deploy_locked(
    config: &Config,
    args: &DeployArgs,
    reporter: &Reporter,
    lock: DeployLock,
) -> Result<i32> {
    let from = plan::deploy_source(&on_disk(config)?, &args.to)?;
    check_serving(config, &from)?;
    let plan = DeployPlan {
        shift: shift(config, &from, &args.to, args.steps)?,
        from,
        to: args.to.clone(),
        step_interval: args.step_interval,
    };
    let mut host = SystemdHost::new(config, checks(args));
    // The colour to return to must be serving: without it there is nothing to roll back to.
    host.check_health(&plan.from).with_context(|| {
        format!(
            "{} (the active colour) must be serving before a deploy",
            plan.from
        )
    })?;
    let report = if args.dry_run {
        drop(lock);
        dry_run::rehearse(&plan, &mut DryRunHost::new(config, checks(args)), reporter)
    } else {
        deploy::deploy(&plan, &mut host, reporter, &Interrupt::install()?)
    };
    reporter.finish(&report);
    Ok(report.outcome.exit_code())
}

fn rollback(config: &Config, args: &RollbackArgs, reporter: &Reporter) -> Result<i32, Refusal> {
    let _lock = DeployLock::acquire(&config.state_dir, "rollback")?;
    Ok(rollback_locked(config, args, reporter)?)
}

fn rollback_locked(config: &Config, args: &RollbackArgs, reporter: &Reporter) -> Result<i32> {
    let (from, to) = plan::rollback_colours(&on_disk(config)?, args.to.as_ref(), |c| {
        config.other_colour(c)
    })?;
    config.instance(&to)?;
    if config.data_path == DataPath::Direct {
        ensure!(
            !args.no_drain,
            "--no-drain: on the direct data path a colour leaves the reuseport group only by \
             stopping (its listener must close for its queue to move)"
        );
        reuseport::ensure_migration()?;
    }
    let checks = Checks::switch_only(args.switch.verify_connections, args.switch.switch_timeout);
    let mut host = SystemdHost::new(config, checks);
    let report = deploy::switch_back(&from, &to, !args.no_drain, &mut host, reporter);
    reporter.finish(&report);
    Ok(report.outcome.exit_code())
}
