#!/bin/bash
# A device of ours disconnected while another process still holds it open: the kernel keeps
# its pid and backend files and its size until the last close, and sends no "change" uevent
# before.  detach must not wait for that event (udev timeout 30 s); it exits 0 with one warning
# line, leaves a released/ record that list and status report as held open, drops the stable
# link and ends the device's monitor.  A second detach, detach --tag and cleanup leave the
# device alone (no second NBD_DISCONNECT).  At the last close the kernel releases the minor
# and udev's cleanup --device removes the record.  The same when the server dies and the
# monitor detaches the device, and when run ends while a process outside its group, without its
# run id, holds a volume; a process of the provider's group that run kills is not taken for a
# holder.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "detach-held" "runs only inside the test VM"; exit 0; }
command -v pgrep >/dev/null 2>&1 || { fail "pgrep is installed (procps, tests/setup-deps)" "missing"; exit 1; }

tmp=$(mktmpdir)
head -c $((16 << 20)) /dev/urandom > "$tmp/disk.raw"
# serve NAME: a qemu-nbd of its own, so that one can die without the others.
serve() {
	qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/$1.pid" \
		--socket="$tmp/$1.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd $1 starts"
	defer "kill \$(cat '$tmp/$1.pid') 2>/dev/null"
}
serve q
uri="nbd+unix:///disk?socket=$tmp/q.sock"
started() { test -e "/sys/block/$1/pid"; }
monitor_of() { pgrep -f "nbdattach monitor --identifier $1 " || true; }
disconnects() { kernel_log | grep -c "$1: NBD_DISCONNECT" || true; }
list_line() { "$NBDATTACH" list | awk -v d="/dev/$1" '$1 == d { $1 = ""; print substr($0, 2) }'; }
json_of() {
	"$NBDATTACH" list --json | python3 -c 'import json, sys
d = [x for x in json.load(sys.stdin) if x["device"] == sys.argv[1]][0]
print(d["connected"], d["held_open"], d["owner"], d["tag"], d["name"])' "/dev/$1"
}
# gone_within SECONDS COMMAND...: waits (polling) until COMMAND prints nothing.
gone_within() {
	local n=$(($1 * 10))
	shift
	while [ -n "$("$@")" ] && [ "$n" -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
	[ -z "$("$@")" ]
}

# held_state WHAT N ID: what a device held open after its detach looks like.
held_state() {
	local what=$1 n=$2 id=$3 out rc
	check "$what: the kernel keeps the device while it is open" started "$n"
	expect_eq "$what: list says held-open" "held-open nbdattach h $what -" "$(list_line "$n")"
	expect_eq "$what: list --json" "False True nbdattach h $what" "$(json_of "$n")"
	out=$("$NBDATTACH" status "$n"); rc=$?
	expect_eq "$what: status exits 3" 3 "$rc"
	case "$out" in
	"/dev/$n: not connected (detached, still held open"*) pass "$what: status says held open" ;;
	*) fail "$what: status says held open" "got: $out" ;;
	esac
	expect_eq "$what: the release record names the device's identifier" "NBDATTACH_ID=$id" \
		"$(head -n 1 "/run/nbdattach/released/$n" 2>&1)"
	check_fails "$what: journal entry removed" test -e "/run/nbdattach/devices/$n"
	check_fails "$what: stable link removed" test -e "/dev/nbdattach/h/$what"
	gone_within 20 monitor_of "$id" && pass "$what: the monitor exits" ||
		fail "$what: the monitor exits" "still running: $(monitor_of "$id")"
}

# released_state WHAT N: after the last close.
released_state() {
	udevadm settle
	check_fails "$1: released at the last close" started "$2"
	expect_eq "$1: list says disconnected" "disconnected - - - -" "$(list_line "$2")"
	check_fails "$1: release record removed by udev's cleanup" test -e "/run/nbdattach/released/$2"
}

# --- detach of a device held open by this shell. Its queue settings (here the request cap) are
# put back after the DISCONNECT, while the device is still held: it is ours until the last close.
set_free_queues 256 512 1
dev=$("$NBDATTACH" attach --tag h --name a --max-request 65536 "$uri") || fail "attach a"
n=${dev#/dev/}
queue() { echo "$(cat "/sys/block/$n/queue/read_ahead_kb") $(cat "/sys/block/$n/queue/max_sectors_kb") $(cat "/sys/block/$n/queue/nomerges")"; }
expect_eq "a: requests capped at 64 KiB" "256 64 1" "$(queue)"
id=$(cat "/sys/block/$n/backend")
check "a: stable link made" test -e /dev/nbdattach/h/a
expect_eq "a: one monitor" 1 "$(monitor_of "$id" | wc -l)"
exec 3<"$dev"
timeout -s KILL 25 "$NBDATTACH" detach "$dev" >"$tmp/out" 2>"$tmp/err"; rc=$?
expect_eq "a: detach exits 0 without waiting for the last close ($(cat "$tmp/err"))" 0 "$rc"
expect_eq "a: detach prints nothing on stdout" "" "$(cat "$tmp/out")"
expect_eq "a: one warning line" 1 "$(wc -l < "$tmp/err")"
case "$(cat "$tmp/err")" in
"nbdattach: warning: detached '$dev', but another process still holds it open"*) pass "a: the warning says why" ;;
*) fail "a: the warning says why" "got: $(cat "$tmp/err")" ;;
esac
expect_eq "a: one NBD_DISCONNECT" 1 "$(disconnects "$n")"
expect_eq "a: held open, its queue settings are back" "256 512 1" "$(queue)"
held_state a "$n" "$id"
"$NBDATTACH" detach "$dev" 2>"$tmp/err"; rc=$?
expect_eq "a: a second detach exits 1" 1 "$rc"
case "$(cat "$tmp/err")" in
*"already detached; another process still holds it open"*) pass "a: and says it is already detached" ;;
*) fail "a: and says it is already detached" "got: $(cat "$tmp/err")" ;;
esac
"$NBDATTACH" detach --tag h 2>"$tmp/err"; rc=$?
expect_eq "a: detach --tag finds nothing to detach ($(cat "$tmp/err"))" 1 "$rc"
out=$("$NBDATTACH" cleanup 2>&1); rc=$?
expect_eq "a: cleanup exits 0" 0 "$rc"
expect_eq "a: cleanup leaves it alone" "" "$out"
expect_eq "a: still one NBD_DISCONNECT" 1 "$(disconnects "$n")"
held_state a "$n" "$id"
exec 3<&-
released_state a "$n"

# --- detach of a device nothing holds: no warning, no record.
dev=$("$NBDATTACH" attach --tag h --name b "$uri") || fail "attach b"
"$NBDATTACH" detach "$dev" 2>"$tmp/err"; rc=$?
expect_eq "b: detach exits 0" 0 "$rc"
expect_eq "b: no warning" "" "$(cat "$tmp/err")"
check_fails "b: released" started "${dev#/dev/}"
check_fails "b: no release record" test -e "/run/nbdattach/released/${dev#/dev/}"

# --- the server dies while the device is held open: the monitor detaches it and exits.
serve dead
dev=$("$NBDATTACH" attach --tag h --name c --dead-conn-timeout 0 "nbd+unix:///disk?socket=$tmp/dead.sock") ||
	fail "attach c"
n=${dev#/dev/}
id=$(cat "/sys/block/$n/backend")
before=$(disconnects "$n")
exec 4<"$dev"
kill "$(cat "$tmp/dead.pid")"
gone_within 30 monitor_of "$id" && pass "c: the monitor detaches the device and exits" ||
	fail "c: the monitor detaches the device and exits" "still running"
expect_eq "c: one NBD_DISCONNECT" $((before + 1)) "$(disconnects "$n")"
held_state c "$n" "$id"
exec 4<&-
released_state c "$n"

# --- run: a reader in the provider's group is not a holder, though the helper's SIGKILL leaves
# it closing the device only after freeing 768 MiB (the kernel frees memory before files); a
# reader that left the group with its own session and dropped the run id (run kills whatever
# carries it) is.
cat > "$tmp/provider" <<EOF
#!/bin/bash
python3 -c 'import sys, time
b = bytearray(768 << 20)
open(sys.argv[1], "w").close()
time.sleep(600)' "$tmp/big-ready" < /dev/nbdattach/h/d &
echo \$! > "$tmp/big.pid"
env -u NBDATTACH_RUN_ID setsid -f sleep 601 < /dev/nbdattach/h/e 3>&- 4>&- 5>&-
while [ ! -e "$tmp/big-ready" ]; do sleep 0.1; done
exit 0
EOF
chmod +x "$tmp/provider"
# Whatever a failed check leaves holding a minor must not outlive the test.
defer "kill -KILL \$(cat '$tmp/big.pid') 2>/dev/null; pkill -KILL -x -f 'sleep 601'"
timeout -s KILL 120 "$NBDATTACH" run --tag h --no-discard --volume "name=d,uri=$uri" \
	--volume "name=e,uri=$uri" -- "$tmp/provider" 2>"$tmp/err"; rc=$?
expect_eq "run: exits 0 ($(tail -n 1 "$tmp/err"))" 0 "$rc"
grep 'warning' "$tmp/err" > "$tmp/warn"
expect_eq "run: one warning line, for e" 1 "$(wc -l < "$tmp/warn")"
case "$(cat "$tmp/warn")" in
"nbdattach: warning: detached volume 'e' (/dev/nbd"*"), but a process outside the run still holds it open"*)
	pass "run: the warning names e" ;;
*) fail "run: the warning names e" "got: $(cat "$tmp/warn")" ;;
esac
holder=$(pgrep -x -f "sleep 601")
n=$(basename "$(readlink "/proc/$holder/fd/0")")
case "$n" in nbd*) pass "run: the holder of e has $n open" ;; *) fail "run: the holder of e has an nbd device open" "fd 0: $n" ;; esac
expect_eq "run: e is held open" "held-open" "$(list_line "$n" | awk '{ print $1 }')"
expect_eq "run: only e is left" 1 "$("$NBDATTACH" list | grep -c -v ' disconnected ')"
kill "$holder"
gone_within 10 pgrep -x -f "sleep 601" || fail "run: the holder exits"
released_state e "$n"
expect_eq "nothing left in the state directory" "" "$(find /run/nbdattach -type f 2>/dev/null)"

echo "# detach-held: $(count_io_errors) I/O error lines in the kernel log (reads of a dead device)"
