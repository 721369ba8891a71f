#!/usr/bin/env python3
"""The medians of the repeated figures over several bench/run.sh results directories
(bench/rounds.sh makes them): every closed-loop echo run and every open-loop latency run
(ECHO_RUNS of each per directory), and every run of the channel figures (CHANNEL_RUNS of
each), per server. Prints the table of medians with the first server's ratio to each other
one (the headline of docs/benchmarks.md), then every run's value. A figure not run in the
directories is left out.

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


def channel_figures(kind, title):
    """The rows of one channel figure (bench/channels.sh): its runs are SERVER-KIND-N.json."""
    latency = ("channels", "delivery_latency")
    return {
        f"{title}: deliveries per second": (kind, "report", ("channels", "deliveries_per_s")),
        f"  {title}: delivery p50 (ms)": (kind, "report", latency + ("p50_ms",)),
        f"  {title}: delivery p99 (ms)": (kind, "report", latency + ("p99_ms",)),
        f"  {title}: delivery p99.9 (ms)": (kind, "report", latency + ("p999_ms",)),
        f"  {title}: server CPU seconds per 100,000 deliveries": (kind, "cpu", ("cpu_s_per_100k",)),
        f"  {title}: of it, user space (utime)": (kind, "cpu", ("user_s_per_100k",)),
        f"  {title}: of it, kernel (stime)": (kind, "cpu", ("system_s_per_100k",)),
        f"  {title}: server CPU (cores busy while publishing)": (kind, "cpu", ("cpu_cores",)),
        f"  {title}: client CPU, loadtest on the same cores (cores busy)": (kind, "cpu", ("client_cpu_cores",)),
        f"  {title}: missing publications, all runs (must be 0)": (kind, "report", ("channels", "counts", "missing")),
        f"  {title}: duplicate publications, all runs (must be 0)": (kind, "report", ("channels", "counts", "duplicates")),
    }


FIGURES.update(channel_figures("fanout", "one channel, 1,000 subscribers"))
FIGURES.update(channel_figures("fanout-10k", "one channel, 10,000 subscribers"))
FIGURES.update(channel_figures("rooms", "2,000 rooms of 5"))
# Summed over the runs, not their median.
TOTALS = ("failed", "missing", "duplicate")


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
        return sum(flat) if any(word in name for word in TOTALS) else statistics.median(flat)

    counts = {s: max(sum(len(run) for run in per_dir) for per_dir in runs[s].values()) for s in servers}
    print(f"Medians over every run in {len(results_dirs)} results directories "
          f"({', '.join(f'{s}: {n} runs of each figure' for s, n in counts.items())}):\n")
    print_table({s: {name: summary(name, per_dir) for name, per_dir in runs[s].items()} for s in servers}, servers)
    print("\nEvery run (results directories that ran the figure separated by /):\n")
    print("| figure | " + " | ".join(servers) + " |")
    print("|" + "---|" * (len(servers) + 1))
    for name in FIGURES:
        measured = {s: any(v is not None for run in runs[s][name] for v in run) for s in servers}
        if not any(measured.values()):
            continue
        cells = [" / ".join(" ".join(fmt(v) for v in run) for run in runs[s][name] if run)
                 if measured[s] else "n/a" for s in servers]
        print(f"| {name.strip()} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
