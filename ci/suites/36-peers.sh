#!/usr/bin/env bash
# The benchmark's reference peers (bench/peers/) speak protocol v1 as the server does:
# bench/peers/check.sh runs one protocol check against concurrent-socket, which must pass all
# of it, and against each peer, which must pass all but the differences its stack imposes
# (listed in bench/peers/README.md and check.py's KNOWN; one that starts passing fails too,
# so the list stays true). Every server must exit 0 on SIGTERM within SHUTDOWN_TIMEOUT. The
# peers are installed with npm ci from their lock files.
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

start=$SECONDS
SERVER_BIN="$BIN_DIR/concurrent-socket" "$REPO/bench/peers/check.sh" concurrent-socket elysia node-ws
echo "RESULT peers: concurrent-socket, elysia and node-ws answer protocol v1, and concurrent-socket and elysia channels (v1.1), as bench/peers/check.py expects ($((SECONDS - start)) s)"
