# shellcheck shell=bash
# The Redis-engine figures of bench/run.sh (issue 17), sourced by it after bench/channels.sh
# and run like the other channel figures (CHANNEL_RUNS runs, the same ramp, hold, publishing
# and CPU windows, the same server settings; bench/channels.sh says how), through channel_run's
# hooks. Every run starts its own redis-server (Debian's, as ci/suites/45-redis.sh does, with
# ci/redis/lib.sh: loopback, a free port, its own data dir in the results directory) and the
# concurrent-socket processes with BROKER=redis on it, and stops them all at its end:
#
#   redis_cross   across processes: two servers, A and B, on one Redis; REDIS_CROSS_CHANNELS
#                 (1000) channels, each with one publisher on A publishing REDIS_CROSS_RATE (10)
#                 times a second and REDIS_CROSS_SUBSCRIBERS (5) subscribers on B (`loadtest
#                 fanout --channels --url B --publish-url A`): 10,000 publications/s and 50,000
#                 deliveries/s offered, every delivery from A through Redis to B
#   redis_rooms   the rooms figure's load (ROOMS (2000) rooms of 5, each user publishing once a
#                 second: 10,000 publications/s) with the users alternating between A and B
#                 (`--url A --url B`): every room has members on both, so each publication comes
#                 from Redis's pub/sub to both processes
#   redis_fanout  the fanout figure's load (one channel, FANOUT_SUBSCRIBERS subscribers, one
#                 publisher at FANOUT_RATE/s) on one server with BROKER=redis, beside the fanout
#                 figure's in-memory runs; then the same channel at FANOUT_MAX_RATE (500)/s
#                 (500,000 deliveries/s offered, more than this machine delivers) with the
#                 in-memory engine (every channel server: elysia too) and with the Redis engine:
#                 where neither delivers everything, deliveries per second rank them. A run
#                 that saturates misses publications and passes 1 s of p99: as in every
#                 channel run, a failed threshold is data (loadtest_run), not an error
#
# Redis runs with its append-only file fsynced once a second (`appendfsync everysec`): what
# docs/redis.md tells operators to run and the NixOS module runs, so Redis's CPU includes
# writing every publication to the file (the fsync runs in a thread of the same process, and
# counts). Automatic AOF rewrites are off: a rewrite is a fork whose cost follows the data set,
# not the publications, and whether one falls into a run's 15 s CPU window is chance.
# `maxmemory 1gb` with `noeviction`, the module's. Redis's CPU is its utime + stime
# (/proc/PID/stat) over the servers' CPU window, per publication Redis ran in those seconds
# (its PUBLISH calls: fewer than loadtest sent when the servers fall behind).
# The servers other than concurrent-socket have no Redis engine: their Redis runs are skipped.

# shellcheck source=ci/redis/lib.sh
. "$REPO/ci/redis/lib.sh"

REDIS_CROSS_CHANNELS=${REDIS_CROSS_CHANNELS:-1000}
REDIS_CROSS_SUBSCRIBERS=${REDIS_CROSS_SUBSCRIBERS:-5}
REDIS_CROSS_RATE=${REDIS_CROSS_RATE:-10}
FANOUT_MAX_RATE=${FANOUT_MAX_RATE:-500}
# Server A is the one on $PORT (PID); B listens on PORT_B (PID_B).
URL_A=$URL
PORT_B=$(free_port)
METRICS_PORT_B=$(free_port)
URL_B="ws://127.0.0.1:$PORT_B"
PID_B=
REDIS_RUNS=0

# has_redis_engine: true when $SERVER has a Redis engine and redis-server is installed; says
# why not otherwise.
has_redis_engine() {
  local why=
  [ "$SERVER" = concurrent-socket ] || why="$SERVER has no Redis engine"
  command -v redis-server > /dev/null || why="redis-server is not installed (ci/setup installs it)"
  [ -n "$why" ] || return 0
  log "$why: Redis runs skipped" | tee -a "$RUN_DIR/progress.log"
  return 1
}

# redis_up: a fresh redis-server for one run (REDIS_PORT, REDIS_PID, REDIS_DIR).
redis_up() {
  REDIS_RUNS=$((REDIS_RUNS + 1))
  redis_start "$RUN_DIR/redis-$REDIS_RUNS" everysec "maxmemory 1gb" "maxmemory-policy noeviction" \
    "auto-aof-rewrite-percentage 0"
}

# redis_down: stops it and deletes its append-only file (tens of MB a run); keeps its log.
redis_down() {
  redis_stop
  rm -rf "${REDIS_DIR:?}/appendonlydir"
}

# start_redis_server [PORT METRICS_PORT NAME]: start_server with BROKER=redis on the run's Redis
# (on $PORT, or on the given ports as server NAME: its SERVER_ID, output to $RUN_DIR/NAME.log).
start_redis_server() {
  local port=${1:-$PORT} metrics=${2:-$METRICS_PORT} name=${3:-$SERVER}
  PORT=$port METRICS_PORT=$metrics SERVER_LOG=$RUN_DIR/$name.log start_server "$SERVER" 30000 \
    BROKER=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_KEY_PREFIX=bench SERVER_ID="bench-$name"
}

# Hooks of channel_run: one server on Redis (PID), or two (A: PID, B: PID_B).
redis_one_start() {
  redis_up
  start_redis_server
}
redis_one_stop() {
  stop_server
  redis_down
}
redis_two_start() {
  redis_up
  start_redis_server "$PORT_B" "$METRICS_PORT_B" "$SERVER-b"
  PID_B=$PID
  start_redis_server
}
redis_two_stop() {
  stop_server
  PID=$PID_B
  stop_server
  PID_B=
  redis_down
}
two_servers_cpu() { echo "$(cpu_split) $(cpu_split "$PID_B")" | awk '{ print $1 + $3, $2 + $4 }'; }
# redis_stats: Redis's CPU seconds so far and the PUBLISHes it ran (one per publication, by
# publish.lua; its command statistics count the commands scripts call), as JSON.
redis_stats() {
  local calls
  calls=$(redis_cli info commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\),.*/\1/p')
  jq -n --argjson cpu "$(cpu_seconds "$REDIS_PID")" --argjson calls "${calls:-0}" \
    '{cpu_seconds: $cpu, publications: $calls}'
}

# What an interrupted figure leaves running: server B and Redis (run.sh stops A).
redis_cleanup() {
  PID=$PID_B
  stop_server
  redis_stop
}
trap 'stop_server; redis_cleanup' EXIT

bench_redis_cross() {
  has_redis_engine || return 0
  # shellcheck disable=SC2034 # channel_run's hooks, read there (dynamic scope)
  local CHANNEL_START=redis_two_start CHANNEL_STOP=redis_two_stop CHANNEL_CPU=two_servers_cpu
  local BROKER_STATS=redis_stats URL=$URL_B
  channel_runs redis-cross fanout --channels "$REDIS_CROSS_CHANNELS" \
    --subscribers "$REDIS_CROSS_SUBSCRIBERS" --publish-rate "$REDIS_CROSS_RATE" --publish-url "$URL_A"
}

bench_redis_rooms() {
  has_redis_engine || return 0
  # shellcheck disable=SC2034 # channel_run's hooks, read there (dynamic scope)
  local CHANNEL_START=redis_two_start CHANNEL_STOP=redis_two_stop CHANNEL_CPU=two_servers_cpu
  local BROKER_STATS=redis_stats
  channel_runs redis-rooms rooms --rooms "$ROOMS" --room-size 5 --publish-rate 1 --url "$URL_B"
}

bench_redis_fanout() {
  speaks_channels || return 0
  channel_runs fanout-max fanout --subscribers "$FANOUT_SUBSCRIBERS" --publish-rate "$FANOUT_MAX_RATE"
  has_redis_engine || return 0
  # shellcheck disable=SC2034 # channel_run's hooks, read there (dynamic scope)
  local CHANNEL_START=redis_one_start CHANNEL_STOP=redis_one_stop BROKER_STATS=redis_stats
  channel_runs redis-fanout-max fanout --subscribers "$FANOUT_SUBSCRIBERS" --publish-rate "$FANOUT_MAX_RATE"
  channel_runs redis-fanout fanout --subscribers "$FANOUT_SUBSCRIBERS" --publish-rate "$FANOUT_RATE"
}
