"""The fleet as `terraform output -json` describes it: hosts, target groups, the hosts' flake."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path


class InventoryError(Exception):
    """The Terraform outputs are missing, malformed or incomplete."""


@dataclass(frozen=True)
class Host:
    name: str
    instance_id: str
    public_ip: str
    private_ip: str
    availability_zone: str


@dataclass(frozen=True)
class Fleet:
    hosts: tuple[Host, ...]
    target_groups: dict[str, str]  # listener name -> target group ARN
    target_ports: dict[str, int]  # listener name -> port the hosts are registered on
    region: str
    nixos_files: dict[str, str]  # file name -> content of a WebSocket host's /etc/nixos


# The NLB has one listener, and so one target group: "http" without TLS, "https" with TLS at
# the NLB. Either way the hosts are registered on Traefik's port 80 (terraform/modules/ws-fleet,
# main.tf: local.traefik_port).
LISTENERS = ("http", "https")
TARGET_PORT = 80


def read_outputs(tf_dir: Path) -> dict:
    """Runs `terraform output -json` in tf_dir and returns its parsed output."""
    try:
        done = subprocess.run(
            ["terraform", f"-chdir={tf_dir}", "output", "-json"],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError as err:
        raise InventoryError("terraform is not on PATH") from err
    except subprocess.CalledProcessError as err:
        raise InventoryError(f"terraform output failed in {tf_dir}: {err.stderr.strip()}") from err
    return parse_json(done.stdout, f"terraform output in {tf_dir}")


def load_outputs_file(path: Path) -> dict:
    """Reads a saved `terraform output -json`."""
    try:
        text = path.read_text()
    except OSError as err:
        raise InventoryError(f"cannot read {path}: {err.strerror}") from err
    return parse_json(text, str(path))


def parse_json(text: str, origin: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InventoryError(f"{origin} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise InventoryError(f"{origin} is not a JSON object of outputs")
    return data


def fleet_from_outputs(outputs: dict) -> Fleet:
    """Builds the Fleet from the outputs of terraform/envs/* (ws_hosts, target_group_arns,
    region, ws_host_nixos); names what is missing."""
    values = {name: _output_value(outputs, name) for name in ("ws_hosts", "target_group_arns", "region", "ws_host_nixos")}
    hosts_value = values["ws_hosts"]
    if not isinstance(hosts_value, dict) or not hosts_value:
        raise InventoryError("output ws_hosts is empty or not a map of hosts: has `terraform apply` run?")
    hosts = tuple(_host(name, spec) for name, spec in sorted(hosts_value.items()))

    groups = values["target_group_arns"]
    if not isinstance(groups, dict) or len(groups) != 1 or not set(groups) <= set(LISTENERS):
        raise InventoryError(f"output target_group_arns must map one listener ({' or '.join(LISTENERS)}) to its ARN, got {groups!r}")
    for name, arn in groups.items():
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise InventoryError(f"target_group_arns.{name} is not an ARN: {arn!r}")

    files = values["ws_host_nixos"]
    if not isinstance(files, dict) or set(files) != {"flake.nix", "fleet.json"}:
        raise InventoryError("output ws_host_nixos must hold flake.nix and fleet.json")
    region = values["region"]
    if not isinstance(region, str) or not region:
        raise InventoryError("output region must be a region name")
    return Fleet(hosts, dict(groups), {name: TARGET_PORT for name in groups}, region, dict(files))


def _output_value(outputs: dict, name: str):
    entry = outputs.get(name)
    if not isinstance(entry, dict) or "value" not in entry:
        raise InventoryError(f"output {name} is missing (is this the directory of a terraform/envs/* environment?)")
    return entry["value"]


def _host(name: str, spec) -> Host:
    fields = ("instance_id", "public_ip", "private_ip", "availability_zone")
    if not isinstance(spec, dict):
        raise InventoryError(f"ws_hosts.{name} is not an object")
    missing = [f for f in fields if not isinstance(spec.get(f), str) or not spec.get(f)]
    if missing:
        raise InventoryError(f"ws_hosts.{name} lacks {', '.join(missing)}")
    if not spec["instance_id"].startswith("i-"):
        raise InventoryError(f"ws_hosts.{name}.instance_id is not an instance id: {spec['instance_id']!r}")
    return Host(name, *(spec[f] for f in fields))
