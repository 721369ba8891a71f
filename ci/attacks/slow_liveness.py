"""Attack 8: a slow sender is alive (issue 14, defect 8).

With HEARTBEAT_INTERVAL=1000 a peer silent for 2 s is dead. Two clients that never answer the
server's pings but keep sending:
A. a text message in fragments, one every 0.25 s for about 5.5 s, then its last fragment;
B. one 1 KB frame dribbled 40 bytes every 0.25 s (a partial frame for about 6 s).
Contract: any bytes received (a partial frame included) prove the peer alive: both connections
survive past 5 s and get their `message_response`.
"""

import asyncio
import time

from .wire import OP_CLOSE, OP_CONT, OP_TEXT, frame, message, open_chat, source

STEP = 0.25


class Listener:
    """Reads a connection in the background (never answering pings): text messages and the
    moment the server closed."""

    def __init__(self, ws):
        self.ws, self.messages, self.closed_at, self.close_code = ws, [], None, None
        self.started = time.monotonic()
        self.task = asyncio.create_task(self._read())

    async def _read(self):
        while True:
            f = await self.ws.recv(3600)
            if f is None or f.opcode == OP_CLOSE:
                self.closed_at = time.monotonic() - self.started
                self.close_code = f.close_code if f else None
                return
            if f.opcode == OP_TEXT:
                self.messages.append(f.json())

    def answer(self, id_):
        return next((m for m in self.messages if isinstance(m, dict) and m.get("id") == id_), None)

    async def wait_answer(self, id_, seconds):
        deadline = time.monotonic() + seconds
        while self.answer(id_) is None and self.closed_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.answer(id_)

    def end(self):
        return "still open" if self.closed_at is None else f"closed at {self.closed_at:.1f} s (close {self.close_code})"


async def send_slowly(listener, pieces, send):
    """Calls send(index, piece) every STEP seconds until done or the server closed."""
    for index, piece in enumerate(pieces):
        if listener.closed_at is not None:
            return
        send(index, piece)
        try:
            await listener.ws.drain()
        except ConnectionError:
            return
        await asyncio.sleep(STEP)


async def fragments(ctx, port):
    _, ws, _ = await open_chat(port, "slow-fragments", source(8, 0))
    listener = Listener(ws)
    parts = ['{"type":"message","id":"fragments","data":"'] + ["abcd"] * 21
    await send_slowly(listener, parts, lambda i, p: ws.send(OP_CONT if i else OP_TEXT, p, fin=False))
    if listener.closed_at is None:
        ws.send(OP_CONT, '"}', fin=True)
    answer = await listener.wait_answer("fragments", 3)
    took = time.monotonic() - listener.started
    ws.abort()
    ctx.answered(f"A fragments for {took:.1f} s: {listener.end()}, answer {'yes' if answer else 'none'}")
    ctx.check("A: a message sent in fragments every 0.25 s for 5.5 s keeps its connection alive and is answered",
              answer is not None and answer.get("data") == "abcd" * 21,
              f"{listener.end()}; answer {answer}")


async def partial_frame(ctx, port):
    _, ws, _ = await open_chat(port, "slow-bytes", source(8, 1))
    listener = Listener(ws)
    data = frame(OP_TEXT, message("d" * 950, "dribble"))
    pieces = [data[i:i + 40] for i in range(0, len(data), 40)]
    await send_slowly(listener, pieces, lambda _, p: ws.send_raw(p))
    answer = await listener.wait_answer("dribble", 3)
    took = time.monotonic() - listener.started
    ws.abort()
    ctx.answered(f"B {len(data)} B frame over {took:.1f} s: {listener.end()}, answer {'yes' if answer else 'none'}")
    ctx.check(f"B: a frame dribbled 40 bytes every 0.25 s ({len(pieces)} pieces) keeps its connection alive",
              answer is not None, f"{listener.end()}; answer {'received' if answer else 'none'}")


async def run(ctx):
    server = ctx.server(HEARTBEAT_INTERVAL=1000)
    async with ctx.honest(server):
        with ctx.measure(server):
            await asyncio.gather(fragments(ctx, server.port), partial_frame(ctx, server.port))
