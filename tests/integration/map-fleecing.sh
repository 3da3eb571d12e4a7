#!/bin/bash
# nbdattach map against QEMU's backup fleecing (qemu-storage-daemon: copy-before-write +
# snapshot-access, exported with the frozen bitmap copy): the map equals the writes made
# before the backup started and does not change when the guest writes during the backup.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

DUMP=$BUILD/tests/helpers/rmap-dump
for t in qemu-storage-daemon qemu-img qemu-io nbdinfo python3; do
	command -v $t >/dev/null || { skip "map-fleecing" "$t not installed"; exit 0; }
done
dir=$(mktmpdir)
SIZE=$((32 << 20))

img_create "$dir/source.qcow2" $SIZE
img_bitmap_add "$dir/source.qcow2" b
img_write "$dir/source.qcow2" 0 65536
img_write "$dir/source.qcow2" $((1 << 20)) $((256 << 10))
img_write "$dir/source.qcow2" $((5 << 20)) 100
img_write "$dir/source.qcow2" $((SIZE - 65536)) 65536
exp="0 65536
1048576 262144
5242880 65536
$((SIZE - 65536)) 65536
end 4 458752"

fleece_start "$dir" $SIZE b || { fail "fleecing fixture starts"; exit 1; }
uri=$(fleece_uri)
bitmap=${FLEECE_CONTEXT#qemu:dirty-bitmap:}

expect_eq "snapshot map: text" "$exp" "$("$NBDATTACH" map "$uri" --bitmap "$bitmap" --format text 2>&1)"
expect_eq "snapshot map: binary stream" "$exp" "$("$NBDATTACH" map "$uri" --bitmap "$bitmap" | "$DUMP" 2>&1)"
expect_eq "snapshot map: sealed memfd" "$exp" \
	"$("$DUMP" --spawn-memfd "$NBDATTACH" map "$uri" --bitmap "$bitmap" 2>&1)"
nbdinfo --map="$FLEECE_CONTEXT" "$uri" >"$dir/nbdinfo.1"
"$NBDATTACH" map "$uri" --bitmap "$bitmap" --format nbdinfo >"$dir/ours.1"
check "snapshot map: nbdinfo format identical" cmp "$dir/nbdinfo.1" "$dir/ours.1"
one=$("$NBDATTACH" map "$uri" --full --format text 2>&1)
expect_eq "snapshot map: --full" "0 $SIZE
end 1 $SIZE" "$one"

# The guest writes (into dirty and clean areas) while the backup runs.
fleece_guest_write 0 4096
fleece_guest_write $((2 << 20)) $((1 << 20))
fleece_guest_write $((5 << 20)) 65536
expect_eq "after guest writes: map unchanged" "$exp" \
	"$("$NBDATTACH" map "$uri" --bitmap "$bitmap" --format text 2>&1)"
nbdinfo --map="$FLEECE_CONTEXT" "$uri" >"$dir/nbdinfo.2"
check "after guest writes: nbdinfo output unchanged" cmp "$dir/nbdinfo.1" "$dir/nbdinfo.2"
# The live bitmap (not exported) took the guest writes; the snapshot export does not offer it.
one_err=$("$NBDATTACH" map "$uri" --bitmap b 2>&1)
expect_eq "live bitmap is not offered on the snapshot export" \
	"nbdattach: cannot map '$uri': export does not offer meta context 'qemu:dirty-bitmap:b'" "$one_err"
