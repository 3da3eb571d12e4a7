#!/bin/bash
# Never hijack: nbd0 by nbd-client, nbd1 merely held open, nbd2 by qemu-nbd -c. attach gets
# another device, those stay untouched, detach refuses each.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-hijack" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

tmp=$(mktmpdir)
img_create "$tmp/a.qcow2" 16M
img_create "$tmp/c.qcow2" 24M
qnbd_start "$tmp/a.qcow2" "$tmp/a.sock" disk || fail "qemu-nbd fixture starts"

check "nbd-client connects nbd0" nbd-client -N disk -unix "$tmp/a.sock" /dev/nbd0 -b 4096
defer "nbd-client -d /dev/nbd0"
sleep 3600 </dev/nbd1 &
holder=$!
defer "kill $holder"
check "qemu-nbd -c connects nbd2" qemu-nbd -r -f qcow2 -c /dev/nbd2 "$tmp/c.qcow2"
defer "qemu-nbd -d /dev/nbd2"
udevadm settle
snap() { for i in 0 1 2; do printf '%s:%s:%s ' "$(cat /sys/block/nbd$i/pid 2>/dev/null)" "$(cat /sys/block/nbd$i/size)" "$(cat /sys/block/nbd$i/backend 2>/dev/null)"; done; }
before=$(snap)

dev=$("$NBDATTACH" attach --tag t "$(qnbd_uri "$tmp/a.sock")")
expect_eq "attach succeeds" 0 "$?"
defer "'$NBDATTACH' detach '$dev'"
case "$dev" in /dev/nbd0|/dev/nbd1|/dev/nbd2) fail "attach picks a free device" "got $dev" ;;
	/dev/nbd*) pass "attach picks a free device ($dev)" ;; *) fail "attach picks a free device" "got '$dev'" ;; esac
expect_eq "nbd0..2 untouched by attach" "$before" "$(snap)"
for d in /dev/nbd0 /dev/nbd1 /dev/nbd2; do
	out=$("$NBDATTACH" detach "$d" 2>&1); rc=$?
	[ "$rc" -ne 0 ] && [ -n "$out" ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && pass "detach refuses $d ($out)" ||
		fail "detach refuses $d" "rc=$rc out=$out"
done
"$NBDATTACH" status /dev/nbd0 >/dev/null; expect_eq "status nbd0 foreign (4)" 4 "$?"
"$NBDATTACH" status /dev/nbd1 >/dev/null; expect_eq "status nbd1 not connected (3)" 3 "$?"
expect_eq "nbd0..2 untouched by detach" "$before" "$(snap)"
check "detach our device" "$NBDATTACH" detach "$dev"
