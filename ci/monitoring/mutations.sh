#!/usr/bin/env bash
# The truth test's mutation test (docs/monitoring.md, "What CI checks", 6): would
# ci/monitoring/truth.mjs notice a dashboard or a rule that no longer matches what the server
# exports? Starts the truth test's stack and traffic once (ci/monitoring/stack.sh), then for
# each mutation below works on a fresh copy of what truth.mjs and Prometheus read (alerts/,
# grafana/dashboards/, docs/runbook.md, ci/monitoring/), applies the mutation, reloads
# Prometheus with the copy's rules and runs the copy's truth.mjs.
#
# Prints a Markdown table (the mutation, truth.mjs's exit status, how many failures it named,
# the first of them): docs/monitoring.md shows it. Exits 1 when the copy without a mutation
# fails or a mutation passes (or no longer applies).
#
#   ci/monitoring/mutations.sh [OUT.md]   # after ci/setup and the release build; about a minute
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"
# shellcheck source=ci/monitoring/stack.sh
. "$REPO/ci/monitoring/stack.sh"
cd "$REPO"

OUT=${1:-/dev/stdout}
WORK=$(mktemp -d /tmp/ci-mutations.XXXXXX)
TREE="$WORK/tree"
trap 'stop_stack; rm -rf "$WORK"' EXIT

# The mutations: an id, what it does (the table's first column), the sed script and the files
# of $TREE it edits.
MUTATIONS=(
  none
  metric
  reason
  label
  flat
)
# shellcheck disable=SC2016  # backquotes are Markdown here
declare -A WHAT=(
  [none]="none: the repository as it is"
  [metric]='`websocket_ping_rtt_seconds` renamed in the dashboards and rules'
  [reason]='`reason="at_capacity"` misspelt in one alert (WebSocketConnectionLimitReached)'
  [label]='label `colour` renamed `color` in the overview dashboard'
  [flat]='a panel pointed at a series that exists but never moves (overview, Errors by code: `code="websocket_protocol"` only)'
)
# shellcheck disable=SC2016  # sed scripts: $ is literal
declare -A SED=(
  [metric]='s/websocket_ping_rtt_seconds/websocket_ping_roundtrip_seconds/g'
  [reason]='/alert: WebSocketConnectionLimitReached/,/expr:/s/reason="at_capacity"/reason="at_capcity"/'
  [label]='s/colour=~\\"\$colour\\"/color=~\\"$colour\\"/g'
  [flat]='/"title": "Errors by code"/,/"expr"/s/websocket_errors_total{job=\\"concurrent-socket\\"/websocket_errors_total{job=\\"concurrent-socket\\", code=\\"websocket_protocol\\"/'
)
declare -A FILES=(
  [metric]="grafana/dashboards/*.json alerts/*.yml"
  [reason]="alerts/alerts.yml"
  [label]="grafana/dashboards/overview.json"
  [flat]="grafana/dashboards/overview.json"
)

# fresh_tree: $TREE as the repository has it; node_modules shared.
fresh_tree() {
  rm -rf "$TREE"
  mkdir -p "$TREE/ci/node" "$TREE/grafana" "$TREE/docs"
  cp -r "$REPO/ci/monitoring" "$TREE/ci/"
  cp "$REPO/ci/node/package.json" "$TREE/ci/node/"
  ln -s "$REPO/ci/node/node_modules" "$TREE/ci/node/node_modules"
  cp -r "$REPO/alerts" "$TREE/"
  cp -r "$REPO/grafana/dashboards" "$TREE/grafana/"
  cp "$REPO/docs/runbook.md" "$TREE/docs/"
}

# mutate ID: applies mutation ID to $TREE; dies if it changed nothing (the files moved on).
mutate() {
  local id=$1
  [ "$id" = none ] && return 0
  # shellcheck disable=SC2086  # FILES are globs, expanded in $TREE
  (cd "$TREE" && sed -i -e "${SED[$id]}" ${FILES[$id]})
  if diff -rq "$REPO/alerts" "$TREE/alerts" > /dev/null &&
    diff -rq "$REPO/grafana/dashboards" "$TREE/grafana/dashboards" > /dev/null; then
    die "mutation $id changed nothing: ${SED[$id]} on ${FILES[$id]}"
  fi
}

# reload_rules: Prometheus re-reads $TREE/alerts and evaluates the rules a few times.
reload_rules() {
  kill -HUP "$PROM_PID"
  sleep 4
}

fresh_tree
start_stack_with_traffic "$WORK" "$TREE/alerts" >&2  # its log; the table alone on stdout

status=0
{
  echo "| mutation | truth.mjs exit | failures named | the first |"
  echo "|---|---|---|---|"
  for id in "${MUTATIONS[@]}"; do
    fresh_tree
    mutate "$id"
    reload_rules
    rc=0
    node "$TREE/ci/monitoring/truth.mjs" "$PROM_URL" --traffic "$WORK/traffic.json" > "$WORK/$id.out" 2> "$WORK/$id.err" || rc=$?
    failed=$(grep -c '^FAILED ' "$WORK/$id.err" || true)
    first=$(grep -m1 '^FAILED ' "$WORK/$id.err" | sed 's/^FAILED //; s/|/\\|/g' || true)
    echo "| ${WHAT[$id]} | $rc | $failed | ${first:-} |"
    if [ "$id" = none ] && [ "$rc" -ne 0 ]; then
      log "truth.mjs fails without any mutation:" >&2
      cat "$WORK/$id.err" >&2
      status=1
    elif [ "$id" != none ] && [ "$rc" -eq 0 ]; then
      log "mutation $id passed the truth test" >&2
      status=1
    fi
  done
} > "$WORK/table.md"
cat "$WORK/table.md" > "$OUT"
exit "$status"
