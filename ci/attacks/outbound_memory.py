"""Attack 4: memory a connection can pin (issue 14, defect 4).

A. NON_READERS connections that never read after the upgrade (a 4 KiB receive buffer), each:
   one refused 250 KiB frame (read whole, answered `message_too_large`), then 60 KB messages
   whose answers fill the kernel's buffers and part of the outbound queue, then pings at
   900/s for PING_SECONDS (within the frame budget). Contract: one byte bound for everything
   queued toward a client, pongs included: the server's peak RSS grows by at most
   OUTBOUND_QUEUE_BYTES + MAX_MESSAGE_BYTES + 64 KiB per such connection.
B. On a fresh server, LARGE_FRAME_CONNECTIONS connections that read normally each send one
   refused 250 KiB frame and read the `error`. Contract: read and write buffers shrink back:
   two seconds later, each of them holds at most AFTER_LARGE_FRAME_BOUND more than before.
"""

import asyncio

from . import contract as c
from .harness import mib
from .wire import OP_PING, OP_TEXT, TcpQueues, frame, kernel_held, message, open_chat, source, tcp_state

NON_READERS = 32
LARGE_FRAME_CONNECTIONS = 64
RECEIVE_BUFFER = 4096
LARGE_FRAME = 250 * 1024
ANSWER_DATA = 60_000
MAX_FILL_MESSAGES = 100
PING_RATE, PING_SECONDS = 900, 5
PING_PAYLOAD = b"p" * 125
TCP_CLOSE_WAIT = 8


def large_frame():
    return frame(OP_TEXT, message("z" * (LARGE_FRAME - 30)))


def answer_bytes(n):
    """The size on the wire of the answer to fill message `n` (JSON plus a 4-byte header)."""
    return len(f'{{"type":"message_response","id":"fill-{n}","data":"{"m" * ANSWER_DATA}","ts":1764300000000}}') + 4


async def fill_outbound_queue(ws, queues):
    """Sends 60 KB messages (at most 50/s, within the rate limit) until the answers the server
    holds in its own memory (sent minus what the kernel holds) come near OUTBOUND_QUEUE_BYTES:
    as much as a client that never reads can pin without being closed as a slow consumer."""
    loop, answered, sent_at = asyncio.get_running_loop(), 0, 0.0
    for n in range(MAX_FILL_MESSAGES):
        # Any reading taken after the last message left serves (the connections share them).
        held = answered - kernel_held(ws.writer, await queues.fresh(sent_at))
        if held + 2 * answer_bytes(n) > c.OUTBOUND_QUEUE_BYTES:
            return held
        ws.send(OP_TEXT, message("m" * ANSWER_DATA, f"fill-{n}"))
        await ws.drain()
        answered, sent_at = answered + answer_bytes(n), loop.time()
        await asyncio.sleep(0.02)
    return answered - kernel_held(ws.writer, await queues.fresh(sent_at))


async def non_reader(port, index, queues):
    """One connection that never reads: (how it ended, bytes of answers left in the server)."""
    _, ws, _ = await open_chat(port, f"non-reader-{index}", source(5, index // 16), rcvbuf=RECEIVE_BUFFER)
    if ws is None:
        return "not opened", 0
    ws.writer.transport.pause_reading()  # asyncio would otherwise read into its own buffer
    try:
        ws.send_raw(large_frame())
        await ws.drain()
        held = await fill_outbound_queue(ws, queues)
        burst = b"".join(frame(OP_PING, PING_PAYLOAD) for _ in range(PING_RATE // 10))
        for _ in range(PING_SECONDS * 10):
            ws.send_raw(burst)
            await ws.drain()
            await asyncio.sleep(0.1)
    except (ConnectionError, TimeoutError):
        return "closed by the server", 0
    state = tcp_state(ws.writer)
    ws.abort()
    return ("closed by the server" if state == TCP_CLOSE_WAIT else "open"), held


async def non_readers(ctx):
    server = ctx.server()
    async with ctx.honest(server):
        with ctx.measure(server) as measure:
            queues = TcpQueues(server.port)
            results = await asyncio.gather(*(non_reader(server.port, i, queues) for i in range(NON_READERS)))
            peak = server.peak_rss()
    per_connection = (peak - measure.before) / NON_READERS
    ends = [end for end, _ in results]
    counts = {end: ends.count(end) for end in set(ends)}
    filled = sorted(held for _, held in results)
    ctx.answered(f"A {NON_READERS} non-readers: {counts}, answers held in the server before the pings "
                 f"{filled[0] // 1024}..{filled[-1] // 1024} KiB")
    ctx.check("A: a client that never reads and floods pings pins <= OUTBOUND_QUEUE_BYTES + MAX_MESSAGE_BYTES + 64 KiB",
              per_connection <= c.NON_READER_BOUND,
              f"peak RSS grew {mib(peak - measure.before)} for {NON_READERS}: {per_connection / 1024:.0f} KiB per "
              f"connection, bound {c.NON_READER_BOUND / 1024:.0f} KiB; connections {counts}")


async def large_frame_then_idle(ctx):
    server = ctx.server("large-frame")
    sockets = []
    for i in range(LARGE_FRAME_CONNECTIONS):
        _, ws, _ = await open_chat(server.port, f"large-{i}", source(5, 100 + i // 16))
        if ws:
            sockets.append(ws)
    await asyncio.sleep(0.5)
    before = server.rss()
    for ws in sockets:
        ws.send_raw(large_frame())
    answers = await asyncio.gather(*(ws.recv_json(10, "error") for ws in sockets))
    await asyncio.sleep(2.0)
    after = server.rss()
    for ws in sockets:
        ws.abort()
    codes = sorted({a.get("code") if isinstance(a, dict) else str(a) for a in answers})
    per_connection = (after - before) / max(1, len(sockets))
    ctx.answered(f"B {len(sockets)} x {LARGE_FRAME // 1024} KiB frame: {codes}")
    ctx.check(f"B: after one refused {LARGE_FRAME // 1024} KiB frame a connection keeps <= "
              f"{c.AFTER_LARGE_FRAME_BOUND // 1024} KiB (buffers shrink back)",
              len(sockets) == LARGE_FRAME_CONNECTIONS and per_connection <= c.AFTER_LARGE_FRAME_BOUND,
              f"RSS {mib(before)} -> {mib(after)} 2 s later: {per_connection / 1024:.0f} KiB per connection "
              f"({len(sockets)} connections, answers {codes})")


async def run(ctx):
    await non_readers(ctx)
    await large_frame_then_idle(ctx)
