//! systemd control through `systemctl`: starting and stopping a colour's units and reading
//! their state. The same commands work with the units of systemd/ on a plain host and with
//! the NixOS module, which installs the same template units.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::colour::Colour;

/// What `systemctl show` says about a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    /// 0 when no process runs.
    pub main_pid: u32,
    /// Restarts systemd made by itself (Restart=on-failure): a crash shows here.
    pub n_restarts: u32,
    pub result: String,
}

impl UnitState {
    /// Type=notify: "active (running)" only after the server sent READY=1.
    pub fn is_running(&self) -> bool {
        self.active_state == "active" && self.sub_state == "running"
    }

    fn parse(text: &str) -> Result<Self> {
        let props: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |name: &str| {
            props
                .get(name)
                .copied()
                .with_context(|| format!("systemctl show printed no {name}"))
        };
        let number = |name: &str| -> Result<u32> {
            let v = get(name)?;
            v.parse()
                .with_context(|| format!("systemctl show: {name}={v} is not a number"))
        };
        Ok(UnitState {
            active_state: get("ActiveState")?.to_owned(),
            sub_state: get("SubState")?.to_owned(),
            main_pid: number("MainPID")?,
            n_restarts: number("NRestarts")?,
            result: get("Result")?.to_owned(),
        })
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.active_state, self.sub_state)?;
        if self.main_pid != 0 {
            write!(f, ", pid {}", self.main_pid)?;
        }
        if self.result != "success" {
            write!(f, ", result {}", self.result)?;
        }
        Ok(())
    }
}

pub fn show(unit: &str) -> Result<UnitState> {
    let out = systemctl(&[
        "show",
        "-p",
        "ActiveState,SubState,MainPID,NRestarts,Result",
        unit,
    ])?;
    UnitState::parse(&out).with_context(|| format!("state of {unit}"))
}

/// Start the colour's sockets and then its service, and wait until systemd reports it
/// running (READY=1 received). A service already running is restarted, so that it runs the
/// binary installed now.
pub fn start_colour(colour: &Colour, timeout: Duration) -> Result<UnitState> {
    for args in start_commands(colour) {
        systemctl(&args)?;
    }
    wait_running(&colour.service_unit(), timeout)
}

/// The `systemctl` arguments that start a colour, in order: its sockets, then its service
/// stopped and started again.
pub fn start_commands(colour: &Colour) -> [Vec<String>; 3] {
    let service = colour.service_unit();
    let [metrics, public] = colour.socket_units();
    [
        vec!["start".into(), metrics, public],
        vec!["stop".into(), service.clone()],
        // --no-block: our own deadline, and the states on the way, rather than systemctl's.
        vec!["start".into(), "--no-block".into(), service],
    ]
}

/// Stop the service and its sockets in one transaction: with the sockets left listening,
/// any connection (a Traefik health check) would start the service again.
pub fn stop_colour(colour: &Colour) -> Result<UnitState> {
    systemctl(&stop_command(colour))?;
    show(&colour.service_unit())
}

/// The `systemctl` arguments that stop a colour.
pub fn stop_command(colour: &Colour) -> Vec<String> {
    let [metrics, public] = colour.socket_units();
    vec!["stop".into(), colour.service_unit(), public, metrics]
}

/// Whether the unit is active (`systemctl show -P ActiveState`).
pub fn is_active(unit: &str) -> Result<bool> {
    Ok(systemctl(&["show", "-P", "ActiveState", unit])?.trim() == "active")
}

/// The direct data path: the colour joins the reuseport group. Its service is stopped (it
/// holds no client yet: started by the deploy step on its loopback socket and load-tested
/// there), its shared public socket started, and the service started again, so that systemd
/// hands it that socket too; then wait until it runs.
pub fn join_group(colour: &Colour, timeout: Duration) -> Result<UnitState> {
    for args in join_commands(colour) {
        systemctl(&args)?;
    }
    wait_running(&colour.service_unit(), timeout)
}

pub fn join_commands(colour: &Colour) -> [Vec<String>; 3] {
    let service = colour.service_unit();
    [
        vec!["stop".into(), service.clone()],
        vec!["start".into(), colour.reuseport_socket_unit()],
        vec!["start".into(), "--no-block".into(), service],
    ]
}

/// The direct data path: the colour leaves the reuseport group. Its shared socket first
/// (systemd's copy of the listener closes; the server still accepts on its own), then the
/// service and its other sockets: at SIGTERM the server closes its listeners, so the last
/// copy closes and the kernel moves the connections waiting in its queue to the group's other
/// listeners (net.ipv4.tcp_migrate_req=1); then the drain says goodbye to its clients, who
/// reconnect to the colours left. Stopping the socket together with the service would leave
/// systemd's copy open, unaccepted, for the length of the drain.
pub fn leave_group(colour: &Colour) -> Result<UnitState> {
    for args in leave_commands(colour) {
        systemctl(&args)?;
    }
    show(&colour.service_unit())
}

pub fn leave_commands(colour: &Colour) -> [Vec<String>; 2] {
    [
        vec!["stop".into(), colour.reuseport_socket_unit()],
        stop_command(colour),
    ]
}

fn wait_running(unit: &str, timeout: Duration) -> Result<UnitState> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = show(unit)?;
        if state.is_running() {
            return Ok(state);
        }
        if state.active_state == "failed" {
            bail!("{unit} failed to start: {state} (journalctl -u {unit})");
        }
        if Instant::now() >= deadline {
            bail!(
                "{unit} not running after {}: {state} (journalctl -u {unit})",
                humantime::format_duration(timeout)
            );
        }
        sleep(Duration::from_millis(100));
    }
}

/// `program` in a process group of its own. A Ctrl-C at the terminal, or the SIGHUP of a lost
/// SSH session, goes to wsctl's whole group: wsctl takes it as a request to roll back at the
/// next step, but a `systemctl stop` killed by it mid-drain would report a failed drain (and
/// on the direct path leave the recorded group behind) while systemd finishes the job anyway.
fn own_group(program: &str) -> Command {
    let mut command = Command::new(program);
    command.process_group(0);
    command
}

fn systemctl(args: &[impl AsRef<str>]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = own_group("systemctl")
        .args(&args)
        .output()
        .context("cannot run systemctl (is this a systemd host?)")?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; ")
        );
    }
    String::from_utf8(out.stdout).context("systemctl printed non-UTF-8 output")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid and the process group in a /proc/PID/stat line (the group is the third field
    /// after the command's name).
    fn pid_and_group(stat: &str) -> (&str, &str) {
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let pid = stat.split(' ').next().unwrap();
        (pid, after_name.split(' ').nth(2).unwrap())
    }

    #[test]
    fn systemctl_runs_in_a_process_group_of_its_own() {
        let stat = |command: &mut Command| {
            let out = command.args(["-c", "cat /proc/$$/stat"]).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let own = stat(&mut own_group("sh"));
        let (child, group) = pid_and_group(&own);
        assert_eq!(group, child, "the child leads a group of its own");
        let plain = stat(&mut Command::new("sh"));
        let ours = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(
            pid_and_group(&plain).1,
            pid_and_group(&ours).1,
            "a plain child shares ours"
        );
        assert_ne!(group, pid_and_group(&ours).1);
    }

    #[test]
    fn parses_systemctl_show() {
        let s = UnitState::parse(
            "ActiveState=active\nSubState=running\nMainPID=412\nNRestarts=0\nResult=success\n",
        )
        .unwrap();
        assert!(s.is_running());
        assert_eq!((s.main_pid, s.n_restarts), (412, 0));
        assert_eq!(s.to_string(), "active (running), pid 412");
    }

    #[test]
    fn a_starting_or_failed_unit_is_not_running() {
        let s = UnitState::parse("ActiveState=activating\nSubState=start-pre\nMainPID=0\nNRestarts=2\nResult=exit-code\n")
            .unwrap();
        assert!(!s.is_running());
        assert_eq!(s.to_string(), "activating (start-pre), result exit-code");
    }

    #[test]
    fn missing_or_garbled_properties_are_errors() {
        assert!(UnitState::parse("ActiveState=active\n").is_err());
        let err =
            UnitState::parse("ActiveState=a\nSubState=b\nMainPID=x\nNRestarts=0\nResult=success\n")
                .unwrap_err();
        assert!(err.to_string().contains("MainPID=x"), "{err}");
    }
}
