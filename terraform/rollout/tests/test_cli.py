"""The fleet-rollout command end to end where it needs no AWS and no host: --dry-run and the
errors of bad usage and bad inventories (exit 2), run as an operator runs it."""

import json
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "fleet-rollout"
REF = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"


KINDS = [  # (text in the command, kind), first match wins
    ("colours.json.new", "write pins"), ("cat /etc/nixos/colours.json", "read pins"),
    ("wsctl status", "status"), ("wsctl deploy --to <idle>", "deploy"), ("nixos-rebuild switch", "nixos-rebuild"),
    ("deregister-targets", "deregister"), ("wait target-deregistered", "wait deregistered"),
    ("register-targets", "register"), ("wait target-in-service", "wait in service"),
]


def step_kind(command: str) -> str:
    return next(kind for text, kind in KINDS if text in command)


def rollout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_dry_run_prints_batches_and_commands(outputs_file):
    done = rollout("--flake-ref", REF, "--outputs", str(outputs_file), "--max-unavailable", "2", "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "4 of 4 hosts, 2 batch(es) of at most 2" in out
    assert "batch 1: ws-prod-ws-01 (eu-west-1a), ws-prod-ws-02 (eu-west-1b)" in out
    assert "batch 2: ws-prod-ws-03 (eu-west-1a), ws-prod-ws-04 (eu-west-1b)" in out
    steps = [line.split(". ", 1)[1] for line in out.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert [step_kind(step) for step in steps] == [
        "status", "read pins",
        "deregister", "wait deregistered",
        "write pins", "nixos-rebuild", "deploy", "status",
        "register", "wait in service",
    ]
    assert "dry run: nothing was changed" in out


def test_dry_run_of_chosen_hosts(outputs_file):
    done = rollout("--flake-ref", REF, "--outputs", str(outputs_file), "--hosts", "ws-prod-ws-04", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "to 1 of 4 hosts, 1 batch(es)" in done.stdout and "batch 1: ws-prod-ws-04 (eu-west-1b)" in done.stdout


def test_too_many_unavailable_is_refused(outputs_file):
    done = rollout("--flake-ref", REF, "--outputs", str(outputs_file), "--max-unavailable", "4", "--dry-run")
    assert done.returncode == 2
    assert "would take all 4 hosts out of the load balancer" in done.stderr


def test_bad_flake_ref_is_refused(outputs_file):
    done = rollout("--flake-ref", "latest", "--outputs", str(outputs_file), "--dry-run")
    assert done.returncode == 2 and "is not a flake reference" in done.stderr


def test_bad_inventory_is_refused(tmp_path, outputs):
    del outputs["region"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    done = rollout("--flake-ref", REF, "--outputs", str(path), "--dry-run")
    assert done.returncode == 2 and "output region is missing" in done.stderr
    done = rollout("--flake-ref", REF, "--outputs", str(tmp_path / "none.json"), "--dry-run")
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_unknown_host_is_refused(outputs_file):
    done = rollout("--flake-ref", REF, "--outputs", str(outputs_file), "--hosts", "nope", "--dry-run")
    assert done.returncode == 2 and "unknown host(s): nope" in done.stderr
