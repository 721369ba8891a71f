"""Raw HTTP/1.1 and hand-built WebSocket frames, for what a well-behaved client library refuses
to send: malformed or never-ending request heads, bad handshakes, fragments, floods of control
frames, partial frames, invalid UTF-8, sockets that never read.

Every connection can come from its own loopback address (all of 127.0.0.0/8 is local on
Linux), so that an attack is counted against its own client address, apart from the honest
clients on 127.0.0.1.
"""

import asyncio
import base64
import json
import os
import socket
import struct
from dataclasses import dataclass, field

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# What `RawWebSocket.until_close` returns for a connection the server kept open.
STILL_OPEN = "still open"
# Read side of a stream: large enough for one whole server frame of any size the suite sees.
STREAM_LIMIT = 1 << 22


def source(net, index):
    """The loopback address number `index` (0-based) in `127.<net>.0.0/16` (net > 0: the
    honest clients are 127.0.0.1)."""
    return f"127.{net}.{index // 250}.{index % 250 + 1}"


async def open_tcp(port, src="127.0.0.1", rcvbuf=None):
    """A TCP connection to 127.0.0.1:port from address `src` (asyncio streams)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            # Before connect, so that the window the server sees is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((src, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)


def ws_key(raw=None):
    """A Sec-WebSocket-Key: base64 of 16 random bytes, or of `raw`."""
    return base64.b64encode(os.urandom(16) if raw is None else raw).decode()


def request(method, path, headers, body=b""):
    """The bytes of one HTTP/1.1 request; `headers` is a list of (name, value) in order."""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def upgrade_headers(port, key=None, version="13", host=None, extra=()):
    """The headers of a WebSocket upgrade request (a `None` key or version leaves it out)."""
    headers = [("Host", host or f"127.0.0.1:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    return headers + list(extra)


@dataclass
class Response:
    status: int
    reason: str
    headers: dict = field(default_factory=dict)  # lower-case name -> value (the last one)
    body: bytes = b""

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __str__(self):
        body = self.body[:80].decode("utf-8", "replace")
        return f"{self.status} {body}".strip()


async def read_response(reader, timeout):
    """The next HTTP response on `reader`, or None when the server closed (EOF or reset) first.
    Raises TimeoutError when nothing complete arrived within `timeout` seconds."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    response = Response(int(parts[1]), parts[2] if len(parts) > 2 else "")
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            response.headers[name.strip().lower()] = value.strip()
    length = int(response.headers.get("content-length", "0"))
    if length and response.status != 101:
        try:
            response.body = await asyncio.wait_for(reader.readexactly(length), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
    return response


def mask_payload(payload, key):
    """RFC 6455 5.3 masking, done on big integers (one C-level XOR instead of a Python loop)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, length=None):
    """One masked client frame. `length` overrides the announced payload length (to send a
    header now and its payload later)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + mask_payload(payload, key)


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    def json(self):
        if self.opcode != OP_TEXT:
            return None
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


async def read_frame(reader):
    """The next server frame (server frames are not masked, but a masked one is unmasked)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n)
    if key:
        payload = mask_payload(payload, key)
    return Frame(bool(b0 & 0x80), b0 & 0x0F, payload)


class RawWebSocket:
    """An upgraded connection driven frame by frame. It never answers pings on its own: an
    attack decides what the server hears."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        # The frame being read: kept across a timeout, so that a frame half arrived when the
        # wait ended is not torn (cancelling a read mid-frame would lose its first bytes).
        self._next = None

    def send(self, opcode, payload=b"", fin=True):
        self.writer.write(frame(opcode, payload, fin))

    def send_raw(self, data):
        self.writer.write(data)

    async def drain(self, timeout=10):
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def recv(self, timeout):
        """The next frame, None once the server closed TCP; TimeoutError if none in time."""
        if self._next is None:
            self._next = asyncio.ensure_future(read_frame(self.reader))
        done, _ = await asyncio.wait({self._next}, timeout=timeout)
        if not done:
            raise TimeoutError
        reading, self._next = self._next, None
        try:
            return reading.result()
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def recv_json(self, timeout, wanted=None):
        """The next text message (of type `wanted`, if given), skipping control frames, or the
        close frame / None (TCP closed) that came first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame_ = await self.recv(max(0.0, deadline - loop.time()))
            if frame_ is None or frame_.opcode == OP_CLOSE:
                return frame_
            message = frame_.json()
            if message is not None and (wanted is None or message.get("type") == wanted):
                return message

    async def until_close(self, timeout):
        """Reads until the server's close frame or TCP close: (close code, None when TCP closed
        without one, or STILL_OPEN after `timeout`; the text messages seen)."""
        loop = asyncio.get_running_loop()
        deadline, seen = loop.time() + timeout, []
        while True:
            try:
                frame_ = await self.recv(max(0.0, deadline - loop.time()))
            except TimeoutError:
                return STILL_OPEN, seen
            if frame_ is None:
                return None, seen
            if frame_.opcode == OP_CLOSE:
                return frame_.close_code, seen
            if frame_.opcode == OP_TEXT:
                seen.append(frame_.json())

    def abort(self):
        """Drops the TCP connection without a closing handshake."""
        if self._next is not None:
            self._next.cancel()
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self, timeout=3):
        """The closing handshake from our side, bounded; then TCP is dropped."""
        try:
            self.send(OP_CLOSE, close_payload(1000))
            await self.drain(timeout)
            await self.until_close(timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        self.abort()


async def upgrade(port, path, src="127.0.0.1", headers=None, rcvbuf=None, timeout=10, body=b""):
    """Sends an upgrade request: (response or None if closed unanswered, RawWebSocket on 101
    else None). Non-101 connections are closed here."""
    reader, writer = await open_tcp(port, src, rcvbuf)
    writer.write(request("GET", path, headers or upgrade_headers(port, ws_key()), body))
    try:
        response = await read_response(reader, timeout)
    except BaseException:
        writer.transport.abort()
        raise
    if response is None or response.status != 101:
        writer.transport.abort()
        return response, None
    return response, RawWebSocket(reader, writer)


async def open_chat(port, connection_id, src="127.0.0.1", rcvbuf=None, extra=(), timeout=10):
    """An upgraded /ws/chat connection past its `connection_established`: (response, socket or
    None, the established message)."""
    response, ws = await upgrade(port, f"/ws/chat/{connection_id}", src,
                                 upgrade_headers(port, ws_key(), extra=extra), rcvbuf, timeout)
    if ws is None:
        return response, None, None
    hello = await ws.recv_json(timeout)
    if not isinstance(hello, dict) or hello.get("type") != "connection_established":
        ws.abort()
        return response, None, hello
    return response, ws, hello


def message(data, id_=None):
    """A protocol v1 `message` request as text."""
    body = {"type": "message", "data": data}
    if id_ is not None:
        body["id"] = id_
    return json.dumps(body, separators=(",", ":"))


def _proc_net_endpoint(text):
    address, port = text.split(":")
    return socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)


def tcp_queues(port):
    """{(local address, local port, remote address, remote port): (send queue, receive queue)}
    of the IPv4 TCP sockets on this host with `port` at one end (/proc/net/tcp): the bytes the
    kernel holds for each."""
    port_hex, queues = f":{port:04X} ", {}
    with open("/proc/net/tcp") as f:
        for line in f:
            if port_hex not in line:
                continue
            fields = line.split()
            local, remote = _proc_net_endpoint(fields[1]), _proc_net_endpoint(fields[2])
            tx, rx = (int(v, 16) for v in fields[4].split(":"))
            queues[local + remote] = (tx, rx)
    return queues


class TcpQueues:
    """tcp_queues(port) shared by many connections: `fresh(after)` reads /proc/net/tcp again
    only when the last reading is older than `after`."""

    def __init__(self, port):
        self.port, self.queues, self.taken = port, {}, 0.0
        self.lock = asyncio.Lock()

    async def fresh(self, after):
        async with self.lock:
            if self.taken <= after:
                self.taken = asyncio.get_running_loop().time()
                self.queues = tcp_queues(self.port)
        return self.queues


def kernel_held(writer, queues):
    """Bytes the kernel holds between the server and this client: unacknowledged in the
    server's send queue plus unread in our receive queue."""
    ours = writer.get_extra_info("sockname") + writer.get_extra_info("peername")
    theirs = ours[2:] + ours[:2]
    return queues.get(theirs, (0, 0))[0] + queues.get(ours, (0, 0))[1]


def tcp_state(writer):
    """The kernel's TCP state of a connection (1 established, 8 close-wait: the server closed),
    read without reading the socket."""
    sock = writer.get_extra_info("socket")
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


class Held:
    """A connection that sent (part of) a request and waits for whatever the server does: an
    HTTP answer (`outcome` = its status) or closing it (`outcome` = "closed"); None while the
    server holds it open."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.outcome = None
        self.watcher = asyncio.create_task(self._watch())

    async def _watch(self):
        try:
            response = await read_response(self.reader, 3600)
        except (TimeoutError, ValueError, IndexError):
            response = None
        self.outcome = "closed" if response is None else response.status

    @property
    def refused(self):
        """The server answered or closed it (an answer to a partial head is a refusal)."""
        return self.outcome is not None

    def drop(self):
        self.watcher.cancel()
        if not self.writer.transport.is_closing():
            self.writer.transport.abort()


async def hold(port, src, data, connect_timeout=10):
    """Opens a connection from `src`, sends `data` and keeps it open: a Held, or None when the
    connection could not be made."""
    try:
        reader, writer = await asyncio.wait_for(open_tcp(port, src), connect_timeout)
    except (OSError, TimeoutError):
        return None
    writer.write(data)
    return Held(reader, writer)


async def hold_many(port, sources, data, per_source):
    """`per_source` held connections from each address in `sources`, opened concurrently;
    connections that failed to open are left out (the count tells)."""
    opened = await asyncio.gather(*(hold(port, src, data) for src in sources for _ in range(per_source)))
    return [h for h in opened if h is not None]


def drop_all(held):
    for h in held:
        h.drop()
