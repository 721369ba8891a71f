//! Traefik's routing.yml: the weighted service `ws-active` that both routers of base.yml
//! forward to (docs/architecture.md). Rendering it must give exactly what the NixOS lib
//! `nixos/lib/traefik.nix` (`routing`, `seedRouting`) renders, and rewriting it is the
//! switch of a deploy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::atomic::write_atomically;
use crate::colour::Colour;

/// The Traefik service that base.yml's routers forward to.
pub const ACTIVE_SERVICE: &str = "ws-active";

/// How new connections are shared between colours. Only positive weights are kept, so two
/// equal splits compare equal whatever zeros they were written with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights(BTreeMap<Colour, u32>);

impl Weights {
    /// Every new connection to `colour` (weight 1, as the NixOS module seeds it).
    pub fn only(colour: &Colour) -> Self {
        Weights(BTreeMap::from([(colour.clone(), 1)]))
    }

    /// From (colour, weight) pairs; zeros are dropped and the rest reduced by their common
    /// divisor (3:3 is 1:1). At least one weight must be positive.
    pub fn new(pairs: impl IntoIterator<Item = (Colour, u32)>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (colour, weight) in pairs {
            if map.insert(colour.clone(), weight).is_some() {
                bail!("colour {colour} is given twice");
            }
        }
        map.retain(|_, w| *w > 0);
        let divisor = map
            .values()
            .copied()
            .reduce(gcd)
            .context("at least one colour needs a positive weight")?;
        map.values_mut().for_each(|w| *w /= divisor);
        Ok(Weights(map))
    }

    /// `blue=3,green=1`.
    pub fn parse_spec(spec: &str) -> Result<Self> {
        let pairs = spec
            .split(',')
            .map(|item| {
                let (colour, weight) = item
                    .split_once('=')
                    .with_context(|| format!("'{item}' is not COLOUR=WEIGHT"))?;
                let weight = weight.trim().parse::<u32>().with_context(|| {
                    format!("weight of {colour} must be a non-negative integer, got '{weight}'")
                })?;
                Ok((colour.trim().parse::<Colour>()?, weight))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(pairs)
    }

    /// The single colour receiving all new connections, if there is one.
    pub fn sole_colour(&self) -> Option<&Colour> {
        match self.0.len() {
            1 => self.0.keys().next(),
            _ => None,
        }
    }

    /// Every colour named gets the same share (after reduction, all weights are 1).
    pub fn is_even(&self) -> bool {
        self.0.values().all(|w| *w == 1)
    }

    /// The colours with a positive weight.
    pub fn colours(&self) -> impl Iterator<Item = &Colour> {
        self.0.keys()
    }

    pub fn weight(&self, colour: &Colour) -> u32 {
        self.0.get(colour).copied().unwrap_or(0)
    }

    /// The Traefik dynamic configuration (JSON, which Traefik's YAML parser reads).
    pub fn render(&self) -> Value {
        let services: Vec<Value> = self
            .0
            .iter()
            .map(|(colour, weight)| json!({ "name": colour.traefik_service(), "weight": weight }))
            .collect();
        json!({
            "http": { "services": { ACTIVE_SERVICE: { "weighted": {
                "services": services,
                // Skip a colour whose own health check (/ready) fails, as the Nix lib does.
                "healthCheck": {},
            }}}}
        })
    }

    /// Read back what `render` (or the NixOS module's seed) wrote.
    pub fn from_rendered(value: &Value) -> Result<Self> {
        let weighted = value
            .pointer(&format!("/http/services/{ACTIVE_SERVICE}/weighted"))
            .with_context(|| {
                format!(
                    "no weighted service {ACTIVE_SERVICE} (http.services.{ACTIVE_SERVICE}.weighted)"
                )
            })?;
        Self::from_weighted(weighted)
    }

    /// From a `weighted` service's configuration, as written or as Traefik's API shows it.
    pub fn from_weighted(weighted: &Value) -> Result<Self> {
        let services = weighted["services"]
            .as_array()
            .context("the weighted service lists no services")?;
        let pairs = services
            .iter()
            .map(|s| {
                let name = s
                    .get("name")
                    .and_then(Value::as_str)
                    .context("a weighted entry has no name")?;
                let colour = name
                    .strip_prefix("ws-")
                    .with_context(|| format!("service '{name}' is not ws-COLOUR"))?
                    .parse::<Colour>()?;
                let weight = s
                    .get("weight")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok())
                    .with_context(|| format!("service '{name}' has no integer weight"))?;
                Ok((colour, weight))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(pairs)
    }

    /// The successive routings of a switch from `from` to `to` in `steps` equal shifts; the
    /// last one sends everything to `to`.
    pub fn shift(from: &Colour, to: &Colour, steps: u32) -> Result<Vec<Self>> {
        if steps == 0 {
            bail!("a switch needs at least one step");
        }
        (1..=steps)
            .map(|i| Self::new([(from.clone(), steps - i), (to.clone(), i)]))
            .collect()
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(c, w)| format!("{c}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// routing.yml in the Traefik file-provider directory.
pub struct RoutingFile {
    path: PathBuf,
}

impl RoutingFile {
    pub fn in_dir(dir: &Path) -> Self {
        RoutingFile {
            path: dir.join("routing.yml"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current routing; `None` when the file does not exist yet.
    pub fn read(&self) -> Result<Option<Weights>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()));
            }
        };
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not the JSON that wsctl and the NixOS module write",
                self.path.display()
            )
        })?;
        Weights::from_rendered(&value)
            .with_context(|| format!("{} does not define the routing", self.path.display()))
            .map(Some)
    }

    /// Replace the file atomically; Traefik's file watcher reloads it.
    pub fn write(&self, weights: &Weights) -> Result<()> {
        let mut text =
            serde_json::to_string_pretty(&weights.render()).expect("a JSON value serialises");
        text.push('\n');
        write_atomically(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> Colour {
        name.parse().unwrap()
    }

    #[test]
    fn renders_what_the_nix_lib_seeds() {
        // (import ./nixos/lib/traefik.nix { }).seedRouting "green", as nix-instantiate prints it.
        let nix: Value = serde_json::from_str(
            r#"{"http":{"services":{"ws-active":{"weighted":{"healthCheck":{},"services":[{"name":"ws-green","weight":1}]}}}}}"#,
        )
        .unwrap();
        assert_eq!(Weights::only(&c("green")).render(), nix);
    }

    #[test]
    fn lists_only_positive_weights_in_colour_order() {
        let w = Weights::parse_spec("green=1,blue=3,red=0").unwrap();
        let names: Vec<_> = w.render()["http"]["services"]["ws-active"]["weighted"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}:{}", s["name"].as_str().unwrap(), s["weight"]))
            .collect();
        assert_eq!(names, ["ws-blue:3", "ws-green:1"]);
    }

    #[test]
    fn reduces_weights_so_equal_splits_compare_equal() {
        assert_eq!(
            Weights::parse_spec("blue=0,green=4").unwrap(),
            Weights::only(&c("green"))
        );
        assert_eq!(
            Weights::parse_spec("blue=2,green=2").unwrap(),
            Weights::parse_spec("blue=1,green=1").unwrap()
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "blue",
            "blue=x",
            "blue=-1",
            "Blue=1",
            "blue=0",
            "blue=1,blue=2",
        ] {
            assert!(Weights::parse_spec(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn shift_moves_in_equal_steps_and_ends_on_the_target() {
        let steps = Weights::shift(&c("blue"), &c("green"), 4).unwrap();
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "blue=3,green=1",
                "blue=1,green=1",
                "blue=1,green=3",
                "green=1"
            ]
        );
        assert_eq!(
            Weights::shift(&c("blue"), &c("green"), 1).unwrap(),
            [Weights::only(&c("green"))]
        );
        assert!(Weights::shift(&c("blue"), &c("green"), 0).is_err());
    }

    #[test]
    fn file_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = RoutingFile::in_dir(dir.path());
        assert_eq!(file.read().unwrap(), None);
        let w = Weights::parse_spec("blue=1,green=3").unwrap();
        file.write(&w).unwrap();
        assert_eq!(file.read().unwrap(), Some(w));
    }

    #[test]
    fn a_foreign_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = RoutingFile::in_dir(dir.path());
        std::fs::write(file.path(), "http:\n  services: {}\n").unwrap();
        assert!(format!("{:#}", file.read().unwrap_err()).contains("routing.yml"));
        std::fs::write(file.path(), r#"{"http":{"services":{}}}"#).unwrap();
        assert!(format!("{:#}", file.read().unwrap_err()).contains("ws-active"));
    }
}
