//! `wsctl status`: the active colour (recorded, as routed, as Traefik applies it, and where a
//! new connection through the public URL lands), and per colour its unit state, version,
//! server ID and connections, from systemd and each instance's /health.

use serde::Serialize;

use crate::colour::Colour;
use crate::config::Config;
use crate::health::{self, Health};
use crate::probe;
use crate::routing::RoutingFile;
use crate::state::ActiveFile;
use crate::systemd::{self, UnitState};
use crate::traefik_api;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The recorded active colour (`$WSCTL_STATE_DIR/active`).
    pub active: Option<Colour>,
    /// routing.yml's weights, `blue=1` or `blue=3,green=1`.
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
}

pub fn gather(config: &Config) -> Status {
    let mut warnings = Vec::new();
    let active = ActiveFile::in_dir(&config.state_dir)
        .read()
        .unwrap_or_else(|e| {
            warnings.push(format!("{e:#}"));
            None
        });
    let weights = RoutingFile::in_dir(&config.traefik_dir)
        .read()
        .unwrap_or_else(|e| {
            warnings.push(format!("{e:#}"));
            None
        });
    if let (Some(active), Some(w)) = (&active, &weights)
        && w.sole_colour() != Some(active)
    {
        warnings.push(format!(
            "recorded active colour {active} but routing.yml says {w} (a switch did not finish?)"
        ));
    }
    let traefik_applies = traefik_api::applied(&config.traefik_api, &config.trust)
        .map(|w| w.to_string())
        .map_err(|e| warnings.push(format!("{e:#}")))
        .ok();
    if let (Some(file), Some(live)) = (weights.as_ref().map(ToString::to_string), &traefik_applies)
        && &file != live
    {
        warnings.push(format!(
            "Traefik applies {live}, routing.yml says {file} (reload pending or failed)"
        ));
    }
    let instances = config
        .instances
        .iter()
        .map(|(colour, inst)| {
            let (unit, unit_error) = split(systemd::show(&colour.service_unit()));
            let (health, health_error) = split(health::health(inst));
            InstanceStatus {
                colour: colour.clone(),
                port: inst.port,
                weight: weights.as_ref().map_or(0, |w| w.weight(colour)),
                unit,
                unit_error,
                health,
                health_error,
            }
        })
        .collect();
    let (server_id, error) = split(probe::server_id(&config.public_url, &config.trust));
    Status {
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
        println!(
            "active: {}   routing.yml: {}   Traefik applies: {}",
            shown(&self.active),
            self.routing.as_deref().unwrap_or("(none)"),
            self.traefik_applies.as_deref().unwrap_or("(unknown)")
        );
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
                "{:<8} :{:<5} weight {:<3} ws@{}: {unit}; {health}",
                i.colour.as_str(),
                i.port,
                i.weight,
                i.colour
            );
        }
    }
}
