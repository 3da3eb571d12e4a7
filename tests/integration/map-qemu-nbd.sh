#!/bin/bash
# nbdattach map against qemu-nbd exporting persistent qcow2 bitmaps at 4 KiB, 64 KiB and 1 MiB
# granularity: text equals the regions computed here, binary (stream and sealed memfd) reads
# back equal through libregionmap, nbdinfo format is byte-identical to `nbdinfo --map`.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

DUMP=$BUILD/tests/helpers/rmap-dump
for t in qemu-img qemu-io qemu-nbd nbdinfo; do
	command -v $t >/dev/null || { skip "map-qemu-nbd" "$t not installed"; exit 0; }
done
[ -x "$DUMP" ] || { fail "rmap-dump built" "run make tests"; exit 1; }
dir=$(mktmpdir)
SIZE=$((64 << 20))

# expected_regions G OFF:LEN...: the granule-rounded, merged dirty regions plus the end line.
expected_regions() {
	local g=$1; shift
	local w
	for w in "$@"; do
		local off=${w%:*} len=${w#*:}
		local s=$(( off / g * g )) e=$(( (off + len + g - 1) / g * g ))
		[ $e -gt $SIZE ] && e=$SIZE
		echo "$s $e"
	done | sort -n | awk '
		NR == 1 { s = $1; e = $2; next }
		$1 <= e { if ($2 > e) e = $2; next }
		{ print s, e - s; n++; t += e - s; s = $1; e = $2 }
		END { if (NR) { print s, e - s; n++; t += e - s } printf "end %d %d\n", n, t }'
}

run_granularity() {
	local g=$1 img=$dir/g$1.qcow2 sock=$dir/g$1.sock uri exp
	# Writes: unaligned, adjacent (merge), straddling granules, the last byte of the export.
	local writes="0:1 $((g * 3)):$((g * 2)) $((g * 5)):$g $((g * 10 + 17)):$((g + 3)) $((20 << 20)):$((3 << 20)) $((SIZE - 512)):512"
	img_create "$img" $SIZE 65536
	img_bitmap_add "$img" b$g $g
	for w in $writes; do img_write "$img" "${w%:*}" "${w#*:}"; done
	qnbd_start "$img" "$sock" disk "b$g"
	uri=$(qnbd_uri "$sock")
	exp=$(expected_regions $g $writes)

	expect_eq "g=$g text equals the written regions" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap b$g --granularity $g --format text 2>&1)"
	expect_eq "g=$g binary stream reads back equal" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap b$g --granularity $g | "$DUMP" 2>&1)"
	expect_eq "g=$g sealed memfd (--output-fd) reads back equal" "$exp" \
		"$("$DUMP" --spawn-memfd "$NBDATTACH" map "$uri" --bitmap b$g --granularity $g 2>&1)"
	check "g=$g --output FILE" "$NBDATTACH" map "$uri" --bitmap b$g --granularity $g --output "$dir/g$g.map"
	expect_eq "g=$g --output file reads back equal, mode 0600" "$exp 600" \
		"$("$DUMP" "$dir/g$g.map" 2>&1) $(stat -c %a "$dir/g$g.map")"
	expect_eq "g=$g header" "header $SIZE $g 0 qemu:dirty-bitmap:b$g" \
		"$("$DUMP" --header "$dir/g$g.map" | head -n 1)"
	nbdinfo --map=qemu:dirty-bitmap:b$g "$uri" > "$dir/nbdinfo.$g"
	"$NBDATTACH" map "$uri" --bitmap b$g --granularity $g --format nbdinfo > "$dir/ours.$g"
	check "g=$g --format nbdinfo byte-identical to nbdinfo --map" cmp "$dir/nbdinfo.$g" "$dir/ours.$g"
	if [ $g != 4096 ]; then
		check_fails "g=$g a --granularity coarser than the bitmap fails" \
			"$NBDATTACH" map "$uri" --bitmap b$g --granularity $((g * 2)) --format text
	fi
	expect_eq "g=$g --full is one region" "0 $SIZE
end 1 $SIZE" "$("$NBDATTACH" map "$uri" --full --format text 2>&1)"
	expect_eq "g=$g --full binary has the FULL flag" "header $SIZE 65536 1 
0 $SIZE
end 1 $SIZE" "$("$NBDATTACH" map "$uri" --full | "$DUMP" --header 2>&1)"
	qnbd_stop "$sock"
}

for g in 4096 65536 1048576; do run_granularity $g; done

# A clean bitmap: an empty map, still with its trailer.
img_create "$dir/clean.qcow2" $SIZE
img_bitmap_add "$dir/clean.qcow2" c
qnbd_start "$dir/clean.qcow2" "$dir/clean.sock" disk c
uri=$(qnbd_uri "$dir/clean.sock")
expect_eq "clean bitmap: empty map" "end 0 0" "$("$NBDATTACH" map "$uri" --bitmap c | "$DUMP" 2>&1)"
nbdinfo --map=qemu:dirty-bitmap:c "$uri" > "$dir/n.clean"
"$NBDATTACH" map "$uri" --bitmap c --format nbdinfo > "$dir/o.clean"
check "clean bitmap: nbdinfo format identical" cmp "$dir/n.clean" "$dir/o.clean"

# An existing target is replaced atomically; a failed map leaves the old file and no temp file.
echo old > "$dir/keep.map"
check_fails "failed map exits non-zero" "$NBDATTACH" map "$uri" --bitmap nosuch --output "$dir/keep.map"
expect_eq "failed map leaves the old target and no temp file" "old 0" \
	"$(cat "$dir/keep.map") $(ls -A "$dir" | grep -c '^\.nbdattach-map-')"

# Beyond one block-status request (just under 4 GiB): a dirty run across the request boundary
# comes back as two extents and must still be one region (nbdinfo merges it too).
B=$((0xFFF00000))
img_create "$dir/big.qcow2" 8G
img_bitmap_add "$dir/big.qcow2" big
img_write "$dir/big.qcow2" $((B - (1 << 20))) $((2 << 20))
img_write "$dir/big.qcow2" $(( (8 << 30) - 65536 )) 65536
qnbd_start "$dir/big.qcow2" "$dir/big.sock" disk big
uri=$(qnbd_uri "$dir/big.sock")
expect_eq "8 GiB: run across the request boundary is one region" "$((B - (1 << 20))) $((2 << 20))
$(( (8 << 30) - 65536 )) 65536
end 2 $(( (2 << 20) + 65536 ))" "$("$NBDATTACH" map "$uri" --bitmap big --format text 2>&1)"
nbdinfo --map=qemu:dirty-bitmap:big "$uri" > "$dir/n.big"
"$NBDATTACH" map "$uri" --bitmap big --format nbdinfo > "$dir/o.big"
check "8 GiB: nbdinfo format identical" cmp "$dir/n.big" "$dir/o.big"
