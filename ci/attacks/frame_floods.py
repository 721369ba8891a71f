"""Attack 3: frames that cost the server work but no rate-limit token (issue 14, defect 3).

A. Empty continuation frames streamed after a first fragment (6 bytes each, as fast as this
   client can write them, for FLOOD_SECONDS). Contract: the message passes
   MAX_FRAGMENTS and the frame budget (FRAME_RATE_LIMIT): close 1008.
B. Pings in bursts of 90, ten bursts 0.1 s apart (900 pings in a second: within the frame
   budget), the replies read meanwhile. Contract: at most one pong outstanding, the latest ping
   answered (RFC 6455 5.5.3): far fewer pongs than pings, the last pong carries the last
   ping's payload, the connection stays open.
C. 20,000 pings written at once. Contract: beyond the budget one `error`
   `rate_limited`, then close 1008.
D. A text message of 100 fragments (within the frame budget). Contract: past MAX_FRAGMENTS
   (64), close 1008 instead of an answer.
E. A fragmented message whose fragments keep coming for longer than FRAGMENT_TIMEOUT (set to
   2 s here). Contract: close 1008 about 2 s after its first fragment, before its last one.
"""

import asyncio
import struct
import time

from . import contract as c
from .wire import STILL_OPEN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame, open_chat, source

FLOOD_SECONDS = 3.0
FLOOD_PINGS = 20_000
FRAGMENT_TIMEOUT_MS = 2000
PINGS_PER_BURST, BURSTS = 90, 10


async def flood(ws, chunk, seconds):
    """Writes `chunk` over and over while reading: (close code or None, chunks written, text
    messages seen). Stops at the server's close, at TCP close, or after `seconds`."""
    outcome = {"close": None, "texts": []}

    async def read():
        code, texts = await ws.until_close(seconds + 5)
        outcome.update(close=code, texts=texts)

    reader = asyncio.create_task(read())
    written, deadline = 0, time.monotonic() + seconds
    try:
        while not reader.done() and time.monotonic() < deadline:
            ws.send_raw(chunk)
            written += 1
            await ws.drain(timeout=max(0.1, deadline - time.monotonic()))
    except (ConnectionError, TimeoutError):
        pass
    try:
        await asyncio.wait_for(reader, 1)
    except TimeoutError:
        reader.cancel()
        outcome["close"] = STILL_OPEN
    return outcome, written


async def continuation_flood(ctx, port):
    _, ws, _ = await open_chat(port, "flood-continuation", source(4, 1))
    ws.send(OP_TEXT, '{"type":"message","data":"', fin=False)
    chunk = b"".join(frame(OP_CONT, b"", fin=False) for _ in range(4096))
    started = time.monotonic()
    outcome, written = await flood(ws, chunk, FLOOD_SECONDS)
    took = time.monotonic() - started
    ws.abort()
    sent = written * 4096
    ctx.answered(f"A continuation flood: close {outcome['close']} after {took:.1f} s, {sent:,} frames written")
    ctx.check("A: an empty-continuation flood is closed 1008", outcome["close"] == 1008,
              f"close {outcome['close']} after {took:.1f} s and {sent:,} "
              f"frames ({sent * 6 / 1e6:.0f} MB)")


async def ping_bursts(ctx, port):
    _, ws, _ = await open_chat(port, "flood-ping-bursts", source(4, 2))
    pongs = []

    async def read():
        while True:
            f = await ws.recv(60)
            if f is None or f.opcode == OP_CLOSE:
                pongs.append(("closed", f.close_code if f else None))
                return
            if f.opcode == OP_PONG:
                pongs.append(f.payload)

    reader = asyncio.create_task(read())
    last = b""
    for burst in range(BURSTS):
        payloads = [struct.pack("!II", burst, i) for i in range(PINGS_PER_BURST)]
        ws.send_raw(b"".join(frame(OP_PING, p) for p in payloads))
        last = payloads[-1]
        await ws.drain()
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    reader.cancel()
    ws.abort()
    sent = PINGS_PER_BURST * BURSTS
    closed = [p for p in pongs if isinstance(p, tuple)]
    got = [p for p in pongs if not isinstance(p, tuple)]
    ctx.answered(f"B {len(got)} pongs to {sent} pings")
    ctx.check("B: pongs coalesced: at most one per 10 pings in bursts", 0 < len(got) <= sent // 10 and not closed,
              f"{len(got)} pongs for {sent} pings in {BURSTS} bursts of {PINGS_PER_BURST}; closed: {closed or 'no'}")
    ctx.check("B: the latest ping is answered", bool(got) and got[-1] == last,
              f"last pong {got[-1].hex() if got else None}, last ping {last.hex()}")


async def ping_flood(ctx, port):
    _, ws, _ = await open_chat(port, "flood-ping", source(4, 3))
    started = time.monotonic()
    ws.send_raw(b"".join(frame(OP_PING, b"x") for _ in range(FLOOD_PINGS)))
    try:
        await ws.drain(5)
    except (ConnectionError, TimeoutError):
        pass
    code, texts = await ws.until_close(3)
    took = time.monotonic() - started
    ws.abort()
    limited = sum(1 for m in texts if isinstance(m, dict) and m.get("code") == "rate_limited")
    ctx.answered(f"C {FLOOD_PINGS:,} pings at once: {limited} rate_limited, close {code} after {took:.1f} s")
    ctx.check("C: a ping flood gets one `error` rate_limited, then close 1008", limited == 1 and code == 1008,
              f"{limited} rate_limited errors, close {code} after {took:.1f} s")


async def too_many_fragments(ctx, port):
    _, ws, _ = await open_chat(port, "fragments-many", source(4, 4))
    parts = 100
    ws.send(OP_TEXT, '{"type":"message","id":"many","data":"', fin=False)
    for _ in range(parts - 2):
        ws.send(OP_CONT, "x" * 10, fin=False)
        await ws.drain()
        await asyncio.sleep(0.005)
    ws.send(OP_CONT, '"}', fin=True)
    await ws.drain()
    code, texts = await ws.until_close(5)
    ws.abort()
    kinds = [m.get("type") for m in texts if isinstance(m, dict)]
    ctx.answered(f"D {parts} fragments: {kinds or 'no message'}, close {code}")
    ctx.check(f"D: a message of {parts} fragments (MAX_FRAGMENTS {c.MAX_FRAGMENTS}) is closed 1008",
              code == 1008 and "message_response" not in kinds, f"messages {kinds}, close {code}")


async def slow_fragments(ctx, port):
    _, ws, _ = await open_chat(port, "fragments-slow", source(4, 5))
    started = time.monotonic()
    ws.send(OP_TEXT, '{"type":"message","id":"slow","data":"', fin=False)
    closer = asyncio.create_task(ws.until_close(6))
    for _ in range(10):
        await asyncio.sleep(0.4)
        if closer.done():
            break
        ws.send(OP_CONT, "y", fin=False)
    if not closer.done():
        ws.send(OP_CONT, '"}', fin=True)
    final_at = time.monotonic() - started
    code, texts = await closer
    took = time.monotonic() - started
    ws.abort()
    kinds = [m.get("type") for m in texts if isinstance(m, dict)]
    ctx.answered(f"E fragments over {final_at:.1f} s: close {code} at {took:.1f} s, {kinds or 'no message'}")
    low, high = FRAGMENT_TIMEOUT_MS / 1000 * 0.75, final_at
    ctx.check(f"E: a message still unfinished after FRAGMENT_TIMEOUT ({FRAGMENT_TIMEOUT_MS} ms) is closed 1008",
              code == 1008 and low <= took <= high + 0.3 and "message_response" not in kinds,
              f"close {code} at {took:.1f} s (expected between {low:.1f} s and the final fragment at "
              f"{final_at:.1f} s), messages {kinds}")


async def run(ctx):
    await ctx.steps(ctx.server(FRAGMENT_TIMEOUT=FRAGMENT_TIMEOUT_MS), continuation_flood, ping_bursts, ping_flood,
                    too_many_fragments, slow_fragments)
