#!/bin/bash
# The example providers (examples/provider.c, .py, .pl) each back up an incremental through
# `nbdattach run`, over both map transports: their image holds exactly the dirty regions, as
# they were at the snapshot, and every region they acknowledge is discarded.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "run-examples" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

tmp=$(mktmpdir)
G=65536 SIZE=$((32 << 20))
head -c $SIZE /dev/urandom > "$tmp/seed.raw"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=$G "$tmp/seed.raw" "$tmp/source.qcow2"
img_bitmap_add "$tmp/source.qcow2" b0 $G
img_write "$tmp/source.qcow2" $((2 << 20)) $((5 * G)) 0x31
img_write "$tmp/source.qcow2" $((9 << 20)) 12345 0x32
img_write "$tmp/source.qcow2" $((SIZE - 3 * G)) $((3 * G)) 0x33
qemu-img convert -q -f qcow2 -O raw "$tmp/source.qcow2" "$tmp/expect.raw"
cp "$tmp/source.qcow2" "$tmp/source.pristine"

for p in "c:$BUILD/examples/provider:memfd" "c-pipe:$BUILD/examples/provider:pipe" \
	"python:$TOP/examples/provider.py:memfd" "python-pipe:$TOP/examples/provider.py:pipe" \
	"perl:$TOP/examples/provider.pl:pipe" "perl-memfd:$TOP/examples/provider.pl:memfd"; do
	IFS=: read -r label prog transport <<< "$p"
	mkdir -p "$tmp/$label"
	cp "$tmp/source.pristine" "$tmp/source.qcow2"   # the guest's writes below land in the source
	fleece_start "$tmp" $SIZE b0 $G || { fail "$label: fleecing fixture starts"; continue; }
	# The guest overwrites dirty granules after the snapshot (copied to the fleecing image):
	# the backup must still hold the snapshot's bytes, and the discards must free the copies.
	fleece_guest_write $((2 << 20)) $((2 * G)) 0x77
	fleece_guest_write $((SIZE - G)) $G 0x78
	expect_eq "$label: the guest's writes filled the fleecing image" $((3 * G)) "$(fleece_allocated)"
	"$NBDATTACH" run --map "$transport" --volume "name=disk,bitmap=backup-b0,uri=$(fleece_uri)" -- \
		"$prog" "$tmp/$label" > "$tmp/$label.out" 2>&1
	rc=$?
	expect_eq "$label ($transport): run exits 0 ($(grep -v '^provider' "$tmp/$label.out" | head -n 2 | tr '\n' ' '))" 0 "$rc"
	expect_eq "$label: the map lists the three dirty regions" "end 3 $(( (5 + 1 + 3) * G ))" "$(tail -n 1 "$tmp/$label/disk.map")"
	bad=0
	while read -r off len; do
		[ "$off" = end ] && break
		cmp -s <(dd if="$tmp/$label/disk.img" bs=$G skip=$((off / G)) count=$((len / G)) status=none) \
			<(dd if="$tmp/expect.raw" bs=$G skip=$((off / G)) count=$((len / G)) status=none) || bad=1
	done < "$tmp/$label/disk.map"
	expect_eq "$label: every region holds the snapshot's bytes" 0 "$bad"
	grep -q "discarded $(( (5 + 1 + 3) * G )) bytes" "$tmp/$label.out" &&
		pass "$label: every acknowledged region was discarded" ||
		fail "$label: every acknowledged region was discarded" "$(grep discarded "$tmp/$label.out")"
	expect_eq "$label: the fleecing image is empty again" 0 "$(fleece_allocated)"
	fleece_stop
done
