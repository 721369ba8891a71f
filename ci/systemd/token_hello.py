"""Opens /ws/chat/ID with an HS256 token for USER in the `Authorization` header and prints the
server's `connection_established` as JSON; exit 0 when it names USER, 1 otherwise.

Usage: token_hello.py --url ws://127.0.0.1:3001/ws/chat/ID --secret-file FILE --user USER
The token is signed here with the standard library (HMAC-SHA256), valid for 60 s.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time

from websockets.asyncio.client import connect


def part(value):
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(secret, user):
    signed = part({"alg": "HS256", "typ": "JWT"}) + "." + part({"sub": user, "exp": int(time.time()) + 60})
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return signed + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


async def hello(url, secret, user):
    headers = {"Authorization": f"Bearer {token(secret, user)}"}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--user", required=True)
    args = parser.parse_args()
    with open(args.secret_file, "rb") as file:
        # The server drops trailing whitespace from the secret file: so does its client.
        secret = file.read().rstrip()
    message = asyncio.run(hello(args.url, secret, args.user))
    print(json.dumps(message))
    return 0 if message.get("type") == "connection_established" and message.get("user") == args.user else 1


if __name__ == "__main__":
    sys.exit(main())
