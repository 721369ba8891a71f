#!/usr/bin/env bash
# What a publication costs the servers on the Redis engine's cross-process path (issue 17's
# redis_cross, scaled down), in figures that do not move with the load of a shared host, so
# that two builds compare a few per cent apart: user-space instructions (valgrind's callgrind,
# as bench/instructions.sh counts them) and system calls (perf stat's syscall tracepoints),
# per publication, for server A (the publishers': the publish script call) and server B (the
# subscribers': the pub/sub connection and the fan-out).
#
#   bench/redis-cost.sh [SERVER_BINARY...]              # default: target/release/concurrent-socket
#   ENGINE=memory bench/redis-cost.sh [SERVER_BINARY...] # the same load on one in-memory server
#   MEASURE=instructions|syscalls|both (both)
#   PROFILE=DIR ...    # keeps callgrind's profiles there (callgrind.a|b.BINARY.RUN) for
#                      # callgrind_annotate --inclusive=yes
#
# The load: CHANNELS (200) channels, each with one publisher on A publishing RATE (10) times a
# second and SUBSCRIBERS (2) subscribers on B (`loadtest fanout --channels --url B
# --publish-url A`), on one redis-server (Debian's, started as bench/redis.sh starts it:
# ci/redis/lib.sh, append-only file with `appendfsync everysec`). ENGINE=memory runs publishers
# and subscribers on one server with BROKER=memory (its figures are under A). Each figure is
# the difference of two runs, SHORT_SECONDS (4) and LONG_SECONDS (12) long, divided by the difference of their
# acknowledged publications: start-up, connects, subscribes and shutdown cancel out.
# Instructions: both servers under callgrind at once (Redis and loadtest run natively); a
# server under valgrind is about 50 times slower, so keep RATE x CHANNELS small. System calls:
# native runs, each server under `perf stat` (every thread), total and the busiest kinds.
# Loopback ports come from FREE_PORTS (LOW-HIGH, ci/lib.sh's free_port), any free one without.
# Needs valgrind, perf, redis-server (ci/setup installs it) and a release build of loadtest.
set -euo pipefail

# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../ci/lib.sh"
# shellcheck source=ci/redis/lib.sh
. "$REPO/ci/redis/lib.sh"

LOADTEST=${LOADTEST:-$REPO/target/release/loadtest}
ENGINE=${ENGINE:-redis}
MEASURE=${MEASURE:-both}
CHANNELS=${CHANNELS:-200}
SUBSCRIBERS=${SUBSCRIBERS:-2}
RATE=${RATE:-10}
SHORT_SECONDS=${SHORT_SECONDS:-4}
LONG_SECONDS=${LONG_SECONDS:-12}
# The system calls perf counts besides their total (raw_syscalls:sys_enter).
SYSCALLS="read recvfrom write sendto writev epoll_wait futex sched_yield"
for tool in valgrind perf redis-server jq; do
  command -v "$tool" > /dev/null || die "$tool is not installed"
done
[ -x "$LOADTEST" ] || die "$LOADTEST is missing: cargo build --release -p loadtest"
[ $# -gt 0 ] || set -- "$REPO/target/release/concurrent-socket"
case $ENGINE in redis | memory) ;; *) die "ENGINE must be redis or memory (got '$ENGINE')" ;; esac
case $MEASURE in instructions | syscalls | both) ;; *) die "MEASURE: instructions, syscalls or both" ;; esac

WORK=$(mktemp -d)
PIDS=()
RUNS=0
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  redis_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

# launch NAME TOOL BINARY ENV...: a server (its port in $WORK/NAME.port) under TOOL (callgrind
# or perf, whose counts go to $WORK/NAME.log or $WORK/NAME.perf), its output in $WORK/NAME.log;
# sets LAUNCHED to the PID to signal at the end.
launch() {
  local name=$1 tool=$2 binary=$3 port metrics wrapper events call
  shift 3
  case $tool in
    callgrind)
      local out=/dev/null
      [ -z "${PROFILE:-}" ] || out="$PROFILE/callgrind.$name.$(basename "$binary").$RUNS"
      wrapper=(valgrind --tool=callgrind "--callgrind-out-file=$out")
      ;;
    perf)
      events=raw_syscalls:sys_enter
      for call in $SYSCALLS; do events+=",syscalls:sys_enter_$call"; done
      wrapper=(perf stat -x ',' -e "$events" -o "$WORK/$name.perf" --)
      ;;
  esac
  port=$(free_port)
  metrics=$(free_port)
  echo "$port" > "$WORK/$name.port"
  env PORT="$port" HOST=127.0.0.1 HEARTBEAT_INTERVAL=30000 MAX_CONNECTIONS=25000 \
    RATE_LIMIT_MSGS_PER_SEC=0 MAX_CONNECTIONS_PER_IP=0 MAX_PENDING_HTTP_PER_IP=0 \
    METRICS_ADDR="127.0.0.1:$metrics" SERVER_ID="cost-$name" LOG_LEVEL=warn "$@" \
    "${wrapper[@]}" "$binary" > "$WORK/$name.log" 2>&1 &
  LAUNCHED=$!
  PIDS+=("$LAUNCHED")
}

# wait_port NAME: until the server listens (valgrind starts slowly: a minute on a busy host).
wait_port() {
  local port
  port=$(cat "$WORK/$1.port")
  for _ in $(seq 1200); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && return 0
    sleep 0.1
  done
  die "server $1 did not listen within 2 minutes: $(tail -n 5 "$WORK/$1.log")"
}

# stop PID: SIGTERM to a server (or to perf stat's child, which perf then reports on).
stop() {
  local pid=$1 child
  child=$(pgrep -P "$pid" || true)
  kill -TERM "${child:-$pid}" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
}

# run BINARY TOOL SECONDS: one run, every server under TOOL (callgrind or perf); the
# publications acknowledged go to $WORK/published.
run() {
  RUNS=$((RUNS + 1))
  local binary=$1 tool=$2 duration=$3 pid_a pid_b='' broker=() url_a url_b
  if [ "$ENGINE" = redis ]; then
    redis_start "$WORK/redis" everysec "maxmemory 1gb" "maxmemory-policy noeviction" \
      "auto-aof-rewrite-percentage 0"
    broker=(BROKER=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_KEY_PREFIX=cost)
    launch b "$tool" "$binary" "${broker[@]}"
    pid_b=$LAUNCHED
  fi
  launch a "$tool" "$binary" "${broker[@]}"
  pid_a=$LAUNCHED
  wait_port a
  url_a="ws://127.0.0.1:$(cat "$WORK/a.port")"
  url_b=$url_a
  if [ -n "$pid_b" ]; then
    wait_port b
    url_b="ws://127.0.0.1:$(cat "$WORK/b.port")"
  fi
  "$LOADTEST" fanout --url "$url_b" --publish-url "$url_a" --quiet --json --timeout 30s \
    --channels "$CHANNELS" --subscribers "$SUBSCRIBERS" --publish-rate "$RATE" --ramp 5s \
    --publish-after-ramp --duration "$duration" --max-connect-p95 60s --max-delivery-p99 60s \
    > "$WORK/load.json" 2> "$WORK/load.err" || [ $? -eq 1 ] ||
    die "loadtest failed: $(tail -n 5 "$WORK/load.err")"
  stop "$pid_a"
  [ -z "$pid_b" ] || stop "$pid_b"
  PIDS=()
  [ "$ENGINE" = memory ] || { redis_stop; rm -rf "$WORK/redis"; }
  jq .channels.counts.published "$WORK/load.json" > "$WORK/published"
}

# figures SERVER TOOL: what TOOL counted in that server's run, as "name=count ..." (Ir for
# callgrind; the system calls for perf).
figures() {
  local log=$WORK/$1.log
  case $2 in
    callgrind) echo "Ir=$(awk '/Collected :/ {print $NF}' "$log")" ;;
    perf) awk -F, '/sys_enter/ { n = $3; sub(/^.*sys_enter_?/, "", n); printf "%s=%s ", (n == "" ? "syscalls" : n), $1 }' "${log%.log}.perf" ;;
  esac
}

# per_publication SHORT_FIGURES LONG_FIGURES SHORT_PUBS LONG_PUBS: each figure's difference
# divided by the publications' difference.
per_publication() {
  awk -v short="$1" -v long="$2" -v ps="$3" -v pl="$4" 'BEGIN {
    n = split(short, s, " "); split(long, l, " ")
    for (i = 1; i <= n; i++) {
      split(s[i], a, "="); split(l[i], b, "=")
      printf "%s %.2f  ", a[1], (b[2] - a[2]) / (pl - ps)
    }
  }'
}

# measure BINARY TOOL: the two runs and the per-publication figures of each server.
measure() {
  local binary=$1 tool=$2 short_pubs long_pubs servers=(a) server
  [ "$ENGINE" = memory ] || servers=(a b)
  declare -A short long
  run "$binary" "$tool" "${SHORT_SECONDS}s"
  short_pubs=$(cat "$WORK/published")
  for server in "${servers[@]}"; do short[$server]=$(figures "$server" "$tool"); done
  run "$binary" "$tool" "${LONG_SECONDS}s"
  long_pubs=$(cat "$WORK/published")
  for server in "${servers[@]}"; do long[$server]=$(figures "$server" "$tool"); done
  [ "$long_pubs" -gt "$short_pubs" ] || die "the long run acknowledged no more publications"
  # Publishing stops 2 s before the end: a run that acknowledged fewer fell behind (a busy
  # host), and its start-up and backlog no longer cancel out.
  local offered=$((CHANNELS * RATE * (LONG_SECONDS - 2)))
  [ "$long_pubs" -ge $((offered * 98 / 100)) ] ||
    log "WARNING: the long run acknowledged $long_pubs of $offered publications: the servers fell behind, figures unreliable" >&2
  for server in "${servers[@]}"; do
    echo "$binary ($ENGINE, $tool) server ${server^^} per publication:" \
      "$(per_publication "${short[$server]}" "${long[$server]}" "$short_pubs" "$long_pubs")" \
      "($short_pubs and $long_pubs publications)"
  done
}

for binary in "$@"; do
  [ "$MEASURE" = syscalls ] || measure "$binary" callgrind
  [ "$MEASURE" = instructions ] || measure "$binary" perf
done
