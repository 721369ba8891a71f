"""The rollout against the real wsctl: what `wsctl status --json` prints and what `wsctl deploy`
exits with are wsctl's, not a stand-in's, so a change of wsctl's JSON or exit codes that the
rollout does not follow fails here. ssh runs the binary named by $WSCTL_BIN (CI: the release
build) with a state directory per host; aws and nixos-rebuild are stand-ins (stand_ins.py).
No systemd and no Traefik here: wsctl reports them unreachable, as it would on a broken host.
Without WSCTL_BIN the tests skip, saying so; under CI=true that is a failure."""

import fcntl
import json
import os
import socket
import subprocess

import pytest
from stand_ins import calls, make_env, run

WSCTL = os.environ.get("WSCTL_BIN")
if not WSCTL:
    if os.environ.get("CI") == "true":
        pytest.fail("WSCTL_BIN is not set: the contract tests against the real wsctl must run in CI", pytrace=False)
    pytest.skip("WSCTL_BIN is not set (the path of a built wsctl): contract tests against the real wsctl skipped",
                allow_module_level=True)

# The host is the argument before "--"; its wsctl state lives in $HOSTS_DIR/<ip>/state.
SSH = r'''#!/usr/bin/env bash
set -euo pipefail
echo "ssh $*" >> "$CALL_LOG"
while [ "$1" != "--" ]; do target=$1; shift; done; shift
dir="$HOSTS_DIR/${target#*@}"
case "$1" in
  wsctl) shift; exec env WSCTL_CONFIG="$dir/wsctl.json" WSCTL_STATE_DIR="$dir/state" \
    WSCTL_TRAEFIK_API="http://127.0.0.1:$CLOSED_PORT" "$WSCTL_BIN" "$@" ;;
  cat) cat "$dir/pins" ;;
  sh) cat > "$dir/pins" ;;
  *) echo "unexpected remote command: $*" >&2; exit 99 ;;
esac
'''
HOST_IP = "198.51.100.1"  # ws-prod-ws-01 in conftest.py
OLD = "github:acme/concurrent-socket/old"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def host(tmp_path, outputs):
    """ws-prod-ws-01 as a host that has blue recorded active and routed, both colours' ports
    closed: the state files of a real host, written by the real wsctl where it writes them."""
    dir_ = tmp_path / "hosts" / HOST_IP
    state = dir_ / "state"
    (state / "traefik").mkdir(parents=True)
    (state / "active").write_text("blue\n")
    routing = subprocess.run([WSCTL, "render-routing", "--active", "blue"], check=True, capture_output=True, text=True)
    (state / "traefik" / "routing.yml").write_text(routing.stdout)
    instances = {"blue": {"port": closed_port(), "metricsPort": closed_port()},
                 "green": {"port": closed_port(), "metricsPort": closed_port()}}
    (dir_ / "wsctl.json").write_text(json.dumps({"instances": instances}))
    (dir_ / "pins").write_text(json.dumps({"blue": OLD, "green": OLD}))
    return dir_


@pytest.fixture
def env(tmp_path, outputs):
    return make_env(tmp_path, outputs, SSH, WSCTL_BIN=WSCTL, CLOSED_PORT=str(closed_port()))


def test_a_held_deploy_lock_fails_the_host_at_deploy_naming_the_lock(env, outputs_file, host):
    lock_path = host / "state" / "deploy.lock"
    with open(lock_path, "w") as lock:
        # What a running `wsctl deploy` holds: an exclusive flock with its identity inside.
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 running `wsctl deploy --to green` since 2026-01-01T00:00:00Z")
        lock.flush()
        done = run(env, outputs_file, "--hosts", "ws-prod-ws-01")
    assert done.returncode == 1, done.stdout + done.stderr
    # The real status JSON was read: blue active, so green was the colour to deploy.
    assert "active blue; installing" in done.stdout
    assert ("FAILED    ws-prod-ws-01 at deploy: another deploy or rollback holds the host's lock (wsctl exit 3): "
            "nothing changed by this one: another deploy holds") in done.stdout
    assert "pid 4242 running `wsctl deploy --to green`" in done.stdout and "OUT of the load balancer" in done.stdout
    assert any(c.endswith("-- wsctl deploy --to green --json") for c in calls(env))


def test_a_refused_deploy_says_nothing_changed(env, outputs_file, host):
    # Traefik's API cannot be reached: wsctl refuses before it touches anything (exit 2).
    done = run(env, outputs_file, "--hosts", "ws-prod-ws-01")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED    ws-prod-ws-01 at deploy: wsctl refused the deploy (exit 2): nothing changed on the host: " in done.stdout
    assert (host / "state" / "active").read_text() == "blue\n", "a refused deploy changes nothing"


def test_a_host_with_no_active_colour_fails_at_status_still_in_service(env, outputs_file, host):
    (host / "state" / "active").unlink()
    done = run(env, outputs_file, "--hosts", "ws-prod-ws-01")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED    ws-prod-ws-01 at status: wsctl status reports no active colour (None)" in done.stdout
    assert "still in service" in done.stdout
    assert not any("deregister" in c for c in calls(env))


def test_the_status_json_is_what_the_rollout_reads(host):
    status = subprocess.run([WSCTL, "--config", str(host / "wsctl.json"), "--state-dir", str(host / "state"),
                             "--traefik-api", f"http://127.0.0.1:{closed_port()}", "status", "--json"],
                            capture_output=True, text=True, check=True)
    parsed = json.loads(status.stdout)
    assert parsed["active"] == "blue" and parsed["routing"] == "blue=1"
    assert [i["colour"] for i in parsed["instances"]] == ["blue", "green"]
    assert any("Traefik" in w or "8082" in w or "127.0.0.1" in w for w in parsed["warnings"]), parsed["warnings"]
