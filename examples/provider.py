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
FULL = 1
UNKNOWN = (1 << 64) - 1
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


# Python retries os.read, os.write and os.pwrite itself when a signal interrupts them (PEP 475).
def read_exact(fd, n):
    """A pipe returns what it has so far: read until n bytes have come."""
    out = b""
    while len(out) < n:
        b = os.read(fd, n - len(out))
        if not b:
            raise MapError("map truncated before its trailer")
        out += b
    return out


def write_all(fd, data, off=None):
    """Writes all of data at file offset off (at the fd's position if None), or raises: a write
    may store less than asked (a disk full half-way), and the rest must not be lost silently."""
    data = memoryview(data)
    while data:
        n = os.write(fd, data) if off is None else os.pwrite(fd, data, off)
        data = data[n:]
        if off is not None:
            off += n


def regions(fd):
    """Yields (offset, length) and raises MapError unless the whole map verifies, with the
    checks of libregionmap's reader (regionmap(5))."""
    head = read_exact(fd, 48)
    if head[:8] != MAGIC:
        raise MapError("bad magic")
    version, flags, size, gran, hcount, ctxlen = struct.unpack_from("<IIQQQH", head, 8)
    if version != 1 or flags & ~FULL or size == 0 or ctxlen > 1024 or any(head[42:48]):
        raise MapError("bad header")
    if gran == 0 or gran & (gran - 1) or gran > 1 << 30:
        raise MapError("bad granularity %d" % gran)
    ctx = read_exact(fd, (ctxlen + 15) & ~15)
    if any(c < 0x20 or c > 0x7E for c in ctx[:ctxlen]) or any(ctx[ctxlen:]):
        raise MapError("bad context")
    # The checksum covers the header as streamed, with the count unknown.
    reg = crc32c(0xFFFFFFFF, head[:32] + b"\xff" * 8 + head[40:] + ctx)
    end = count = total = 0
    while True:
        rec = read_exact(fd, 16)
        if rec[:8] == TRAILER[:8]:
            break
        off, length = struct.unpack("<QQ", rec)
        # Aligned, except that the last region may end at an unaligned export size; sorted,
        # neither overlapping nor touching; a FULL map is the one region {0, size}.
        if length == 0 or off + length > size or off % gran or \
                (length % gran and off + length != size) or (count and off <= end) or \
                (flags & FULL and (off, length) != (0, size)):
            raise MapError("bad record %d+%d" % (off, length))
        reg = crc32c(reg, rec)
        end, count, total = off + length, count + 1, total + length
        yield off, length
    tcount, ttotal, tcrc, zero = struct.unpack("<QQII", read_exact(fd, 24))
    if rec[8:] != TRAILER[8:] or tcount != count or ttotal != total or \
            tcrc != reg ^ 0xFFFFFFFF or zero or hcount not in (UNKNOWN, count):
        raise MapError("bad trailer")
    if flags & FULL and count != 1:
        raise MapError("FULL map without its one region")
    if os.read(fd, 1):
        raise MapError("data after the trailer")


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
                write_all(img, view, off + done)
                done += piece
            if not os.environ.get("PROVIDER_NO_ACK"):  # only now is the region all written
                write_all(ack, ("%s %d %d\n" % (name, off, length)).encode())
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
