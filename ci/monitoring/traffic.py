"""Traffic for the monitoring truth test: moves every counter the dashboards and alerts read.

Two modes, both bounded in connections and time:

  load URL  --connections N --messages M --over-cap K
      N clients through URL (Traefik) each send M messages and pings, and a few bad frames
      (invalid JSON, unknown type, a non-object, a binary frame); one client floods past the
      rate limit and reads until the server ends its connection, one sends an oversized
      message, two use channels (subscribe, publish, recover; one connection each, so on one
      colour's broker). Then K extra clients try to connect at once to push a colour past
      MAX_CONNECTIONS, one uses a forbidden Origin and one an invalid connection id. Prints a
      JSON summary of what it saw: every `error` answered by code (error:CODE), the flood's
      goodbye by reason (goodbye:REASON) and close code (close:CODE), refused upgrades by
      status (rejected:STATUS), channel recoveries by answer (recovered:BOOL).

  hold URL... --count C --seconds S
      keeps C idle connections open to each URL (the servers directly) for at most S
      seconds, or until the servers close them; prints how many it held and how they ended.

Exit status: 0 when the summary was printed, 1 when nothing at all could connect, 2 on usage.
"""

import argparse
import asyncio
import json
import sys
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

OPEN_TIMEOUT = 10
CLOSE_TIMEOUT = 2
CLIENT_TIMEOUT = 30  # no single client may take longer than this
SUBSCRIPTION_HOLD = 3  # seconds a channel client stays subscribed before it leaves


def positive(kind):
    """An argparse type: `kind` (int or float) above zero, else a clear usage error."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text}")
        return value
    return parse


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    load = modes.add_parser("load", help="send messages, bad input and excess connections")
    load.add_argument("url", help="ws://HOST:PORT of Traefik's web entry point")
    load.add_argument("--connections", type=positive(int), default=20, help="well-behaved clients")
    load.add_argument("--messages", type=positive(int), default=20, help="messages per client")
    load.add_argument("--over-cap", type=positive(int), default=20, help="extra simultaneous connections")
    load.add_argument("--max-message-bytes", type=positive(int), default=65536,
                      help="the server's MAX_MESSAGE_BYTES (one message exceeds it)")
    hold = modes.add_parser("hold", help="hold idle connections open")
    hold.add_argument("urls", nargs="+", help="ws://HOST:PORT of each server")
    hold.add_argument("--count", type=positive(int), default=5, help="connections per URL")
    hold.add_argument("--seconds", type=positive(float), default=60, help="longest hold")
    return parser.parse_args()


def chat(url, name):
    return f"{url}/ws/chat/{name}"


async def expect_type(ws, wanted):
    """Reads messages until one of type `wanted` arrives (heartbeats may come between)."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT))
        if msg.get("type") == wanted:
            return msg


async def talk(url, index, messages, seen):
    """One well-behaved client with a few bad frames in the middle."""
    async with connect(chat(url, f"truth-{index}"), open_timeout=OPEN_TIMEOUT,
                       close_timeout=CLOSE_TIMEOUT) as ws:
        seen["server:" + (await expect_type(ws, "connection_established"))["serverId"]] += 1
        for i in range(messages):
            await ws.send(json.dumps({"type": "message", "id": str(i), "data": {"n": i}}))
            await expect_type(ws, "message_response")
            if i % 5 == 0:
                await ws.send(json.dumps({"type": "ping", "id": f"p{i}"}))
                await expect_type(ws, "pong")
            await asyncio.sleep(0.05)
        for bad in ("not json", json.dumps({"type": "shout"}), json.dumps([1, 2]), b"\x00\x01"):
            await ws.send(bad)
            seen["error:" + (await expect_type(ws, "error"))["code"]] += 1


async def until_closed(ws, seen):
    """Reads until the server ends the connection: counts each `error` by code, each `goodbye`
    by reason, and the close code."""
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "error":
                seen["error:" + message["code"]] += 1
            elif message.get("type") == "goodbye":
                seen["goodbye:" + message["reason"]] += 1
    except ConnectionClosed:
        pass  # closed with an error code: still counted below
    seen[f"close:{ws.close_code}"] += 1


async def channels(url, index, seen):
    """Channels (protocol v1.1) on one connection, so that it stays on one colour's in-memory
    broker: subscribe, publish 3 (its own publications come back), unsubscribe, resubscribe
    with recover (recovered), again with a wrong epoch (not recovered), stay subscribed for
    SUBSCRIPTION_HOLD seconds, then disconnect."""
    room = f"truth:room-{index}"
    async with connect(chat(url, f"truth-channels-{index}"), open_timeout=OPEN_TIMEOUT,
                       close_timeout=CLOSE_TIMEOUT) as ws:
        await expect_type(ws, "connection_established")
        await ws.send(json.dumps({"type": "subscribe", "channel": room}))
        epoch = (await expect_type(ws, "subscribed"))["epoch"]
        for i in range(3):
            await ws.send(json.dumps({"type": "publish", "channel": room, "data": {"n": i}}))
            await expect_type(ws, "published")
        for recover in ({"offset": 1, "epoch": epoch}, {"offset": 1, "epoch": epoch + "-old"}):
            await ws.send(json.dumps({"type": "unsubscribe", "channel": room}))
            await expect_type(ws, "unsubscribed")
            await ws.send(json.dumps({"type": "subscribe", "channel": room, "recover": recover}))
            answer = await expect_type(ws, "subscribed")
            seen[f"recovered:{str(answer['recovered']).lower()}"] += 1
        # Held across a few scrapes (1 s apart), so that websocket_subscriptions_active shows it.
        await asyncio.sleep(SUBSCRIPTION_HOLD)


async def flood(url, seen):
    """Sends faster than RATE_LIMIT_MSGS_PER_SEC allows: refused with rate_limited, then ended
    as a policy violation."""
    async with connect(chat(url, "truth-flood"), open_timeout=OPEN_TIMEOUT,
                       close_timeout=CLOSE_TIMEOUT) as ws:
        await expect_type(ws, "connection_established")
        for i in range(300):
            await ws.send(json.dumps({"type": "message", "id": str(i), "data": i}))
        await until_closed(ws, seen)


async def oversize(url, limit, seen):
    """Sends one message larger than MAX_MESSAGE_BYTES; records the error it gets (the
    connection stays open) or the close."""
    async with connect(chat(url, "truth-big"), open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                       max_size=None) as ws:
        await expect_type(ws, "connection_established")
        await ws.send(json.dumps({"type": "message", "data": "x" * (limit + 1)}))
        try:
            seen["error:" + (await expect_type(ws, "error"))["code"]] += 1
        except ConnectionClosed as closed:
            seen[f"close:{closed.rcvd.code if closed.rcvd else 'none'}"] += 1


async def attempt(url, seen, hold_for=0.0, **options):
    """One connection attempt; records the HTTP status of a rejection."""
    try:
        async with connect(url, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT, **options) as ws:
            seen["accepted"] += 1
            await asyncio.sleep(hold_for)
            await ws.close()
    except InvalidStatus as rejected:
        seen[f"rejected:{rejected.response.status_code}"] += 1
    except (OSError, asyncio.TimeoutError, WebSocketException) as error:
        seen[f"failed:{type(error).__name__}"] += 1


async def load(args):
    seen = Counter()
    clients = [talk(args.url, i, args.messages, seen) for i in range(args.connections)]
    clients += [flood(args.url, seen), oversize(args.url, args.max_message_bytes, seen)]
    clients += [channels(args.url, i, seen) for i in range(2)]
    results = await asyncio.gather(*(asyncio.wait_for(c, CLIENT_TIMEOUT) for c in clients),
                                   return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            seen[f"client_error:{type(r).__name__}"] += 1
    await attempt(chat(args.url, "truth-origin"), seen, origin="http://forbidden.invalid")
    await attempt(chat(args.url, "bad%20id!"), seen)
    # Last, as Traefik's circuit breaker may open on the 503s: the excess connections,
    # held together for a moment so that some land above the cap.
    await asyncio.gather(*(attempt(chat(args.url, f"truth-cap-{i}"), seen, hold_for=1.0)
                           for i in range(args.over_cap)))
    return seen


async def hold_one(url, index, seconds, seen):
    try:
        async with connect(chat(url, f"truth-hold-{index}"), open_timeout=OPEN_TIMEOUT,
                           close_timeout=CLOSE_TIMEOUT) as ws:
            await expect_type(ws, "connection_established")
            seen["held"] += 1
            async with asyncio.timeout(seconds):
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("type") == "goodbye":
                        seen["goodbye:" + msg.get("reason", "?")] += 1
    except ConnectionClosed as closed:
        seen[f"close:{closed.rcvd.code if closed.rcvd else 'none'}"] += 1
    except TimeoutError:
        seen["held_to_the_end"] += 1
    except (OSError, WebSocketException) as error:
        seen[f"failed:{type(error).__name__}"] += 1


async def hold(args):
    seen = Counter()
    await asyncio.gather(*(hold_one(url, f"{u}-{i}", args.seconds, seen)
                           for u, url in enumerate(args.urls) for i in range(args.count)))
    return seen


def main():
    args = parse_args()
    seen = asyncio.run(load(args) if args.mode == "load" else hold(args))
    print(json.dumps(dict(sorted(seen.items()))), flush=True)
    connected = seen["accepted"] + seen["held"] + sum(v for k, v in seen.items() if k.startswith("server:"))
    sys.exit(0 if connected else 1)


if __name__ == "__main__":
    main()
