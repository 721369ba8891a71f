#!/usr/bin/env bash
# wsctl's blue/green deploys end to end (docs/deploy.md): real systemd as PID 1 of a
# container with both colours as ws@ units, the real Traefik routing to them, reconnecting
# clients sending traffic through Traefik during every deploy.
#
# Here: the files Traefik reads (base.yml rendered by the NixOS lib nixos/lib/traefik.nix,
# with test overrides; `wsctl render-routing` checked against the lib's routing), the
# container and its units. The scenarios run in the container's network namespace, where
# the instances listen on their loopback ports: ci/deploy/scenarios.sh.
# Both data paths (docs/deploy.md): through Traefik, and direct, where the colours share a
# reuseport address in the container and wsctl flips them in the kernel (with a test that
# queues connections on blue's listener and flips), each in a container of its own;
# DEPLOY_PATHS (default "traefik direct") picks them.
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

TOP=$(mktemp -d /tmp/ci-deploy.XXXXXX)
WORK=$TOP
export WORK
cleanup() {
  stop_systemd
  if [ -n "${KEEP_WORK:-}" ]; then log "KEEP_WORK: reports, logs and state kept in $TOP"; else rm -rf "$TOP"; fi
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

# The direct path's shared address in the container (its own network namespace).
DIRECT_PORT=3000
export DIRECT_PORT

# run_path PATH: a container with blue running and serving on that data path, then the
# scenarios (ci/deploy/scenarios.sh) in its network namespace.
run_path() {
  local path=$1
  WORK=$TOP/$path
  mkdir -p "$WORK/state/traefik"
  # base.yml as the module renders it, with two test overrides: rate limits far above the
  # suite's few hundred connections a second from one address, and a health check every
  # 500 ms so that a dead colour (connection refused) leaves the rotation quickly. Its timeout
  # stays generous: on a busy 2-core machine one /ready slower than the timeout takes the only
  # routed colour out of rotation, and the 503s that follow trip the circuit breaker. On the
  # direct path Traefik keeps only the HTTP routes, as the module configures it.
  nix_traefik "lib.base {
    rateLimits = { api = { average = 5000; burst = 5000; }; ws = { average = 5000; burst = 5000; }; };
    healthCheck = { interval = \"500ms\"; timeout = \"2s\"; };
    websocketRoute = $([ "$path" = traefik ] && echo true || echo false);
  }" > "$WORK/state/traefik/base.yml"
  "$BIN_DIR/wsctl" render-routing --active blue > "$WORK/state/traefik/routing.yml"
  echo blue > "$WORK/state/active"

  # The state directory is shared: wsctl inside the container writes routing.yml where the
  # Traefik of the scenarios (a host binary) watches it.
  boot_systemd "ci-deploy-$path" --bind="$WORK/state:/var/lib/concurrent-socket"
  install_units blue green
  # Test adaptation: every client reaches the instances from 127.0.0.1 (in production
  # TRUSTED_PROXIES, or PROXY protocol on the direct path, makes the per-IP limit apply to the
  # real client addresses), so the limit of 1000 connections per IP is off here, and so is the
  # cap on connections waiting for their upgrade from one address.
  TEST_SETTINGS=$'MAX_CONNECTIONS_PER_IP=0\nMAX_PENDING_HTTP_PER_IP=0'
  for colour in blue green; do
    echo "$TEST_SETTINGS" | IN tee -a "/etc/concurrent-socket/$colour.env" > /dev/null
  done
  local public=ws@blue.socket
  if [ "$path" = direct ]; then
    # What the NixOS module sets on the direct path: the shared address of every colour's
    # ws-public@ socket, and the kernel moving a closing listener's queue to the others.
    IN mkdir -p /etc/systemd/system/ws-public@.socket.d
    printf '%s\n' "[Socket]" "ListenStream=127.0.0.1:$DIRECT_PORT" |
      IN tee /etc/systemd/system/ws-public@.socket.d/listen.conf > /dev/null
    IN systemctl daemon-reload
    IN_NET sysctl -qw net.ipv4.tcp_migrate_req=1
    public="ws@blue.socket ws-public@blue.socket"
  fi
  # shellcheck disable=SC2086 # unit names are words
  IN systemctl start ws-metrics@blue.socket $public ws@blue.service
  wait_active ws@blue.service

  IN_NET env CONTAINER_LEADER="$SYSTEMD_LEADER" WORK="$WORK" TEST_SETTINGS="$TEST_SETTINGS" DATA_PATH="$path" \
    bash "$REPO/ci/deploy/scenarios.sh"
  stop_systemd
}

for path in ${DEPLOY_PATHS:-traefik direct}; do
  log "deploy scenarios on the $path data path"
  run_path "$path"
done
