//! `--dry-run`: a [`Host`] that changes nothing and answers each action with what the real
//! host (host.rs) would do, from the same commands, URLs, files and profiles; and [`rehearse`], which
//! runs the deploy of deploy.rs against it, so the plan printed is the order a deploy runs
//! and cannot drift from it (a new action of the trait must be described here to compile).

use std::time::Duration;

use anyhow::Result;

use crate::colour::Colour;
use crate::config::{Config, DataPath};
use crate::deploy::{self, DeployPlan, Host};
use crate::host::{Checks, WATCH_TICK};
use crate::interrupt::Interrupt;
use crate::loadgate;
use crate::profile::Pinning;
use crate::report::{Outcome, Report, Reporter, StepLog};
use crate::reuseport;
use crate::routing::{RoutingFile, Weights};
use crate::state::ActiveFile;
use crate::systemd;

/// [`deploy::deploy`] itself against the describing host, then the rollback that a failure
/// before the drain would run (in its longest form: after the switch began).
pub fn rehearse(plan: &DeployPlan, host: &mut DryRunHost, reporter: &Reporter) -> Report {
    let reporter = reporter.rehearsal();
    let mut report = deploy::deploy(plan, host, &reporter, &Interrupt::default());
    report.command.push_str(" --dry-run");
    if report.outcome != Outcome::Succeeded {
        // A step could not even be described (an unknown colour, a candidate that is not a
        // package): the deploy would fail there too; nothing was done either way.
        report.outcome = Outcome::Refused;
        return report;
    }
    report.outcome = Outcome::Planned;
    reporter.heading("rollback, if a step before the drain fails");
    let mut undo = StepLog::new(&reporter);
    deploy::roll_back(plan, host, &mut undo, true);
    report.rollback = undo.records;
    report
}

pub struct DryRunHost<'c> {
    config: &'c Config,
    checks: Checks,
    routing: RoutingFile,
    active: ActiveFile,
    /// Reads the profile and the candidate as the real pin would, remembers, pins nothing.
    pinning: Pinning,
}

impl<'c> DryRunHost<'c> {
    pub fn new(config: &'c Config, checks: Checks) -> Self {
        DryRunHost {
            routing: RoutingFile::in_dir(&config.traefik_dir),
            active: ActiveFile::in_dir(&config.state_dir),
            pinning: Pinning::new(config),
            config,
            checks,
        }
    }

    /// New connections through Traefik until enough in a row reach `colour`.
    fn landing(&self, colour: &Colour) -> String {
        format!(
            "{} new connections in a row through {} reach {colour} (within {})",
            self.checks.verify_connections,
            self.config.public_url,
            within(self.checks.switch_timeout)
        )
    }
}

fn within(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn systemctl(args: &[String]) -> String {
    format!("systemctl {}", args.join(" "))
}

impl DryRunHost<'_> {
    /// What stops a colour: on the direct path its shared socket first (systemd.rs).
    fn stop_commands(&self, colour: &Colour) -> String {
        match self.config.data_path {
            DataPath::Traefik => systemctl(&systemd::stop_command(colour)),
            DataPath::Direct => systemd::leave_commands(colour)
                .iter()
                .map(|args| systemctl(args))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The direct path's routing (host.rs, `regroup`).
    fn regroup(&self, weights: &Weights) -> Result<String> {
        reuseport::check_even(weights)?;
        let joins = weights.colours().map(|colour| {
            let commands: Vec<String> = systemd::join_commands(colour)
                .iter()
                .map(|args| systemctl(args))
                .collect();
            format!(
                "{colour} joins unless its process holds the public port already: {}; wait for /ready",
                commands.join("; ")
            )
        });
        let leaves = self
            .config
            .instances
            .keys()
            .filter(|c| weights.weight(c) == 0)
            .map(|colour| format!("{colour} leaves if in it: {}", self.stop_commands(colour)));
        let recorded = weights
            .sole_colour()
            .map(|sole| format!("; record {sole} in {}", self.active.path().display()))
            .unwrap_or_default();
        Ok(format!(
            "reuseport group {weights}: {}; write {}: {weights} (Traefik's HTTP routes) if its directory exists{recorded}",
            joins.chain(leaves).collect::<Vec<_>>().join("; "),
            self.routing.path().display()
        ))
    }
}

impl Host for DryRunHost<'_> {
    fn start(&mut self, colour: &Colour) -> Result<String> {
        let ready = self.config.instance(colour)?.http_url("/ready");
        let pin = self.pinning.rehearse_pin(colour)?;
        let commands: Vec<String> = systemd::start_commands(colour)
            .iter()
            .map(|args| systemctl(args))
            .collect();
        Ok(format!(
            "pin {pin}; {}; wait for {} active (running), then GET {ready} = 200 (within {})",
            commands.join("; "),
            colour.service_unit(),
            within(self.checks.ready_timeout)
        ))
    }

    fn check_health(&mut self, colour: &Colour) -> Result<String> {
        let inst = self.config.instance(colour)?;
        Ok(format!(
            "GET {} (status ok) and {}",
            inst.http_url("/health"),
            inst.http_url("/ready")
        ))
    }

    fn load_test(&mut self, colour: &Colour) -> Result<String> {
        let url = self.config.instance(colour)?.ws_url();
        let args = loadgate::smoke_args(&url, &self.checks.load_test_args);
        Ok(format!(
            "{} {} (within {})",
            self.config.loadtest.display(),
            args.join(" "),
            within(self.checks.load_test_timeout)
        ))
    }

    fn mark_baseline(&mut self, _colour: &Colour) -> Result<()> {
        Ok(())
    }

    fn route(&mut self, weights: &Weights) -> Result<String> {
        if self.config.data_path == DataPath::Direct {
            return self.regroup(weights);
        }
        let recorded = weights
            .sole_colour()
            .map(|sole| format!(", record {sole} in {}", self.active.path().display()))
            .unwrap_or_default();
        Ok(format!(
            "write {}: {weights}{recorded}; wait until Traefik ({}) applies it (within {})",
            self.routing.path().display(),
            self.config.traefik_api,
            within(self.checks.switch_timeout)
        ))
    }

    fn watch(&mut self, colour: &Colour, period: Duration) -> Result<String> {
        Ok(format!(
            "for {}, every {}: {colour}'s process and error counters unchanged since the switch began",
            within(period),
            within(WATCH_TICK)
        ))
    }

    fn verify(&mut self, colour: &Colour) -> Result<String> {
        if self.config.data_path == DataPath::Direct {
            return Ok(format!(
                "at least {} new connections on {} (within {}), each answered, some by {colour}; \
                 then {colour}'s process and error counters unchanged for {}",
                self.checks.verify_connections,
                self.config.public_url,
                within(self.checks.switch_timeout),
                within(self.checks.verify_window)
            ));
        }
        Ok(format!(
            "{}, then one more every {} for {}; {colour}'s process and error counters unchanged",
            self.landing(colour),
            within(WATCH_TICK),
            within(self.checks.verify_window)
        ))
    }

    fn confirm_routing(&mut self, colour: &Colour) -> Result<String> {
        Ok(format!(
            "{}; failed connections are retried",
            self.landing(colour)
        ))
    }

    fn drain(&mut self, colour: &Colour, successor: &Colour) -> Result<String> {
        let drained = format!(
            "{}; its clients get goodbye and reconnect to {successor}",
            self.stop_commands(colour)
        );
        Ok(match self.config.data_path {
            DataPath::Traefik => drained,
            DataPath::Direct => format!(
                "{drained}; write {}: {successor}=1 if its directory exists; record {successor} in {}; {}",
                self.routing.path().display(),
                self.active.path().display(),
                self.landing(successor)
            ),
        })
    }

    fn stop(&mut self, colour: &Colour) -> Result<String> {
        let stop = self.stop_commands(colour);
        Ok(match self.pinning.rehearse_restore(colour) {
            Some(restore) => format!("{stop}; pin {restore}"),
            None => stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::config::Overrides;
    use crate::report::StepStatus;

    fn checks() -> Checks {
        Checks {
            ready_timeout: Duration::from_secs(30),
            load_test_timeout: Duration::from_secs(180),
            load_test_args: vec!["--users=5".into()],
            verify_connections: 5,
            verify_window: Duration::from_secs(10),
            switch_timeout: Duration::from_secs(15),
            allowed_errors: 0,
        }
    }

    /// The default configuration with its state under `state_dir`; the candidate package of
    /// every colour is `scratch/new` (a package when the test makes it one).
    fn config(state_dir: &Path, scratch: &Path) -> Config {
        let file = scratch.join("wsctl.json");
        std::fs::write(
            &file,
            serde_json::json!({ "candidate": scratch.join("new") }).to_string(),
        )
        .unwrap();
        Config::load(Overrides {
            config: Some(file),
            state_dir: Some(state_dir.to_owned()),
            ..Overrides::default()
        })
        .unwrap()
    }

    /// From blue to `to` in `steps` weight steps, each held 10 s.
    fn plan(to: &str, steps: u32) -> DeployPlan {
        let (from, to): (Colour, Colour) = ("blue".parse().unwrap(), to.parse().unwrap());
        DeployPlan {
            shift: Weights::shift(&from, &to, steps).unwrap(),
            from,
            to,
            step_interval: Duration::from_secs(10),
        }
    }

    /// The dry run of a deploy from blue to `to` in `steps` weight steps.
    fn dry_run(config: &Config, to: &str, steps: u32) -> Report {
        rehearse(
            &plan(to, steps),
            &mut DryRunHost::new(config, checks()),
            &Reporter::new(true),
        )
    }

    /// A package directory `scratch/NAME` with an executable server binary.
    fn package(scratch: &Path, name: &str) -> std::path::PathBuf {
        let dir = scratch.join(name);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let binary = dir.join("bin/concurrent-socket");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::canonicalize(dir).unwrap()
    }

    #[test]
    fn on_the_direct_path_green_joins_the_group_and_blue_leaves_it_socket_first() {
        let (state, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut config = config(state.path(), scratch.path());
        config.data_path = DataPath::Direct;
        package(scratch.path(), "new");
        let (blue, green): (Colour, Colour) = ("blue".parse().unwrap(), "green".parse().unwrap());
        let plan = DeployPlan {
            shift: vec![Weights::new([(blue.clone(), 1), (green.clone(), 1)]).unwrap()],
            from: blue,
            to: green,
            step_interval: Duration::ZERO,
        };
        let report = rehearse(
            &plan,
            &mut DryRunHost::new(&config, checks()),
            &Reporter::new(true),
        );
        assert_eq!(report.outcome, Outcome::Planned);
        let detail = |steps: &[crate::report::StepRecord], name: &str| {
            steps
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .detail
                .clone()
        };
        let switch = detail(&report.steps, "switch");
        assert!(
            switch.contains("reuseport group blue=1,green=1")
                && switch.contains(
                    "systemctl stop ws@green.service; systemctl start ws-public@green.socket"
                ),
            "{switch}"
        );
        let drain = detail(&report.steps, "drain");
        assert!(
            drain.starts_with(
                "systemctl stop ws-public@blue.socket; systemctl stop ws@blue.service"
            ),
            "{drain}"
        );
        assert!(drain.contains("record green"), "{drain}");
        // Rolling back takes green out of the group the same way, and records blue.
        let restore = detail(&report.rollback, "restore-routing");
        assert!(
            restore.contains("green leaves if in it: systemctl stop ws-public@green.socket")
                && restore.contains("record blue"),
            "{restore}"
        );
        // A gradual split cannot be applied by the kernel.
        let mut host = DryRunHost::new(&config, checks());
        let err = host
            .route(&Weights::parse_spec("blue=2,green=1").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("--steps 1"), "{err}");
        assert!(
            !state.path().join("active").exists(),
            "a dry run wrote the active file"
        );
    }

    #[test]
    fn the_plan_is_the_deploy_order_with_the_real_commands_and_changes_nothing() {
        let (state, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = config(state.path(), scratch.path());
        let (old, new) = (
            package(scratch.path(), "old"),
            package(scratch.path(), "new"),
        );
        let profile = state.path().join("profiles/green");
        std::fs::create_dir(state.path().join("profiles")).unwrap();
        std::os::unix::fs::symlink(&old, &profile).unwrap();
        let report = dry_run(&config, "green", 2);
        assert_eq!(report.outcome, Outcome::Planned);
        assert_eq!(report.command, "deploy --to green --dry-run");
        let names = |steps: &[crate::report::StepRecord]| {
            steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&report.steps),
            ["deploy", "health", "load-test", "switch", "verify", "drain"]
        );
        assert_eq!(
            names(&report.rollback),
            ["restore-routing", "confirm-routing", "stop-green"]
        );
        let detail = |name: &str| {
            let step = report
                .steps
                .iter()
                .chain(&report.rollback)
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no step {name}"));
            assert_eq!(step.status, StepStatus::Planned);
            step.detail.clone()
        };
        assert!(
            detail("deploy").starts_with(&format!(
                "pin {} -> {} (was {}); systemctl start ws-metrics@green.socket ws@green.socket; systemctl stop ws@green.service; \
                 systemctl start --no-block ws@green.service; wait for ws@green.service active (running), \
                 then GET http://127.0.0.1:3002/ready = 200",
                profile.display(),
                new.display(),
                old.display()
            )),
            "{}",
            detail("deploy")
        );
        assert!(
            detail("load-test").starts_with(
                "loadtest smoke --url ws://127.0.0.1:3002 --json --users=5 (within 3m)"
            ),
            "{}",
            detail("load-test")
        );
        let switch = detail("switch");
        let routing = state.path().join("traefik/routing.yml");
        assert!(
            switch.starts_with(&format!(
                "write {}: blue=1,green=1; wait until Traefik",
                routing.display()
            )),
            "{switch}"
        );
        assert!(
            switch.contains(&format!(
                "write {}: green=1, record green in {}",
                routing.display(),
                state.path().join("active").display()
            )),
            "{switch}"
        );
        assert!(
            detail("switch").contains("for 10s, every 500ms"),
            "{switch}"
        );
        assert_eq!(
            detail("drain"),
            "systemctl stop ws@blue.service ws@blue.socket ws-metrics@blue.socket; \
             its clients get goodbye and reconnect to green"
        );
        assert!(detail("restore-routing").contains(": blue=1, record blue in"));
        assert_eq!(
            detail("stop-green"),
            format!(
                "systemctl stop ws@green.service ws@green.socket ws-metrics@green.socket; \
                 pin {} -> {} again",
                profile.display(),
                old.display()
            )
        );
        let left: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            ["profiles"],
            "the dry run wrote to the state directory"
        );
        assert_eq!(
            std::fs::read_link(&profile).unwrap(),
            old,
            "the dry run pinned"
        );
    }

    #[test]
    fn a_colour_without_a_profile_gets_one_the_rollback_leaves() {
        let (state, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = config(state.path(), scratch.path());
        let new = package(scratch.path(), "new");
        let report = dry_run(&config, "green", 1);
        assert_eq!(report.outcome, Outcome::Planned);
        let profile = state.path().join("profiles/green");
        assert!(
            report.steps[0].detail.starts_with(&format!(
                "pin {} -> {} (new); ",
                profile.display(),
                new.display()
            )),
            "{}",
            report.steps[0].detail
        );
        let stop = &report.rollback.last().unwrap().detail;
        assert!(!stop.contains("pin"), "{stop}");
        assert!(!profile.exists(), "the dry run pinned");
    }

    /// An unknown colour, and a candidate that is not a package (no `scratch/new` here):
    /// the deploy would fail at its first step, so the dry run refuses there.
    #[test]
    fn a_step_that_cannot_be_described_refuses_the_dry_run() {
        let (state, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = config(state.path(), scratch.path());
        for (to, expected) in [
            ("red", "unknown colour 'red'"),
            ("green", "green's candidate package"),
        ] {
            let report = dry_run(&config, to, 1);
            assert_eq!(report.outcome, Outcome::Refused);
            assert_eq!(report.failed_step.as_deref(), Some("deploy"));
            let error = report.error.unwrap();
            assert!(error.contains(expected), "{error}");
        }
    }
}
