"""The commands of one host's rollout, as argument vectors: ssh to the host (wsctl, the colour
pins), aws elbv2 (the load balancer), nixos-rebuild (the new system)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .inventory import Fleet, Host

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15"]
PINS_PATH = "/etc/nixos/colours.json"
COLOURS = ("blue", "green")


class StatusError(Exception):
    """A host's answer (wsctl status, the colour pins) is not what a rollout can act on."""


@dataclass(frozen=True)
class Settings:
    flake_ref: str
    ssh_user: str
    build_on: str  # "target" (build on the host) or "local"
    flake_dir: Path  # local copy of the hosts' /etc/nixos (flake.nix, fleet.json)
    deploy_args: tuple[str, ...]


def other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def ssh(settings: Settings, host: Host, *remote: str) -> list[str]:
    return ["ssh", *SSH_OPTIONS, f"{settings.ssh_user}@{host.public_ip}", "--", *remote]


def wsctl_status(settings: Settings, host: Host) -> list[str]:
    return ssh(settings, host, "wsctl", "status", "--json")


def read_pins(settings: Settings, host: Host) -> list[str]:
    return ssh(settings, host, "cat", PINS_PATH)


def write_pins(settings: Settings, host: Host) -> list[str]:
    """Replaces the pins atomically with what arrives on stdin."""
    return ssh(settings, host, "sh", "-c", f"'umask 022 && cat > {PINS_PATH}.new && mv {PINS_PATH}.new {PINS_PATH}'")


def wsctl_deploy(settings: Settings, host: Host, colour: str) -> list[str]:
    return ssh(settings, host, "wsctl", "deploy", "--to", colour, "--json", *settings.deploy_args)


def nixos_rebuild(settings: Settings, host: Host, pins: dict[str, str]) -> list[str]:
    """Switches the host to the fleet flake with the module from the new version and each
    colour's package from its pin."""
    target = f"{settings.ssh_user}@{host.public_ip}"
    argv = [
        "nixos-rebuild", "switch",
        "--flake", f"{settings.flake_dir}#fleet-host",
        "--target-host", target,
        "--override-input", "concurrent-socket", settings.flake_ref,
    ]
    for colour in COLOURS:
        argv += ["--override-input", colour, pins[colour]]
    if settings.build_on == "target":
        argv += ["--build-host", target]
    return argv


def _targets(fleet: Fleet, host: Host, listener: str) -> list[str]:
    return ["--targets", f"Id={host.instance_id},Port={fleet.target_ports[listener]}"]


def elbv2(fleet: Fleet, action: str, host: Host, listener: str) -> list[str]:
    """aws elbv2 ACTION for the host in one target group: deregister-targets,
    register-targets, or a `wait` on target-deregistered / target-in-service."""
    verb = action.split()
    return ["aws", "--region", fleet.region, "elbv2", *verb, "--target-group-arn", fleet.target_groups[listener], *_targets(fleet, host, listener)]


def describe_target_health(fleet: Fleet, listener: str) -> list[str]:
    return ["aws", "--region", fleet.region, "elbv2", "describe-target-health", "--target-group-arn", fleet.target_groups[listener], "--output", "json"]


def parse_active_colour(stdout: str) -> str:
    """The active colour from `wsctl status --json`."""
    try:
        status = json.loads(stdout)
    except json.JSONDecodeError as err:
        raise StatusError(f"wsctl status --json did not print JSON: {err}") from err
    active = status.get("active") if isinstance(status, dict) else None
    if active not in COLOURS:
        raise StatusError(f"wsctl status reports no active colour ({active!r}); fix the host before rolling it")
    return active


def parse_pins(stdout: str) -> dict[str, str]:
    """The flake reference each colour's package comes from ({PINS_PATH})."""
    try:
        pins = json.loads(stdout)
    except json.JSONDecodeError as err:
        raise StatusError(f"{PINS_PATH} is not JSON: {err}") from err
    if not isinstance(pins, dict) or any(not isinstance(pins.get(c), str) or not pins.get(c) for c in COLOURS):
        raise StatusError(f"{PINS_PATH} must name a flake reference for blue and green, got {pins!r}")
    return {c: pins[c] for c in COLOURS}


# What each exit status of `wsctl deploy` means for the host (docs/deploy.md, "Exit codes").
WSCTL_DEPLOY_EXITS = {
    1: "wsctl rolled the deploy back (exit 1): the old colour serves",
    2: "wsctl refused the deploy (exit 2): nothing changed on the host",
    3: "another deploy or rollback holds the host's lock (wsctl exit 3): nothing changed by this one",
    4: "wsctl needs an operator (exit 4): the host's state is not one it could put back",
}


def deploy_failure(returncode: int | None, stdout: str, fallback: str) -> str:
    """The operator's line for a failed `wsctl deploy --json`: what its exit status means and
    the error of its JSON report (which it prints on stdout even when it fails)."""
    meaning = WSCTL_DEPLOY_EXITS.get(returncode) if returncode is not None else None
    if meaning is None:
        return fallback
    try:
        error = json.loads(stdout).get("error") or fallback
    except (json.JSONDecodeError, AttributeError):
        error = fallback
    return f"{meaning}: {error}"


NOT_REGISTERED = "not registered"


def target_states(stdout: str, hosts: list[Host], listener: str) -> dict[str, str]:
    """Each host's state in a describe-target-health answer (healthy, unhealthy, draining,
    initial, ...; "not registered" when the target group does not list it)."""
    try:
        descriptions = json.loads(stdout)["TargetHealthDescriptions"]
        states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in descriptions}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise StatusError(f"describe-target-health ({listener}) gave no TargetHealthDescriptions: {err}") from err
    return {h.name: states.get(h.instance_id, NOT_REGISTERED) for h in hosts}
