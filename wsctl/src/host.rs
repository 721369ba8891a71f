//! The deploy's actions on a real host: systemd through `systemctl`, the instances' HTTP
//! endpoints, `loadtest`, Traefik's routing.yml and the active-colour file, and new
//! WebSocket connections through Traefik. `--dry-run` describes them instead (dry_run.rs).

use std::collections::HashMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::colour::Colour;
use crate::config::Config;
use crate::deploy::Host;
use crate::health::{self, ErrorCounters};
use crate::loadgate;
use crate::probe::{self, OnFailure};
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
            "{} {unit} after {:.2}s, /ready 200 after {:.2}s",
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

    fn drain(&mut self, colour: &Colour, successor: &Colour) -> Result<String> {
        let held = health::health(self.config.instance(colour)?).map(|h| h.connections);
        let unit = systemd::stop_colour(colour)?;
        ensure!(
            unit.active_state != "active",
            "{} still {unit} after stop",
            colour.service_unit()
        );
        let now = health::health(self.config.instance(successor)?).map(|h| h.connections);
        let count =
            |c: Result<u64>| c.map_or_else(|e| format!("unknown ({e:#})"), |n| n.to_string());
        Ok(format!(
            "{} stopped ({unit}); it held {} connections, {successor} now holds {}",
            colour.service_unit(),
            count(held),
            count(now)
        ))
    }

    fn stop(&mut self, colour: &Colour) -> Result<String> {
        let unit = systemd::stop_colour(colour)?;
        Ok(format!("{} {unit}", colour.service_unit()))
    }
}
