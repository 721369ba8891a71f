"""Attack 6: one IPv6 /64 is one client (issue 14, defect 6).

Through a trusted proxy (TRUSTED_PROXIES=127.0.0.1, the connecting peer) the client address is
the `X-Forwarded-For` entry. Eight addresses of one /64 against MAX_CONNECTIONS_PER_IP=4:
contract: per-IP limits count IPv6 clients per /CLIENT_IPV6_PREFIX (default 64), so four get
101 and four get 429 `ip_limit`, while an address of the neighbouring /64 still gets 101. With
CLIENT_IPV6_PREFIX=48 two /64s of one /48 share one budget. check-config validates the
variable (0..128).
"""

from .harness import run_check_config
from .wire import upgrade, upgrade_headers, ws_key

SAME_64 = [f"2001:db8:aa:bb::{i:x}" for i in range(1, 9)]
NEIGHBOUR_64 = "2001:db8:aa:bc::1"


async def via_proxy(port, connection_id, client):
    """An upgrade as a trusted proxy forwards it: (status, socket or None)."""
    headers = upgrade_headers(port, ws_key(), extra=[("X-Forwarded-For", client)])
    response, ws = await upgrade(port, f"/ws/chat/{connection_id}", "127.0.0.1", headers)
    return (response.status if response else "closed"), ws


async def default_prefix(ctx):
    server = ctx.server(TRUSTED_PROXIES="127.0.0.1", MAX_CONNECTIONS_PER_IP=4)
    async with ctx.honest(server):
        with ctx.measure(server):
            opened = [await via_proxy(server.port, f"v6-{i}", ip) for i, ip in enumerate(SAME_64)]
            statuses = [status for status, _ in opened]
            neighbour, ws = await via_proxy(server.port, "v6-neighbour", NEIGHBOUR_64)
            opened.append((neighbour, ws))
            for _, ws in opened:
                if ws:
                    ws.abort()
    ctx.answered(f"8 addresses of one /64: {statuses}; the next /64: {neighbour}")
    ctx.check("8 addresses of one /64 share MAX_CONNECTIONS_PER_IP=4: 4 x 101 then 4 x 429",
              statuses == [101] * 4 + [429] * 4, f"statuses {statuses}")
    ctx.check("an address of the neighbouring /64 is another client", neighbour == 101, f"status {neighbour}")


async def prefix_48(ctx):
    server = ctx.server("prefix48", TRUSTED_PROXIES="127.0.0.1", MAX_CONNECTIONS_PER_IP=1, CLIENT_IPV6_PREFIX=48)
    first, a = await via_proxy(server.port, "p48-a", "2001:db8:aa:bb::1")
    second, b = await via_proxy(server.port, "p48-b", "2001:db8:aa:cc::1")
    other, d = await via_proxy(server.port, "p48-c", "2001:db9:aa:bb::1")
    for ws in (a, b, d):
        if ws:
            ws.abort()
    ctx.answered(f"CLIENT_IPV6_PREFIX=48: {first}, {second}, {other}")
    ctx.check("CLIENT_IPV6_PREFIX=48: two /64s of one /48 share the per-IP budget",
              (first, second, other) == (101, 429, 101),
              f"2001:db8:aa:bb::1 {first}, 2001:db8:aa:cc::1 {second}, 2001:db9:aa:bb::1 {other}")


def check_config(ctx):
    bad, bad_out = run_check_config(ctx.binary, {"CLIENT_IPV6_PREFIX": "129"})
    good, good_out = run_check_config(ctx.binary, {"CLIENT_IPV6_PREFIX": "56"})
    ctx.check("check-config refuses CLIENT_IPV6_PREFIX=129, naming it", bad != 0 and "CLIENT_IPV6_PREFIX" in bad_out,
              f"exit {bad}: {bad_out.strip()[-120:]}")
    ctx.check("check-config shows CLIENT_IPV6_PREFIX=56", good == 0 and "CLIENT_IPV6_PREFIX=56" in good_out,
              f"exit {good}, {'listed' if 'CLIENT_IPV6_PREFIX' in good_out else 'not listed'}")


async def run(ctx):
    await default_prefix(ctx)
    await prefix_48(ctx)
    check_config(ctx)
