"""Attack 14: what Traefik stopped on the WebSocket path, against the server alone (issue 20,
the direct data path).

A. One address floods upgrades (UPGRADE_RATE_PER_IP=5, UPGRADE_BURST_PER_IP=10, the original
   design's Traefik limit): contract: it gets its burst plus 5 a second, every other attempt
   429 `{"error":"upgrade_rate_limited"}` with `Retry-After: 1`, each counted in
   `websocket_connections_rejected_total{reason="upgrade_rate_limited"}`; newcomers from 20
   other addresses during the flood all get 101, and the honest clients echo on.
B. PROXY protocol v2 from a trusted balancer (PROXY_PROTOCOL_TRUSTED=127.14.2.1): garbage,
   truncated, oversized and slow headers, and a header from an untrusted address, are closed
   unanswered and counted by reason; a good header's client gets 101 and the server stays up.
check-config names UPGRADE_BURST_PER_IP=0 and a PROXY_PROTOCOL=v2 without its trusted peers.
"""

import asyncio
import os
import struct
import time

from .harness import metric, run_check_config
from .wire import open_tcp, read_response, request, source, upgrade, upgrade_headers, ws_key

RATE, BURST = 5, 10
FLOOD_SECONDS = 3.0
FLOOD_WORKERS = 8
MAX_ATTEMPTS = 3000
NEWCOMERS = 20
ATTACKER = source(14, 0)
BALANCER = source(14, 500)  # 127.14.2.1
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# (version and command, family and protocol) bytes no v2 header has: version 1 or 3, command 2,
# family 4 or 15, protocol 3.
INVALID_FIELDS = [(0x11, 0x11), (0x31, 0x11), (0x22, 0x11), (0x21, 0x41), (0x21, 0xF1), (0x21, 0x13)]
REJECTED = "websocket_connections_rejected_total"
REFUSED = "websocket_http_refused_total"


async def attempt(port, src, connection_id):
    response, ws = await upgrade(port, f"/ws/chat/{connection_id}", src)
    if ws:
        ws.abort()
    return response


async def flood(port, until, outcomes):
    while time.monotonic() < until and len(outcomes) < MAX_ATTEMPTS:
        outcomes.append(await attempt(port, ATTACKER, f"flood-{len(outcomes)}"))


async def newcomers(port, until):
    """One upgrade from each of NEWCOMERS other addresses, spread over the flood."""
    statuses = []
    for i in range(NEWCOMERS):
        response = await attempt(port, source(14, 250 + i), f"newcomer-{i}")
        statuses.append(response.status if response else "closed")
        await asyncio.sleep(max(0.0, min(0.1, until - time.monotonic())))
    return statuses


async def rate_flood(ctx):
    server = ctx.server("rate", UPGRADE_RATE_PER_IP=RATE, UPGRADE_BURST_PER_IP=BURST)
    outcomes = []
    async with ctx.honest(server):
        with ctx.measure(server):
            started = time.monotonic()
            until = started + FLOOD_SECONDS
            results = await asyncio.gather(newcomers(server.port, until),
                                           *[flood(server.port, until, outcomes) for _ in range(FLOOD_WORKERS)])
            elapsed = time.monotonic() - started
    arrivals = results[0]
    upgraded = sum(1 for r in outcomes if r and r.status == 101)
    limited = [r for r in outcomes if r and r.status == 429]
    others = [str(r) if r else "closed" for r in outcomes if not r or r.status not in (101, 429)]
    samples = await server.metrics()
    counted = metric(samples, REJECTED, reason="upgrade_rate_limited")
    clients = metric(samples, "websocket_upgrade_rate_clients")
    allowed = BURST + RATE * elapsed + 1
    ctx.answered(f"{len(outcomes)} upgrades from one address in {elapsed:.1f} s: {upgraded} x 101, "
                 f"{len(limited)} x 429, {len(others)} other; {NEWCOMERS} newcomers: {set(arrivals)}")
    ctx.check(f"one address gets its burst plus {RATE}/s: {BURST} <= 101s <= {allowed:.0f}",
              BURST <= upgraded <= allowed, f"{upgraded} upgraded in {elapsed:.1f} s")
    ctx.check("every other attempt: 429 upgrade_rate_limited with Retry-After: 1",
              not others and all(r.json() == {"error": "upgrade_rate_limited"}
                                 and r.headers.get("retry-after") == "1" for r in limited),
              f"others {others[:3]}, first 429 {limited[0] if limited else None} "
              f"{limited[0].headers.get('retry-after') if limited else ''}")
    ctx.check("each 429 counted in rejected_total{reason=upgrade_rate_limited}", counted == len(limited),
              f"counted {counted}, seen {len(limited)}")
    ctx.check(f"{NEWCOMERS} other addresses upgrade during the flood", arrivals == [101] * NEWCOMERS,
              f"statuses {arrivals}")
    ctx.check("the buckets held: the addresses seen, no more", clients is not None and 1 <= clients <= NEWCOMERS + 2,
              f"websocket_upgrade_rate_clients {clients}")


def v2_header(src_ip, src_port, command=0x21):
    """A PROXY v2 header (TCP over IPv4) naming `src_ip`:`src_port` as the client."""
    addresses = bytes(map(int, src_ip.split("."))) + bytes([10, 0, 0, 5]) + struct.pack("!HH", src_port, 3001)
    return V2_SIGNATURE + bytes([command, 0x11]) + struct.pack("!H", len(addresses)) + addresses


async def closed_unanswered(port, src, data, half_close=False, timeout=5):
    """Sends `data` from `src`: whether the server closed without answering."""
    reader, writer = await open_tcp(port, src)
    writer.write(data)
    if half_close:
        writer.write_eof()
    try:
        return await read_response(reader, timeout) is None
    except TimeoutError:
        return False
    finally:
        writer.transport.abort()


async def proxy_headers(ctx):
    server = ctx.server("proxy", PROXY_PROTOCOL="v2", PROXY_PROTOCOL_TRUSTED=BALANCER, HTTP_IDLE_TIMEOUT=1000)
    health = request("GET", "/health", [("Host", "x")])
    good = v2_header("203.0.113.7", 40000)
    garbage = [V2_SIGNATURE + bytes(pair) + struct.pack("!H", 60) + os.urandom(60)
               for pair in INVALID_FIELDS for _ in range(5)]
    cases = {
        "proxy_header_invalid": [(g + health, False) for g in garbage]
        + [(good[:10], True)] * 20
        + [(V2_SIGNATURE + b"\x21\x11\xff\xff" + health, False)] * 20,
        "proxy_header_missing": [(health, False)] * 20,
        "proxy_header_timeout": [(good[:10], False)] * 20,
    }
    results = {}
    async with ctx.honest(server):
        with ctx.measure(server):
            for reason, sends in cases.items():
                outcomes = await asyncio.gather(*[closed_unanswered(server.port, BALANCER, data, half)
                                                  for data, half in sends])
                results[reason] = (len(sends), sum(outcomes))
            untrusted = await asyncio.gather(*[closed_unanswered(server.port, source(14, 750 + i), good + health)
                                               for i in range(20)])
            results["proxy_header_untrusted"] = (20, sum(untrusted))
            headers = upgrade_headers(server.port, ws_key())
            reader, writer = await open_tcp(server.port, BALANCER)
            writer.write(good + request("GET", "/ws/chat/proxied", headers))
            answer = await read_response(reader, 5)
            writer.transport.abort()
    samples = await server.metrics()
    ctx.answered(f"PROXY headers closed unanswered of sent: {results}; a good header's upgrade: {answer}")
    for reason, (sent, closed) in results.items():
        counted = metric(samples, REFUSED, reason=reason)
        ctx.check(f"{reason}: {sent} closed unanswered and counted", closed == sent and counted == sent,
                  f"closed {closed} of {sent}, counted {counted}")
    ctx.check("a good header from the balancer still upgrades", answer is not None and answer.status == 101,
              f"got {answer}")
    ctx.check("the server is up", server.alive() and server.health() is not None, server.log_tail(3))


def check_config(ctx):
    bad, bad_out = run_check_config(ctx.binary, {"UPGRADE_BURST_PER_IP": "0", "PROXY_PROTOCOL": "v2"})
    good, good_out = run_check_config(ctx.binary, {"UPGRADE_RATE_PER_IP": "5"})
    ctx.check("check-config names UPGRADE_BURST_PER_IP=0 and PROXY_PROTOCOL=v2 without PROXY_PROTOCOL_TRUSTED",
              bad != 0 and "UPGRADE_BURST_PER_IP" in bad_out and "PROXY_PROTOCOL_TRUSTED" in bad_out,
              f"exit {bad}: {bad_out.strip()[-160:]}")
    ctx.check("check-config shows UPGRADE_RATE_PER_IP=5 and PROXY_PROTOCOL=off",
              good == 0 and "UPGRADE_RATE_PER_IP=5" in good_out and "PROXY_PROTOCOL=off" in good_out,
              f"exit {good}")


async def run(ctx):
    await rate_flood(ctx)
    await proxy_headers(ctx)
    check_config(ctx)
