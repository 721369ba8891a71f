# shellcheck shell=bash
# Shared paths and helpers for ci/setup, ci/test-all and the suites in ci/suites/.
# Sourced, never run. Every suite may rely on these variables.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CI_DIR="$REPO/target/ci"          # everything CI builds or installs lives here
BIN_DIR="$CI_DIR/bin"             # concurrent-socket, concurrent-socket-faults, loadtest, wsctl
VENV="$CI_DIR/venv"               # python3 venv from ci/requirements.txt (traefik, checkov)
VENV27="$CI_DIR/venv27"           # python2.7 venv with Autobahn's wstest
TOOLS_DIR="$CI_DIR/tools/bin"     # cargo-installed tools (nixpkgs-fmt, deadnix)
NODE_DIR="$REPO/ci/node"          # node_modules for the browser and dashboard checks
LOG_DIR="$CI_DIR/logs"
# Material beside the repository on the project's own machines (../shared). Only optional
# extras may read it, each skipped with a printed reason when it is absent: ci/setup, the
# suites and bench/ need nothing outside the repository (ci/suites/01-standalone.sh runs
# setup and a suite in a clone that has none).
SHARED="${SHARED:-$REPO/../shared}"
export REPO CI_DIR BIN_DIR VENV VENV27 TOOLS_DIR NODE_DIR LOG_DIR SHARED
export PATH="$BIN_DIR:$TOOLS_DIR:$VENV/bin:$PATH"
export TF_CLI_CONFIG_FILE=/dev/null
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters ='

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FATAL: $*" >&2; exit 1; }

# retry N CMD...: run CMD up to N times, 5 s apart (package mirrors and the dpkg lock are busy at times).
retry() {
  local tries=$1 n=1; shift
  until "$@"; do
    [ "$n" -ge "$tries" ] && return 1
    log "retrying ($n/$tries): $*"; n=$((n + 1)); sleep 5
  done
}

# up_to_date STAMP INPUT: true when STAMP records INPUT's current content (an install from
# INPUT already ran), so that re-running an install does not redo it under running suites.
up_to_date() { [ -f "$1" ] && [ "$(cat "$1")" = "$(sha256sum < "$2")" ]; }
record() { sha256sum < "$2" > "$1"; }

# npm_ci DIR: installs DIR/node_modules from DIR/package-lock.json, unless already done.
npm_ci() {
  local stamp="$1/node_modules/.package-lock.sha256"
  up_to_date "$stamp" "$1/package-lock.json" && return 0
  log "npm ci in ${1#"$REPO"/}"
  (cd "$1" && retry 5 npm ci --no-audit --no-fund --loglevel=error) || return 1
  record "$stamp" "$1/package-lock.json"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now; with FREE_PORTS=LOW-HIGH
# one of those (a shared machine's share; picked at random, so two calls may collide).
free_port() {
  python3 -c 'import os, random, socket
low, high = map(int, os.environ.get("FREE_PORTS", "0-0").split("-"))
for port in random.sample(range(low, high + 1), high - low + 1):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    break
else:
    raise SystemExit("free_port: no free port in FREE_PORTS")'
}

# wait_http URL [SECONDS]: wait until URL answers 2xx.
wait_http() {
  local url=$1 deadline=$((SECONDS + ${2:-20}))
  until curl -fs -o /dev/null "$url"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# stop_pids PID...: end background processes a suite started, and reap them.
stop_pids() {
  local pid
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# check_drain_time NAME TOOK_MS SHUTDOWN_TIMEOUT_MS CONNECTIONS: dies unless a server that had
# CONNECTIONS clients open exited TOOK_MS after SIGTERM no earlier than its last goodbye was due
# (goodbyes are spread evenly over the first half of SHUTDOWN_TIMEOUT, one per connection: the
# last at (CONNECTIONS-1)/CONNECTIONS of that half) and no later than SHUTDOWN_TIMEOUT plus
# DRAIN_MARGIN_MS. Prints a RESULT line with the bounds when it passes.
DRAIN_MARGIN_MS=500
check_drain_time() {
  local name=$1 took=$2 timeout_ms=$3 connections=$4 last_goodbye
  last_goodbye=$((connections > 1 ? timeout_ms * (connections - 1) / (2 * connections) : 0))
  [ "$took" -ge "$last_goodbye" ] ||
    die "$name exited $took ms after SIGTERM, before its last goodbye was due at $last_goodbye ms"
  [ "$took" -le $((timeout_ms + DRAIN_MARGIN_MS)) ] ||
    die "$name exited $took ms after SIGTERM, later than SHUTDOWN_TIMEOUT $timeout_ms ms + $DRAIN_MARGIN_MS ms"
  echo "RESULT $name drain: ${took} ms with $connections clients, between its last goodbye due at" \
    "$last_goodbye ms and SHUTDOWN_TIMEOUT $timeout_ms ms + $DRAIN_MARGIN_MS ms"
}

# drain_server PID SHUTDOWN_TIMEOUT_MS CONNECTIONS NAME: SIGTERM to a server this shell started,
# with CONNECTIONS clients open; waits for it and dies unless it exits 0 within the bounds of
# check_drain_time.
drain_server() {
  local pid=$1 timeout_ms=$2 connections=$3 name=$4 start took status=0
  start=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid" || status=$?
  took=$((($(date +%s%N) - start) / 1000000))
  echo "MEASURED $name drain: SIGTERM to exit $took ms, exit status $status"
  [ "$status" -eq 0 ] || die "$name exited with status $status after SIGTERM, expected 0"
  check_drain_time "$name" "$took" "$timeout_ms" "$connections"
}
