# shellcheck shell=bash
# The real components of the monitoring truth test, on free loopback ports. Sourced by
# ci/suites/40-monitoring.sh after ci/lib.sh and ci/traefik.sh; never run.
#
#   start_server COLOUR WORKDIR [VAR=VALUE...]  # sets <COLOUR>_PID, <COLOUR>_PORT, <COLOUR>_METRICS
#   render_traefik_config DYNAMIC_DIR           # base.yml + routing.yml (both colours, weight 1)
#   start_prometheus WORKDIR                    # sets PROM_PID, PROM_URL; scrapes both colours and Traefik
#   prom_value QUERY                            # first value of an instant query, or empty
#   stop_stack                                  # stops everything started here

STACK_PIDS=()

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
  local workdir=$1 port
  port=$(free_port)
  cat > "$workdir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $REPO/alerts/*.yml
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

stop_stack() {
  stop_pids "${STACK_PIDS[@]}"
  STACK_PIDS=()
  stop_traefik
}
