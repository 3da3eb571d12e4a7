#!/bin/bash
# A real backup chain through `nbdattach run` with the fleecing fixture and the example C
# provider: a full backup of a disk whose bitmap was just created, guest writes at known
# places, an incremental backup with the reused bitmap while the guest writes more (through
# the copy-before-write export). Restoring full + incremental equals the disk as it was when
# the incremental started, the guest's later writes do not leak in, the fleecing image ends
# empty when ranges are acknowledged (and keeps the copies when they are not), and the kernel
# log has not one I/O error.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "run-chain" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

PROVIDER=$BUILD/examples/provider
tmp=$(mktmpdir)
G=65536 SIZE=$((64 << 20))
errs0=$(count_io_errors)
mkdir -p "$tmp/full" "$tmp/inc" "$tmp/noack"

# The disk: random contents, a persistent bitmap created just now (so the first backup is full).
head -c $SIZE /dev/urandom > "$tmp/seed.raw"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=$G "$tmp/seed.raw" "$tmp/source.qcow2"
img_bitmap_add "$tmp/source.qcow2" b0 $G
cp "$tmp/seed.raw" "$tmp/expect-full.raw"

# --- Full backup (bitmap just created: a full map). The live bitmap restarts from empty.
FLEECE_FULL=1 FLEECE_CLEAR=1 fleece_start "$tmp" $SIZE b0 $G || { fail "fleecing fixture starts"; exit 1; }
out=$("$NBDATTACH" run --tag chain --volume "name=drive0,bitmap=full,uri=$(fleece_uri)" -- \
	"$PROVIDER" "$tmp/full" 2>"$tmp/full.err")
rc=$?
expect_eq "full backup: run exits 0 ($(tail -n 2 "$tmp/full.err" | tr '\n' ' '))" 0 "$rc"
echo "$out"; cat "$tmp/full.err"
expect_eq "full backup: one region, the whole disk" "0 $SIZE
end 1 $SIZE" "$(cat "$tmp/full/drive0.map")"
cmp -s "$tmp/full/drive0.img" "$tmp/expect-full.raw" && pass "full backup equals the disk" ||
	fail "full backup equals the disk" "differs"
expect_eq "full backup: fleecing image empty at the end" 0 "$(fleece_allocated)"
fleece_stop

# --- Guest writes between the backups, at known places.
img_write "$tmp/source.qcow2" $((1 << 20)) $((3 * G)) 0x41          # 3 granules
img_write "$tmp/source.qcow2" $((10 << 20)) 4096 0x42               # 1 granule, partly
img_write "$tmp/source.qcow2" $(( (20 << 20) - 100 )) 200 0x43          # straddles two granules
img_write "$tmp/source.qcow2" $((40 << 20)) $((2 << 20)) 0x44       # 32 granules
img_write "$tmp/source.qcow2" $((SIZE - G)) $G 0x45                 # the last granule
qemu-img convert -q -f qcow2 -O raw "$tmp/source.qcow2" "$tmp/expect-inc.raw"

# --- Incremental backup; the guest writes while it runs (the provider waits for "go").
FLEECE_CLEAR=1 fleece_start "$tmp" $SIZE b0 $G || { fail "fleecing fixture restarts"; exit 1; }
cat > "$tmp/gated" <<SH
#!/bin/sh
touch "$tmp/started"
while [ ! -e "$tmp/go" ]; do sleep 0.05; done
exec "$PROVIDER" "\$@"
SH
chmod +x "$tmp/gated"
"$NBDATTACH" run --tag chain --volume "name=drive0,bitmap=backup-b0,uri=$(fleece_uri)" -- \
	"$tmp/gated" "$tmp/inc" > "$tmp/inc.out" 2>"$tmp/inc.err" &
runpid=$!
wait_for_file "$tmp/started" 120 || fail "incremental: provider started"
check "incremental: device under /dev/nbdattach/chain/drive0" test -b /dev/nbdattach/chain/drive0
q=/sys/block/$(basename "$(readlink -f /dev/nbdattach/chain/drive0)")/queue
expect_eq "incremental: one granule per request, never merged, no read-ahead" "64 2 0" \
	"$(cat "$q/max_sectors_kb") $(cat "$q/nomerges") $(cat "$q/read_ahead_kb")"
fleece_guest_write $((1 << 20)) $((2 * G)) 0x61          # overwrites dirty, not yet backed up
fleece_guest_write $(( (40 << 20) + 4096 )) 8192 0x62       # dirty granule, partly
fleece_guest_write $((30 << 20)) $G 0x63                # clean: no copy needed
peak=$(fleece_allocated)
touch "$tmp/go"
wait $runpid
rc=$?
expect_eq "incremental: run exits 0 ($(tail -n 2 "$tmp/inc.err" | tr '\n' ' '))" 0 "$rc"
cat "$tmp/inc.out" "$tmp/inc.err"
expect_eq "incremental: the map is the written regions" "$((1 << 20)) $((3 * G))
$((10 << 20)) $G
$(( (20 << 20) - G )) $((2 * G))
$((40 << 20)) $((2 << 20))
$((SIZE - G)) $G
end 5 $(( (3 + 1 + 2 + 32 + 1) * G ))" "$(cat "$tmp/inc/drive0.map")"
expect_eq "fleecing peak: exactly the overwritten dirty granules (2 + 1)" $((3 * G)) "$peak"
end=$(fleece_allocated)
expect_eq "fleecing image ends with no data (acknowledged and discarded)" 0 "$end"
echo "fleecing: peak $peak bytes during the incremental, $end bytes at its end"

# Restore: full, then the incremental's regions on top.
restore_incremental "$tmp/full/drive0.img" "$tmp/inc/drive0.img" "$tmp/inc/drive0.map" "$tmp/restored.raw" $G
expect_eq "restore of full + incremental equals the disk when the incremental started" \
	"$(sha256sum < "$tmp/expect-inc.raw")" "$(sha256sum < "$tmp/restored.raw")"
cmp "$tmp/expect-inc.raw" "$tmp/restored.raw" >/dev/null ||
	echo "restore differs at bytes: $(cmp -l "$tmp/expect-inc.raw" "$tmp/restored.raw" | awk 'NR == 1 { print $1 - 1 } END { print NR " bytes" }' | tr '\n' ' ')"
# qemu-io prints "read N/N bytes" even when the pattern differs: only its status tells.
check "the guest's later write is on the live disk" \
	qemu-io -r -f raw -c "read -P 0x61 $((1 << 20)) $((2 * G))" "$(fleece_guest_uri)"
cmp -s <(dd if="$tmp/restored.raw" bs=$G skip=$((1 << 20 >> 16)) count=2 status=none) \
	<(python3 -c "import sys; sys.stdout.buffer.write(b'\x41' * $((2 * G)))") &&
	pass "the guest's later writes did not leak into the backup" || fail "later writes did not leak" "they did"
fleece_stop

# --- Without acknowledgements the fleecing image keeps what it copied.
img_write "$tmp/source.qcow2" $((5 << 20)) $((4 * G)) 0x51
FLEECE_CLEAR=1 fleece_start "$tmp" $SIZE b0 $G || { fail "fleecing fixture restarts"; exit 1; }
rm -f "$tmp/started" "$tmp/go"
PROVIDER_NO_ACK=1 "$NBDATTACH" run --tag chain --volume "name=drive0,bitmap=backup-b0,uri=$(fleece_uri)" -- \
	"$tmp/gated" "$tmp/noack" > /dev/null 2>"$tmp/noack.err" &
runpid=$!
wait_for_file "$tmp/started" 120 || fail "no-ack: provider started"
fleece_guest_write $((5 << 20)) $((4 * G)) 0x71
touch "$tmp/go"
wait $runpid
expect_eq "no-ack run exits 0" 0 "$?"
kept=$(fleece_allocated)
expect_eq "without acknowledgements the fleecing image keeps the copies" $((4 * G)) "$kept"
echo "fleecing without acks: $kept bytes kept"
fleece_stop

expect_eq "no I/O errors in the kernel log across the chain" 0 "$(io_errors_since "$errs0")"
expect_eq "no device of ours left" 0 "$(listed)"
