#!/bin/bash
# The demo, run inside the VM: what a hypervisor's backup does with nbdattach. A 256 MiB guest
# disk is exported by qemu-storage-daemon with QEMU's backup fleecing (copy-before-write into a
# fleecing image, snapshot-access exported with the dirty bitmap); `nbdattach run` attaches the
# snapshot as /dev/nbdN, hands its region map to the example provider, discards what the
# provider has backed up, and detaches. A full backup, guest writes, an incremental backup
# while the guest keeps writing, then a restore that is checked byte for byte.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"
set -e
tmp=$(mktmpdir)
G=65536 SIZE=$((256 << 20))
PROVIDER=$BUILD/examples/provider
mkdir -p "$tmp/full" "$tmp/inc"
errs0=$(count_io_errors)
say() { printf '== %s\n' "$*"; }
human() { numfmt --to=iec-i --suffix=B "$1"; }
run_backup() { # LABEL BITMAP OUTDIR [gated]
	local s e
	s=$(date +%s.%N)
	"$NBDATTACH" run --tag demo --volume "name=drive0,bitmap=$2,uri=$(fleece_uri)" -- "${4:-$PROVIDER}" "$3" \
		> "$tmp/$1.out" 2> "$tmp/$1.err"
	e=$(date +%s.%N)
	sed 's/^/   /' "$tmp/$1.out" "$tmp/$1.err"
	echo "   took $(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.1f", b - a }') s (emulated CPU)"
}

say "a $(human $SIZE) guest disk with random contents; a persistent dirty bitmap b0 created now"
head -c $SIZE /dev/urandom > "$tmp/seed.raw"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=$G "$tmp/seed.raw" "$tmp/source.qcow2"
img_bitmap_add "$tmp/source.qcow2" b0 $G

say "full backup: fleecing without a bitmap, nbdattach run with a full map"
FLEECE_FULL=1 FLEECE_CLEAR=1 fleece_start "$tmp" $SIZE b0 $G
run_backup full full "$tmp/full"
echo "   fleecing image at the end: $(human "$(fleece_allocated)")"
fleece_stop

say "the guest writes 4 regions (7 MiB) while no backup runs"
for w in "$((3 << 20)):$((1 << 20))" "$((64 << 20)):4096" "$((100 << 20)):$((4 << 20))" "$((SIZE - (2 << 20))):$((2 << 20))"; do
	img_write "$tmp/source.qcow2" "${w%:*}" "${w#*:}" 0x5a
done
qemu-img convert -q -f qcow2 -O raw "$tmp/source.qcow2" "$tmp/at-incremental.raw"

say "incremental backup with the reused bitmap; the guest writes during it"
FLEECE_CLEAR=1 fleece_start "$tmp" $SIZE b0 $G
cat > "$tmp/gated" <<SH
#!/bin/sh
touch "$tmp/started"; while [ ! -e "$tmp/go" ]; do sleep 0.05; done; exec "$PROVIDER" "\$@"
SH
chmod +x "$tmp/gated"
run_backup inc backup-b0 "$tmp/inc" "$tmp/gated" &
runner=$!
wait_for_file "$tmp/started" 120
echo "   attached: $(ls -l /dev/nbdattach/demo/drive0 | awk '{ print $9, $10, $11 }')"
fleece_guest_write $((3 << 20)) $((1 << 20)) 0x77
fleece_guest_write $((150 << 20)) $((1 << 20)) 0x77
echo "   guest wrote 1 MiB into a region not yet backed up and 1 MiB elsewhere:" \
	"fleecing image holds $(human "$(fleece_allocated)")"
touch "$tmp/go"
wait $runner
echo "   fleecing image after the backup (acknowledged ranges discarded): $(human "$(fleece_allocated)")"
fleece_stop

say "restore full + incremental and compare with the disk as it was when the incremental began"
restore_incremental "$tmp/full/drive0.img" "$tmp/inc/drive0.img" "$tmp/inc/drive0.map" "$tmp/restored.raw" $G
want=$(sha256sum < "$tmp/at-incremental.raw" | cut -c1-16)
got=$(sha256sum < "$tmp/restored.raw" | cut -c1-16)
echo "   expected sha256 $want..., restored $got..."
[ "$want" = "$got" ]
left=$(listed) errs=$(io_errors_since "$errs0")
echo "   devices left: $left; kernel I/O errors: $errs"
[ "$left" = 0 ] && [ "$errs" = 0 ]
pass "demo: full + incremental backup restored byte for byte"
