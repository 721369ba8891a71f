//! Where wsctl finds things: each colour's loopback ports, Traefik's public URL and API (and
//! whom to trust when they are TLS), the `loadtest` binary, the state and Traefik directories,
//! the package each colour is deployed with (profile.rs), and the data path (through Traefik,
//! or direct to the colours on a shared reuseport address). Defaults are docs/architecture.md's;
//! a JSON file (`$WSCTL_CONFIG`, default /etc/concurrent-socket/wsctl.json) overrides them,
//! and flags or environment variables override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::colour::Colour;
use crate::probe::PublicUrl;
use crate::tls::Trust;

pub const DEFAULT_CONFIG: &str = "/etc/concurrent-socket/wsctl.json";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/concurrent-socket";
/// Traefik's `web` entry point on the same host.
pub const DEFAULT_PUBLIC_URL: &str = "ws://127.0.0.1:80";
/// Traefik's API entry point (docs/architecture.md).
pub const DEFAULT_TRAEFIK_API: &str = "http://127.0.0.1:8082";
/// The instances listen on loopback only; Traefik is their public side.
const INSTANCE_HOST: &str = "127.0.0.1";

/// How WebSockets reach the colours (nixos/lib/direct.nix, docs/deploy.md).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DataPath {
    /// Through Traefik: routing.yml says which colour gets new connections.
    #[default]
    Traefik,
    /// Straight to the colours, which share the public address (SO_REUSEPORT): the colours
    /// whose `ws-public@` socket is open get new connections, and a deploy flips them in the
    /// kernel.
    Direct,
}

impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataPath::Traefik => "traefik",
            DataPath::Direct => "direct",
        })
    }
}

/// One colour's listeners (the same field names as nixos/lib/instances.nix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    pub port: u16,
    pub metrics_port: u16,
}

impl Instance {
    /// Public listener, for /health and /ready.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{INSTANCE_HOST}:{}{path}", self.port)
    }

    /// Public listener, for the load test against this colour alone.
    pub fn ws_url(&self) -> String {
        format!("ws://{INSTANCE_HOST}:{}", self.port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{INSTANCE_HOST}:{}/metrics", self.metrics_port)
    }
}

/// The file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    instances: Option<BTreeMap<Colour, Instance>>,
    public_url: Option<String>,
    traefik_api: Option<String>,
    loadtest: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    traefik_dir: Option<PathBuf>,
    packages: Option<BTreeMap<Colour, PathBuf>>,
    candidate: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    data_path: Option<DataPath>,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub public_url: Option<String>,
    pub traefik_api: Option<String>,
    pub loadtest: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub traefik_dir: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub data_path: Option<DataPath>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub instances: BTreeMap<Colour, Instance>,
    pub data_path: DataPath,
    /// Where clients reach the colours (`ws://HOST:PORT` or `wss://`): Traefik's WebSocket
    /// entry point, or on the direct path the colours' shared public address.
    pub public_url: String,
    /// Traefik's API, to see which routing it applies (`http://HOST:PORT` or `https://`).
    pub traefik_api: String,
    /// Whom to trust when those two are TLS.
    pub trust: Trust,
    pub loadtest: PathBuf,
    pub state_dir: PathBuf,
    pub traefik_dir: PathBuf,
    /// The package a deploy pins each listed colour to (the NixOS module lists them all).
    pub packages: BTreeMap<Colour, PathBuf>,
    /// The package of the colours not in `packages`: a symlink systemd/install.sh moves.
    pub candidate: PathBuf,
}

impl Config {
    /// The file named by `overrides.config` must exist; the default file may be absent.
    pub fn load(overrides: Overrides) -> Result<Self> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG))?,
            None => ConfigFile::default(),
        };
        Self::resolve(file, overrides)
    }

    fn resolve(file: ConfigFile, overrides: Overrides) -> Result<Self> {
        let state_dir = overrides
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let trust = Trust::new(overrides.ca_file.or(file.ca_file).as_deref())?;
        let config = Config {
            instances: file.instances.unwrap_or_else(default_instances),
            data_path: overrides.data_path.or(file.data_path).unwrap_or_default(),
            public_url: overrides
                .public_url
                .or(file.public_url)
                .unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned()),
            traefik_api: overrides
                .traefik_api
                .or(file.traefik_api)
                .unwrap_or_else(|| DEFAULT_TRAEFIK_API.to_owned()),
            loadtest: overrides
                .loadtest
                .or(file.loadtest)
                .unwrap_or_else(|| PathBuf::from("loadtest")),
            traefik_dir: overrides
                .traefik_dir
                .or(file.traefik_dir)
                .unwrap_or_else(|| state_dir.join("traefik")),
            packages: file.packages.unwrap_or_default(),
            candidate: file
                .candidate
                .unwrap_or_else(|| state_dir.join("candidate")),
            state_dir,
            trust,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.instances.len() >= 2,
            "blue/green needs at least two instances, got {}",
            self.instances.len()
        );
        let mut seen = BTreeMap::new();
        for (colour, inst) in &self.instances {
            for port in [inst.port, inst.metrics_port] {
                ensure!(port != 0, "instance {colour}: port 0 is not a port");
                if let Some(other) = seen.insert(port, colour) {
                    bail!("port {port} is used by both {other} and {colour}");
                }
            }
        }
        for colour in self.packages.keys() {
            ensure!(
                self.instances.contains_key(colour),
                "packages names {colour}, which is not a configured instance"
            );
        }
        let public = PublicUrl::parse(&self.public_url)?;
        ensure!(
            self.data_path == DataPath::Traefik || !public.tls(),
            "the direct data path's public URL is the colours' own address, ws://HOST:PORT \
             (TLS ends before it, at the load balancer), got '{}'",
            self.public_url
        );
        ensure!(
            (self.traefik_api.starts_with("http://") || self.traefik_api.starts_with("https://"))
                && !self.traefik_api.ends_with('/'),
            "Traefik API URL must be http://HOST:PORT or https://HOST:PORT, got '{}'",
            self.traefik_api
        );
        Ok(())
    }

    pub fn instance(&self, colour: &Colour) -> Result<&Instance> {
        self.instances.get(colour).with_context(|| {
            let known: Vec<&str> = self.instances.keys().map(Colour::as_str).collect();
            format!(
                "unknown colour '{colour}' (configured: {})",
                known.join(", ")
            )
        })
    }

    /// The port of the public URL: on the direct path, the colours' shared listener.
    pub fn public_port(&self) -> u16 {
        PublicUrl::parse(&self.public_url)
            .expect("validated when loaded")
            .port()
    }

    /// The one colour other than `colour`, when there are exactly two.
    pub fn other_colour(&self, colour: &Colour) -> Result<Colour> {
        let others: Vec<&Colour> = self.instances.keys().filter(|c| *c != colour).collect();
        match others.as_slice() {
            [one] => Ok((*one).clone()),
            _ => bail!("more than two colours are configured: name the target with --to"),
        }
    }
}

fn default_instances() -> BTreeMap<Colour, Instance> {
    BTreeMap::from([
        (
            "blue".parse().expect("valid"),
            Instance {
                port: 3001,
                metrics_port: 9464,
            },
        ),
        (
            "green".parse().expect("valid"),
            Instance {
                port: 3002,
                metrics_port: 9465,
            },
        ),
    ])
}

fn read_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config> {
        Config::resolve(serde_json::from_str(json)?, Overrides::default())
    }

    #[test]
    fn defaults_follow_the_architecture_document() {
        let c = parse("{}").unwrap();
        let blue = c.instance(&"blue".parse().unwrap()).unwrap();
        let green = c.instance(&"green".parse().unwrap()).unwrap();
        assert_eq!(
            (blue.port, blue.metrics_port, green.port, green.metrics_port),
            (3001, 9464, 3002, 9465)
        );
        assert_eq!(green.ws_url(), "ws://127.0.0.1:3002");
        assert_eq!(blue.metrics_url(), "http://127.0.0.1:9464/metrics");
        assert_eq!(
            c.traefik_dir,
            Path::new("/var/lib/concurrent-socket/traefik")
        );
        assert_eq!(
            c.other_colour(&"blue".parse().unwrap()).unwrap().as_str(),
            "green"
        );
        assert_eq!(
            c.candidate,
            Path::new("/var/lib/concurrent-socket/candidate")
        );
        assert!(c.packages.is_empty());
        assert_eq!(c.data_path, DataPath::Traefik);
    }

    #[test]
    fn the_direct_path_is_read_and_wants_a_plain_public_url() {
        let c = parse(r#"{"dataPath":"direct","publicUrl":"ws://127.0.0.1:8000"}"#).unwrap();
        assert_eq!(c.data_path, DataPath::Direct);
        assert_eq!(c.public_port(), 8000);
        let err = format!(
            "{:#}",
            parse(r#"{"dataPath":"direct","publicUrl":"wss://ws.example.com"}"#).unwrap_err()
        );
        assert!(err.contains("ws://HOST:PORT"), "{err}");
        let err = format!("{:#}", parse(r#"{"dataPath":"proxy"}"#).unwrap_err());
        assert!(err.contains("traefik") && err.contains("direct"), "{err}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file: ConfigFile =
            serde_json::from_str(r#"{"publicUrl":"ws://127.0.0.1:8080","stateDir":"/s"}"#).unwrap();
        let c = Config::resolve(
            file,
            Overrides {
                public_url: Some("ws://127.0.0.1:9000".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.public_url, "ws://127.0.0.1:9000");
        assert_eq!(c.traefik_dir, Path::new("/s/traefik"));
    }

    #[test]
    fn bad_files_are_errors_that_say_what_is_wrong() {
        let cases = [
            (
                r#"{"instances":{"blue":{"port":1,"metricsPort":2}}}"#,
                "at least two",
            ),
            (
                r#"{"instances":{"blue":{"port":1,"metricsPort":2},"green":{"port":2,"metricsPort":3}}}"#,
                "port 2",
            ),
            (
                r#"{"instances":{"Blue":{"port":1,"metricsPort":2}}}"#,
                "colour name",
            ),
            (
                r#"{"instances":{"blue":{"port":70000,"metricsPort":2}}}"#,
                "70000",
            ),
            (r#"{"publicUrl":"http://x:1"}"#, "ws://HOST:PORT"),
            (r#"{"publicUrl":"ws://x:1/ws"}"#, "without a path"),
            (r#"{"publicUrl":"ws://x"}"#, "wss://HOST[:PORT]"),
            (r#"{"caFile":"/nonexistent/ca.pem"}"#, "/nonexistent/ca.pem"),
            (r#"{"colour":"blue"}"#, "unknown field"),
            (r#"{"traefikApi":"127.0.0.1:8082"}"#, "http://HOST:PORT"),
            (r#"{"packages":{"red":"/nix/store/x"}}"#, "red"),
        ];
        for (json, expected) in cases {
            let err = format!("{:#}", parse(json).unwrap_err());
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn tls_endpoints_are_accepted() {
        let c =
            parse(r#"{"publicUrl":"wss://ws.example.com","traefikApi":"https://127.0.0.1:8443"}"#)
                .unwrap();
        assert_eq!(c.public_url, "wss://ws.example.com");
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error() {
        let err = Config::load(Overrides {
            config: Some("/nonexistent/wsctl.json".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/wsctl.json"));
    }

    #[test]
    fn an_unknown_colour_names_the_configured_ones() {
        let c = parse("{}").unwrap();
        let err = c.instance(&"red".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("blue, green"), "{err}");
    }
}
