#!/usr/bin/env bash
# The deploy scenarios of ci/suites/60-deploy.sh, run by it in the container's network
# namespace (IN_NET) with CONTAINER_LEADER (the container's PID 1) and WORK set; blue is
# running and routed.
# Traefik (ci/traefik.sh) runs here too; wsctl runs inside the container (IN), as an
# operator would, and ci/deploy/traffic.py sends client traffic through Traefik meanwhile.
#
#   1. green fails its health check (faults build, FAULT_READY_503=1): rolled back
#   2. green fails the smoke load test (FAULT_RESPONSE_DELAY_MS=1500): rolled back
#   3. green is killed (kill -9) as soon as Traefik routes to it: rolled back
#   3b. the operator interrupts wsctl (SIGINT) during the load test: rolled back
#   4. a normal blue -> green deploy, with a second deploy started meanwhile (refused by the
#      lock); then `wsctl status` and a dry run
#   5. `wsctl rollback` refused while blue is stopped, then back to blue, started again,
#      while green serves
#   6. blue -> green again, shifting the weights in 3 steps
# Each failure scenario ends with traffic on blue, green stopped, exit 1. RESULT lines give
# per scenario: failed connection attempts, reconnects, longest gap, deploy time.
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"
# shellcheck source=ci/systemd/lib.sh
. "$REPO/ci/systemd/lib.sh"
: "${CONTAINER_LEADER:?set by 60-deploy.sh}" "${WORK:?set by 60-deploy.sh}" "${TEST_SETTINGS:?set by 60-deploy.sh}"
SYSTEMD_LEADER=$CONTAINER_LEADER # what IN and main_pid of ci/systemd/lib.sh enter

CLIENTS=${CLIENTS:-100}      # long-lived clients that reconnect on goodbye
NEW_RATE=${NEW_RATE:-20}     # new short-lived connections per second
DYNAMIC=$WORK/state/traefik  # /var/lib/concurrent-socket/traefik inside the container
TRAFFIC_PID=""

cleanup() {
  [ -z "$TRAFFIC_PID" ] || kill "$TRAFFIC_PID" 2> /dev/null || true
  stop_traefik
}
trap cleanup EXIT

start_traefik "$WORK/traefik" "$DYNAMIC"
PUBLIC="ws://127.0.0.1:$TRAEFIK_WEB"
[ -z "$(traefik_errors)" ] || die "Traefik reports broken configuration: $(traefik_errors)"

wsctl() {
  IN env WSCTL_PUBLIC_URL="$PUBLIC" WSCTL_TRAEFIK_API="http://127.0.0.1:$TRAEFIK_API" \
    WSCTL_LOADTEST="$CONTAINER_BINDIR/loadtest" "$CONTAINER_BINDIR/wsctl" "$@"
}

# The deploy as the scenarios run it: shorter waits than production, same steps.
DEPLOY_ARGS=(--json deploy --to green --ready-timeout 10s --verify-window 3s --switch-timeout 10s)

# green_faults [VAR=VALUE...]: green runs the faults build with these settings; none: the
# real server. Both with the shipped settings file and the suite's TEST_SETTINGS.
green_faults() {
  local dropin=/etc/systemd/system/ws@green.service.d/faults.conf
  {
    cat "$REPO/systemd/instances/green.env"
    echo "$TEST_SETTINGS"
    printf '%s\n' "$@"
  } | IN tee /etc/concurrent-socket/green.env > /dev/null
  if [ $# -eq 0 ]; then
    IN rm -f "$dropin"
  else
    IN mkdir -p "$(dirname "$dropin")"
    printf '%s\n' "[Service]" "ExecStartPre=" "ExecStartPre=$CONTAINER_BINDIR/concurrent-socket-faults check-config" \
      "ExecStart=" "ExecStart=$CONTAINER_BINDIR/concurrent-socket-faults" | IN tee "$dropin" > /dev/null
  fi
  IN systemctl daemon-reload
}

# serving_colour: serverId of the colour Traefik sends HTTP requests to now.
serving_colour() { curl -fsS "http://127.0.0.1:$TRAEFIK_WEB/health" | jq -r .serverId; }

connections_of() { curl -fsS "http://127.0.0.1:$1/health" | jq -r .connections; }

# start_traffic NAME [PORT]: clients through Traefik, until every long-lived one is connected
# to the instance on PORT (default blue's 3001).
start_traffic() {
  local name=$1 port=${2:-3001} deadline=$((SECONDS + 15))
  "$VENV/bin/python" "$REPO/ci/deploy/traffic.py" --url "$PUBLIC" --clients "$CLIENTS" --rate "$NEW_RATE" \
    --duration 150 --stop-file "$WORK/$name.stop" --report "$WORK/$name.traffic.json" &
  TRAFFIC_PID=$!
  until [ "$(connections_of "$port" 2> /dev/null || echo 0)" -ge "$CLIENTS" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$CLIENTS clients did not connect to port $port through Traefik"
    sleep 0.1
  done
  sleep 1 # a second of steady traffic before the deploy
}

stop_traffic() {
  local name=$1 port deadline
  sleep 2 # clients that were told to reconnect get the time to
  touch "$WORK/$name.stop"
  wait "$TRAFFIC_PID" || die "traffic client failed"
  TRAFFIC_PID=""
  # The clients closed every connection: the servers must have let go of them before the
  # next scenario counts its own.
  for port in 3001 3002; do
    deadline=$((SECONDS + 15))
    while [ "$(connections_of "$port" 2> /dev/null || echo 0)" -gt 0 ]; do
      [ "$SECONDS" -lt "$deadline" ] || die "$name: port $port still holds $(connections_of "$port") connections 15 s after the clients closed"
      sleep 0.1
    done
  done
}

# run_deploy NAME ARGS...: wsctl ARGS, JSON report in NAME.deploy.json; sets DEPLOY_RC.
run_deploy() {
  local name=$1
  shift
  DEPLOY_RC=0
  wsctl "$@" > "$WORK/$name.deploy.json" 2> "$WORK/$name.deploy.log" || DEPLOY_RC=$?
  sed 's/^/    wsctl: /' "$WORK/$name.deploy.log"
}

# t NAME FILTER: jq FILTER over NAME's traffic report.
t() { jq -r "$2" "$WORK/$1.traffic.json"; }
d() { jq -r "$2" "$WORK/$1.deploy.json"; }

result_line() {
  local name=$1
  echo "RESULT $name: wsctl exit $DEPLOY_RC ($(d "$name" '.outcome')$(d "$name" 'if .failedStep then " at " + .failedStep else "" end')), failed connection attempts $(t "$name" .failed_attempts) of $(t "$name" '.new.attempts + .clients.opened'), reconnects $(t "$name" .clients.reconnects), longest gap $(t "$name" .clients.longest_gap_s)s, messages unanswered $(t "$name" .messages.lost) of $(t "$name" .messages.sent), deploy time $(d "$name" '.totalSeconds * 10 | round / 10')s"
  echo "MEASURED $name steps: $(d "$name" '[.steps[], .rollback[] | "\(.name) \(.seconds * 100 | round / 100)s"] | join(", ")')"
  # The server answers through its grace after goodbye and the client closes once it has
  # its answers: no message may go unanswered (docs/deploy.md).
  [ "$(t "$name" .messages.lost)" -eq 0 ] ||
    die "$name: $(t "$name" .messages.lost) of $(t "$name" .messages.sent) messages unanswered ($(t "$name" '[.clients.goodbyes[]] | add // 0') goodbyes)"
  [ "$(t "$name" .failed_attempts)" -eq 0 ] ||
    echo "MEASURED $name failures: $(t "$name" '[.failures[] | "\(.t * 1000 | round / 1000) \(.client) \(.kind): \(.error)"] | join("; ")')"
}

# The end state of a deploy that must have been rolled back to blue.
assert_rolled_back() {
  local name=$1 step=$2
  [ "$DEPLOY_RC" -eq 1 ] || die "$name: wsctl exit $DEPLOY_RC, expected 1 (rolled back)"
  [ "$(d "$name" .outcome)" = rolled-back ] || die "$name: outcome $(d "$name" .outcome)"
  [ "$(d "$name" .failedStep)" = "$step" ] || die "$name: failed at $(d "$name" .failedStep), expected $step"
  [ "$(IN systemctl is-active ws@green.service ws@green.socket ws-metrics@green.socket | sort -u)" = inactive ] ||
    die "$name: green's units are not all stopped"
  [ "$(cat "$WORK/state/active")" = blue ] || die "$name: active file says $(cat "$WORK/state/active")"
  [ "$(jq -c '[.http.services["ws-active"].weighted.services[].name]' "$DYNAMIC/routing.yml")" = '["ws-blue"]' ] ||
    die "$name: routing.yml is $(cat "$DYNAMIC/routing.yml")"
  [ "$(serving_colour)" = blue ] || die "$name: Traefik does not serve blue"
  # The long-lived clients never left blue.
  [ "$(t "$name" .clients.drops_without_goodbye)" -eq 0 ] || die "$name: clients dropped without goodbye"
  [ "$(t "$name" '.clients.final_server.blue // 0')" -eq "$CLIENTS" ] ||
    die "$name: not every client is on blue at the end: $(t "$name" .clients.final_server)"
  [ "$(t "$name" '.new.by_server.blue // 0')" -gt 0 ] || die "$name: no new connection reached blue"
}

# --- 1. green never becomes ready ----------------------------------------------------------
log "scenario 1: green fails its health check (FAULT_READY_503=1)"
green_faults FAULT_READY_503=1
start_traffic health-fail
run_deploy health-fail "${DEPLOY_ARGS[@]}"
stop_traffic health-fail
result_line health-fail
assert_rolled_back health-fail deploy
d health-fail '.steps[0].detail' | grep -q '503' || die "health-fail: the report does not name the 503"
# Routing never left blue: no connection may fail at all.
[ "$(t health-fail .failed_attempts)" -eq 0 ] || die "health-fail: failed attempts: $(t health-fail .failures)"

# --- 2. green fails the load test ----------------------------------------------------------
log "scenario 2: green fails the smoke load test (FAULT_RESPONSE_DELAY_MS=1500)"
green_faults FAULT_RESPONSE_DELAY_MS=1500
start_traffic load-fail
run_deploy load-fail "${DEPLOY_ARGS[@]}"
stop_traffic load-fail
result_line load-fail
assert_rolled_back load-fail load-test
d load-fail '.error' | grep -q 'round_trip_p95' || die "load-fail: the report does not name the threshold"
[ "$(t load-fail .failed_attempts)" -eq 0 ] || die "load-fail: failed attempts: $(t load-fail .failures)"

# --- 3. green crashes right after the switch -----------------------------------------------
log "scenario 3: green is killed (kill -9) as soon as Traefik routes to it"
green_faults
start_traffic crash
(
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$TRAEFIK_API/api/http/services/ws-active@file" 2> /dev/null |
    jq -e '[.weighted.services[].name] == ["ws-green"]' > /dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || exit 1 # the deploy never switched
    sleep 0.01
  done
  IN kill -9 "$(main_pid ws@green.service)"
  date +%s.%N > "$WORK/crash.killed"
) &
killer=$!
run_deploy crash "${DEPLOY_ARGS[@]}"
deploy_end=$(date +%s.%N)
wait "$killer" || die "crash: the deploy never routed to green, so nothing was killed: $(d crash .error)"
stop_traffic crash
result_line crash
assert_rolled_back crash verify
# Documented loss: only new connections that Traefik sent to green between the kill and the
# rollback may fail (a handshake in flight when the process died). The long-lived clients,
# all on blue, lose nothing.
# shellcheck disable=SC2016 # jq variables
jq --arg from "$(cat "$WORK/crash.killed")" --arg to "$deploy_end" \
  '.failures[] | select((.client | startswith("new-") | not) or .t < ($from | tonumber) or .t > ($to | tonumber))' \
  "$WORK/crash.traffic.json" > "$WORK/crash.unexpected"
[ ! -s "$WORK/crash.unexpected" ] || die "crash: failures outside the documented window: $(cat "$WORK/crash.unexpected")"
echo "RESULT crash: wsctl saw: $(d crash .error)"
echo "RESULT crash: $(t crash .failed_attempts) failed new connections, all between the kill and the end of the rollback (allowed)"

# --- 3b. the operator interrupts the deploy -------------------------------------------------
log "scenario 3b: SIGINT to wsctl during the load test"
start_traffic interrupted
wsctl "${DEPLOY_ARGS[@]}" > "$WORK/interrupted.deploy.json" 2> "$WORK/interrupted.deploy.log" &
deploying=$!
deadline=$((SECONDS + 20))
until grep -q 'ok\] health' "$WORK/interrupted.deploy.log"; do
  [ "$SECONDS" -lt "$deadline" ] || die "interrupted: the deploy did not reach the load test"
  sleep 0.05
done
# The lock file names the deploy's pid, as the container sees it.
IN kill -INT "$(sed -n 's/^pid \([0-9]*\) .*/\1/p' "$WORK/state/deploy.lock")"
DEPLOY_RC=0
wait "$deploying" || DEPLOY_RC=$?
sed 's/^/    wsctl: /' "$WORK/interrupted.deploy.log"
stop_traffic interrupted
result_line interrupted
assert_rolled_back interrupted switch
[ "$(d interrupted .error)" = "interrupted by a signal" ] || die "interrupted: error $(d interrupted .error)"
[ "$(t interrupted .failed_attempts)" -eq 0 ] || die "interrupted: failed attempts: $(t interrupted .failures)"

# --- 4. a normal deploy, and a second one refused by the lock ------------------------------
log "scenario 4: blue -> green, with a concurrent deploy refused by the lock"
green_faults
start_traffic normal
wsctl "${DEPLOY_ARGS[@]}" > "$WORK/normal.deploy.json" 2> "$WORK/normal.deploy.log" &
first=$!
deadline=$((SECONDS + 10))
until grep -q '^deploy blue -> green' "$WORK/normal.deploy.log"; do
  [ "$SECONDS" -lt "$deadline" ] || die "the first deploy did not start"
  sleep 0.05
done
second_rc=0
wsctl --json deploy --to green > "$WORK/second.json" 2> "$WORK/second.log" || second_rc=$?
[ "$second_rc" -eq 3 ] || die "a second deploy during the first exited $second_rc, expected 3: $(cat "$WORK/second.log")"
grep -q 'another deploy holds' "$WORK/second.log" || die "the refusal does not say why: $(cat "$WORK/second.log")"
echo "RESULT lock: a second deploy during the first was refused (exit 3): $(jq -r .error "$WORK/second.json")"
DEPLOY_RC=0
wait "$first" || DEPLOY_RC=$?
sed 's/^/    wsctl: /' "$WORK/normal.deploy.log"
stop_traffic normal
result_line normal
[ "$DEPLOY_RC" -eq 0 ] || die "normal deploy exited $DEPLOY_RC"
[ "$(d normal .outcome)" = succeeded ] || die "normal: outcome $(d normal .outcome)"
[ "$(t normal .failed_attempts)" -eq 0 ] || die "normal: failed connection attempts: $(t normal .failures)"
[ "$(t normal .clients.drops_without_goodbye)" -eq 0 ] || die "normal: clients lost without goodbye"
[ "$(t normal .clients.goodbye_without_reconnect)" -eq 0 ] || die "normal: a goodbye without reconnect: true"
[ "$(t normal '.clients.goodbyes.server_shutdown // 0')" -eq "$CLIENTS" ] ||
  die "normal: $(t normal '.clients.goodbyes') goodbyes, expected $CLIENTS server_shutdown"
[ "$(t normal '.clients.moved["blue->green"] // 0')" -eq "$CLIENTS" ] ||
  die "normal: clients moved $(t normal .clients.moved), expected all $CLIENTS blue->green"
[ "$(t normal '.clients.final_server.green // 0')" -eq "$CLIENTS" ] ||
  die "normal: at the end clients are on $(t normal .clients.final_server)"
[ "$(t normal '.new.by_server.green // 0')" -gt 0 ] || die "normal: no new connection reached green"
[ "$(IN systemctl is-active ws@blue.service ws@blue.socket ws-metrics@blue.socket | sort -u)" = inactive ] ||
  die "normal: blue's units are not all stopped"
[ "$(cat "$WORK/state/active")" = green ] || die "normal: active file says $(cat "$WORK/state/active")"
[ "$(serving_colour)" = green ] || die "normal: Traefik does not serve green"

# --- status, dry run and manual rollback ---------------------------------------------------
wsctl --json status > "$WORK/status.json"
jq -e '.active == "green" and .routing == "green=1" and .traefikApplies == "green=1" and .warnings == [] and
  ([.instances[] | select(.colour == "green") | .unit.activeState == "active" and .health.serverId == "green"] == [true]) and
  ([.instances[] | select(.colour == "blue") | .unit.activeState] == ["inactive"])' "$WORK/status.json" > /dev/null ||
  die "wsctl status after the deploy: $(cat "$WORK/status.json")"
wsctl status | sed 's/^/    /'

refused_rc=0
wsctl rollback > "$WORK/refused.log" 2>&1 || refused_rc=$?
[ "$refused_rc" -eq 2 ] || die "rollback to a stopped blue exited $refused_rc, expected 2 (refused)"
[ "$(cat "$WORK/state/active")" = green ] || die "a refused rollback changed the active colour"
echo "RESULT refused rollback (blue stopped): exit 2: $(tail -1 "$WORK/refused.log")"

IN systemctl start ws-metrics@blue.socket ws@blue.socket ws@blue.service
wsctl --json deploy --to blue --dry-run > "$WORK/dry.json" 2> /dev/null
jq -e '.outcome == "planned" and [.steps[].name] == ["deploy","health","load-test","switch","verify","drain"] and
  [.rollback[].name] == ["restore-routing","confirm-routing","stop-blue"] and all(.steps[], .rollback[]; .status == "planned")' \
  "$WORK/dry.json" > /dev/null || die "dry run: $(cat "$WORK/dry.json")"
[ "$(cat "$WORK/state/active")" = green ] || die "the dry run changed the active colour"

log "scenario 5: wsctl rollback to blue, started again, while green serves"
start_traffic rollback 3002
run_deploy rollback --json rollback
stop_traffic rollback
result_line rollback
[ "$DEPLOY_RC" -eq 0 ] || die "wsctl rollback exited $DEPLOY_RC"
[ "$(t rollback .failed_attempts)" -eq 0 ] || die "rollback: failed connection attempts: $(t rollback .failures)"
[ "$(t rollback '.clients.final_server.blue // 0')" -eq "$CLIENTS" ] ||
  die "rollback: at the end clients are on $(t rollback .clients.final_server)"
[ "$(cat "$WORK/state/active")" = blue ] || die "rollback: active file says $(cat "$WORK/state/active")"
[ "$(IN systemctl is-active ws@green.service)" = inactive ] || die "rollback: green still runs"

# --- 6. a gradual shift through Traefik's weighted service ---------------------------------
log "scenario 6: blue -> green in 3 weight steps"
start_traffic gradual
run_deploy gradual "${DEPLOY_ARGS[@]}" --steps 3 --step-interval 2s
stop_traffic gradual
result_line gradual
[ "$DEPLOY_RC" -eq 0 ] || die "gradual deploy exited $DEPLOY_RC"
d gradual '.steps[] | select(.name == "switch") | .detail' | grep -q 'blue=2,green=1.*blue=1,green=2.*green=1' ||
  die "gradual: the switch did not go through the weights: $(d gradual '.steps[] | select(.name == "switch") | .detail')"
[ "$(t gradual .failed_attempts)" -eq 0 ] || die "gradual: failed connection attempts: $(t gradual .failures)"
[ "$(t gradual '.clients.final_server.green // 0')" -eq "$CLIENTS" ] ||
  die "gradual: at the end clients are on $(t gradual .clients.final_server)"
[ -z "$(traefik_errors)" ] || die "Traefik reports broken configuration: $(traefik_errors)"
log "all deploy scenarios passed"
