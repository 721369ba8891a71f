#!/usr/bin/env bash
# Benchmarks concurrent-socket against the reference peers in bench/peers/ (Bun + Elysia, Node +
# ws), one after another on this machine, with loadtest as the client; prints a Markdown table
# of every figure side by side and as ratios (docs/benchmarks.md quotes its output). Each
# server first passes bench/peers/check.sh, so that no figure compares against a server that
# answers less of the protocol. bench/rounds.sh repeats the CPU and latency figures and prints
# their medians.
#
#   bench/run.sh                      # all three servers, all figures (about 50 minutes)
#   SERVERS="concurrent-socket elysia" bench/run.sh
#   FIGURES="echo latency" bench/run.sh   # a subset of the figures below
#   SERVERS="concurrent-socket elysia" FIGURES="fanout fanout_10k rooms chmem" bench/run.sh
#   SERVERS="concurrent-socket elysia" FIGURES="fanout redis_cross redis_rooms redis_fanout" bench/run.sh
#
# Figures, each on a freshly started server:
#   idle     RSS per idle connection at 10,000 connections (heartbeat 30 s)
#   hold     the most connections held for 30 s with a 5 s heartbeat (pings + heartbeats),
#            target 19,000; memory slope -> projections for 100,000 and 1,000,000
#   hold_1s  the same with a 1 s heartbeat (19,000 pings and heartbeats per second)
#   echo     closed-loop echo throughput (1,000 connections, 1 message in flight each) and
#            the server's CPU seconds per 100,000 messages (/proc/PID/stat); median of
#            ECHO_RUNS (3) runs, each on a fresh server
#   latency  p50/p99/p99.9 round trip at a fixed open-loop 20,000 messages/s (the run with
#            the median p99 of ECHO_RUNS), and the median CPU per 100,000 messages
#   churn    handshakes per second (200 users connecting, closing, reconnecting)
#   profile  perf: the kernel's share of the server's CPU under the echo load, and the share
#            spent receiving for the client (loopback runs it inside the server's send)
#   fanout fanout_10k rooms chmem syscalls
#            channels (protocol v1.1; bench/channels.sh, which says how): deliveries per
#            second, delivery latency and CPU per 100,000 deliveries for one channel of 1,000
#            and of 10,000 subscribers and for 2,000 rooms of 5 users, RSS per idle
#            connection with 2 subscriptions and per channel with full history, and system
#            calls per delivery under the 1,000-subscriber load. Skipped, with the reason,
#            for a server that does not speak channels (node-ws)
#   redis_cross redis_rooms redis_fanout
#            the Redis engine (issue 17; bench/redis.sh, which says how), each run on its own
#            redis-server: publish-to-receive latency, deliveries/s, the servers' CPU and
#            Redis's CPU per publication at 10,000 publications/s from publishers on one
#            process to subscribers on another (redis_cross) and with rooms spread over both
#            (redis_rooms); the fanout load with the Redis engine, and a saturating 500/s of it
#            with both engines (redis_fanout). concurrent-socket only, but for redis_fanout's
#            in-memory runs, which every channel server does
#   proxy    concurrent-socket alone, directly and through the real Traefik (issue 20): RSS per
#            idle WebSocket at 5,000 connections (server, Traefik), handshakes/s, closed-loop
#            echo msgs/s at 1,000 connections, CPU per message (server, Traefik), p99 at
#            20,000 msgs/s (bench/proxy.sh; not in the default set:
#            SERVERS=concurrent-socket FIGURES=proxy bench/run.sh)
#
# Environment: LOADTEST (target/release/loadtest), SERVER_BIN (target/release/concurrent-socket),
# OUT (results directory, default target/ci/bench), CHECK (yes; no skips the protocol check).
# The peers' node_modules are installed with `npm ci` from their lock files when missing.
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../ci/lib.sh"
# shellcheck source=bench/servers.sh
. "$REPO/bench/servers.sh"
# shellcheck source=bench/proxy.sh
. "$REPO/bench/proxy.sh"

LOADTEST=${LOADTEST:-$REPO/target/release/loadtest}
SERVERS=${SERVERS:-$ALL_SERVERS}
read -ra SERVER_LIST <<< "$SERVERS"
FIGURES=${FIGURES:-idle hold hold_1s echo latency churn profile fanout fanout_10k rooms chmem syscalls redis_cross redis_rooms redis_fanout}
ECHO_RUNS=${ECHO_RUNS:-3}
read -ra FIGURE_LIST <<< "$FIGURES"
OUT=${OUT:-$CI_DIR/bench}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR="$OUT/$STAMP"
mkdir -p "$RUN_DIR"
PID=

trap stop_server EXIT

[ -x "$LOADTEST" ] || die "$LOADTEST is missing: cargo build --release --workspace --bins"
for SERVER in "${SERVER_LIST[@]}"; do prepare_server "$SERVER"; done
[ "${CHECK:-yes}" = no ] || "$REPO/bench/peers/check.sh" "${SERVER_LIST[@]}"

PORT=$(free_port)
METRICS_PORT=$(free_port)
URL="ws://127.0.0.1:$PORT"

# start_server NAME HEARTBEAT_MS [VAR=VALUE...]: start NAME on $PORT with limits that do not
# interfere (and the extra settings given), output to SERVER_LOG ($RUN_DIR/NAME.log); sets PID
# (the server process itself, for /proc).
start_server() {
  local name=$1 heartbeat=$2 log=${SERVER_LOG:-$RUN_DIR/$1.log}
  shift 2
  launch "$name" "$log" PORT="$PORT" HOST=127.0.0.1 HEARTBEAT_INTERVAL="$heartbeat" \
    MAX_CONNECTIONS=25000 RATE_LIMIT_MSGS_PER_SEC=0 MAX_CONNECTIONS_PER_IP=0 \
    MAX_PENDING_HTTP_PER_IP=0 SERVER_ID="bench-$name" \
    SHUTDOWN_TIMEOUT=2000 METRICS_ADDR="127.0.0.1:$METRICS_PORT" LOG_LEVEL=warn "$@"
  wait_http "http://127.0.0.1:$PORT/health" 30 || {
    tail -20 "$log"
    # Who holds its ports: twice in 17 redis_cross runs a port was in use, by an unknown owner.
    ss -tanp "( sport = :$PORT or sport = :$METRICS_PORT )"
    die "$name did not start"
  }
  sleep 1
}

stop_server() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}

# rss_kib [PID]: the server's (or PID's) resident memory now, in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/${1:-$PID}/status"; }
# cpu_split [PID]: the user and the system CPU seconds (utime, stime) the server (or PID) has
# used so far, on one line.
cpu_split() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print $12 / hz, $13 / hz }' "/proc/${1:-$PID}/stat"
}
# cpu_seconds [PID]: CPU seconds (user + system) the server (or PID) has used so far.
cpu_seconds() { cpu_split "$@" | awk '{ print $1 + $2 }'; }
server_connections() { curl -fsS "http://127.0.0.1:$PORT/health" | jq -r .connections; }

# loadtest_run SCENARIO NAME ARGS...: run loadtest's SCENARIO (JSON to
# $RUN_DIR/SERVER-NAME.json); a failed threshold is data here, not an error.
# The client's own CPU seconds (workers included) go to SERVER-NAME.client-cpu.
loadtest_run() {
  local scenario=$1 name=$2 rc=0 TIMEFORMAT='{"user_s": %U, "system_s": %S, "wall_s": %R}'
  shift 2
  { time "$LOADTEST" "$scenario" --url "$URL" --quiet --json --timeout 10s "$@" \
    > "$RUN_DIR/$SERVER-$name.json" 2> "$RUN_DIR/$SERVER-$name.err"; } 2> "$RUN_DIR/$SERVER-$name.client-cpu" || rc=$?
  [ "$rc" -le 1 ] || { cat "$RUN_DIR/$SERVER-$name.err"; die "loadtest $name against $SERVER: exit $rc"; }
}

# load NAME ARGS...: loadtest_run of the v1 scenario `custom`.
load() { loadtest_run custom "$@"; }

# sample_memory FILE SECONDS: every second, "connections rss_kib" of the server.
sample_memory() {
  local file=$1 seconds=$2 i
  for ((i = 0; i < seconds; i++)); do
    echo "$(server_connections 2>/dev/null || echo 0) $(rss_kib)" >> "$file"
    sleep 1
  done
}

bench_idle() {
  start_server "$SERVER" 30000
  local before after
  before=$(rss_kib)
  load idle --users 10000 --ramp 10s --duration 25s --rate 0 &
  local load_pid=$!
  sleep 25
  after=$(rss_kib)
  local held
  held=$(server_connections)
  wait "$load_pid"
  stop_server
  jq -n --argjson before "$before" --argjson after "$after" --argjson held "$held" \
    '{rss_before_kib: $before, rss_at_10k_kib: $after, connections: $held,
      rss_per_connection_kib: (($after - $before) / $held)}' > "$RUN_DIR/$SERVER-idle-rss.json"
}

# hold_connections NAME HEARTBEAT_MS: 19,000 idle users for 30 s after a 20 s ramp, with
# the server's RSS and connection count sampled every second.
hold_connections() {
  local name=$1 heartbeat=$2
  start_server "$SERVER" "$heartbeat"
  local base
  base=$(rss_kib)
  load "$name" --users 19000 --ramp 20s --duration 30s --rate 0 --workers 2 &
  local load_pid=$!
  sample_memory "$RUN_DIR/$SERVER-$name-memory.txt" 48
  wait "$load_pid"
  stop_server
  echo "$base"
}

bench_hold_1s() {
  hold_connections hold-1s 1000 > /dev/null
}

bench_hold() {
  local base
  base=$(hold_connections hold 5000)
  # Least-squares slope of RSS over connections, from the samples above 1,000 connections.
  awk -v base="$base" '$1 > 1000 { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2; if ($1 > max) { max = $1; rss = $2 } }
    END { slope = (n * sxy - sx * sy) / (n * sxx - sx * sx); icpt = (sy - slope * sx) / n;
      printf "{\"base_rss_kib\": %d, \"max_connections_seen\": %d, \"rss_at_max_kib\": %d, \"slope_kib_per_connection\": %.3f, \"projected_100k_mib\": %.0f, \"projected_1m_mib\": %.0f}\n",
        base, max, rss, slope, (icpt + slope * 100000) / 1024, (icpt + slope * 1000000) / 1024 }' \
    "$RUN_DIR/$SERVER-hold-memory.txt" > "$RUN_DIR/$SERVER-hold-memory.json"
}

# measure_cpu NAME LOADTEST-ARGS...: a fresh server, one loadtest run, and the server's CPU
# seconds during it -> SERVER-NAME-cpu.json.
measure_cpu() {
  local name=$1 cpu0 cpu1
  shift
  start_server "$SERVER" 30000
  cpu0=$(cpu_seconds)
  load "$name" "$@"
  cpu1=$(cpu_seconds)
  stop_server
  jq -n --argjson c0 "$cpu0" --argjson c1 "$cpu1" --slurpfile r "$RUN_DIR/$SERVER-$name.json" \
    '$r[0] as $r | ([$r.timeline[] | select(.second > 3 and .second <= 22) | .answered]) as $hold |
     {cpu_seconds: ($c1 - $c0), answered: $r.messages.answered,
      msgs_per_s: (($hold | add) / ($hold | length)),
      cpu_s_per_100k: (($c1 - $c0) / $r.messages.answered * 100000)}' > "$RUN_DIR/$SERVER-$name-cpu.json"
}

# The median of each figure over the runs SERVER-NAME-1..N-cpu.json -> SERVER-NAME-cpu.json,
# with every run listed: a single run of the CPU figures varies by about 10 % here.
median_of_runs() {
  local name=$1
  jq -s '{msgs_per_s: (map(.msgs_per_s) | sort | .[length / 2 | floor]),
          cpu_s_per_100k: (map(.cpu_s_per_100k) | sort | .[length / 2 | floor]),
          runs: .}' "$RUN_DIR/$SERVER-$name"-[0-9]*-cpu.json > "$RUN_DIR/$SERVER-$name-cpu.json"
}

bench_echo() {
  local i
  for ((i = 1; i <= ECHO_RUNS; i++)); do
    measure_cpu "echo-$i" --users 1000 --ramp 2s --duration 20s --closed-loop 1 --payload-bytes 64
  done
  median_of_runs echo
}

bench_latency() {
  local i
  for ((i = 1; i <= ECHO_RUNS; i++)); do
    measure_cpu "latency-$i" --users 1000 --ramp 2s --duration 20s --rate 20 --payload-bytes 64
  done
  median_of_runs latency
}

# Where the server's CPU goes under the closed-loop echo load, from a perf profile: the
# share spent in the kernel, and the share spent in net_rx_action: the TCP receive
# processing of the *client's* socket, which loopback runs inside the server's own send
# (a server whose clients are on other hosts does not pay it). Skipped without perf.
bench_profile() {
  if ! command -v perf > /dev/null; then
    log "perf is not installed: profile skipped"
    return 0
  fi
  local data="$RUN_DIR/$SERVER-perf.data" perf_pid
  start_server "$SERVER" 30000
  perf record -q -F 499 -g -p "$PID" -o "$data" -- sleep 15 > /dev/null 2>&1 &
  perf_pid=$!
  load profile-load --users 1000 --ramp 2s --duration 20s --closed-loop 1 --payload-bytes 64
  wait "$perf_pid" || true
  stop_server
  perf_shares "$data" > "$RUN_DIR/$SERVER-profile.json"
}

# perf_shares DATA: from a `perf record -g` of the server, as JSON, the share of its CPU
# samples in the kernel and the share under net_rx_action: on loopback the receiving side of
# every packet the server sends (the client's TCP receive) runs inside the server's send, in
# a softirq charged to the server. Deletes DATA.
perf_shares() {
  local data=$1 kernel net_rx
  # Lines like "71.73%  [kernel.kallsyms]" and "29.25%  0.62%  [k] net_rx_action".
  kernel=$(perf report -i "$data" --no-children --sort dso -g none --stdio 2> /dev/null |
    awk '$2 == "[kernel.kallsyms]" && !seen++ {sub(/%/, "", $1); print $1}')
  net_rx=$(perf report -i "$data" --children --sort symbol -g none --stdio 2> /dev/null |
    awk '$3 == "[k]" && $4 == "net_rx_action" && !seen++ {sub(/%/, "", $1); print $1}')
  jq -n --argjson kernel "${kernel:-null}" --argjson net_rx "${net_rx:-null}" \
    '{kernel_pct: $kernel, peer_receive_pct: $net_rx}'
  rm -f "$data"
}

bench_churn() {
  start_server "$SERVER" 30000
  load churn --users 200 --ramp 0s --duration 15s --churn
  stop_server
}

# shellcheck source=bench/channels.sh
. "$REPO/bench/channels.sh"
# shellcheck source=bench/redis.sh
. "$REPO/bench/redis.sh"

log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo "cpu: $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel: $(uname -r)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "open files (hard): $(ulimit -Hn)"
  echo "node: $(node --version 2>/dev/null || echo none)"
  [ -x "$PEERS_DIR/elysia/node_modules/.bin/bun" ] && echo "bun: $("$PEERS_DIR/elysia/node_modules/.bin/bun" --version)"
  echo "concurrent-socket: $SERVER_BIN (tree at $(git -C "$REPO" log -1 --format='%h %s'))"
  echo "loadtest: $LOADTEST"
  echo "start: $(uptime)"
} > "$RUN_DIR/machine.txt"
for SERVER in "${SERVER_LIST[@]}"; do
  for figure in "${FIGURE_LIST[@]}"; do
    log "$SERVER: $figure (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$RUN_DIR/progress.log"
    "bench_$figure"
  done
done
echo "end: $(uptime)" >> "$RUN_DIR/machine.txt"
cat "$RUN_DIR/machine.txt"
# The proxy figure prints its own table (bench/proxy_table.py); the others make this one.
[ "$FIGURES" = proxy ] || python3 "$REPO/bench/table.py" "$RUN_DIR" "${SERVER_LIST[@]}" | tee "$RUN_DIR/table.md"
log "results in $RUN_DIR"
