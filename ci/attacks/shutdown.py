"""Attack 12: a drain shorter than its own waits (issue 14, defect 12).

Contract: the drain's waits are derived from SHUTDOWN_TIMEOUT, so that any accepted value is
honoured: with SHUTDOWN_TIMEOUT=2000 and clients connected (cooperating ones that answer the
close handshake, and silent ones that read but never send a close frame), every client gets
`goodbye` `server_shutdown` (reconnect: true) and the process exits 0 within
SHUTDOWN_TIMEOUT + 1 s of SIGTERM; check-config refuses values below 1000 ms, naming the
variable.
"""

import asyncio

from .harness import run_check_config
from .wire import open_chat, source

TIMEOUT_MS = 2000
COOPERATING, SILENT = 20, 20


async def goodbye_of(ws, cooperate):
    """The goodbye this client got and the close code that followed (a cooperating client
    answers the close; a silent one never sends a frame)."""
    try:
        goodbye = await ws.recv_json(TIMEOUT_MS / 1000 + 3)
    except TimeoutError:
        return None, "no goodbye"
    if not isinstance(goodbye, dict):
        return None, f"closed first ({goodbye.close_code if goodbye else 'TCP'})"
    if cooperate:
        await ws.close()
        return goodbye, "closed"
    code, _ = await ws.until_close(TIMEOUT_MS / 1000 + 3)
    try:  # never answer the close: the server must give up on its own
        while await ws.recv(TIMEOUT_MS / 1000 + 3) is not None:
            pass
    except TimeoutError:
        code = f"{code}, TCP still open"
    ws.abort()
    return goodbye, code


def check_config(ctx):
    for value, accepted in (("500", False), ("999", False), ("1000", True)):
        code, out = run_check_config(ctx.binary, {"SHUTDOWN_TIMEOUT": value})
        ok = code == 0 if accepted else code != 0 and "SHUTDOWN_TIMEOUT" in out
        ctx.check(f"check-config {'accepts' if accepted else 'refuses'} SHUTDOWN_TIMEOUT={value}", ok,
                  f"exit {code}: {out.strip().splitlines()[-1][:120] if out.strip() else ''}")


async def run(ctx):
    check_config(ctx)
    server = ctx.server(SHUTDOWN_TIMEOUT=TIMEOUT_MS)
    clients = []
    for i in range(COOPERATING + SILENT):
        _, ws, _ = await open_chat(server.port, f"drain-{i}", source(12, i // 10))
        clients.append((ws, i < COOPERATING))
    async with ctx.honest(server):
        with ctx.measure(server):
            await asyncio.sleep(0.5)
        endings = [asyncio.create_task(goodbye_of(ws, cooperate)) for ws, cooperate in clients if ws]
        code, took = await asyncio.to_thread(server.stop, 10)
        results = await asyncio.gather(*endings)
    expected = {"type": "goodbye", "reason": "server_shutdown", "reconnect": True}
    said = sum(1 for g, _ in results if isinstance(g, dict) and {k: g.get(k) for k in expected} == expected)
    ends = sorted({str(end) for _, end in results})
    ctx.answered(f"{said} of {len(clients)} got goodbye server_shutdown, endings {ends}, "
                 f"exit {code} after {took:.1f} s")
    ctx.check(f"every client got goodbye server_shutdown with SHUTDOWN_TIMEOUT={TIMEOUT_MS}", said == len(clients),
              f"{said} of {len(clients)} ({COOPERATING} cooperating, {SILENT} silent); endings {ends}")
    ctx.check(f"exit 0 within SHUTDOWN_TIMEOUT + 1 s = {TIMEOUT_MS / 1000 + 1:.0f} s",
              code == 0 and took <= TIMEOUT_MS / 1000 + 1, f"exit {code} after {took:.2f} s")
