#!/usr/bin/env bash
# Monitoring that tells the truth (docs/monitoring.md):
#  1. static: yamllint, promtool check + unit tests of every alert, amtool on the Alertmanager
#     example, dashboards rebuilt from grafana/build.py unchanged, panel/rule lint (units,
#     descriptions, runbook anchors, PromQL and LogQL syntax), tsc against @grafana/schema;
#  2. the truth test: the real server as blue and green, the real Traefik in front
#     (configuration rendered by nixos/lib/traefik.nix), a real Prometheus loading alerts/;
#     `loadtest smoke` and traffic with bad input through Traefik; then every dashboard
#     query, every rule expression and every runbook query must return series from
#     Prometheus (ci/monitoring/truth.mjs);
#  3. the blue/green down alerts against real processes: blue killed with clients while green
#     is up raises nothing; green drained by SIGTERM raises nothing for green, and leaves blue's
#     crash as WebSocketServerDown (no colour left) with WebSocketBothColoursDown.
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"
# shellcheck source=ci/monitoring/stack.sh
. "$REPO/ci/monitoring/stack.sh"
cd "$REPO"

WORK=$(mktemp -d /tmp/ci-monitoring.XXXXXX)
HOLD_PID=
cleanup() {
  if [ -n "$HOLD_PID" ]; then kill "$HOLD_PID" 2>/dev/null || true; fi
  stop_stack
  rm -rf "$WORK"
}
trap cleanup EXIT

log "static checks"
# Syntax, indentation, duplicate keys (long annotation lines are fine).
yamllint -s -d '{extends: default, rules: {line-length: disable, document-start: disable}}' alerts/
promtool check rules alerts/*.yml
promtool test rules alerts/tests/*.yml
amtool check-config alerts/alertmanager/alertmanager.yml
amtool config routes test --config.file=alerts/alertmanager/alertmanager.yml \
  --verify.receivers=pager,team-chat severity=critical 2>/dev/null
amtool config routes test --config.file=alerts/alertmanager/alertmanager.yml \
  --verify.receivers=team-chat severity=warning 2>/dev/null
python3 grafana/build.py --check
node --test ci/monitoring/promql.test.mjs > "$WORK/node-test.log" || { cat "$WORK/node-test.log"; die "promql.mjs tests failed"; }
echo "RESULT promql.mjs unit tests: $(grep -E '^# (pass|fail) ' "$WORK/node-test.log" | tr -d '#' | tr '\n' ' ')"
node ci/monitoring/lint.mjs
node ci/monitoring/typecheck.mjs "$WORK/tsc"
echo "RESULT promtool: $(grep -c 'alertname:' alerts/tests/*.yml) alert evaluations in unit tests pass"

log "starting blue, green, Traefik and Prometheus"
[ -x "$BIN_DIR/concurrent-socket" ] || die "$BIN_DIR/concurrent-socket not built"
SERVER_SETTINGS=(MAX_CONNECTIONS=15 HEARTBEAT_INTERVAL=1000 RATE_LIMIT_MSGS_PER_SEC=50
  MAX_MESSAGE_BYTES=4096 SHUTDOWN_TIMEOUT=4000 TRUSTED_PROXIES=127.0.0.1)
start_server blue "$WORK" "${SERVER_SETTINGS[@]}"
start_server green "$WORK" "${SERVER_SETTINGS[@]}"
render_traefik_config "$WORK/dynamic"
start_traefik "$WORK/traefik" "$WORK/dynamic"
wait_http "http://127.0.0.1:$TRAEFIK_WEB/ready" 20 || die "Traefik routes nothing to the servers"
broken=$(traefik_errors)
[ -z "$broken" ] || die "Traefik reports broken configuration: $broken"
start_prometheus "$WORK"
wait_prom 'up{job="concurrent-socket"} == 1' 30 || die "Prometheus scrapes no server"

log "traffic through Traefik: loadtest smoke, then bad input and excess connections"
[ -x "$BIN_DIR/loadtest" ] || die "$BIN_DIR/loadtest not built"
rc=0
"$BIN_DIR/loadtest" smoke --url "ws://127.0.0.1:$TRAEFIK_WEB" --users 16 --json > "$WORK/smoke.json" \
  2> "$WORK/smoke.log" || rc=$?
# 0 or 1 (a threshold failed) both mean the load ran; judging the server is not this suite's job.
[ "$rc" -le 1 ] || { cat "$WORK/smoke.log" >&2; die "loadtest smoke could not run (exit $rc)"; }
jq -r '"MEASURED loadtest smoke through Traefik: \(.connections.established)/\(.connections.attempts) connections, \(.messages.answered) messages answered, round trip p95 \(.latency.round_trip.p95_ms) ms, thresholds passed: \(.passed)"' \
  "$WORK/smoke.json"
"$VENV/bin/python" ci/monitoring/traffic.py load "ws://127.0.0.1:$TRAEFIK_WEB" \
  --connections 20 --messages 20 --over-cap 40 --max-message-bytes 4096 | tee "$WORK/traffic.json"
# Scrapes and rule evaluations after the last request; every 5xx counted by Traefik.
sleep 4
wait_prom 'sum(traefik_router_requests_total{router="ws@file", code=~"5.."}) > 0' 10 ||
  die "Traefik counted no 5xx on the ws router: the over-cap clients did not reach the cap"

log "every dashboard query and rule expression through Prometheus"
node ci/monitoring/truth.mjs "$PROM_URL"

log "blue/green down alerts against real processes"
"$VENV/bin/python" ci/monitoring/traffic.py hold "ws://127.0.0.1:$BLUE_PORT" "ws://127.0.0.1:$GREEN_PORT" \
  --count 5 --seconds 60 > "$WORK/hold.json" &
HOLD_PID=$!
wait_prom 'websocket_connections_active{colour="blue"} >= 5 and on () websocket_connections_active{colour="green"} >= 5' 20 ||
  die "the held connections did not show in Prometheus"
alert_states() { # alertname -> "colour-or-host state" lines
  curl -fsS "$PROM_URL/api/v1/alerts" |
    jq -r --arg name "$1" '.data.alerts[] | select(.labels.alertname == $name) | "\(.labels.colour // .labels.host) \(.state)"'
}
# Blue crashes with clients while green is up (a crash during a handover): no page.
kill -KILL "$BLUE_PID"
wait "$BLUE_PID" 2>/dev/null || true
wait_prom 'up{colour="blue"} == 0' 15 || die "Prometheus did not see blue go down"
sleep 3  # several rule evaluations
if alert_states WebSocketServerDown | grep -q .; then
  die "WebSocketServerDown raised for blue while green was up: $(alert_states WebSocketServerDown)"
fi
# Green, now the only colour, is stopped on purpose: it drains, and blue's crash is the page.
drain_start=$EPOCHREALTIME
kill -TERM "$GREEN_PID"
wait "$GREEN_PID" || die "green exited with an error after SIGTERM"
awk -v a="$drain_start" -v b="$EPOCHREALTIME" \
  'BEGIN { printf "MEASURED green drain with 5 clients: %.2f s from SIGTERM to exit (SHUTDOWN_TIMEOUT=4000 ms)\n", b - a }'
wait "$HOLD_PID" || true
HOLD_PID=
echo "held connections: $(cat "$WORK/hold.json")"
[ "$(prom_value 'max_over_time(websocket_draining{colour="green"}[1m])')" = 1 ] ||
  die "Prometheus never saw green draining: the drain is shorter than a scrape interval"

deadline=$((SECONDS + 20))
until alert_states WebSocketServerDown | grep -q '^blue '; do
  [ "$SECONDS" -ge "$deadline" ] && die "WebSocketServerDown did not go pending for blue, killed with 5 clients, nothing up"
  sleep 1
done
until alert_states WebSocketBothColoursDown | grep -q .; do
  [ "$SECONDS" -ge "$deadline" ] && die "WebSocketBothColoursDown did not go pending with both colours down"
  sleep 1
done
sleep 3  # more evaluations with green down: it must stay silent
if alert_states WebSocketServerDown | grep -q '^green '; then
  die "WebSocketServerDown raised for green, which was drained on purpose"
fi
echo "RESULT down alerts: blue killed while green up -> silent; green drained -> silent, blue's crash now" \
  "WebSocketServerDown $(alert_states WebSocketServerDown | tr '\n' ' ')and WebSocketBothColoursDown $(alert_states WebSocketBothColoursDown | tr '\n' ' ')"
