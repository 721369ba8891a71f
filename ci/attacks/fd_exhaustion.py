"""Attack 2: the open-file table filled with idle TCP connections (issue 14, defect 2).

The server runs with a hard `ulimit -n` of 512 and the systemd watchdog protocol as systemd
would set it up: NOTIFY_SOCKET is a unix datagram socket this attack binds and reads,
WATCHDOG_USEC is 3 s, WATCHDOG_PID is the server's own pid (the sd-notify crate ignores the
watchdog when WATCHDOG_PID names another process). Idle connections (20 per address, under
the per-IP pending cap) are opened until the server's fd table is full, and held for
FULL_SECONDS. Contract: `WATCHDOG=1` keeps arriving (no gap reaching WATCHDOG_USEC, after
which systemd would restart the process and drop every client); accept errors back off and are
logged at most about once a second; a new connection sees a closed connection (accept-and-close
on a reserved fd) instead of hanging in the queue; established clients keep echoing;
`websocket_accept_errors_total{kind="fd_limit"}` counts the failures.
"""

import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path

from . import contract as c
from .harness import level, metric
from .wire import drop_all, hold, hold_many, source

NOFILE = 512
WATCHDOG_USEC = 3_000_000
FULL_SECONDS = 8.0
PER_SOURCE = 20
PROBE = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PROBE_WAIT = 5.0


class NotifySocket:
    """The NOTIFY_SOCKET end systemd would hold: records (monotonic time, line) of every
    datagram (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1). A thread of its own reads it, so
    that the times are right however busy the attack's event loop is."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="attack-notify-")
        self.path = str(Path(self.dir.name) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.lines = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            now = time.monotonic()
            self.lines += [(now, line) for line in data.decode(errors="replace").splitlines()]

    def watchdog_times(self):
        return [t for t, line in self.lines if line == "WATCHDOG=1"]

    def close(self):
        self.stopping.set()
        self.thread.join()
        self.sock.close()
        self.dir.cleanup()


def longest_gap(times, start, end):
    """The longest stretch of [start, end] without a time in `times`."""
    points = [start] + [t for t in times if start < t < end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


async def fill_fd_table(server):
    """Opens idle connections, PER_SOURCE per address, until the server's fd table is full:
    near NOFILE, or no longer growing (a server may keep a reserve, or close what it cannot
    hold); then a few more that wait in the listen queue."""
    held, index, most, flat = [], 0, 0, 0
    while len(held) < 2 * NOFILE:
        held += await hold_many(server.port, [source(3, index)], b"", PER_SOURCE)
        index += 1
        await asyncio.sleep(0.2)
        fds = server.fd_count()
        if fds >= NOFILE - 8:
            break
        flat = flat + 1 if fds <= most else 0
        most = max(most, fds)
        if flat >= 2 and fds >= NOFILE // 2:
            break
    held += await hold_many(server.port, [source(3, index)], b"", 5)
    await asyncio.sleep(0.5)
    return held


async def run(ctx):
    notify = NotifySocket()
    try:
        server = ctx.server(nofile=NOFILE, watchdog_pid=True, NOTIFY_SOCKET=notify.path,
                            WATCHDOG_USEC=WATCHDOG_USEC)
        async with ctx.honest(server):
            await asyncio.sleep(1.2 * WATCHDOG_USEC / 1e6)
            pings_before = len(notify.watchdog_times())
            ctx.check("the watchdog is on before the attack (WATCHDOG=1 arriving)", pings_before >= 2,
                      f"{pings_before} WATCHDOG=1 in {1.2 * WATCHDOG_USEC / 1e6:.1f} s; notify lines: "
                      f"{[line for _, line in notify.lines][:4]}")
            with ctx.measure(server):
                await full_table(ctx, server, notify)
    finally:
        notify.close()


async def full_table(ctx, server, notify):
    attackers = await fill_fd_table(server)
    fds = [server.fd_count()]
    log_start, start = server.log_size(), time.monotonic()
    probe = None
    while time.monotonic() - start < FULL_SECONDS:
        await asyncio.sleep(0.5)
        fds.append(server.fd_count())
        if probe is None and time.monotonic() - start >= 1.0:
            probe, probe_sent = await hold(server.port, source(3, 250), PROBE), time.monotonic()
    end, log_end = time.monotonic(), server.log_size()
    while probe and probe.outcome is None and time.monotonic() - probe_sent < PROBE_WAIT:
        await asyncio.sleep(0.1)
    ctx.check("the attack filled the fd table (all but a reserve of at most 32)", min(fds) >= NOFILE - 32,
              f"{len(attackers)} idle connections; server fds {min(fds)}..{max(fds)} of {NOFILE} while full")
    gap = longest_gap(notify.watchdog_times(), start, end)
    ctx.check(f"WATCHDOG=1 keeps arriving while full (no gap >= WATCHDOG_USEC {WATCHDOG_USEC / 1e6:.0f} s)",
              gap < WATCHDOG_USEC / 1e6,
              f"longest gap {gap:.1f} s within {end - start:.1f} s full; "
              f"{sum(start < t < end for t in notify.watchdog_times())} pings")
    noisy = [r for r in server.log_records(log_start, log_end) if level(r) in ("WARN", "ERROR")]
    allowed = int(end - start) + 2
    ctx.check("accept errors back off and are logged about once a second at most",
              len(noisy) <= allowed,
              f"{len(noisy)} warn/error lines in {end - start:.1f} s (at most {allowed}); first: "
              f"{noisy[0].get('message', noisy[0]) if noisy else '-'}")
    outcome = probe.outcome if probe else "could not connect"
    ctx.answered(f"a new connection while full: {outcome or 'hangs'}")
    ctx.check("a new connection while full is closed or answered instead of hanging",
              probe is not None and probe.outcome is not None,
              f"after {PROBE_WAIT:.0f} s: {outcome or 'no answer, not closed (queued behind a full table)'}")
    drop_all(attackers + ([probe] if probe else []))
    recovered = await recover(server)
    ctx.check("the server serves again once the idle connections leave", recovered, f"/ready: {recovered}")
    samples = await server.metrics()
    counted = metric(samples, c.ACCEPT_ERRORS, kind="fd_limit")
    ctx.answered(f"{c.ACCEPT_ERRORS}{{kind=fd_limit}} {counted}")
    ctx.check(f"{c.ACCEPT_ERRORS}{{kind=fd_limit}} counted the failed accepts", counted is not None and counted > 0,
              f"metric {counted}")


async def recover(server):
    for _ in range(50):
        if await asyncio.to_thread(server.http_status, "/ready") == 200:
            return True
        await asyncio.sleep(0.1)
    return False
