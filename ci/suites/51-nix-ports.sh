#!/usr/bin/env bash
# Ports the kernel may hand out (issue 13 item 3). The module widens the ephemeral port range
# to 1024-65535, which holds every port its sockets listen on; it reserves those ports
# (net.ipv4.ip_local_reserved_ports). Under real systemd (a container with its own network
# namespace, so its own port sysctls), with the sysctl values the module sets on a host with
# its defaults (evaluated by nixos/tests/eval): ws@blue.socket stopped (a drained colour),
# outgoing connections to green's socket (what Traefik opens, one per proxied WebSocket) until
# the kernel has no ephemeral port left, then `systemctl start ws@blue.socket` (a rollback, the
# next deploy) must bind 3001. The control, without the reservation (main before this
# change): the same start fails with EADDRINUSE.
# Adaptation, said where it is made: the range is narrowed to 2990-3010 (it still holds blue's
# port) so that filling it takes ~20 connections instead of 64,000.
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$REPO/ci/systemd/lib.sh"
cd "$REPO"
export NIX_CONFIG="$NIX_CONFIG"$'\nbuild-users-group ='

WORK=$(mktemp -d)
FILL_PID=""
cleanup() {
  [ -z "$FILL_PID" ] || kill "$FILL_PID" 2> /dev/null || true
  stop_systemd
  rm -rf "$WORK"
}
trap cleanup EXIT

sysctls=$(nix-instantiate --eval --strict --json \
  -E "(import $REPO/nixos/tests/eval/harness.nix).hostConfig.boot.kernel.sysctl")
range=$(jq -r '."net.ipv4.ip_local_port_range"' <<< "$sysctls")
reserved=$(jq -r '."net.ipv4.ip_local_reserved_ports"' <<< "$sysctls")
[ "$range" = "1024 65535" ] || die "the module's ip_local_port_range is '$range'; this test assumes it holds 3001"
case $reserved in "" | null) die "the module sets no net.ipv4.ip_local_reserved_ports" ;; esac
jq -e 'has("fs.file-max") | not' <<< "$sysctls" > /dev/null || die "the module still sets fs.file-max"
log "the module's sysctls: ip_local_port_range '$range', ip_local_reserved_ports '$reserved'"

SMALL_RANGE="2990 3010"
cat > "$WORK/fill.py" <<'PY'
# Connections to 127.0.0.1:PORT until the kernel has no ephemeral port left; prints how many
# and the local ports, then holds them until its standard input closes.
import errno, json, socket, sys

held = []
while True:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
    except OSError as e:
        if e.errno != errno.EADDRNOTAVAIL:
            raise
        break
    held.append(s)
print(json.dumps(sorted(s.getsockname()[1] for s in held)), flush=True)
sys.stdin.read()
PY

boot_systemd ci-ports
install_units blue green

# restart_under RESERVED: the sequence above with these reserved ports; prints
# "started" or "failed", and the local ports the fill took.
restart_under() {
  local value=$1 ports
  IN sysctl -q -w "net.ipv4.ip_local_port_range=$SMALL_RANGE"
  # shellcheck disable=SC2016  # expanded by the inner sh, from its argument (may be empty)
  IN sh -c 'echo "$1" > /proc/sys/net/ipv4/ip_local_reserved_ports' _ "$value"
  IN systemctl start ws@blue.socket ws@green.socket
  IN systemctl stop ws@blue.socket
  mkfifo "$WORK/hold"
  IN_NET python3 "$WORK/fill.py" 3002 < "$WORK/hold" > "$WORK/fill.out" &
  FILL_PID=$!
  exec {hold}> "$WORK/hold"
  local deadline=$((SECONDS + 20))
  until [ -s "$WORK/fill.out" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "filling the ephemeral range did not finish"
    sleep 0.05
  done
  ports=$(head -1 "$WORK/fill.out")
  if IN systemctl start ws@blue.socket 2> /dev/null; then echo "started $ports"; else echo "failed $ports"; fi
  exec {hold}>&-
  wait "$FILL_PID" || die "the fill client failed: $(cat "$WORK/fill.out")"
  FILL_PID=""
  rm -f "$WORK/hold" "$WORK/fill.out"
}

read -r outcome ports < <(restart_under "$reserved")
taken=$(jq length <<< "$ports")
[ "$taken" -ge 10 ] || die "only $taken outgoing connections filled the range $SMALL_RANGE: $ports"
jq -e 'index(3001) == null and index(3002) == null' <<< "$ports" > /dev/null || die "a reserved port was handed out: $ports"
[ "$outcome" = started ] || { IN journalctl -u ws@blue.socket --no-pager | tail -5; die "ws@blue.socket did not start with the module's reserved ports"; }
IN ss -Hltn 'sport = :3001' | grep -q . || die "ws@blue.socket is active but nothing listens on 3001"
IN_NET curl -fsS -o /dev/null http://127.0.0.1:3001/health || die "blue does not serve after the restart"
echo "RESULT reserved ports (issue 13 item 3): ephemeral range $SMALL_RANGE emptied by $taken connections to green (none took 3001 or 3002); ws@blue.socket started again and blue serves /health"

IN systemctl stop ws@blue.service ws@blue.socket
read -r outcome ports < <(restart_under "")
[ "$outcome" = failed ] || die "control: without reserved ports ws@blue.socket still started (the fill took $ports): the test cannot tell"
jq -e 'index(3001) != null' <<< "$ports" > /dev/null || die "control: 3001 failed but was not taken: $ports"
IN journalctl -u ws@blue.socket --no-pager | grep -q 'Address already in use' || die "control: no EADDRINUSE in ws@blue.socket's journal"
echo "RESULT reserved ports control: without them an outgoing connection took 3001 and ws@blue.socket failed to start (Address already in use)"
