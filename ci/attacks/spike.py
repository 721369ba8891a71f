"""Attack 5: memory after a spike (issue 14, defect 5).

SPIKE_CONNECTIONS connections arrive in waves of WAVE (20 per address), each sends one
`message` of 64 KiB (the largest MAX_MESSAGE_BYTES serves) and reads its answer, and stays
until the whole spike has echoed; then all close. Arriving in waves, as a real spike does,
interleaves the server's long-lived growth (its registry, its queues) with the connections'
buffers, which is what keeps freed memory from going back to the OS. Contract: with no spike
connection left, the server's RSS is back within baseline + 32 MiB within 10 s (baseline: RSS
before the spike, the honest clients connected).
"""

import asyncio
import time

from . import contract as c
from .harness import mib
from .wire import OP_TEXT, open_chat, source

SPIKE_CONNECTIONS, WAVE, PER_SOURCE = 1000, 100, 20
# The whole frame is MAX_MESSAGE_BYTES: the JSON envelope takes the rest.
DATA_BYTES = c.MAX_MESSAGE_BYTES - len('{"type":"message","id":"spike","data":""}')


async def one(port, index, echoed, leave):
    """One spike connection: open, echo 64 KiB, wait for `leave`, close. Returns how it went."""
    try:
        _, ws, _ = await open_chat(port, f"spike-{index}", source(6, index // PER_SOURCE))
        if ws is None:
            return "not opened"
        ws.send(OP_TEXT, f'{{"type":"message","id":"spike","data":"{"s" * DATA_BYTES}"}}')
        await ws.drain()
        answer = await ws.recv_json(30, "message_response")
    finally:
        echoed.release()
    await leave.wait()
    await ws.close()
    return "echoed" if isinstance(answer, dict) and len(answer.get("data", "")) == DATA_BYTES else f"{answer}"[:60]


async def spike(port):
    """The spike, wave after wave; returns how each connection went once all have closed."""
    echoed, leave, tasks = asyncio.Semaphore(0), asyncio.Event(), []
    for first in range(0, SPIKE_CONNECTIONS, WAVE):
        tasks += [asyncio.create_task(one(port, i, echoed, leave)) for i in range(first, first + WAVE)]
        for _ in range(WAVE):
            await echoed.acquire()
    leave.set()
    ends = await asyncio.gather(*tasks, return_exceptions=True)
    counts = {}
    for end in ends:
        key = end if isinstance(end, str) else type(end).__name__
        counts[key] = counts.get(key, 0) + 1
    return counts


async def run(ctx):
    server = ctx.server()
    async with ctx.honest(server):
        await asyncio.sleep(0.5)
        with ctx.measure(server) as measure:
            counts = await spike(server.port)
            closed_at, bound = time.monotonic(), measure.before + c.SPIKE_RSS_MARGIN
            settled = server.rss()
            while settled > bound and time.monotonic() - closed_at < c.SPIKE_SETTLE_SECONDS:
                await asyncio.sleep(0.5)
                settled = server.rss()
            took = time.monotonic() - closed_at
            health = await asyncio.to_thread(server.health) or {}
    ctx.answered(f"{SPIKE_CONNECTIONS} x 64 KiB in waves of {WAVE}: {counts}")
    ctx.check("every spike connection opened and got its 64 KiB back", counts.get("echoed") == SPIKE_CONNECTIONS,
              f"{counts}")
    ctx.check(f"RSS back within baseline + {c.SPIKE_RSS_MARGIN // c.MiB} MiB within {c.SPIKE_SETTLE_SECONDS} s",
              settled <= bound,
              f"baseline {mib(measure.before)}, peak {mib(measure.peak)}, {mib(settled)} after {took:.1f} s "
              f"with {health.get('connections')} connections open (the honest ones; bound {mib(bound)})")
