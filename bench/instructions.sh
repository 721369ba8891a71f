#!/usr/bin/env bash
# User-space instructions per echoed message (or per channel delivery), counted by valgrind's
# callgrind: a figure that, unlike CPU seconds, does not move with the load of a shared host,
# so it can compare two builds of the server a few per cent apart. It leaves out the kernel's
# work (the system calls, which bench/run.sh's CPU figures include).
#
#   bench/instructions.sh [SERVER_BINARY...]    # default: target/release/concurrent-socket
#   LOAD=fanout bench/instructions.sh [SERVER_BINARY...]
#
# For each binary: two runs under callgrind of the same load, 2 s and 8 s long (SHORT and LONG:
# longer on a busy host, where the short run may answer nothing); the difference
# of their instruction totals divided by the difference of their messages answered leaves out
# start-up, handshakes and shutdown. LOAD=echo (the default): a closed loop of 50 users with
# 64-byte payloads. LOAD=fanout: one channel of 100 subscribers and one publisher at 20
# publications/s (64-byte padding), publishing from the end of a 2 s ramp; per delivery.
# Needs valgrind (apt-get install valgrind) and a release build of loadtest.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
LOADTEST=${LOADTEST:-$REPO/target/release/loadtest}
PORT=${PORT:-9321}
command -v valgrind > /dev/null || { echo "valgrind is not installed" >&2; exit 1; }
[ -x "$LOADTEST" ] || { echo "$LOADTEST is missing: cargo build --release -p loadtest" >&2; exit 1; }
[ $# -gt 0 ] || set -- "$REPO/target/release/concurrent-socket"
LOAD=${LOAD:-echo}
case $LOAD in
  echo) COUNT=.messages.answered UNIT=message UNITS=messages ;;
  fanout) COUNT=.channels.counts.deliveries UNIT=delivery UNITS=deliveries ;;
  *) echo "LOAD must be echo or fanout (got '$LOAD')" >&2; exit 1 ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One run: prints "<messages answered> <instructions executed>".
run() {
  local binary=$1 duration=$2 pid
  env PORT="$PORT" HOST=127.0.0.1 HEARTBEAT_INTERVAL=30000 MAX_CONNECTIONS=25000 \
    RATE_LIMIT_MSGS_PER_SEC=0 MAX_CONNECTIONS_PER_IP=0 MAX_PENDING_HTTP_PER_IP=0 METRICS_ADDR=127.0.0.1:$((PORT + 1)) \
    LOG_LEVEL=warn valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" \
    > "$WORK/server.log" 2>&1 &
  pid=$!
  # valgrind starts slowly (a minute on a busy host): wait for the port.
  for _ in $(seq 600); do
    (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break
    sleep 0.1
  done
  case $LOAD in
    echo)
      "$LOADTEST" custom --url "ws://127.0.0.1:$PORT" --quiet --json --timeout 10s --users 50 \
        --ramp 0s --duration "$duration" --closed-loop 1 --payload-bytes 64 > "$WORK/load.json" \
        2> "$WORK/load.err" || [ $? -eq 1 ]  # 1: a latency threshold failed under valgrind
      ;;
    fanout)
      # Publishing stops 2 s before the end: the 2 s run publishes for 1 s (half of it).
      "$LOADTEST" fanout --url "ws://127.0.0.1:$PORT" --quiet --json --timeout 10s --subscribers 100 \
        --publish-rate 20 --ramp 2s --publish-after-ramp --duration "$duration" --payload-bytes 64 \
        > "$WORK/load.json" 2> "$WORK/load.err" || [ $? -eq 1 ]
      ;;
  esac
  kill "$pid"
  wait "$pid" || true
  echo "$(jq "$COUNT" "$WORK/load.json") $(awk '/Collected :/ {print $NF}' "$WORK/server.log")"
}

for binary in "$@"; do
  read -r short_msgs short_ir < <(run "$binary" "${SHORT:-2s}")
  read -r long_msgs long_ir < <(run "$binary" "${LONG:-8s}")
  echo "$binary: $(((long_ir - short_ir) / (long_msgs - short_msgs))) instructions per $UNIT" \
    "($short_msgs and $long_msgs $UNITS, load $LOAD)"
done
