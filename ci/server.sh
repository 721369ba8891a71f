# shellcheck shell=bash
# Runs the real server on free loopback ports for the suites that talk to it. Sourced after
# ci/lib.sh; never run.
#
#   start_server WORKDIR [NAME=VALUE...]  # sets SERVER_PID, SERVER_PORT, METRICS_PORT, SERVER_URL,
#                                         # METRICS_URL; waits until /ready answers 200
#   stop_server                           # SIGTERM, then waits; returns the server's exit status
#
# The binary is $BIN_DIR/concurrent-socket (built by ci/test-all); SERVER_BIN overrides it, for
# example with target/debug/concurrent-socket while developing. The server's output goes to
# WORKDIR/server.log.

start_server() {
  local workdir=$1
  shift
  mkdir -p "$workdir"
  SERVER_PORT=$(free_port)
  METRICS_PORT=$(free_port)
  SERVER_URL="http://127.0.0.1:$SERVER_PORT"
  METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"
  env HOST=127.0.0.1 PORT="$SERVER_PORT" METRICS_ADDR="127.0.0.1:$METRICS_PORT" SERVER_ID=ci "$@" \
    "${SERVER_BIN:-$BIN_DIR/concurrent-socket}" > "$workdir/server.log" 2>&1 &
  SERVER_PID=$!
  export SERVER_PID SERVER_PORT METRICS_PORT SERVER_URL METRICS_URL
  wait_http "$SERVER_URL/ready" 20 || {
    tail -n 40 "$workdir/server.log" >&2
    die "the server did not become ready on $SERVER_URL"
  }
}

stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  local pid=$SERVER_PID status=0
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || status=$?
  return "$status"
}
