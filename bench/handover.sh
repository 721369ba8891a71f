#!/usr/bin/env bash
# The handover restart against the number of connections (issue 18; docs/benchmarks.md,
# "Handover restart"): for each count given (default 1000 10000 19000), that many held
# connections (each sending every 5 s) and a churn client (100 new connections/s), then one
# `systemctl reload ws@blue` under the real systemd of the systemd suites' container
# (ci/systemd/lib.sh). Prints a Markdown table: the old process's descriptors at the reload,
# from `systemctl reload` to the new process's `listening` (READY=1), from SIGUSR2 to serving
# and to every connection resumed, the longest time without a successful new connection, and
# the old process's accepting and handover times.
# Runs ci/suites/31-handover.sh in its bench mode (its set-up and checks: every connection
# still open, none unresumable, no new connection failed). Needs root, and the builds of
# `ci/test-all` (setup release faults). The table is also left in
# target/ci/logs/handover-bench.md. The container's LimitNOFILE=20000 bounds the count, and
# 19,000 leaves 1,000 descriptors for everything else: the first 19,000 run reached the limit
# (2,311 connections shed at accept) with the churn client's handshakes started during the
# ramp and 200 held handshakes at once. Each row now starts on an idle server, ramps 50
# handshakes at a time (BENCH_OPEN_CONCURRENCY) and starts the churn client after the ramp;
# MAX_CONNECTIONS 19700 leaves the churn client room beside the held connections.
# Usage: sudo nice -n 10 bench/handover.sh [COUNT...]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(1000 10000 19000)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min), $(nproc) cores"
status=0
HANDOVER_BENCH="${COUNTS[*]}" MAX_CONNECTIONS=19700 bash "$REPO/ci/suites/31-handover.sh" > /dev/null || status=$?
# Written row by row by the suite: what was measured, also when a later row failed.
cat "$REPO/target/ci/logs/handover-bench.md"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
