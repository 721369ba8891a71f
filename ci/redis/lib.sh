# shellcheck shell=bash
# The real Redis and several real servers sharing it, for ci/suites/45-redis.sh. Sourced after
# ci/lib.sh; never run.
#
#   redis_start DIR PERSIST [CONF-LINE...]   # redis-server on a free loopback port with its own
#                                            # dir and config (PERSIST: aof = append-only file
#                                            # fsynced before every reply, everysec = the
#                                            # same fsynced once a second, none = no persistence);
#                                            # sets REDIS_PORT, REDIS_PID, REDIS_DIR
#   redis_kill9                              # SIGKILL, reaped
#   redis_restart                            # the same config and dir again (its AOF, if any)
#   redis_stop                               # SHUTDOWN NOSAVE, or SIGKILL
#   servers_start DIR N [NAME=VALUE...]      # N servers with BROKER=redis on $REDIS_PORT; sets
#                                            # SERVER_PIDS, SERVER_PORTS, METRICS_PORTS, WS_URLS
#   servers_alive WHAT                       # dies unless every server runs and /ready answers 200
#   servers_stop                             # SIGTERM each; dies unless each exits 0
#   metric_sum NAME_REGEX INDEX              # sum of the samples of server INDEX matching it
#
# Every process here is started by this shell and ended by its PID.

REDIS_PID=
SERVER_PIDS=()
SERVER_PORTS=()
METRICS_PORTS=()
WS_URLS=()

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_launch() {
  redis-server "$REDIS_DIR/redis.conf" > /dev/null 2>&1 &
  REDIS_PID=$!
  local deadline=$((SECONDS + 20))
  until [ "$(redis_cli ping 2> /dev/null)" = PONG ]; do
    kill -0 "$REDIS_PID" 2> /dev/null || { tail -n 20 "$REDIS_DIR/redis.log" >&2; die "redis-server exited at start"; }
    [ "$SECONDS" -lt "$deadline" ] || die "redis-server did not answer PING within 20 s"
    sleep 0.05
  done
  # Serving only once its append-only file is loaded.
  until [[ $(redis_cli info persistence 2> /dev/null) == *"loading:0"* ]]; do
    [ "$SECONDS" -lt "$deadline" ] || die "redis-server still loading after 20 s"
    sleep 0.05
  done
}

redis_start() {
  REDIS_DIR=$1
  local persist=$2 line
  shift 2
  mkdir -p "$REDIS_DIR"
  REDIS_PORT=$(free_port)
  {
    echo "bind 127.0.0.1"
    echo "port $REDIS_PORT"
    echo "dir $REDIS_DIR"
    echo "logfile $REDIS_DIR/redis.log"
    echo "save \"\""
    case $persist in
      # fsync before each reply: an acknowledged publish is on disk when the server acks it.
      aof) echo "appendonly yes"; echo "appendfsync always" ;;
      # What docs/redis.md recommends and the NixOS module runs (bench/redis.sh).
      everysec) echo "appendonly yes"; echo "appendfsync everysec" ;;
      none) echo "appendonly no" ;;
      *) die "redis_start: PERSIST is aof, everysec or none, not $persist" ;;
    esac
    for line in "$@"; do echo "$line"; done
  } > "$REDIS_DIR/redis.conf"
  redis_launch
}

redis_kill9() {
  kill -KILL "$REDIS_PID"
  wait "$REDIS_PID" 2> /dev/null || true
  REDIS_PID=
}

redis_restart() { redis_launch; }

redis_stop() {
  [ -n "$REDIS_PID" ] || return 0
  redis_cli shutdown nosave > /dev/null 2>&1 || kill -KILL "$REDIS_PID" 2> /dev/null || true
  wait "$REDIS_PID" 2> /dev/null || true
  REDIS_PID=
}

servers_start() {
  local dir=$1 count=$2 i port metrics
  shift 2
  SERVER_PIDS=() SERVER_PORTS=() METRICS_PORTS=() WS_URLS=()
  for i in $(seq 1 "$count"); do
    port=$(free_port)
    metrics=$(free_port)
    env HOST=127.0.0.1 PORT="$port" METRICS_ADDR="127.0.0.1:$metrics" SERVER_ID="ci-redis-$i" \
      BROKER=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_KEY_PREFIX=ci45 \
      RATE_LIMIT_MSGS_PER_SEC=0 FRAME_RATE_LIMIT=0 MAX_CONNECTIONS_PER_IP=0 MAX_PENDING_HTTP_PER_IP=0 \
      "$@" "${SERVER_BIN:-$BIN_DIR/concurrent-socket}" > "$dir/server-$i.log" 2>&1 &
    SERVER_PIDS+=("$!")
    SERVER_PORTS+=("$port")
    METRICS_PORTS+=("$metrics")
    WS_URLS+=("ws://127.0.0.1:$port")
  done
  for i in "${!SERVER_PORTS[@]}"; do
    wait_http "http://127.0.0.1:${SERVER_PORTS[$i]}/ready" 20 || {
      tail -n 30 "$dir/server-$((i + 1)).log" >&2
      die "server $((i + 1)) did not become ready"
    }
  done
}

servers_alive() {
  local i
  for i in "${!SERVER_PIDS[@]}"; do
    kill -0 "${SERVER_PIDS[$i]}" 2> /dev/null || die "$1: server $((i + 1)) is gone (crashed)"
    curl -fs -o /dev/null "http://127.0.0.1:${SERVER_PORTS[$i]}/ready" ||
      die "$1: server $((i + 1)) does not answer /ready with 200"
  done
}

servers_stop() {
  local i status
  for i in "${!SERVER_PIDS[@]}"; do kill -TERM "${SERVER_PIDS[$i]}" 2> /dev/null || true; done
  for i in "${!SERVER_PIDS[@]}"; do
    status=0
    wait "${SERVER_PIDS[$i]}" || status=$?
    [ "$status" -eq 0 ] || die "server $((i + 1)) exited with status $status after SIGTERM"
  done
  SERVER_PIDS=()
}

metric_sum() {
  curl -fs "http://127.0.0.1:${METRICS_PORTS[$2]}/metrics" |
    awk -v re="^($1)[ {]" '$0 ~ re { sum += $NF } END { printf "%d\n", sum }'
}
