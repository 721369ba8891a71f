//! `wsctl status`: the active colour (recorded, as routed, as Traefik applies it, and where a
//! new connection through the public URL lands; on the direct data path the routing is the
//! reuseport group and Traefik is not asked), and per colour its unit state, version,
//! server ID and connections, from systemd and each instance's /health, and the build its
//! profile pins and the one its process runs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::colour::Colour;
use crate::config::{Config, DataPath};
use crate::health::{self, Health};
use crate::probe;
use crate::profile::Profiles;
use crate::reuseport;
use crate::routing::RoutingFile;
use crate::state::ActiveFile;
use crate::systemd::{self, UnitState};
use crate::traefik_api;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub data_path: DataPath,
    /// The recorded active colour (`$WSCTL_STATE_DIR/active`).
    pub active: Option<Colour>,
    /// routing.yml's weights, `blue=1` or `blue=3,green=1`; on the direct path the colours
    /// in the reuseport group, each 1.
    pub routing: Option<String>,
    /// The weights Traefik applies now, per its API.
    pub traefik_applies: Option<String>,
    /// A new connection through the public URL, as a client makes it.
    pub public: PublicProbe,
    /// Problems reading the state: unreadable files, recorded colour != routed colour.
    pub warnings: Vec<String>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicProbe {
    pub url: String,
    /// The `serverId` of the colour it reached.
    pub server_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub colour: Colour,
    pub port: u16,
    /// This colour's share of new connections in routing.yml.
    pub weight: u32,
    pub unit: Option<UnitState>,
    pub unit_error: Option<String>,
    pub health: Option<Health>,
    pub health_error: Option<String>,
    /// The package the colour's profile points at: what systemd starts next time.
    pub pinned: Option<PathBuf>,
    /// The binary the colour's running process executes (`/proc/PID/exe`).
    pub runs: Option<PathBuf>,
}

pub fn gather(config: &Config) -> Status {
    let mut warnings = Vec::new();
    let active = ActiveFile::in_dir(&config.state_dir)
        .read()
        .unwrap_or_else(|e| {
            warnings.push(format!("{e:#}"));
            None
        });
    let routing = match config.data_path {
        DataPath::Traefik => RoutingFile::in_dir(&config.traefik_dir).read(),
        DataPath::Direct => reuseport::group(config),
    };
    let weights = routing.unwrap_or_else(|e| {
        warnings.push(format!("{e:#}"));
        None
    });
    if let (Some(active), Some(w)) = (&active, &weights)
        && w.sole_colour() != Some(active)
    {
        warnings.push(format!(
            "recorded active colour {active} but the routing says {w} (a switch did not finish?)"
        ));
    }
    let traefik_applies = (config.data_path == DataPath::Traefik)
        .then(|| {
            traefik_api::applied(&config.traefik_api, &config.trust)
                .map(|w| w.to_string())
                .map_err(|e| warnings.push(format!("{e:#}")))
                .ok()
        })
        .flatten();
    if let (Some(file), Some(live)) = (weights.as_ref().map(ToString::to_string), &traefik_applies)
        && &file != live
    {
        warnings.push(format!(
            "Traefik applies {live}, routing.yml says {file} (reload pending or failed)"
        ));
    }
    let profiles = Profiles::in_state_dir(&config.state_dir);
    let instances = config
        .instances
        .iter()
        .map(|(colour, inst)| {
            let (unit, unit_error) = split(systemd::show(&colour.service_unit()));
            let (health, health_error) = split(health::health(inst));
            let pinned = profiles.pinned(colour).unwrap_or_else(|e| {
                warnings.push(format!("{e:#}"));
                None
            });
            let runs = unit
                .as_ref()
                .filter(|u| u.main_pid != 0)
                .and_then(|u| std::fs::read_link(format!("/proc/{}/exe", u.main_pid)).ok());
            if let Some(warning) = build_mismatch(colour, &profiles.path(colour), runs.as_deref()) {
                warnings.push(warning);
            }
            if let (DataPath::Direct, Some(w), Some(u)) = (config.data_path, &weights, &unit)
                && w.weight(colour) > 0
                && u.is_running()
                && let Err(e) = reuseport::ensure_holds(colour, u.main_pid, config.public_port())
            {
                warnings.push(format!("{e:#}"));
            }
            InstanceStatus {
                colour: colour.clone(),
                port: inst.port,
                weight: weights.as_ref().map_or(0, |w| w.weight(colour)),
                unit,
                unit_error,
                health,
                health_error,
                pinned,
                runs,
            }
        })
        .collect();
    let (server_id, error) = split(probe::server_id(&config.public_url, &config.trust));
    Status {
        data_path: config.data_path,
        active,
        routing: weights.map(|w| w.to_string()),
        traefik_applies,
        public: PublicProbe {
            url: config.public_url.clone(),
            server_id,
            error,
        },
        warnings,
        instances,
    }
}

/// A running colour whose process is not the build its profile pins: a restart would
/// change its code (a profile changed by hand, or a host upgraded to profiles while it ran).
fn build_mismatch(colour: &Colour, profile: &Path, runs: Option<&Path>) -> Option<String> {
    let runs = runs?;
    let pinned = std::fs::canonicalize(profile).ok();
    match pinned {
        Some(package) if runs.starts_with(&package) => None,
        _ => Some(format!(
            "{colour} runs {} but its profile {} pins {}: a restart would change its build",
            runs.display(),
            profile.display(),
            pinned.map_or("nothing".to_owned(), |p| p.display().to_string())
        )),
    }
}

fn split<T>(result: anyhow::Result<T>) -> (Option<T>, Option<String>) {
    match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}

impl Status {
    pub fn print(&self) {
        let shown = |c: &Option<Colour>| {
            c.as_ref()
                .map_or("(none recorded)".to_owned(), ToString::to_string)
        };
        match self.data_path {
            DataPath::Traefik => println!(
                "active: {}   routing.yml: {}   Traefik applies: {}",
                shown(&self.active),
                self.routing.as_deref().unwrap_or("(none)"),
                self.traefik_applies.as_deref().unwrap_or("(unknown)")
            ),
            DataPath::Direct => println!(
                "active: {}   data path: direct   reuseport group: {}",
                shown(&self.active),
                self.routing.as_deref().unwrap_or("(empty)")
            ),
        }
        match (&self.public.server_id, &self.public.error) {
            (Some(id), _) => println!(
                "public {}: a new connection reaches serverId {id}",
                self.public.url
            ),
            (None, e) => println!(
                "public {}: no connection: {}",
                self.public.url,
                e.as_deref().unwrap_or("")
            ),
        }
        for w in &self.warnings {
            println!("warning: {w}");
        }
        for i in &self.instances {
            let unit = match (&i.unit, &i.unit_error) {
                (Some(u), _) => u.to_string(),
                (None, e) => format!("unknown: {}", e.as_deref().unwrap_or("")),
            };
            let health = match (&i.health, &i.health_error) {
                (Some(h), _) => format!(
                    "{} version {} serverId {} connections {} up {}s",
                    h.status, h.version, h.server_id, h.connections, h.uptime_seconds as u64
                ),
                (None, e) => format!("no /health: {}", e.as_deref().unwrap_or("")),
            };
            println!(
                "{:<8} :{:<5} weight {:<3} ws@{}: {unit}; {health}; pinned {}",
                i.colour.as_str(),
                i.port,
                i.weight,
                i.colour,
                i.pinned
                    .as_ref()
                    .map_or("(no profile)".to_owned(), |p| p.display().to_string())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_process_outside_its_pinned_package_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        let profile = dir.path().join("green");
        symlink(&old, &profile).unwrap();
        let green: Colour = "green".parse().unwrap();
        let binary = |p: &Path| p.join("bin/concurrent-socket");
        assert_eq!(build_mismatch(&green, &profile, Some(&binary(&old))), None);
        assert_eq!(build_mismatch(&green, &profile, None), None, "not running");
        let warning = build_mismatch(&green, &profile, Some(&binary(&new))).unwrap();
        assert!(
            warning.contains("a restart would change its build"),
            "{warning}"
        );
        let warning =
            build_mismatch(&green, &dir.path().join("blue"), Some(&binary(&new))).unwrap();
        assert!(warning.contains("pins nothing"), "{warning}");
    }
}
