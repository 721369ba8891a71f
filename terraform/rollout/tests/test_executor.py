"""The rollout's own bookkeeping: step order, stopping after the first failed batch, the fleet
state it reports. ssh, aws and nixos-rebuild are replaced on PATH by small scripts that log
their arguments and answer like the hosts would (wsctl status, the colour pins, target health):
these tests check what fleet-rollout does with the answers, not AWS or the hosts themselves.
test_wsctl_contract.py runs the real wsctl behind ssh instead."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stand_ins import NEW, calls, make_env, run

OLD = "github:acme/concurrent-socket/old"

SSH = r'''#!/usr/bin/env bash
# ssh stand-in: the host is the argument before "--"; its state lives in $HOSTS_DIR/<ip>/.
set -euo pipefail
echo "ssh $*" >> "$CALL_LOG"
while [ "$1" != "--" ]; do target=$1; shift; done; shift
dir="$HOSTS_DIR/${target#*@}"; mkdir -p "$dir"
[ -e "$dir/active" ] || echo blue > "$dir/active"
[ -e "$dir/pins" ] || printf '{"blue": "%s", "green": "%s"}\n' "$OLD_REF" "$OLD_REF" > "$dir/pins"
case "$*" in
  "wsctl status --json") printf '{"active": "%s", "instances": []}\n' "$(cat "$dir/active")" ;;
  "cat /etc/nixos/colours.json") cat "$dir/pins" ;;
  "sh -c "*) cat > "$dir/pins" ;;
  "wsctl deploy --to "*)
    # The process that marks the deploy as running is the one that then waits, so a Ctrl-C
    # sent once the mark exists always reaches it (touch; sleep raced with the signal).
    if [ -e "$dir/slow-deploy" ]; then
      exec "$PYTHON" -c 'import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)' "$dir/deploying"
    fi
    if [ -e "$dir/fail-deploy" ]; then echo "deploy failed: green never became ready; rolled back to blue" >&2; exit 1; fi
    echo "$4" > "$dir/active" ;;
  *) echo "unexpected remote command: $*" >&2; exit 99 ;;
esac
'''


@pytest.fixture
def env(tmp_path, outputs):
    return make_env(tmp_path, outputs, SSH, OLD_REF=OLD, PYTHON=sys.executable)


def host_state(env, ip: str) -> tuple[str, dict]:
    dir_ = Path(env["HOSTS_DIR"]) / ip
    return (dir_ / "active").read_text().strip(), json.loads((dir_ / "pins").read_text())


def test_every_host_moves_to_its_idle_colour(env, outputs_file):
    done = run(env, outputs_file, "--max-unavailable", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT rollout: 4 done, 0 failed, 0 untouched" in done.stdout
    for n in range(1, 5):
        active, pins = host_state(env, f"198.51.100.{n}")
        assert active == "green"
        assert pins == {"blue": OLD, "green": NEW}, "the active colour's pin must not move"
    log = calls(env)
    first = [c for c in log if "198.51.100.1" in c or "i-00000000000000001" in c]
    kinds = [c.split()[0] + (" " + c.split()[4] if c.startswith("aws") else "") for c in first]
    assert kinds == ["ssh", "ssh", "aws deregister-targets", "aws wait",
                     "ssh", "nixos-rebuild", "ssh", "ssh",
                     "aws register-targets", "aws wait"]


def test_stops_after_the_first_failed_batch_and_reports_the_fleet(env, outputs_file):
    (Path(env["HOSTS_DIR"]) / "198.51.100.2").mkdir(parents=True)
    (Path(env["HOSTS_DIR"]) / "198.51.100.2" / "fail-deploy").touch()
    done = run(env, outputs_file, "--max-unavailable", "1")
    assert done.returncode == 1
    out = done.stdout
    assert "DONE      ws-prod-ws-01: green active (was blue), in service" in out
    assert ("FAILED    ws-prod-ws-02 at deploy: wsctl rolled the deploy back (exit 1): the old colour serves: "
            "deploy failed: green never became ready; rolled back to blue; OUT of the load balancer") in out
    assert "UNTOUCHED ws-prod-ws-03" in out and "UNTOUCHED ws-prod-ws-04" in out
    assert "RESULT rollout: 1 done, 1 failed, 2 untouched" in out
    assert "register-targets --target-group-arn" in out.split("== fleet state")[1], "the report says how to put the host back"
    log = calls(env)
    for untouched in ("198.51.100.3", "i-00000000000000003", "198.51.100.4", "i-00000000000000004"):
        assert not any(untouched in c for c in log), f"{untouched} must not be touched"
    assert not any("register-targets" in c and "i-00000000000000002" in c and "deregister" not in c for c in log), \
        "the failed host stays out of the load balancer"


def test_ctrl_c_stops_with_the_fleet_state(env, outputs_file):
    host_dir = Path(env["HOSTS_DIR"]) / "198.51.100.1"
    host_dir.mkdir(parents=True)
    (host_dir / "slow-deploy").touch()
    proc = subprocess.Popen([sys.executable, "-m", "fleet_rollout", "--flake-ref", NEW, "--outputs", str(outputs_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        for _ in range(600):  # until the first host's deploy runs (at most 60 s)
            if (host_dir / "deploying").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert (host_dir / "deploying").exists(), "the deploy never started"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "== interrupted during batch 1" in out
    assert "FAILED    ws-prod-ws-01 at deploy" in out and "OUT of the load balancer" in out
    assert "UNTOUCHED ws-prod-ws-02" in out and "RESULT rollout: 0 done, 1 failed, 3 untouched" in out


def test_refuses_to_start_when_a_host_is_unhealthy(env, outputs_file):
    health = json.loads(Path(env["TARGET_HEALTH"]).read_text())
    health["TargetHealthDescriptions"][2]["TargetHealth"]["State"] = "unhealthy"
    Path(env["TARGET_HEALTH"]).write_text(json.dumps(health))
    done = run(env, outputs_file)
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and "ws-prod-ws-03 (https: unhealthy)" in done.stderr
    assert not any("deregister" in c for c in calls(env))


def test_a_host_left_out_by_a_stopped_rollout_can_be_rolled_again(env, outputs_file):
    health = json.loads(Path(env["TARGET_HEALTH"]).read_text())
    del health["TargetHealthDescriptions"][1]  # ws-prod-ws-02, deregistered after a failure
    Path(env["TARGET_HEALTH"]).write_text(json.dumps(health))
    refused = run(env, outputs_file, "--hosts", "ws-prod-ws-03")
    assert refused.returncode == 1 and "ws-prod-ws-02 (https: not registered)" in refused.stderr
    done = run(env, outputs_file, "--hosts", "ws-prod-ws-02,ws-prod-ws-04")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT rollout: 2 done, 0 failed, 0 untouched" in done.stdout


def test_a_host_without_active_colour_fails_before_leaving_the_load_balancer(env, outputs_file):
    dir_ = Path(env["HOSTS_DIR"]) / "198.51.100.1"
    dir_.mkdir(parents=True)
    (dir_ / "active").write_text("null\n")
    done = run(env, outputs_file, "--hosts", "ws-prod-ws-01")
    assert done.returncode == 1
    assert "FAILED    ws-prod-ws-01 at status" in done.stdout and "still in service" in done.stdout
    assert not any("deregister" in c for c in calls(env))
