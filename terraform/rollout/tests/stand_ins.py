"""What the rollout's tests put on PATH instead of aws and nixos-rebuild (and ssh, which each
test module brings): scripts that log their arguments to $CALL_LOG and answer like AWS would
(describe-target-health from $TARGET_HEALTH). Also how the tests run fleet-rollout."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROLLOUT_DIR = Path(__file__).resolve().parents[1]
NEW = "github:acme/concurrent-socket/new"

AWS = r'''#!/usr/bin/env bash
set -euo pipefail
echo "aws $*" >> "$CALL_LOG"
case "$*" in
  *describe-target-health*) cat "$TARGET_HEALTH" ;;
esac
'''

NIXOS_REBUILD = r'''#!/usr/bin/env bash
set -euo pipefail
echo "nixos-rebuild $*" >> "$CALL_LOG"
'''


def make_env(tmp_path: Path, outputs: dict, ssh: str, **extra: str) -> dict:
    """The environment of a rollout whose ssh is the script `ssh`, every host healthy in the
    load balancer; `extra` variables are added for the scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"ssh": ssh, "aws": AWS, "nixos-rebuild": NIXOS_REBUILD}.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    hosts = outputs["ws_hosts"]["value"]
    health = {"TargetHealthDescriptions": [
        {"Target": {"Id": h["instance_id"], "Port": 80}, "TargetHealth": {"State": "healthy"}} for h in hosts.values()
    ]}
    (tmp_path / "health.json").write_text(json.dumps(health))
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALL_LOG": str(tmp_path / "calls.log"),
        "HOSTS_DIR": str(tmp_path / "hosts"),
        "TARGET_HEALTH": str(tmp_path / "health.json"),
        "PYTHONPATH": str(ROLLOUT_DIR),
        **extra,
    }


def run(env: dict, outputs_file: Path, *args: str) -> subprocess.CompletedProcess:
    # This Python directly rather than the fleet-rollout wrapper: a pyenv shim for python3
    # would put its own bin directory, with a real aws, ahead of the stand-ins on PATH.
    return subprocess.run([sys.executable, "-m", "fleet_rollout", "--flake-ref", NEW, "--outputs", str(outputs_file), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def calls(env: dict) -> list[str]:
    return Path(env["CALL_LOG"]).read_text().splitlines()
