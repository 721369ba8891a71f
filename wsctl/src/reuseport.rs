//! The direct data path's reuseport group on this host (docs/deploy.md, "The direct data
//! path"): every colour that runs with its `ws-public@` socket holds a listener on the shared
//! public address, and the kernel spreads new connections evenly over them. Which colours
//! are in the group (systemd), which processes really hold a listener there (`ss`), and the
//! kernel setting that makes a colour's leaving lose nothing.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::colour::Colour;
use crate::config::Config;
use crate::routing::Weights;
use crate::systemd;

/// Where the kernel says whether a closing listener's queue moves to the group's others.
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// The colours whose shared public socket is open, as equal weights (the kernel's even
/// spread); `None` when there is none.
pub fn group(config: &Config) -> Result<Option<Weights>> {
    let mut members = Vec::new();
    for colour in config.instances.keys() {
        if systemd::is_active(&colour.reuseport_socket_unit())? {
            members.push((colour.clone(), 1));
        }
    }
    if members.is_empty() {
        return Ok(None);
    }
    Weights::new(members).map(Some)
}

/// The weights of a switch as the direct path can apply them: every colour named gets an
/// equal share (the kernel hashes new connections over the group's listeners).
pub fn check_even(weights: &Weights) -> Result<()> {
    ensure!(
        weights.is_even(),
        "the direct data path spreads new connections evenly over the colours in the reuseport \
         group: it cannot apply {weights} (deploy all at once, --steps 1; docs/deploy.md)"
    );
    Ok(())
}

/// The processes that hold a listening socket on `port` (`ss -ltnp`), systemd included
/// while a socket unit keeps its copy.
pub fn holders(port: u16) -> Result<BTreeSet<u32>> {
    let out = Command::new("ss")
        .args(["-Hltnp", "sport", "=", &format!(":{port}")])
        .output()
        .context("cannot run ss (iproute2) to see who listens on the public port")?;
    ensure!(
        out.status.success(),
        "ss -Hltnp sport = :{port} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(parse_holders(&String::from_utf8_lossy(&out.stdout)))
}

/// Every `pid=N` of `ss -p`'s `users:(("name",pid=N,fd=M),...)`.
fn parse_holders(ss: &str) -> BTreeSet<u32> {
    ss.split("pid=")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The colour's process (`pid`) holds a listener on the shared port: it serves its share.
pub fn ensure_holds(colour: &Colour, pid: u32, port: u16) -> Result<()> {
    let holders = holders(port)?;
    if !holders.contains(&pid) {
        bail!(
            "{} (pid {pid}) holds no listener on the public port {port} (holders: {holders:?}): \
             it was started before {} and never received it",
            colour.service_unit(),
            colour.reuseport_socket_unit()
        );
    }
    Ok(())
}

/// `net.ipv4.tcp_migrate_req` must be 1: otherwise the connections waiting in a leaving
/// colour's queue are reset instead of moved (measured in issue 20: 96 of 200).
pub fn ensure_migration() -> Result<()> {
    let value = std::fs::read_to_string(MIGRATE_REQ)
        .with_context(|| format!("cannot read {MIGRATE_REQ} (a kernel before 5.14?)"))?;
    ensure!(
        value.trim() == "1",
        "net.ipv4.tcp_migrate_req is {}: a colour leaving the reuseport group would reset the \
         connections in its queue (set it to 1; the NixOS module does on the direct path)",
        value.trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_pid_of_ss() {
        let ss = "LISTEN 0 4096 0.0.0.0:8000 0.0.0.0:* users:((\"concurrent-sock\",pid=812,fd=4),(\"systemd\",pid=1,fd=61))\n\
                  LISTEN 3 4096 0.0.0.0:8000 0.0.0.0:* users:((\"concurrent-sock\",pid=990,fd=4))\n";
        assert_eq!(parse_holders(ss), BTreeSet::from([1, 812, 990]));
        assert!(parse_holders("").is_empty());
    }

    #[test]
    fn only_even_weights_are_applied() {
        assert!(check_even(&Weights::parse_spec("blue=1,green=1").unwrap()).is_ok());
        assert!(check_even(&Weights::parse_spec("green=1").unwrap()).is_ok());
        let err = check_even(&Weights::parse_spec("blue=2,green=1").unwrap()).unwrap_err();
        assert!(err.to_string().contains("--steps 1"), "{err}");
    }
}
