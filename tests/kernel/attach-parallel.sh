#!/bin/bash
# Eight attaches at once: eight distinct devices; detaching all leaves none.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-parallel" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

tmp=$(mktmpdir)
img_create "$tmp/a.qcow2" 16M
qnbd_start "$tmp/a.qcow2" "$tmp/a.sock" disk || fail "qemu-nbd fixture starts"
defer "'$NBDATTACH' detach --tag par"
pids=
for i in 1 2 3 4 5 6 7 8; do
	"$NBDATTACH" attach --tag par --name "d$i" "$(qnbd_uri "$tmp/a.sock")" >"$tmp/out$i" 2>"$tmp/err$i" &
	pids="$pids $!"
done
ok=0
for p in $pids; do wait "$p" && ok=$((ok + 1)); done
expect_eq "8 attaches succeed ($(cat "$tmp"/err* | head -2 | tr '\n' ' '))" 8 "$ok"
expect_eq "8 distinct devices" 8 "$(cat "$tmp"/out* | sort -u | grep -c '^/dev/nbd')"
expect_eq "8 state files" 8 "$(ls /run/nbdattach/devices | wc -l)"
check "detach --tag detaches all" "$NBDATTACH" detach --tag par
expect_eq "no device of ours left" 0 "$(listed)"
expect_eq "no state left" "" "$(ls /run/nbdattach/devices 2>/dev/null)"
