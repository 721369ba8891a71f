"""Attack 13: invalid UTF-8 arriving in pieces (issue 14, defect 13: Autobahn 6.4.3 and 6.4.4
are NON-STRICT).

A text message is sent in three pieces, with a pause after each; one piece makes the text
invalid. Contract: the connection is closed 1007 as soon as the invalid piece arrives, before
the last piece is sent (this client waits FAIL_FAST seconds for it), and not before it.
The pieces are either fragments (frames of one message: tungstenite checks each frame as it
completes) or chops of one frame (Autobahn 6.4.3/6.4.4: the frame is incomplete when its
invalid bytes arrive). A code point split across two fragments is not an error. Checked on
/ws/chat and on /ws/echo (Autobahn's endpoint).
"""

import asyncio

from .wire import OP_CONT, OP_TEXT, frame, upgrade, upgrade_headers, ws_key

FAIL_FAST = 2.0
VALID_PAUSE = 0.5
# Autobahn 6.4.1: "κόσμε", a code point beyond U+10FFFF (invalid from its second byte), "edited".
PART1 = "κόσμε".encode()
PART2 = b"\xf4\x90\x80\x80"
PART3 = b"edited"
CHAT_PREFIX = b'{"type":"message","data":"'


def fragments(parts):
    """The parts as the frames of one fragmented text message."""
    last = len(parts) - 1
    return [frame(OP_CONT if i else OP_TEXT, p, fin=i == last) for i, p in enumerate(parts)]


def chops(parts):
    """One text frame carrying all the parts, cut where the parts meet (the frame's header
    goes with the first)."""
    whole = frame(OP_TEXT, b"".join(parts))
    offset = len(whole) - sum(map(len, parts))  # the header: 2 to 10 bytes and the mask
    pieces = [whole[:offset]]
    for part in parts:
        pieces.append(whole[offset:offset + len(part)])
        offset += len(part)
    return [pieces[0] + pieces[1]] + pieces[2:]


def cases(prefix):
    """(what, pieces, index of the piece that makes the text invalid)."""
    autobahn_1 = [prefix + PART1, PART2, PART3 + b'"}']
    autobahn_2 = [prefix + PART1 + PART2[:1], PART2[1:2], PART2[2:] + PART3 + b'"}']
    first_invalid = [prefix + PART1 + PART2, b"x", b'"}']
    return [
        ("6.4.3: invalid second chop of one frame", chops(autobahn_1), 1),
        ("6.4.4: invalid byte alone in the second chop", chops(autobahn_2), 1),
        ("invalid first fragment", fragments(first_invalid), 0),
        ("6.4.1: invalid second fragment", fragments(autobahn_1), 1),
    ]


async def open_socket(port, path):
    _, ws = await upgrade(port, path, "127.0.0.1", upgrade_headers(port, ws_key()))
    if ws and path.startswith("/ws/chat"):
        await ws.recv_json(5, "connection_established")
    return ws


async def send_in_pieces(ws, pieces, invalid):
    """Sends the pieces with pauses: (close code, after which piece it came)."""
    for index, piece in enumerate(pieces):
        ws.send_raw(piece)
        await ws.drain()
        code, _ = await ws.until_close(FAIL_FAST if index >= invalid else VALID_PAUSE)
        if isinstance(code, int) or code is None:
            return code, index
    return "still open", len(pieces) - 1


async def invalid_pieces(ctx, port, path, what, pieces, invalid):
    ws = await open_socket(port, path)
    code, after = await send_in_pieces(ws, pieces, invalid)
    ws.abort()
    last = len(pieces) - 1
    detail = f"close {code} after piece {after + 1} of {len(pieces)} (the invalid one is {invalid + 1})"
    ctx.answered(f"{path} {what}: {detail}")
    ctx.check(f"{path}: {what} -> 1007 when the invalid piece arrives, before the last",
              code == 1007 and after == invalid < last, detail)


async def split_code_point(ctx, port):
    ws = await open_socket(port, "/ws/chat/utf8-split")
    text = '{"type":"message","id":"split","data":"κόσμε"}'.encode()
    cut = text.index("κ".encode()) + 1  # inside the two bytes of κ
    for piece in fragments([text[:cut], text[cut:]]):
        ws.send_raw(piece)
        await ws.drain()
        await asyncio.sleep(0.2)
    answer = await ws.recv_json(5, "message_response")
    ws.abort()
    ctx.check("a code point split across fragments is valid (answered)",
              isinstance(answer, dict) and answer.get("data") == "κόσμε", f"got {answer}")


async def run(ctx):
    server = ctx.server(ENABLE_ECHO="true")
    async with ctx.honest(server):
        with ctx.measure(server):
            for path, prefix in (("/ws/chat/utf8", CHAT_PREFIX), ("/ws/echo", b"")):
                for what, pieces, invalid in cases(prefix):
                    await invalid_pieces(ctx, server.port, path, what, pieces, invalid)
            await split_code_point(ctx, server.port)
