#!/bin/bash
# attach's options against real servers: no TRIM/WRITE_ZEROES ever reaches the kernel (discards
# go through nbdattach, aligned), --read-only, --no-monitor, --connections with multi-conn,
# --timeout (a request that times out fails and the device is released), detach --force.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-options" "runs only inside the test VM"; exit 0; }
# Several checks are "this fails": a missing tool would make them pass.
for t in nbdkit nbdinfo nbd-client blkdiscard pgrep; do
	command -v "$t" >/dev/null || { skip "attach-options" "$t not installed"; exit 0; }
done

tmp=$(mktmpdir)
connected() { test -e "/sys/block/${1#/dev/}/pid"; }
head -c $((8 << 20)) /dev/urandom > "$tmp/disk.raw"
cp "$tmp/disk.raw" "$tmp/orig.raw"

# A writable export that offers TRIM and WRITE_ZEROES.
qemu-nbd --fork --persistent --shared=8 --format=raw --discard=unmap --pid-file="$tmp/w.pid" \
	--socket="$tmp/w.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd (writable) starts"
defer "kill \$(cat '$tmp/w.pid')"
wait_for_file "$tmp/w.sock"
uri="nbd+unix:///disk?socket=$tmp/w.sock"
check "the server offers TRIM" sh -c "nbdinfo --json '$uri' | grep -q '\"can_trim\": true'"

dev=$("$NBDATTACH" attach "$uri")
check "attach a writable export" test -b "$dev"
q=/sys/block/${dev#/dev/}/queue
expect_eq "the kernel never gets TRIM (discard_max_bytes)" 0 "$(cat "$q/discard_max_bytes")"
expect_eq "nor WRITE_ZEROES (write_zeroes_max_bytes)" 0 "$(cat "$q/write_zeroes_max_bytes")"
check_fails "blkdiscard on the device fails" blkdiscard -o 0 -l 65536 "$dev"
cmp -s "$tmp/disk.raw" "$tmp/orig.raw" && pass "the image is untouched by the refused discard" ||
	fail "the image is untouched by the refused discard"
check "writes go through" dd if=/dev/zero of="$dev" bs=64k count=1 seek=3 oflag=direct status=none
expect_eq "and land in the image" "$(head -c 65536 /dev/zero | md5sum)" \
	"$(dd if="$tmp/disk.raw" bs=64k skip=3 count=1 status=none | md5sum)"
check "detach" "$NBDATTACH" detach "$dev"

# --read-only on a writable export.
dev=$("$NBDATTACH" attach --read-only "$uri")
check "attach --read-only" test -b "$dev"
expect_eq "the device is read-only" 1 "$(blockdev --getro "$dev")"
check_fails "a write fails" dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none
check "detach" "$NBDATTACH" detach "$dev"

# --no-monitor: nothing but the device (and its journal entry: an attached device's, no pid).
dev=$("$NBDATTACH" attach --no-monitor "$uri")
check "attach --no-monitor" test -b "$dev"
id=$(cat "/sys/block/${dev#/dev/}/backend")
# The positive control first: the same pattern finds the monitor of a device that has one.
dev2=$("$NBDATTACH" attach "$uri")
check "the pattern finds a monitor that runs" pgrep -f "nbdattach monitor --identifier $(cat "/sys/block/${dev2#/dev/}/backend")"
check "detach the monitored one" "$NBDATTACH" detach "$dev2"
check_fails "no monitor runs for it" pgrep -f "nbdattach monitor --identifier $id"
expect_eq "its journal entry: owner attach, pid 0" "attach 0" \
	"$(sed -n 's/^owner=//p' "/run/nbdattach/devices/${dev#/dev/}") $(sed -n 's/^pid=//p' "/run/nbdattach/devices/${dev#/dev/}")"
check "detach" "$NBDATTACH" detach "$dev"
check_fails "detached" connected "$dev"

# --connections 2: a read-only qemu-nbd export advertises multi-conn.
qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/r.pid" \
	--socket="$tmp/r.sock" --export-name=disk "$tmp/orig.raw" || fail "qemu-nbd (read-only) starts"
defer "kill \$(cat '$tmp/r.pid')"
wait_for_file "$tmp/r.sock"
dev=$("$NBDATTACH" attach --connections 2 "nbd+unix:///disk?socket=$tmp/r.sock")
check "attach --connections 2" test -b "$dev"
check "the journal records 2 connections" grep -qx 'connections=2' "/run/nbdattach/devices/${dev#/dev/}"
if cmp -s <(dd if="$dev" bs=1M iflag=direct status=none) "$tmp/orig.raw"; then
	pass "a read over 2 connections is byte-exact"
else
	fail "a read over 2 connections is byte-exact"
fi
check "detach" "$NBDATTACH" detach "$dev"

# --timeout: a server that, once $tmp/slow exists, answers reads only after 30 s (before, a
# read during attach would time out and fail the attach itself). The read fails when its
# request times out, and the monitor releases the device.
nbdkit -U "$tmp/slow.sock" -P "$tmp/slow.pid" eval get_size='echo 8388608' \
	pread="[ -e '$tmp/slow' ] && sleep 30; dd if=/dev/zero bs=\$3 count=1 status=none" ||
	fail "nbdkit (slow reads) starts"
defer "kill \$(cat '$tmp/slow.pid') 2>/dev/null"
dev=$("$NBDATTACH" attach --timeout 2 "nbd+unix:///?socket=$tmp/slow.sock")
check "attach --timeout 2" test -b "$dev"
touch "$tmp/slow"
t0=$(date +%s)
check_fails "a read that the server does not answer in time fails" \
	dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
el=$(( $(date +%s) - t0 ))
[ "$el" -lt 25 ] && pass "it failed after the timeout, not the server's delay (${el} s)" ||
	fail "it failed after the timeout" "${el} s"
for i in $(seq 100); do connected "$dev" || break; sleep 0.1; done
check_fails "the monitor released the device" connected "$dev"
kernel_log | grep -q "${dev#/dev/}: Connection timed out" && pass "the kernel logged the timeout" ||
	fail "the kernel logged the timeout" "$(kernel_log | grep "${dev#/dev/}" | tail -n 3)"
udevadm settle
expect_eq "no journal entry left" "" "$(ls /run/nbdattach/devices 2>/dev/null)"

# A server that refuses requests above 64 KiB (and says so): the kernel's requests stay within.
nbdkit -U "$tmp/max.sock" -P "$tmp/max.pid" --filter=blocksize-policy memory 8M \
	blocksize-maximum=65536 blocksize-error-policy=error || fail "nbdkit (64 KiB maximum) starts"
defer "kill \$(cat '$tmp/max.pid')"
set_free_queues "" 384 ""   # another tool's choice, to be put back at detach
dev=$("$NBDATTACH" attach "nbd+unix:///?socket=$tmp/max.sock")
check "attach to a server with a 64 KiB maximum" test -b "$dev"
expect_eq "max_sectors_kb is the server's maximum" 64 "$(cat "/sys/block/${dev#/dev/}/queue/max_sectors_kb")"
check "a 1 MiB O_DIRECT read succeeds" dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none
check "detach" "$NBDATTACH" detach "$dev"
expect_eq "the device's own max_sectors_kb is back" 384 "$(cat "/sys/block/${dev#/dev/}/queue/max_sectors_kb")"

# detach --force: a device attached by another tool is refused without it.
check "nbd-client connects a device" nbd-client -N disk -unix "$tmp/r.sock" /dev/nbd7 -b 4096
out=$("$NBDATTACH" detach /dev/nbd7 2>&1); rc=$?
expect_eq "detach refuses another tool's device ($out)" 1 "$rc"
check "still connected" connected /dev/nbd7
check "detach --force takes it" "$NBDATTACH" detach --force /dev/nbd7
udevadm settle
check_fails "disconnected" connected /dev/nbd7

# The longest bitmap name (1006 characters: a region map's context holds 1024) is checked whole
# by attach, and run maps it; a server offering only a bitmap named by its start is refused.
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"
long=$(printf 'b%.0s' $(seq 1006))
img_create "$tmp/long.qcow2" 1M
img_bitmap_add "$tmp/long.qcow2" "$long"
img_write "$tmp/long.qcow2" 65536 4096
qnbd_start "$tmp/long.qcow2" "$tmp/long.sock" disk "$long"
img_create "$tmp/prefix.qcow2" 1M
img_bitmap_add "$tmp/prefix.qcow2" "${long:0:301}"
qnbd_start "$tmp/prefix.qcow2" "$tmp/prefix.sock" disk "${long:0:301}"
dev=$("$NBDATTACH" attach --bitmap "$long" "$(qnbd_uri "$tmp/long.sock")" 2>"$tmp/long.err")
check "attach --bitmap with a 1006-character name ($dev$(cat "$tmp/long.err"))" test -b "$dev"
[ -b "$dev" ] && "$NBDATTACH" detach "$dev"
out=$("$NBDATTACH" attach --bitmap "$long" "$(qnbd_uri "$tmp/prefix.sock")" 2>&1)
rc=$?
if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] &&
	[[ "$out" == *"does not offer dirty bitmap '${long:0:64}...'"* ]]; then
	pass "attach refuses a server that offers only the name's first 301 characters"
else
	fail "attach refuses a server that offers only the name's first 301 characters" "exit $rc: $out"
fi
"$NBDATTACH" run --volume "name=l,bitmap=$long,uri=$(qnbd_uri "$tmp/long.sock")" -- \
	sh -c 'printf "%s" "$NBDATTACH_RUN" > "$1"' provider "$tmp/long.json" 2>"$tmp/run.err"
rc=$?
expect_eq "run with a 1006-character bitmap name: exit 0 ($(tr '\n' ' ' < "$tmp/run.err"))" 0 "$rc"
expect_eq "run's description names the whole bitmap" "$long" \
	"$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["volumes"][0]["bitmap"])' "$tmp/long.json")"
check "run mapped the one dirty granule" grep -q "map 1 regions 65536 bytes" "$tmp/run.err"
