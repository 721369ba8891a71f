#!/usr/bin/env python3
"""Turns one bench/run.sh results directory into the Markdown table of docs/benchmarks.md:
every figure per server, side by side, and concurrent-socket's ratio to each peer."""

import json
import re
import sys
from pathlib import Path


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dig(doc, *keys):
    for key in keys:
        if doc is None:
            return None
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def held(report):
    """Connections open through the whole hold: the fewest from 2 s after the 20 s ramp to
    the last full second (the timeline's last entry is the final drain)."""
    counts = [p["active"] for p in (dig(report, "timeline") or [])[:-1] if p["second"] >= 22]
    return min(counts) if counts else None


def troubles(report):
    if report is None:
        return None
    failures = dig(report, "connections", "failures") or {}
    disconnects = dig(report, "disconnects", "by_close_code") or {}
    return sum(failures.values()) + sum(disconnects.values())


def p99(report):
    return dig(report, "latency", "round_trip", "p99_ms")


def delivery_p99(report):
    return dig(report, "channels", "delivery_latency", "p99_ms")


def median_run(run, server, name, key=p99):
    """Of the runs SERVER-NAME-1.json, -2.json...: the one with the median `key` (by default
    the p99 round trip)."""
    paths = [p for p in run.iterdir() if re.fullmatch(rf"{re.escape(server)}-{name}-\d+\.json", p.name)]
    reports = [r for r in map(load, paths) if key(r) is not None]
    reports.sort(key=key)
    return reports[len(reports) // 2] if reports else None


def figures(run, server):
    f = lambda name: load(run / f"{server}-{name}.json")  # noqa: E731
    hold, hold_1s = f("hold"), f("hold-1s")
    latency = median_run(run, server, "latency")
    rtt = dig(latency, "latency", "round_trip") or {}
    return {
        "RSS per idle connection at 10,000 (KiB)": dig(f("idle-rss"), "rss_per_connection_kib"),
        "connections held through 30 s, 5 s heartbeat (target 19,000)": held(hold),
        "  most connections open at once": dig(hold, "connections", "peak_active"),
        "  failed connects + server-side disconnects": troubles(hold),
        "  RSS at that count (MiB)": (dig(f("hold-memory"), "rss_at_max_kib") or 0) / 1024 or None,
        "  memory slope (KiB per connection)": dig(f("hold-memory"), "slope_kib_per_connection"),
        "  projected RSS, 100,000 connections (MiB)": dig(f("hold-memory"), "projected_100k_mib"),
        "  projected RSS, 1,000,000 connections (MiB)": dig(f("hold-memory"), "projected_1m_mib"),
        "connections held through 30 s, 1 s heartbeat (target 19,000)": held(hold_1s),
        "  most connections open at once (1 s heartbeat)": dig(hold_1s, "connections", "peak_active"),
        "  failed connects + server-side disconnects (1 s heartbeat)": troubles(hold_1s),
        "closed-loop echo, 1,000 connections (msgs/s)": dig(f("echo-cpu"), "msgs_per_s"),
        "server CPU seconds per 100,000 messages (closed loop)": dig(f("echo-cpu"), "cpu_s_per_100k"),
        "open loop 20,000 msgs/s: answered per second": dig(latency, "messages", "answered_per_s"),
        "  server CPU seconds per 100,000 messages (open loop)": dig(f("latency-cpu"), "cpu_s_per_100k"),
        "  users connected (of 1,000)": dig(latency, "connections", "peak_active"),
        "  failed messages (incl. due but unsent)": dig(latency, "messages", "failed"),
        "  round trip p50 (ms)": rtt.get("p50_ms"),
        "  round trip p99 (ms)": rtt.get("p99_ms"),
        "  round trip p99.9 (ms)": rtt.get("p999_ms"),
        "handshakes per second (200 users churning)": dig(f("churn"), "connections", "established_per_s"),
        "share of server CPU in the kernel, closed loop (perf, %)": dig(f("profile"), "kernel_pct"),
        "  of it, the client's TCP receive run inside the server's sends (%)": dig(f("profile"), "peer_receive_pct"),
        "  closed-loop CPU s per 100,000 messages without the client's receive (estimate)":
            without_peer_receive(dig(f("echo-cpu"), "cpu_s_per_100k"), dig(f("profile"), "peer_receive_pct")),
        **channel_figures(run, server),
        **redis_figures(run, server),
    }


def offered(report):
    """Deliveries per second the run asked for: subscribers (or room members) x publications/s
    (x channels)."""
    scenario = dig(report, "settings", "channels", "scenario") or {}
    if "fanout" in scenario:
        fanout = scenario["fanout"]
        return fanout["subscribers"] * fanout["rate"] * fanout.get("channels", 1)
    if "rooms" in scenario:
        rooms = scenario["rooms"]
        return rooms["rooms"] * rooms["size"] * rooms["size"] * rooms["rate"]
    return None


def lost(report):
    """Publications a subscriber missed or got twice (must be 0), when the run has a report."""
    counts = dig(report, "channels", "counts")
    return None if counts is None else counts["missing"] + counts["duplicates"]


def channel_rows(run, server, name, title, short, broker=False):
    """One publication/s figure's rows: the run with the median delivery p99, and the median
    CPU of its runs; with `broker`, also the publications per second and the broker's (Redis's)
    own CPU."""
    report = median_run(run, server, name, key=delivery_p99)
    latency = dig(report, "channels", "delivery_latency") or {}
    cpu = load(run / f"{server}-{name}-cpu.json")
    rows = {
        f"{title}: deliveries per second": dig(report, "channels", "deliveries_per_s"),
        f"  {short}: offered (subscribers x publications per second)": offered(report),
        f"  {short}: delivery p50 (ms)": latency.get("p50_ms"),
        f"  {short}: delivery p99 (ms)": latency.get("p99_ms"),
        f"  {short}: delivery p99.9 (ms)": latency.get("p999_ms"),
        f"  {short}: server CPU seconds per 100,000 deliveries": dig(cpu, "cpu_s_per_100k"),
        f"  {short}: server CPU (cores busy while publishing)": dig(cpu, "cpu_cores"),
        f"  {short}: client CPU, loadtest on the same cores (cores busy while publishing)": dig(cpu, "client_cpu_cores"),
        f"  {short}: of the server CPU per 100,000 deliveries, user space (utime)": dig(cpu, "user_s_per_100k"),
        f"  {short}: of the server CPU per 100,000 deliveries, kernel (stime)": dig(cpu, "system_s_per_100k"),
        f"  {short}: missing + duplicate publications (must be 0)": lost(report),
        f"  {short}: insufficient_state, failed connects, server-side disconnects": add(
            dig(report, "channels", "counts", "insufficient_state"), troubles(report)),
    }
    if broker:
        rows.update({
            f"  {short}: publications per second sent": dig(cpu, "publishes_per_s"),
            f"  {short}: publications per second run by Redis": dig(cpu, "broker_publications_per_s"),
            f"  {short}: Redis CPU per publication (us, utime + stime)": dig(cpu, "broker_cpu_us_per_publication"),
            f"  {short}: Redis CPU (cores busy while publishing)": dig(cpu, "broker_cpu_cores"),
        })
    return rows


def channel_figures(run, server):
    """The channel figures (bench/channels.sh): per publication/s figure, the run with the
    median delivery p99, and the median CPU of its runs; the memory figures."""
    rows = {}
    for name, title, short in [("fanout", "one channel, 1,000 subscribers", "1,000 subscribers"),
                               ("fanout-10k", "one channel, 10,000 subscribers", "10,000 subscribers"),
                               ("rooms", "2,000 rooms of 5 users, each publishing once a second", "rooms")]:
        rows.update(channel_rows(run, server, name, title, short))
    idle_0 = dig(load(run / f"{server}-chmem-idle-0.json"), "rss_per_connection_kib")
    idle_2 = dig(load(run / f"{server}-chmem-idle-2.json"), "rss_per_connection_kib")
    history = load(run / f"{server}-chmem-history.json")
    rows.update({
        "RSS per idle connection with 2 subscriptions, 10,000 connections (KiB)": idle_2,
        "  RSS per idle connection without subscriptions, same client (KiB)": idle_0,
        "  the 2 subscriptions' share (KiB)": None if None in (idle_0, idle_2) else idle_2 - idle_0,
        "RSS per channel with full history (KiB)": dig(history, "rss_per_channel_kib"),
        "  publications kept per channel (HISTORY_SIZE, 64-byte padding)": dig(history, "history_size"),
    })
    calls = load(run / f"{server}-syscalls.json")
    rows.update({
        "one channel, 1,000 subscribers: system calls per delivery (perf, every thread)":
            dig(calls, "calls_per_delivery"),
        "  of them, sends (sendto, sendmsg, write, writev)": dig(calls, "sends_per_delivery"),
        "  of them, waits for events (epoll_wait, epoll_pwait, epoll_pwait2)": dig(calls, "waits_per_delivery"),
        "  of them, futex": dig(calls, "futex_per_delivery"),
    })
    shares = load(run / f"{server}-syscalls-profile.json")
    rows.update({
        "one channel, 1,000 subscribers: share of server CPU in the kernel (perf, %)":
            dig(shares, "kernel_pct"),
        "  of the server CPU, the clients' TCP receive run inside its sends (%)":
            dig(shares, "peer_receive_pct"),
        "  CPU s per 100,000 deliveries without the clients' receive (estimate)":
            without_peer_receive(dig(load(run / f"{server}-fanout-cpu.json"), "cpu_s_per_100k"),
                                 dig(shares, "peer_receive_pct")),
    })
    return rows


def cross_title(run):
    """The redis_cross figure's title, with its load as run (REDIS_CROSS_* may change it): from
    the first report of it in the run, whichever server's, so that every column has the row."""
    load_run = {"channels": 1000, "rate": 10, "subscribers": 5}
    for path in sorted(run.glob("*-redis-cross-1.json")):
        load_run = dig(load(path), "settings", "channels", "scenario", "fanout") or load_run
        break
    channels, rate, subscribers = (load_run[k] for k in ("channels", "rate", "subscribers"))
    return (f"Redis engine across processes: {channels:,} channels, publisher on A at {rate:g}/s, "
            f"{subscribers} subscriber{'' if subscribers == 1 else 's'} on B "
            f"({channels * rate:,.0f} publications/s)")


def redis_figures(run, server):
    """The Redis-engine figures (bench/redis.sh, issue 17), and the saturating fan-out of both
    engines with the Redis engine's deliveries per second as a share of the in-memory one's."""
    rows = {}
    for name, title, short, broker in [
            ("redis-cross", cross_title(run), "A to B", True),
            ("redis-rooms", "Redis engine, 2,000 rooms of 5 with members on both A and B "
             "(10,000 publications/s)", "rooms on A and B", True),
            ("redis-fanout", "Redis engine, one channel, 1,000 subscribers (the fanout load)",
             "Redis, 1,000 subscribers", True),
            ("fanout-max", "one channel, 1,000 subscribers at 500 publications/s (saturating), "
             "in-memory engine", "in-memory at 500/s", False),
            ("redis-fanout-max", "the same with the Redis engine", "Redis at 500/s", True)]:
        rows.update(channel_rows(run, server, name, title, short, broker))
    delivered = lambda name: dig(median_run(run, server, name, key=delivery_p99),  # noqa: E731
                                 "channels", "deliveries_per_s")
    rows.update({
        "Redis engine / in-memory engine, deliveries per second, fanout load (goal >= 0.8)":
            ratio(delivered("redis-fanout"), delivered("fanout")),
        "Redis engine / in-memory engine, deliveries per second, at 500/s (goal >= 0.8)":
            ratio(delivered("redis-fanout-max"), delivered("fanout-max")),
    })
    return rows


def ratio(a, b):
    return a / b if a is not None and b else None


def add(*values):
    return None if any(v is None for v in values) else sum(values)


def without_peer_receive(cpu, peer_receive_pct):
    """The CPU figure less the loopback delivery to the client, from the profile's share."""
    if cpu is None or peer_receive_pct is None:
        return None
    return cpu * (1 - peer_receive_pct / 100)


def fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def print_table(table, servers):
    """table: {server: {figure: value}}; the first server's ratio to each of the others. A
    figure no server has (not among the FIGURES run) is left out."""
    ours, peers = servers[0], servers[1:]
    header = ["figure"] + servers + [f"{ours} / {peer}" for peer in peers]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in table[ours]:
        if all(table[s][name] is None for s in servers):
            continue
        row = [name] + [fmt(table[s][name]) for s in servers]
        for peer in peers:
            a, b = table[ours][name], table[peer][name]
            row.append(f"{a / b:.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "")
        print("| " + " | ".join(row) + " |")


def main():
    run = Path(sys.argv[1])
    servers = sys.argv[2:]
    print_table({server: figures(run, server) for server in servers}, servers)


if __name__ == "__main__":
    main()
