#!/usr/bin/env bash
# The systemd units (systemd/) under a real systemd, with the real server binary.
#  0. `systemd-analyze verify` prints nothing for every unit; `systemd-analyze security` scores
#     ws@.service <= 1.5 (printed).
# Then, in a container with systemd as PID 1 (ci/systemd/lib.sh), units installed by
# systemd/install.sh:
#  1. ws@green.socket alone: the first connection starts ws@green.service, which counts as
#     started only once the server said READY=1.
#  2. `systemctl restart ws@green.service` under a steady stream of new connections: none
#     refused or failed; connections open before it get goodbye server_shutdown and close 1001.
#  3. `kill -9` of the main process: systemd restarts it, the socket stays open (no refusal).
#  4. The faults build that stops feeding the watchdog is killed (SIGABRT) and restarted.
#  5. journalctl -u ws@green -o json has the server's structured fields for ws@green.service.
#  6. ws@blue and ws@green serve side by side on their own ports.
#  7. A bad setting fails the start (the server checks its settings first), naming the variable.
#  8. The token key as a credential (docs/systemd.md): a root-only secret file passed with
#     LoadCredential= and AUTH_JWT_SECRET_FILE=%d/jwt-key; a Bearer token of it opens a
#     connection whose connection_established names the user; a missing file fails the start.
# RESULT/MEASURED lines: exposure score, restart gap and failed attempts, the old process's
# drain (exit 0, after its last goodbye, within SHUTDOWN_TIMEOUT), kill -9 gap and which
# attempts failed (only handshakes the killed process had accepted), watchdog.
# Adaptations to this container, each said where it is made: LimitNOFILE=20000 (lib.sh; the
# server's limit is compared with it), MAX_CONNECTIONS_PER_IP=0 and MAX_PENDING_HTTP_PER_IP=0
# in the instances' settings (every test client is 127.0.0.1), step 4's drop-in running the
# faults build instead of the server, and an observer drop-in (ci-exit-status.conf) that logs
# each main process's exit code and status, which systemd itself logs only at debug level when
# the exit is clean.
# needs: setup release faults
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$REPO/ci/systemd/lib.sh"

SERVER=${SERVER_BIN:-$BIN_DIR/concurrent-socket}  # the server under test (ci/systemd/lib.sh installs it too)
CHURN_RATE=${CHURN_RATE:-300}       # new connections per second during restarts
HELD=${HELD:-50}                    # connections open across the graceful restart
SHUTDOWN_TIMEOUT_MS=10000           # the server's default, written in the instances' settings
PYTHON="$VENV/bin/python"
WORK=$(mktemp -d)
CHURN_PID=""                        # the churn client running in the background, if any
cleanup() {
  [ -z "$CHURN_PID" ] || kill "$CHURN_PID" 2> /dev/null || true
  # The container's whole journal, for whoever reads a failure: it is gone after poweroff.
  [ -z "$SYSTEMD_NSPAWN_PID" ] || IN journalctl --no-pager -o short-precise > "$LOG_DIR/30-systemd-journal.log" 2>&1 || true
  stop_systemd
  rm -rf "$WORK"
}
trap cleanup EXIT

for bin in "$SERVER" "$BIN_DIR/concurrent-socket-faults"; do
  [ -x "$bin" ] || die "$bin missing (ci/test-all builds it)"
done
"$PYTHON" -c 'import websockets' 2> /dev/null || die "python websockets missing in $VENV (ci/setup)"

# --- 0. static checks, on the host, in a private mount namespace --------------------------
UNITS=(ws@blue.socket ws-metrics@blue.socket ws@blue.service ws@green.socket ws-metrics@green.socket ws@green.service)

static_checks() {
  # install.sh into tmpfs-covered system paths: the host's own units and files stay untouched,
  # and verify finds the ExecStart binary where the units say (the instance's profile, in
  # /var/lib, pointing at the build in /opt).
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  unshare -m --propagation private bash -c '
    set -euo pipefail
    for dir in /run/systemd /etc/systemd/system /usr/local/bin /opt /var/lib; do
      mkdir -p "$dir" && mount -t tmpfs tmpfs "$dir"
    done
    conf=/run/systemd/ci-conf
    "$1/systemd/install.sh" --no-reload --confdir "$conf" "$2" > /dev/null
    # A second run (an upgrade) keeps the operator'"'"'s settings.
    again=$("$1/systemd/install.sh" --no-reload --confdir "$conf" "$2")
    grep -q "^kept $conf/blue.env" <<< "$again" || { echo "install.sh overwrote a settings file: $again"; exit 1; }
    shift 2
    echo "--- verify"
    systemd-analyze verify --man=no "$@" 2>&1
    echo "--- security"
    systemd-analyze security --offline=true --no-pager ws@green.service 2>&1' _ \
    "$REPO" "$SERVER" "${UNITS[@]}" > "$WORK/static.txt" || { cat "$WORK/static.txt"; die "installing the units failed"; }
  local verify score bad out
  # Bad input: a clear "install.sh: ..." line and a failure, before anything is installed.
  for bad in "--bogus" "--bindir relative $SERVER" "--instances red $SERVER" \
    "/nonexistent/concurrent-socket" "--root"; do
    # shellcheck disable=SC2086  # each case is a word list
    if out=$("$REPO/systemd/install.sh" $bad 2>&1); then die "install.sh accepted: $bad"; fi
    grep -q '^install.sh: ' <<< "$out" || die "install.sh $bad failed without a clear message: $out"
  done
  echo "RESULT install.sh: installs, keeps existing settings on a second run, rejects 5 kinds of bad input"
  verify=$(sed -n '/^--- verify$/,/^--- security$/{/^---/d;p}' "$WORK/static.txt")
  [ -z "$verify" ] || { cat "$WORK/static.txt"; die "systemd-analyze verify printed the above"; }
  echo "RESULT systemd-analyze verify: no output for ${UNITS[*]}"
  score=$(sed -n 's/.*Overall exposure level for ws@green.service: \([0-9.]*\) .*/\1/p' "$WORK/static.txt")
  [ -n "$score" ] || { cat "$WORK/static.txt"; die "no exposure score in systemd-analyze security's output"; }
  grep -v '^✓' "$WORK/static.txt" | sed -n '/^--- security$/,$p'
  echo "MEASURED systemd-analyze security ws@green.service exposure: $score (must be <= 1.5)"
  awk -v s="$score" 'BEGIN { exit !(s <= 1.5) }' || die "exposure $score is above 1.5"
}

# --- helpers -----------------------------------------------------------------------------
# churn NAME PORT ARGS...: ci/systemd/churn.py in the container's network; report $WORK/NAME.json.
churn() {
  local name=$1 port=$2; shift 2
  IN_NET "$PYTHON" "$REPO/ci/systemd/churn.py" --url "ws://127.0.0.1:$port" --prefix "$name" \
    --report "$WORK/$name.json" "$@"
}

# ExecStopPost= gets the main process's $EXIT_CODE and $EXIT_STATUS from systemd; "+" runs it
# outside the unit's sandbox. Its line lands in the unit's journal, under the invocation id.
log_exit_status() {
  printf '%s\n' "# CI only: record how each main process ended (exit_status reads it)." "[Service]" \
    "ExecStopPost=+/bin/sh -c 'echo \"ci-exit-status: \$\$EXIT_CODE \$\$EXIT_STATUS\"'" |
    IN tee /etc/systemd/system/ws@.service.d/ci-exit-status.conf > /dev/null
  IN systemctl daemon-reload
}

# exit_status UNIT INVOCATION_ID: "CODE STATUS REALTIME_US" of that invocation's main process
# (exited 0, killed KILL...), from log_exit_status's journal line; empty if none comes in 30 s
# (on a machine loaded by other work, journald has taken longer than 10 s to pass it on).
exit_status() {
  local deadline=$((SECONDS + 30)) found
  until found=$(jq -nr --arg id "$2" 'first(inputs | select(._SYSTEMD_INVOCATION_ID == $id and
      (.MESSAGE | tostring | startswith("ci-exit-status: "))))
    | "\(.MESSAGE | ltrimstr("ci-exit-status: ")) \(.__REALTIME_TIMESTAMP)"' "$(journal_json "$1")") && [ -n "$found" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 0
    sleep 0.2
  done
  echo "$found"
}

# prop_us UNIT PROPERTY: a timestamp property in µs since the epoch.
prop_us() {
  local text
  text=$(IN systemctl show --timestamp=us+utc -P "$2" "$1")
  date -d "${text#* }" +%s%6N # drop the weekday
}

# journal_json UNIT: the unit's journal as JSON lines, in a file (jq may stop reading early);
# prints the file's name.
journal_json() {
  local file="$LOG_DIR/30-systemd-$1.json"
  IN journalctl -u "$1" -o json --no-pager > "$file"
  echo "$file"
}


set_instance_settings() {
  local name=$1; shift
  # Every client of this test connects from 127.0.0.1, standing for many real clients. Each
  # connection's own journal records (step 5) are debug.
  printf '%s\n' "MAX_CONNECTIONS_PER_IP=0" "MAX_PENDING_HTTP_PER_IP=0" "SHUTDOWN_TIMEOUT=$SHUTDOWN_TIMEOUT_MS" \
    "LOG_LEVEL=info,concurrent_socket=debug" "$@" |
    IN tee "/etc/concurrent-socket/$name.env" > /dev/null
}

# --- 1. socket activation and READY=1 -----------------------------------------------------
first_connection_starts_service() {
  IN systemctl start ws@green.socket
  [ "$(IN systemctl is-active ws@green.service)" = inactive ] || die "ws@green.service ran before any connection"
  churn activation 3002 --rate 1 --duration 1
  [ "$(field activation .succeeded)" = 1 ] || { cat "$WORK/activation.json"; die "the first connection failed"; }
  [ "$(field activation '.server_ids.green')" = 1 ] || die "first connection not served by green: $(field activation .server_ids)"
  [ "$(IN systemctl is-active ws@green.service)" = active ] || die "ws@green.service not active after the first connection"
  [ "$(IN systemctl is-active ws-metrics@green.socket)" = active ] || die "ws-metrics@green.socket not pulled in"

  # Started only after READY=1: the server was already running and logging while systemd
  # still held the unit in "activating"; the unit turned active after that. Times are the
  # realtime clock in µs: journald stamps a record when the server sends it
  # (_SOURCE_REALTIME_TIMESTAMP), which orders it against systemd's own timestamps.
  local pid exec_start active_enter first_log
  pid=$(main_pid ws@green.service)
  exec_start=$(prop_us ws@green.service ExecMainStartTimestamp)
  active_enter=$(prop_us ws@green.service ActiveEnterTimestamp)
  first_log=$(jq -nr --arg pid "$pid" 'first(inputs | select(._PID == $pid and ._SOURCE_REALTIME_TIMESTAMP))
    | ._SOURCE_REALTIME_TIMESTAMP' "$(journal_json ws@green.service)")
  [ -n "$first_log" ] || die "no journal record from the server (pid $pid)"
  if [ "$exec_start" -ge "$first_log" ] || [ "$first_log" -ge "$active_enter" ]; then
    die "not gated on READY=1: exec $exec_start, first server record $first_log, active $active_enter (µs)"
  fi
  # The limit the server really gets: the container's, said in install_units' drop-in.
  local soft hard
  read -r soft hard < <(IN grep 'Max open files' "/proc/$pid/limits" | awk '{print $4, $5}')
  [ "$(prop ws@green.service LimitNOFILE)" = "$CONTAINER_FILE_LIMIT" ] ||
    die "LimitNOFILE of ws@green.service is $(prop ws@green.service LimitNOFILE), expected $CONTAINER_FILE_LIMIT"
  [ "$soft $hard" = "$CONTAINER_FILE_LIMIT $CONTAINER_FILE_LIMIT" ] ||
    die "the server's open-file limit is $soft (soft) $hard (hard), expected $CONTAINER_FILE_LIMIT (LimitNOFILE)"
  echo "RESULT open-file limit of the server process: $soft soft, $hard hard = LimitNOFILE $CONTAINER_FILE_LIMIT"
  echo "RESULT activation: first connection started ws@green.service; active $(((active_enter - exec_start) / 1000)) ms after exec, once READY=1 came (Type=$(prop ws@green.service Type))"
}

# --- 2. graceful restart under churn --------------------------------------------------------
restart_under_churn() {
  local old_pid new_pid old_invocation
  old_pid=$(main_pid ws@green.service)
  old_invocation=$(prop ws@green.service InvocationID)
  churn restart 3002 --rate "$CHURN_RATE" --duration 60 --hold "$HELD" \
    --ready-file "$WORK/restart.ready" --stop-file "$WORK/restart.stop" &
  CHURN_PID=$!
  wait_file "$WORK/restart.ready" || die "held connections did not open"
  sleep 2
  local restart_us=${EPOCHREALTIME/./} stopped_ms ready_ms
  IN systemctl restart ws@green.service
  # systemd's view: the old process's drain, then the new one's start up to READY=1.
  stopped_ms=$((($(prop_us ws@green.service ExecMainStartTimestamp) - restart_us) / 1000))
  ready_ms=$((($(prop_us ws@green.service ActiveEnterTimestamp) - restart_us) / 1000))
  sleep 2
  touch "$WORK/restart.stop"
  wait "$CHURN_PID" || die "churn client failed"
  CHURN_PID=""
  new_pid=$(main_pid ws@green.service)
  [ "$new_pid" != "$old_pid" ] || die "ws@green.service main pid unchanged ($old_pid): no restart happened"

  # The old process: exit 0, after its last goodbye and within SHUTDOWN_TIMEOUT.
  local code status exit_us
  read -r code status exit_us < <(exit_status ws@green.service "$old_invocation") || true
  [ -n "${exit_us:-}" ] || die "no exit status of the old process (invocation $old_invocation) in the journal"
  echo "MEASURED restart: the old process ended ($code $status) $(((exit_us - restart_us) / 1000)) ms after \`systemctl restart\`"
  [ "$code $status" = "exited 0" ] || die "the old process ended with $code $status after SIGTERM, expected exited 0"
  check_drain_time "old process" $(((exit_us - restart_us) / 1000)) "$SHUTDOWN_TIMEOUT_MS" "$HELD"

  jq -c . "$WORK/restart.json"
  echo "MEASURED restart: longest gap without a successful connection $(field restart .longest_gap_s) s; failed attempts $(field restart .failed) of $(field restart .attempts) at $CHURN_RATE/s; latency p99 $(field restart .latency_p99_s) s, max $(field restart .latency_max_s) s"
  echo "MEASURED restart: new server process started ${stopped_ms} ms after \`systemctl restart\` (the old one's drain of $HELD connections), ready ${ready_ms} ms after it"
  [ "$(field restart .failed)" = 0 ] || die "connection attempts failed during the restart: $(field restart .failures)"
  [ "$(field restart '.held.goodbye.server_shutdown // 0')" = "$HELD" ] ||
    die "not every held connection got goodbye server_shutdown: $(field restart .held)"
  [ "$(field restart '.held.close_codes["1001"] // 0')" = "$HELD" ] ||
    die "not every held connection was closed with 1001: $(field restart .held)"
  echo "RESULT restart: 0 failed connection attempts; $HELD/$HELD held connections got goodbye server_shutdown and close 1001"
}

# --- 3. kill -9 ------------------------------------------------------------------------------
kill9_under_churn() {
  local old_pid socket_since restarts_before old_invocation
  old_pid=$(main_pid ws@green.service)
  old_invocation=$(prop ws@green.service InvocationID)
  socket_since=$(prop ws@green.socket ActiveEnterTimestampMonotonic)
  restarts_before=$(prop ws@green.service NRestarts)
  churn kill9 3002 --rate "$CHURN_RATE" --duration 60 --stop-file "$WORK/kill9.stop" &
  CHURN_PID=$!
  sleep 2
  local killed_us=${EPOCHREALTIME/./}
  IN kill -9 "$old_pid"
  local kill_returned_us=${EPOCHREALTIME/./}
  local deadline=$((SECONDS + 20))
  until [ "$(main_pid ws@green.service)" != "$old_pid" ] && [ "$(IN systemctl is-active ws@green.service)" = active ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "ws@green.service not restarted 20 s after kill -9"
    sleep 0.05
  done
  sleep 2
  touch "$WORK/kill9.stop"
  wait "$CHURN_PID" || die "churn client failed"
  CHURN_PID=""

  jq -c . "$WORK/kill9.json"
  [ "$(prop ws@green.service NRestarts)" -gt "$restarts_before" ] || die "NRestarts did not grow"
  [ "$(prop ws@green.socket ActiveEnterTimestampMonotonic)" = "$socket_since" ] || die "ws@green.socket was restarted"
  [ "$(IN systemctl is-active ws@green.socket)" = active ] || die "ws@green.socket is no longer active"
  local refused down_ms
  refused=$(field kill9 '.failures.refused // 0')
  # From the kill to the new process's READY=1, as systemd recorded it.
  down_ms=$((($(prop_us ws@green.service ActiveEnterTimestamp) - killed_us) / 1000))
  echo "MEASURED kill -9: longest gap without a successful connection $(field kill9 .longest_gap_s) s; failed attempts $(field kill9 .failed) of $(field kill9 .attempts) (in flight on the killed process: $(field kill9 .failures)), refused $refused"
  [ "$refused" = 0 ] || die "$refused connection attempts refused: the socket closed"
  local ended
  ended=$(exit_status ws@green.service "$old_invocation")
  [ "${ended% *}" = "killed KILL" ] || die "the killed process ended with '${ended% *}', expected killed KILL"
  # docs/systemd.md: the attempts that fail are handshakes the killed process had already
  # accepted: begun before the kill, still going at it, and ended by the connection dropping
  # (not refused, not timed out, not answered with an HTTP error). Every later attempt waits in
  # the socket's queue for the new process and succeeds.
  local other
  other=$(jq -c --argjson killed "$killed_us" --argjson returned "$kill_returned_us" '[.failed_attempts[]
      | select((.kind | IN("reset", "dropped_during_handshake", "closed_before_established") | not)
               or .start_us >= $returned or .end_us < $killed)]' "$WORK/kill9.json")
  [ "$other" = "[]" ] || die "attempts that failed other than as handshakes the killed process had accepted (kill at $killed_us-$kill_returned_us µs): $other"
  echo "RESULT kill -9: systemd restarted ws@green.service (NRestarts $(prop ws@green.service NRestarts)), ready again $down_ms ms after the kill; socket never closed, 0 refused; the $(field kill9 .failed) failed attempts were all handshakes the killed process had accepted (begun before the kill, dropped)"
}

# --- 4. watchdog -----------------------------------------------------------------------------
watchdog_kills_stalled_server() {
  local dropin=/etc/systemd/system/ws@green.service.d/faults.conf stall_ms=1000
  printf '%s\n' "# CI only: the fault-injection build, which stops feeding the watchdog." "[Service]" \
    "ExecStart=" "ExecStart=$CONTAINER_BINDIR/concurrent-socket-faults" \
    "Environment=FAULT_WATCHDOG_STALL_AFTER_MS=$stall_ms" | IN sh -c "mkdir -p ${dropin%/*} && cat > $dropin"
  IN systemctl daemon-reload
  IN systemctl restart ws@green.service
  local faulty_pid started=$SECONDS
  faulty_pid=$(main_pid ws@green.service)
  local deadline=$((SECONDS + 60))
  until IN journalctl -u ws@green.service -o cat --no-pager | grep -q "Failed with result 'watchdog'" &&
    [ "$(main_pid ws@green.service)" != "$faulty_pid" ] && [ "$(IN systemctl is-active ws@green.service)" = active ]; do
    [ "$SECONDS" -lt "$deadline" ] || { IN journalctl -u ws@green.service --no-pager | tail -20; die "stalled server not killed and restarted by the watchdog"; }
    sleep 0.2
  done
  local took=$((SECONDS - started))
  IN journalctl -u ws@green.service -o cat --no-pager | grep -E 'Watchdog timeout|SIGABRT|watchdog' | tail -3
  IN rm "$dropin"
  IN systemctl daemon-reload
  IN systemctl restart ws@green.service
  echo "MEASURED watchdog: server stalled after ${stall_ms} ms, killed and restarted within ${took} s (WatchdogSec=$(prop ws@green.service WatchdogUSec))"
  echo "RESULT watchdog: stalled faults build killed (result 'watchdog') and restarted"
}

# --- 5. structured fields in the journal -------------------------------------------------
journal_has_structured_fields() {
  local journal held closed
  journal=$(journal_json ws@green.service)
  # The held connections of step 2 were closed by the restart (1001); churn ones by the client (1000).
  held=$(jq -nc 'first(inputs | select(._SYSTEMD_UNIT == "ws@green.service" and
      (.CONNECTION_ID // "" | startswith("restart-held-")) and .REASON == "server_shutdown" and .CLOSE_CODE == "1001"))' "$journal")
  closed=$(jq -nc 'first(inputs | select(._SYSTEMD_UNIT == "ws@green.service" and
      (.CONNECTION_ID // "" | test("^restart-[0-9]+$")) and .REASON == "client_close" and .CLOSE_CODE == "1000"))' "$journal")
  if [ -z "$held" ] || [ -z "$closed" ]; then
    jq -sc 'map(select(.CONNECTION_ID != null) | {_SYSTEMD_UNIT, MESSAGE, CONNECTION_ID, REASON, CLOSE_CODE}) | .[-5:][]' "$journal"
    die "no journal entry of ws@green.service with the connection id, reason and close code of a test connection"
  fi
  jq -c '{_SYSTEMD_UNIT, MESSAGE, CONNECTION_ID, REASON, CLOSE_CODE, DURATION_MS, PRIORITY}' <<< "$held"
  jq -c '{_SYSTEMD_UNIT, MESSAGE, CONNECTION_ID, REASON, CLOSE_CODE, DURATION_MS, PRIORITY}' <<< "$closed"
  echo "RESULT journal: ws@green.service entries carry CONNECTION_ID, REASON and CLOSE_CODE (1001 server_shutdown, 1000 client_close)"
}

# --- 6. blue and green side by side ----------------------------------------------------------
blue_and_green_side_by_side() {
  IN systemctl start ws@blue.socket ws-metrics@blue.socket
  churn side-blue 3001 --rate 20 --duration 1
  churn side-green 3002 --rate 20 --duration 1
  [ "$(field side-blue '.server_ids.blue // 0')" = 20 ] || die "port 3001 not served by blue: $(field side-blue .)"
  [ "$(field side-green '.server_ids.green // 0')" = 20 ] || die "port 3002 not served by green: $(field side-green .)"
  local colour port metrics
  for colour in blue green; do
    port=$([ $colour = blue ] && echo 9464 || echo 9465)
    metrics=$(IN_NET curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics") || die "no metrics on 127.0.0.1:$port"
    grep -q "^websocket_build_info{.*server_id=\"$colour\"" <<< "$metrics" || die "metrics on 127.0.0.1:$port do not come from $colour"
  done
  [ "$(main_pid ws@blue.service)" != "$(main_pid ws@green.service)" ] || die "blue and green share a process"
  echo "RESULT side by side: ws@blue on 3001 (metrics 9464) and ws@green on 3002 (metrics 9465), pids $(main_pid ws@blue.service) and $(main_pid ws@green.service)"
}

# --- 7. a bad setting fails the start, named ---------------------------------------------
bad_setting_fails_start() {
  set_instance_settings blue "MAX_CONNECTIONS=lots"
  if IN systemctl restart ws@blue.service 2> /dev/null; then die "ws@blue.service started with MAX_CONNECTIONS=lots"; fi
  # Restart=on-failure with RestartSec=0 starts it again at once, and a new attempt's
  # ExecMainStatus reads 0 while it runs: wait for systemd to give up (the start limit), so
  # that the status read is the last attempt's.
  local deadline=$((SECONDS + 30))
  until [ "$(prop ws@blue.service ActiveState)" = failed ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "ws@blue.service is $(prop ws@blue.service ActiveState), not failed, 30 s after the bad setting"
    sleep 0.2
  done
  [ "$(prop ws@blue.service ExecMainStatus)" = 1 ] || die "the server did not refuse the bad setting (exit status $(prop ws@blue.service ExecMainStatus))"
  local line
  line=$(jq -nr 'first(inputs | select(.SYSLOG_IDENTIFIER == "concurrent-socket" and (.MESSAGE | tostring | test("MAX_CONNECTIONS.*lots"))))
    | .MESSAGE | sub("^\\s+"; "")' "$(journal_json ws@blue.service)")
  [ -n "$line" ] || { IN journalctl -u ws@blue.service --no-pager | tail -20; die "no journal line naming MAX_CONNECTIONS"; }
  echo "RESULT bad setting: ws@blue.service failed at start (exit 1, before serving) with: $line"
  set_instance_settings blue
  IN systemctl reset-failed ws@blue.service ws@blue.socket ws-metrics@blue.socket
  IN systemctl start ws@blue.socket ws-metrics@blue.socket
  churn fixed-blue 3001 --rate 1 --duration 1
  [ "$(field fixed-blue '.server_ids.blue // 0')" = 1 ] || die "ws@blue did not serve again after the fix"
}

# --- 8. the token key as a systemd credential ---------------------------------------------
token_key_credential() {
  local dropin=/etc/systemd/system/ws@blue.service.d/auth.conf hello
  head -c 48 /dev/urandom | base64 > "$WORK/jwt-secret"
  IN sh -c 'umask 077; cat > /etc/concurrent-socket/jwt-secret' < "$WORK/jwt-secret"
  IN mkdir -p "$(dirname "$dropin")"
  printf '%s\n' "[Service]" "LoadCredential=jwt-key:/etc/concurrent-socket/jwt-secret" \
    "Environment=AUTH_JWT_SECRET_FILE=%d/jwt-key" | IN tee "$dropin" > /dev/null
  IN systemctl daemon-reload
  IN systemctl restart ws@blue.service
  hello=$(IN_NET "$PYTHON" "$REPO/ci/systemd/token_hello.py" --url ws://127.0.0.1:3001/ws/chat/cred \
    --secret-file "$WORK/jwt-secret" --user carol) || die "no connection with a token of the credential: $hello"
  IN rm /etc/concurrent-socket/jwt-secret
  if IN systemctl restart ws@blue.service 2> /dev/null; then die "ws@blue.service started without its credential file"; fi
  echo "RESULT token credential: a root-only secret as LoadCredential= (AUTH_JWT_SECRET_FILE=%d/jwt-key) verified a Bearer token: $hello; without the file the start fails ($(prop ws@blue.service Result))"
  IN rm "$dropin"
  IN systemctl daemon-reload
  IN systemctl reset-failed ws@blue.service ws@blue.socket ws-metrics@blue.socket
}

main() {
  static_checks
  boot_systemd ci-ws-systemd
  install_units blue green
  log_exit_status
  set_instance_settings green
  set_instance_settings blue
  first_connection_starts_service
  restart_under_churn
  kill9_under_churn
  watchdog_kills_stalled_server
  journal_has_structured_fields
  blue_and_green_side_by_side
  bad_setting_fails_start
  token_key_credential
}
main
