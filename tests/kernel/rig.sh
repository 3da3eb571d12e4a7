#!/bin/bash
# The rig itself works: a real kernel with the nbd driver, udev processing events, an export
# attached with the system's nbd-client and read back byte-exact, the kernel log captured.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "rig" "runs only inside the test VM"; exit 0; }

expect_eq "guest runs the packaged kernel" "$("$TOP/tests/vm/kernel-version")" "$(uname -r)"
check "nbd module loaded" grep -q '^nbd ' /proc/modules
check "fuse module loaded" grep -q '^fuse ' /proc/modules
check "/dev/nbd0 exists" test -b /dev/nbd0
check "nbd generic netlink family registered" genl ctrl get name nbd
check "systemd-udevd running" pgrep -x systemd-udevd
check "udev database has nbd0" udevadm info --query=property --name=/dev/nbd0

. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
tmp=$(mktmpdir)
# The qemu-nbd fixture: a 64 MiB qcow2 with random contents (a mis-offset read cannot match).
head -c $((64 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"
img_bitmap_add "$tmp/disk.qcow2" b0
sock=$tmp/nbd.sock
qnbd_start "$tmp/disk.qcow2" "$sock" disk b0 || fail "qemu-nbd fixture starts"

# udev must see and process the device's change event when it connects.
udevadm monitor --udev --subsystem-match=block > "$tmp/udev.log" 2>&1 &
mon=$!
defer "kill $mon"
udevadm settle
echo "rig probe line" > /dev/kmsg
check "nbd-client attaches the export to /dev/nbd0" nbd-client -N disk -unix "$sock" /dev/nbd0 -b 4096
defer "nbd-client -d /dev/nbd0"
udevadm settle
expect_eq "/dev/nbd0 has the export's size" $((64 << 20)) "$(blockdev --getsize64 /dev/nbd0)"
if cmp <(dd if=/dev/nbd0 bs=4M iflag=direct status=none) "$tmp/disk.raw"; then
	pass "O_DIRECT read of /dev/nbd0 is byte-exact"
else
	fail "O_DIRECT read of /dev/nbd0 is byte-exact" "data differs from the image"
fi
check "nbd-client detaches /dev/nbd0" nbd-client -d /dev/nbd0
udevadm settle
kill "$mon"; wait "$mon" 2>/dev/null
check "udev processed a change event for nbd0" grep -q 'change.*/block/nbd0 (block)' "$tmp/udev.log"
check "kernel log captured for this test" sh -c "dmesg | grep -q 'rig probe line'"
kernel_log | grep -q 'rig probe line' && pass "kernel_log sees this test's messages" ||
	fail "kernel_log sees this test's messages" "marker missing"
expect_eq "no I/O errors in the kernel log" 0 "$(count_io_errors)"
