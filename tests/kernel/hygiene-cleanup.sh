#!/bin/bash
# Devices that go away behind nbdattach's back, and records nothing accounts for:
# - the server killed while attached: the device's monitor releases it within the configured
#   timeouts; a read in flight gets an error instead of hanging; no stale entry or state;
# - detached by another tool: udev runs `nbdattach cleanup --device`, records and link go;
# - `nbdattach cleanup` removes a journal entry of a device that is not connected, a claim of a
#   dead helper, and disconnects a device of ours that nothing accounts for, or whose attach was
#   killed before it started the device's monitor;
# - a device detached and reused behind a run's back: the run's release leaves the new owner's
#   device and records alone;
# - another tool's device whose connecting pid matches a leftover claim is not adopted by udev;
# - a journal entry's helper pid recycled by a younger nbdattach process does not keep a device.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "hygiene-cleanup" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
head -c $((32 << 20)) /dev/urandom > "$tmp/disk.raw"
start_server() { # NAME
	qemu-nbd --fork --persistent --shared=8 --format=raw --pid-file="$tmp/$1.pid" \
		--socket="$tmp/$1.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd $1 starts"
	defer "kill \$(cat '$tmp/$1.pid') 2>/dev/null"
}
state_files() { find /run/nbdattach -type f 2>/dev/null | sort | tr '\n' ' '; }
ours() { listed; }

# --- server killed, no dead-connection grace: released at once, the reader gets EIO.
start_server s1
dev=$("$NBDATTACH" attach --tag clean --name s1 "nbd+unix:///disk?socket=$tmp/s1.sock")
expect_eq "attach" 0 "$?"
n=${dev#/dev/}
mon=$(sed -n 's/^pid=//p' "/run/nbdattach/devices/$n")
check "its monitor runs" test "$(cat /proc/"$mon"/comm 2>/dev/null)" = nbdattach
dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
kill -STOP "$(cat "$tmp/s1.pid")"
# A read the server will never answer, then the server dies.
(dd if="$dev" of=/dev/null bs=4096 count=1 skip=100 iflag=direct status=none; echo "rc=$?" > "$tmp/dd.rc") &
# Kill the server only once the kernel has the read in flight (at most 10 s).
inflight() { local r w; read -r r w < "/sys/block/$n/inflight" && [ "$r" -gt 0 ]; }
for i in $(seq 100); do inflight && break; sleep 0.1; done
check "a read is in flight to the stopped server ($(cat "/sys/block/$n/inflight" 2>/dev/null | tr -s ' '))" inflight
t0=$(date +%s)
kill -KILL "$(cat "$tmp/s1.pid")"
for i in $(seq 300); do [ -e "/sys/block/$n/pid" ] || break; sleep 0.1; done
t1=$(date +%s)
check_fails "device released after the server died ($((t1 - t0)) s)" test -e "/sys/block/$n/pid"
for i in $(seq 100); do [ -e "$tmp/dd.rc" ] && break; sleep 0.1; done
case "$(cat "$tmp/dd.rc" 2>/dev/null)" in rc=0|"") fail "the read in flight fails instead of hanging" "$(cat "$tmp/dd.rc" 2>/dev/null)" ;;
	*) pass "the read in flight fails instead of hanging" ;; esac
udevadm settle
expect_eq "list shows no device of ours" 0 "$(ours)"
expect_eq "state directory empty" "" "$(state_files)"
check_fails "monitor exited" test -d "/proc/$mon"
check_fails "link gone" test -e /dev/nbdattach/clean/s1

# --- dead-connection grace: the device waits --dead-conn-timeout, then goes.
start_server s2
dev=$("$NBDATTACH" attach --tag clean --name s2 --dead-conn-timeout 3 "nbd+unix:///disk?socket=$tmp/s2.sock")
n=${dev#/dev/}
t0=$(date +%s.%N)
kill -KILL "$(cat "$tmp/s2.pid")"
sleep 1.5
check "still there within the grace period" test -e "/sys/block/$n/pid"
for i in $(seq 300); do [ -e "/sys/block/$n/pid" ] || break; sleep 0.1; done
el=$(seconds_since "$t0")
check_fails "released after the grace period (${el} s)" test -e "/sys/block/$n/pid"
# Not later than the grace and the teardown can explain (udev under TCG included).
awk -v e="$el" 'BEGIN { exit !(e >= 3 && e < 12) }' && pass "released 3 to 12 s after the server died ($el s)" ||
	fail "released 3 to 12 s after the server died" "$el s"
udevadm settle
expect_eq "state directory empty after the grace period" "" "$(state_files)"

# --- detached by someone else: udev's rule cleans up.
start_server s3
dev=$("$NBDATTACH" attach --tag clean --name s3 "nbd+unix:///disk?socket=$tmp/s3.sock")
n=${dev#/dev/}
check "link exists" test -e /dev/nbdattach/clean/s3
check "nbd-client -d disconnects our device" nbd-client -d "$dev"
udevadm settle
check_fails "link gone" test -e /dev/nbdattach/clean/s3
expect_eq "udev's cleanup removed the records" "" "$(state_files)"

# --- nbdattach cleanup reconciles by itself.
dev=$("$NBDATTACH" attach --tag clean --name s4 "nbd+unix:///disk?socket=$tmp/s3.sock")
n=${dev#/dev/}
mon=$(sed -n 's/^pid=//p' "/run/nbdattach/devices/$n")
kill "$mon"
rm "/run/nbdattach/devices/$n"            # as if the helper died before its journal entry
printf 'index=77\nidentifier=nbdattach:x:y:0123456789abcdef0123456789abcdef\nsize=1048576\nblock-size=4096\n' \
	> /run/nbdattach/devices/nbd77      # a device that is not connected
printf 'NBDATTACH_ID=nbdattach:x:z:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=x\nNBDATTACH_NAME=z\n' \
	> /run/nbdattach/claims/999999      # a helper that no longer runs
out=$("$NBDATTACH" cleanup 2>&1)
expect_eq "cleanup exits 0 ($out)" 0 "$?"
case "$out" in *"$dev: detached"*) pass "cleanup detached the unaccounted device" ;;
	*) fail "cleanup detached the unaccounted device" "$out" ;; esac
udevadm settle
check_fails "that device is free" test -e "/sys/block/$n/pid"
expect_eq "state directory empty after cleanup" "" "$(state_files)"
check "cleanup with nothing to do" "$NBDATTACH" cleanup

# --- an attach killed after its journal entry, before it started the monitor.
NBDATTACH_FAULT=journaled:s5 "$NBDATTACH" attach --tag clean --name s5 "nbd+unix:///disk?socket=$tmp/s3.sock" >/dev/null 2>&1
expect_eq "attach killed at its journaled step" 137 "$?"
rec=$(grep -l '^name=s5$' /run/nbdattach/devices/nbd* 2>/dev/null)
n=${rec##*/}
check "its journal entry says attaching" grep -qx 'owner=attaching' "$rec"
out=$("$NBDATTACH" cleanup 2>&1)
case "$out" in *"/dev/$n: detached (its attach was killed)"*) pass "cleanup detached it" ;;
	*) fail "cleanup detached it" "$out" ;; esac
udevadm settle
check_fails "that device is free" test -e "/sys/block/$n/pid"
expect_eq "state directory empty after that cleanup" "" "$(state_files)"

# --- detached and reused behind a run's back.
printf '%s\n' '#!/bin/sh' \
	'python3 -c "import json, os; print(json.loads(os.environ[\"NBDATTACH_RUN\"])[\"volumes\"][0][\"device\"])" > "$1/dev.tmp"' \
	'mv "$1/dev.tmp" "$1/dev"' \
	'while [ ! -e "$1/go" ]; do sleep 0.1; done' > "$tmp/provider"
chmod +x "$tmp/provider"
"$NBDATTACH" run --tag clean --volume "name=r1,uri=nbd+unix:///disk?socket=$tmp/s3.sock" -- "$tmp/provider" "$tmp" &
rpid=$!
for i in $(seq 300); do [ -e "$tmp/dev" ] && break; sleep 0.1; done
rdev=$(cat "$tmp/dev")
check "someone else detaches the run's device" "$NBDATTACH" detach "$rdev"
dev=$("$NBDATTACH" attach --tag clean --name s6 "nbd+unix:///disk?socket=$tmp/s3.sock")
expect_eq "a new attach gets the same minor" "$rdev" "$dev"
touch "$tmp/go"
wait "$rpid"
udevadm settle
check "the new owner's device is still connected" test -e "/sys/block/${dev#/dev/}/pid"
check "and still journaled" grep -qx 'name=s6' "/run/nbdattach/devices/${dev#/dev/}"
check "and still linked" test -e /dev/nbdattach/clean/s6
check "detach it" "$NBDATTACH" detach "$dev"
udevadm settle
expect_eq "state directory empty after the reuse" "" "$(state_files)"

# --- another tool's device is never adopted through a leftover claim of its connecting pid.
check "nbd-client connects a device (its backend file empty)" \
	nbd-client -N disk -unix "$tmp/s3.sock" /dev/nbd0 -b 4096
cpid=$(cat /sys/block/nbd0/pid 2>/dev/null)
printf 'NBDATTACH_ID=nbdattach:x:z:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=x\nNBDATTACH_NAME=z\n' \
	> "/run/nbdattach/claims/$cpid"
udevadm trigger --action=change /sys/block/nbd0
udevadm settle
check_fails "udev does not take it for ours" sh -c 'udevadm info --query=property /dev/nbd0 | grep -qx NBDATTACH=1'
check_fails "no link for it" test -e /dev/nbdattach/x/z
rm -f "/run/nbdattach/claims/$cpid"
nbd-client -d /dev/nbd0 >/dev/null
udevadm settle

# --- the helper's identity is its pid and its start in clock ticks since boot, not the wall
# clock: an entry dated 1970 (as after the clock stepped forward past a live run) naming a live
# nbdattach process with its own start is that helper's (here: the device's own monitor).
dev=$("$NBDATTACH" attach --tag clean --name s7 "nbd+unix:///disk?socket=$tmp/s3.sock")
n=${dev#/dev/}
mon=$(sed -n 's/^pid=//p' "/run/nbdattach/devices/$n")
check "the entry records its helper's start" grep -qx "start=$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$mon/stat")" \
	"/run/nbdattach/devices/$n"
sed -e 's/^owner=.*/owner=run/' -e 's/^time=.*/time=1000/' "/run/nbdattach/devices/$n" > "$tmp/rec"
cp "$tmp/rec" "/run/nbdattach/devices/$n"
out=$("$NBDATTACH" cleanup 2>&1); rc=$?
expect_eq "cleanup: a live helper is alive whatever the wall clock says" "0:" "$rc:$out"
check "its device is still connected" test -e "/sys/block/$n/pid"
# A recycled pid is not the helper: the same entry with another start.
sed -i 's/^start=.*/start=1/' "$tmp/rec"
cp "$tmp/rec" "/run/nbdattach/devices/$n"
out=$("$NBDATTACH" cleanup 2>&1)
case "$out" in *"$dev: detached (its run was killed)"*) pass "cleanup: a younger process with the run's pid is not the run" ;;
	*) fail "cleanup: a younger process with the run's pid is not the run" "$out" ;; esac
udevadm settle
for i in $(seq 50); do [ -d "/proc/$mon" ] || break; sleep 0.1; done
check_fails "its monitor exited" test -d "/proc/$mon"
expect_eq "state directory empty after the recycled pid" "" "$(state_files)"

# --- an attach forgets the claims of helpers that died while attaching (killed between claim
# and CONNECT): udev would take a device connected by a process reusing that pid for ours.
printf 'NBDATTACH_ID=nbdattach:x:z:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=x\nNBDATTACH_NAME=z\n' \
	> /run/nbdattach/claims/999999
printf 'NBDATTACH_ID=nbdattach:x:w:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=x\nNBDATTACH_NAME=w\n' \
	> "/run/nbdattach/claims/$$"       # a live process, but not nbdattach
dev=$("$NBDATTACH" attach --tag clean --name s8 "nbd+unix:///disk?socket=$tmp/s3.sock")
check "attach with dead helpers' claims around" test -b "$dev"
check_fails "the dead helper's claim is gone" test -e /run/nbdattach/claims/999999
check_fails "the claim under a non-helper's pid is gone" test -e "/run/nbdattach/claims/$$"
check "detach it" "$NBDATTACH" detach "$dev"
udevadm settle
expect_eq "state directory empty after the dead claims" "" "$(state_files)"

# --- a dead helper's claim naming a device that a journal entry accounts for: the entry decides
# (a claim's liveness rests on wall-clock time, and a helper may die between its entry and the
# claim's commit), so a live attach's device stays.
dev=$("$NBDATTACH" attach --tag clean --name s9 "nbd+unix:///disk?socket=$tmp/s3.sock")
n=${dev#/dev/}
id=$(sed -n 's/^identifier=//p' "/run/nbdattach/devices/$n")
printf 'NBDATTACH_ID=%s\nNBDATTACH_TAG=clean\nNBDATTACH_NAME=s9\n' "$id" > /run/nbdattach/claims/999998
out=$("$NBDATTACH" cleanup 2>&1)
expect_eq "journaled device under a dead claim: cleanup exits 0, detaches nothing" "0:" "$?:$out"
check "journaled device under a dead claim: still connected" test -e "/sys/block/$n/pid"
check_fails "journaled device under a dead claim: the claim is gone" test -e /run/nbdattach/claims/999998
check "detach it" "$NBDATTACH" detach "$dev"
udevadm settle
expect_eq "state directory empty after the journaled claim" "" "$(state_files)"

# --- a udev record left for a minor that is no longer connected (detached behind our back)
# must not give the next device on that minor its old tag and name.
for k in 0 1 2 3; do
	[ -e "/sys/block/nbd$k/pid" ] && continue
	printf 'NBDATTACH_ID=nbdattach:old:stale:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=old\nNBDATTACH_NAME=stale\n' \
		> "/run/nbdattach/udev/nbd$k"
done
dev=$("$NBDATTACH" attach --tag clean --name s9 "nbd+unix:///disk?socket=$tmp/s3.sock")
check "attach with stale udev records around" test -b "$dev"
check "its own link" test -e /dev/nbdattach/clean/s9
check_fails "no link from the stale record" test -e /dev/nbdattach/old/stale
check_fails "the stale records are gone" grep -qs 'NBDATTACH_TAG=old' /run/nbdattach/udev/nbd0 \
	/run/nbdattach/udev/nbd1 /run/nbdattach/udev/nbd2 /run/nbdattach/udev/nbd3
check "detach it" "$NBDATTACH" detach "$dev"
udevadm settle
expect_eq "state directory empty after the stale records" "" "$(state_files)"
# detach of a minor that is not connected drops both of its records.
for k in 0 1 2 3; do [ -e "/sys/block/nbd$k/pid" ] || break; done
printf 'NBDATTACH_ID=nbdattach:old:stale:0123456789abcdef0123456789abcdef\nNBDATTACH_TAG=old\nNBDATTACH_NAME=stale\n' \
	> "/run/nbdattach/udev/nbd$k"
check_fails "detach of an unconnected minor fails" "$NBDATTACH" detach "/dev/nbd$k"
check_fails "and drops its udev record" test -e "/run/nbdattach/udev/nbd$k"

# --- cleanup asks the server of a device whose monitor is not watching (--no-monitor): a server
# that is only slow (stopped) is not gone; one that no longer accepts connections is.
start_server s10
dev=$("$NBDATTACH" attach --no-monitor --tag clean --name s10 "nbd+unix:///disk?socket=$tmp/s10.sock")
check "attach --no-monitor" test -b "$dev"
kill -STOP "$(cat "$tmp/s10.pid")"
t0=$(date +%s)
out=$("$NBDATTACH" cleanup --probe-timeout 1 2>&1); rc=$?
el=$(( $(date +%s) - t0 ))
kill -CONT "$(cat "$tmp/s10.pid")"
expect_eq "cleanup with a stopped server: nothing done, within the probe timeout ($el s)" "0:" "$rc:$out"
check "the device of a slow server stays" test -e "/sys/block/${dev#/dev/}/pid"
kill -KILL "$(cat "$tmp/s10.pid")"
out=$("$NBDATTACH" cleanup 2>&1); rc=$?
expect_eq "cleanup with the server gone: the device detached" "0:$dev: detached (its server is gone)" "$rc:$out"
check_fails "and no longer connected" test -e "/sys/block/${dev#/dev/}/pid"
udevadm settle
expect_eq "state directory empty after the server-gone cleanup" "" "$(state_files)"
