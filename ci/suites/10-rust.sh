#!/usr/bin/env bash
# Formatting, lints and every cargo test of the workspace (unit, integration over real
# sockets, property tests). Runs as root in CI, so the tests that need root run too.
# needs: none
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$REPO"
cargo fmt --all -- --check
# The server's layers: no upward import, no cycle, ws/ knows only frames, files <= 450 lines.
python3 ci/check_layers.py
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p concurrent-socket --all-targets --features fault-injection -- -D warnings
cargo test --locked --workspace
