#!/usr/bin/env python3
"""The load behind bench/run.sh's channel memory figure (`chmem`), for any server of
protocol v1.1 (docs/protocol.md): a raw WebSocket client on asyncio, standard library only,
so that its own cost stays out of the way and it needs no build.

    bench/channel_memory.py hold PORT CONNECTIONS SUBSCRIPTIONS
        opens CONNECTIONS WebSockets; connection i subscribes to `mem:room-<i // 5>` (rooms of
        5) when SUBSCRIPTIONS >= 1 and to `mem:news` (one channel for all) when it is 2; then
        prints one JSON line {"connections", "subscribed", "failed"} and holds every
        connection idle (answering pings) until SIGTERM or SIGINT.
    bench/channel_memory.py history PORT CHANNELS PUBLICATIONS BYTES
        publishes PUBLICATIONS publications of `{"t": 0, "p": "<BYTES x's>"}` to each of
        CHANNELS channels `mem:history-<n>` over 16 connections, each at most 500 a second
        (below the server's FRAME_RATE_LIMIT, 1000) with at most 256 unanswered, waits for
        every answer, prints {"channels", "published", "refused", "errors"} and exits.

The server must run without a rate limit (RATE_LIMIT_MSGS_PER_SEC=0, as the benchmark's do).
"""

import asyncio
import base64
import json
import os
import resource
import signal
import sys

PUBLISHERS = 16
PUBLISH_RATE = 500
IN_FLIGHT = 256
CONNECT_CONCURRENCY = 200


def masked(opcode, payload):
    """A client frame (masked, as RFC 6455 requires of clients)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big") if n else b""
    return head + key + body


def text(message):
    return masked(0x1, json.dumps(message, separators=(",", ":")).encode())


class Connection:
    """One WebSocket: the handshake, masked frames out, server frames in."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port, connection_id):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/chat/{connection_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    async def frame(self):
        """The next data frame's text; answers pings; None when the server closed."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self.writer.write(masked(0xA, payload))
            elif opcode == 0x8:
                return None
            elif opcode == 0x1:
                return payload.decode()

    async def answer(self, kind):
        """Reads until a server message of type `kind` or `error`; returns it."""
        while True:
            raw = await self.frame()
            if raw is None:
                raise ConnectionError("closed by the server")
            message = json.loads(raw)
            if message["type"] in (kind, "error"):
                return message


async def hold(port, connections, subscriptions):
    run = os.urandom(3).hex()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    open_ones = []
    counts = {"connections": 0, "subscribed": 0, "failed": 0}

    async def one(i):
        async with gate:
            try:
                c = await Connection.open(port, f"mem-{run}-{i}")
                channels = [f"mem:room-{i // 5}", "mem:news"][:subscriptions]
                for channel in channels:
                    c.writer.write(text({"type": "subscribe", "channel": channel}))
                for _ in channels:
                    answer = await c.answer("subscribed")
                    counts["subscribed" if answer["type"] == "subscribed" else "failed"] += 1
            except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
                counts["failed"] += 1
                return
        counts["connections"] += 1
        open_ones.append(c)

    await asyncio.gather(*(one(i) for i in range(connections)))
    print(json.dumps(counts), flush=True)
    # Idle from here on: read (pings, heartbeats) until told to stop.
    readers = [asyncio.create_task(drain(c)) for c in open_ones]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in readers:
        task.cancel()
    for c in open_ones:
        c.writer.close()


async def drain(c):
    try:
        while await c.frame() is not None:
            pass
    except (OSError, asyncio.IncompleteReadError):
        pass


async def history(port, channels, publications, size):
    run = os.urandom(3).hex()
    data = {"t": 0, "p": "x" * size}
    counts = {"channels": channels, "published": 0, "refused": 0}
    todo = [(ch, n) for n in range(publications) for ch in range(channels)]

    async def publisher(k):
        c = await Connection.open(port, f"mem-pub-{run}-{k}")
        mine = todo[k::PUBLISHERS]
        window = asyncio.Semaphore(IN_FLIGHT)

        async def acks():
            for _ in mine:
                answer = await c.answer("published")
                if answer["type"] == "published":
                    counts["published"] += 1
                else:
                    counts["refused"] += 1
                    counts.setdefault("errors", set()).add(answer.get("code"))
                window.release()

        reading = asyncio.create_task(acks())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for sent, (ch, _) in enumerate(mine):
            await asyncio.sleep(max(0.0, start + sent / PUBLISH_RATE - loop.time()))
            await window.acquire()
            c.writer.write(text({"type": "publish", "channel": f"mem:history-{ch}", "data": data}))
            await c.writer.drain()
        await reading
        c.writer.close()

    await asyncio.gather(*(publisher(k) for k in range(PUBLISHERS)))
    counts["errors"] = sorted(counts.get("errors", ()))
    print(json.dumps(counts), flush=True)


def main():
    args = sys.argv[1:]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    numbers = [a for a in args[1:] if a.isdigit()]
    if len(args) == 4 and args[0] == "hold" and len(numbers) == 3 and int(args[3]) <= 2:
        asyncio.run(hold(*map(int, numbers)))
    elif len(args) == 5 and args[0] == "history" and len(numbers) == 4:
        asyncio.run(history(*map(int, numbers)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
