#!/usr/bin/env bash
# Formatting, lints and every cargo test of the workspace (unit, integration over real
# sockets, property tests). Runs as root in CI, after ci/setup installed every tool the tests
# use, so nothing may skip: REQUIRE_ALL_TESTS=1 turns a test's skip (journald without root,
# promtool or redis-server missing) into a failure. REQUIRE_ALL_TESTS=0 lets a run without root
# skip them. It needs ci/setup for promtool (Debian package prometheus) and redis-server (the
# Redis engine's conformance and fault tests, src/channels/redis/tests.rs and tests/redis.rs).
# needs: setup
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$REPO"
export REQUIRE_ALL_TESTS=${REQUIRE_ALL_TESTS:-1}
cargo fmt --all -- --check
# The server's layers: no upward import, no cycle, ws/ knows only frames, files <= 450 lines.
python3 ci/check_layers.py
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p concurrent-socket --all-targets --features fault-injection -- -D warnings
cargo test --locked --workspace
