//! The deploy's actions on a real host: systemd through `systemctl`, the instances' HTTP
//! endpoints, `loadtest`, Traefik's routing.yml and the active-colour file, and new
//! WebSocket connections through Traefik. On the direct data path the routing is the
//! reuseport group instead (reuseport.rs): a colour joins it, and leaves it by stopping,
//! and new connections are probed on the shared public address. `--dry-run` describes the
//! actions instead (dry_run.rs).

use std::collections::HashMap;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::colour::Colour;
use crate::config::{Config, DataPath};
use crate::deploy::Host;
use crate::health::{self, ErrorCounters};
use crate::loadgate;
use crate::probe::{self, OnFailure};
use crate::profile::Pinning;
use crate::reuseport;
use crate::routing::{RoutingFile, Weights};
use crate::state::ActiveFile;
use crate::systemd::{self, UnitState};
use crate::traefik_api;

/// Time between two checks while a colour is watched.
pub const WATCH_TICK: Duration = Duration::from_millis(500);

/// How thoroughly and how long a deploy checks (command-line flags).
#[derive(Clone, Debug)]
pub struct Checks {
    /// From `systemctl start` to systemd's READY and then `/ready` 200.
    pub ready_timeout: Duration,
    pub load_test_timeout: Duration,
    pub load_test_args: Vec<String>,
    /// New connections in a row that must land on the new colour.
    pub verify_connections: u32,
    /// How long the new colour is watched after the switch.
    pub verify_window: Duration,
    /// How long Traefik may take to apply a routing change.
    pub switch_timeout: Duration,
    /// New errors and rejections of the new colour tolerated while it is watched.
    pub allowed_errors: u32,
}

impl Checks {
    /// For a rollback, which neither starts nor load-tests a colour.
    pub fn switch_only(verify_connections: u32, switch_timeout: Duration) -> Self {
        Checks {
            ready_timeout: Duration::ZERO,
            load_test_timeout: Duration::ZERO,
            load_test_args: Vec::new(),
            verify_connections,
            verify_window: Duration::ZERO,
            switch_timeout,
            allowed_errors: 0,
        }
    }
}

/// What the new colour looked like just before it got traffic.
struct Baseline {
    colour: Colour,
    counters: ErrorCounters,
    unit: UnitState,
}

pub struct SystemdHost<'c> {
    config: &'c Config,
    checks: Checks,
    routing: RoutingFile,
    active: ActiveFile,
    /// `serverId` of each colour's /health, as its connections announce it.
    server_ids: HashMap<Colour, String>,
    baseline: Option<Baseline>,
    /// The new colour's profile: pinned to the candidate by `start`, put back by `stop`.
    pinning: Pinning,
}

impl<'c> SystemdHost<'c> {
    pub fn new(config: &'c Config, checks: Checks) -> Self {
        SystemdHost {
            routing: RoutingFile::in_dir(&config.traefik_dir),
            active: ActiveFile::in_dir(&config.state_dir),
            config,
            checks,
            server_ids: HashMap::new(),
            baseline: None,
            pinning: Pinning::new(config),
        }
    }

    fn server_id(&mut self, colour: &Colour) -> Result<String> {
        if let Some(id) = self.server_ids.get(colour) {
            return Ok(id.clone());
        }
        let id = health::health(self.config.instance(colour)?)?.server_id;
        self.server_ids.insert(colour.clone(), id.clone());
        Ok(id)
    }

    /// The colour's process is the one of the baseline and its error counters did not grow.
    fn still_sound(&self, colour: &Colour) -> Result<()> {
        let baseline = self
            .baseline
            .as_ref()
            .filter(|b| &b.colour == colour)
            .context("no baseline taken")?;
        let unit = systemd::show(&colour.service_unit())?;
        ensure!(
            unit.is_running(),
            "{} is no longer running: {unit}",
            colour.service_unit()
        );
        ensure!(
            unit.main_pid == baseline.unit.main_pid && unit.n_restarts == baseline.unit.n_restarts,
            "{} was restarted (pid {} -> {}, restarts {} -> {}): it crashed",
            colour.service_unit(),
            baseline.unit.main_pid,
            unit.main_pid,
            baseline.unit.n_restarts,
            unit.n_restarts
        );
        let counters = health::error_counters(self.config.instance(colour)?)?;
        if let Some(growth) = counters.growth_since(&baseline.counters, self.checks.allowed_errors)
        {
            bail!("{colour}'s error counters grew: {growth}");
        }
        Ok(())
    }

    /// `verify_connections` new connections in a row through the public URL land on the
    /// colour (failures retried until the switch timeout).
    fn landing_on(&mut self, colour: &Colour) -> Result<String> {
        let expected = self.server_id(colour)?;
        let t = &self.checks;
        let landing = probe::wait_landing(
            &self.config.public_url,
            &self.config.trust,
            &expected,
            t.verify_connections,
            t.switch_timeout,
            OnFailure::Retry,
        )?;
        Ok(format!(
            "{} in a row on {colour} ({landing})",
            t.verify_connections
        ))
    }

    /// Stop the colour's units: on the direct path its shared socket first, so that the
    /// queue of its listener moves to the group's others (systemd.rs, `leave_group`).
    fn stop_units(&self, colour: &Colour) -> Result<UnitState> {
        match self.config.data_path {
            DataPath::Traefik => systemd::stop_colour(colour),
            DataPath::Direct => systemd::leave_group(colour),
        }
    }

    /// The direct path's routing: the colours of `weights` in the reuseport group (joining
    /// the ones not in it yet), every other colour out of it (which stops it: its clients get
    /// goodbye and reconnect to the colours left). A sole colour is recorded as active.
    fn regroup(&mut self, weights: &Weights) -> Result<String> {
        reuseport::check_even(weights)?;
        let mut done = Vec::new();
        for colour in weights.colours() {
            done.push(self.join(colour)?);
        }
        let leaving: Vec<Colour> = self
            .config
            .instances
            .keys()
            .filter(|c| weights.weight(c) == 0)
            .cloned()
            .collect();
        for colour in leaving {
            if self.in_group(&colour)? {
                let unit = systemd::leave_group(&colour)?;
                done.push(format!("{colour} left ({} {unit})", colour.service_unit()));
            }
        }
        done.push(self.record_group(weights)?);
        Ok(format!("reuseport group {weights}: {}", done.join(", ")))
    }

    /// The direct path's group, written where the host keeps its routing: routing.yml, so
    /// that Traefik's HTTP routes (kept on this path) follow the colours, when the host has
    /// Traefik's directory; and a sole colour as the active one.
    fn record_group(&self, weights: &Weights) -> Result<String> {
        let mut recorded = Vec::new();
        if self.routing.path().parent().is_some_and(Path::is_dir) {
            self.routing.write(weights)?;
            recorded.push(format!("routing.yml {weights} (Traefik's HTTP routes)"));
        }
        if let Some(sole) = weights.sole_colour() {
            self.active.write(sole)?;
            recorded.push(format!("active {sole}"));
        }
        Ok(recorded.join(", "))
    }

    /// The colour's shared socket is open, or its process still holds a listener there.
    fn in_group(&self, colour: &Colour) -> Result<bool> {
        if systemd::is_active(&colour.reuseport_socket_unit())? {
            return Ok(true);
        }
        let pid = systemd::show(&colour.service_unit())?.main_pid;
        Ok(pid != 0 && reuseport::holders(self.config.public_port())?.contains(&pid))
    }

    /// The colour into the reuseport group, its service restarted to receive the shared
    /// socket unless its running process holds it already.
    fn join(&mut self, colour: &Colour) -> Result<String> {
        let port = self.config.public_port();
        let unit = systemd::show(&colour.service_unit())?;
        if unit.is_running()
            && systemd::is_active(&colour.reuseport_socket_unit())?
            && reuseport::holders(port)?.contains(&unit.main_pid)
        {
            return Ok(format!("{colour} in it already (pid {})", unit.main_pid));
        }
        let timeout = self.checks.ready_timeout.max(self.checks.switch_timeout);
        let started = Instant::now();
        let unit = systemd::join_group(colour, timeout)?;
        health::wait_ready(self.config.instance(colour)?, timeout)
            .with_context(|| format!("{colour} not ready after joining the reuseport group"))?;
        reuseport::ensure_holds(colour, unit.main_pid, port)?;
        // The process that joined is the one watched from now on.
        if self.baseline.as_ref().is_some_and(|b| &b.colour == colour) {
            self.mark_baseline(colour)?;
        }
        Ok(format!(
            "{colour} joined ({} restarted with {}: {unit}, ready after {:.2}s)",
            colour.service_unit(),
            colour.reuseport_socket_unit(),
            started.elapsed().as_secs_f64()
        ))
    }

    /// The direct path's verification while the old colour is still in the group: new
    /// connections on the shared address each reach a colour of the group, some of them
    /// `colour`; then `colour` is watched as on the Traefik path.
    fn verify_in_group(&mut self, colour: &Colour) -> Result<String> {
        let expected = self.server_id(colour)?;
        let t = self.checks.clone();
        let deadline = Instant::now() + t.switch_timeout;
        let (mut on_colour, mut attempts) = (0, 0);
        while attempts < t.verify_connections || on_colour == 0 {
            ensure!(
                Instant::now() < deadline,
                "no new connection of {attempts} on the public address reached {colour} within {}",
                humantime::format_duration(t.switch_timeout)
            );
            attempts += 1;
            if probe::server_id(&self.config.public_url, &self.config.trust)? == expected {
                on_colour += 1;
            }
        }
        self.observe(colour, t.verify_window, false)?;
        Ok(format!(
            "{on_colour} of {attempts} new connections on the public address reached {colour}, \
             the rest the group's other colours; process and error counters unchanged for {}",
            humantime::format_duration(t.verify_window)
        ))
    }

    /// Check the colour every tick for `period`; with `expect_landing`, every tick also
    /// opens a new connection through Traefik that must land on it. Returns the probe count.
    fn observe(&mut self, colour: &Colour, period: Duration, expect_landing: bool) -> Result<u32> {
        let expected = self.server_id(colour)?;
        let deadline = Instant::now() + period;
        let mut probes = 0;
        loop {
            self.still_sound(colour)?;
            if expect_landing {
                let server = probe::server_id(&self.config.public_url, &self.config.trust)?;
                ensure!(
                    server == expected,
                    "a new connection reached {server} instead of {expected}"
                );
                probes += 1;
            }
            if Instant::now() >= deadline {
                return Ok(probes);
            }
            sleep(WATCH_TICK);
        }
    }
}

impl Host for SystemdHost<'_> {
    fn start(&mut self, colour: &Colour) -> Result<String> {
        let inst = self.config.instance(colour)?;
        let pinned = self.pinning.pin_candidate(colour)?;
        let started = Instant::now();
        let unit = systemd::start_colour(colour, self.checks.ready_timeout)?;
        let running_after = started.elapsed();
        let left = self.checks.ready_timeout.saturating_sub(running_after);
        health::wait_ready(inst, left).with_context(|| {
            format!(
                "not ready within --ready-timeout {}",
                humantime::format_duration(self.checks.ready_timeout)
            )
        })?;
        Ok(format!(
            "{pinned}; {} {unit} after {:.2}s, /ready 200 after {:.2}s",
            colour.service_unit(),
            running_after.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ))
    }

    fn check_health(&mut self, colour: &Colour) -> Result<String> {
        let inst = self.config.instance(colour)?;
        let h = health::health(inst)?;
        ensure!(
            h.status == "ok",
            "{} says status {}",
            inst.http_url("/health"),
            h.status
        );
        health::ready(inst)?;
        self.server_ids.insert(colour.clone(), h.server_id.clone());
        Ok(format!(
            "serverId {} version {}, {} connections, /ready 200",
            h.server_id, h.version, h.connections
        ))
    }

    fn load_test(&mut self, colour: &Colour) -> Result<String> {
        let inst = self.config.instance(colour)?;
        let t = &self.checks;
        loadgate::smoke(
            &self.config.loadtest,
            &inst.ws_url(),
            &t.load_test_args,
            t.load_test_timeout,
        )
    }

    fn mark_baseline(&mut self, colour: &Colour) -> Result<()> {
        let unit = systemd::show(&colour.service_unit())?;
        ensure!(
            unit.is_running(),
            "{} is not running: {unit}",
            colour.service_unit()
        );
        let counters = health::error_counters(self.config.instance(colour)?)?;
        self.baseline = Some(Baseline {
            colour: colour.clone(),
            counters,
            unit,
        });
        Ok(())
    }

    fn route(&mut self, weights: &Weights) -> Result<String> {
        if self.config.data_path == DataPath::Direct {
            return self.regroup(weights);
        }
        self.routing.write(weights)?;
        let recorded = match weights.sole_colour() {
            Some(sole) => {
                self.active.write(sole)?;
                format!(", active {sole}")
            }
            None => String::new(),
        };
        let took = traefik_api::wait_applied(
            &self.config.traefik_api,
            &self.config.trust,
            weights,
            self.checks.switch_timeout,
        )?;
        Ok(format!(
            "routing {weights}{recorded}, applied by Traefik after {:.2}s",
            took.as_secs_f64()
        ))
    }

    fn watch(&mut self, colour: &Colour, period: Duration) -> Result<String> {
        self.observe(colour, period, false)?;
        Ok(format!(
            "{colour} sound for {}",
            humantime::format_duration(period)
        ))
    }

    fn verify(&mut self, colour: &Colour) -> Result<String> {
        if self.config.data_path == DataPath::Direct {
            return self.verify_in_group(colour);
        }
        let expected = self.server_id(colour)?;
        let t = self.checks.clone();
        let landing = probe::wait_landing(
            &self.config.public_url,
            &self.config.trust,
            &expected,
            t.verify_connections,
            t.switch_timeout,
            OnFailure::Fail,
        )?;
        let more = self.observe(colour, t.verify_window, true)?;
        Ok(format!(
            "{} in a row on {colour} ({landing}), {more} more over {}; process and error counters unchanged",
            t.verify_connections,
            humantime::format_duration(t.verify_window)
        ))
    }

    fn confirm_routing(&mut self, colour: &Colour) -> Result<String> {
        self.landing_on(colour)
    }

    fn drain(&mut self, colour: &Colour, successor: &Colour) -> Result<String> {
        let held = health::health(self.config.instance(colour)?).map(|h| h.connections);
        let unit = self.stop_units(colour)?;
        ensure!(
            unit.active_state != "active",
            "{} still {unit} after stop",
            colour.service_unit()
        );
        let now = health::health(self.config.instance(successor)?).map(|h| h.connections);
        let count =
            |c: Result<u64>| c.map_or_else(|e| format!("unknown ({e:#})"), |n| n.to_string());
        let stopped = format!(
            "{} stopped ({unit}); it held {} connections, {successor} now holds {}",
            colour.service_unit(),
            count(held),
            count(now)
        );
        if self.config.data_path == DataPath::Traefik {
            return Ok(stopped);
        }
        // The group is the successor alone now: record it, and see it from the outside.
        let recorded = self.record_group(&Weights::only(successor))?;
        let landing = self.landing_on(successor)?;
        Ok(format!("{stopped}; {recorded}; {landing}"))
    }

    fn stop(&mut self, colour: &Colour) -> Result<String> {
        // Both, even when one fails: a stopped colour must not come back on the failed build.
        let stopped = self.stop_units(colour);
        let restored = self.pinning.restore(colour)?;
        let unit = stopped?;
        Ok(match restored {
            Some(profile) => format!("{} {unit}; {profile}", colour.service_unit()),
            None => format!("{} {unit}", colour.service_unit()),
        })
    }
}
