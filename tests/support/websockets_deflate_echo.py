"""A permessage-deflate echo check with python's `websockets` client, for
tests/deflate_clients.rs.

Usage: python websockets_deflate_echo.py ws://HOST:PORT/PATH

Connects with the client's default settings (compression="deflate": it offers
permessage-deflate with its own window bits), sends text of 10 B, 200 B and 100 KiB and
a 64 KiB binary message one after the other, checks that each comes back identical,
and prints `extensions=<the server's Sec-WebSocket-Extensions answer>`,
`echoed=<count>` and `compressed=<messages received with RSV1 set>`. Exits 0 when every
echo matched, non-zero otherwise.
"""

import sys

from websockets.extensions import permessage_deflate
from websockets.sync.client import connect

compressed = 0
original_decode = permessage_deflate.PerMessageDeflate.decode


def counting_decode(self, frame, *args, **kwargs):
    """Counts the frames that arrive compressed, then decodes as usual."""
    global compressed
    if frame.rsv1:
        compressed += 1
    return original_decode(self, frame, *args, **kwargs)


permessage_deflate.PerMessageDeflate.decode = counting_decode


def text(n: int) -> str:
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    return (words * (n // len(words) + 1))[:n]


def main() -> int:
    messages = [
        "0123456789",
        text(200),
        text(100 * 1024),
        bytes((i * 7) % 127 for i in range(64 * 1024)),
    ]
    with connect(sys.argv[1], max_size=None, open_timeout=10) as ws:
        print("extensions=" + ws.response.headers.get("Sec-WebSocket-Extensions", ""))
        for n, message in enumerate(messages):
            ws.send(message)
            echo = ws.recv(timeout=10)
            if echo != message:
                print(f"echo {n} differs: {type(echo).__name__}, {len(echo)}", file=sys.stderr)
                return 1
        print(f"echoed={len(messages)}")
        print(f"compressed={compressed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
