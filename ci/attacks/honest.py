"""Honest clients echoing alongside an attack: a few `websockets` connections to /ws/chat from
127.0.0.1, each sending protocol v1 `message` requests one at a time and checking that the
`message_response` carries the same id and data. A failure is anything an honest user would
notice: a connection that could not open or broke without a `goodbye`, a request unanswered
within ANSWER_TIMEOUT, a wrong or `error` answer. A `goodbye` (the server draining) is no
failure: the client stops sending, takes the answer it waits for, and closes, as the protocol
asks.
"""

import asyncio
import json
import math
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ANSWER_TIMEOUT = 10.0


class HonestClients:
    def __init__(self, port, count=4, interval=0.05, prefix="honest"):
        self.url = f"ws://127.0.0.1:{port}/ws/chat"
        self.count, self.interval, self.prefix = count, interval, prefix
        self.failures, self.latencies = [], []
        self._stopping = asyncio.Event()
        self._tasks = []

    async def __aenter__(self):
        opened = [asyncio.get_running_loop().create_future() for _ in range(self.count)]
        self._tasks = [asyncio.create_task(self._client(i, opened[i])) for i in range(self.count)]
        await asyncio.wait(opened, timeout=15)
        return self

    async def __aexit__(self, *exc):
        await self.stop()
        return False

    async def stop(self):
        self._stopping.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=ANSWER_TIMEOUT + 5)
            for task in pending:
                task.cancel()
                self.failures.append("client task did not finish")
            self._tasks = []

    def fail(self, i, what):
        self.failures.append(f"{self.prefix}-{i}: {what}")

    async def _client(self, i, opened):
        try:
            async with connect(f"{self.url}/{self.prefix}-{i}", open_timeout=15, close_timeout=5,
                               max_size=1 << 20) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), ANSWER_TIMEOUT))
                if hello.get("type") != "connection_established":
                    self.fail(i, f"first message {hello}")
                opened.set_result(True)
                await self._echo(i, ws)
        except Exception as e:  # OSError, ConnectionClosed, InvalidStatus, TimeoutError, ...
            self.fail(i, f"{type(e).__name__}: {e}")
        finally:
            if not opened.done():
                opened.set_result(False)

    async def _echo(self, i, ws):
        n, leaving = 0, False
        while not self._stopping.is_set() and not leaving:
            n += 1
            request_id, data = f"{i}-{n}", {"n": n, "client": i, "text": "honest ü"}
            sent = time.monotonic()
            await ws.send(json.dumps({"type": "message", "id": request_id, "data": data}))
            answered = False
            deadline = sent + ANSWER_TIMEOUT
            while not answered:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    self.fail(i, f"request {request_id} unanswered after {ANSWER_TIMEOUT:.0f} s")
                    return
                except ConnectionClosed as e:
                    if not leaving:
                        self.fail(i, f"closed without goodbye while waiting for {request_id}: {e}")
                    else:
                        self.fail(i, f"closed after goodbye before answering {request_id}")
                    return
                answer = json.loads(raw)
                kind = answer.get("type")
                if kind == "message_response":
                    if answer.get("id") != request_id or answer.get("data") != data:
                        self.fail(i, f"wrong answer to {request_id}: {raw[:120]}")
                    self.latencies.append(time.monotonic() - sent)
                    answered = True
                elif kind == "goodbye":
                    leaving = True  # take the answer still owed, then leave
                elif kind == "error":
                    self.fail(i, f"error answer to {request_id}: {raw[:120]}")
                    answered = True
            await asyncio.sleep(self.interval)

    def p99_ms(self):
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def summary(self):
        return (f"honest clients failures={len(self.failures)} p99={self.p99_ms():.1f} ms "
                f"({len(self.latencies)} answers)")
