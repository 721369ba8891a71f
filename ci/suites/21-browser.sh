#!/usr/bin/env bash
# The page (GET /) driven in headless Chromium (Debian's, through npm playwright-core). Its
# console: connect with an id, send a message and a ping, see the answers, disconnect and see
# the close code (1000, then 1009 after a message far over MAX_MESSAGE_BYTES). Its chat: two
# pages join one room and see each other's messages; one drops its connection, reconnects by
# itself and shows the 2 messages it missed, recovered in order; it leaves and gets no more.
# No CSP violation or console error under the server's strict CSP (ci/browser/test-page.mjs).
# The screenshots are kept in $LOG_DIR/browser/.
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$REPO/ci/server.sh"

WORK="$LOG_DIR/browser"
rm -rf "$WORK"
mkdir -p "$WORK"
trap stop_server EXIT

# A small message limit, so that the page can send a message far over it (close 1009).
start_server "$WORK" MAX_MESSAGE_BYTES=1024
status=0
node "$REPO/ci/browser/test-page.mjs" "$SERVER_URL" "$WORK/test-page.png" || status=1
[ -s "$WORK/test-page.png" ] && echo "RESULT browser: screenshot $WORK/test-page.png"
stop_server || { log "the server did not exit cleanly on SIGTERM"; status=1; }
exit "$status"
