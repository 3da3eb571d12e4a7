#!/bin/bash
# A bitmap-restricted snapshot-access export (the fleecing fixture): attached by nbdattach, its
# dirty regions read with O_DIRECT and checked, detached: not one I/O error in the kernel log.
# The same export attached with nbd-client under stock udev rules is the comparison: udev's
# probes read outside the bitmap, and every such read is an I/O error.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "hygiene-bitmap" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

tmp=$(mktmpdir)
G=65536
img_create "$tmp/source.qcow2" 64M $G
img_bitmap_add "$tmp/source.qcow2" b0 $G
# Dirty regions away from the start and the end of the disk, where probes look first.
img_write "$tmp/source.qcow2" $((8 << 20)) $((3 * G)) 0x11
img_write "$tmp/source.qcow2" $((20 << 20)) $((1 << 20)) 0x22
img_write "$tmp/source.qcow2" $((40 << 20)) $G 0x33
fleece_start "$tmp" 64M b0 $G || { fail "fleecing fixture starts"; exit 1; }
uri=$(fleece_uri)
errs0=$(count_io_errors)

dev=$("$NBDATTACH" attach --tag hyg --name snap --bitmap "backup-b0" "$uri" 2>"$tmp/err")
rc=$?
expect_eq "attach --bitmap succeeds ($(cat "$tmp/err"))" 0 "$rc"
udevadm settle
"$NBDATTACH" map "$uri" --bitmap backup-b0 --format text > "$tmp/map" || fail "map the bitmap"
expect_eq "the map is the three written regions" "$((8 << 20)) $((3 * G))
$((20 << 20)) $((1 << 20))
$((40 << 20)) $G
end 3 $((4 * G + (1 << 20)))" "$(cat "$tmp/map")"
bad=0
while read -r off len; do
	[ "$off" = end ] && break
	case $off in $((8 << 20))) pat=0x11 ;; $((20 << 20))) pat=0x22 ;; *) pat=0x33 ;; esac
	dd if="$dev" bs=$G skip=$((off / G)) count=$((len / G)) iflag=direct status=none > "$tmp/region" || bad=1
	cmp -s "$tmp/region" <(python3 -c "import sys; sys.stdout.buffer.write(bytes([$pat]) * $len)") || bad=1
done < "$tmp/map"
expect_eq "every dirty region reads back with O_DIRECT, bytes as written" 0 "$bad"
check "detach" "$NBDATTACH" detach "$dev"
udevadm settle
expect_eq "no I/O errors in the kernel log across attach, read, detach" 0 "$(io_errors_since "$errs0")"

# The comparison: nbd-client with stock rules on the same export.
before=$(count_io_errors)
check "nbd-client attaches the snapshot" nbd-client -N snap -unix "$FLEECE_SOCK" /dev/nbd0 -b 4096
udevadm settle
nbd-client -d /dev/nbd0 >/dev/null
udevadm settle
anchor=$(io_errors_since "$before")
echo "I/O error lines: nbdattach 0, nbd-client with stock udev $anchor"
[ "$anchor" != unknown ] && [ "$anchor" -gt 0 ] && pass "stock probing of the same export logs I/O errors ($anchor lines)" ||
	fail "stock probing of the same export logs I/O errors" "none: the comparison shows nothing"
