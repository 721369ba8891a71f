"""Attack 10: abuse is invisible, churn is loud (issue 14, defect 10).

The server runs with small pre-upgrade caps (MAX_PENDING_HTTP=40, MAX_PENDING_HTTP_PER_IP=10)
and HTTP_IDLE_TIMEOUT=3000. Contract:
- `websocket_http_pending` and `websocket_http_refused_total{reason}` (pending_limit,
  pending_ip_limit, header_too_large, header_timeout, bad_handshake) and
  `websocket_accept_errors_total{kind}` (fd_limit, other) exist from start-up at 0;
- each refusal is counted under its reason, exactly as many as this attack caused, and the
  pending gauge follows the connections held;
- 2,000 WebSocket connections opened and closed write fewer than 50 info lines
  (per-connection lines are debug); a summary info line with the opened count comes at
  shutdown.
"""

import asyncio

from . import contract as c
from .harness import level, metric
from .wire import drop_all, hold, hold_many, open_chat, source, upgrade, upgrade_headers

PENDING, PENDING_PER_IP, IDLE_MS = 40, 10, 3000
PARTIAL_HEAD = b"GET /ws/chat/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1"
LARGE_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Large: " + b"l" * 20_000 + b"\r\n\r\n"
CHURN, CHURN_WORKERS = 2000, 20
CHURN_INFO_LINES = 50


def refused(samples, reason):
    return metric(samples, c.HTTP_REFUSED, reason=reason)


def delta(before, after, reason):
    if refused(after, reason) is None:
        return None
    return refused(after, reason) - (refused(before, reason) or 0)


def render(labels):
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def startup_series(ctx, samples):
    expected = [(c.HTTP_PENDING, {})] + [(c.HTTP_REFUSED, {"reason": r}) for r in c.REFUSED_REASONS] + \
        [(c.ACCEPT_ERRORS, {"kind": k}) for k in c.ACCEPT_ERROR_KINDS]
    wrong = [f"{name}{render(labels)}={metric(samples, name, **labels)}" for name, labels in expected
             if metric(samples, name, **labels) != 0]
    ctx.check("every new series exists from start-up at 0", not wrong,
              f"absent or not 0: {', '.join(wrong)}" if wrong else f"{len(expected)} series at 0")


async def outcome_within(held, seconds):
    for _ in range(int(seconds * 10)):
        if held is None or held.outcome is not None:
            break
        await asyncio.sleep(0.1)
    return held.outcome if held else "could not connect"


async def refusals(ctx, server):
    before = await server.metrics()
    slow = await hold_many(server.port, [source(10, 0)], PARTIAL_HEAD, 2)
    started = asyncio.get_running_loop().time()
    large = [await outcome_within(await hold(server.port, source(10, 1), LARGE_HEAD), 5) for _ in range(3)]
    bad_keys = []
    for _ in range(2):
        response, ws = await upgrade(server.port, "/ws/chat/bad-key", source(10, 1), upgrade_headers(server.port, ""))
        bad_keys.append(response.status if response else "closed")
        if ws:
            ws.abort()
    await asyncio.sleep(max(0.0, started + IDLE_MS / 1000 + 1.5 - asyncio.get_running_loop().time()))
    timed_out = [h.outcome for h in slow]
    after = await server.metrics()
    drop_all(slow)
    ctx.answered(f"20 KB head: {large}; empty key: {bad_keys}; idle partial heads: {timed_out}")
    for reason, what, answers in [("header_too_large", "3 heads of 20 KB", large),
                                  ("bad_handshake", "2 empty keys", bad_keys),
                                  ("header_timeout", "2 partial heads past HTTP_IDLE_TIMEOUT", timed_out)]:
        got = delta(before, after, reason)
        ctx.check(f"{what} counted as refused{{reason={reason}}} +{len(answers)}", got == len(answers),
                  f"counter moved by {got}; answers {answers}")


async def pending_caps(ctx, server):
    before = await server.metrics()
    per_ip = await hold_many(server.port, [source(10, 2)], PARTIAL_HEAD, PENDING_PER_IP + 5)
    others = await hold_many(server.port, [source(10, i) for i in range(3, 6)], PARTIAL_HEAD, PENDING_PER_IP)
    beyond = await hold_many(server.port, [source(10, 6)], PARTIAL_HEAD, 5)
    await asyncio.sleep(0.5)
    during = await server.metrics()
    held = per_ip + others + beyond
    gauge = metric(during, c.HTTP_PENDING)
    ctx.answered(f"{len(held)} partial heads: {sum(h.outcome is None for h in held)} held, "
                 f"pending gauge {gauge}")
    ctx.check(f"{PENDING_PER_IP + 5} from one address: 5 counted as pending_ip_limit",
              delta(before, during, "pending_ip_limit") == 5,
              f"counter moved by {delta(before, during, 'pending_ip_limit')}")
    ctx.check(f"5 beyond MAX_PENDING_HTTP={PENDING}: 5 counted as pending_limit",
              delta(before, during, "pending_limit") == 5, f"counter moved by {delta(before, during, 'pending_limit')}")
    ctx.check(f"{c.HTTP_PENDING} = {PENDING} while {PENDING} are held",
              gauge is not None and PENDING <= gauge <= PENDING + 1,
              f"gauge {gauge}, {sum(h.outcome is None for h in held)} connections still open")
    drop_all(held)
    for _ in range(30):
        gauge = metric(await server.metrics(), c.HTTP_PENDING)
        if gauge == 0:
            break
        await asyncio.sleep(0.1)
    ctx.check(f"{c.HTTP_PENDING} back to 0 once they leave", gauge == 0, f"gauge {gauge}")


async def churn_worker(port, worker, count, failures):
    for n in range(count):
        _, ws, _ = await open_chat(port, f"churn-{worker}-{n}", source(11, worker))
        if ws is None:
            failures.append(n)
            continue
        await ws.close()


async def churn(ctx, server):
    start, failures = server.log_size(), []
    await asyncio.gather(*(churn_worker(server.port, w, CHURN // CHURN_WORKERS, failures)
                           for w in range(CHURN_WORKERS)))
    await asyncio.sleep(0.5)
    info = [r for r in server.log_records(start) if level(r) == "INFO"]
    ctx.answered(f"{CHURN} connections opened and closed: {len(failures)} failed, {len(info)} info lines")
    ctx.check(f"{CHURN} connections churned write < {CHURN_INFO_LINES} info lines", len(info) < CHURN_INFO_LINES,
              f"{len(info)} info lines (first: {info[0].get('message') if info else '-'}); "
              f"{len(failures)} connections failed to open")
    return start


def opened_count(record):
    """The largest whole number in a field whose name says `open` (opened, connections_opened)."""
    counts = [v for k, v in record.items() if "open" in k.lower() and isinstance(v, int) and not isinstance(v, bool)]
    return max(counts, default=None)


async def run(ctx):
    server = ctx.server(MAX_PENDING_HTTP=PENDING, MAX_PENDING_HTTP_PER_IP=PENDING_PER_IP, HTTP_IDLE_TIMEOUT=IDLE_MS)
    startup_series(ctx, await server.metrics())
    async with ctx.honest(server):
        with ctx.measure(server):
            await refusals(ctx, server)
            await pending_caps(ctx, server)
            start = await churn(ctx, server)
    code, _ = await asyncio.to_thread(server.stop)
    summaries = [opened_count(r) for r in server.log_records(start) if level(r) == "INFO"]
    summaries = [n for n in summaries if n is not None]
    ctx.check(f"info summaries (the last at shutdown) count the >= {CHURN} connections opened",
              sum(summaries) >= CHURN, f"opened counts in info lines: {summaries or 'none'}")
    ctx.check("the server exits 0 on SIGTERM", code == 0, f"exit {code}")
