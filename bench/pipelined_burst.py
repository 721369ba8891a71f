#!/usr/bin/env python3
"""Sends 20 chat messages in one TCP write to a running server and counts the answers, so
that `strace -f -e trace=sendto -p PID` can show how many writes the server needed for them
(docs/benchmarks.md, "Where the server's CPU goes").

    bench/pipelined_burst.py 127.0.0.1 9321
"""

import base64
import os
import socket
import sys
import time


def masked_text_frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/chat/pipelined-burst HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    time.sleep(0.5)
    sock.recv(65536)  # the 101 and connection_established
    burst = b"".join(masked_text_frame('{"type":"message","id":"%d","data":"x"}' % i) for i in range(20))
    sock.sendall(burst)
    time.sleep(0.5)
    answers = sock.recv(65536)
    print(f"{answers.count(b'message_response')} answers, {len(answers)} bytes")


if __name__ == "__main__":
    main()
