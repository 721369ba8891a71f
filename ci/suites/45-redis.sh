#!/usr/bin/env bash
# Issue 17's "Must show" against the real redis-server (started here on loopback ports, each
# scenario with its own dir and config), real release servers with BROKER=redis and loadtest's
# `rooms` scenario spread over them (every user publishes to its room and is subscribed to it;
# loadtest checks every offset of every subscription and that every acknowledged publication
# comes back to its publisher):
#  1. cross-process: 3 servers on one Redis, 300 users, more than 20,000 publications from
#     publishers on all three: every subscriber gets every publication once, in offset order;
#  2. Redis killed (-9) for 5 s under that load and restarted on its append-only file: no
#     server crashes, /ready stays 200 while broker_up is 0, publishes meanwhile are refused
#     (broker_unavailable) and none is acknowledged and lost; every subscriber has every
#     publication by delivery or recovery; the same with a Redis without persistence: new
#     epochs, `recovered: false`, and the counts say so;
#  3. a server stopped (SIGSTOP) longer than Redis tolerates a slow pub/sub reader
#     (`client-output-buffer-limit pubsub` lowered): Redis drops it; after SIGCONT it
#     resubscribes and repairs every gap or ends the subscriptions with insufficient_state;
#     no subscriber sees a silent gap;
#  4. 10,000 publications/s offered while 100 clients leave and subscribe again with
#     `recover` about every second: no loss, no duplicate at the history/live seam.
# Each prints its counts (RESULT lines) and fails when a guarantee breaks.
# needs: setup release
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/redis/lib.sh
. "$REPO/ci/redis/lib.sh"

LOADTEST=${LOADTEST_BIN:-$BIN_DIR/loadtest}
command -v redis-server > /dev/null || die "redis-server is not installed (ci/setup installs it)"
WORK=$(mktemp -d)
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do kill -CONT "$pid" 2> /dev/null || true; done
  stop_pids "${SERVER_PIDS[@]}" ${LOAD_PID:+"$LOAD_PID"}
  redis_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
LOAD_PID=

# Plenty of history for every gap these scenarios open (a room gets at most a few hundred
# publications in a scenario); positions checked every second; Redis commands time out
# after 1 s, so that a publish during an outage is refused quickly.
SERVER_ENV=(HISTORY_SIZE=2000 REDIS_TIMEOUT=1000 REDIS_POSITION_CHECK_INTERVAL=1000)
# The scenarios judge loss, order and duplicates; latency is printed, and bounded only as a
# sanity check (publications held by a stopped server arrive seconds late by design).
LOAD_FLAGS=(--json --quiet --max-delivery-p99 30s --max-connect-p95 10s)

# load NAME SCENARIO-ARGS...: loadtest rooms over every server, in the background (LOAD_PID);
# its report goes to $WORK/NAME.json.
load() {
  local name=$1 url args=()
  shift
  for url in "${WS_URLS[@]}"; do args+=(--url "$url"); done
  "$LOADTEST" rooms "${args[@]}" "${LOAD_FLAGS[@]}" "$@" > "$WORK/$name.json" 2> "$WORK/$name.err" &
  LOAD_PID=$!
}

# load_done NAME: waits for the run; dies unless it passed its thresholds (exit 0).
load_done() {
  local rc=0
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  [ "$rc" -eq 0 ] || { cat "$WORK/$1.err" >&2; die "$1: loadtest exit $rc (its table above names the failed threshold)"; }
}

# check NAME JQ-EXPRESSION: the report of NAME satisfies the expression.
check() {
  jq -e "$2" "$WORK/$1.json" > /dev/null || { jq '.channels, .connections, .messages' "$WORK/$1.json" >&2 || true; die "$1: report fails: $2"; }
}

# No publication lost, doubled or out of order, every publish answered, nothing the servers
# acknowledged lost.
check_accounting() {
  check "$1" '.passed and .failed_thresholds == []'
  check "$1" '.channels.counts | .missing == 0 and .duplicates == 0 and .out_of_order == 0 and .acked_lost == 0'
  check "$1" '.channels.counts | .publishes == .published + .publish_refused'
  check "$1" '.messages.protocol_errors == 0'
}

# counts NAME: the outcome counts of a run, for RESULT lines.
counts() {
  jq -r '.channels.counts as $c | "acknowledged \($c.published), refused \($c.publish_refused), delivered \($c.deliveries), insufficient_state \($c.insufficient_state), recovered \($c.recovered), not recovered \($c.not_recovered), epoch changes \($c.epoch_changes), acked not recovered \($c.acked_unrecovered), missing \($c.missing), duplicates \($c.duplicates), out of order \($c.out_of_order), acked lost \($c.acked_lost), delivery p99 \(.channels.delivery_latency.p99_ms) ms"' "$WORK/$1.json"
}

# every_server WHAT METRIC-REGEX OP N: dies unless `VALUE OP N` (e.g. -ge 1) holds for the
# metric on every server; prints the values.
every_server() {
  local what=$1 metric=$2 op=$3 n=$4 i v values=()
  for i in "${!METRICS_PORTS[@]}"; do
    v=$(metric_sum "$metric" "$i")
    values+=("$v")
    test "$v" "$op" "$n" || die "$what: server $((i + 1)): $metric = $v, expected $op $n"
  done
  echo "${values[*]}"
}

FILLED='websocket_broker_gap_repairs_total[{]outcome="filled"[}]'
UNREPAIRED='websocket_broker_gap_repairs_total[{]outcome="insufficient_state"[}]'

# A rooms run of 60 rooms of 5 users spread over the three servers (each room has users on
# every server), every user publishing 6.5/s: about 2,000 publications/s.
ROOMS=(--rooms 60 --room-size 5 --publish-rate 6.5 --ramp 3s)

log "1. three servers, one Redis: 300 subscribers, over 20,000 publications from all three"
redis_start "$WORK/redis-1" aof
servers_start "$WORK" 3 "${SERVER_ENV[@]}"
load cross "${ROOMS[@]}" --duration 12s
load_done cross
check_accounting cross
check cross '.connections.established == 300 and .channels.counts.published >= 20000 and .channels.counts.publish_refused == 0'
check cross '.channels.counts | .insufficient_state == 0 and .not_recovered == 0'
servers_alive cross
echo "RESULT cross-process: 3 servers, 300 subscribers: $(counts cross)"
servers_stop
redis_stop

# outage NAME PERSIST: 3 servers under the rooms load; Redis killed 6 s in, restarted 5 s
# later (on its AOF with PERSIST=aof, empty with none).
outage() {
  local name=$1 persist=$2 up reconnects
  redis_start "$WORK/redis-$name" "$persist"
  servers_start "$WORK" 3 "${SERVER_ENV[@]}"
  load "$name" "${ROOMS[@]}" --duration 22s
  sleep 6
  redis_kill9
  sleep 2
  servers_alive "$name: Redis down"
  up=$(every_server "$name: Redis down" websocket_broker_up -eq 0)
  echo "MEASURED $name: Redis killed; every server still ready, websocket_broker_up $up"
  sleep 3
  redis_restart
  load_done "$name"
  servers_alive "$name: after"
  up=$(every_server "$name: Redis back" websocket_broker_up -eq 1)
  reconnects=$(every_server "$name" websocket_broker_pubsub_reconnects_total -ge 1)
  echo "MEASURED $name: Redis back; websocket_broker_up $up, pub/sub reconnects $reconnects," \
    "broker errors $(every_server "$name" websocket_broker_errors_total -ge 0)," \
    "gap repairs filled $(every_server "$name" "$FILLED" -ge 0)," \
    "insufficient_state $(every_server "$name" "$UNREPAIRED" -ge 0)"
  check_accounting "$name"
  # Publishes during the outage were refused, as broker_unavailable.
  check "$name" '.channels.counts.publish_refused > 0 and (.messages.server_errors.broker_unavailable // 0) >= .channels.counts.publish_refused'
  servers_stop
  redis_stop
}

log "2a. Redis killed for 5 s under load, restarted on its append-only file"
outage outage-aof aof
# Nothing was lost: every epoch kept, every resubscription recovered.
check outage-aof '.channels.counts | .epoch_changes == 0 and .not_recovered == 0 and .acked_unrecovered == 0'
echo "RESULT Redis kill -9, restart on AOF: $(counts outage-aof)"

log "2b. the same with a Redis without persistence"
outage outage-none none
# Redis came back empty: new epochs, subscribers told (insufficient_state) and not recovered.
check outage-none '.channels.counts | .epoch_changes > 0 and .not_recovered > 0 and .insufficient_state > 0'
echo "RESULT Redis kill -9, restart without persistence: $(counts outage-none)"

log "3. a server stopped longer than Redis tolerates a slow pub/sub reader"
# A pub/sub client more than 64 kB behind is disconnected at once; 512-byte publications at
# ~2,000/s fill that (and the sockets' buffers) within a second or two of the stop.
redis_start "$WORK/redis-stop" aof "client-output-buffer-limit pubsub 64kb 0 0"
servers_start "$WORK" 3 "${SERVER_ENV[@]}"
load sigstop "${ROOMS[@]}" --duration 20s --payload-bytes 512
sleep 6
kill -STOP "${SERVER_PIDS[0]}"
sleep 6
kill -CONT "${SERVER_PIDS[0]}"
load_done sigstop
servers_alive sigstop
grep -q 'overcoming of output buffer limits' "$WORK/redis-stop/redis.log" ||
  die "sigstop: Redis did not drop the stopped server's pub/sub connection (no output buffer limit in its log)"
reconnects=$(metric_sum websocket_broker_pubsub_reconnects_total 0)
[ "$reconnects" -ge 1 ] || die "sigstop: the stopped server counted no pub/sub reconnect"
filled=$(metric_sum "$FILLED" 0)
ended=$(metric_sum "$UNREPAIRED" 0)
[ $((filled + ended)) -ge 1 ] || die "sigstop: the stopped server repaired no gap and ended no subscription"
check_accounting sigstop
echo "RESULT SIGSTOP 6 s, pub/sub dropped by Redis: stopped server's reconnects $reconnects, gaps filled $filled, ended insufficient_state $ended; $(counts sigstop)"
servers_stop
redis_stop

log "4. 10,000 publications/s while 100 clients subscribe with recover"
redis_start "$WORK/redis-seam" aof
servers_start "$WORK" 2 "${SERVER_ENV[@]}"
# 50 rooms of 2 users, each publishing 100/s (10,000/s offered); every subscriber leaves about
# every second, stays away up to half a second (some 50 publications of its room) and comes
# back with recover.
load seam --rooms 50 --room-size 2 --publish-rate 100 --ramp 2s --duration 10s --resubscribe-every 1s
load_done seam
check_accounting seam
check seam '.connections.established == 100 and .channels.counts.recovered >= 300'
check seam '.channels.counts | .not_recovered == 0 and .publish_refused == 0'
rates=$(jq -r '(.settings.channels.publish_for_ms / 1000) as $s | "\(.channels.counts.publishes / $s | floor)/s sent, \(.channels.counts.published / $s | floor)/s acknowledged"' "$WORK/seam.json")
echo "RESULT seam: 100 clients resubscribing with recover, 10,000 publications/s offered once all are connected; over the 10 s publishing window (2 s ramp included) $rates: $(counts seam)"
servers_stop
redis_stop
