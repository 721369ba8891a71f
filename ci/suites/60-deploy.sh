#!/usr/bin/env bash
# wsctl's blue/green deploys end to end (docs/deploy.md): real systemd as PID 1 of a
# container with both colours as ws@ units, the real Traefik routing to them, reconnecting
# clients sending traffic through Traefik during every deploy.
#
# Here: the files Traefik reads (base.yml rendered by the NixOS lib nixos/lib/traefik.nix,
# with test overrides; `wsctl render-routing` checked against the lib's routing), the
# container and its units. The scenarios run in the container's network namespace, where
# the instances listen on their loopback ports: ci/deploy/scenarios.sh.
# KEEP_WORK=1 keeps the work directory (traffic and wsctl reports, Traefik's logs).
# needs: setup release faults
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/systemd/lib.sh
. "$REPO/ci/systemd/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (systemd-nspawn)"
for bin in concurrent-socket concurrent-socket-faults loadtest wsctl; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin missing: run ci/test-all deploy (it builds them)"
done

WORK=$(mktemp -d /tmp/ci-deploy.XXXXXX)
export WORK
cleanup() {
  stop_systemd
  if [ -n "${KEEP_WORK:-}" ]; then log "KEEP_WORK: reports, logs and state kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# nix_traefik EXPR: evaluate EXPR with `lib` bound to nixos/lib/traefik.nix, print JSON.
nix_traefik() {
  nix-instantiate --eval --strict --json -E "let lib = import $REPO/nixos/lib/traefik.nix { }; in $1" 2> "$WORK/nix.err" ||
    { cat "$WORK/nix.err" >&2; die "nix-instantiate failed on: $1"; }
}

# Same JSON value, whatever the key order and layout.
same_json() { [ "$(jq -S . < "$1")" = "$(jq -S . < "$2")" ]; }

log "routing.yml: wsctl render-routing against the NixOS lib"
for case in "--active blue|lib.seedRouting \"blue\"" "--active green|lib.seedRouting \"green\"" \
  "--weights blue=3,green=1|lib.routing { weights = { blue = 3; green = 1; }; }" \
  "--weights blue=2,green=2|lib.routing { weights = { blue = 1; green = 1; }; }"; do
  args=${case%%|*} expr=${case#*|}
  # shellcheck disable=SC2086 # the flags are words
  "$BIN_DIR/wsctl" render-routing $args > "$WORK/wsctl.json"
  nix_traefik "$expr" > "$WORK/nix.json"
  same_json "$WORK/wsctl.json" "$WORK/nix.json" ||
    die "wsctl render-routing $args differs from the lib's $expr: $(cat "$WORK/wsctl.json") vs $(cat "$WORK/nix.json")"
done
log "render-routing matches the lib for the seeds and two splits"

# base.yml as the module renders it, with two test overrides: rate limits far above the
# suite's few hundred connections a second from one address, and a health check every
# 500 ms so that a dead colour (connection refused) leaves the rotation quickly. Its timeout
# stays generous: on a busy 2-core machine one /ready slower than the timeout takes the only
# routed colour out of rotation, and the 503s that follow trip the circuit breaker.
mkdir -p "$WORK/state/traefik"
nix_traefik 'lib.base {
  rateLimits = { api = { average = 5000; burst = 5000; }; ws = { average = 5000; burst = 5000; }; };
  healthCheck = { interval = "500ms"; timeout = "2s"; };
}' > "$WORK/state/traefik/base.yml"
"$BIN_DIR/wsctl" render-routing --active blue > "$WORK/state/traefik/routing.yml"
echo blue > "$WORK/state/active"

# The state directory is shared: wsctl inside the container writes routing.yml where the
# Traefik of the scenarios (a host binary) watches it.
boot_systemd ci-deploy --bind="$WORK/state:/var/lib/concurrent-socket"
install_units blue green
# Test adaptation: every client reaches the instances from Traefik's 127.0.0.1 (in production
# TRUSTED_PROXIES makes the per-IP limit apply to the real client addresses), so the limit
# of 1000 connections per IP is off here.
export TEST_SETTINGS=MAX_CONNECTIONS_PER_IP=0
for colour in blue green; do
  echo "$TEST_SETTINGS" | IN tee -a "/etc/concurrent-socket/$colour.env" > /dev/null
done
IN systemctl start ws-metrics@blue.socket ws@blue.socket ws@blue.service
wait_active ws@blue.service

IN_NET env CONTAINER_LEADER="$SYSTEMD_LEADER" bash "$REPO/ci/deploy/scenarios.sh"
