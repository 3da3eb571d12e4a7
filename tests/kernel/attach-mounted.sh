#!/bin/bash
# detach refuses a mounted device, naming the mountpoint, and leaves it intact.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-mounted" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
truncate -s 64M "$tmp/disk.raw"
qemu-nbd --fork --persistent --format=raw --pid-file="$tmp/q.pid" --socket="$tmp/q.sock" \
	--export-name=disk "$tmp/disk.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid')"
dev=$("$NBDATTACH" attach --tag m "nbd+unix:///disk?socket=$tmp/q.sock")
expect_eq "attach succeeds" 0 "$?"
defer "'$NBDATTACH' detach '$dev'"
check "mkfs.ext4" mkfs.ext4 -q "$dev"
mkdir -p "$tmp/mnt"
check "mount" mount "$dev" "$tmp/mnt"
defer "umount '$tmp/mnt'"
echo hello > "$tmp/mnt/file"; sync
out=$("$NBDATTACH" detach "$dev" 2>&1); rc=$?
[ "$rc" -ne 0 ] && pass "detach refuses a mounted device" || fail "detach refuses a mounted device" "rc=$rc"
case "$out" in *"$tmp/mnt"*) pass "message names the mountpoint ($out)" ;; *) fail "message names the mountpoint" "$out" ;; esac
check "device still connected" test -e "/sys/block/${dev#/dev/}/pid"
expect_eq "data intact" hello "$(cat "$tmp/mnt/file")"
check "unmount" umount "$tmp/mnt"

# Mounted in another mount namespace only (a provider under unshare -m): not in ours.
unshare -m sh -c "mount '$dev' '$tmp/mnt' && echo mounted > '$tmp/ns' && exec sleep 600" &
nspid=$!
defer "kill $nspid 2>/dev/null"
wait_for_file "$tmp/ns"
check_fails "not mounted in our namespace" grep -q "$tmp/mnt" /proc/self/mountinfo
out=$("$NBDATTACH" detach "$dev" 2>&1); rc=$?
expect_eq "detach refuses a device mounted in another namespace ($out)" 1 "$rc"
case "$out" in *"in use (mounted in another mount namespace"*) pass "message says why" ;;
	*) fail "message says why" "$out" ;; esac
check "device still connected" test -e "/sys/block/${dev#/dev/}/pid"
kill "$nspid"; wait "$nspid" 2>/dev/null
check "detach works after unmount" "$NBDATTACH" detach "$dev"
