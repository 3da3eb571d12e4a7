#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A minimal backup provider for `nbdattach run`, in Python (standard library only).

    nbdattach run --volume name=drive0,bitmap=b0,uri=... -- provider.py OUTDIR

Same behaviour as examples/provider.c: for each volume in NBDATTACH_RUN it reads and verifies
the region map (regionmap(5): header, records, trailer with count, total and CRC-32C), reads
those regions from the device with O_DIRECT, writes them at their offsets into OUTDIR/NAME.img,
lists them in OUTDIR/NAME.map, and acknowledges each one on the acknowledgement descriptor.
"""
import json
import mmap
import os
import struct
import sys

MAGIC = b"RGNMAP\r\n"
TRAILER = b"\xff" * 8 + b"RGNMAPTR"
CHUNK = 4 << 20


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(reg, data):
    for b in data:
        reg = _TABLE[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


class MapError(Exception):
    pass


def read_exact(fd, n):
    out = b""
    while len(out) < n:
        b = os.read(fd, n - len(out))
        if not b:
            raise MapError("map truncated before its trailer")
        out += b
    return out


def regions(fd):
    """Yields (offset, length) and raises MapError unless the trailer verifies."""
    head = read_exact(fd, 48)
    if head[:8] != MAGIC:
        raise MapError("bad magic")
    version, flags, size, gran, _count, ctxlen = struct.unpack_from("<IIQQQH", head, 8)
    if version != 1 or flags & ~1 or size == 0 or ctxlen > 1024:
        raise MapError("bad header")
    ctx = read_exact(fd, (ctxlen + 15) & ~15)
    # The checksum covers the header as streamed, with the count unknown.
    reg = crc32c(0xFFFFFFFF, head[:32] + b"\xff" * 8 + head[40:] + ctx)
    end = count = total = 0
    while True:
        rec = read_exact(fd, 16)
        if rec[:8] == TRAILER[:8]:
            tcount, ttotal, tcrc, zero = struct.unpack("<QQII", read_exact(fd, 24))
            if rec[8:] != TRAILER[8:] or tcount != count or ttotal != total or \
                    tcrc != reg ^ 0xFFFFFFFF or zero:
                raise MapError("bad trailer")
            return
        off, length = struct.unpack("<QQ", rec)
        if length == 0 or off + length > size or (count and off <= end):
            raise MapError("bad record %d+%d" % (off, length))
        reg = crc32c(reg, rec)
        end, count, total = off + length, count + 1, total + length
        yield off, length


def backup(vol, outdir, ack):
    name = vol["name"]
    dev = os.open(vol["device"], os.O_RDONLY | os.O_DIRECT)
    img = os.open(os.path.join(outdir, name + ".img"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(img, vol["size"])
    buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs
    n = nbytes = 0
    with open(os.path.join(outdir, name + ".map"), "w") as mapf:
        for off, length in regions(vol["map_fd"]):
            done = 0
            while done < length:
                piece = min(CHUNK, length - done)
                view = memoryview(buf)[:piece]
                if os.preadv(dev, [view], off + done) != piece:
                    raise OSError("short read at %d" % (off + done))
                os.pwrite(img, view, off + done)
                done += piece
            if not os.environ.get("PROVIDER_NO_ACK"):
                os.write(ack, ("%s %d %d\n" % (name, off, length)).encode())
            mapf.write("%d %d\n" % (off, length))
            n, nbytes = n + 1, nbytes + length
        mapf.write("end %d %d\n" % (n, nbytes))
    os.fsync(img)
    os.close(img)
    os.close(dev)
    print("provider.py: %s: %d regions, %d bytes read from %s" % (name, n, nbytes, vol["device"]))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: provider.py OUTDIR (run by nbdattach run)")
    run = json.loads(os.environ["NBDATTACH_RUN"])
    try:
        for vol in run["volumes"]:
            backup(vol, sys.argv[1], run["ack_fd"])
    except (MapError, OSError) as e:
        sys.exit("provider.py: %s" % e)


if __name__ == "__main__":
    main()
