#!/bin/bash
# The demo, run inside the VM: export a disk image over NBD, attach it to a kernel block
# device, read it back with O_DIRECT and verify it, detach.
. "$(dirname "$0")/../lib.sh"
set -e
tmp=$(mktmpdir)
echo "== a 256 MiB guest disk with random contents, exported by qemu-nbd on a unix socket"
head -c $((256 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-nbd --fork --persistent --pid-file="$tmp/pid" --socket="$tmp/sock" --format=raw \
	--export-name=drive0 --shared=4 "$tmp/disk.raw"
defer "kill \$(cat '$tmp/pid')"
echo "== attach nbd+unix:///drive0?socket=$tmp/sock"
nbd-client -N drive0 -unix "$tmp/sock" /dev/nbd0 -b 4096 >/dev/null
defer "nbd-client -d /dev/nbd0"
udevadm settle
echo "   device /dev/nbd0, $(blockdev --getsize64 /dev/nbd0) bytes"
echo "== read the whole device with O_DIRECT and compare with the image"
s=$(date +%s.%N)
sum_dev=$(dd if=/dev/nbd0 bs=4M iflag=direct status=none | sha256sum | cut -d' ' -f1)
e=$(date +%s.%N)
sum_img=$(sha256sum < "$tmp/disk.raw" | cut -d' ' -f1)
echo "   read 256 MiB in $(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.2f", b - a }') s (emulated CPU)"
echo "   device sha256 $sum_dev"
echo "   image  sha256 $sum_img"
[ "$sum_dev" = "$sum_img" ]
echo "== detach"
nbd-client -d /dev/nbd0 >/dev/null
udevadm settle
[ ! -e /sys/block/nbd0/pid ]
echo "   /dev/nbd0 free again; kernel I/O errors: $(count_io_errors)"
pass "demo verified"
