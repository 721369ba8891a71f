"""A burst of new WebSocket connections to the direct path's shared address, for the flip
test of ci/deploy/scenarios.sh (scenario 7): blue is stopped (SIGSTOP), so the connections
the kernel gives its listener wait in its accept queue, while green's are answered; the
suite then takes blue's listener away and this script sees where each waiting connection
ends: answered by green (moved, net.ipv4.tcp_migrate_req=1) or reset.

Each connection: TCP connect, WebSocket upgrade on /ws/chat/burst-N, read
`connection_established` (its serverId), close with 1000. While running, the number of
connections finished (answered or failed) is written to --progress; at the end one JSON
report to --report: {count, answered, by_server: {serverId: n}, failed: {kind: n}, errors: [...]}.

    python3 flip-queue.py --url ws://127.0.0.1:3000 --count 200 --progress P --report R
"""

import argparse
import asyncio
import json
from collections import Counter

from websockets.asyncio.client import connect


def kind_of(error):
    """`reset` when the peer reset the connection (directly or as the cause of a failed
    handshake), else the exception's type."""
    seen = error
    while seen is not None:
        if isinstance(seen, ConnectionResetError):
            return "reset"
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        seen = seen.__cause__ or seen.__context__
    return type(error).__name__


async def one(url, index, timeout):
    async with asyncio.timeout(timeout):
        ws = await connect(f"{url}/ws/chat/burst-{index}", open_timeout=None)
        first = json.loads(await ws.recv())
        await ws.close()
    return first["serverId"]


async def run(args):
    by_server, failed, errors = Counter(), Counter(), []
    finished = 0

    async def attempt(index):
        nonlocal finished
        try:
            by_server[await one(args.url, index, args.timeout)] += 1
        except Exception as error:  # every failure is counted by kind, none may pass unseen
            failed[kind_of(error)] += 1
            errors.append(f"burst-{index}: {kind_of(error)}: {error!r}"[:200])
        finished += 1
        with open(args.progress, "w") as progress:
            progress.write(f"{finished}\n")

    await asyncio.gather(*(attempt(i) for i in range(args.count)))
    report = {
        "count": args.count,
        "answered": sum(by_server.values()),
        "by_server": dict(by_server),
        "failed": dict(failed),
        "errors": errors[:20],
    }
    with open(args.report, "w") as out:
        json.dump(report, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT, the shared address")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per connection")
    parser.add_argument("--progress", required=True)
    parser.add_argument("--report", required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
