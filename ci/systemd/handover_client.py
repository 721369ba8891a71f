"""Held-connections client for the handover suite (ci/suites/31-handover.sh): what clients see
while the server hands its connections to a new process.

Opens --connections WebSockets to /ws/chat/<prefix>-<i>, each waiting for its
`connection_established`, then every connection sends a `message` with a sequence id every
--interval seconds (spread over the interval) until --stop-file exists; then it stops sending,
waits up to --settle seconds for the answers still due, and closes with 1000. Each answer is
checked: `message_response` ids must arrive exactly in the order sent, once each. Any close by
the server, any `goodbye`, and any unexpected message is recorded. With --reconnect, a
connection the server closed opens again (same id) and goes on (the fault test: clients
reconnect after the new process could not take them over).

Writes --ready-file once every connection is established.

Report (JSON, to --report): connections, established, still_open (at the stop, before our
close), sent, answered, missing (sent, never answered), out_of_order, duplicates, unexpected
(by type), goodbyes ({reason: count}), server_closes ({code: count}), reconnected,
errors ({kind: count}), server_ids_last ({serverId of connection_established: count}).
Exit status: 0 when the report was written (judging it is the caller's job), 1 when the
connections could not all be opened, 2 on bad usage.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT")
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--prefix", default="held")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between one connection's messages")
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--reconnect", action="store_true")
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    if args.connections < 1 or args.interval <= 0:
        parser.error("--connections must be >= 1 and --interval > 0")
    return args


class Stats:
    def __init__(self):
        self.established = 0
        self.sent = 0
        self.answered = 0
        self.out_of_order = 0
        self.duplicates = 0
        self.unexpected = Counter()
        self.goodbyes = Counter()
        self.server_closes = Counter()
        self.errors = Counter()
        self.reconnected = 0
        self.open = 0
        self.server_ids = {}


class Held:
    """One held connection: sends numbered messages, checks that the answers come in order."""

    def __init__(self, args, stats, index, stopping):
        self.args, self.stats, self.stopping = args, stats, stopping
        self.conn_id = f"{args.prefix}-{index}"
        self.next_seq = 0          # the next id to send
        self.expected = 0          # the next id whose answer is due
        self.done = asyncio.Event()

    async def open(self):
        ws = await connect(f"{self.args.url}/ws/chat/{self.conn_id}", open_timeout=60,
                           compression=None, ping_interval=None, max_queue=None)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if hello.get("type") != "connection_established":
            raise RuntimeError(f"first message {hello.get('type')}")
        self.stats.server_ids[self.conn_id] = hello.get("serverId")
        return ws

    async def run(self, ws):
        """Serves one socket until it ends; returns True when the server ended it."""
        self.stats.open += 1
        sender = asyncio.create_task(self.send_loop(ws))
        closed_by_server = False
        try:
            async for raw in ws:
                self.on_message(json.loads(raw))
                if self.stopping.is_set() and self.expected == self.next_seq:
                    break
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
        if ws.close_code is not None and not self.stopping.is_set():
            closed_by_server = True
            self.stats.server_closes[str(ws.close_code)] += 1
        else:
            await ws.close(1000)
        self.stats.open -= 1
        return closed_by_server

    def on_message(self, msg):
        kind = msg.get("type")
        if kind == "message_response":
            seq = int(msg.get("id", "-1"))
            if seq == self.expected:
                self.expected += 1
                self.stats.answered += 1
            elif seq < self.expected:
                self.stats.duplicates += 1
            else:
                self.stats.out_of_order += 1
                self.expected = seq + 1
        elif kind == "goodbye":
            self.stats.goodbyes[msg.get("reason", "?")] += 1
        elif kind != "heartbeat":
            self.stats.unexpected[kind] += 1

    async def send_loop(self, ws):
        await asyncio.sleep(random.uniform(0, self.args.interval))
        while not self.stopping.is_set():
            seq = self.next_seq
            await ws.send(json.dumps({"type": "message", "id": str(seq), "data": seq}))
            self.next_seq += 1
            self.stats.sent += 1
            await asyncio.sleep(self.args.interval)

    async def life(self, ws):
        while True:
            ended_by_server = await self.run(ws)
            if not (ended_by_server and self.args.reconnect) or self.stopping.is_set():
                return
            # Answers the server can no longer give are not awaited on the new socket.
            self.expected = self.next_seq
            try:
                ws = await self.open()
            except Exception as error:  # noqa: BLE001 - every failure is a counted outcome
                self.stats.errors[f"reconnect: {type(error).__name__}"] += 1
                return
            self.stats.reconnected += 1


async def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats, stopping = Stats(), asyncio.Event()
    helds = [Held(args, stats, i, stopping) for i in range(args.connections)]
    gate = asyncio.Semaphore(args.open_concurrency)

    async def open_one(held):
        async with gate:
            return await held.open()

    opened = await asyncio.gather(*(open_one(h) for h in helds), return_exceptions=True)
    failures = [o for o in opened if isinstance(o, BaseException)]
    if failures:
        print(f"{len(failures)} connections failed to open, e.g. {failures[0]!r}", file=sys.stderr)
        return 1
    stats.established = len(opened)
    lives = [asyncio.create_task(h.life(ws)) for h, ws in zip(helds, opened)]
    with open(args.ready_file, "w") as ready:
        ready.write(f"{time.time()}\n")
    while not os.path.exists(args.stop_file):
        await asyncio.sleep(0.1)
    still_open = stats.open
    stopping.set()
    await asyncio.wait(lives, timeout=args.settle)
    missing = sum(h.next_seq - h.expected for h in helds)
    report = {
        "connections": args.connections, "established": stats.established, "still_open": still_open,
        "sent": stats.sent, "answered": stats.answered, "missing": missing,
        "out_of_order": stats.out_of_order, "duplicates": stats.duplicates,
        "unexpected": dict(stats.unexpected), "goodbyes": dict(stats.goodbyes),
        "server_closes": dict(stats.server_closes), "reconnected": stats.reconnected,
        "errors": dict(stats.errors), "server_ids_last": dict(Counter(stats.server_ids.values())),
    }
    with open(args.report, "w") as out:
        json.dump(report, out)
    for life in lives:
        life.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
