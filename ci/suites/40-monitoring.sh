#!/usr/bin/env bash
# Monitoring that tells the truth (docs/monitoring.md):
#  1. static: yamllint, promtool check + unit tests of every alert, amtool on the Alertmanager
#     example, dashboards rebuilt from grafana/build.py unchanged, panel/rule lint (units,
#     descriptions, runbook anchors, PromQL and LogQL syntax), tsc against @grafana/schema;
#  2. the truth test: the real server as blue and green, the real Traefik in front
#     (configuration rendered by nixos/lib/traefik.nix), a real Prometheus loading alerts/;
#     `loadtest smoke` and traffic with bad input through Traefik; then every dashboard
#     query, every rule expression and every runbook query must return series from
#     Prometheus, every panel must move under the traffic (but the few listed as flat, with
#     why), and the counts the traffic fixes must be exact (ci/monitoring/truth.mjs);
#  3. the blue/green down alerts against real processes: blue killed with clients while green
#     is up raises nothing; green drained by SIGTERM (exit 0, after its last goodbye, within
#     SHUTDOWN_TIMEOUT) raises nothing for green, and leaves blue's crash as
#     WebSocketServerDown (no colour left) with WebSocketBothColoursDown.
# The mutation test of step 2 is ci/monitoring/mutations.sh (by hand; docs/monitoring.md).
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

start_stack_with_traffic "$WORK"

log "every dashboard query and rule expression through Prometheus"
node ci/monitoring/truth.mjs "$PROM_URL" --traffic "$WORK/traffic.json"

log "blue/green down alerts against real processes"
HELD=5
"$VENV/bin/python" ci/monitoring/traffic.py hold "ws://127.0.0.1:$BLUE_PORT" "ws://127.0.0.1:$GREEN_PORT" \
  --count "$HELD" --seconds 60 > "$WORK/hold.json" &
HOLD_PID=$!
wait_prom "websocket_connections_active{colour=\"blue\"} >= $HELD and on () websocket_connections_active{colour=\"green\"} >= $HELD" 20 ||
  die "the held connections did not show in Prometheus"
alert_states() { # alertname -> "colour-or-host state" lines
  curl -fsS "$PROM_URL/api/v1/alerts" |
    jq -r --arg name "$1" '.data.alerts[] | select(.labels.alertname == $name) | "\(.labels.colour // .labels.host) \(.state)"'
}
# Blue crashes with clients while green is up (a crash during a handover): no page.
kill -KILL "$BLUE_PID"
blue_status=0
wait "$BLUE_PID" 2>/dev/null || blue_status=$?
[ "$blue_status" -eq 137 ] || die "blue exited with status $blue_status after SIGKILL, expected 137 (killed by signal 9)"
wait_prom 'up{colour="blue"} == 0' 15 || die "Prometheus did not see blue go down"
sleep 3  # several rule evaluations
if alert_states WebSocketServerDown | grep -q .; then
  die "WebSocketServerDown raised for blue while green was up: $(alert_states WebSocketServerDown)"
fi
# Green, now the only colour, is stopped on purpose: it drains, and blue's crash is the page.
drain_server "$GREEN_PID" "$STACK_SHUTDOWN_TIMEOUT" "$HELD" green
wait "$HOLD_PID" || die "the client holding connections failed: $(cat "$WORK/hold.json")"
HOLD_PID=
echo "held connections: $(cat "$WORK/hold.json")"
# Blue's clients lost their connections without a goodbye; green's were each told to leave.
[ "$(jq '."goodbye:server_shutdown"' "$WORK/hold.json")" = "$HELD" ] ||
  die "green's $HELD held connections did not each get goodbye server_shutdown"
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
