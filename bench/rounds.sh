#!/usr/bin/env bash
# Repeats the benchmark's CPU and round-trip figures and prints the median of every run of
# each, per server, with concurrent-socket's ratios, then every run's value (bench/medians.py):
# the headline figures of docs/benchmarks.md. A single run of these varies by about 10 % (CPU)
# and by a factor of two or more (p99) on a shared host; the median of nine does not.
#
#   bench/rounds.sh [ROUNDS]     # default 3 rounds of ECHO_RUNS (3) runs: nine per figure
#   FIGURES="fanout fanout_10k rooms" bench/rounds.sh    # the channel figures' medians,
#                                # CHANNEL_RUNS (3) runs of each per round
#
# Each round is one `bench/run.sh` with FIGURES (default "echo latency") and SERVERS (default
# "concurrent-socket elysia"), so the servers alternate; ECHO_RUNS, LOADTEST and SERVER_BIN
# pass through. Each server passes bench/peers/check.sh once, before the first round. Results
# in target/ci/bench/rounds-<time>/, the medians also in its medians.md.
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../ci/lib.sh"

ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number from 1 (got '$ROUNDS'); usage: bench/rounds.sh [ROUNDS]"
export SERVERS=${SERVERS:-concurrent-socket elysia} FIGURES=${FIGURES:-echo latency}
read -ra server_list <<< "$SERVERS"
DIR="$CI_DIR/bench/rounds-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$DIR"

"$REPO/bench/peers/check.sh" "${server_list[@]}"
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round of $ROUNDS: $SERVERS, figures $FIGURES (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  OUT="$DIR" CHECK=no "$REPO/bench/run.sh" > "$DIR/round-$round.log" 2>&1 ||
    { tail -n 30 "$DIR/round-$round.log"; die "round $round failed (log: $DIR/round-$round.log)"; }
done
python3 "$REPO/bench/medians.py" "$DIR"/2*/ -- "${server_list[@]}" | tee "$DIR/medians.md"
log "results in $DIR"
