#!/usr/bin/env bash
# The deploy scenarios of ci/suites/60-deploy.sh, run by it in the container's network
# namespace (IN_NET) with CONTAINER_LEADER (the container's PID 1) and WORK set; blue is
# running and routed.
# Traefik (ci/traefik.sh) runs here too; wsctl runs inside the container (IN), as an
# operator would, and ci/deploy/traffic.py sends client traffic through Traefik meanwhile.
#
#   0. a new build is installed (systemd/install.sh with the fault-injection binary, run
#      without faults: a real, different build); it is the candidate every deploy below
#      puts on green, while blue keeps the old build in its profile
#   1. green fails its health check (faults build, FAULT_READY_503=1): rolled back
#   2. green fails the smoke load test (FAULT_RESPONSE_DELAY_MS=1500): rolled back
#   3. green is killed (kill -9) as soon as Traefik routes to it: rolled back
#   3b. the operator interrupts wsctl (SIGINT) during the load test: rolled back
#   4. a normal blue -> green deploy of the new build, with a second deploy started meanwhile
#      (refused by the lock); then `wsctl status` and a dry run
#   5. `wsctl rollback` refused while blue is stopped, then back to blue, started again,
#      while green serves; then blue is killed (kill -9): systemd brings it back on the OLD
#      build, its profile's
#   5b. chat through the switch (ci/deploy/chat.sh): both colours on one redis-server, rooms
#      of users publishing and subscribed while blue -> green: nothing lost or doubled; then
#      the in-memory control, green -> blue, which must show the loss
#   6. blue -> green again, shifting the weights in 3 steps
# DATA_PATH=direct runs the same scenarios on the direct data path (docs/deploy.md, "The direct
# data path"): the clients connect to the colours' shared reuseport address DIRECT_PORT, which
# wsctl flips in the kernel, not to Traefik; scenario 6 checks that a gradual switch is
# refused there (the direct path flips all at once), and scenario 7 queues connections on
# blue's listener while blue is stopped (SIGSTOP) and flips: none may be reset
# (ci/deploy/flip-queue.py), with net.ipv4.tcp_migrate_req=0 as the control that shows the
# test can fail.
# Each failure scenario ends with traffic on blue, green stopped and its profile back on the
# old build, exit 1. RESULT lines give per scenario: failed connection attempts, reconnects,
# longest gap, deploy time; ci/deploy/table.py turns the reports into docs/deploy.md's table.
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"
# shellcheck source=ci/systemd/lib.sh
. "$REPO/ci/systemd/lib.sh"
# shellcheck source=ci/redis/lib.sh
. "$REPO/ci/redis/lib.sh"
# shellcheck source=ci/deploy/chat.sh
. "$REPO/ci/deploy/chat.sh"
: "${CONTAINER_LEADER:?set by 60-deploy.sh}" "${WORK:?set by 60-deploy.sh}" "${TEST_SETTINGS:?set by 60-deploy.sh}"
SYSTEMD_LEADER=$CONTAINER_LEADER # what IN and main_pid of ci/systemd/lib.sh enter

DATA_PATH=${DATA_PATH:-traefik}
CLIENTS=${CLIENTS:-100}      # long-lived clients that reconnect on goodbye
NEW_RATE=${NEW_RATE:-20}     # new short-lived connections per second
DYNAMIC=$WORK/state/traefik  # /var/lib/concurrent-socket/traefik inside the container
TRAFFIC_PID=""

cleanup() {
  [ -z "$TRAFFIC_PID" ] || kill "$TRAFFIC_PID" 2> /dev/null || true
  [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2> /dev/null || true
  redis_stop
  stop_traefik
}
trap cleanup EXIT

start_traefik "$WORK/traefik" "$DYNAMIC"
[ -z "$(traefik_errors)" ] || die "Traefik reports broken configuration: $(traefik_errors)"
case $DATA_PATH in
  traefik)
    PUBLIC="ws://127.0.0.1:$TRAEFIK_WEB"
    PUBLIC_HTTP="http://127.0.0.1:$TRAEFIK_WEB"
    ;;
  direct)
    : "${DIRECT_PORT:?set by 60-deploy.sh}"
    PUBLIC="ws://127.0.0.1:$DIRECT_PORT"
    PUBLIC_HTTP="http://127.0.0.1:$DIRECT_PORT"
    ;;
  *) die "DATA_PATH must be traefik or direct, got '$DATA_PATH'" ;;
esac
log "data path $DATA_PATH: clients connect to $PUBLIC"

wsctl() {
  IN env WSCTL_PUBLIC_URL="$PUBLIC" WSCTL_TRAEFIK_API="http://127.0.0.1:$TRAEFIK_API" WSCTL_DATA_PATH="$DATA_PATH" \
    WSCTL_LOADTEST="$CONTAINER_BINDIR/loadtest" "$CONTAINER_BINDIR/wsctl" "$@"
}

# The units of a colour that must all be stopped once it is out.
colour_units() {
  echo "ws@$1.service ws@$1.socket ws-metrics@$1.socket"
  [ "$DATA_PATH" = traefik ] || echo "ws-public@$1.socket"
}

# The deploy as the scenarios run it: shorter waits than production, same steps.
DEPLOY_WAITS=(--ready-timeout 10s --verify-window 3s --switch-timeout 10s)
DEPLOY_ARGS=(--json deploy --to green "${DEPLOY_WAITS[@]}")

# The broker settings of both colours (the chat scenarios set them; none: the default).
BROKER_SETTINGS=()

# colour_env COLOUR [VAR=VALUE...]: the colour's settings file: the shipped one, the suite's
# TEST_SETTINGS, BROKER_SETTINGS and these.
colour_env() {
  local colour=$1
  shift
  {
    cat "$REPO/systemd/instances/$colour.env"
    echo "$TEST_SETTINGS"
    printf '%s\n' "${BROKER_SETTINGS[@]}" "$@"
  } | IN tee "/etc/concurrent-socket/$colour.env" > /dev/null
}

# green_faults [VAR=VALUE...]: green runs the faults build with these settings; none: the
# real server. Both with the shipped settings file and the suite's TEST_SETTINGS.
green_faults() {
  local dropin=/etc/systemd/system/ws@green.service.d/faults.conf
  colour_env green "$@"
  if [ $# -eq 0 ]; then
    IN rm -f "$dropin"
  else
    IN mkdir -p "$(dirname "$dropin")"
    printf '%s\n' "[Service]" "ExecStartPre=" "ExecStartPre=$CONTAINER_BINDIR/concurrent-socket-faults check-config" \
      "ExecStart=" "ExecStart=$CONTAINER_BINDIR/concurrent-socket-faults" | IN tee "$dropin" > /dev/null
  fi
  IN systemctl daemon-reload
}

PROFILES=/var/lib/concurrent-socket/profiles # in the container; $WORK/state/profiles here
# build_of COLOUR: the build directory the colour's running process executes from.
build_of() {
  local exe
  exe=$(IN readlink "/proc/$(main_pid "ws@$1.service")/exe")
  echo "${exe%/bin/concurrent-socket}"
}
pinned() { IN readlink "$PROFILES/$1"; }

# assert_build NAME COLOUR BUILD: the colour's profile pins BUILD; if it runs, it runs BUILD.
assert_build() {
  local name=$1 colour=$2 build=$3
  [ "$(pinned "$colour")" = "$build" ] || die "$name: $colour's profile pins $(pinned "$colour"), expected $build"
  if [ "$(main_pid "ws@$colour.service")" != 0 ]; then
    [ "$(build_of "$colour")" = "$build" ] || die "$name: $colour runs $(build_of "$colour"), expected $build"
  fi
}

# serving_colour: serverId of the colour new HTTP requests reach now (through Traefik, or on
# the direct path's shared address; a few tries there, as the kernel spreads over the group).
serving_colour() {
  local tries=6 seen=""
  for ((; tries > 0; tries--)); do
    seen="$seen $(curl -fsS "$PUBLIC_HTTP/health" | jq -r .serverId)"
    [ "$DATA_PATH" = direct ] || break
  done
  tr ' ' '\n' <<< "$seen" | sed '/^$/d' | sort -u | paste -sd,
}

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
  # shellcheck disable=SC2046 # the unit names are words
  [ "$(IN systemctl is-active $(colour_units green) | sort -u)" = inactive ] ||
    die "$name: green's units are not all stopped"
  [ "$(cat "$WORK/state/active")" = blue ] || die "$name: active file says $(cat "$WORK/state/active")"
  [ "$(jq -c '[.http.services["ws-active"].weighted.services[].name]' "$DYNAMIC/routing.yml")" = '["ws-blue"]' ] ||
    die "$name: routing.yml is $(cat "$DYNAMIC/routing.yml")"
  [ "$(serving_colour)" = blue ] || die "$name: new connections reach $(serving_colour), not blue alone"
  # The long-lived clients never left blue: no goodbye, no drop.
  [ "$(t "$name" .clients.drops_without_goodbye)" -eq 0 ] || die "$name: clients dropped without goodbye"
  [ "$(t "$name" '.clients.goodbyes | tojson')" = "{}" ] || die "$name: goodbyes $(t "$name" '.clients.goodbyes | tojson') on blue"
  [ "$(t "$name" '.clients.final_server.blue // 0')" -eq "$CLIENTS" ] ||
    die "$name: not every client is on blue at the end: $(t "$name" .clients.final_server)"
  [ "$(t "$name" '.new.by_server.blue // 0')" -gt 0 ] || die "$name: no new connection reached blue"
  # The rollback put green's profile back: a later start of green runs the old build.
  assert_build "$name" green "$OLD_BUILD"
  assert_build "$name" blue "$OLD_BUILD"
}

# assert_moved NAME FROM TO: every long-lived client got FROM's goodbye (server_shutdown,
# reconnect: true), reconnected to TO and is there at the end; none lost without goodbye.
assert_moved() {
  local name=$1 from=$2 to=$3
  [ "$(t "$name" .clients.drops_without_goodbye)" -eq 0 ] ||
    die "$name: $(t "$name" .clients.drops_without_goodbye) clients lost without goodbye"
  [ "$(t "$name" .clients.goodbye_without_reconnect)" -eq 0 ] || die "$name: a goodbye without reconnect: true"
  [ "$(t "$name" '.clients.goodbyes | tojson')" = "{\"server_shutdown\":$CLIENTS}" ] ||
    die "$name: goodbyes $(t "$name" '.clients.goodbyes | tojson'), expected exactly $CLIENTS server_shutdown"
  [ "$(t "$name" ".clients.moved[\"$from->$to\"] // 0")" -eq "$CLIENTS" ] ||
    die "$name: clients moved $(t "$name" .clients.moved), expected all $CLIENTS $from->$to"
  [ "$(t "$name" ".clients.final_server.$to // 0")" -eq "$CLIENTS" ] ||
    die "$name: at the end clients are on $(t "$name" .clients.final_server)"
}

# --- 0. a new build to deploy ----------------------------------------------------------------
OLD_BUILD=$(pinned blue)
IN "$CONTAINER_REPO/systemd/install.sh" --bindir "$CONTAINER_BINDIR" "$CONTAINER_CI_BIN/concurrent-socket-faults" > "$WORK/install-new.log"
NEW_BUILD=$(IN readlink /var/lib/concurrent-socket/candidate)
[ "$NEW_BUILD" != "$OLD_BUILD" ] || die "the new build landed in the old build's directory $OLD_BUILD"
assert_build "install" blue "$OLD_BUILD"
assert_build "install" green "$OLD_BUILD"
log "new build $NEW_BUILD installed as the candidate; blue runs and pins $OLD_BUILD"

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
log "scenario 3: green is killed (kill -9) as soon as it gets new connections"
green_faults
start_traffic crash
# routed_to_green: Traefik applies routing to green; on the direct path green joined the
# reuseport group (wsctl's switch step is done).
routed_to_green() {
  if [ "$DATA_PATH" = direct ]; then
    grep -q 'ok\] switch' "$WORK/crash.deploy.log" 2> /dev/null
  else
    curl -fsS "http://127.0.0.1:$TRAEFIK_API/api/http/services/ws-active@file" 2> /dev/null |
      jq -e '[.weighted.services[].name] == ["ws-green"]' > /dev/null
  fi
}
(
  deadline=$((SECONDS + 60))
  until routed_to_green; do
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
assert_moved normal blue green
[ "$(t normal '.new.by_server.green // 0')" -gt 0 ] || die "normal: no new connection reached green"
# shellcheck disable=SC2046 # the unit names are words
[ "$(IN systemctl is-active $(colour_units blue) | sort -u)" = inactive ] ||
  die "normal: blue's units are not all stopped"
[ "$(cat "$WORK/state/active")" = green ] || die "normal: active file says $(cat "$WORK/state/active")"
[ "$(serving_colour)" = green ] || die "normal: new connections reach $(serving_colour), not green alone"
# green was deployed with the new build; blue, stopped, keeps the old one in its profile.
assert_build normal green "$NEW_BUILD"
assert_build normal blue "$OLD_BUILD"
d normal '.steps[0].detail' | grep -qF "$PROFILES/green -> $NEW_BUILD (was $OLD_BUILD)" ||
  die "normal: the deploy step does not report the pin: $(d normal '.steps[0].detail')"
echo "RESULT builds: the deploy pinned green to the new build $NEW_BUILD; blue's profile keeps $OLD_BUILD"

# --- status, dry run and manual rollback ---------------------------------------------------
wsctl --json status > "$WORK/status.json"
# shellcheck disable=SC2016 # jq variables
jq -e --arg new "$NEW_BUILD" --arg old "$OLD_BUILD" --arg path "$DATA_PATH" '.active == "green" and .routing == "green=1" and .dataPath == $path
  and .traefikApplies == (if $path == "direct" then null else "green=1" end) and .warnings == [] and
  ([.instances[] | select(.colour == "green") | .unit.activeState == "active" and .health.serverId == "green"
    and .pinned == $new and .runs == $new + "/bin/concurrent-socket"] == [true]) and
  ([.instances[] | select(.colour == "blue") | [.unit.activeState, .pinned, .runs]] == [["inactive", $old, null]])' "$WORK/status.json" > /dev/null ||
  die "wsctl status after the deploy: $(cat "$WORK/status.json")"
wsctl status | sed 's/^/    /'

refused_rc=0
wsctl rollback > "$WORK/refused.log" 2>&1 || refused_rc=$?
[ "$refused_rc" -eq 2 ] || die "rollback to a stopped blue exited $refused_rc, expected 2 (refused)"
[ "$(cat "$WORK/state/active")" = green ] || die "a refused rollback changed the active colour"
echo "RESULT refused rollback (blue stopped): exit 2: $(tail -1 "$WORK/refused.log")"

IN systemctl start ws-metrics@blue.socket ws@blue.socket ws@blue.service
# Started again after the new build was installed, blue runs its own, old build.
assert_build "blue restarted" blue "$OLD_BUILD"
wsctl --json deploy --to blue --dry-run > "$WORK/dry.json" 2> /dev/null
# The pin is part of the deploy step (start) and of the rollback's stop, as in a real deploy.
# shellcheck disable=SC2016 # jq variables
jq -e --arg pin "pin $PROFILES/blue -> $NEW_BUILD (was $OLD_BUILD); systemctl start " \
  --arg unpin "; pin $PROFILES/blue -> $OLD_BUILD again" \
  '.outcome == "planned" and [.steps[].name] == ["deploy","health","load-test","switch","verify","drain"] and
  [.rollback[].name] == ["restore-routing","confirm-routing","stop-blue"] and all(.steps[], .rollback[]; .status == "planned") and
  (.steps[0].detail | startswith($pin)) and (.rollback[2].detail | endswith($unpin))' \
  "$WORK/dry.json" > /dev/null || die "dry run: $(cat "$WORK/dry.json")"
[ "$(cat "$WORK/state/active")" = green ] || die "the dry run changed the active colour"
assert_build "dry run" blue "$OLD_BUILD"
echo "RESULT dry run: 6 steps planned and 3 rollback steps, pinning blue to $NEW_BUILD and back to $OLD_BUILD; nothing changed"

log "scenario 5: wsctl rollback to blue, started again, while green serves"
start_traffic rollback 3002
run_deploy rollback --json rollback
stop_traffic rollback
result_line rollback
[ "$DEPLOY_RC" -eq 0 ] || die "wsctl rollback exited $DEPLOY_RC"
[ "$(t rollback .failed_attempts)" -eq 0 ] || die "rollback: failed connection attempts: $(t rollback .failures)"
assert_moved rollback green blue
[ "$(cat "$WORK/state/active")" = blue ] || die "rollback: active file says $(cat "$WORK/state/active")"
[ "$(IN systemctl is-active ws@green.service)" = inactive ] || die "rollback: green still runs"

# The rollback rolled the code back too: blue crashes and systemd restarts it (Restart=
# on-failure) from its profile, on the old build, though the newest installed is the new one.
killed=$(main_pid ws@blue.service)
assert_build rollback blue "$OLD_BUILD"
IN kill -9 "$killed"
deadline=$((SECONDS + 20))
until [ "$(main_pid ws@blue.service)" != "$killed" ] && [ "$(main_pid ws@blue.service)" != 0 ] &&
  [ "$(IN systemctl is-active ws@blue.service)" = active ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "blue was not restarted within 20 s of kill -9"
  sleep 0.1
done
assert_build "blue after kill -9" blue "$OLD_BUILD"
[ "$(serving_colour)" = blue ] || die "after kill -9 new connections reach $(serving_colour), not blue alone"
echo "RESULT rollback keeps the code: blue killed (pid $killed), restarted by systemd as pid $(main_pid ws@blue.service) on $(build_of blue), the old build (new build: $NEW_BUILD)"

# --- 5b. chat across the switch: both colours on one Redis, and the in-memory control -----
# Rooms of users publishing and subscribed through the public address while wsctl moves
# them: drained from one colour (goodbye server_shutdown), they reconnect to the other and
# subscribe with `recover` from the last offset they saw (ci/deploy/chat.sh). With
# BROKER=redis (a redis-server in the container's network, append-only file) both colours
# are one chat: 0 failed connections and, over every recovered subscription, 0 publications
# lost (by offset, by acknowledgement, and by count: every acknowledged publication received
# by every user of its room, live or by recovery) or doubled; recovered:false must not
# happen (Redis keeps the history). Then the same
# with BROKER=memory (green -> blue, back to where scenario 6 starts): each colour is a
# chat of its own, so the moved users get recovered:false and lose what was published
# meanwhile. That control is printed, not judged, except that it must show the loss: else
# the Redis run's 0 would prove nothing.
log "scenario 5b: chat through the switch, both colours on one Redis"
redis_start "$WORK/redis" aof
name=chat-redis users=$((CHAT_ROOMS * CHAT_ROOM_SIZE))
chat_deploy "$name" blue green BROKER=redis "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
echo "RESULT $name ($DATA_PATH): wsctl exit $DEPLOY_RC ($(d "$name" .outcome)), deploy time $(d "$name" '.totalSeconds * 10 | round / 10')s; $(chat_counts "$name")"
[ "$DEPLOY_RC" -eq 0 ] || die "$name: wsctl deploy exited $DEPLOY_RC: $(d "$name" .error)"
# shellcheck disable=SC2016 # jq variables
jq -e --argjson users "$users" '.connections.failed == 0 and .connections.reconnects >= $users and
  (.channels.counts | .missing == 0 and .duplicates == 0 and .out_of_order == 0 and .acked_lost == 0
    and .not_recovered == 0 and .epoch_changes == 0 and .acked_unrecovered == 0 and .recovered >= $users
    and .publish_refused == 0 and .published > 0)
  and .messages.protocol_errors == 0 and .failed_thresholds == []' "$WORK/$name.load.json" > /dev/null ||
  die "$name: the chat lost, doubled or failed something across the deploy: $(jq -c '.connections, .channels.counts, .failed_thresholds' "$WORK/$name.load.json")"
[ "$(l "$name" never_received)" -eq 0 ] ||
  die "$name: $(l "$name" never_received) of the acknowledged publications x room size were never received by a room user"
[ "$(most_on_both "$name")" -gt 0 ] ||
  die "$name: no moment with users on both colours: the scenario did not test a mixed chat"
redis_stop

log "scenario 5b control: the same chat with BROKER=memory, green -> blue (printed, not a pass of anything)"
chat_deploy chat-memory green blue BROKER=memory
echo "RESULT chat-memory CONTROL, in-memory broker, not the guarantee ($DATA_PATH): wsctl exit $DEPLOY_RC ($(d chat-memory .outcome)); $(chat_counts chat-memory)"
[ "$DEPLOY_RC" -eq 0 ] || die "chat-memory: wsctl deploy exited $DEPLOY_RC: $(d chat-memory .error)"
[ "$(l chat-memory .channels.counts.not_recovered)" -gt 0 ] ||
  die "chat-memory: the in-memory control recovered every moved subscription: the chat scenario cannot tell a lossy broker"
BROKER_SETTINGS=()

# queued_on_listeners: connections waiting in the accept queues of the shared port's listeners.
queued_on_listeners() { ss -Hltn "sport = :$DIRECT_PORT" | awk '{q += $2} END {print q + 0}'; }

# join_colour COLOUR: the colour runs and holds a listener on the shared port.
join_colour() {
  local colour=$1 deadline=$((SECONDS + 20))
  IN systemctl stop "ws@$colour.service"
  IN systemctl start "ws-metrics@$colour.socket" "ws@$colour.socket" "ws-public@$colour.socket" "ws@$colour.service"
  wait_active "ws@$colour.service" || die "$colour did not start"
  until IN ss -Hltnp "sport = :$DIRECT_PORT" | grep -q "pid=$(main_pid "ws@$colour.service"),"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$colour does not hold a listener on $DIRECT_PORT"
    sleep 0.05
  done
}

# flip_round MIGRATE: blue and green in the group, blue stopped (SIGSTOP), a burst of
# connections (the ones on blue queue), then blue leaves: its shared socket stopped, then its
# process killed, so that it never accepts what waits in its queue. With
# net.ipv4.tcp_migrate_req=1 none may fail and green must answer all; with 0 (the control)
# the queued ones must fail (reset), or the test would prove nothing.
flip_round() {
  local migrate=$1 count=200 name=flip-$1 blue_pid deadline queued=0 finished=0 burst
  ss -V > /dev/null || die "ss (iproute2) is needed for the flip test"
  sysctl -qw net.ipv4.tcp_migrate_req="$migrate"
  join_colour blue
  join_colour green
  blue_pid=$(main_pid ws@blue.service)
  IN kill -STOP "$blue_pid"
  rm -f "$WORK/$name.progress"
  "$VENV/bin/python" "$REPO/ci/deploy/flip-queue.py" --url "$PUBLIC" --count "$count" \
    --progress "$WORK/$name.progress" --report "$WORK/$name.json" &
  burst=$!
  # Every connection either answered by green or waiting on blue's listener.
  deadline=$((SECONDS + 30))
  until [ $((finished + queued)) -ge "$count" ] && [ "$queued" -gt 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { IN kill -CONT "$blue_pid"; die "$name: $finished answered and $queued queued of $count after 30 s"; }
    sleep 0.1
    finished=$(cat "$WORK/$name.progress" 2> /dev/null || echo 0)
    queued=$(queued_on_listeners)
  done
  log "$name: $queued connections wait on the stopped blue's listener, $finished answered by green; blue leaves"
  IN systemctl stop ws-public@blue.socket
  IN kill -KILL "$blue_pid"
  wait "$burst" || die "$name: the burst client failed"
  IN systemctl stop ws@blue.service ws@blue.socket ws-metrics@blue.socket
  echo "RESULT flip tcp_migrate_req=$migrate: $queued of $count connections queued on blue when it left; answered by server $(jq -c .by_server "$WORK/$name.json"), failed $(jq -c .failed "$WORK/$name.json")"
  if [ "$migrate" = 1 ]; then
    [ "$(jq .answered "$WORK/$name.json")" -eq "$count" ] ||
      die "$name: $(jq -c '.failed, .errors' "$WORK/$name.json") with tcp_migrate_req=1"
    [ "$(jq '.by_server.green // 0' "$WORK/$name.json")" -eq "$count" ] || die "$name: not all on green: $(jq -c .by_server "$WORK/$name.json")"
  else
    [ "$(jq '[.failed[]] | add // 0' "$WORK/$name.json")" -gt 0 ] ||
      die "$name: the control (tcp_migrate_req=0) lost nothing: the test does not queue on blue"
  fi
}

if [ "$DATA_PATH" = direct ]; then
  # --- 6. the direct path flips all at once: a gradual switch is refused -------------------
  log "scenario 6 (direct): a deploy in 3 steps is refused, nothing changes"
  gradual_rc=0
  wsctl --json deploy --to green --steps 3 > "$WORK/gradual.json" 2> "$WORK/gradual.log" || gradual_rc=$?
  [ "$gradual_rc" -eq 2 ] || die "gradual on the direct path exited $gradual_rc, expected 2 (refused): $(cat "$WORK/gradual.log")"
  grep -q 'all at once' "$WORK/gradual.log" || die "the refusal does not say why: $(cat "$WORK/gradual.log")"
  [ "$(IN systemctl is-active ws@green.service)" = inactive ] || die "a refused deploy started green"
  echo "RESULT gradual (direct): refused (exit 2): $(jq -r .error "$WORK/gradual.json")"

  # --- 7. connections queued on blue's listener move to green when blue leaves ------------
  log "scenario 7 (direct): a burst queued on a stopped blue (SIGSTOP), then the flip"
  flip_round 0
  flip_round 1
  log "all deploy scenarios passed on the direct path; its table (ci/deploy/table.py):"
  "$VENV/bin/python" "$REPO/ci/deploy/table.py" "$WORK" | tee "$LOG_DIR/deploy-table-direct.md"
  exit 0
fi

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
assert_moved gradual blue green
assert_build gradual green "$NEW_BUILD"
[ -z "$(traefik_errors)" ] || die "Traefik reports broken configuration: $(traefik_errors)"
log "all deploy scenarios passed; docs/deploy.md's table from this run (ci/deploy/table.py):"
"$VENV/bin/python" "$REPO/ci/deploy/table.py" "$WORK" | tee "$LOG_DIR/deploy-table.md"
