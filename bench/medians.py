#!/usr/bin/env python3
"""The medians of the repeated figures over several bench/run.sh results directories
(bench/rounds.sh makes them): every closed-loop echo run and every open-loop latency run
(ECHO_RUNS of each per directory), per server. Prints the table of medians with the first
server's ratio to each other one (the headline of docs/benchmarks.md), then every run's value.

    bench/medians.py RESULTS_DIR... -- SERVER...
"""

import re
import statistics
import sys
from pathlib import Path

from table import dig, fmt, load, print_table

# figure -> (the runs it comes from, the file of each run, the keys in that file); the
# failures are summed, every other figure is the median of its runs.
FIGURES = {
    "closed-loop echo, 1,000 connections (msgs/s)": ("echo", "cpu", ("msgs_per_s",)),
    "server CPU seconds per 100,000 messages (closed loop)": ("echo", "cpu", ("cpu_s_per_100k",)),
    "open loop 20,000 msgs/s: answered per second": ("latency", "report", ("messages", "answered_per_s")),
    "  server CPU seconds per 100,000 messages (open loop)": ("latency", "cpu", ("cpu_s_per_100k",)),
    "  failed messages, all runs (incl. due but unsent)": ("latency", "report", ("messages", "failed")),
    "  round trip p50 (ms)": ("latency", "report", ("latency", "round_trip", "p50_ms")),
    "  round trip p99 (ms)": ("latency", "report", ("latency", "round_trip", "p99_ms")),
    "  round trip p99.9 (ms)": ("latency", "report", ("latency", "round_trip", "p999_ms")),
}


def run_numbers(results, server, kind):
    """The run numbers N of SERVER-KIND-N.json in one results directory, in order."""
    pattern = re.compile(rf"{re.escape(server)}-{kind}-(\d+)\.json")
    return sorted(int(m.group(1)) for m in map(pattern.fullmatch, (p.name for p in results.iterdir())) if m)


def values(results_dirs, server, kind, source, keys):
    """Per results directory, the figure's value in each of its runs."""
    suffix = "-cpu.json" if source == "cpu" else ".json"
    return [[dig(load(results / f"{server}-{kind}-{n}{suffix}"), *keys) for n in run_numbers(results, server, kind)]
            for results in results_dirs]


def main():
    args = sys.argv[1:]
    if "--" not in args or args.index("--") == 0 or args[-1] == "--":
        sys.exit(__doc__)
    split = args.index("--")
    results_dirs, servers = [Path(d) for d in args[:split]], args[split + 1:]
    runs = {s: {name: values(results_dirs, s, *how) for name, how in FIGURES.items()} for s in servers}

    def summary(name, per_dir):
        flat = [v for run in per_dir for v in run if v is not None]
        if not flat:
            return None
        return sum(flat) if name.strip().startswith("failed") else statistics.median(flat)

    counts = {s: sum(len(r) for r in runs[s]["  round trip p99 (ms)"]) for s in servers}
    print(f"Medians over every run in {len(results_dirs)} results directories "
          f"({', '.join(f'{s}: {n} runs' for s, n in counts.items())}):\n")
    print_table({s: {name: summary(name, per_dir) for name, per_dir in runs[s].items()} for s in servers}, servers)
    print("\nEvery run (results directories separated by /):\n")
    print("| figure | " + " | ".join(servers) + " |")
    print("|" + "---|" * (len(servers) + 1))
    for name in FIGURES:
        cells = [" / ".join(" ".join(fmt(v) for v in run) for run in runs[s][name])
                 if any(runs[s][name]) else "n/a" for s in servers]
        print(f"| {name.strip()} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
