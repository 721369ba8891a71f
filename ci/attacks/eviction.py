"""Attack 7: taking over someone else's connection id (issue 14, defect 7).

Without tokens, contract: an upgrade for a connection id already open on this server replaces
it only when it comes from the same client address; from another address it is refused 409
`{"error":"connection_id_in_use"}` and the open connection is untouched. The replaced
connection gets `goodbye` `replaced` with `reconnect: true`, then close 1000.
"""

from .wire import OP_TEXT, message, open_chat, source, upgrade, upgrade_headers, ws_key


async def echoes(ws, tag):
    try:
        ws.send(OP_TEXT, message(tag, tag))
        await ws.drain()
        answer = await ws.recv_json(5)
    except (ConnectionError, TimeoutError):
        return False
    return isinstance(answer, dict) and answer.get("type") == "message_response" and answer.get("id") == tag


async def from_another_address(ctx, port):
    _, victim, _ = await open_chat(port, "victim", source(7, 0))
    headers = upgrade_headers(port, ws_key())
    response, intruder = await upgrade(port, "/ws/chat/victim", source(7, 1), headers)
    if intruder:
        intruder.abort()
    body = response.json() if response else None
    ctx.answered(f"same id from another address: {response}")
    ctx.check("an id open from another address is refused 409 connection_id_in_use",
              response is not None and response.status == 409 and body == {"error": "connection_id_in_use"},
              f"got {response or 'no answer'}")
    try:
        first = await victim.recv_json(0.5)
    except TimeoutError:
        first = None
    still_echoes = first is None and await echoes(victim, "after-intruder")
    ctx.check("the open connection is untouched (no goodbye, still echoes)", still_echoes,
              f"the victim received {first}" if first is not None else "it received nothing but stopped echoing")
    victim.abort()


async def from_the_same_address(ctx, port):
    _, old, _ = await open_chat(port, "returning", source(7, 2))
    response, new, hello = await open_chat(port, "returning", source(7, 2))
    goodbye = await old.recv_json(5) if old else None
    code, _ = await old.until_close(5) if old else (None, None)
    ctx.answered(f"same id from the same address: {response.status if response else None}, the old one got {goodbye}")
    ctx.check("the same address replaces its own connection (101)", new is not None, f"got {response}, {hello}")
    expected = {"type": "goodbye", "reason": "replaced", "reconnect": True}
    got = {k: goodbye.get(k) for k in expected} if isinstance(goodbye, dict) else goodbye
    ctx.check("the replaced connection gets goodbye replaced with reconnect: true, then close 1000",
              got == expected and code == 1000, f"got {goodbye}, close {code}")
    if new:
        ctx.check("the replacing connection echoes", await echoes(new, "replacer"), "")
        new.abort()


async def run(ctx):
    await ctx.steps(ctx.server(), from_another_address, from_the_same_address)
