#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write a hand-made region map (regionmap(5), stream form) to standard output.

    mkmap.py [KEY=VALUE ...] [OFFSET+LENGTH ...]

The records are written as given, valid or not; the trailer always carries their real count
and total and a correct CRC-32C, so a reader can reject such a map only for what the test
means it to. Keys (defaults in brackets):

  size=N      export size [16777216]
  gran=N      granularity [65536]
  flags=N     header flags [0]; 1 is FULL
  ctx=TEXT    context, written as given [qemu:dirty-bitmap:b0]
  count=N     header count [2^64-1, unknown]
  reserved=B  value of the first reserved header byte [0]
  pad=B       value of the first padding byte after the context [0]
  trailing=N  N bytes (0x00) after the trailer [0]

Built independently of libregionmap and of the example providers; the test checks the maps
it makes with tests/helpers/rmap-dump (libregionmap) as well.
"""
import struct
import sys

UNKNOWN = (1 << 64) - 1


def crc32c(data):
    reg = 0xFFFFFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            reg = (reg >> 1) ^ 0x82F63B78 if reg & 1 else reg >> 1
    return reg ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def main():
    opt = {"size": 16 << 20, "gran": 65536, "flags": 0, "ctx": "qemu:dirty-bitmap:b0",
           "count": UNKNOWN, "reserved": 0, "pad": 0, "trailing": 0}
    records = []
    for arg in sys.argv[1:]:
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key not in opt:
                sys.exit("mkmap.py: unknown key %s" % key)
            opt[key] = value if key == "ctx" else int(value, 0)
        else:
            off, length = arg.split("+")
            records.append((int(off, 0), int(length, 0)))
    ctx = opt["ctx"].encode("latin-1")
    body = ctx + bytes(-len(ctx) % 16)
    if opt["pad"]:
        if len(body) == len(ctx):
            sys.exit("mkmap.py: pad= needs a context whose length is not a multiple of 16")
        body = ctx + bytes([opt["pad"]]) + body[len(ctx) + 1:]
    fixed = b"RGNMAP\r\n" + struct.pack("<IIQQ", 1, opt["flags"], opt["size"], opt["gran"])
    tail = struct.pack("<H", len(ctx)) + bytes([opt["reserved"]]) + bytes(5) + body
    recs = b"".join(struct.pack("<QQ", off, length) for off, length in records)
    # The checksum covers the header with the count unknown, whatever the header carries.
    crc = crc32c(fixed + struct.pack("<Q", UNKNOWN) + tail + recs)
    total = sum(length for _, length in records) & UNKNOWN
    trailer = b"\xff" * 8 + b"RGNMAPTR" + struct.pack("<QQII", len(records), total, crc, 0)
    sys.stdout.buffer.write(fixed + struct.pack("<Q", opt["count"]) + tail + recs + trailer +
                            bytes(opt["trailing"]))


if __name__ == "__main__":
    main()
