#!/usr/bin/env bash
# Installs concurrent-socket on a plain systemd host: the server binary as a build of its own
# (BUILDS/<sha256 prefix>/bin/concurrent-socket, never overwritten), the unit templates
# (ws@.socket, ws-metrics@.socket, ws-public@.socket for the direct data path, ws@.service),
# each instance's listen drop-ins, and each
# instance's settings file in /etc/concurrent-socket/ (only when absent: the operator's
# settings are never overwritten). The build becomes the candidate
# (/var/lib/concurrent-socket/candidate), which `wsctl deploy` installs on the idle colour.
# Each instance runs the build its profile (/var/lib/concurrent-socket/profiles/INSTANCE)
# points at: a new instance's profile is pointed at this build, an existing one is left to
# wsctl. It starts nothing; docs/systemd.md says what to run next.
#
#   sudo systemd/install.sh [options] path/to/concurrent-socket
#     --bindir DIR     where the `concurrent-socket` command goes, a symlink to this build
#                                                       (default /usr/local/bin)
#     --builds DIR     where builds are kept             (default /opt/concurrent-socket/builds)
#     --unitdir DIR    where the units go               (default /etc/systemd/system)
#     --confdir DIR    where INSTANCE.env files go      (default /etc/concurrent-socket)
#     --instances LIST space-separated instances with shipped drop-ins (default "blue green")
#     --root DIR       install below DIR (a staging tree); implies --no-reload
#     --no-reload      do not run systemctl daemon-reload
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNITS=(ws@.socket ws-metrics@.socket ws-public@.socket ws@.service)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "install.sh: $*" >&2; exit 1; }

bindir=/usr/local/bin builds=/opt/concurrent-socket/builds unitdir=/etc/systemd/system
confdir=/etc/concurrent-socket instances="blue green" root="" reload=yes binary=""
# Fixed: ws@.service names the profiles by this path, and wsctl keeps its state here.
statedir=/var/lib/concurrent-socket
while [ $# -gt 0 ]; do
  case $1 in
    --bindir | --builds | --unitdir | --confdir | --instances | --root)
      [ $# -ge 2 ] || fail "$1 needs a value"
      case $1 in
        --bindir) bindir=$2 ;; --builds) builds=$2 ;; --unitdir) unitdir=$2 ;; --confdir) confdir=$2 ;;
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
for dir in "$bindir" "$builds"; do
  case $dir in /*) ;; *) fail "--bindir and --builds must be absolute (profiles name builds by path): $dir" ;; esac
  [[ $dir != *[[:space:]]* ]] || fail "--bindir and --builds must not contain spaces: $dir"
done
build="$builds/$(sha256sum "$binary" | cut -c1-16)"

# link TARGET NAME: NAME becomes a symlink to TARGET in one rename (never briefly absent).
link() {
  ln -sfn "$1" "$2.tmp" && mv -Tf "$2.tmp" "$2"
}

install_build() {
  if [ -x "$root$build/bin/concurrent-socket" ]; then
    echo "kept build $build (this binary is already installed)"
  else
    install -D -m 0755 "$binary" "$root$build/bin/concurrent-socket.tmp"
    mv -f "$root$build/bin/concurrent-socket.tmp" "$root$build/bin/concurrent-socket"
    echo "installed build $build"
  fi
  install -d -m 0755 "$root$bindir" "$root$statedir/profiles"
  link "$build/bin/concurrent-socket" "$root$bindir/concurrent-socket"
  link "$build" "$root$statedir/candidate"
  echo "candidate $statedir/candidate -> $build (wsctl deploy puts it on the idle colour)"
}

install_units() {
  local unit
  install -d -m 0755 "$root$unitdir"
  for unit in "${UNITS[@]}"; do
    install -m 0644 "$SRC_DIR/$unit" "$root$unitdir/$unit.tmp"
    mv -f "$root$unitdir/$unit.tmp" "$root$unitdir/$unit"
    echo "installed $root$unitdir/$unit"
  done
}

# A new instance runs this build; an existing one keeps the build wsctl deployed on it.
pin_new_instance() {
  local profile="$root$statedir/profiles/$1"
  if [ -L "$profile" ]; then
    echo "kept profile $statedir/profiles/$1 -> $(readlink "$profile")"
  else
    link "$build" "$profile"
    echo "profile $statedir/profiles/$1 -> $build (new instance)"
  fi
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
install_build
install_units
for name in $instances; do
  install_instance "$name"
  pin_new_instance "$name"
done
if [ $reload = yes ]; then
  systemctl daemon-reload
  echo "systemctl daemon-reload done"
fi
