#!/bin/bash
# Attach benchmark, run inside the test VM by `make bench` (BENCH=kernel/attach for this one):
# 1) time from invocation until the device is ready (udev processed), median of 10:
#    nbdattach attach vs nbd-client + `udevadm settle` vs qemu-nbd -c + `udevadm settle`.
# 2) 64 attaches one after another (all kept attached): first-8 vs last-8 per-attach time.
# TCG timings are emulated: only the ratios within this run mean anything.
. "$(dirname "$0")/../../tests/lib.sh"
in_vm || { skip "bench-attach" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
N=${BENCH_N:-10}
truncate -s 64M "$tmp/disk.raw"
nbdkit -U "$tmp/s.sock" -P "$tmp/s.pid" file "$tmp/disk.raw" || { fail "bench" "nbdkit starts"; exit 1; }
defer "kill \$(cat '$tmp/s.pid')"
uri="nbd+unix:///?socket=$tmp/s.sock"
udevadm settle

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for i in $(seq "$N"); do
	t0=$(ms); dev=$("$NBDATTACH" attach --connections 1 "$uri") || { fail "bench" "attach"; exit 1; }; t1=$(ms)
	echo $((t1 - t0)) >> "$tmp/na"
	"$NBDATTACH" detach "$dev"
done
for i in $(seq "$N"); do
	t0=$(ms); nbd-client -unix "$tmp/s.sock" -N bench /dev/nbd0 -b 4096 >/dev/null 2>&1 && udevadm settle; t1=$(ms)
	echo $((t1 - t0)) >> "$tmp/nc"
	nbd-client -d /dev/nbd0 >/dev/null 2>&1; udevadm settle
done
for i in $(seq "$N"); do
	t0=$(ms); qemu-nbd -f raw -c /dev/nbd0 "$tmp/disk.raw" && udevadm settle; t1=$(ms)
	echo $((t1 - t0)) >> "$tmp/qn"
	qemu-nbd -d /dev/nbd0 >/dev/null; udevadm settle
done
na=$(median < "$tmp/na"); nc=$(median < "$tmp/nc"); qn=$(median < "$tmp/qn")
echo "bench: median ms over $N: nbdattach $na, nbd-client+settle $nc, qemu-nbd -c+settle $qn"
echo "bench: ratio nbdattach/nbd-client+settle $(awk -v a="$na" -v b="$nc" 'BEGIN{printf "%.2f", a/b}')," \
	"nbdattach/qemu-nbd+settle $(awk -v a="$na" -v b="$qn" 'BEGIN{printf "%.2f", a/b}')"
awk -v a="$na" -v b="$nc" 'BEGIN{exit !(a <= b)}' && pass "nbdattach <= 1.0x nbd-client+settle" ||
	fail "nbdattach <= 1.0x nbd-client+settle" "$na ms vs $nc ms"

defer "'$NBDATTACH' detach --tag bench64"
for i in $(seq 64); do
	t0=$(ms); "$NBDATTACH" attach --tag bench64 --connections 1 "$uri" >/dev/null || { fail "bench" "attach #$i"; break; }; t1=$(ms)
	echo $((t1 - t0)) >> "$tmp/seq"
done
first=$(head -8 "$tmp/seq" | awk '{s+=$1} END {printf "%.1f", s/NR}')
last=$(tail -8 "$tmp/seq" | awk '{s+=$1} END {printf "%.1f", s/NR}')
echo "bench: 64 sequential attaches: first 8 avg $first ms, last 8 avg $last ms, ratio $(awk -v a="$last" -v b="$first" 'BEGIN{printf "%.2f", a/b}')"
awk -v a="$last" -v b="$first" 'BEGIN{exit !(a <= 1.5 * b)}' && pass "last 8 <= 1.5x first 8" ||
	fail "last 8 <= 1.5x first 8" "$last vs $first ms"
check "detach all 64" "$NBDATTACH" detach --tag bench64
