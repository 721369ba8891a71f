"""Attack 11: lenient opening handshakes (issue 14, defect 11).

Contract (RFC 6455 4.2.1, 4.4): `Sec-WebSocket-Key` must be base64 of exactly 16 bytes, else
400 `{"error":"bad_handshake"}` (a 10 KB key may instead meet MAX_HEADER_BYTES first: 431);
an unsupported `Sec-WebSocket-Version` gets 426 with `Sec-WebSocket-Version: 13`; an upgrade
request with a body (`Content-Length` > 0 or `Transfer-Encoding`) is refused 400. The valid
controls still get 101.
"""

import base64
import os

from .wire import upgrade, upgrade_headers, ws_key


def key_cases():
    """(what, key, accepted statuses)."""
    return [
        ("empty key", "", {400}),
        ("garbage key", "not base64 at all!", {400}),
        ("base64 of 15 bytes", ws_key(os.urandom(15)), {400}),
        ("base64 of 17 bytes", ws_key(os.urandom(17)), {400}),
        ("4 KB key", base64.b64encode(os.urandom(3072)).decode(), {400}),
        ("10 KB key", base64.b64encode(os.urandom(7680)).decode(), {400, 431}),
        ("valid key (control)", ws_key(), {101}),
    ]


async def attempt(port, headers, body=b""):
    response, ws = await upgrade(port, "/ws/chat/handshake", "127.0.0.1", headers, body=body)
    if ws:
        ws.abort()
    return response


async def keys(ctx, port):
    for what, key, accepted in key_cases():
        response = await attempt(port, upgrade_headers(port, key))
        status = response.status if response else "closed"
        body_ok = status != 400 or response.json() == {"error": "bad_handshake"}
        ctx.answered(f"{what}: {status}")
        ctx.check(f"{what} -> {' or '.join(map(str, sorted(accepted)))}", status in accepted and body_ok,
                  f"got {response or 'closed'}")


async def version(ctx, port):
    response = await attempt(port, upgrade_headers(port, ws_key(), version="8"))
    advertised = response.headers.get("sec-websocket-version") if response else None
    ctx.answered(f"version 8: {response.status if response else 'closed'}, Sec-WebSocket-Version {advertised}")
    ctx.check("Sec-WebSocket-Version: 8 -> 426 with Sec-WebSocket-Version: 13",
              response is not None and response.status == 426 and advertised == "13",
              f"got {response.status if response else 'closed'}, Sec-WebSocket-Version {advertised}")


async def bodies(ctx, port):
    cases = [
        ("Content-Length: 5 with a body", [("Content-Length", "5")], b"hello", {400}),
        ("Transfer-Encoding: chunked", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n", {400}),
        ("Content-Length: 0 (control)", [("Content-Length", "0")], b"", {101}),
    ]
    for what, extra, body, accepted in cases:
        response = await attempt(port, upgrade_headers(port, ws_key(), extra=extra), body)
        status = response.status if response else "closed"
        ctx.answered(f"{what}: {status}")
        ctx.check(f"upgrade with {what} -> {' or '.join(map(str, sorted(accepted)))}", status in accepted,
                  f"got {response or 'closed'}")


async def run(ctx):
    await ctx.steps(ctx.server(), keys, version, bodies)
