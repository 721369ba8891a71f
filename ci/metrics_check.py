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


# Values after the traffic of `run`: (metric, labels, value). The traffic is one accepted
# connection closed by the client, one upgrade with a bad id, one from a forbidden origin.
EXACT_AFTER_TRAFFIC = [
    ("websocket_connections_active", {}, 0),
    ("websocket_connections_total", {}, 1),
    ("websocket_draining", {}, 0),
    ("websocket_connections_rejected_total", {"reason": "invalid_connection_id"}, 1),
    ("websocket_connections_rejected_total", {"reason": "forbidden_origin"}, 1),
    ("websocket_connections_rejected_total", {"reason": "at_capacity"}, 0),
    ("websocket_messages_total", {"direction": "in", "type": "message"}, 1),
    ("websocket_messages_total", {"direction": "in", "type": "ping"}, 1),
    ("websocket_messages_total", {"direction": "out", "type": "connection_established"}, 1),
    ("websocket_messages_total", {"direction": "out", "type": "message_response"}, 1),
    ("websocket_messages_total", {"direction": "out", "type": "pong"}, 1),
    ("websocket_messages_total", {"direction": "out", "type": "error"}, 3),
    # Each answered with an `error`: bad JSON, unknown type, binary frame (docs/metrics.md).
    ("websocket_messages_total", {"direction": "in", "type": "invalid"}, 3),
    # One per answer written: message_response, pong and the three errors.
    ("websocket_message_latency_seconds_count", {}, 5),
    ("websocket_errors_total", {"code": "invalid_json"}, 1),
    ("websocket_errors_total", {"code": "unknown_type"}, 1),
    ("websocket_errors_total", {"code": "unsupported_frame"}, 1),
    ("websocket_errors_total", {"code": "rate_limited"}, 0),
    ("websocket_disconnects_total", {"reason": "client_close"}, 1),
    ("websocket_connection_duration_seconds_count", {}, 1),
]
# Values that depend on timing: how many heartbeat intervals the connection lived.
AT_LEAST_AFTER_TRAFFIC = [
    ("websocket_messages_total", {"direction": "out", "type": "heartbeat"}, 1),
    ("websocket_ping_rtt_seconds_count", {}, 1),
]


def check_values(scraped, args, version):
    """Failures of the values after traffic, including the configured limit and build info."""
    exact = EXACT_AFTER_TRAFFIC + [
        ("websocket_connections_limit", {}, args.max_connections),
        ("websocket_build_info", {"version": version, "server_id": args.server_id}, 1),
    ]
    failures = []
    for name, labels, wanted in exact:
        got = value(scraped, name, **labels)
        if got != wanted:
            failures.append(f"{name}{labels}: got {got}, expected {wanted}")
    for name, labels, wanted in AT_LEAST_AFTER_TRAFFIC:
        got = value(scraped, name, **labels)
        if got is None or got < wanted:
            failures.append(f"{name}{labels}: got {got}, expected at least {wanted}")
    return failures


def check_conversation(received, opened):
    """Failures of what the server answered and of the gauge while the connection was open."""
    wanted = [
        ("server messages", [m["type"] for m in received],
         ["connection_established", "message_response", "pong", "error", "error", "error"]),
        ("error codes", [m.get("code") for m in received if m["type"] == "error"],
         ["invalid_json", "unknown_type", "unsupported_frame"]),
        ("websocket_connections_active while open", value(samples(opened), "websocket_connections_active"), 1),
    ]
    return [f"{what}: got {got}, expected {want}" for what, got, want in wanted if got != want]


async def scrape_when_closed(url):
    """A scrape once the closed connection is accounted for (its task ends after the handshake)."""
    deadline = time.monotonic() + 10
    while True:
        text = scrape(url)
        if value(samples(text), "websocket_connections_active") == 0 or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.1)


async def run(args):
    names, series, label_names = contract(Path(args.architecture).read_text())
    out = Path(args.out_dir)
    ws_base = args.server.replace("http://", "ws://")

    startup = scrape(args.metrics)
    (out / "startup.prom").write_text(startup)
    failures = [f"at start-up: {f}" for f in check_contract(samples(startup), names, series, label_names)]

    async with connect(f"{ws_base}/ws/chat/metrics-check", open_timeout=5, close_timeout=5) as ws:
        received = await converse(ws)
        await heartbeat(ws)
        opened = scrape(args.metrics)
    (out / "open.prom").write_text(opened)
    failures += check_conversation(received, opened)

    for what, url, headers, status in [
        ("bad connection id", f"{ws_base}/ws/chat/bad.id", {}, 400),
        ("forbidden origin", f"{ws_base}/ws/chat/origin-check", {"origin": "http://evil.example"}, 403),
    ]:
        got = await rejected_upgrade(url, **headers)
        if got != status:
            failures.append(f"{what}: HTTP {got}, expected {status}")

    after = await scrape_when_closed(args.metrics)
    (out / "after.prom").write_text(after)
    scraped = samples(after)
    failures += [f"after traffic: {f}" for f in check_contract(scraped, names, series, label_names)]
    version = json.loads(scrape(f"{args.server}/health"))["version"]
    failures += [f"after traffic: {f}" for f in check_values(scraped, args, version)]

    print(f"RESULT metrics: {len(names)} metric names and {len(series)} labelled series of "
          "docs/architecture.md present from start-up; values checked after known traffic")
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
