"""Inflates permessage-deflate message payloads with python3's zlib (an inflater
independent of ringws), for tests/deflate.rs.

Usage: python3 inflate_window.py WBITS < messages

stdin: messages, each a 4-byte big-endian length and the compressed payload as sent
(without the 00 00 ff ff tail). They are inflated in order by one raw inflater with a
window of WBITS bits (context takeover). stdout: each plaintext, length-prefixed the
same way. Exits non-zero, with zlib's message on stderr, when a message does not
inflate.

The input is fed one byte per call: within one call zlib accepts match distances back
into the output of that same call whatever the window, so only small calls make it
check every distance against the WBITS window.
"""

import struct
import sys
import zlib


def main() -> int:
    wbits = int(sys.argv[1])
    data = sys.stdin.buffer.read()
    inflater = zlib.decompressobj(wbits=-wbits)
    out = sys.stdout.buffer
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        payload = data[pos + 4 : pos + 4 + length] + b"\x00\x00\xff\xff"
        pos += 4 + length
        plain = bytearray()
        try:
            for i in range(len(payload)):
                plain += inflater.decompress(payload[i : i + 1])
        except zlib.error as error:
            print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}, wbits -{wbits}: {error}", file=sys.stderr)
            return 1
        out.write(struct.pack(">I", len(plain)))
        out.write(plain)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
