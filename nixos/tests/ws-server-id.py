"""Print the serverId a concurrent-socket instance announces.

Opens a WebSocket to the URL given, reads the first message, which protocol
v1 makes `connection_established`, and prints its serverId (the colour of the
instance that accepted the connection). Exits non-zero with a message for any
other first message, a refused upgrade or a timeout. Used by the NixOS VM
test (nixos/tests/blue-green.nix) and by ci/suites/50-nix.sh.
"""
import json
import sys

from websockets.sync.client import connect


def server_id(url):
    with connect(url, open_timeout=5, close_timeout=2) as ws:
        first = json.loads(ws.recv(timeout=5))
    if first.get("type") != "connection_established":
        sys.exit(f"first message is not connection_established: {first}")
    return first["serverId"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ws-server-id ws://HOST:PORT/ws/chat/ID")
    print(server_id(sys.argv[1]))
