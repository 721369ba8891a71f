//! Colour names: what a blue/green instance is called, validated once so that every unit
//! name, Traefik service name and file written from it is well formed.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// A validated colour (`blue`, `green`, ...): `[a-z][a-z0-9-]*`, the rule of
/// nixos/lib/instances.nix, because it becomes part of unit and Traefik service names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Colour(String);

impl Colour {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `ws@COLOUR.service`.
    pub fn service_unit(&self) -> String {
        format!("ws@{}.service", self.0)
    }

    /// The public and metrics socket units of the instance.
    pub fn socket_units(&self) -> [String; 2] {
        [
            format!("ws-metrics@{}.socket", self.0),
            format!("ws@{}.socket", self.0),
        ]
    }

    /// The direct data path's public socket (systemd/ws-public@.socket): the colour's
    /// listener in the reuseport group.
    pub fn reuseport_socket_unit(&self) -> String {
        format!("ws-public@{}.socket", self.0)
    }

    /// The Traefik load-balancer service of base.yml for this colour.
    pub fn traefik_service(&self) -> String {
        format!("ws-{}", self.0)
    }
}

impl FromStr for Colour {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut chars = s.chars();
        let valid = matches!(chars.next(), Some('a'..='z'))
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
            && s.len() <= 64;
        if !valid {
            bail!(
                "'{s}' is not a colour name: lower-case letters, digits and '-', starting with a letter"
            );
        }
        Ok(Colour(s.to_owned()))
    }
}

impl TryFrom<String> for Colour {
    type Error = anyhow::Error;

    fn try_from(s: String) -> anyhow::Result<Self> {
        s.parse()
    }
}

impl From<Colour> for String {
    fn from(c: Colour) -> String {
        c.0
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_nix_lib_rule() {
        for good in ["blue", "green", "canary-2", "a"] {
            assert_eq!(good.parse::<Colour>().unwrap().as_str(), good);
        }
    }

    #[test]
    fn rejects_names_that_would_break_unit_or_service_names() {
        for bad in [
            "",
            "Blue",
            "2green",
            "-x",
            "blue/green",
            "blue green",
            "ws@x",
            "blue.service",
        ] {
            assert!(bad.parse::<Colour>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_units_and_services() {
        let c: Colour = "green".parse().unwrap();
        assert_eq!(c.service_unit(), "ws@green.service");
        assert_eq!(
            c.socket_units(),
            ["ws-metrics@green.socket", "ws@green.socket"]
        );
        assert_eq!(c.traefik_service(), "ws-green");
    }
}
