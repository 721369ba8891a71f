"""Attack 9: cross-site WebSockets through DNS rebinding or a scheme mismatch (issue 14,
defect 9).

With ALLOWED_ORIGINS and PUBLIC_ORIGIN empty, contract: a browser `Origin` is allowed only when
scheme, host and port equal the request's own (scheme http on a plain listener, or
`X-Forwarded-Proto` from a trusted proxy) and the host is `localhost` or an IP literal;
anything else is 403 `forbidden_origin`. With PUBLIC_ORIGIN set, that origin is allowed too.
check-config validates PUBLIC_ORIGIN (`scheme://host[:port]`).
"""

from .harness import run_check_config
from .wire import source, upgrade, upgrade_headers, ws_key


def cases(port):
    """(what, origin, host, extra headers, source address, expected status)."""
    return [
        ("DNS rebinding name with port", f"http://evil.example:{port}", f"evil.example:{port}", [], None, 403),
        ("DNS rebinding name", "http://evil.example", "evil.example", [], None, 403),
        ("https origin on a plain listener", f"https://127.0.0.1:{port}", f"127.0.0.1:{port}", [], None, 403),
        ("another port", "http://127.0.0.1:9", f"127.0.0.1:{port}", [], None, 403),
        ("X-Forwarded-Proto from an untrusted peer", f"https://localhost:{port}", f"localhost:{port}",
         [("X-Forwarded-Proto", "https")], source(9, 0), 403),
        ("localhost, same origin", f"http://localhost:{port}", f"localhost:{port}", [], None, 101),
        ("IPv4 literal, same origin", f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", [], None, 101),
        ("IPv6 literal, same origin", f"http://[::1]:{port}", f"[::1]:{port}", [], None, 101),
        ("https through a trusted proxy", f"https://localhost:{port}", f"localhost:{port}",
         [("X-Forwarded-Proto", "https")], None, 101),
        ("no Origin (not a browser)", None, f"127.0.0.1:{port}", [], None, 101),
    ]


async def status_of(port, origin, host, extra, src):
    headers = upgrade_headers(port, ws_key(), host=host, extra=extra + ([("Origin", origin)] if origin else []))
    response, ws = await upgrade(port, "/ws/chat/origin", src or "127.0.0.1", headers)
    if ws:
        ws.abort()
    if response is None:
        return "closed"
    if response.status == 403 and response.json() != {"error": "forbidden_origin"}:
        return f"403 {response.body[:60]!r}"
    return response.status


async def default_policy(ctx):
    server = ctx.server(TRUSTED_PROXIES="127.0.0.1")
    async with ctx.honest(server):
        with ctx.measure(server):
            for what, origin, host, extra, src, expected in cases(server.port):
                got = await status_of(server.port, origin, host, extra, src)
                ctx.answered(f"{what}: {got}")
                ctx.check(f"{what} -> {expected}", got == expected, f"Origin {origin}, Host {host}: {got}")


async def public_origin(ctx):
    server = ctx.server("public-origin", PUBLIC_ORIGIN="https://chat.example.com")
    host = "backend.internal:3001"
    for origin, expected in [("https://chat.example.com", 101), ("http://chat.example.com", 403),
                             ("http://evil.example", 403)]:
        got = await status_of(server.port, origin, host if "chat" in origin else "evil.example", [], None)
        ctx.answered(f"PUBLIC_ORIGIN, Origin {origin}: {got}")
        ctx.check(f"PUBLIC_ORIGIN=https://chat.example.com, Origin {origin} -> {expected}", got == expected, f"{got}")
    code, out = run_check_config(ctx.binary, {"PUBLIC_ORIGIN": "chat.example.com"})
    ctx.check("check-config refuses PUBLIC_ORIGIN without a scheme, naming it",
              code != 0 and "PUBLIC_ORIGIN" in out, f"exit {code}: {out.strip()[-120:]}")


async def run(ctx):
    await default_policy(ctx)
    await public_origin(ctx)
