#!/bin/bash
# The example providers' side of the protocol, on this machine: a region map produced by
# `nbdattach map` from a real qemu-nbd bitmap, a file standing in for the device, the
# NBDATTACH_RUN description and descriptors 3 (acks) and 4 (map) as `nbdattach run` passes
# them. Each provider must copy exactly the mapped regions, acknowledge each one, and fail on
# a map cut short before its trailer. (The VM test run-examples runs them on real devices.)
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

tmp=$(mktmpdir)
G=65536 SIZE=$((16 << 20))
head -c $SIZE /dev/urandom > "$tmp/seed.raw"
qemu-img convert -q -f raw -O qcow2 "$tmp/seed.raw" "$tmp/d.qcow2"
img_bitmap_add "$tmp/d.qcow2" b0
img_write "$tmp/d.qcow2" $((1 << 20)) $((2 * G)) 0x21
img_write "$tmp/d.qcow2" $((7 << 20)) 100 0x22
qemu-img convert -q -f qcow2 -O raw "$tmp/d.qcow2" "$tmp/device.raw"
qnbd_start "$tmp/d.qcow2" "$tmp/s.sock" disk b0 || fail "qemu-nbd starts"
"$NBDATTACH" map "$(qnbd_uri "$tmp/s.sock")" --bitmap b0 --output "$tmp/map.bin" || fail "map"
head -c -20 "$tmp/map.bin" > "$tmp/map.cut"

run_json() { # MAPTRANSPORT
	printf '{"version": 1, "tag": "t", "ack_fd": 3, "volumes": [{"name": "disk", "device": "%s", "link": "", "size": %d, "block_size": 4096, "granularity": 65536, "bitmap": "b0", "full": false, "map_fd": 4, "map_transport": "%s", "discard": true}]}' \
		"$tmp/device.raw" $SIZE "$1"
}

for p in "c:$BUILD/examples/provider" "python:$TOP/examples/provider.py" "perl:$TOP/examples/provider.pl"; do
	label=${p%%:*} prog=${p#*:}
	mkdir -p "$tmp/$label" "$tmp/$label-cut"
	NBDATTACH_RUN=$(run_json pipe) "$prog" "$tmp/$label" 3>"$tmp/$label.acks" 4<"$tmp/map.bin" > "$tmp/$label.out" 2>&1
	expect_eq "$label: exits 0 ($(tail -n 1 "$tmp/$label.out"))" 0 "$?"
	expect_eq "$label: lists the regions" "$((1 << 20)) $((2 * G))
$((7 << 20)) $G
end 2 $((3 * G))" "$(cat "$tmp/$label/disk.map")"
	expect_eq "$label: acknowledges each region" "disk $((1 << 20)) $((2 * G))
disk $((7 << 20)) $G" "$(cat "$tmp/$label.acks")"
	cmp -s <(dd if="$tmp/$label/disk.img" bs=$G skip=16 count=2 status=none; dd if="$tmp/$label/disk.img" bs=$G skip=112 count=1 status=none) \
		<(dd if="$tmp/device.raw" bs=$G skip=16 count=2 status=none; dd if="$tmp/device.raw" bs=$G skip=112 count=1 status=none) &&
		pass "$label: copies the regions' bytes" || fail "$label: copies the regions' bytes" "differ"
	NBDATTACH_RUN=$(run_json pipe) "$prog" "$tmp/$label-cut" 3>/dev/null 4<"$tmp/map.cut" > "$tmp/$label.cut.out" 2>&1
	rc=$?
	[ "$rc" != 0 ] && pass "$label: a map cut before its trailer fails ($(tail -n 1 "$tmp/$label.cut.out"))" ||
		fail "$label: a map cut before its trailer fails" "exit 0"
done
