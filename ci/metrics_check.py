"""Checks a running server's Prometheus metrics against the contract in docs/architecture.md.

1. Reads the metrics table of docs/architecture.md: every metric name, and every label value
   it lists (for example `reason`: `at_capacity`, ...).
2. Scrapes /metrics right after start-up: every listed series must already exist (the contract
   says labelled series start at 0, so dashboards and alerts always find them).
3. Makes known traffic over real WebSockets: one connection that sends a `message`, a `ping`,
   invalid JSON, an unknown type and a binary frame, waits for a heartbeat (and the server's
   ping, answered by the client), then closes with 1000; one upgrade with a
   bad connection id (400) and one from a forbidden Origin (403).
4. Scrapes again (while the connection is open and after it closed) and checks that the
   values moved exactly as that traffic implies.

Writes each scrape to --out-dir (startup.prom, open.prom, after.prom) for `promtool check
metrics`. Prints one line per failed check and exits 1 if any failed, 2 on bad usage.
"""

import argparse
import asyncio
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

TICK = re.compile(r"`([^`]+)`")


def contract(architecture_md):
    """(metric names, [(name, {label: value})] series that must exist, {name: [label names]})."""
    section = architecture_md.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names, series, label_names = [], [], {}
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        name = TICK.findall(cells[0])[0]
        if name.endswith("*"):  # `process_*`: the names are listed in the last column
            names += [n for n in TICK.findall(cells[2]) if n.startswith(name[:-1])]
            continue
        names.append(name)
        labelled = False
        for clause in re.sub(r"\(.*?\)", "", cells[2]).split(";"):  # "(value 1)" is prose
            if ":" not in clause:  # `version`, `server_id` (value 1): label names only
                if TICK.findall(clause):
                    label_names[name] = TICK.findall(clause)
                    labelled = True
                continue
            head, tail = clause.split(":", 1)
            fixed = dict(re.findall(r"`(\w+)`\s*=\s*`([^`]+)`", head))
            if fixed:  # `direction`=`in`: `type` = `message`, ...
                label, *values = TICK.findall(tail)
            else:  # `reason`: `a`, `b`
                (label,), values = TICK.findall(head), TICK.findall(tail)
            if not values:
                raise ValueError(f"cannot read the label values of {name}: {clause!r}")
            series += [(name, {**fixed, label: v}) for v in values]
            labelled = True
        if not labelled:
            series.append((name, {}))
    return names, series, label_names


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def samples(text):
    """{(sample name, frozenset of label items): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped, name, **labels):
    """The value of the one sample with this name and these labels, or None."""
    return scraped.get((name, frozenset(labels.items())))


def check_contract(scraped, names, series, label_names):
    failures = []
    sample_names = {name for name, _ in scraped}
    for name in names:
        if not sample_names & {name, f"{name}_count", f"{name}_bucket"}:
            failures.append(f"metric {name} is missing")
    for name, labels in series:
        found = [k for k in scraped if k[0] in (name, f"{name}_count") and labels.items() <= dict(k[1]).items()]
        if not found:
            failures.append(f"series {name}{labels} is missing")
    for name, wanted in label_names.items():
        keys = [dict(k[1]) for k in scraped if k[0] == name]
        if not any(set(wanted) <= set(k) for k in keys):
            failures.append(f"{name} lacks the labels {wanted}")
    return failures


async def reply(ws):
    """The next server message that is not a heartbeat."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] != "heartbeat":
            return message


async def converse(ws):
    """Known traffic on an open connection; returns the server messages it received."""
    received = [await reply(ws)]
    for frame in (
        json.dumps({"type": "message", "id": "m1", "data": {"n": 1}}),
        json.dumps({"type": "ping", "id": "p1"}),
        "{not json",
        json.dumps({"type": "shout", "id": "s1"}),
        b"\x00\x01binary",
    ):
        await ws.send(frame)
        received.append(await reply(ws))
    return received


async def heartbeat(ws):
    """Waits for a `heartbeat` (the server pings at the same interval; the client answers)."""
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "heartbeat":
        pass


async def rejected_upgrade(url, **kwargs):
    """The HTTP status of an upgrade the server must refuse."""
    try:
        async with connect(url, open_timeout=5, **kwargs):
            return 101
    except InvalidStatus as e:
        return e.response.status_code


def expect(failures, what, got, wanted):
    if got != wanted:
        failures.append(f"{what}: got {got}, expected {wanted}")


async def run(args):
    names, series, label_names = contract(Path(args.architecture).read_text())
    out = Path(args.out_dir)
    ws_base = args.server.replace("http://", "ws://")
    failures = []

    startup = scrape(args.metrics)
    (out / "startup.prom").write_text(startup)
    failures += [f"at start-up: {f}" for f in check_contract(samples(startup), names, series, label_names)]

    async with connect(f"{ws_base}/ws/chat/metrics-check", open_timeout=5, close_timeout=5) as ws:
        received = await converse(ws)
        await heartbeat(ws)
        opened = scrape(args.metrics)
    (out / "open.prom").write_text(opened)
    expect(failures, "server messages", [m["type"] for m in received],
           ["connection_established", "message_response", "pong", "error", "error", "error"])
    expect(failures, "error codes", [m.get("code") for m in received if m["type"] == "error"],
           ["invalid_json", "unknown_type", "unsupported_frame"])
    expect(failures, "websocket_connections_active while open",
           value(samples(opened), "websocket_connections_active"), 1.0)

    expect(failures, "bad connection id status", await rejected_upgrade(f"{ws_base}/ws/chat/bad.id"), 400)
    expect(failures, "forbidden origin status",
           await rejected_upgrade(f"{ws_base}/ws/chat/origin-check", origin="http://evil.example"), 403)

    # The close is accounted for when the server's connection task ends, just after the handshake.
    deadline = time.monotonic() + 10
    while True:
        after = scrape(args.metrics)
        s = samples(after)
        if value(s, "websocket_connections_active") == 0.0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    (out / "after.prom").write_text(after)
    failures += [f"after traffic: {f}" for f in check_contract(s, names, series, label_names)]

    health = json.loads(scrape(f"{args.server}/health"))
    for what, got, wanted in [
        ("websocket_connections_active after close", value(s, "websocket_connections_active"), 0.0),
        ("websocket_connections_limit", value(s, "websocket_connections_limit"), float(args.max_connections)),
        ("websocket_connections_total", value(s, "websocket_connections_total"), 1.0),
        ("websocket_draining", value(s, "websocket_draining"), 0.0),
        ("websocket_build_info", value(s, "websocket_build_info", version=health["version"], server_id=args.server_id), 1.0),
        ("rejected invalid_connection_id",
         value(s, "websocket_connections_rejected_total", reason="invalid_connection_id"), 1.0),
        ("rejected forbidden_origin", value(s, "websocket_connections_rejected_total", reason="forbidden_origin"), 1.0),
        ("rejected at_capacity", value(s, "websocket_connections_rejected_total", reason="at_capacity"), 0.0),
        ("messages in message", value(s, "websocket_messages_total", direction="in", type="message"), 1.0),
        ("messages in ping", value(s, "websocket_messages_total", direction="in", type="ping"), 1.0),
        ("messages out connection_established",
         value(s, "websocket_messages_total", direction="out", type="connection_established"), 1.0),
        ("messages out message_response", value(s, "websocket_messages_total", direction="out", type="message_response"), 1.0),
        ("messages out pong", value(s, "websocket_messages_total", direction="out", type="pong"), 1.0),
        ("messages out error", value(s, "websocket_messages_total", direction="out", type="error"), 3.0),
        ("errors invalid_json", value(s, "websocket_errors_total", code="invalid_json"), 1.0),
        ("errors unknown_type", value(s, "websocket_errors_total", code="unknown_type"), 1.0),
        ("errors unsupported_frame", value(s, "websocket_errors_total", code="unsupported_frame"), 1.0),
        ("errors rate_limited", value(s, "websocket_errors_total", code="rate_limited"), 0.0),
        ("disconnects client_close", value(s, "websocket_disconnects_total", reason="client_close"), 1.0),
        ("connection durations observed", value(s, "websocket_connection_duration_seconds_count"), 1.0),
    ]:
        expect(failures, what, got, wanted)
    invalid_in = value(s, "websocket_messages_total", direction="in", type="invalid")
    if not invalid_in or invalid_in < 2:
        failures.append(f"messages in invalid: got {invalid_in}, expected at least 2 (invalid JSON, unknown type)")
    at_least = [
        ("message latencies observed (message, ping)", value(s, "websocket_message_latency_seconds_count"), 2),
        ("messages out heartbeat", value(s, "websocket_messages_total", direction="out", type="heartbeat"), 1),
        ("ping round trips observed", value(s, "websocket_ping_rtt_seconds_count"), 1),
    ]
    for what, got, wanted in at_least:
        if not got or got < wanted:
            failures.append(f"{what}: got {got}, expected at least {wanted}")

    print(f"RESULT metrics: {len(names)} metric names and {len(series)} labelled series of "
          "docs/architecture.md checked at start-up and after traffic")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="public base URL, http://127.0.0.1:PORT")
    parser.add_argument("--metrics", required=True, help="the /metrics URL")
    parser.add_argument("--architecture", required=True, help="path of docs/architecture.md")
    parser.add_argument("--max-connections", type=int, required=True, help="the server's MAX_CONNECTIONS")
    parser.add_argument("--server-id", required=True, help="the server's SERVER_ID")
    parser.add_argument("--out-dir", required=True, help="where the scrapes are written")
    failures = asyncio.run(run(parser.parse_args()))
    for failure in failures:
        print(f"FAIL {failure}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
