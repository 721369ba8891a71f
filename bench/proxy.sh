# shellcheck shell=bash
# The `proxy` figure of bench/run.sh (issue 20; docs/benchmarks.md, "Direct or through
# Traefik"): the same concurrent-socket server measured with clients connecting to it directly
# (the direct data path) and through the real Traefik configured as the NixOS module
# configures it (nixos/lib/traefik.nix: base.yml with its routers, middlewares and health
# check, rate limits raised out of the way), in one run, on the same load:
#   - RSS per idle WebSocket at PROXY_IDLE_USERS (5,000) connections, server and Traefik
#   - handshakes per second (200 users connecting, closing, reconnecting)
#   - closed-loop echo at 1,000 connections: messages/s, and CPU per message of the server
#     and of Traefik (/proc/PID/stat)
#   - p99 round trip at an open-loop 20,000 messages/s (1,000 users x 20/s)
# Sourced by bench/run.sh (its helpers: start_server, load, rss_kib...); writes
# RUN_DIR/proxy.json, which bench/proxy_table.py prints. Needs nix-instantiate (to render
# base.yml from the NixOS lib) and Traefik from the CI venv (ci/setup).
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"

PROXY_IDLE_USERS=${PROXY_IDLE_USERS:-5000}

# proxy_traefik_files DIR: base.yml (the module's, one colour on the bench server's port)
# and routing.yml (everything to it), as the module and wsctl write them.
proxy_traefik_files() {
  local dir=$1 lib="(import $REPO/nixos/lib/traefik.nix { })"
  mkdir -p "$dir"
  nix-instantiate --eval --strict --json -E "$lib.base {
    instances = { blue = { port = $PORT; metricsPort = $METRICS_PORT; }; };
    rateLimits = { api = { average = 100000; burst = 100000; }; ws = { average = 100000; burst = 100000; }; };
  }" > "$dir/base.yml"
  nix-instantiate --eval --strict --json -E "$lib.seedRouting \"blue\"" > "$dir/routing.yml"
}

# proxy_start PATH: a fresh server; through Traefik, once Traefik routes to it again (its
# health check saw the previous server stop).
proxy_start() {
  start_server "$SERVER" 30000
  [ "$1" = traefik ] || return 0
  wait_http "http://127.0.0.1:$TRAEFIK_WEB/health" 30 || die "proxy: Traefik does not route to the server"
}

# proxy_idle PATH: RSS of the server and of Traefik before and with PROXY_IDLE_USERS idle
# connections.
proxy_idle() {
  local path=$1 server0 traefik0 server1 traefik1 held load_pid
  proxy_start "$path"
  server0=$(rss_kib) traefik0=$(rss_kib "$TRAEFIK_PID")
  load "proxy-$path-idle" --users "$PROXY_IDLE_USERS" --ramp 10s --duration 25s --rate 0 &
  load_pid=$!
  sleep 25
  server1=$(rss_kib) traefik1=$(rss_kib "$TRAEFIK_PID")
  held=$(server_connections)
  wait "$load_pid"
  stop_server
  jq -n --argjson s0 "$server0" --argjson s1 "$server1" --argjson t0 "$traefik0" --argjson t1 "$traefik1" \
    --argjson held "$held" --arg path "$path" \
    '{connections: $held, server_kib_per_connection: (($s1 - $s0) / $held)}
     + (if $path == "traefik" then {traefik_kib_per_connection: (($t1 - $t0) / $held)} else {} end)' \
    > "$RUN_DIR/proxy-$path-idle.json"
}

# proxy_cpu PATH NAME LOADTEST-ARGS...: a fresh server, one run, and the CPU seconds the
# server and Traefik used during it, per message answered.
proxy_cpu() {
  local path=$1 name=$2 s0 s1 t0 t1
  shift 2
  proxy_start "$path"
  s0=$(cpu_seconds) t0=$(cpu_seconds "$TRAEFIK_PID")
  load "proxy-$path-$name" "$@"
  s1=$(cpu_seconds) t1=$(cpu_seconds "$TRAEFIK_PID")
  stop_server
  jq -n --argjson s0 "$s0" --argjson s1 "$s1" --argjson t0 "$t0" --argjson t1 "$t1" --arg path "$path" \
    --slurpfile r "$RUN_DIR/$SERVER-proxy-$path-$name.json" \
    '$r[0] as $r | ([$r.timeline[] | select(.second > 3 and .second <= 22) | .answered]) as $hold |
     {msgs_per_s: (($hold | add) / ($hold | length)), answered: $r.messages.answered,
      p99_ms: $r.latency.round_trip.p99_ms,
      server_us_per_msg: (($s1 - $s0) / $r.messages.answered * 1e6)}
     + (if $path == "traefik" then {traefik_us_per_msg: (($t1 - $t0) / $r.messages.answered * 1e6)} else {} end)' \
    > "$RUN_DIR/proxy-$path-$name.json"
}

bench_proxy() {
  if [ "$SERVER" != concurrent-socket ]; then
    log "proxy: measures concurrent-socket direct and through Traefik; nothing to do for $SERVER"
    return 0
  fi
  command -v nix-instantiate > /dev/null || die "proxy: nix-instantiate renders Traefik's files from nixos/lib (ci/setup installs it)"
  # Traefik holds two descriptors per proxied connection.
  ulimit -n "$(ulimit -Hn)"
  proxy_traefik_files "$RUN_DIR/traefik-dynamic"
  start_traefik "$RUN_DIR/traefik" "$RUN_DIR/traefik-dynamic"
  local path URL
  for path in direct traefik; do
    # load() reads URL (bash's dynamic scope): the server itself, or Traefik's web entry point.
    # shellcheck disable=SC2034
    if [ "$path" = direct ]; then URL="ws://127.0.0.1:$PORT"; else URL="ws://127.0.0.1:$TRAEFIK_WEB"; fi
    proxy_idle "$path"
    proxy_start "$path"
    load "proxy-$path-churn" --users 200 --ramp 0s --duration 15s --churn
    stop_server
    proxy_cpu "$path" echo --users 1000 --ramp 2s --duration 20s --closed-loop 1 --payload-bytes 64
    proxy_cpu "$path" latency --users 1000 --ramp 2s --duration 20s --rate 20 --payload-bytes 64
  done
  [ -z "$(traefik_errors)" ] || die "proxy: Traefik reports broken configuration: $(traefik_errors)"
  stop_traefik
  local churn_direct churn_traefik
  churn_direct=$(jq '.connections.established_per_s' "$RUN_DIR/$SERVER-proxy-direct-churn.json")
  churn_traefik=$(jq '.connections.established_per_s' "$RUN_DIR/$SERVER-proxy-traefik-churn.json")
  jq -n --argjson hd "$churn_direct" --argjson ht "$churn_traefik" \
    --slurpfile di "$RUN_DIR/proxy-direct-idle.json" --slurpfile ti "$RUN_DIR/proxy-traefik-idle.json" \
    --slurpfile de "$RUN_DIR/proxy-direct-echo.json" --slurpfile te "$RUN_DIR/proxy-traefik-echo.json" \
    --slurpfile dl "$RUN_DIR/proxy-direct-latency.json" --slurpfile tl "$RUN_DIR/proxy-traefik-latency.json" \
    '{direct: {idle: $di[0], handshakes_per_s: $hd, echo: $de[0], latency: $dl[0]},
      traefik: {idle: $ti[0], handshakes_per_s: $ht, echo: $te[0], latency: $tl[0]}}' > "$RUN_DIR/proxy.json"
  python3 "$REPO/bench/proxy_table.py" "$RUN_DIR/proxy.json" | tee "$RUN_DIR/proxy-table.md"
}
