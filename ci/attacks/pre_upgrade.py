"""Attack 1: connections that never finish their request head (issue 14, defect 1).

A. 2,000 connections (20 from each of 100 addresses, under the per-IP pending cap) each stream
   one header line that never ends, up to 400 KB (below hyper's default 408 KiB buffer, so
   today's server holds every byte). Contract: past MAX_HEADER_BYTES the head is answered 431
   (or the connection is closed by a pending cap), and the server's memory for them stays
   within min(N, MAX_PENDING_HTTP) x (MAX_HEADER_BYTES + a small constant).
B. 200 connections from one address, each holding a partial head: at most
   MAX_PENDING_HTTP_PER_IP stay open, the rest are closed (or answered 503) and counted as
   `pending_ip_limit`.
C. 1,500 connections from 75 addresses (20 each) holding partial heads: at most
   MAX_PENDING_HTTP stay open, the rest are counted as `pending_limit`.
"""

import asyncio
from collections import Counter

from . import contract as c
from .harness import metric, mib
from .wire import drop_all, hold_many, source

BIG_CONNECTIONS, BIG_SOURCES = 2000, 100
BIG_HEADER_BYTES = 400_000
CHUNK = b"a" * 16384
PER_IP_CONNECTIONS = 200
GLOBAL_CONNECTIONS, GLOBAL_SOURCES = 1500, 75
# How long the server gets to answer or close a connection once it has sent what it sends.
ANSWER_WAIT = 5.0
HEAD_START = b"GET /ws/chat/never-ending HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never-Ending: "


async def stream_header(held):
    """Streams the never-ending header line until 400 KB are sent or the server answered or
    closed; returns the bytes sent."""
    sent = len(HEAD_START)
    while sent < BIG_HEADER_BYTES and held.outcome is None:
        chunk = CHUNK[:BIG_HEADER_BYTES - sent]
        held.writer.write(chunk)
        sent += len(chunk)
        try:
            await asyncio.wait_for(held.writer.drain(), 10)
        except (ConnectionError, TimeoutError):
            break
    return sent


async def wait_outcomes(held, seconds):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and any(h.outcome is None for h in held):
        await asyncio.sleep(0.1)


def outcomes(held, attempted):
    counts = Counter("open" if h.outcome is None else str(h.outcome) for h in held)
    if attempted > len(held):
        counts["connect failed"] = attempted - len(held)
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


async def never_ending_headers(ctx, server):
    sources = [source(1, i) for i in range(BIG_SOURCES)]
    held = await hold_many(server.port, sources, HEAD_START, BIG_CONNECTIONS // BIG_SOURCES)
    sent = await asyncio.gather(*(stream_header(h) for h in held))
    await wait_outcomes(held, ANSWER_WAIT)
    peak = server.peak_rss()
    still_open = sum(h.outcome is None for h in held)
    answered_431 = sum(h.outcome == 431 for h in held)
    ctx.answered(f"A never-ending heads: {outcomes(held, BIG_CONNECTIONS)} "
                 f"(sent {sum(sent) / 1e6:.0f} MB, at most {max(sent, default=0) / 1e3:.0f} KB on one)")
    ctx.check("A: every head past MAX_HEADER_BYTES answered 431 or closed", still_open == 0 and held,
              f"{still_open} of {len(held)} still open {ANSWER_WAIT:.0f} s after sending up to "
              f"{BIG_HEADER_BYTES // 1000} KB (outcomes: {outcomes(held, BIG_CONNECTIONS)})")
    pending = min(BIG_CONNECTIONS, c.MAX_PENDING_HTTP)
    bound = pending * (c.MAX_HEADER_BYTES + c.PENDING_CONNECTION_OVERHEAD) + c.RSS_SLACK
    growth = peak - ctx.report.measure.before
    ctx.check("A: RSS peak growth <= min(N, MAX_PENDING_HTTP) x (MAX_HEADER_BYTES + 16 KiB) + 16 MiB",
              growth <= bound, f"grew {mib(growth)} (peak {mib(peak)}), bound {mib(bound)}")
    samples = await server.metrics()
    counted = metric(samples, c.HTTP_REFUSED, reason="header_too_large")
    ctx.check("A: every 431 counted in websocket_http_refused_total{reason=header_too_large}",
              counted is not None and answered_431 > 0 and counted >= answered_431,
              f"metric {counted}, 431 answers seen {answered_431}")
    drop_all(held)


async def held_partial_heads(ctx, server, label, sources, per_source, cap, reason):
    """Partial heads held open from `sources`: at most `cap` may stay open, the rest are
    refused and counted under `reason`."""
    before = await server.metrics()
    held = await hold_many(server.port, sources, HEAD_START, per_source)
    attempted = len(sources) * per_source
    await wait_outcomes(held, 2.0)  # the refused are refused at once: give them 2 s
    samples = await server.metrics()
    still_open = sum(h.outcome is None for h in held)
    ctx.answered(f"{label} partial heads: {outcomes(held, attempted)}")
    ctx.check(f"{label}: at most {cap} of {attempted} partial heads stay open", still_open <= cap,
              f"{still_open} open after 2 s (outcomes: {outcomes(held, attempted)})")
    gauge = metric(samples, c.HTTP_PENDING)
    ctx.check(f"{label}: {c.HTTP_PENDING} <= {cap} while held", gauge is not None and gauge <= cap + 4,
              f"gauge {gauge} (the honest clients and the scrape may add a few)")
    counted = metric(samples, c.HTTP_REFUSED, reason=reason)
    counted_before = metric(before, c.HTTP_REFUSED, reason=reason)
    refused = attempted - still_open
    ctx.check(f"{label}: refusals counted in {c.HTTP_REFUSED}{{reason={reason}}}",
              counted is not None and counted - (counted_before or 0) >= attempted - cap,
              f"metric went {counted_before} -> {counted}; {refused} refused of {attempted}, "
              f"at least {attempted - cap} expected")
    drop_all(held)
    await asyncio.sleep(0.5)


async def run(ctx):
    server = ctx.server()
    async with ctx.honest(server):
        with ctx.measure(server):
            await never_ending_headers(ctx, server)
            await held_partial_heads(ctx, server, "B", [source(1, 200)], PER_IP_CONNECTIONS,
                                     c.MAX_PENDING_HTTP_PER_IP, "pending_ip_limit")
            await held_partial_heads(ctx, server, "C", [source(2, i) for i in range(GLOBAL_SOURCES)],
                                     GLOBAL_CONNECTIONS // GLOBAL_SOURCES, c.MAX_PENDING_HTTP, "pending_limit")
