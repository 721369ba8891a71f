"""Client traffic through Traefik during a blue/green deploy, as users make it.

Two kinds of clients, until --stop-file exists or --duration seconds pass:
  * --clients long-lived clients (/ws/chat/keep-N) that behave as docs/deploy.md asks: on
    `goodbye` with reconnect: true they reconnect at once; on any other loss they retry
    every --retry seconds. Each sends a `message` every second and expects its answer.
  * new short-lived connections at --rate per second (/ws/chat/new-N): connect, read
    `connection_established`, close with 1000.

Every attempt that does not reach `connection_established` (refused, HTTP error, timeout,
closed early) is a failed connection attempt, recorded with its time and reason.

Writes one JSON report to --report when it stops:
  failed_attempts, failures: [{t, kind, client, error}] (t: Unix seconds),
  new: {attempts, by_server: {serverId: n}}, messages: {sent, answered, lost},
  clients: {opened, reconnects, goodbyes: {reason: n}, goodbye_without_reconnect,
            drops_without_goodbye, longest_gap_s, final_server: {serverId: n},
            not_connected_at_end, moved: ["blue->green", ...] (each reconnect's old->new server)},
  timeline: [{t, event, client, server}] for connection changes of long-lived clients.
Exit status: 0 when the report was written (judging it is the caller's job), 2 bad usage.
"""

import argparse
import asyncio
import json
import os
import signal
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ATTEMPT_TIMEOUT = 5.0


class Stats:
    def __init__(self):
        self.failures = []
        self.new_attempts = 0
        self.new_by_server = Counter()
        self.sent = 0
        self.answered = 0
        self.opened = 0
        self.reconnects = 0
        self.goodbyes = Counter()
        self.goodbye_without_reconnect = 0
        self.drops_without_goodbye = 0
        self.longest_gap = 0.0
        self.final_server = {}
        self.moved = Counter()
        self.timeline = []

    def fail(self, kind, client, error):
        self.failures.append({"t": time.time(), "kind": kind, "client": client, "error": str(error)[:200]})


def failure_kind(error):
    if isinstance(error, InvalidStatus):
        return f"http_{error.response.status_code}"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionClosed):
        return "closed_before_established"
    return type(error).__name__


async def open_connection(url):
    """Connect and read connection_established; returns (websocket, serverId)."""
    ws = await asyncio.wait_for(connect(url, open_timeout=ATTEMPT_TIMEOUT, max_size=2**20), ATTEMPT_TIMEOUT)
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), ATTEMPT_TIMEOUT))
        if first.get("type") != "connection_established":
            raise ValueError(f"first message {first}")
        return ws, first["serverId"]
    except BaseException:
        await ws.close()
        raise


async def long_lived(base, index, stats, stop, retry):
    name = f"keep-{index}"
    url = f"{base}/ws/chat/{name}"
    previous_server = None
    lost_at = None
    while not stop.is_set():
        try:
            ws, server = await open_connection(url)
        except Exception as error:  # every failure kind is counted, then retried
            stats.fail(failure_kind(error), name, error)
            await asyncio.sleep(retry)
            continue
        stats.opened += 1
        stats.final_server[name] = server
        stats.timeline.append({"t": time.time(), "event": "established", "client": name, "server": server})
        if lost_at is not None:
            stats.reconnects += 1
            stats.longest_gap = max(stats.longest_gap, time.monotonic() - lost_at)
            stats.moved[f"{previous_server}->{server}"] += 1
        previous_server = server
        goodbye = await converse(ws, stats, stop)
        if stop.is_set():
            await ws.close()
            break
        lost_at = time.monotonic()
        stats.final_server.pop(name, None)
        event = f"lost:{goodbye or 'no-goodbye'}"
        stats.timeline.append({"t": time.time(), "event": event, "client": name, "server": server})
        if goodbye is None:
            stats.drops_without_goodbye += 1
            await asyncio.sleep(retry)
        elif not goodbye.startswith("reconnect:"):
            stats.goodbye_without_reconnect += 1
            await asyncio.sleep(retry)


async def converse(ws, stats, stop):
    """Send a message every second until the connection ends or stop is set. Returns
    None (lost without goodbye), 'reconnect:REASON' or 'final:REASON'."""
    goodbye = None
    pending = set()
    sequence = 0

    async def sender():
        nonlocal sequence
        while True:
            sequence += 1
            ident = str(sequence)
            pending.add(ident)
            await ws.send(json.dumps({"type": "message", "id": ident, "data": {"n": sequence}}))
            stats.sent += 1
            await asyncio.sleep(1.0)

    sending = asyncio.create_task(sender())
    stopping = asyncio.create_task(stop.wait())
    try:
        while True:
            receiving = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            # A message and the stop can complete in the same turn of the loop: the message is
            # handled first (dropping it lost an answer now and then), the stop on the next turn.
            if receiving not in done:
                receiving.cancel()  # safe in websockets: no message is lost
                sending.cancel()
                await settle(ws, pending, stats)
                return goodbye
            try:
                message = json.loads(receiving.result())
            except ConnectionClosed:
                return goodbye
            if count_answer(message, pending, stats):
                continue
            if message.get("type") == "goodbye":
                reason = message.get("reason")
                stats.goodbyes[reason] += 1
                goodbye = ("reconnect:" if message.get("reconnect") else "final:") + str(reason)
                # As docs/protocol.md asks of clients: stop sending, take the answers still on
                # their way (the server answers through its grace), then close our side.
                sending.cancel()
                await settle(ws, pending, stats)
                await ws.close()
                return goodbye
    except ConnectionClosed:
        return goodbye
    finally:
        sending.cancel()
        stopping.cancel()
        # A send that failed because the connection closed is that same loss, seen twice.
        await asyncio.gather(sending, return_exceptions=True)


def count_answer(message, pending, stats):
    """True when message answers one of ours."""
    if message.get("type") != "message_response" or message.get("id") not in pending:
        return False
    pending.discard(message["id"])
    stats.answered += 1
    return True


async def settle(ws, pending, stats):
    """At the end of the run, wait up to 2 s for the answers still on their way: stopping the
    test must not count as a loss."""
    deadline = time.monotonic() + 2.0
    while pending and time.monotonic() < deadline:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        except (asyncio.TimeoutError, ConnectionClosed):
            return
        count_answer(message, pending, stats)


async def new_connections(base, rate, stats, stop):
    tasks = set()
    sequence = 0
    while not stop.is_set():
        sequence += 1
        task = asyncio.create_task(one_new(f"{base}/ws/chat/new-{os.getpid()}-{sequence}", stats))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        try:
            await asyncio.wait_for(stop.wait(), 1.0 / rate)
        except asyncio.TimeoutError:
            pass
    if tasks:
        await asyncio.wait(tasks)


async def one_new(url, stats):
    stats.new_attempts += 1
    try:
        ws, server = await open_connection(url)
    except Exception as error:  # every failure kind is counted
        stats.fail(failure_kind(error), url.rsplit("/", 1)[1], error)
        return
    stats.new_by_server[server] += 1
    await ws.close()


async def run(args):
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + args.duration

    async def watch_stop():
        while not stop.is_set():
            if time.monotonic() >= deadline or (args.stop_file and os.path.exists(args.stop_file)):
                stop.set()
            await asyncio.sleep(0.1)

    workers = [asyncio.create_task(long_lived(args.url, i, stats, stop, args.retry)) for i in range(args.clients)]
    workers.append(asyncio.create_task(new_connections(args.url, args.rate, stats, stop)))
    workers.append(asyncio.create_task(watch_stop()))
    await asyncio.gather(*workers)
    return {
        "failed_attempts": len(stats.failures),
        "failures": stats.failures,
        "new": {"attempts": stats.new_attempts, "by_server": dict(stats.new_by_server)},
        "messages": {"sent": stats.sent, "answered": stats.answered, "lost": stats.sent - stats.answered},
        "clients": {
            "opened": stats.opened,
            "reconnects": stats.reconnects,
            "goodbyes": dict(stats.goodbyes),
            "goodbye_without_reconnect": stats.goodbye_without_reconnect,
            "drops_without_goodbye": stats.drops_without_goodbye,
            "longest_gap_s": round(stats.longest_gap, 3),
            "final_server": dict(Counter(stats.final_server.values())),
            "not_connected_at_end": args.clients - len(stats.final_server),
            "moved": dict(stats.moved),
        },
        "timeline": stats.timeline,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT of Traefik")
    parser.add_argument("--clients", type=int, default=20, help="long-lived reconnecting clients")
    parser.add_argument("--rate", type=float, default=10.0, help="new short-lived connections per second")
    parser.add_argument("--retry", type=float, default=0.2, help="seconds before retrying a lost client")
    parser.add_argument("--duration", type=float, default=120.0, help="upper bound of the run, seconds")
    parser.add_argument("--stop-file", help="stop once this file exists")
    parser.add_argument("--report", required=True, help="write the JSON report here")
    args = parser.parse_args()
    if not args.url.startswith("ws://") or args.clients < 0 or args.rate <= 0 or args.duration <= 0:
        parser.error("need --url ws://..., --clients >= 0, --rate > 0, --duration > 0")
    report = asyncio.run(run(args))
    with open(args.report, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
