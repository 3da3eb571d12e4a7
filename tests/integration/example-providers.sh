#!/bin/bash
# The example providers' side of the protocol, on this machine: a region map produced by
# `nbdattach map` from a real qemu-nbd bitmap, a file standing in for the device, the
# NBDATTACH_RUN description and descriptors 3 (acks) and 4 (map) as `nbdattach run` passes
# them. Each provider must copy exactly the mapped regions, acknowledge each one, and fail on
# a map cut short before its trailer; must accept and reject hand-made maps exactly as
# libregionmap does; must read a map that comes in pieces with signals interrupting its reads;
# and on a backup disk that fills up must fail without acknowledging what it could not write.
# (The VM test run-examples runs them on real devices.)
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

PROVIDERS=("c:$BUILD/examples/provider" "python:$TOP/examples/provider.py" "perl:$TOP/examples/provider.pl")
for p in "${PROVIDERS[@]}"; do
	label=${p%%:*} prog=${p#*:}
	mkdir -p "$tmp/$label" "$tmp/$label-cut"
	NBDATTACH_RUN=$(run_json pipe) "$prog" "$tmp/$label" 3>"$tmp/$label.acks" 4<"$tmp/map.bin" > "$tmp/$label.out" 2>&1
	rc=$?
	expect_eq "$label: exits 0 ($(tail -n 1 "$tmp/$label.out"))" 0 "$rc"
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

# provide PROG OUTDIR MAP ACKS OUT: PROG backs up volume "disk" from the map in file MAP, its
# acknowledgements appended to ACKS, its output in OUT.
provide() {
	mkdir -p "$2"
	NBDATTACH_RUN=$(run_json pipe) "$1" "$2" 3>>"$4" 4<"$3" > "$5" 2>&1
}

# Hand-made maps (tests/helpers/mkmap.py: every checksum, count and total right, so a reader
# can reject one only for the defect it was made with). libregionmap's verdict on each is
# checked with rmap-dump; every provider must then agree with it.
mkmap() { python3 "$TOP/tests/helpers/mkmap.py" "$@"; }
n_map=0

# good_map DESCRIPTION ACKS MKMAP-ARGS...: accepted, each region acknowledged (ACKS).
good_map() {
	local what=$1 want=$2 map=$tmp/hand$((++n_map)).bin p label rc
	shift 2
	mkmap "$@" > "$map"
	check "libregionmap accepts $what" "$BUILD/tests/helpers/rmap-dump" "$map"
	for p in "${PROVIDERS[@]}"; do
		label=${p%%:*}
		rm -f "$map.acks"
		provide "${p#*:}" "$map.$label" "$map" "$map.acks" "$map.out"
		rc=$?
		[ "$rc" = 0 ] && [ "$(cat "$map.acks")" = "$want" ] && pass "$label: accepts $what" ||
			fail "$label: accepts $what" "exit $rc, acks '$(cat "$map.acks")': $(tail -n 1 "$map.out")"
	done
}

# bad_map DESCRIPTION MKMAP-ARGS...: rejected, with an exit status not 0 and one line of error.
bad_map() {
	local what=$1 map=$tmp/hand$((++n_map)).bin p label rc
	shift
	mkmap "$@" > "$map"
	check_fails "libregionmap rejects $what" "$BUILD/tests/helpers/rmap-dump" "$map"
	for p in "${PROVIDERS[@]}"; do
		label=${p%%:*}
		provide "${p#*:}" "$map.$label" "$map" /dev/null "$map.out"
		rc=$?
		[ "$rc" != 0 ] && [ "$(wc -l < "$map.out")" = 1 ] && pass "$label: rejects $what ($(cat "$map.out"))" ||
			fail "$label: rejects $what" "exit $rc: $(tr '\n' ' ' < "$map.out" | cut -c 1-300)"
	done
}

good_map "a FULL map" "disk 0 $SIZE" flags=1 0+$SIZE
good_map "a map without regions" ""
good_map "a last region ending at an unaligned export size" "disk $((SIZE - G)) $((G - 4096))" \
	size=$((SIZE - 4096)) $((SIZE - G))+$((G - 4096))
good_map "a header with the real count (memfd form)" "disk $G $G
disk $((3 * G)) $G" count=2 $G+$G $((3 * G))+$G
good_map "a context of ' ' and '~'" "disk 0 $G" "ctx= ~" 0+$G
bad_map "a FULL map without its region" flags=1
bad_map "a FULL map whose region is not the whole export" flags=1 0+$G
bad_map "a byte after the trailer" trailing=1 $G+$G
bad_map "a record at a misaligned offset" $((G / 2))+$G
bad_map "a misaligned record length before the export's end" 0+$((G + 4096))
bad_map "a granularity that is not a power of two" gran=$((3 * G)) 0+$((3 * G))
bad_map "a granularity of 0" gran=0 0+$G
bad_map "a granularity above 2^30" gran=$((1 << 31)) 0+$SIZE
bad_map "a reserved header byte not zero" reserved=1 0+$G
bad_map "a padding byte not zero" ctx=base:allocation pad=1 0+$G
bad_map "a control character in the context" ctx=$'base:\x01' 0+$G
bad_map "DEL in the context" ctx=$'base:\x7f' 0+$G
bad_map "a header count that is not the trailer's" count=2 0+$G

# The map through a pipe in three pieces, to a provider whose every blocking read is
# interrupted by a signal with a handler (SIGALRM every 20 ms): short reads and EINTR. The C
# example installs no handler, and libregionmap retries EINTR itself.
slow_map() {
	head -c 20 "$tmp/map.bin"; sleep 0.3
	head -c 100 "$tmp/map.bin" | tail -c +21; sleep 0.3
	tail -c +101 "$tmp/map.bin"
}
alarm_python() {
	python3 -c 'import runpy, signal, sys
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    signal.setitimer(signal.ITIMER_REAL, 0)' "$@"
}
alarm_perl() {
	perl -MTime::HiRes=ualarm -e '$SIG{ALRM} = sub {}; ualarm(20_000, 20_000); do shift; ualarm(0); die $@ if $@' "$@"
}
for p in "python:alarm_python $TOP/examples/provider.py" "perl:alarm_perl $TOP/examples/provider.pl"; do
	label=${p%%:*}
	mkdir -p "$tmp/$label-slow"
	NBDATTACH_RUN=$(run_json pipe) ${p#*:} "$tmp/$label-slow" 3>"$tmp/$label-slow.acks" 4< <(slow_map) \
		> "$tmp/$label-slow.out" 2>&1
	rc=$?
	[ "$rc" = 0 ] && [ "$(cat "$tmp/$label-slow.acks")" = "disk $((1 << 20)) $((2 * G))
disk $((7 << 20)) $G" ] && pass "$label: reads a map in pieces through signals" ||
		fail "$label: reads a map in pieces through signals" "exit $rc: $(tail -n 1 "$tmp/$label-slow.out")"
done

# A backup disk that fills up: the images on a 64 KiB tmpfs. The first region (128 KiB) gets a
# short write of 64 KiB, the next write fails with ENOSPC: the provider must fail with that
# reason and acknowledge nothing. Then the acknowledgements on a full 4 KiB tmpfs, so that the
# second line is written only in part: the provider must fail rather than go on.
mkdir -p "$tmp/full" "$tmp/ackfs"
if ! mount -t tmpfs -o size=64k,mode=0700 nbdattach-test "$tmp/full" 2>"$tmp/mount.err"; then
	skip "full backup disk" "cannot mount a tmpfs here: $(cat "$tmp/mount.err")"
	exit 0
fi
defer "umount '$tmp/full'"
mount -t tmpfs -o size=4k,mode=0700 nbdattach-test "$tmp/ackfs" || fail "mount a 4 KiB tmpfs"
defer "umount '$tmp/ackfs'"
ack1="disk $((1 << 20)) $((2 * G))"
for p in "${PROVIDERS[@]}"; do
	label=${p%%:*}
	: > "$tmp/$label-full.acks"
	provide "${p#*:}" "$tmp/full/$label" "$tmp/map.bin" "$tmp/$label-full.acks" "$tmp/$label-full.out"
	rc=$?
	[ "$rc" != 0 ] && grep -q 'No space left on device' "$tmp/$label-full.out" &&
		pass "$label: a full backup disk fails the backup ($(tail -n 1 "$tmp/$label-full.out"))" ||
		fail "$label: a full backup disk fails the backup" "exit $rc: $(tail -n 1 "$tmp/$label-full.out")"
	expect_eq "$label: acknowledges nothing it could not write" "" "$(cat "$tmp/$label-full.acks")"
	rm -rf "$tmp/full/$label"

	rm -f "$tmp/ackfs/acks"
	head -c $((4096 - ${#ack1} - 1 - 9)) /dev/zero > "$tmp/ackfs/acks"
	provide "${p#*:}" "$tmp/$label-ackfs" "$tmp/map.bin" "$tmp/ackfs/acks" "$tmp/$label-ackfs.out"
	rc=$?
	[ "$rc" != 0 ] && grep -q 'No space left on device' "$tmp/$label-ackfs.out" &&
		pass "$label: an acknowledgement written in part fails ($(tail -n 1 "$tmp/$label-ackfs.out"))" ||
		fail "$label: an acknowledgement written in part fails" "exit $rc: $(tail -n 1 "$tmp/$label-ackfs.out")"
done
