# shellcheck shell=bash
# Real systemd as PID 1 of a throw-away container, for the suites that test our units and the
# operator tools that drive them (ci/suites/30-systemd.sh; wsctl's deploy tests).
# Sourced after ci/lib.sh, never run. Needs root and systemd-nspawn (ci/apt-packages.txt).
#
# The container (systemd-nspawn --volatile=yes -D /): a tmpfs root with an empty /etc, the
# host's /usr read-only, the repository read-only at $CONTAINER_REPO, and its own network
# namespace (only `lo`), so ports 3001/3002/9464/9465 never collide with the host's.
#
#   boot_systemd NAME [nspawn args...]  boot it, wait until the system is up; sets SYSTEMD_LEADER
#                                       (its PID 1 as seen by the host) and SYSTEMD_LOG (console)
#   IN CMD...                           run CMD inside: its filesystem, network, pids
#   IN_NET CMD...                       run a host program in the container's network only, to
#                                       reach 127.0.0.1:PORT there (the host's venv, python...)
#   install_units [INSTANCE...]         systemd/install.sh inside, as an operator would, with the
#                                       server ($SERVER_BIN, default $BIN_DIR/concurrent-socket)
#                                       and the other binaries of $BIN_DIR in $CONTAINER_BINDIR; then the
#                                       container's file-limit drop-in (see below); default
#                                       instances: blue green
#   wait_active UNIT [SECONDS]          until `systemctl is-active UNIT` says active (default 20 s)
#   prop UNIT PROPERTY                  a unit property (`systemctl show -P`)
#   field NAME JQ                       a value of the client report $WORK/NAME.json
#   wait_file FILE [SECONDS]            until FILE exists (default 30 s; status 1 if not)
#   main_pid UNIT                       the unit's MainPID as the container sees it (0: none)
#   stop_systemd                        power the container off (SIGKILL after 20 s); idempotent,
#                                       meant for `trap stop_systemd EXIT`
#
# Example:
#   . ci/lib.sh; . ci/systemd/lib.sh
#   trap stop_systemd EXIT
#   boot_systemd ci-deploy
#   install_units blue green
#   IN systemctl start ws@blue.socket ws-metrics@blue.socket
#   IN_NET curl -fsS http://127.0.0.1:3001/health
#
# Containers here cannot raise the open-file hard limit above 20,000, while ws@.service asks
# for 131,072 (100,000 connections). systemd would silently clamp it to 20,000; install_units
# says so instead, with ws@.service.d/ci-container.conf (LimitNOFILE=20000), so that
# `systemctl show -P LimitNOFILE` tells the limit the server really gets.

CONTAINER_REPO=/opt/concurrent-socket/src        # the repository, read-only
CONTAINER_CI_BIN=/opt/concurrent-socket/ci-bin   # $BIN_DIR, read-only
CONTAINER_SERVER=/opt/concurrent-socket/server/concurrent-socket  # the server to test, read-only
CONTAINER_BINDIR=/opt/concurrent-socket/bin      # install.sh's --bindir (/usr is read-only here)
CONTAINER_FILE_LIMIT=20000
SYSTEMD_NSPAWN_PID=""
SYSTEMD_LEADER=""
SYSTEMD_LOG=""

boot_systemd() {
  local name=$1; shift
  [ "$(id -u)" -eq 0 ] || die "booting systemd in a container needs root"
  command -v systemd-nspawn > /dev/null || die "systemd-nspawn missing (apt package systemd-container)"
  SYSTEMD_LOG="$LOG_DIR/$name-console.log"
  mkdir -p "$LOG_DIR"
  # A private /run/systemd keeps nspawn's own bookkeeping off the host.
  mkdir -p /run/systemd
  unshare -m --propagation private bash -c 'mount -t tmpfs tmpfs /run/systemd && exec "$@"' _ \
    systemd-nspawn --volatile=yes -D / -b --register=no --keep-unit --console=read-only \
    --private-network -M "$name" \
    --bind-ro="$REPO:$CONTAINER_REPO" --bind-ro="$BIN_DIR:$CONTAINER_CI_BIN" \
    --bind-ro="$(realpath "${SERVER_BIN:-$BIN_DIR/concurrent-socket}"):$CONTAINER_SERVER" \
    "$@" -- systemd.firstboot=off > "$SYSTEMD_LOG" 2>&1 &
  SYSTEMD_NSPAWN_PID=$!
  local deadline=$((SECONDS + 30))
  until SYSTEMD_LEADER=$(ps -o pid= --ppid "$SYSTEMD_NSPAWN_PID" | tr -d ' ') && [ -n "$SYSTEMD_LEADER" ] &&
    IN test -S /run/systemd/private 2> /dev/null; do
    kill -0 "$SYSTEMD_NSPAWN_PID" 2> /dev/null || { cat "$SYSTEMD_LOG" >&2; die "systemd-nspawn exited during boot"; }
    [ "$SECONDS" -lt "$deadline" ] || { cat "$SYSTEMD_LOG" >&2; die "systemd did not come up in 30 s"; }
    sleep 0.05
  done
  # "degraded" (some unit of the host's /usr that cannot run in a container) is fine here.
  local state
  state=$(IN timeout 60 systemctl is-system-running --wait || true)
  case $state in running | degraded) ;; *) die "container $name did not boot: '$state' (console: $SYSTEMD_LOG)" ;; esac
  log "systemd booted in container $name (PID 1 = host pid $SYSTEMD_LEADER, system $state)"
}

IN() { nsenter -t "$SYSTEMD_LEADER" -a "$@"; }

# prop UNIT PROPERTY: one property of a unit in the container, as `systemctl show -P` gives it.
prop() { IN systemctl show -P "$2" "$1"; }

# field NAME JQ: a value of the client report $WORK/NAME.json.
field() { jq -rc "$2" "$WORK/$1.json"; }

# wait_file FILE [SECONDS]: until FILE exists (default 30 s); status 1 when it never does.
wait_file() {
  local file=$1 deadline=$((SECONDS + ${2:-30}))
  until [ -e "$file" ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

IN_NET() { nsenter -t "$SYSTEMD_LEADER" -n "$@"; }

install_units() {
  local instances=("$@") bin
  [ ${#instances[@]} -gt 0 ] || instances=(blue green)
  IN "$CONTAINER_REPO/systemd/install.sh" --bindir "$CONTAINER_BINDIR" --instances "${instances[*]}" \
    "$CONTAINER_SERVER"
  # The test-only binaries sit beside the server, for drop-ins that run them instead.
  for bin in concurrent-socket-faults wsctl loadtest; do
    [ -x "$BIN_DIR/$bin" ] && IN install -m 0755 "$CONTAINER_CI_BIN/$bin" "$CONTAINER_BINDIR/$bin"
  done
  log "container drop-in ws@.service.d/ci-container.conf: LimitNOFILE=$CONTAINER_FILE_LIMIT (the unit asks 131072; the hard limit here is $CONTAINER_FILE_LIMIT)"
  IN mkdir -p /etc/systemd/system/ws@.service.d
  printf '%s\n' "# CI only: containers here cannot raise the open-file hard limit above $CONTAINER_FILE_LIMIT." \
    "[Service]" "LimitNOFILE=$CONTAINER_FILE_LIMIT" | IN tee /etc/systemd/system/ws@.service.d/ci-container.conf > /dev/null
  IN systemctl daemon-reload
}

wait_active() {
  local unit=$1 deadline=$((SECONDS + ${2:-20}))
  until [ "$(IN systemctl is-active "$unit")" = active ]; do
    [ "$SECONDS" -lt "$deadline" ] || { IN systemctl status --no-pager "$unit" >&2 || true; return 1; }
    sleep 0.05
  done
}

main_pid() { IN systemctl show -P MainPID "$1"; }

stop_systemd() {
  [ -n "$SYSTEMD_NSPAWN_PID" ] || return 0
  local pid=$SYSTEMD_NSPAWN_PID leader=$SYSTEMD_LEADER deadline=$((SECONDS + 20))
  SYSTEMD_NSPAWN_PID=""
  kill -0 "$pid" 2> /dev/null || return 0
  IN systemctl poweroff 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
  while kill -0 "$pid" 2> /dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "container did not power off in 20 s: SIGKILL to its PID 1 and to systemd-nspawn"
      # The end of a pid namespace's init ends every process in it.
      [ -z "$leader" ] || kill -KILL "$leader" 2> /dev/null || true
      kill -KILL "$pid" 2> /dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2> /dev/null || true
  log "container powered off"
}
