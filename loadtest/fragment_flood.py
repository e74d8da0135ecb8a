#!/usr/bin/env python3
"""The fragment flood of issue 11: N WebSockets each send FRAGMENTS fragments of
FRAGMENT_MIB MiB of one binary message and never the last one. Prints the server's
VmRSS (from /proc/PID/status) while it runs, its peak, and how each client ended.

    loadtest/fragment_flood.py --pid PID [--addr 127.0.0.1:8080] [--clients 20]
                               [--fragments 7] [--fragment-mib 8] [--seconds 40]

Every client thread stops after its last fragment, when the server closes it, or at
--seconds; the script then waits 2 s more, reports, and closes its sockets.
"""

import argparse
import base64
import os
import socket
import struct
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def upgrade(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError("closed during the handshake")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock


def header(opcode, length):
    # Not final, masked with a zero key (the payload goes out as it is).
    return bytes([opcode]) + bytes([0x80 | 127]) + struct.pack(">Q", length) + b"\0\0\0\0"


def read_close(sock, result, index):
    """Records the close code and reason the server sends, or how the socket ended."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 2 and data[0] & 0x0F == 0x8:
                length = data[1] & 0x7F
                if len(data) >= 2 + length:
                    code = struct.unpack(">H", data[2:4])[0] if length >= 2 else None
                    result[index] = f"close {code} {data[4:2 + length].decode(errors='replace')}"
                    return
    except socket.timeout:
        result[index] = "open, no close frame, at the deadline"
        return
    except OSError as error:
        result[index] = f"socket error before a close frame: {error}"
        return
    result[index] = "EOF without a close frame"


def client(addr, payload, fragments, index, result, deadline):
    try:
        sock = upgrade(addr)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        result[index] = f"no connection: {error}"
        return
    sock.settimeout(max(1.0, deadline - time.time()))
    reader = threading.Thread(target=read_close, args=(sock, result, index), daemon=True)
    reader.start()
    result[index] = "still open"
    try:
        for i in range(fragments):
            if time.time() > deadline:
                break
            sock.sendall(header(0x02 if i == 0 else 0x00, len(payload)))
            sock.sendall(payload)
    except OSError:
        pass  # the server closed the connection
    reader.join(max(0.0, deadline - time.time()))
    result.setdefault("sockets", []).append(sock)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--addr", default="127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--fragments", type=int, default=7)
    parser.add_argument("--fragment-mib", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()

    payload = b"\x5a" * (args.fragment_mib * 1024 * 1024)
    start_rss = rss_kib(args.pid)
    deadline = time.time() + args.seconds
    result = {}
    threads = [
        threading.Thread(
            target=client,
            args=(args.addr, payload, args.fragments, i, result, deadline),
            daemon=True,
        )
        for i in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    peak = start_rss
    started = time.time()
    shown = 0.0
    while any(thread.is_alive() for thread in threads) and time.time() < deadline:
        rss = rss_kib(args.pid)
        peak = max(peak, rss)
        if time.time() - started >= shown:
            print(f"{time.time() - started:6.1f} s  RSS {rss / 1024:8.1f} MiB", flush=True)
            shown += 1.0
        time.sleep(0.05)
    time.sleep(2.0)
    end_rss = rss_kib(args.pid)
    peak = max(peak, end_rss)
    print(f"RSS before {start_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
          f"with the clients still connected {end_rss / 1024:.1f} MiB")
    ends = {}
    for i in range(args.clients):
        ends[result.get(i, "?")] = ends.get(result.get(i, "?"), 0) + 1
    for end, count in sorted(ends.items()):
        print(f"{count:4d} × {end}")
    for sock in result.get("sockets", []):
        sock.close()
    time.sleep(2.0)
    print(f"RSS 2 s after the clients left {rss_kib(args.pid) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
