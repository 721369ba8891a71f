"""Connection churn client for the systemd suite: measures what clients see while a server
restarts under socket activation.

Opens new WebSocket connections at a steady rate (open loop: a slow or stalled server does not
slow the schedule down) for --duration seconds, or until --stop-file exists. Each attempt
connects to /ws/chat/<id>, waits for `connection_established` and closes with 1000. Before
that, it opens --hold connections that stay open, and records how each one ends (the
`goodbye` reason and the close code).

Writes one JSON report (to --report, else stdout):
  attempts, succeeded, failed, server_ids: {serverId: count} of the successful attempts,
  failures: {kind: count} (refused, reset, timeout, http_NNN, dropped_during_handshake,
  closed_before_established, unexpected_first_message, other), failure_examples,
  failed_attempts: [{kind, start_us, end_us}] (realtime clock, µs since the epoch, to set
  against the moment of a kill),
  longest_gap_s: the longest time with no successful attempt (from the first attempt's start),
  gap_start_s/gap_end_s (relative to the first attempt), latency_p50_s/p99_s/max_s,
  held: {opened, goodbye: {reason: count}, close_codes: {code: count}, errors, still_open}.
Exit status: 0 when the report was written (judging it is the caller's job), 1 when a held
connection could not be opened, 2 on bad usage.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT (the /ws/chat/<id> path is added)")
    parser.add_argument("--rate", type=positive_float, default=300.0, help="new connections per second")
    parser.add_argument("--duration", type=positive_float, required=True, help="seconds of churn")
    parser.add_argument("--hold", type=non_negative_int, default=0, help="long-lived connections opened first")
    parser.add_argument("--timeout", type=positive_float, default=30.0,
                        help="seconds one attempt may take (connect, upgrade, first message)")
    parser.add_argument("--prefix", default="churn", help="connection id prefix (A-Z a-z 0-9 _ -)")
    parser.add_argument("--report", help="write the JSON report here instead of stdout")
    parser.add_argument("--ready-file", help="touch this file once the held connections are open")
    parser.add_argument("--stop-file", help="stop opening connections once this file exists")
    args = parser.parse_args()
    if not args.url.startswith(("ws://", "wss://")):
        parser.error(f"--url must start with ws:// or wss://, got {args.url!r}")
    return args


def positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def failure_kind(error):
    """A short, countable name for why an attempt failed."""
    if isinstance(error, InvalidStatus):
        return f"http_{error.response.status_code}"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, BrokenPipeError, EOFError)):
        return "reset"
    if isinstance(error, InvalidMessage):
        return "dropped_during_handshake"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionClosed):
        return "closed_before_established"
    if isinstance(error, UnexpectedMessage):
        return "unexpected_first_message"
    return "other"


class UnexpectedMessage(Exception):
    """The server's first message was not connection_established."""


async def expect_established(ws):
    first = json.loads(await ws.recv())
    if first.get("type") != "connection_established":
        raise UnexpectedMessage(f"first message {first!r}")
    return first


async def attempt(url, conn_id, timeout):
    """One churn attempt: (start, end, serverId or the error), times from time.monotonic().
    A success ends when `connection_established` arrives (the closing handshake that follows
    is not the server's availability, and under a burst it mostly measures this client)."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with connect(f"{url}/ws/chat/{conn_id}", open_timeout=None, compression=None) as ws:
                established = await expect_established(ws)
                established_at = time.monotonic()
        return start, established_at, str(established.get("serverId"))
    except Exception as error:  # every failure is data for the report
        return start, time.monotonic(), error


async def hold(url, conn_id, opened):
    """A long-lived connection: how it ended, as (goodbye reason or None, close code or None)."""
    async with connect(f"{url}/ws/chat/{conn_id}", compression=None) as ws:
        await expect_established(ws)
        opened.set()
        goodbye = None
        try:
            async for message in ws:
                parsed = json.loads(message)
                if parsed.get("type") == "goodbye":
                    goodbye = parsed.get("reason")
        except ConnectionClosed:
            pass  # an abnormal close still has a close code (1006) worth reporting
        return goodbye, ws.close_code


async def run(args):
    held_tasks = []
    for i in range(args.hold):
        opened = asyncio.Event()
        held_tasks.append(asyncio.create_task(hold(args.url, f"{args.prefix}-held-{i}", opened)))
        await asyncio.wait([asyncio.create_task(opened.wait()), held_tasks[-1]], timeout=args.timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if not opened.is_set():
            task = held_tasks[-1]
            why = task.exception() if task.done() else f"no connection_established in {args.timeout} s"
            raise SystemExit(f"churn: held connection {i} did not open: {why!r}")
    if args.ready_file:
        open(args.ready_file, "w").close()

    total = max(1, round(args.rate * args.duration))
    begin = time.monotonic()
    attempts = []
    for i in range(total):
        if args.stop_file and os.path.exists(args.stop_file):
            break
        delay = begin + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        attempts.append(asyncio.create_task(attempt(args.url, f"{args.prefix}-{i}", args.timeout)))
    if not attempts:
        raise SystemExit("churn: no attempt made (the stop file existed from the start)")
    results = await asyncio.gather(*attempts)

    done, pending = await asyncio.wait(held_tasks, timeout=0) if held_tasks else (set(), set())
    for task in pending:
        task.cancel()
    return summarize(results, begin, [t.result() for t in done if not t.exception()],
                     [t.exception() for t in done if t.exception()], len(pending), args.hold)


def summarize(results, begin, held_ended, held_errors, still_open, held_opened):
    successes = sorted(end for _, end, outcome in results if isinstance(outcome, str))
    failures = [outcome for _, _, outcome in results if not isinstance(outcome, str)]
    realtime_offset = time.time() - time.monotonic()

    def epoch_us(monotonic):
        return round((monotonic + realtime_offset) * 1e6)
    gap, gap_start, gap_end = longest_gap(begin, successes, max(end for _, end, _ in results))
    latencies = sorted(end - start for start, end, outcome in results if isinstance(outcome, str))
    return {
        "attempts": len(results),
        "succeeded": len(successes),
        "failed": len(failures),
        "server_ids": dict(Counter(outcome for _, _, outcome in results if isinstance(outcome, str))),
        "failures": dict(Counter(failure_kind(e) for e in failures)),
        "failure_examples": sorted({f"{type(e).__name__}: {e}" for e in failures})[:5],
        "failed_attempts": [{"kind": failure_kind(outcome), "start_us": epoch_us(start), "end_us": epoch_us(end)}
                            for start, end, outcome in results if not isinstance(outcome, str)],
        "longest_gap_s": round(gap, 3),
        "gap_start_s": round(gap_start - begin, 3),
        "gap_end_s": round(gap_end - begin, 3),
        "latency_p50_s": percentile(latencies, 0.50),
        "latency_p99_s": percentile(latencies, 0.99),
        "latency_max_s": percentile(latencies, 1.0),
        "held": {
            "opened": held_opened,
            "goodbye": dict(Counter(str(reason) for reason, _ in held_ended)),
            "close_codes": dict(Counter(str(code) for _, code in held_ended)),
            "errors": sorted({f"{type(e).__name__}: {e}" for e in held_errors}),
            "still_open": still_open,
        },
    }


def longest_gap(begin, success_times, last_end):
    """Longest stretch without a success, from `begin` to the last attempt's end."""
    marks = [begin, *success_times, last_end]
    best = (0.0, begin, begin)
    for earlier, later in zip(marks, marks[1:]):
        if later - earlier > best[0]:
            best = (later - earlier, earlier, later)
    return best


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))], 3)


def main():
    args = parse_args()
    # Every in-flight attempt is a socket: lift the soft open-file limit to the hard one.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    if args.report:
        with open(args.report, "w") as out:
            out.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
