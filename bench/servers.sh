# shellcheck shell=bash
# The servers the benchmark compares, and how to start them: concurrent-socket (a release
# build) and the reference peers in bench/peers/ (Bun + Elysia, Node + ws), installed from
# their lock files. Sourced after ci/lib.sh by bench/run.sh and bench/peers/check.sh.

SERVER_BIN=${SERVER_BIN:-$REPO/target/release/concurrent-socket}
PEERS_DIR="$REPO/bench/peers"
ALL_SERVERS="concurrent-socket elysia node-ws"

# prepare_server NAME: what NAME needs before it can start (a build, or its node_modules).
prepare_server() {
  case $1 in
    concurrent-socket)
      [ -x "$SERVER_BIN" ] || die "$SERVER_BIN is missing: cargo build --release --workspace --bins"
      ;;
    elysia | node-ws)
      # The bun npm package brings the Bun binary.
      npm_ci "$PEERS_DIR/$1" || die "npm ci failed in bench/peers/$1"
      ;;
    *) die "unknown server $1 (one of: $ALL_SERVERS)" ;;
  esac
}

# launch NAME LOG VAR=VALUE...: starts NAME in the background with that environment, output
# to LOG. Sets PID to the server process itself (for /proc and signals).
launch() {
  local name=$1 log=$2
  shift 2
  case $name in
    concurrent-socket) env "$@" "$SERVER_BIN" > "$log" 2>&1 & ;;
    elysia) (cd "$PEERS_DIR/elysia" && exec env "$@" node_modules/.bin/bun server.ts) > "$log" 2>&1 & ;;
    node-ws) (cd "$PEERS_DIR/node-ws" && exec env "$@" node server.mjs) > "$log" 2>&1 & ;;
    *) die "unknown server $name (one of: $ALL_SERVERS)" ;;
  esac
  # shellcheck disable=SC2034 # read by the scripts that source this file
  PID=$!
}
