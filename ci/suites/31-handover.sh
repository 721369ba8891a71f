#!/usr/bin/env bash
# The handover (docs/handover.md) under a real systemd as PID 1 (ci/systemd/lib.sh), with the
# units of systemd/ installed by systemd/install.sh:
#  1. HELD connections (default 10,000) each send a numbered message every INTERVAL s while a
#     churn client opens new connections at CHURN_RATE/s; `systemctl reload ws@blue` twice, the
#     second time to another build (the fault-injection build, no fault on, moved in as the
#     instance's profile as wsctl does). Every held connection is still open on the same TCP
#     connection, every message answered exactly once and in order, no close frame and no
#     goodbye received; each new process's journal says it took them all over; the store is
#     empty after each; the longest time without a successful new connection is the gap.
#     Channel subscribers (SUBSCRIBERS over CHANNELS channels, BROKER=memory) with a publisher
#     per channel publishing every PUBLISH_INTERVAL s all along: every subscriber receives every
#     publication once, in order, in one epoch per channel; no goodbye, close or unsubscribed.
#  1b. `nixos-rebuild switch` of a colour upgraded by handover (nixos/module.nix,
#     instances.<name>.upgrade = "handover"), done step by step as switch-to-configuration does
#     it for a changed unit with X-ReloadIfChanged=true: the unit drop-in and the activation the
#     module's evaluation renders for the running build (nixos/tests/eval/handover-switch.nix),
#     then the new generation's: its activation (the profile moves), its drop-in,
#     `systemctl daemon-reload`, `systemctl reload`. Every connection kept, no goodbye or close,
#     and the new main process runs the new build with the new unit; then a generation whose
#     build fails check-config: the reload fails and the process serves on.
#  2. A new process that cannot read the state (FAULT_HANDOVER_UNREADABLE=1): every handed-over
#     connection gets goodbye server_shutdown and close 1001, and every client reconnects.
#  3. A bad setting in the environment file: `systemctl reload` fails in check-config
#     (ExecReload=), and the running process serves on.
#  4. `systemctl stop`: goodbye server_shutdown and close 1001 to everyone, the store empty.
# RESULT lines: `RESULT handover: N/N connections kept across 2 restarts, 0 messages lost,
# new-connection gap X ms` and `RESULT handover, channels: ... lost 0, duplicated 0`.
# Adaptations to this container: LimitNOFILE=20000 (lib.sh), so MAX_CONNECTIONS=19000;
# MAX_CONNECTIONS_PER_IP=0 and MAX_PENDING_HTTP_PER_IP=0 (every client is 127.0.0.1).
# needs: setup release faults
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$REPO/ci/systemd/lib.sh"

HELD=${HELD:-10000}             # connections held across the two handovers
INTERVAL=${INTERVAL:-5}         # seconds between one held connection's messages
CHURN_RATE=${CHURN_RATE:-100}   # new connections per second during the handovers
FAULT_HELD=${FAULT_HELD:-500}   # connections through the failed handover and the stop
SUBSCRIBERS=${SUBSCRIBERS:-500} # channel subscribers held across the two handovers
CHANNELS=${CHANNELS:-5}         # channels they subscribe to, each with one publisher
PUBLISH_INTERVAL=${PUBLISH_INTERVAL:-0.1} # seconds between one publisher's publications
PYTHON="$VENV/bin/python"
WORK=$(mktemp -d)
UNIT=ws@blue.service
PROFILE=/var/lib/concurrent-socket/profiles/blue
BACKGROUND=()
cleanup() {
  local pid
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2> /dev/null || true; done
  [ -z "$SYSTEMD_NSPAWN_PID" ] || IN journalctl --no-pager -o short-precise > "$LOG_DIR/31-handover-journal.log" 2>&1 || true
  stop_systemd
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN_DIR/concurrent-socket-faults" ] || die "$BIN_DIR/concurrent-socket-faults missing (ci/test-all builds it)"
"$PYTHON" -c 'import websockets' 2> /dev/null || die "python websockets missing in $VENV (ci/setup)"

# held NAME COUNT [ARGS...]: the held-connections client in the background; report $WORK/NAME.json.
held() {
  local name=$1 count=$2; shift 2
  IN_NET "$PYTHON" "$REPO/ci/systemd/handover_client.py" --url ws://127.0.0.1:3001 \
    --connections "$count" --prefix "$name" --interval "$INTERVAL" \
    --ready-file "$WORK/$name.ready" --stop-file "$WORK/$name.stop" --report "$WORK/$name.json" "$@" &
  BACKGROUND+=($!)
  wait_file "$WORK/$name.ready" 300 || die "$name: $count connections did not open in 300 s"
}
# subscribed NAME: the channel client (subscribers and publishers) in the background; report
# $WORK/NAME.json.
subscribed() {
  local name=$1
  IN_NET "$PYTHON" "$REPO/ci/systemd/channel_client.py" --url ws://127.0.0.1:3001 \
    --subscribers "$SUBSCRIBERS" --channels "$CHANNELS" --prefix "$name" \
    --publish-interval "$PUBLISH_INTERVAL" --ready-file "$WORK/$name.ready" \
    --stop-file "$WORK/$name.stop" --report "$WORK/$name.json" &
  BACKGROUND+=($!)
  wait_file "$WORK/$name.ready" 300 || die "$name: $SUBSCRIBERS subscribers did not subscribe in 300 s"
}
# finish NAME: stops the held client NAME and waits for its report.
finish() {
  touch "$WORK/$1.stop"
  wait_file "$WORK/$1.json" 60 || die "$1: no report"
  jq -c . "$WORK/$1.json"
}

# reload_to_new_process: `systemctl reload`, then waits until another main process serves;
# prints the new main pid.
reload_to_new_process() {
  local old deadline=$((SECONDS + 60)) new
  old=$(main_pid "$UNIT")
  IN systemctl reload "$UNIT"
  until new=$(main_pid "$UNIT") && [ "$new" != "$old" ] && [ "$new" != 0 ] &&
    [ "$(IN systemctl is-active "$UNIT")" = active ]; do
    [ "$SECONDS" -lt "$deadline" ] || { IN journalctl -u "$UNIT" --no-pager | tail -30 >&2; die "no new process 60 s after systemctl reload"; }
    sleep 0.05
  done
  echo "$new"
}

# journal_line PID MESSAGE FIELDS: the jq string FIELDS of that process's last journal line
# MESSAGE, waiting for it up to 20 s.
journal_line() {
  local deadline=$((SECONDS + 20)) line
  until line=$(IN journalctl -u "$UNIT" -o json --no-pager "_PID=$1" |
    jq -r --arg m "$2" "select(.MESSAGE == \$m) | $3" | tail -1) && [ -n "$line" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "process $1 logged no '$2'"
    sleep 0.2
  done
  echo "$line"
}

# taken_over PID: "RESUMED UNRESUMABLE SINCE_SIGNAL_MS RESUMED_MS" from that process's journal
# (serving, and every connection resumed, so many ms after SIGUSR2).
taken_over() {
  journal_line "$1" "handover: connections taken over from the previous process" \
    '"\(.RESUMED) \(.UNRESUMABLE) \(.SINCE_SIGNAL_MS) \(.RESUMED_MS)"'
}

# handed_over PID: "ACCEPTED_FOR_MS ELAPSED_MS" of the old process PID: how long it accepted
# on while the connections parked, and how long its handover took (parked, queued, stored).
handed_over() {
  journal_line "$1" "handover: connections left in the file descriptor store" '"\(.ACCEPTED_FOR_MS) \(.ELAPSED_MS)"'
}

# serving_after PID SINCE_MS: ms from SINCE_MS (Unix ms) to process PID's `listening`.
serving_after() {
  local at
  at=$(journal_line "$1" listening '.__REALTIME_TIMESTAMP')
  echo $(((at / 1000) - $2))
}

store_empty() {
  local n
  n=$(prop "$UNIT" NFileDescriptorStore)
  [ "$n" = 0 ] || die "the fd store of $UNIT holds $n entries after $1"
}

# --- set-up --------------------------------------------------------------------------------
boot_systemd ci-handover
install_units blue
printf '%s\n' "MAX_CONNECTIONS=${MAX_CONNECTIONS:-19000}" "MAX_CONNECTIONS_PER_IP=0" "MAX_PENDING_HTTP_PER_IP=0" |
  IN tee /etc/concurrent-socket/blue.env > /dev/null
IN systemctl start ws@blue.socket ws-metrics@blue.socket "$UNIT"
wait_active "$UNIT" || die "$UNIT did not start"
FAULTS_BUILD=/opt/concurrent-socket/builds/faults
RELEASE_BUILD=$(IN readlink -f "$PROFILE")
IN install -D -m 0755 "$CONTAINER_BINDIR/concurrent-socket-faults" "$FAULTS_BUILD/bin/concurrent-socket"
log "FileDescriptorStoreMax=$(prop "$UNIT" FileDescriptorStoreMax) LimitNOFILE=$(prop "$UNIT" LimitNOFILE)"

# --- bench/handover.sh: one reload per connection count, the table ---------------------------
# Near LimitNOFILE (19,000 connections of 20,000 descriptors) the server's descriptors are
# the held connections plus every handshake in progress: a handshake burst beyond the margin
# is shed (closed at accept, the first 19,000 run). So each row starts on an idle server (the
# previous row's connections all gone), opens its held connections BENCH_OPEN_CONCURRENCY at a
# time, and only then starts the churn client, whose handshakes never overlap the ramp.
BENCH_OPEN_CONCURRENCY=${BENCH_OPEN_CONCURRENCY:-50}
# server_idle: until the serving process has no connection and no pending handshake.
server_idle() {
  local deadline=$((SECONDS + 60))
  until [ "$(IN_NET curl -fsS http://127.0.0.1:3001/health | jq '.connections')" = 0 ] &&
    IN_NET curl -fsS http://127.0.0.1:9464/metrics | grep -x 'websocket_http_pending 0' > /dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "the server still holds connections 60 s after the previous row"
    sleep 0.2
  done
}
# bench_row N: N held connections and the churn client, one `systemctl reload`; prints the row.
bench_row() {
  local n=$1 old new reload_ms resumed unresumable since all accepted handed serving gap fds
  server_idle
  held "held$n" "$n" --open-concurrency "$BENCH_OPEN_CONCURRENCY"
  IN_NET "$PYTHON" "$REPO/ci/systemd/churn.py" --url ws://127.0.0.1:3001 --prefix "churn$n" \
    --rate "$CHURN_RATE" --duration 600 --stop-file "$WORK/churn$n.stop" --report "$WORK/churn$n.json" &
  BACKGROUND+=($!)
  sleep "$INTERVAL"
  old=$(main_pid "$UNIT")
  # The old process's descriptors at the reload: the held and churn connections, its own.
  fds=$(IN find "/proc/$old/fd" -mindepth 1 -maxdepth 1 | wc -l)
  reload_ms=$(date +%s%3N)
  new=$(reload_to_new_process)
  read -r resumed unresumable since all <<< "$(taken_over "$new")"
  read -r accepted handed <<< "$(handed_over "$old")"
  serving=$(serving_after "$new" "$reload_ms")
  sleep "$INTERVAL"
  finish "held$n" > /dev/null
  touch "$WORK/churn$n.stop"
  wait_file "$WORK/churn$n.json" 60 || die "churn$n: no report"
  gap=$(jq -r '.longest_gap_s * 1000 | round' "$WORK/churn$n.json")
  if [ "$resumed" -lt "$n" ] || [ "$unresumable" != 0 ] || [ "$(field "held$n" .still_open)" != "$n" ] ||
    [ "$(field "churn$n" .failed)" != 0 ]; then
    IN_NET curl -fsS http://127.0.0.1:9464/metrics | grep -E '^websocket_(accept_errors|http_refused)_total|^websocket_handover' >&2 || true
    die "$n connections: resumed $resumed, unresumable $unresumable, $(field "held$n" .still_open) still open, $(field "churn$n" .failed) new connections failed ($(field "churn$n" '{failures, failure_examples}')); the old process had $fds descriptors, the new one $(IN find "/proc/$new/fd" -mindepth 1 -maxdepth 1 | wc -l)"
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$fds" "$serving" "$since" "$all" "$gap" "$accepted" "$handed"
}

# The table goes to $LOG_DIR/handover-bench.md row by row, so that the rows measured survive
# a failure in a later one.
if [ -n "${HANDOVER_BENCH:-}" ]; then
  table="$LOG_DIR/handover-bench.md"
  {
    echo "| connections | old process's fds (of $(prop "$UNIT" LimitNOFILE)) | reload to serving (ms) | SIGUSR2 to serving (ms) | SIGUSR2 to all resumed (ms) | new-connection gap (ms) | old process accepting (ms) | old process handover (ms) |"
    echo "|---|---|---|---|---|---|---|---|"
  } > "$table"
  for n in $HANDOVER_BENCH; do bench_row "$n" >> "$table"; done
  cat "$table"
  exit 0
fi

# --- 1. two handovers under traffic ------------------------------------------------------
IN_NET "$PYTHON" "$REPO/ci/systemd/churn.py" --url ws://127.0.0.1:3001 --prefix churn \
  --rate "$CHURN_RATE" --duration 600 --stop-file "$WORK/churn.stop" --report "$WORK/churn.json" &
BACKGROUND+=($!)
held kept "$HELD"
log "$HELD connections open, each sending every $INTERVAL s"
subscribed chan
log "$SUBSCRIBERS subscribers on $CHANNELS channels, each channel published to every $PUBLISH_INTERVAL s"
sleep "$INTERVAL"
exe_before=$(IN sha256sum "$(IN readlink -f "$PROFILE")/bin/concurrent-socket" | cut -c1-12)
old_pid=$(main_pid "$UNIT")
first=$(reload_to_new_process)
read -r resumed1 unresumable1 since1 all1 <<< "$(taken_over "$first")"
echo "MEASURED handover 1: $resumed1 resumed, $unresumable1 unresumable, serving $since1 ms after SIGUSR2, all resumed after $all1 ms; old process: $(handed_over "$old_pid" | awk '{print "accepting for " $1 " ms, handed over in " $2 " ms"}')"
store_empty "the first handover"
sleep "$INTERVAL"
IN ln -sfn "$FAULTS_BUILD" "$PROFILE"
second=$(reload_to_new_process)
exe_after=$(IN sha256sum "$(IN readlink -f "/proc/$second/exe")" | cut -c1-12)
read -r resumed2 unresumable2 since2 all2 <<< "$(taken_over "$second")"
echo "MEASURED handover 2 (build $exe_before -> $exe_after): $resumed2 resumed, $unresumable2 unresumable, serving $since2 ms after SIGUSR2, all resumed after $all2 ms; old process: $(handed_over "$first" | awk '{print "accepting for " $1 " ms, handed over in " $2 " ms"}')"
[ "$exe_before" != "$exe_after" ] || die "the second handover did not change the build"
store_empty "the second handover"
sleep "$INTERVAL"
finish kept
finish chan
touch "$WORK/churn.stop"
wait_file "$WORK/churn.json" 60 || die "churn: no report"
jq -c '{attempts, succeeded, failed, failures, longest_gap_s}' "$WORK/churn.json"
# The churn client's connections open at that moment are handed over too.
if [ "$resumed1" -lt "$HELD" ] || [ "$resumed2" -lt "$HELD" ] || [ "$unresumable1" != 0 ] || [ "$unresumable2" != 0 ]; then
  die "resumed $resumed1 and $resumed2 (unresumable $unresumable1 and $unresumable2); $HELD held"
fi
[ "$(field kept .still_open)" = "$HELD" ] || die "$(field kept .still_open) of $HELD held connections still open"
[ "$(field kept .server_closes)" = "{}" ] || die "close frames received: $(field kept .server_closes)"
[ "$(field kept .goodbyes)" = "{}" ] || die "goodbyes received: $(field kept .goodbyes)"
for counter in missing out_of_order duplicates; do
  [ "$(field kept ".$counter")" = 0 ] || die "$(field kept ".$counter") answers $counter"
done
[ "$(field kept .unexpected)" = "{}" ] || die "unexpected messages: $(field kept .unexpected)"
[ "$(field kept .sent)" = "$(field kept .answered)" ] || die "sent $(field kept .sent), answered $(field kept .answered)"
[ "$(field churn .failed)" = 0 ] || die "new connections failed during the handovers: $(field churn .failures)"
gap_ms=$(jq -r '.longest_gap_s * 1000 | round' "$WORK/churn.json")
echo "MEASURED $(field kept .sent) messages sent by $HELD connections across both handovers, all answered once in order"
echo "RESULT handover: $HELD/$HELD connections kept across 2 restarts, 0 messages lost, new-connection gap $gap_ms ms"
for counter in lost duplicated out_of_order; do
  [ "$(field chan ".$counter")" = 0 ] || die "channels: $(field chan ".$counter") publications $counter"
done
for outcome in publish_errors unsubscribed goodbyes server_closes unexpected; do
  [ "$(field chan ".$outcome")" = "{}" ] || die "channels: $outcome $(field chan ".$outcome")"
done
[ "$(field chan .epochs)" = 1 ] || die "channels: $(field chan .epochs) epochs in one channel"
published=$(field chan .published)
if [ "$published" = 0 ] || [ "$(field chan .received)" != "$(field chan .expected)" ]; then
  die "channels: received $(field chan .received) of $(field chan .expected) publications due ($published published)"
fi
echo "RESULT handover, channels: $SUBSCRIBERS/$SUBSCRIBERS subscribers on $CHANNELS channels received every one of $published publications across 2 restarts ($(field chan .received) deliveries), lost 0, duplicated 0, one epoch per channel"

# --- 1b. nixos-rebuild switch of a colour upgraded by handover -----------------------------
# generation PACKAGE LIMIT: installs what the module renders for blue on PACKAGE with
# tuning.limitNOFILE = LIMIT, as an activation and switch-to-configuration do (the profile
# moved, then ws@blue.service.d/overrides.conf).
DROPIN=/etc/systemd/system/ws@blue.service.d/overrides.conf
generation() {
  local rendered
  rendered=$(NIX_CONFIG="$NIX_CONFIG"$'\nbuild-users-group =' nix-instantiate --eval --strict --json \
    --argstr package "$1" --arg limitNOFILE "$2" "$REPO/nixos/tests/eval/handover-switch.nix") ||
    die "nixos/tests/eval/handover-switch.nix does not evaluate"
  IN sh -euc "$(jq -r .activation <<< "$rendered")"
  IN mkdir -p "$(dirname "$DROPIN")"
  jq -r .dropIn <<< "$rendered" | IN tee "$DROPIN" > /dev/null
}
build_of() { IN sha256sum "$(IN readlink -f "$1")" | cut -c1-12; }
# The running generation: blue on the build it runs now (the second handover's).
generation "$FAULTS_BUILD" "$CONTAINER_FILE_LIMIT"
IN systemctl daemon-reload
[ "$(prop "$UNIT" LimitNOFILE)" = "$CONTAINER_FILE_LIMIT" ] || die "the module's drop-in is not in effect"
held switched "$FAULT_HELD"
sleep "$INTERVAL"
before=$(main_pid "$UNIT")
# The new generation, another package: the activation moves the profile, then
# switch-to-configuration reloads systemd and reloads the changed unit (X-ReloadIfChanged).
# Its LimitNOFILE is one lower, to see that the process systemd starts after the handover
# gets the unit as the daemon-reload left it.
generation "$RELEASE_BUILD" $((CONTAINER_FILE_LIMIT - 1))
IN grep -qx 'X-ReloadIfChanged=true' "$DROPIN" || die "the new generation's drop-in has no X-ReloadIfChanged=true"
IN systemctl daemon-reload
switched=$(reload_to_new_process)
read -r resumed4 unresumable4 _ _ <<< "$(taken_over "$switched")"
store_empty "the switch"
sleep "$INTERVAL"
# Then a generation whose build fails its check-config (here: cannot run at all): the reload
# fails, as switch-to-configuration would report, and the running process serves on.
BROKEN_BUILD=/opt/concurrent-socket/builds/broken
IN mkdir -p "$BROKEN_BUILD/bin"
printf '%s\n' '#!/bin/sh' 'echo "this build cannot run" >&2' 'exit 1' | IN tee "$BROKEN_BUILD/bin/concurrent-socket" > /dev/null
IN chmod 0755 "$BROKEN_BUILD/bin/concurrent-socket"
generation "$BROKEN_BUILD" $((CONTAINER_FILE_LIMIT - 1))
IN systemctl daemon-reload
if IN systemctl reload "$UNIT" 2> /dev/null; then die "a switch to a build that fails check-config: systemctl reload succeeded"; fi
if [ "$(main_pid "$UNIT")" != "$switched" ] || [ "$(IN systemctl is-active "$UNIT")" != active ]; then
  die "a failed switch did not leave process $switched serving"
fi
sleep "$INTERVAL"
finish switched
for counter in missing out_of_order duplicates; do
  [ "$(field switched ".$counter")" = 0 ] || die "switch: $(field switched ".$counter") answers $counter"
done
if [ "$(field switched .still_open)" != "$FAULT_HELD" ] || [ "$(field switched .server_closes)" != "{}" ] ||
  [ "$(field switched .goodbyes)" != "{}" ] || [ "$resumed4" -lt "$FAULT_HELD" ] || [ "$unresumable4" != 0 ]; then
  die "switch: $(field switched .still_open) of $FAULT_HELD open, closes $(field switched .server_closes), goodbyes $(field switched .goodbyes), resumed $resumed4, unresumable $unresumable4"
fi
exe_switched=$(build_of "/proc/$switched/exe")
if [ "$exe_switched" != "$(build_of "$RELEASE_BUILD/bin/concurrent-socket")" ] ||
  [ "$exe_switched" = "$(build_of "$FAULTS_BUILD/bin/concurrent-socket")" ]; then
  die "after the switch process $switched runs build $exe_switched, not the new generation's"
fi
read -r _ _ _ limit _ < <(IN grep '^Max open files' "/proc/$switched/limits")
[ "$limit" = $((CONTAINER_FILE_LIMIT - 1)) ] || die "after the switch process $switched has LimitNOFILE $limit, not the new generation's $((CONTAINER_FILE_LIMIT - 1))"
echo "RESULT handover, nixos-rebuild switch (upgrade = \"handover\"): the module's drop-in and activation for the next package, daemon-reload, reload: $FAULT_HELD/$FAULT_HELD connections kept (0 goodbyes, 0 closes, every answer once in order), process $before -> $switched, build $(build_of "$FAULTS_BUILD/bin/concurrent-socket") -> $exe_switched, the new unit's LimitNOFILE $limit; then a generation whose build fails check-config: reload refused, process $switched served on and kept them all"
IN rm "$DROPIN"
IN systemctl daemon-reload
# The next process is the fault-injection build again: step 2 needs its fault.
IN ln -sfn "$FAULTS_BUILD" "$PROFILE"

# --- 2. a new process that cannot read the state -------------------------------------------
IN mkdir -p /etc/systemd/system/ws@blue.service.d
printf '%s\n' "# CI only: the new process treats the handed-over state as unreadable." "[Service]" \
  "Environment=FAULT_HANDOVER_UNREADABLE=1" | IN tee /etc/systemd/system/ws@blue.service.d/ci-unreadable.conf > /dev/null
IN systemctl daemon-reload
held unreadable "$FAULT_HELD" --reconnect
broken=$(reload_to_new_process)
read -r resumed3 unresumable3 _ _ <<< "$(taken_over "$broken")"
deadline=$((SECONDS + 60))
until [ "$(IN_NET curl -fsS http://127.0.0.1:3001/health | jq .connections)" = "$FAULT_HELD" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the clients did not all reconnect"
  sleep 0.2
done
finish unreadable
store_empty "the unreadable handover"
[ "$(field unreadable '.goodbyes.server_shutdown // 0')" = "$FAULT_HELD" ] || die "not every connection got goodbye server_shutdown: $(field unreadable .goodbyes)"
[ "$(field unreadable '.server_closes["1001"] // 0')" = "$FAULT_HELD" ] || die "not every connection got close 1001: $(field unreadable .server_closes)"
[ "$(field unreadable .reconnected)" = "$FAULT_HELD" ] || die "$(field unreadable .reconnected) of $FAULT_HELD reconnected"
if [ "$resumed3" != 0 ] || [ "$unresumable3" != "$FAULT_HELD" ]; then die "unreadable state: resumed $resumed3, unresumable $unresumable3"; fi
echo "RESULT handover, state unreadable: $FAULT_HELD/$FAULT_HELD connections closed with goodbye server_shutdown and 1001 by the new process, all reconnected"
IN rm /etc/systemd/system/ws@blue.service.d/ci-unreadable.conf
IN systemctl daemon-reload

# --- 3. a bad setting refuses the reload: the process serves on -----------------------------
IN cp /etc/concurrent-socket/blue.env /etc/concurrent-socket/blue.env.good
echo "MAX_CONNECTIONS=lots" | IN tee -a /etc/concurrent-socket/blue.env > /dev/null
before=$(main_pid "$UNIT")
if IN systemctl reload "$UNIT" 2> /dev/null; then die "systemctl reload succeeded with MAX_CONNECTIONS=lots"; fi
if [ "$(main_pid "$UNIT")" != "$before" ] || [ "$(IN systemctl is-active "$UNIT")" != active ]; then
  die "a refused reload did not leave process $before serving"
fi
IN_NET curl -fsS http://127.0.0.1:3001/health > /dev/null || die "no /health after a refused reload"
IN mv /etc/concurrent-socket/blue.env.good /etc/concurrent-socket/blue.env
echo "RESULT handover, bad setting: systemctl reload refused by check-config, process $before serves on"

# --- 4. systemctl stop still says goodbye ---------------------------------------------------
held stopped "$FAULT_HELD"
IN systemctl stop "$UNIT"
finish stopped
store_empty "systemctl stop"
[ "$(field stopped '.goodbyes.server_shutdown // 0')" = "$FAULT_HELD" ] || die "stop: goodbyes $(field stopped .goodbyes)"
[ "$(field stopped '.server_closes["1001"] // 0')" = "$FAULT_HELD" ] || die "stop: closes $(field stopped .server_closes)"
echo "RESULT handover, systemctl stop: $FAULT_HELD/$FAULT_HELD connections got goodbye server_shutdown and 1001; the fd store is empty"
