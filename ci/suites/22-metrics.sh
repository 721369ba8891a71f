#!/usr/bin/env bash
# The server's Prometheus metrics: every name and label value of docs/architecture.md present
# from start-up, values that move exactly as known traffic implies (ci/metrics_check.py), and
# `promtool check metrics` silent on every scrape (it exits 0 on lint findings, so any output
# fails the suite).
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$REPO/ci/server.sh"

WORK="$LOG_DIR/metrics"
rm -rf "$WORK"
mkdir -p "$WORK"
trap stop_server EXIT

MAX_CONNECTIONS=250
# Heartbeats (and pings) every 300 ms, so that their metrics move within the run.
start_server "$WORK" MAX_CONNECTIONS=$MAX_CONNECTIONS SERVER_ID=metrics-ci HEARTBEAT_INTERVAL=300
"$VENV/bin/python" "$REPO/ci/metrics_check.py" --server "$SERVER_URL" --metrics "$METRICS_URL" \
  --architecture "$REPO/docs/architecture.md" --max-connections "$MAX_CONNECTIONS" \
  --server-id metrics-ci --out-dir "$WORK"

status=0
for scrape in startup open after; do
  findings=$(promtool check metrics < "$WORK/$scrape.prom" 2>&1) || true
  if [ -n "$findings" ]; then
    log "promtool check metrics on the $scrape scrape:"
    echo "$findings"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "RESULT metrics: promtool check metrics found nothing in 3 scrapes"

# Metrics are never on the public listener.
public=$(curl -s -o /dev/null -w '%{http_code}' "$SERVER_URL/metrics")
[ "$public" = 404 ] || { log "GET /metrics on the public port answered $public, expected 404"; status=1; }
stop_server || { log "the server did not exit cleanly on SIGTERM"; status=1; }
exit "$status"
