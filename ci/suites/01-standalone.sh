#!/usr/bin/env bash
# The repository stands alone: a clone of this checkout in an empty temporary folder, with no
# ../shared beside it and none of this checkout's environment, runs ci/setup and then the
# quickest suite, 05-shellcheck. Anything in setup that reads outside the repository fails.
#
# The clone is HEAD plus the uncommitted changes to tracked files (applied as a patch), so a
# change is checked before it is committed; untracked files are not in it, as in any clone.
# It starts from what a user's machine would also have: the Debian packages and toolchains,
# and the per-user download and build caches (pip's, npm's, cargo's registry and ci/setup's
# cargo-tools build directory). Its venvs, node_modules and tools are built afresh.
# It runs ci/setup itself, in the clone.
# needs: none
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

WORK=$(mktemp -d /tmp/standalone.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CLONE="$WORK/concurrent-socket"

head=$(git -C "$REPO" rev-parse HEAD)
git clone --quiet --no-checkout "$REPO" "$CLONE"
git -C "$CLONE" checkout --quiet --detach "$head"
git -C "$REPO" diff --binary HEAD > "$WORK/uncommitted.patch"
if [ -s "$WORK/uncommitted.patch" ]; then
  git -C "$CLONE" apply --index "$WORK/uncommitted.patch"
  log "applied the uncommitted changes to tracked files:$(git -C "$CLONE" diff --cached --shortstat)"
fi
untracked=$(git -C "$REPO" ls-files --others --exclude-standard | head -5)
[ -z "$untracked" ] || log "untracked, so not in the clone: $(echo "$untracked" | paste -sd' ')"
[ ! -e "$WORK/shared" ] || die "$WORK/shared exists"

# The clone's scripts must not inherit what this checkout's ci/lib.sh exported: its paths
# (SHARED among them) and its directories on PATH.
clean_path=$(tr ':' '\n' <<< "$PATH" | grep -v "^$REPO/" | paste -sd:)
in_clone() {
  (cd "$CLONE" && env -u REPO -u CI_DIR -u BIN_DIR -u VENV -u VENV27 -u TOOLS_DIR -u NODE_DIR \
    -u LOG_DIR -u SHARED PATH="$clean_path" "$@")
}

log "ci/setup in a clone of ${head:0:12} at $CLONE (no $WORK/shared)"
start=$SECONDS
in_clone ci/setup > "$LOG_DIR/standalone-setup.log" 2>&1 ||
  { tail -n 40 "$LOG_DIR/standalone-setup.log"; die "ci/setup failed in the clone (log: $LOG_DIR/standalone-setup.log)"; }
setup_s=$((SECONDS - start))
log "ci/setup in the clone took $setup_s s"
grep -E '^\[[0-9:]+\] (cargo install|pip install|apt-get install)' "$LOG_DIR/standalone-setup.log" || true
for tool in "$CLONE/target/ci/venv27/bin/wstest" "$CLONE/target/ci/tools/bin/nixpkgs-fmt" \
  "$CLONE/target/ci/tools/bin/deadnix" "$CLONE/target/ci/venv/bin/traefik"; do
  [ -x "$tool" ] || die "ci/setup in the clone did not install $tool"
done

start=$SECONDS
in_clone bash ci/suites/05-shellcheck.sh > "$LOG_DIR/standalone-shellcheck.log" 2>&1 ||
  { tail -n 40 "$LOG_DIR/standalone-shellcheck.log"; die "05-shellcheck failed in the clone"; }
echo "RESULT standalone: a clone with no ../shared beside it ran ci/setup ($setup_s s) and 05-shellcheck ($((SECONDS - start)) s)"
