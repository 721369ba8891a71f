#!/usr/bin/env bash
# Issue 14's attacks on the release binary over loopback (ci/attacks/README.md): malformed and
# never-ending HTTP, an exhausted fd table under the systemd watchdog, frame floods, readers
# that never read, a memory spike, per-IP evasion over IPv6, eviction, slow senders, Origin
# tricks, noisy churn, bad handshakes, short drains, invalid UTF-8 in pieces. Each attack runs
# its own server, bounded in count and time, with honest clients echoing alongside, prints its
# RESULT line and its checks; the suite fails if any attack fails.
#
#   bash ci/suites/25-attacks.sh               # all of them (about 2.5 minutes)
#   ATTACKS="1 7" bash ci/suites/25-attacks.sh # some of them
# needs: setup release
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"

WORK="$LOG_DIR/attacks"
rm -rf "$WORK"
mkdir -p "$WORK"
export PYTHONDONTWRITEBYTECODE=1

only=()
if [ -n "${ATTACKS:-}" ]; then
  read -ra numbers <<< "$ATTACKS"
  only=(--only "${numbers[@]}")
fi

"$VENV/bin/flake8" --max-line-length=120 "$REPO/ci/attacks"
cd "$REPO/ci"
log "attacks on ${SERVER_BIN:-$BIN_DIR/concurrent-socket}; server logs in $WORK"
"$VENV/bin/python" -m attacks --bin "${SERVER_BIN:-$BIN_DIR/concurrent-socket}" --work-dir "$WORK" "${only[@]}"
