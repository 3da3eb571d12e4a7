#!/bin/bash
# attach -> whole export read O_DIRECT equals the image -> detach: device free, no state.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-basic" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

tmp=$(mktmpdir)
head -c $((32 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"
img_bitmap_add "$tmp/disk.qcow2" b0
sock=$tmp/nbd.sock
qnbd_start "$tmp/disk.qcow2" "$sock" disk b0 || fail "qemu-nbd fixture starts"

mkdir "$tmp/cwd"
dev=$(cd "$tmp/cwd" && "$NBDATTACH" attach --tag test --name disk0 "$(qnbd_uri "$sock")" 2>"$tmp/err")
rc=$?
expect_eq "attach exits 0 ($(cat "$tmp/err"))" 0 "$rc"
case "$dev" in /dev/nbd[0-9]*) pass "attach prints a device path ($dev)" ;;
	*) fail "attach prints a device path" "got '$dev'"; exit 1 ;; esac
defer "'$NBDATTACH' detach '$dev'"
n=${dev#/dev/nbd}
expect_eq "size matches the export" $((32 << 20)) "$(blockdev --getsize64 "$dev")"
check "backend carries the identifier" grep -q '^nbdattach:test:disk0:' "/sys/block/nbd$n/backend"
check "state file exists" test -f "/run/nbdattach/devices/nbd$n"
check "udev database knows the device" udevadm info --query=property --name="$dev"
check "status says ours (exit 0)" "$NBDATTACH" status "$dev"
mon=$(sed -n 's/^pid=//p' "/run/nbdattach/devices/nbd$n")
expect_eq "the monitor (pid $mon) does not keep attach's directory busy" / "$(readlink "/proc/$mon/cwd")"
# Every descriptor the monitor holds is close-on-exec, the LINK_DEAD socket it took over too.
open_fds=$(for f in /proc/"$mon"/fdinfo/*; do
	fl=$(sed -n 's/^flags:[[:space:]]*//p' "$f")
	[ $(( 0$fl & 02000000 )) = 0 ] && printf '%s ' "${f##*/}"
done)
expect_eq "the monitor's descriptors are all close-on-exec (but 0-2)" "0 1 2 " "$open_fds"
# One device per TAG/NAME: a second would share the stable link /dev/nbdattach/test/disk0.
out=$("$NBDATTACH" attach --tag test --name disk0 "$(qnbd_uri "$sock")" 2>&1); rc=$?
expect_eq "a second test/disk0 is refused, in one line" \
	"1:nbdattach: cannot attach '$(qnbd_uri "$sock")': 'test/disk0' is already attached as $dev (detach it, or run 'nbdattach cleanup' if its helper was killed)" \
	"$rc:$out"
expect_eq "the refused attach left nothing" "1:1" "$(listed ' disk0 '):$(ls /run/nbdattach/devices | wc -l)"
check "list shows it as nbdattach's" sh -c "'$NBDATTACH' list | grep -q '^$dev .*connected.*nbdattach.*test.*disk0'"
check "list --json parses" sh -c "'$NBDATTACH' list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert any(x[\"device\"]==\"$dev\" and x[\"owner\"]==\"nbdattach\" for x in d)'"
if cmp <(dd if="$dev" bs=4M iflag=direct status=none) "$tmp/disk.raw"; then
	pass "O_DIRECT read of $dev is byte-exact"
else
	fail "O_DIRECT read of $dev is byte-exact" "data differs from the image"
fi
check "detach succeeds" "$NBDATTACH" detach "$dev"
check_fails "device no longer started" test -e "/sys/block/nbd$n/pid"
check_fails "state file removed" test -e "/run/nbdattach/devices/nbd$n"
"$NBDATTACH" status "$dev" >/dev/null; expect_eq "status says not connected (exit 3)" 3 "$?"

# --json and --bitmap: read-only, read-ahead 0, one granule per request, no merging, the minor's
# own queue settings put back at detach (another tool's choice, as set here, survives); a
# missing bitmap is refused.
set_free_queues 256 512 1
json=$("$NBDATTACH" attach --json --bitmap b0 --tag test --name bm "$(qnbd_uri "$sock")" 2>"$tmp/err")
rc=$?
expect_eq "attach --bitmap --json exits 0 ($(cat "$tmp/err"))" 0 "$rc"
dev=$(printf %s "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device"])')
n=${dev#/dev/nbd}
expect_eq "attach --json: every documented field, as the kernel and the export have them" \
	"$dev $n $((32 << 20)) 4096 disk test bm $(cat "/sys/block/nbd$n/backend") b0 1 True int" \
	"$(printf %s "$json" | python3 -c 'import json, sys
j = json.load(sys.stdin)
print(j["device"], j["index"], j["size"], j["block_size"], j["export"], j["tag"], j["name"], j["identifier"],
      j["bitmap"], j["connections"], j["read_only"], type(j["flags"]).__name__)')"
expect_eq "attach --json: the kernel's block size is the one reported" 4096 "$(cat "/sys/block/nbd$n/queue/logical_block_size")"
defer "'$NBDATTACH' detach '$dev'"
expect_eq "bitmap device has read_ahead_kb 0" 0 "$(cat "/sys/block/nbd$n/queue/read_ahead_kb")"
expect_eq "bitmap device has max_sectors_kb 64" 64 "$(cat "/sys/block/nbd$n/queue/max_sectors_kb")"
expect_eq "bitmap device has nomerges 2" 2 "$(cat "/sys/block/nbd$n/queue/nomerges")"
expect_eq "bitmap device is read-only" 1 "$(blockdev --getro "$dev")"
check "detach --tag --name" "$NBDATTACH" detach --tag test --name bm
expect_eq "detach puts read_ahead_kb, max_sectors_kb and nomerges back" "256 512 1" \
	"$(cat "/sys/block/nbd$n/queue/read_ahead_kb") $(cat "/sys/block/nbd$n/queue/max_sectors_kb") $(cat "/sys/block/nbd$n/queue/nomerges")"
# --name alone: the tag is "default".
dev=$("$NBDATTACH" attach --name solo "$(qnbd_uri "$sock")")
check "--name alone: the backend names tag default" grep -q '^nbdattach:default:solo:' "/sys/block/${dev#/dev/}/backend"
udevadm settle
expect_eq "--name alone: the link is /dev/nbdattach/default/solo" "$dev" "$(readlink -f /dev/nbdattach/default/solo)"
check "--name alone: detach --tag default --name solo" "$NBDATTACH" detach --tag default --name solo
check_fails "attach --bitmap with a missing bitmap fails" "$NBDATTACH" attach --bitmap nope "$(qnbd_uri "$sock")"
expect_eq "no state left" "" "$(ls /run/nbdattach/devices 2>/dev/null)"
