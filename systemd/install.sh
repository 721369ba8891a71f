#!/usr/bin/env bash
# Installs concurrent-socket on a plain systemd host: the server binary, the unit templates
# (ws@.socket, ws-metrics@.socket, ws@.service, with @bindir@ replaced by the binary's
# directory), each instance's listen drop-ins, and each instance's settings file in
# /etc/concurrent-socket/ (only when absent: the operator's settings are never overwritten).
# It starts nothing; docs/systemd.md says what to run next.
#
#   sudo systemd/install.sh [options] path/to/concurrent-socket
#     --bindir DIR     where the binary goes            (default /usr/local/bin)
#     --unitdir DIR    where the units go               (default /etc/systemd/system)
#     --confdir DIR    where INSTANCE.env files go      (default /etc/concurrent-socket)
#     --instances LIST space-separated instances with shipped drop-ins (default "blue green")
#     --root DIR       install below DIR (a staging tree); implies --no-reload
#     --no-reload      do not run systemctl daemon-reload
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNITS=(ws@.socket ws-metrics@.socket ws@.service)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "install.sh: $*" >&2; exit 1; }

bindir=/usr/local/bin unitdir=/etc/systemd/system confdir=/etc/concurrent-socket
instances="blue green" root="" reload=yes binary=""
while [ $# -gt 0 ]; do
  case $1 in
    --bindir | --unitdir | --confdir | --instances | --root)
      [ $# -ge 2 ] || fail "$1 needs a value"
      case $1 in
        --bindir) bindir=$2 ;; --unitdir) unitdir=$2 ;; --confdir) confdir=$2 ;;
        --instances) instances=$2 ;; --root) root=$2 reload=no ;;
      esac
      shift 2 ;;
    --no-reload) reload=no; shift ;;
    -h | --help) usage ;;
    -*) fail "unknown option $1 (see --help)" ;;
    *) [ -z "$binary" ] || fail "only one binary, got '$binary' and '$1'"; binary=$1; shift ;;
  esac
done
[ -n "$binary" ] || usage
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then fail "$binary is not an executable file"; fi
case $bindir in /*) ;; *) fail "--bindir must be absolute (units name the binary by path): $bindir" ;; esac
[[ $bindir != *[[:space:]\|\&\\]* ]] || fail "--bindir must not contain spaces, '|', '&' or '\\': $bindir"

install_binary() {
  install -D -m 0755 "$binary" "$root$bindir/concurrent-socket"
  echo "installed $root$bindir/concurrent-socket"
}

install_units() {
  local unit
  install -d -m 0755 "$root$unitdir"
  for unit in "${UNITS[@]}"; do
    sed "s|@bindir@|$bindir|g" "$SRC_DIR/$unit" > "$root$unitdir/$unit.tmp"
    chmod 0644 "$root$unitdir/$unit.tmp"
    mv -f "$root$unitdir/$unit.tmp" "$root$unitdir/$unit"
    echo "installed $root$unitdir/$unit"
  done
}

install_instance() {
  local name=$1 dropin
  for dropin in "ws@$name.socket.d" "ws-metrics@$name.socket.d"; do
    install -D -m 0644 "$SRC_DIR/instances/$dropin/listen.conf" "$root$unitdir/$dropin/listen.conf"
  done
  install -d -m 0755 "$root$confdir"
  if [ -e "$root$confdir/$name.env" ]; then
    echo "kept $root$confdir/$name.env (already there)"
  else
    install -m 0640 "$SRC_DIR/instances/$name.env" "$root$confdir/$name.env"
    echo "installed $root$confdir/$name.env"
  fi
  echo "installed instance $name"
}

for name in $instances; do
  if [ ! -f "$SRC_DIR/instances/ws@$name.socket.d/listen.conf" ] || [ ! -f "$SRC_DIR/instances/$name.env" ]; then
    fail "no shipped ports and settings for instance '$name' (docs/systemd.md: adding an instance)"
  fi
done
install_binary
install_units
for name in $instances; do install_instance "$name"; done
if [ $reload = yes ]; then
  systemctl daemon-reload
  echo "systemctl daemon-reload done"
fi
