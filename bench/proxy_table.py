"""The `proxy` figure of bench/run.sh as docs/benchmarks.md shows it: the server measured with
clients connecting directly and through Traefik, side by side (bench/proxy.sh writes
proxy.json).

    python3 bench/proxy_table.py RUN_DIR/proxy.json
"""

import json
import sys


def fmt(value, unit, digits=1):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def rows(r):
    d, t = r["direct"], r["traefik"]
    return [
        (f"RSS per idle WebSocket ({d['idle']['connections']:,} / {t['idle']['connections']:,} connections)",
         f"server {fmt(d['idle']['server_kib_per_connection'], ' KiB')}",
         f"server {fmt(t['idle']['server_kib_per_connection'], ' KiB')} + Traefik "
         f"{fmt(t['idle']['traefik_kib_per_connection'], ' KiB')}"),
        ("handshakes per second (200 users churning)",
         fmt(d["handshakes_per_s"], "", 0), fmt(t["handshakes_per_s"], "", 0)),
        ("closed-loop echo, 1,000 connections (msgs/s)",
         fmt(d["echo"]["msgs_per_s"], "", 0), fmt(t["echo"]["msgs_per_s"], "", 0)),
        ("CPU per message, closed loop",
         f"server {fmt(d['echo']['server_us_per_msg'], ' µs', 2)}",
         f"server {fmt(t['echo']['server_us_per_msg'], ' µs', 2)} + Traefik "
         f"{fmt(t['echo']['traefik_us_per_msg'], ' µs', 2)}"),
        ("p99 round trip at 20,000 msgs/s",
         fmt(d["latency"]["p99_ms"], " ms", 2), fmt(t["latency"]["p99_ms"], " ms", 2)),
    ]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        report = json.load(f)
    print("| figure | direct (server alone) | through Traefik |")
    print("|---|---|---|")
    for figure, direct, traefik in rows(report):
        print(f"| {figure} | {direct} | {traefik} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
