#!/usr/bin/env bash
# loadtest against the real server: a smoke scenario with thresholds passes (exit 0, JSON
# says so); an impossible threshold fails with exit 1 and names itself; an unreachable
# server fails the gate; usage errors exit 2; a --workers run merges into one report; the
# channel scenarios (fanout over two workers, rooms) pass with no missing or duplicate
# publication and their delivery charts, an impossible delivery p99 fails by name; users
# told `goodbye` by a draining server stop sending, take their answers, close first and
# reconnect to its successor.
# needs: setup release
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"

LOADTEST=${LOADTEST_BIN:-$BIN_DIR/loadtest}
SERVER=${SERVER_BIN:-$BIN_DIR/concurrent-socket}
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(free_port)
METRICS_PORT=$(free_port)
URL="ws://127.0.0.1:$PORT"

# start_server: the server on $PORT with limits that leave the load alone. SHUTDOWN_TIMEOUT
# 5000: goodbyes over 2.5 s, each followed by a 1 s grace (the longest there is) in which
# the server keeps answering; a user that leaves politely closes long before that grace
# ends, even on a busy machine.
SHUTDOWN_TIMEOUT=5000
start_server() {
  env HOST=127.0.0.1 PORT="$PORT" METRICS_ADDR="127.0.0.1:$METRICS_PORT" SERVER_ID=ci-loadtest \
    RATE_LIMIT_MSGS_PER_SEC=0 MAX_CONNECTIONS_PER_IP=0 MAX_PENDING_HTTP_PER_IP=0 \
    SHUTDOWN_TIMEOUT=$SHUTDOWN_TIMEOUT \
    "$SERVER" >> "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_http "http://127.0.0.1:$PORT/ready" 20 || { tail -n 30 "$WORK/server.log"; die "server not ready"; }
}

# expect_exit CODE NAME CMD...: run CMD (stdout to $WORK/NAME.json) and check its exit code.
expect_exit() {
  local want=$1 name=$2 rc=0
  shift 2
  "$@" > "$WORK/$name.json" 2> "$WORK/$name.err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    cat "$WORK/$name.err"
    die "$name: exit $rc, expected $want"
  fi
}

# check NAME JQ-EXPRESSION: the report of NAME satisfies the expression.
check() {
  # head may cut jq short (SIGPIPE under pipefail): the verdict must still be printed.
  jq -e "$2" "$WORK/$1.json" > /dev/null || { jq . "$WORK/$1.json" | head -80 || true; die "$1: report fails: $2"; }
}

start_server

log "smoke scenario with thresholds"
expect_exit 0 smoke "$LOADTEST" smoke --url "$URL" --json --quiet --html "$WORK/smoke.html" \
  --max-connect-p95 2s --max-rtt-p95 1s --min-success-rate 95 --max-error-rate 1
check smoke '.schema == "loadtest-report/1" and .passed and .failed_thresholds == []'
check smoke '.connections.established == 20 and .connections.failed == 0'
check smoke '.messages.sent > 0 and .messages.answered == .messages.sent and .messages.failed == 0'
check smoke '[.thresholds[].status] == ["pass","pass","pass","pass"]'
[ "$(grep -c '<svg' "$WORK/smoke.html")" -ge 3 ] || die "HTML report lacks its charts"
if grep -Eq '(src|href)="https?:' "$WORK/smoke.html"; then die "HTML report refers to external assets"; fi
echo "RESULT smoke: exit 0, $(jq -r '"\(.connections.established) connections, \(.messages.answered)/\(.messages.sent) answered, connect p95 \(.latency.connect.p95_ms) ms, round trip p95 \(.latency.round_trip.p95_ms) ms"' "$WORK/smoke.json")"

log "an impossible threshold fails the run and is named"
expect_exit 1 impossible "$LOADTEST" smoke --url "$URL" --json --quiet --max-rtt-p95 1us
check impossible '.passed == false and .failed_thresholds == ["round_trip_p95"]'
grep -q 'FAILED: round_trip_p95' "$WORK/impossible.err" || die "the table does not name the failed threshold"
echo "RESULT impossible threshold: exit 1, failed_thresholds $(jq -c .failed_thresholds "$WORK/impossible.json")"

log "a closed port fails the gate"
CLOSED_PORT=$(free_port)
expect_exit 1 unreachable "$LOADTEST" smoke --url "ws://127.0.0.1:$CLOSED_PORT" --json --quiet --users 3 --duration 1s
check unreachable '.failed_thresholds == ["connect_p95","success_rate"] and .connections.failures.refused > 0'
echo "RESULT unreachable server: exit 1, failures $(jq -c .connections.failures "$WORK/unreachable.json")"

log "usage and setup errors exit 2"
expect_exit 2 usage "$LOADTEST" smoke --users 0
expect_exit 2 badurl "$LOADTEST" smoke --url "http://127.0.0.1:$PORT"
expect_exit 2 badsource "$LOADTEST" smoke --url "$URL" --source-ips 192.0.2.1
grep -q 'cannot be used' "$WORK/badsource.err" || die "an unusable source address is not explained"
echo "RESULT usage errors: exit 2 (--users 0, http:// URL, unusable source address)"

log "two worker processes, one merged report"
expect_exit 0 workers "$LOADTEST" custom --url "$URL" --users 400 --ramp 2s --duration 3s --rate 2 \
  --workers 2 --json --quiet
check workers '.settings.workers == 2 and .connections.established == 400 and .connections.peak_active == 400'
check workers '.messages.answered == .messages.sent and .latency.round_trip.count == .messages.answered'
echo "RESULT workers: $(jq -r '"\(.settings.workers) workers, \(.connections.peak_active) concurrent, \(.messages.answered) answered"' "$WORK/workers.json")"

log "channels: fanout over two workers, rooms, and an impossible delivery threshold"
expect_exit 0 fanout "$LOADTEST" fanout --url "$URL" --subscribers 300 --publish-rate 20 --ramp 2s \
  --duration 4s --workers 2 --json --quiet --html "$WORK/fanout.html"
check fanout '.passed and .settings.workers == 2 and .connections.established == 301'
check fanout '.channels.counts.publishes > 0 and .channels.counts.published == .channels.counts.publishes'
check fanout '.channels.counts.missing == 0 and .channels.counts.duplicates == 0 and .channels.counts.deliveries > 0'
check fanout '.channels.delivery_latency.count == .channels.counts.deliveries'
check fanout '[.thresholds[] | select(.name == "missing" or .name == "duplicates" or .name == "delivery_p99") | .status] == ["pass","pass","pass"]'
[ "$(grep -c '<svg' "$WORK/fanout.html")" -ge 4 ] || die "the fanout HTML report lacks its delivery charts"
echo "RESULT fanout: $(jq -r '"300 subscribers over 2 workers, \(.channels.counts.publishes) publishes, \(.channels.counts.deliveries) deliveries (\(.channels.deliveries_per_s)/s after the ramp), missing \(.channels.counts.missing), duplicates \(.channels.counts.duplicates), delivery p99 \(.channels.delivery_latency.p99_ms) ms"' "$WORK/fanout.json")"
expect_exit 0 rooms "$LOADTEST" rooms --url "$URL" --rooms 40 --room-size 5 --publish-rate 2 --ramp 2s \
  --duration 4s --json --quiet
check rooms '.passed and .connections.established == 200 and .channels.counts.missing == 0 and .channels.counts.duplicates == 0'
echo "RESULT rooms: $(jq -r '"40 rooms of 5, \(.channels.counts.publishes) publishes, \(.channels.counts.deliveries) deliveries, missing \(.channels.counts.missing), duplicates \(.channels.counts.duplicates), delivery p99 \(.channels.delivery_latency.p99_ms) ms"' "$WORK/rooms.json")"
expect_exit 1 slow_rooms "$LOADTEST" rooms --url "$URL" --rooms 2 --room-size 3 --ramp 1s --duration 2s \
  --max-delivery-p99 1us --json --quiet
check slow_rooms '.passed == false and .failed_thresholds == ["delivery_p99"]'
expect_exit 2 bad_rooms "$LOADTEST" rooms --rooms 0
expect_exit 2 bad_fanout "$LOADTEST" fanout --publish-rate 0

log "goodbye on shutdown: users leave politely and reconnect to the successor"
"$LOADTEST" custom --url "$URL" --users 30 --ramp 0s --duration 15s --rate 2 --json --quiet \
  > "$WORK/drain.json" 2> "$WORK/drain.err" &
LOAD_PID=$!
sleep 4
# Exit 0, after the last goodbye and within SHUTDOWN_TIMEOUT. Users that close first let the
# server exit as soon as its last goodbye is answered (about 2.5 s); users that wait for the
# server's close would hold it through its grace.
old_pid=$SERVER_PID
SERVER_PID=
drain_server "$old_pid" "$SHUTDOWN_TIMEOUT" 30 "old server"
start_server
drain_rc=0
wait "$LOAD_PID" || drain_rc=$?
[ "$drain_rc" -le 1 ] || { cat "$WORK/drain.err"; die "drain run: exit $drain_rc"; }
check drain '.disconnects.by_goodbye_reason == {"server_shutdown": 30}'
# Every user closed first (1000, echoed by the server) before the server's grace ended; a user
# that kept sending until the server closed would show 1001 here.
check drain '.disconnects.by_close_code == {"1000": 30}'
# Each user's one reconnection reached the successor (no other disconnect was counted above).
check drain '.connections.established == 60 and .connections.reconnects >= 30'
# Nothing sent was lost and nothing due went unsent: sends stopped at the goodbye.
check drain '.messages.failed == 0 and .messages.unsent == 0 and .messages.late == 0 and .messages.answered == .messages.sent'
echo "RESULT drain: $(jq -r '"goodbyes \(.disconnects.by_goodbye_reason), close codes \(.disconnects.by_close_code), reconnect attempts \(.connections.reconnects), established \(.connections.established), failures \(.connections.failures), messages failed \(.messages.failed)/\(.messages.sent)"' "$WORK/drain.json")"

# The successor, with no client left, exits 0 at once on SIGTERM.
successor=$SERVER_PID
SERVER_PID=
drain_server "$successor" "$SHUTDOWN_TIMEOUT" 0 successor
