#!/bin/bash
# The QEMU fixtures behave as the tests built on them assume.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"
tmp=$(mktmpdir)

# qemu-nbd: a persistent bitmap that records exactly the writes made after it was added.
img_create "$tmp/a.qcow2" 64M
img_write "$tmp/a.qcow2" 0 1M 0x01           # before the bitmap: clean
img_bitmap_add "$tmp/a.qcow2" b0
img_write "$tmp/a.qcow2" 1M 128K 0x22
img_write "$tmp/a.qcow2" 10M 64K 0x33
# Fixtures are called directly, never through check: a subshell would lose their cleanup.
if qnbd_start "$tmp/a.qcow2" "$tmp/a.sock" disk b0; then pass "qemu-nbd fixture starts"; else fail "qemu-nbd fixture starts"; fi
dirty=$(nbdinfo --map=qemu:dirty-bitmap:b0 "$(qnbd_uri "$tmp/a.sock")" | awk '$3 == 1 { printf "%s+%s ", $1, $2 }')
expect_eq "qemu-nbd bitmap shows exactly the writes" "1048576+131072 10485760+65536 " "$dirty"
expect_eq "qemu-nbd export has the image size" 67108864 "$(nbdinfo --size "$(qnbd_uri "$tmp/a.sock")")"
qnbd_stop "$tmp/a.sock"
check_fails "qemu-nbd stopped" test -e "$tmp/a.sock.pid"

# Fleecing: frozen map, copy-before-write into the fleece image, discard frees it.
mkdir "$tmp/f"
img_create "$tmp/f/source.qcow2" 64M
img_write "$tmp/f/source.qcow2" 0 64M 0x01
img_bitmap_add "$tmp/f/source.qcow2" b0
img_write "$tmp/f/source.qcow2" 1M 128K 0x22
if fleece_start "$tmp/f" 64M b0; then pass "fleecing fixture starts"; else fail "fleecing fixture starts"; fi
map() { nbdinfo --map="$FLEECE_CONTEXT" "$(fleece_uri)" | awk '$3 == 1 { printf "%s+%s ", $1, $2 }'; }
expect_eq "snapshot export offers the frozen bitmap" "1048576+131072 " "$(map)"
expect_eq "fleece image starts empty" 0 "$(fleece_allocated)"
check "guest writes through the cbw export" fleece_guest_write 1M 64K 0x44
check "guest writes outside the bitmap too" fleece_guest_write 30M 64K 0x44
expect_eq "frozen map ignores the guest's later writes" "1048576+131072 " "$(map)"
expect_eq "copy-before-write kept the overwritten dirty cluster" 65536 "$(fleece_allocated)"
check "snapshot still reads the old data" qemu-io -f raw -c "read -P 0x22 1M 128K" "$(fleece_uri)"
if qemu-io -f raw -c "read 0 64K" "$(fleece_uri)" 2>&1 | grep -q 'Invalid argument'; then
	pass "snapshot refuses reads outside the bitmap"
else
	fail "snapshot refuses reads outside the bitmap" "read of a clean area did not fail with EINVAL"
fi
check "aligned discard on the snapshot" qemu-io -f raw -c "discard 1M 64K" "$(fleece_uri)"
expect_eq "discard freed the fleece image" 0 "$(fleece_allocated)"
fleece_stop
if qemu-img info "$tmp/f/source.qcow2" | grep -q in-use; then
	fail "SIGTERM leaves the persistent bitmap consistent" "bitmap still in-use"
else
	pass "SIGTERM leaves the persistent bitmap consistent"
fi
check "source reopens after the fixture stopped" qemu-img check -q "$tmp/f/source.qcow2"
