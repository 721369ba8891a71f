#!/usr/bin/env bash
# Lints every shell script in the repository with shellcheck.
# needs: setup
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$REPO"
mapfile -t scripts < <(git ls-files -co --exclude-standard | grep -v '^ci/node/' |
  while read -r f; do [ -f "$f" ] && head -c 64 "$f" | grep -qE '^#!.*(ba)?sh|shellcheck shell=' && echo "$f"; done)
echo "checking ${#scripts[@]} scripts"
shellcheck -x -P SCRIPTDIR "${scripts[@]}"
