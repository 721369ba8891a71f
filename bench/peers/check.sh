#!/usr/bin/env bash
# Checks that each named server speaks protocol v1 as concurrent-socket does: starts it on a
# free loopback port with the settings check.py asks for, runs check.py against it (its last
# check sends SIGTERM and watches the drain), and requires exit status 0. About 15 s a server.
#
#   bench/peers/check.sh                       # concurrent-socket elysia node-ws
#   bench/peers/check.sh elysia                # one of them
#
# Needs ci/setup's Python venv (check.py uses its websockets), and for concurrent-socket a
# release build (SERVER_BIN, default target/release/concurrent-socket).
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../../ci/lib.sh"
# shellcheck source=bench/servers.sh
. "$REPO/bench/servers.sh"

[ -x "$VENV/bin/python" ] || die "$VENV/bin/python is missing: run ci/setup (check.py uses its websockets)"
CHECK="$VENV/bin/python $REPO/bench/peers/check.py"
mapfile -t check_env < <($CHECK --env)
[ $# -gt 0 ] || read -ra servers <<< "$ALL_SERVERS"
[ $# -eq 0 ] || servers=("$@")
LOGS=$(mktemp -d)
PID=
trap 'stop_pids $PID; rm -rf "$LOGS"' EXIT

failed=()
for server in "${servers[@]}"; do
  prepare_server "$server"
  port=$(free_port)
  launch "$server" "$LOGS/$server.log" PORT="$port" HOST=127.0.0.1 METRICS_ADDR="127.0.0.1:$(free_port)" \
    LOG_LEVEL=warn "${check_env[@]}"
  wait_http "http://127.0.0.1:$port/health" 30 || { cat "$LOGS/$server.log"; die "$server did not start"; }
  ok=yes
  $CHECK --server "$server" --port "$port" --pid "$PID" || ok=no
  # The drain check ended it with SIGTERM; one that still runs (not a zombie) has failed.
  if [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$PID/stat" 2> /dev/null || echo gone)" != Z ] &&
    kill -0 "$PID" 2> /dev/null; then
    log "$server still runs after the drain check"
    ok=no
    kill "$PID"
  fi
  rc=0
  wait "$PID" 2> /dev/null || rc=$?
  PID=
  if [ "$rc" -ne 0 ]; then
    log "$server exited with status $rc after SIGTERM (expected 0)"
    ok=no
  fi
  if [ $ok = no ]; then
    failed+=("$server")
    sed 's/^/    | /' "$LOGS/$server.log" | tail -n 20
  fi
done
[ ${#failed[@]} -eq 0 ] || die "protocol check failed: ${failed[*]}"
log "protocol check passed: ${servers[*]}"
