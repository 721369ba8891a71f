#!/usr/bin/env bash
# A private systemd-journald for tests/journald.rs, isolated from the host. Runs inside
# `unshare --mount --pid --fork --mount-proc --propagation private` (it is PID 1 there, so
# everything it starts ends with it): mounts tmpfs over /run and /var/log, starts
# journald, runs the server (SERVER_BIN, environment from the caller) with its stdout
# connected to the journal the way systemd connects a service's (JOURNAL_STREAM = DEV:INODE of
# that stream) and prints "started". A line on stdin stops the server with SIGTERM; once the
# journal holds its "shutdown complete" record, prints "journal" and then every journal entry
# as JSON (journalctl -o json --all); exits 1 if the server's exit status was not 0.
#
#   unshare --mount --pid --fork --mount-proc --propagation private bash journald.sh SERVER_BIN
set -euo pipefail
server_bin=$1

# wait_for WHAT COMMAND...: up to 10 s until COMMAND succeeds.
wait_for() {
  local what=$1 tries=200
  shift
  until "$@"; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { echo "journald.sh: no $what after 10 s" >&2; exit 1; }
    sleep 0.05
  done
}

journal_has() { journalctl --all --no-pager -o cat | grep -q "$1"; }

# Fresh tmpfs over /run and /var/log: journald's directories are created there, so nothing
# of the host's is seen or changed.
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mkdir -p /run/systemd /run/log /var/log/journal
/lib/systemd/systemd-journald &
journald=$!
server=
trap 'kill $server $journald 2>/dev/null || true; wait || true' EXIT
wait_for "journal sockets" test -S /run/systemd/journal/stdout -a -S /run/systemd/journal/socket

# systemd-cat connects stdout and stderr to journald's stream socket, then execs its command.
# shellcheck disable=SC2016 # expanded by the inner shell
systemd-cat --identifier=concurrent-socket \
  sh -c 'export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/$$/fd/1)"; exec "$0"' "$server_bin" &
server=$!
echo started

read -r _ || true
kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
server=
wait_for "\"shutdown complete\" record" journal_has "shutdown complete"
echo journal
journalctl -o json --all --no-pager
# After the journal, which tells why: a server that did not exit 0 on SIGTERM fails the test.
[ "$server_status" -eq 0 ] || { echo "journald.sh: the server exited with status $server_status after SIGTERM" >&2; exit 1; }
