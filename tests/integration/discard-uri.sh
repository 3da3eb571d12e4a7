#!/bin/bash
# nbdattach discard URI against qemu-nbd (no device needed): an aligned range is trimmed on the
# image, and only it.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

for t in qemu-img qemu-io qemu-nbd nbdinfo python3; do
	command -v $t >/dev/null || { skip "discard-uri" "$t not installed"; exit 0; }
done
dir=$(mktmpdir)
img=$dir/d.qcow2 sock=$dir/d.sock
uri="nbd+unix:///?socket=$sock"
img_create "$img" $((8 << 20))
img_write "$img" 0 $((4 << 20))
rm -f "$sock"
defer "qnbd_stop '$sock'"
qemu-nbd --fork --persistent --format=qcow2 --discard=unmap --pid-file="$sock.pid" \
	--socket="$sock" "$img" || { fail "discard-uri" "qemu-nbd did not start"; exit 1; }

# allocated OFF LEN: "yes" when the server says all of [OFF, OFF+LEN) holds data, "no" when
# none does (base:allocation: the image as qemu-nbd sees it, its metadata not yet flushed).
allocated() {
	nbdinfo --map --json "$uri" | python3 -c 'import json, sys
off, end = int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])
d = {not e["type"] & 1 for e in json.load(sys.stdin) if e["offset"] < end and e["offset"] + e["length"] > off}
print("yes" if d == {True} else "no" if d == {False} else "mixed")' "$1" "$2"
}

expect_eq "before: the range holds data" yes "$(allocated 65536 $((1 << 20)))"
expect_eq "an aligned range is discarded" "discarded 1048576 bytes in 1 requests; 0 bytes not in whole 65536-byte granules left" \
	"$("$NBDATTACH" discard "$uri" 65536 $((1 << 20)) 2>&1)"
expect_eq "after: the range is unallocated on the image" no "$(allocated 65536 $((1 << 20)))"
expect_eq "after: the data around it is still there" "yes yes" \
	"$(allocated 0 65536) $(allocated $((65536 + (1 << 20))) 65536)"
