#!/usr/bin/env python3
"""Checks that a server speaks wire protocol v1 (docs/protocol.md) the way concurrent-socket
does: handshake refusals, every request and error, heartbeats, liveness, idle timeout, rate
limit, replacement, size limits and the drain on SIGTERM. bench/peers/check.sh starts the
server with the settings below and runs this against it; bench/run.sh does so before it
measures a server, so that a benchmark never compares against a server that answers less.

    check.py --server NAME --port PORT --pid PID
    check.py --env        # the settings the server must run with (CHECK_ENV below)

Differences a stack imposes on a peer are listed in KNOWN (and bench/peers/README.md): they
are printed, not failed. The servers that speak channels (protocol v1.1) also get the checks
of check_channels.py, before the drain. Exit 1 on any failure.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import time
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

# The settings the server under test must run with (check.sh passes them).
CHECK_ENV = {
    "HEARTBEAT_INTERVAL": "400",
    "CONNECTION_TIMEOUT": "2500",
    "MAX_MESSAGE_BYTES": "1024",
    "RATE_LIMIT_MSGS_PER_SEC": "20",
    "MAX_CONNECTIONS": "4",
    "MAX_CONNECTIONS_PER_IP": "3",
    "SHUTDOWN_TIMEOUT": "3000",
    "SERVER_ID": "check",
    "ALLOWED_ORIGINS": "",
}
HEARTBEAT_MS = int(CHECK_ENV["HEARTBEAT_INTERVAL"])
CLOSE, PING = 0x8, 0x9
MAX_BYTES = int(CHECK_ENV["MAX_MESSAGE_BYTES"])
RATE = int(CHECK_ENV["RATE_LIMIT_MSGS_PER_SEC"])

# Where a peer's stack makes it answer differently from concurrent-socket, by check name.
PARSED_BEFORE_HANDLER = "Elysia parses each text frame before the handler sees it"
RESERIALISED = "JSON.parse and JSON.stringify: the same value, not the same bytes"
LAST_KEY_WINS = "JSON.parse keeps the last of duplicated keys"
KNOWN = {
    "elysia": {
        "string frame": PARSED_BEFORE_HANDLER + ": a JSON string arrives as its text, answered invalid_json",
        "oversized ping": PARSED_BEFORE_HANDLER + ": only a message's data is held to MAX_MESSAGE_BYTES",
        "data byte for byte": RESERIALISED,
        "duplicated keys": LAST_KEY_WINS,
        "goodbye before 1009": "Bun closes an oversized frame with 1009 itself, before any goodbye",
    },
    "node-ws": {
        "data byte for byte": RESERIALISED,
        "duplicated keys": LAST_KEY_WINS,
        "goodbye before 1009": "ws closes an oversized frame with 1009 itself, before any goodbye",
    },
}


class CheckFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


class Client:
    """A WebSocket client that reads the server's messages as JSON, skipping heartbeats."""

    def __init__(self, port, cid, source="127.0.0.1", headers=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        self.ws = connect(f"ws://127.0.0.1:{port}/ws/chat/{cid}", sock=sock, compression=None, proxy=None,
                          ping_interval=None, additional_headers=headers, open_timeout=5, close_timeout=3,
                          max_size=None).__enter__()
        self.established = self.next()
        expect(self.established["type"] == "connection_established", f"first message {self.established}")

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.ws.close()

    def next_raw(self, timeout=3.0):
        """The next message that is not a heartbeat, as the text received."""
        while True:
            text = self.ws.recv(timeout=timeout)
            if isinstance(text, bytes) or '"type":"heartbeat"' not in text:
                return text

    def next(self, timeout=3.0):
        text = self.next_raw(timeout)
        message = json.loads(text)
        keys = list(message)
        expect(keys[0] == "type" and keys[-1] == "ts" and isinstance(message["ts"], int),
               f"type first and an integer ts last: {text}")
        return message

    def ask(self, frame):
        self.ws.send(frame)
        return self.next()

    def closed(self, timeout=5.0):
        """Reads until the server's close: (messages before it, close code)."""
        seen = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                seen.append(json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
        except ConnectionClosed as e:
            return [m for m in seen if m["type"] != "heartbeat"], e.rcvd.code if e.rcvd else None
        except TimeoutError:
            pass
        raise CheckFailed(f"not closed within {timeout} s; got {seen}")


def http_get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict((k.lower(), v) for k, v in response.getheaders()), body


UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
UPGRADE_REQUEST = (b"GET /ws/chat/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   + b"".join(f"{k}: {v}\r\n".encode() for k, v in UPGRADE.items()) + b"\r\n")


def refused(port, path, status, error, retry_after=None, headers=None):
    got, got_headers, body = http_get(port, path, {**UPGRADE, **(headers or {})})
    expect(got == status and json.loads(body) == {"error": error}, f"{path}: {got} {body!r}, expected {status} {error}")
    if retry_after:
        expect(got_headers.get("retry-after") == retry_after, f"Retry-After {got_headers.get('retry-after')}")


def error_of(message, code, with_id=None):
    expect(message["type"] == "error" and message["code"] == code, f"expected error {code}: {message}")
    expect(message.get("id") == with_id and ("id" in message) == (with_id is not None), f"id: {message}")
    expect(isinstance(message["message"], str) and message["message"], f"message text: {message}")


# --- the checks, in order; each gets the port -------------------------------------------------

def check_http(port):
    status, _, body = http_get(port, "/health")
    health = json.loads(body)
    expect(status == 200 and health["status"] == "ok" and isinstance(health["connections"], int), f"/health {body!r}")
    status, headers, body = http_get(port, "/ws/chat/alice")
    expect(status == 426 and json.loads(body) == {"error": "upgrade_required"}, f"plain GET: {status} {body!r}")
    expect(headers.get("upgrade", "").lower() == "websocket", "426 without Upgrade: websocket")
    for path in ["/ws/chat/bad%20id", "/ws/chat/" + "x" * 65, "/ws/chat/a/b", "/ws/chat/"]:
        refused(port, path, 400, "invalid_connection_id")
    refused(port, "/ws/chat/alice", 403, "forbidden_origin", headers={"Origin": "http://elsewhere.example"})
    status, _, body = http_get(port, "/nowhere")
    expect(status == 404 and json.loads(body) == {"error": "not_found"}, f"/nowhere: {status} {body!r}")


def check_established(port):
    with Client(port, "check-established") as c:
        e = c.established
        expect(e["connectionId"] == "check-established" and e["serverId"] == "check", f"{e}")
        expect(e["heartbeatIntervalMs"] == HEARTBEAT_MS, f"heartbeatIntervalMs {e}")


def check_requests(port):
    with Client(port, "check-requests") as c:
        m = c.ask('{"type":"message","id":"1","data":{"text":"hi","n":[1,2,null]}}')
        data = {"text": "hi", "n": [1, 2, None]}
        expect(m == {"type": "message_response", "id": "1", "data": data, "ts": m["ts"]}, f"{m}")
        m = c.ask('{"type":"message"}')
        expect(m == {"type": "message_response", "data": None, "ts": m["ts"]}, f"no id, no data: {m}")
        m = c.ask('{"type":"ping","id":"p"}')
        expect(m == {"type": "pong", "id": "p", "ts": m["ts"]}, f"{m}")
        m = c.ask('{"type":"ping","id":null}')
        expect(m == {"type": "pong", "ts": m["ts"]}, f"a null id is no id: {m}")
        m = c.ask(' {"type":"ping","extra":[1]} ')
        expect(m["type"] == "pong", f"whitespace and other fields: {m}")


def check_errors(port):
    with Client(port, "check-errors") as c:
        error_of(c.ask("{oops"), "invalid_json")
        error_of(c.ask("[1,2]"), "invalid_message")
        error_of(c.ask("42"), "invalid_message")
        error_of(c.ask('{"id":"x"}'), "invalid_message", "x")
        error_of(c.ask('{"type":7,"id":"y"}'), "invalid_message", "y")
        error_of(c.ask('{"type":"ping","id":5}'), "invalid_message")
        error_of(c.ask(json.dumps({"type": "ping", "id": "i" * 129})), "invalid_message")
        m = c.ask(json.dumps({"type": "ping", "id": "\U0001F600" * 100}, ensure_ascii=False))
        expect(m["type"] == "pong", f"an id is counted in characters, not UTF-16 units: {m}")
        m = c.ask('{"type":"shout","id":"2"}')
        error_of(m, "unknown_type", "2")
        expect(m["message"] == "unknown message type 'shout'", f"{m}")
        c.ws.send(b"\x01\x02")
        error_of(c.next(), "unsupported_frame")
        expect(c.ask('{"type":"ping"}')["type"] == "pong", "the connection stays open after errors")


def check_string_frame(port):
    with Client(port, "check-string") as c:
        error_of(c.ask('"a JSON string"'), "invalid_message")


def check_data_bytes(port):
    with Client(port, "check-bytes") as c:
        c.ws.send('{"type":"message","data":{"b":1,"a":[1.0,2e3]}}')
        text = c.next_raw()
        expect('"data":{"b":1,"a":[1.0,2e3]}' in text, f"data byte for byte: {text}")


def check_duplicated_keys(port):
    with Client(port, "check-duplicates") as c:
        error_of(c.ask('{"type":"ping","type":"message"}'), "invalid_message")


def check_sizes(port):
    with Client(port, "check-sizes") as c:
        big = json.dumps({"type": "message", "id": "big", "data": "x" * MAX_BYTES})
        error_of(c.ask(big), "message_too_large")
        ok = json.dumps({"type": "message", "data": "x" * (MAX_BYTES - 40)})
        expect(c.ask(ok)["type"] == "message_response", "a message just under MAX_MESSAGE_BYTES is answered")


def check_oversized_ping(port):
    with Client(port, "check-oversized-ping") as c:
        error_of(c.ask(json.dumps({"type": "ping", "pad": "x" * MAX_BYTES})), "message_too_large")


def check_close_1009(port):
    with Client(port, "check-1009") as c:
        c.ws.send(json.dumps({"type": "message", "data": "x" * (4 * MAX_BYTES + 10)}))
        _, code = c.closed()
        expect(code == 1009, f"over 4 x MAX_MESSAGE_BYTES: close {code}, expected 1009")


def check_goodbye_1009(port):
    with Client(port, "check-goodbye-1009") as c:
        c.ws.send(json.dumps({"type": "message", "data": "x" * (4 * MAX_BYTES + 10)}))
        seen, _ = c.closed()
        expect([m["reason"] for m in seen if m["type"] == "goodbye"] == ["message_too_large"], f"goodbye: {seen}")


def check_heartbeat(port):
    with Client(port, "check-heartbeat") as c:
        start = time.monotonic()
        beat = json.loads(c.ws.recv(timeout=HEARTBEAT_MS / 1000 * 3))
        took = time.monotonic() - start
        expect(beat["type"] == "heartbeat" and list(beat) == ["type", "ts"], f"heartbeat: {beat}")
        expect(took >= HEARTBEAT_MS / 1000 * 0.5, f"heartbeat after {took:.2f} s")


def opcodes(stream):
    """The opcodes of the unmasked frames in a server's byte stream after its 101 response."""
    data = stream[stream.index(b"\r\n\r\n") + 4:]
    found = []
    while len(data) >= 2:
        length, start = data[1] & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length, start = int.from_bytes(data[2:2 + size], "big"), 2 + size
        found.append(data[0] & 0x0F)
        data = data[start + length:]
    return found


def check_dead_peer(port):
    """A client that never answers the server's pings is dropped, without a close frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(UPGRADE_REQUEST % b"check-dead")
        start, stream = time.monotonic(), b""
        while chunk := sock.recv(65536):
            stream += chunk
        took = time.monotonic() - start
    expect(stream.startswith(b"HTTP/1.1 101"), f"upgrade: {stream[:40]!r}")
    frames = opcodes(stream)
    expect(PING in frames and CLOSE not in frames, f"frames {frames}: pings, then TCP closed without a close frame")
    expect(2 * HEARTBEAT_MS / 1000 * 0.9 <= took <= 3 * HEARTBEAT_MS / 1000 + 1, f"dropped after {took:.2f} s")


def check_idle_timeout(port):
    with Client(port, "check-idle") as c:
        start = time.monotonic()
        seen, code = c.closed(timeout=10)
        took = time.monotonic() - start
        timeout = int(CHECK_ENV["CONNECTION_TIMEOUT"]) / 1000
        expect(seen and seen[-1]["type"] == "goodbye" and seen[-1]["reason"] == "idle_timeout"
               and seen[-1]["reconnect"] is False and code == 1000, f"idle: {seen} close {code}")
        expect(timeout * 0.9 <= took <= timeout + 1.5, f"idle_timeout after {took:.2f} s, expected {timeout} s")


def check_replaced(port):
    with Client(port, "check-same") as first, Client(port, "check-same") as second:
        seen, code = first.closed()
        expect([(m["type"], m.get("reason"), m.get("reconnect")) for m in seen] == [("goodbye", "replaced", True)]
               and code == 1000, f"replaced: {seen} close {code}")
        expect(second.ask('{"type":"ping"}')["type"] == "pong", "the newer connection stays")


def check_rate_limit(port):
    with Client(port, "check-rate") as c:
        for i in range(3 * RATE):
            try:
                c.ws.send(f'{{"type":"ping","id":"{i}"}}')
            except ConnectionClosed:
                break  # a server that reads fast closes the flood before its end: what it said still counts
        seen, code = c.closed()
        answers = [m for m in seen if m["type"] != "heartbeat"]
        pongs = sum(m["type"] == "pong" for m in answers)
        limited = [m for m in answers if m["type"] == "error"]
        expect(RATE <= pongs <= RATE + 2, f"{pongs} pongs at {RATE} messages per second")
        expect(limited and all(m["code"] == "rate_limited" and "id" not in m for m in limited), f"{limited[:2]}")
        expect(answers[-1]["type"] == "goodbye" and answers[-1]["reason"] == "policy_violation" and code == 1008,
               f"flooding ends in policy_violation: {answers[-1]} close {code}")


def check_limits(port):
    with ExitStack() as stack:
        for i in range(3):
            stack.enter_context(Client(port, f"check-ip-{i}"))
        refused(port, "/ws/chat/check-ip-3", 429, "ip_limit", "5")
        stack.enter_context(Client(port, "check-other-ip", source="127.0.0.2"))
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0)) as sock:
            sock.sendall(UPGRADE_REQUEST % b"check-full")
            head = sock.recv(4096).decode(errors="replace")
        expect(head.startswith("HTTP/1.1 503") and "at_capacity" in head and "retry-after: 5" in head.lower(),
               f"at MAX_CONNECTIONS: {head!r}")


def check_drain(port, pid):
    """SIGTERM: goodbye server_shutdown to each, answers during the grace, 503 draining, exit."""
    with Client(port, "check-drain-0") as first, Client(port, "check-drain-1") as second:
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
        refused(port, "/ws/chat/check-late", 503, "draining", "1")
        for c in (first, second):
            m = c.next()
            expect(m["type"] == "goodbye" and m["reason"] == "server_shutdown" and m["reconnect"] is True, f"{m}")
            m = c.ask('{"type":"message","id":"late","data":1}')
            expect(m["type"] == "message_response" and m["id"] == "late", f"answered after the goodbye: {m}")
    deadline = time.monotonic() + int(CHECK_ENV["SHUTDOWN_TIMEOUT"]) / 1000 + 1
    while time.monotonic() < deadline:
        if not running(pid):
            return
        time.sleep(0.05)
    raise CheckFailed("still running after SHUTDOWN_TIMEOUT")


def running(pid):
    """Whether the process runs (an exited child its parent has not reaped yet does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


CHECKS = [
    ("http", check_http), ("established", check_established), ("requests", check_requests),
    ("errors", check_errors), ("string frame", check_string_frame), ("data byte for byte", check_data_bytes),
    ("duplicated keys", check_duplicated_keys), ("sizes", check_sizes), ("oversized ping", check_oversized_ping),
    ("close 1009", check_close_1009), ("goodbye before 1009", check_goodbye_1009), ("heartbeat", check_heartbeat),
    ("dead peer", check_dead_peer), ("idle timeout", check_idle_timeout), ("replaced", check_replaced),
    ("rate limit", check_rate_limit), ("limits", check_limits),
]


def main():
    # Imported here: check_channels uses this module's client and helpers.
    from check_channels import CHANNEL_CHECKS, CHANNEL_ENV, CHANNEL_SERVERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="store_true", help="print the settings the server must run with")
    parser.add_argument("--server", help="concurrent-socket, elysia or node-ws")
    parser.add_argument("--port", type=int)
    parser.add_argument("--pid", type=int, help="the server's process, for the drain check")
    args = parser.parse_args()
    if args.env:
        print("\n".join(f"{name}={value}" for name, value in {**CHECK_ENV, **CHANNEL_ENV}.items()))
        return 0
    if not (args.server and args.port and args.pid):
        parser.error("--server, --port and --pid are required")
    known = KNOWN.get(args.server, {})
    failures = 0
    checks = CHECKS + (CHANNEL_CHECKS if args.server in CHANNEL_SERVERS else [])
    if args.server not in CHANNEL_SERVERS:
        print(f"skip   {len(CHANNEL_CHECKS)} channel checks: {args.server} speaks protocol v1 only")
    checks += [("drain", lambda port: check_drain(port, args.pid))]
    for name, check in checks:
        try:
            check(args.port)
            print(f"ok     {name}")
        except Exception as e:  # noqa: BLE001 - any exception is this check's failure
            if name in known:
                print(f"known  {name}: {known[name]} ({type(e).__name__}: {e})")
            else:
                failures += 1
                print(f"FAIL   {name}: {type(e).__name__}: {e}")
        else:
            if name in known:
                failures += 1
                print(f"FAIL   {name}: listed as a known difference of {args.server} but passed: update KNOWN")
    print(f"{args.server}: {len(checks) - failures} of {len(checks)} checks as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
