"""One HTTP GET the way the NLB's TLS listener forwards it: from SOURCE (a local address the
connection is bound to), prefixed with a proxy protocol v2 header that names CLIENT as the
peer (PROXY command), or one without addresses as the NLB's health checks send (LOCAL), or
no header at all. Prints the response's status code (000 when the connection failed).

    python3 ppv2_get.py --source 127.0.0.1 --port 8080 --path /health --client 203.0.113.7
"""

import argparse
import socket
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
VERSION_2 = 0x20
PROXY, LOCAL = 0x01, 0x00
TCP_OVER_IPV4 = 0x11


def header(client: str | None, local: bool) -> bytes:
    if local:
        return SIGNATURE + bytes([VERSION_2 | LOCAL, 0x00]) + struct.pack("!H", 0)
    if client is None:
        return b""
    addresses = socket.inet_aton(client) + socket.inet_aton("10.40.0.11") + struct.pack("!HH", 51234, 80)
    return SIGNATURE + bytes([VERSION_2 | PROXY, TCP_OVER_IPV4]) + struct.pack("!H", len(addresses)) + addresses


def get(source: str, port: int, path: str, prefix: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as conn:
            conn.sendall(prefix + f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    except OSError:
        return "000"
    status = answer.split(b"\r\n", 1)[0].split()
    return status[1].decode() if len(status) > 1 else "000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--source", required=True, help="local address to connect from")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--client", help="the client address the header claims (PROXY)")
    kind.add_argument("--local", action="store_true", help="a LOCAL header, as NLB health checks send")
    args = parser.parse_args()
    print(get(args.source, args.port, args.path, header(args.client, args.local)))


if __name__ == "__main__":
    main()
