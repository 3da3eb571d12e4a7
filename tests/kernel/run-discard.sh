#!/bin/bash
# Unaligned acknowledgements never produce an unaligned TRIM: against nbdkit's log filter the
# exact TRIMs are whole 64 KiB granules, sent once a granule is complete; against the QEMU 7.2
# fleecing fixture (which aborts on an unaligned TRIM) providers acknowledging in 4 KiB and in
# granule-straddling 1000-byte pieces leave it running and its fleecing image empty. The
# provider gets exactly descriptors 0-2, 3 (acks) and 4.. (maps).
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "run-discard" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
. "$TOP/tests/fixtures/fleecing.sh"

tmp=$(mktmpdir)
G=65536
nbdkit -U "$tmp/k.sock" -P "$tmp/k.pid" --filter=log memory 64M logfile="$tmp/k.log" || fail "nbdkit starts"
defer "kill \$(cat '$tmp/k.pid')"
cat > "$tmp/acker" <<'SH'
#!/bin/sh
# 1 byte, 4 KiB, the rest of granule 0; a 2-byte ack straddling granules 1 and 2; ...
for a in "0 1" "1 4095" "4096 61440" "131071 2" "65536 65535" "131073 65535" "200000 300000" "196608 3392"; do
	echo "d $a" >&3
done
SH
chmod +x "$tmp/acker"
"$NBDATTACH" run --volume "name=d,uri=nbd+unix:///?socket=$tmp/k.sock" -- "$tmp/acker" 2>"$tmp/acker.err"
expect_eq "run with unaligned acks exits 0 ($(tail -n 1 "$tmp/acker.err"))" 0 "$?"
trims=$(sed -n 's/.* Trim id=[0-9]* offset=\(0x[0-9a-f]*\) count=\(0x[0-9a-f]*\).*/\1 \2/p' "$tmp/k.log" | tr '\n' ',')
expect_eq "the server saw exactly the whole granules, each once complete" \
	"0x0 0x10000,0x10000 0x10000,0x20000 0x10000,0x40000 0x30000,0x30000 0x10000," "$trims"
bad=$(sed -n 's/.* Trim id=[0-9]* offset=\(0x[0-9a-f]*\) count=\(0x[0-9a-f]*\).*/\1 \2/p' "$tmp/k.log" |
	while read -r o c; do [ $((o % G)) = 0 ] && [ $((c % G)) = 0 ] || echo "$o+$c"; done)
expect_eq "no unaligned TRIM in the server's log" "" "$bad"

# What the provider inherits: 0, 1, 2, the ack pipe and one map per volume, nothing else.
fds=$("$NBDATTACH" run --volume "name=d,uri=nbd+unix:///?socket=$tmp/k.sock" --volume "name=e,uri=nbd+unix:///?socket=$tmp/k.sock" -- \
	python3 -c 'import os; print(" ".join(str(f) for f in sorted(int(x) for x in os.listdir("/proc/self/fd"))[:-1]))' 2>/dev/null)
expect_eq "the provider inherits exactly fds 0-2, 3 (acks), 4 and 5 (maps)" "0 1 2 3 4 5" "$fds"

# QEMU 7.2's copy-before-write survives providers acknowledging in odd pieces.
img_create "$tmp/source.qcow2" 32M $G
img_bitmap_add "$tmp/source.qcow2" b0 $G
img_write "$tmp/source.qcow2" $((1 << 20)) $((5 * G)) 0x11
img_write "$tmp/source.qcow2" $((9 << 20)) $((3 * G)) 0x12
for chunk in 4096 1000 65535; do
	mkdir -p "$tmp/out$chunk"
	fleece_start "$tmp" 32M b0 $G || { fail "fleecing fixture starts"; break; }
	PROVIDER_ACK_CHUNK=$chunk "$NBDATTACH" run --volume "name=disk,bitmap=backup-b0,uri=$(fleece_uri)" -- \
		"$BUILD/examples/provider" "$tmp/out$chunk" >/dev/null 2>"$tmp/q$chunk.err"
	expect_eq "acks in $chunk-byte pieces: run exits 0 ($(tail -n 1 "$tmp/q$chunk.err"))" 0 "$?"
	check "acks in $chunk-byte pieces: qemu-storage-daemon still runs" kill -0 "$(cat "$tmp/qsd.pid")"
	grep -q "discarded $((8 * G)) bytes" "$tmp/q$chunk.err" && pass "acks in $chunk-byte pieces: all 8 granules discarded" ||
		fail "acks in $chunk-byte pieces: all 8 granules discarded" "$(tail -n 1 "$tmp/q$chunk.err")"
	fleece_stop
done

# The anchor: what one unaligned TRIM does to QEMU 7.2 (so the checks above can fail).
fleece_start "$tmp" 32M b0 $G || fail "fleecing fixture starts"
qsd=$(cat "$tmp/qsd.pid")
"$NBDATTACH" discard --granularity 4096 "$(fleece_uri)" $((1 << 20)) 8192 >/dev/null 2>&1
for i in $(seq 50); do kill -0 "$qsd" 2>/dev/null || break; sleep 0.1; done
check_fails "anchor: one TRIM of 8 KiB inside a 64 KiB cluster kills qemu-storage-daemon" kill -0 "$qsd"
