"""Channel client for the handover suite (ci/suites/31-handover.sh): what channel subscribers
and publishers see while the server hands its connections to a new process.

Opens --subscribers WebSockets to /ws/chat/<prefix>-sub-<i>, each subscribed to one of
--channels channels (<prefix>-<c>, round robin), and one publisher connection per channel that
publishes a numbered `data` every --publish-interval seconds without waiting for the answers,
until --stop-file exists; then the publishers stop, wait up to --settle seconds for every
answer, and each subscriber waits (within the same settle) for the channel's newest accepted
offset. Each subscriber checks its publications: offsets exactly one after the other from the
offset of its `subscribed`, none twice, none missing, and every `published` answer in the
channel's epoch. Any close by the server, any `goodbye`, any `unsubscribed` and any
unexpected message is recorded.

Writes --ready-file once every connection is subscribed.

Report (JSON, to --report): subscribers, channels, published (accepted publishes), publish_errors
({code: count}), epochs (largest number of epochs seen in one channel: 1 when every subscribed
and published answer had the same), expected (publications due to all subscribers together),
received, lost, duplicated, out_of_order, unsubscribed ({reason: count}), goodbyes
({reason: count}), server_closes ({code: count}), unexpected ({type: count}).
Exit status: 0 when the report was written (judging it is the caller's job), 1 when the
connections could not all be opened, 2 on bad usage.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter, defaultdict

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT")
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--prefix", default="chan")
    parser.add_argument("--publish-interval", type=float, default=0.1)
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    if args.subscribers < 1 or args.channels < 1 or args.publish_interval <= 0:
        parser.error("--subscribers and --channels must be >= 1, --publish-interval > 0")
    return args


class Stats:
    def __init__(self):
        self.received = 0
        self.lost = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.publish_errors = Counter()
        self.unsubscribed = Counter()
        self.goodbyes = Counter()
        self.server_closes = Counter()
        self.unexpected = Counter()
        self.epochs = defaultdict(set)   # channel -> epochs seen
        self.tops = {}                   # channel -> newest accepted offset


async def open_chat(args, conn_id):
    ws = await connect(f"{args.url}/ws/chat/{conn_id}", open_timeout=60, compression=None,
                       ping_interval=None, max_queue=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if hello.get("type") != "connection_established":
        raise RuntimeError(f"first message {hello.get('type')}")
    return ws


def count_other(stats, msg):
    """Counts a message that is neither an expected answer nor a publication."""
    kind = msg.get("type")
    if kind == "goodbye":
        stats.goodbyes[msg.get("reason", "?")] += 1
    elif kind == "unsubscribed":
        stats.unsubscribed[msg.get("reason", "?")] += 1
    elif kind != "heartbeat":
        stats.unexpected[kind] += 1


class Subscriber:
    """One subscriber: checks that its channel's offsets come one after the other, once each."""

    def __init__(self, args, stats, index, stopped):
        self.args, self.stats, self.stopped = args, stats, stopped
        self.conn_id = f"{args.prefix}-sub-{index}"
        self.channel = f"{args.prefix}-{index % args.channels}"
        self.first = self.last = 0

    async def open(self):
        ws = await open_chat(self.args, self.conn_id)
        await ws.send(json.dumps({"type": "subscribe", "channel": self.channel, "id": "s"}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get("type") == "subscribed":
                break
            if msg.get("type") != "heartbeat":
                raise RuntimeError(f"subscribe answered {msg}")
        self.first = self.last = msg["offset"]
        self.stats.epochs[self.channel].add(msg["epoch"])
        return ws

    def caught_up(self):
        top = self.stats.tops.get(self.channel)
        return self.stopped.is_set() and top is not None and self.last >= top

    def on_publication(self, offset):
        if offset == self.last + 1:
            self.stats.received += 1
            self.last = offset
        elif offset <= self.last:
            self.stats.duplicated += 1
        else:
            self.stats.out_of_order += 1
            self.stats.lost += offset - self.last - 1
            self.stats.received += 1
            self.last = offset

    async def run(self, ws):
        try:
            while not self.caught_up():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                msg = json.loads(raw)
                if msg.get("type") == "publication" and msg.get("channel") == self.channel:
                    self.on_publication(msg["offset"])
                else:
                    count_other(self.stats, msg)
        except ConnectionClosed:
            self.stats.server_closes[str(ws.close_code)] += 1
            return
        await ws.close(1000)


class Publisher:
    """One channel's publisher: a numbered publish every interval, answers read as they come."""

    def __init__(self, args, stats, channel, stopping):
        self.args, self.stats, self.stopping = args, stats, stopping
        self.channel = f"{args.prefix}-{channel}"
        self.conn_id = f"{args.prefix}-pub-{channel}"
        self.sent = self.answered = 0

    async def send_loop(self, ws):
        while not self.stopping.is_set():
            self.sent += 1
            await ws.send(json.dumps({"type": "publish", "channel": self.channel,
                                      "id": str(self.sent), "data": self.sent}))
            await asyncio.sleep(self.args.publish_interval)

    async def run(self, ws):
        sender = asyncio.create_task(self.send_loop(ws))
        try:
            async for raw in ws:
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "published":
                    self.answered += 1
                    self.stats.epochs[self.channel].add(msg["epoch"])
                    self.stats.tops[self.channel] = max(self.stats.tops.get(self.channel, 0), msg["offset"])
                elif kind == "error":
                    self.answered += 1
                    self.stats.publish_errors[msg.get("code", "?")] += 1
                else:
                    count_other(self.stats, msg)
                if self.stopping.is_set() and sender.done() and self.answered == self.sent:
                    break
        except ConnectionClosed:
            self.stats.server_closes[str(ws.close_code)] += 1
        finally:
            sender.cancel()
        self.stats.tops.setdefault(self.channel, 0)
        await ws.close(1000)


async def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats, stopping, stopped = Stats(), asyncio.Event(), asyncio.Event()
    subscribers = [Subscriber(args, stats, i, stopped) for i in range(args.subscribers)]
    gate = asyncio.Semaphore(args.open_concurrency)

    async def open_one(subscriber):
        async with gate:
            return await subscriber.open()

    opened = await asyncio.gather(*(open_one(s) for s in subscribers), return_exceptions=True)
    publishers = [Publisher(args, stats, c, stopping) for c in range(args.channels)]
    try:
        publisher_sockets = [await open_chat(args, p.conn_id) for p in publishers]
    except Exception as error:  # noqa: BLE001 - reported as a failure to open
        opened.append(error)
    failures = [o for o in opened if isinstance(o, BaseException)]
    if failures:
        print(f"{len(failures)} connections failed to open, e.g. {failures[0]!r}", file=sys.stderr)
        return 1
    reading = [asyncio.create_task(s.run(ws)) for s, ws in zip(subscribers, opened)]
    publishing = [asyncio.create_task(p.run(ws)) for p, ws in zip(publishers, publisher_sockets)]
    with open(args.ready_file, "w") as ready:
        ready.write(f"{time.time()}\n")
    while not os.path.exists(args.stop_file):
        await asyncio.sleep(0.1)
    stopping.set()
    await asyncio.wait(publishing, timeout=args.settle)
    stopped.set()
    await asyncio.wait(reading, timeout=args.settle)
    # What a subscriber still lacks at the end is lost too.
    stats.lost += sum(max(0, stats.tops.get(s.channel, 0) - s.last) for s in subscribers)
    expected = sum(max(0, stats.tops.get(s.channel, 0) - s.first) for s in subscribers)
    report = {
        "subscribers": args.subscribers, "channels": args.channels,
        "published": sum(stats.tops.values()), "publish_errors": dict(stats.publish_errors),
        "epochs": max((len(e) for e in stats.epochs.values()), default=0),
        "expected": expected, "received": stats.received, "lost": stats.lost,
        "duplicated": stats.duplicated, "out_of_order": stats.out_of_order,
        "unsubscribed": dict(stats.unsubscribed), "goodbyes": dict(stats.goodbyes),
        "server_closes": dict(stats.server_closes), "unexpected": dict(stats.unexpected),
    }
    with open(args.report, "w") as out:
        json.dump(report, out)
    for task in reading + publishing:
        task.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
