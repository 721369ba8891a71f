# shellcheck shell=bash
# The real components of the monitoring truth test, on free loopback ports. Sourced by
# ci/suites/40-monitoring.sh after ci/lib.sh and ci/traefik.sh; never run.
#
#   start_server COLOUR WORKDIR [VAR=VALUE...]  # sets <COLOUR>_PID, <COLOUR>_PORT, <COLOUR>_METRICS
#   render_traefik_config DYNAMIC_DIR           # base.yml + routing.yml (both colours, weight 1)
#   start_prometheus WORKDIR [RULES_DIR]        # sets PROM_PID, PROM_URL; scrapes both colours and
#                                               # Traefik, loads RULES_DIR/*.yml (default alerts/)
#   prom_value QUERY                            # first value of an instant query, or empty
#   start_stack_with_traffic WORKDIR [RULES_DIR]  # all of the above with STACK_SETTINGS, then the
#                                               # truth test's traffic through Traefik
#   stop_stack                                  # stops everything started here

STACK_PIDS=()
STACK_SHUTDOWN_TIMEOUT=4000
# Both colours' settings: a cap the traffic pushes them past, heartbeats and scrapes every
# second, limits that bad input trips.
STACK_SETTINGS=(MAX_CONNECTIONS=15 HEARTBEAT_INTERVAL=1000 RATE_LIMIT_MSGS_PER_SEC=50
  MAX_MESSAGE_BYTES=4096 "SHUTDOWN_TIMEOUT=$STACK_SHUTDOWN_TIMEOUT" TRUSTED_PROXIES=127.0.0.1)

# start_server COLOUR WORKDIR [VAR=VALUE...]: the real server binary as one colour.
start_server() {
  local colour=$1 workdir=$2; shift 2
  local port metrics upper pid
  port=$(free_port)
  metrics=$(free_port)
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$colour")
  env HOST=127.0.0.1 PORT="$port" METRICS_ADDR="127.0.0.1:$metrics" SERVER_ID="$colour" "$@" \
    "$BIN_DIR/concurrent-socket" > "$workdir/$colour.log" 2>&1 &
  pid=$!
  STACK_PIDS+=("$pid")
  printf -v "${upper}_PID" '%s' "$pid"
  printf -v "${upper}_PORT" '%s' "$port"
  printf -v "${upper}_METRICS" '%s' "$metrics"
  if ! wait_http "http://127.0.0.1:$port/ready" 20 || ! wait_http "http://127.0.0.1:$metrics/metrics" 5; then
    cat "$workdir/$colour.log" >&2
    die "the $colour server did not become ready"
  fi
}

# Traefik's dynamic configuration as the NixOS module writes it, rendered by the pure-Nix
# nixos/lib/traefik.nix, with loopback ports and rate limits a load test does not trip.
render_traefik_config() {
  local dir=$1
  mkdir -p "$dir"
  nix-instantiate --eval --strict --json -E "(import $REPO/nixos/lib/traefik.nix { }).base {
      instances = { blue = { port = $BLUE_PORT; }; green = { port = $GREEN_PORT; }; };
      rateLimits = { api = { average = 10000; burst = 10000; }; ws = { average = 10000; burst = 10000; }; };
    }" > "$dir/base.yml" 2> "$dir/nix.err" || { cat "$dir/nix.err" >&2; die "rendering base.yml failed"; }
  nix-instantiate --eval --strict --json -E \
    "(import $REPO/nixos/lib/traefik.nix { }).routing { weights = { blue = 1; green = 1; }; }" \
    > "$dir/routing.yml" 2> "$dir/nix.err" || { cat "$dir/nix.err" >&2; die "rendering routing.yml failed"; }
}

# A real Prometheus (Debian's) loading every rule file of alerts/ as the NixOS module does,
# scraping and evaluating every second.
start_prometheus() {
  local workdir=$1 rules_dir=${2:-$REPO/alerts} port
  port=$(free_port)
  cat > "$workdir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $rules_dir/*.yml
scrape_configs:
  - job_name: concurrent-socket
    static_configs:
      - targets: ["127.0.0.1:$BLUE_METRICS"]
        labels: {colour: blue}
      - targets: ["127.0.0.1:$GREEN_METRICS"]
        labels: {colour: green}
  - job_name: traefik
    static_configs:
      - targets: ["127.0.0.1:$TRAEFIK_API"]
YAML
  promtool check config "$workdir/prometheus.yml" > /dev/null || die "prometheus.yml does not check"
  prometheus --config.file="$workdir/prometheus.yml" --storage.tsdb.path="$workdir/tsdb" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn > "$workdir/prometheus.log" 2>&1 &
  PROM_PID=$!
  STACK_PIDS+=("$PROM_PID")
  PROM_URL="http://127.0.0.1:$port"
  wait_http "$PROM_URL/-/ready" 30 || { cat "$workdir/prometheus.log" >&2; die "prometheus did not start"; }
}

# prom_value QUERY: the value of the first series of an instant query (empty if none).
prom_value() {
  curl -fsS "$PROM_URL/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

# wait_prom QUERY SECONDS: until QUERY returns a series.
wait_prom() {
  local deadline=$((SECONDS + $2))
  until [ -n "$(prom_value "$1")" ]; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# start_stack_with_traffic WORKDIR [RULES_DIR]: blue and green with STACK_SETTINGS, Traefik in
# front, Prometheus (rules from RULES_DIR); then through Traefik `loadtest smoke` and
# ci/monitoring/traffic.py's bad input and excess connections (WORKDIR/smoke.json,
# WORKDIR/traffic.json); returns once Prometheus has scraped all of it.
start_stack_with_traffic() {
  local workdir=$1 rules_dir=${2:-$REPO/alerts} rc=0 broken
  [ -x "$BIN_DIR/concurrent-socket" ] || die "$BIN_DIR/concurrent-socket not built"
  [ -x "$BIN_DIR/loadtest" ] || die "$BIN_DIR/loadtest not built"
  log "starting blue, green, Traefik and Prometheus"
  start_server blue "$workdir" "${STACK_SETTINGS[@]}"
  start_server green "$workdir" "${STACK_SETTINGS[@]}"
  render_traefik_config "$workdir/dynamic"
  start_traefik "$workdir/traefik" "$workdir/dynamic"
  wait_http "http://127.0.0.1:$TRAEFIK_WEB/ready" 20 || die "Traefik routes nothing to the servers"
  broken=$(traefik_errors)
  [ -z "$broken" ] || die "Traefik reports broken configuration: $broken"
  start_prometheus "$workdir" "$rules_dir"
  wait_prom 'up{job="concurrent-socket"} == 1' 30 || die "Prometheus scrapes no server"

  log "traffic through Traefik: loadtest smoke, then bad input and excess connections"
  "$BIN_DIR/loadtest" smoke --url "ws://127.0.0.1:$TRAEFIK_WEB" --users 16 --json > "$workdir/smoke.json" \
    2> "$workdir/smoke.log" || rc=$?
  # 0 or 1 (a threshold failed) both mean the load ran; judging the server is not this test's job.
  [ "$rc" -le 1 ] || { cat "$workdir/smoke.log" >&2; die "loadtest smoke could not run (exit $rc)"; }
  jq -r '"MEASURED loadtest smoke through Traefik: \(.connections.established)/\(.connections.attempts) connections, \(.messages.answered) messages answered, round trip p95 \(.latency.round_trip.p95_ms) ms, thresholds passed: \(.passed)"' \
    "$workdir/smoke.json"
  "$VENV/bin/python" "$REPO/ci/monitoring/traffic.py" load "ws://127.0.0.1:$TRAEFIK_WEB" \
    --connections 20 --messages 20 --over-cap 40 --max-message-bytes 4096 | tee "$workdir/traffic.json"
  # Scrapes and rule evaluations after the last request; every 5xx counted by Traefik.
  sleep 4
  wait_prom 'sum(traefik_router_requests_total{router="ws@file", code=~"5.."}) > 0' 10 ||
    die "Traefik counted no 5xx on the ws router: the over-cap clients did not reach the cap"
}

stop_stack() {
  stop_pids "${STACK_PIDS[@]}"
  STACK_PIDS=()
STACK_SHUTDOWN_TIMEOUT=4000
# Both colours' settings: a cap the traffic pushes them past, heartbeats and scrapes every
# second, limits that bad input trips.
STACK_SETTINGS=(MAX_CONNECTIONS=15 HEARTBEAT_INTERVAL=1000 RATE_LIMIT_MSGS_PER_SEC=50
  MAX_MESSAGE_BYTES=4096 "SHUTDOWN_TIMEOUT=$STACK_SHUTDOWN_TIMEOUT" TRUSTED_PROXIES=127.0.0.1)
  stop_traefik
}
