#!/bin/bash
# Read-throughput benchmark, run inside the test VM (make bench): the dirty regions of a 1 GiB
# fleecing snapshot (half of it dirty, in regions of 64 KiB to 16 MiB) read with O_DIRECT in
# 4 MiB pieces through nbdattach's device and through nbdfuse (what others use instead) on the
# same export; nbdcopy's throughput copying the same kind of snapshot to null: is the limit, and
# nbdcopy held to the device's one-granule requests shows what that cap costs. The server's CPU
# time per MiB read, for each, shows where the time goes.
# Each figure is the median of BENCH_N (3) runs; TCG timings are emulated, only the ratios
# measured in this one run mean anything. Targets: >= 1.2x nbdfuse, >= 0.9x nbdcopy.
. "$(dirname "$0")/../../tests/lib.sh"
in_vm || { skip "bench-read" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

READER=$BUILD/bench/region-read
N=${BENCH_N:-3}
tmp=$(mktmpdir)
G=65536 SIZE=$((1 << 30))
# Every byte allocated (the guest's data), then the bitmap, then the dirty writes.
qemu-img create -q -f qcow2 -o cluster_size=$G "$tmp/source.qcow2" $SIZE
qemu-io -f qcow2 -c "write -q -P 0x5c 0 $SIZE" "$tmp/source.qcow2" >/dev/null
img_bitmap_add "$tmp/source.qcow2" b0 $G
# Half dirty: regions of 64 KiB .. 16 MiB, each followed by a clean gap of the same size.
python3 - "$SIZE" > "$tmp/writes" <<'PY'
import sys
size = int(sys.argv[1]); off = 0; sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]; i = 0
while off < size:
    n = min(sizes[i % len(sizes)], (size - off) // 2); i += 1
    if n <= 0: break
    print(off, n); off += 2 * n
PY
cmds=()
while read -r off len; do cmds+=(-c "write -q -P 0x$(printf %02x $((len % 251))) $off $len"); done < "$tmp/writes"
qemu-io -f qcow2 "${cmds[@]}" "$tmp/source.qcow2" >/dev/null || { fail "bench-read" "fixture writes"; exit 1; }
fleece_start "$tmp" $SIZE b0 $G || { fail "bench-read" "fleecing fixture"; exit 1; }
uri=$(fleece_uri)
"$NBDATTACH" map "$uri" --bitmap backup-b0 --format text | grep -v '^end' > "$tmp/map"
dirty=$(awk '{ s += $2 } END { print s }' "$tmp/map")
echo "bench: $(wc -l < "$tmp/map") dirty regions, $((dirty >> 20)) MiB of $((SIZE >> 20)) MiB"

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }
# Each method reads once untimed first (warm): under TCG the first pass through a code path
# (the server's, the kernel's, FUSE's) also pays for translating it, whichever method is first.
warm() { "$READER" "$1" "$tmp/map" >/dev/null; }
read_n() { # PATH -> median seconds
	for i in $(seq "$N"); do "$READER" "$1" "$tmp/map" | awk '{ print $2 }'; done | median
}
# The server's own CPU: qemu-storage-daemon serves the export from one thread, so its CPU time
# per MiB read bounds every client's throughput; what a client's request sizes make it cost is
# what separates the figures. qsd_ticks: its utime + stime so far.
qsd_ticks() { awk '{ print $14 + $15 }' "/proc/$(cat "$tmp/qsd.pid")/stat"; }
per_mib() { # TICKS BYTES-PER-RUN SECONDS-PER-RUN -> "X ms/MiB (busy Y%)"
	awk -v t="$1" -v b="$2" -v s="$3" -v n="$N" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.1f ms/MiB (busy %.0f%%)", t * 1000 / hz / (b * n / 1048576), t / hz / (s * n) * 100 }'
}

# nbdattach, default settings (what run gives a provider).
dev=$("$NBDATTACH" attach --bitmap backup-b0 "$uri") || { fail "bench-read" "attach"; exit 1; }
warm "$dev"
c0=$(qsd_ticks)
t_na=$(read_n "$dev")
c_na=$(( $(qsd_ticks) - c0 ))
"$NBDATTACH" detach "$dev"
# What the helper controls, one knob at a time.
tune() { # LABEL [QUEUE-ATTR=VALUE] ATTACH-OPTIONS... -> "LABEL MiB/s"
	local label=$1 attr= q= old d t; shift
	case "$1" in *=*) attr=$1; shift ;; esac
	d=$("$NBDATTACH" attach --bitmap backup-b0 "$@" "$uri") || return
	if [ -n "$attr" ]; then   # the setting outlives the device: put it back afterwards
		q=/sys/block/${d#/dev/}/queue/${attr%%=*}
		old=$(sed 's/.*\[\(.*\)\].*/\1/' "$q")
		echo "${attr#*=}" > "$q" || return
	fi
	warm "$d"
	t=$(read_n "$d")
	[ -z "$q" ] || echo "$old" > "$q"
	"$NBDATTACH" detach "$d"
	echo "bench: tuning: $label $(mbps "$dirty" "$t") MiB/s"
}
tune "block-size 512" --block-size 512
tune "scheduler none (mq-deadline by default)" scheduler=none
tune "2 connections (reads only, so safe without multi-conn)" --connections 2
tune "max-request 128K (unsafe while clusters are being copied)" --max-request 131072

# nbdfuse on the same export.
mkdir -p "$tmp/fuse"
nbdfuse "$tmp/fuse" "$uri" &
fpid=$!
defer "fusermount3 -u '$tmp/fuse' 2>/dev/null; kill $fpid 2>/dev/null"
for i in $(seq 100); do [ -e "$tmp/fuse/nbd" ] && break; sleep 0.1; done
warm "$tmp/fuse/nbd"
t_fu=$(read_n "$tmp/fuse/nbd")
fusermount3 -u "$tmp/fuse"; wait $fpid 2>/dev/null

fleece_stop

# nbdcopy, the limit, reads the same snapshot-access path: a snapshot set up as for a full
# backup (copy-before-write without a bitmap, so every byte is readable; nbdcopy cannot be
# told to skip the regions a bitmap-restricted snapshot refuses). Throughput per byte.
FLEECE_FULL=1 fleece_start "$tmp" $SIZE b0 $G || { fail "bench-read" "full fleecing fixture"; exit 1; }
nbdcopy "$(fleece_uri)" null:   # untimed, as for the others
c0=$(qsd_ticks)
for i in $(seq "$N"); do
	s=$(date +%s.%N); nbdcopy "$(fleece_uri)" null: ; e=$(date +%s.%N)
	awk -v a="$s" -v b="$e" 'BEGIN { print b - a }'
done | median > "$tmp/nc"
t_nc=$(cat "$tmp/nc")
c_nc=$(( $(qsd_ticks) - c0 ))
c0=$(qsd_ticks)
# The same, held to the device's one-granule requests: what the cap itself costs.
for i in $(seq "$N"); do
	s=$(date +%s.%N); nbdcopy --request-size=$G "$(fleece_uri)" null: ; e=$(date +%s.%N)
	awk -v a="$s" -v b="$e" 'BEGIN { print b - a }'
done | median > "$tmp/ncg"
t_ncg=$(cat "$tmp/ncg")
c_ncg=$(( $(qsd_ticks) - c0 ))
echo "0 $SIZE" > "$tmp/map"
dev=$("$NBDATTACH" attach --max-request $G "$(fleece_uri)") || { fail "bench-read" "attach full"; exit 1; }
warm "$dev"
t_full=$(read_n "$dev")
"$NBDATTACH" detach "$dev"
echo "bench: whole 1 GiB snapshot: nbdattach $(mbps $SIZE "$t_full") MiB/s, nbdcopy $(mbps $SIZE "$t_nc") MiB/s," \
	"nbdcopy --request-size=$G $(mbps $SIZE "$t_ncg") MiB/s"

r_na=$(mbps "$dirty" "$t_na") r_fu=$(mbps "$dirty" "$t_fu") r_nc=$(mbps $SIZE "$t_nc")
echo "bench: MiB/s (median of $N): nbdattach $r_na, nbdfuse $r_fu, nbdcopy $r_nc"
echo "bench: server CPU per MiB read: nbdattach $(per_mib "$c_na" "$dirty" "$t_na"), nbdcopy" \
	"$(per_mib "$c_nc" $SIZE "$t_nc"), nbdcopy --request-size=$G $(per_mib "$c_ncg" $SIZE "$t_ncg")"
r_ncg=$(mbps $SIZE "$t_ncg")
for f in "nbdattach:$t_na" "nbdfuse:$t_fu" "nbdcopy:$t_nc" "nbdcopy-at-one-granule:$t_ncg"; do
	awk -v t="${f#*:}" 'BEGIN { exit !(t > 0) }' || { fail "bench-read" "no figure for ${f%%:*}"; exit 1; }
done
echo "bench: ratios: nbdattach/nbdfuse $(awk -v a="$r_na" -v b="$r_fu" 'BEGIN { printf "%.2f", a / b }')," \
	"nbdattach/nbdcopy $(awk -v a="$r_na" -v b="$r_nc" 'BEGIN { printf "%.2f", a / b }'),"\
	"nbdattach/nbdcopy-at-one-granule $(awk -v a="$r_na" -v b="$r_ncg" 'BEGIN { printf "%.2f", a / b }')"
awk -v a="$r_na" -v b="$r_fu" 'BEGIN { exit !(a >= 1.2 * b) }' && pass "nbdattach >= 1.2x nbdfuse" ||
	fail "nbdattach >= 1.2x nbdfuse" "$r_na vs $r_fu MiB/s"
awk -v a="$r_na" -v b="$r_nc" 'BEGIN { exit !(a >= 0.9 * b) }' && pass "nbdattach >= 0.9x nbdcopy" ||
	fail "nbdattach >= 0.9x nbdcopy" "$r_na vs $r_nc MiB/s"
