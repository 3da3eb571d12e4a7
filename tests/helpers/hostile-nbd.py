#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A deliberately broken NBD server for `nbdattach map` error tests.

    hostile-nbd.py SOCKET MODE

Speaks the fixed newstyle handshake (NBD protocol doc, "Fixed newstyle negotiation"):
OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT (offers only qemu:dirty-bitmap:x), OPT_GO; then
answers NBD_CMD_BLOCK_STATUS with structured replies that are wrong in the way MODE says:

  good            correct replies (dirty 64 KiB, clean 64 KiB, repeated): the control case
  no-progress     a reply with no block-status chunk at all (NBD_REPLY_TYPE_NONE, DONE)
  zero-length     an extent of length 0
  overflow        extents whose 32-bit lengths sum past 2^32 (catches 32-bit arithmetic)
  past-request    8 GiB export; the first reply's first extent (not its final one, which may)
                  goes 64 KiB beyond the request
  past-export-end the extents run 1 MiB beyond the 1 MiB export
  two-chunks      each reply has two block-status chunks for the context, the second one
                  continuing where the first ended (the spec allows exactly one per context)
  final-past-request
                  legal: 8 GiB export, dirty 0+64K, B-1M+2M (B = 0xFFF00000, the client's
                  request size) and the last 64K; the final extent of each reply runs on up to
                  1 MiB beyond the request while the status stays the same, as the NBD spec
                  allows ("the *length* of the final extent MAY result in a sum larger than the
                  original requested length")
  short           legal: the final-past-request export and dirty regions, exact extents, but
                  every reply stops 512 KiB short of the client's request size, the first one
                  inside a dirty region (a server may answer with fewer extents than asked, as
                  QEMU does past 131072): the client goes on from there and merges the region
  dies            like good on an 8 GiB export, but the connection is closed on the second
                  request: the client has a prefix of the map and the server is gone
  wrong-context   the reply names a context id that was never negotiated
  misaligned      a dirty extent of 4 KiB (granularity 64 KiB)
  slow            like good, on a 1 TiB export, 50 ms per reply: a producer to kill midway
  empty           like good, on an export of size 0
  stall           completes the handshake, then never answers a request, nor closes on
                  NBD_CMD_DISC
  silent          accepts each connection and never says a word (no greeting)
  hangup          (for attach) closes each connection right after the handshake: the device's
                  connection dies while it is being attached, and the server is still there

Serves each connection in a thread of its own until killed. Reads the socket path from argv.
"""
import socket
import struct
import sys
import threading
import time

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SREPLY_MAGIC = 0x668E33EF
OPT_GO, OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT, OPT_ABORT = 7, 8, 10, 2
REP_ACK, REP_INFO, REP_META_CONTEXT, REP_ERR_UNSUP = 1, 3, 4, 0x80000001
CMD_READ, CMD_DISC, CMD_BLOCK_STATUS = 0, 2, 7
CONTEXT = b"qemu:dirty-bitmap:x"
CONTEXT_ID = 7

MODE = sys.argv[2]
SIZE = {"past-request": 8 << 30, "final-past-request": 8 << 30, "dies": 8 << 30,
        "short": 8 << 30, "slow": 1 << 40, "empty": 0}.get(MODE, 1 << 20)
B = 0xFFF00000
DIRTY = [(0, 65536), (B - (1 << 20), B + (1 << 20)), (SIZE - 65536, SIZE)]  # [start, end)


def recv_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b


def opt_reply(c, opt, rtype, data=b""):
    c.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, rtype, len(data)) + data)


def meta_context(c, opt, data):
    (nlen,) = struct.unpack_from(">I", data, 0)
    pos = 4 + nlen
    (nq,) = struct.unpack_from(">I", data, pos)
    pos += 4
    for _ in range(nq):
        (qlen,) = struct.unpack_from(">I", data, pos)
        q = data[pos + 4:pos + 4 + qlen]
        pos += 4 + qlen
        if q == CONTEXT:
            opt_reply(c, opt, REP_META_CONTEXT, struct.pack(">I", CONTEXT_ID) + CONTEXT)
    opt_reply(c, opt, REP_ACK)


def handshake(c):
    c.sendall(NBDMAGIC + struct.pack(">QH", IHAVEOPT, 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
    recv_exact(c, 4)
    while True:
        magic, opt, length = struct.unpack(">QII", recv_exact(c, 16))
        data = recv_exact(c, length)
        if magic != IHAVEOPT or opt == OPT_ABORT:
            raise EOFError
        if opt == OPT_STRUCTURED_REPLY:
            opt_reply(c, opt, REP_ACK)
        elif opt == OPT_SET_META_CONTEXT:
            meta_context(c, opt, data)
        elif opt == OPT_GO:
            # NBD_INFO_EXPORT: size, flags HAS_FLAGS|READ_ONLY
            opt_reply(c, opt, REP_INFO, struct.pack(">HQH", 0, SIZE, 1 | 2))
            opt_reply(c, opt, REP_ACK)
            return
        else:
            opt_reply(c, opt, REP_ERR_UNSUP)


def run_at(pos):
    """(flags, end) of the run of one status that contains pos, in DIRTY."""
    for s, e in DIRTY:
        if s <= pos < e:
            return 1, e
        if pos < s:
            return 0, s
    return 0, SIZE


def truthful_extents(offset, length, extra):
    """Extents of DIRTY for the request; the final one runs on up to extra bytes past it."""
    out, pos, end = [], offset, offset + length
    while pos < end:
        flags, run_end = run_at(pos)
        out.append((min(run_end, end) - pos, flags))
        pos = min(run_end, end)
    flags, run_end = run_at(end - 1)
    n, f = out[-1]
    out[-1] = (n + min(run_end, end + extra, SIZE) - end, f)
    return out


def extents(offset, length):
    """(context id, [(len, flags)...]) for one request, per MODE."""
    if MODE == "final-past-request":
        return CONTEXT_ID, truthful_extents(offset, length, 1 << 20)
    if MODE == "short":
        return CONTEXT_ID, truthful_extents(offset, min(length, B - (512 << 10)), 0)
    if MODE == "zero-length":
        return CONTEXT_ID, [(65536, 1), (0, 0), (65536, 1)]
    if MODE == "overflow":
        return CONTEXT_ID, [(0x80000000, 1)] * 3
    if MODE == "past-request":
        return CONTEXT_ID, [(length + 65536, 1), (65536, 0)]
    if MODE == "past-export-end":
        return CONTEXT_ID, [(length, 0), (1 << 20, 1)]
    if MODE == "misaligned":
        return CONTEXT_ID, [(4096, 1), (length - 4096, 0)]
    ctx = CONTEXT_ID + 1 if MODE == "wrong-context" else CONTEXT_ID
    out, pos = [], 0
    while pos < length:
        n = min(65536, length - pos)
        out.append((n, 1 if (offset + pos) // 65536 % 2 == 0 else 0))
        pos += n
    return ctx, out


def status_chunk(c, handle, ctx, ext, done):
    payload = struct.pack(">I", ctx) + b"".join(struct.pack(">II", n, f) for n, f in ext)
    # flags: NBD_REPLY_FLAG_DONE (1) on the last chunk; type 5: NBD_REPLY_TYPE_BLOCK_STATUS
    c.sendall(struct.pack(">IHHQI", SREPLY_MAGIC, 1 if done else 0, 5, handle, len(payload))
              + payload)


def block_status(c, handle, offset, length):
    if MODE == "no-progress":
        c.sendall(struct.pack(">IHHQI", SREPLY_MAGIC, 1, 0, handle, 0))
        return
    if MODE == "slow":
        time.sleep(0.05)
    ctx, ext = extents(offset, length)
    if MODE == "two-chunks":
        half = len(ext) // 2
        status_chunk(c, handle, ctx, ext[:half], False)
        status_chunk(c, handle, ctx, ext[half:], True)
        return
    status_chunk(c, handle, ctx, ext, True)


def serve(c):
    if MODE == "silent":
        time.sleep(3600)
        return
    handshake(c)
    if MODE == "hangup":
        return
    requests = 0
    while True:
        magic, _flags, cmd, handle, offset, length = struct.unpack(">IHHQQI", recv_exact(c, 28))
        if MODE == "stall":
            time.sleep(3600)
        if magic != REQ_MAGIC or cmd == CMD_DISC:
            return
        if cmd == CMD_BLOCK_STATUS:
            requests += 1
            if MODE == "dies" and requests == 2:
                return
            block_status(c, handle, offset, length)
        else:  # NBD_REPLY_TYPE_ERROR EINVAL for anything else
            c.sendall(struct.pack(">IHHQIIH", SREPLY_MAGIC, 1, 32769, handle, 6, 22, 0))


def main():
    s = socket.socket(socket.AF_UNIX)
    s.bind(sys.argv[1])
    s.listen(4)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def handle(c):
    try:
        serve(c)
    except (EOFError, OSError):
        pass
    finally:
        c.close()


if __name__ == "__main__":
    main()
