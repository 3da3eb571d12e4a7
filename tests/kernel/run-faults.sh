#!/bin/bash
# nbdattach run when things go wrong:
# - the helper SIGKILLed at every journal step (NBDATTACH_FAULT), then `nbdattach cleanup`:
#   no device, no child process, no state;
# - an attach failure on the third of four volumes: none stays attached;
# - the provider crashes: everything detached, its status reported;
# - the server dies mid-backup: the provider sees EIO, run exits non-zero within the
#   configured timeouts, the device is released;
# - SIGTERM is forwarded to the provider, SIGKILL follows after --grace;
# - a parent with children of its own gets them back untouched;
# - the provider's group does not outlive it, nor what left the group; a caller ignoring
#   SIGCHLD; exec failures (126, 127); map writers killed by someone else; NBDATTACH_RUN_ID
#   first in a big environment; the helper killed while it releases a volume whose server
#   died; a provider stuck in a read its hung server never answers, outliving SIGKILL, is freed
#   by detaching its volume; a server with one client slot, or one that never answers block
#   status: run gives up after 30 s.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "run-faults" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
head -c $((16 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-nbd --fork --persistent --shared=32 --read-only --format=raw --pid-file="$tmp/q.pid" \
	--socket="$tmp/q.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid') 2>/dev/null"
uri="nbd+unix:///disk?socket=$tmp/q.sock"
vols=(--volume "name=a,uri=$uri" --volume "name=b,uri=$uri")
connected() { ls /sys/block/nbd*/pid 2>/dev/null | wc -l; }
state_files() { find /run/nbdattach -type f 2>/dev/null | tr '\n' ' '; }
# Without pgrep (procps) every "no child left" check would pass on nothing: fail instead.
command -v pgrep >/dev/null 2>&1 || fail "pgrep is installed (procps, tests/setup-deps)" "missing: the leftover checks cannot work"
leftovers() {
	command -v pgrep >/dev/null 2>&1 || { echo "(pgrep missing: cannot look for leftover processes)"; return; }
	pgrep -f "marker-$1" | tr '\n' ' '
}
# Queue settings run changed (read-ahead 0, one 64 KiB granule per request, no merging) and
# cleanup did not put back: every free minor starts at 256/512/1 here, a new minor at the
# kernel's defaults.
set_free_queues 256 512 1
changed_queues() {
	local q
	for q in /sys/block/nbd*; do
		[ "$(cat "$q/queue/read_ahead_kb")" = 0 ] || [ "$(cat "$q/queue/max_sectors_kb")" = 64 ] ||
			[ "$(cat "$q/queue/nomerges")" = 2 ] && printf '%s ' "${q##*/}"
	done
}

# The provider for the kill tests: sleeps (so a kill at "wait" finds it running), or exits at
# once when the step comes after it.
printf '#!/bin/sh\nexec sleep 1000 "$@"\n' > "$tmp/sleeper"
chmod +x "$tmp/sleeper"

steps="begin attach:a connect:a connected:a journaled:a map:a attach:b connect:b connected:b journaled:b map:b spawn wait detach:a detach:b end"
for step in $steps; do
	provider=("$tmp/sleeper" "marker-$step")
	case "$step" in detach:*|end) provider=(true) ;; esac
	NBDATTACH_FAULT=$step timeout 120 "$NBDATTACH" run --tag fault "${vols[@]}" -- "${provider[@]}" >/dev/null 2>&1 &
	pid=$!
	# "wait": the helper dies after spawning; give the provider time to be exec'ed.
	wait "$pid"
	rc=$?
	out=$("$NBDATTACH" cleanup 2>&1)
	udevadm settle
	if [ "$rc" = 137 ] && [ "$(connected)" = 0 ] && [ -z "$(state_files)" ] && [ -z "$(leftovers "$step")" ] &&
		[ -z "$(changed_queues)" ]; then
		pass "killed at $step, then cleanup: no device, no child, no state, queue settings back"
	else
		fail "killed at $step, then cleanup" "rc=$rc devices=$(connected) state=$(state_files) children=$(leftovers "$step") queues=$(changed_queues) cleanup: $out"
	fi
done
# The pipe transport has map writer children of its own.
for step in spawn wait; do
	NBDATTACH_FAULT=$step "$NBDATTACH" run --map pipe --tag fault "${vols[@]}" -- "$tmp/sleeper" "marker-pipe$step" >/dev/null 2>&1
	rc=$?
	"$NBDATTACH" cleanup >/dev/null 2>&1
	udevadm settle
	[ "$rc" = 137 ] && [ "$(connected)" = 0 ] && [ -z "$(state_files)" ] && [ -z "$(pgrep -f 'nbdattach map')$(leftovers "pipe$step")" ] &&
		pass "--map pipe killed at $step, then cleanup: nothing left" ||
		fail "--map pipe killed at $step, then cleanup" "rc=$rc devices=$(connected) state=$(state_files)"
done

# Third of four volumes cannot attach: nothing stays.
"$NBDATTACH" run --tag tx "${vols[@]}" --volume "name=c,uri=nbd+unix:///disk?socket=$tmp/none.sock" \
	--volume "name=d,uri=$uri" -- true 2>"$tmp/tx.err"
rc=$?
expect_eq "attach failure on the third of four: exit 125 ($(head -n 1 "$tmp/tx.err"))" 125 "$rc"
expect_eq "attach failure on the third of four: no device attached" 0 "$(connected)"
expect_eq "attach failure on the third of four: no state" "" "$(state_files)"

# The provider crashes.
"$NBDATTACH" run --tag crash "${vols[@]}" -- sh -c 'kill -SEGV $$' 2>/dev/null
expect_eq "provider killed by SIGSEGV: exit 139" 139 "$?"
expect_eq "provider crash: all detached" 0 "$(connected)"
expect_eq "provider crash: no state" "" "$(state_files)"

# The provider's status passes through; a missing provider is 127.
"$NBDATTACH" run --tag st "${vols[@]}" -- sh -c 'exit 7' 2>/dev/null
expect_eq "provider exit 7 passes through" 7 "$?"
"$NBDATTACH" run --tag st "${vols[@]}" -- /nonexistent/provider 2>/dev/null
expect_eq "missing provider: exit 127" 127 "$?"
expect_eq "missing provider: all detached" 0 "$(connected)"

# SIGTERM forwarded; the provider's TERM handler decides the status.
cat > "$tmp/term" <<'SH'
#!/bin/sh
trap 'exit 42' TERM
touch "$1"
while :; do sleep 0.1; done
SH
chmod +x "$tmp/term"
"$NBDATTACH" run --tag sig "${vols[@]}" -- "$tmp/term" "$tmp/term.started" 2>/dev/null &
pid=$!
wait_for_file "$tmp/term.started" 60
kill -TERM "$pid"
wait "$pid"
expect_eq "SIGTERM forwarded, the provider's status returned" 42 "$?"
# A provider that ignores SIGTERM is killed after --grace.
cat > "$tmp/stubborn" <<'SH'
#!/bin/sh
trap '' TERM
touch "$1"
while :; do sleep 0.1; done
SH
chmod +x "$tmp/stubborn"
"$NBDATTACH" run --tag sig --grace 2 "${vols[@]}" -- "$tmp/stubborn" "$tmp/stub.started" 2>/dev/null &
pid=$!
wait_for_file "$tmp/stub.started" 60
t0=$(date +%s)
kill -TERM "$pid"
wait "$pid"
rc=$?
t1=$(date +%s)
expect_eq "SIGKILL after --grace: exit 137 (after $((t1 - t0)) s)" 137 "$rc"
expect_eq "after signals: all detached, no state" "0:" "$(connected):$(state_files)"

# The server dies mid-backup.
qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/d.pid" \
	--socket="$tmp/d.sock" --export-name=disk "$tmp/disk.raw" || fail "second qemu-nbd starts"
# The reader reads the device over and over; a short read (the device already gone between two
# reads) ends it too, so it can never spin.
cat > "$tmp/reader" <<'SH'
#!/usr/bin/python3
import json, mmap, os, sys
dev = json.loads(os.environ["NBDATTACH_RUN"])["volumes"][0]["device"]
open(sys.argv[1], "w").close()
buf = mmap.mmap(-1, 1 << 20)
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
while True:
    for off in range(0, 16 << 20, 1 << 20):
        try:
            n = os.preadv(fd, [buf], off)
        except OSError as e:
            print("provider: %s" % e.strerror, flush=True)
            sys.exit(5)
        if n != 1 << 20:
            print("provider: short read", flush=True)
            sys.exit(6)
SH
chmod +x "$tmp/reader"
"$NBDATTACH" run --tag dies --volume "name=a,uri=nbd+unix:///disk?socket=$tmp/d.sock" -- \
	"$tmp/reader" "$tmp/reader.started" > "$tmp/dies.out" 2>"$tmp/dies.err" &
pid=$!
wait_for_file "$tmp/reader.started" 60
sleep 1
kill -STOP "$(cat "$tmp/d.pid")"     # a read now waits for an answer...
sleep 1
t0=$(date +%s.%N)
kill -KILL "$(cat "$tmp/d.pid")"     # ...that never comes
wait "$pid"
rc=$?
el=$(seconds_since "$t0")
# The provider's own status (5: it saw EIO), within seconds: no --dead-conn-timeout here, so the
# volume is released on the kernel's LINK_DEAD at once (0.3 s seen under TCG).
expect_eq "server died: run returns the provider's status 5 (after $el s)" 5 "$rc"
awk -v e="$el" 'BEGIN { exit !(e < 10) }' && pass "server died: run ends within 10 s ($el s)" ||
	fail "server died: run ends within 10 s" "$el s"
grep -q 'Input/output error' "$tmp/dies.out" && pass "server died: the provider saw EIO" ||
	fail "server died: the provider saw EIO" "$(cat "$tmp/dies.out")"
grep -q 'the server went away' "$tmp/dies.err" && pass "server died: run says so" || fail "server died: run says so" "$(cat "$tmp/dies.err")"
expect_eq "server died: the provider's own reader is not taken for an outside holder" 0 \
	"$(grep -c 'still holds it open' "$tmp/dies.err")"
udevadm settle
expect_eq "server died: device released, no state" "0:" "$(connected):$(state_files)"

# The server hangs (stopped: the connection lives, --timeout 0 never times a request out) while
# the provider, ignoring SIGTERM, waits in an O_DIRECT read, which SIGKILL cannot interrupt:
# once it has outlived the SIGKILL by --grace, its volume is detached, the read fails and the
# provider dies of the SIGKILL, so the operator's SIGTERM still ends the run and leaves nothing.
qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/h.pid" \
	--socket="$tmp/h.sock" --export-name=disk "$tmp/disk.raw" || fail "third qemu-nbd starts"
defer "kill -KILL \$(cat '$tmp/h.pid') 2>/dev/null"
cat > "$tmp/stuck" <<'PY'
#!/usr/bin/python3
import json, mmap, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
dev = json.loads(os.environ["NBDATTACH_RUN"])["volumes"][0]["device"]
buf = mmap.mmap(-1, 65536)
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
os.preadv(fd, [buf], 8 << 20)
PY
chmod +x "$tmp/stuck"
timeout -s KILL 90 "$NBDATTACH" run --tag hang --grace 1 --volume "name=a,uri=nbd+unix:///disk?socket=$tmp/h.sock" -- \
	"$tmp/stuck" "$tmp/stuck.started" "$tmp/stuck.go" marker-stuck 2>"$tmp/stuck.err" &
tpid=$!
wait_for_file "$tmp/stuck.started" 60 || fail "hung server: the provider starts" "$(cat "$tmp/stuck.err")"
kill -STOP "$(cat "$tmp/h.pid")"
touch "$tmp/stuck.go"
ppid=$(pgrep -f "^/usr/bin/python3 $tmp/stuck ")   # the provider, not the helper or timeout
for i in $(seq 100); do
	[ "$(awk '{ print $3 }' "/proc/$ppid/stat" 2>/dev/null)" = D ] && break
	sleep 0.1
done
expect_eq "hung server: the provider waits uninterruptibly in its read" D \
	"$(awk '{ print $3 }' "/proc/$ppid/stat" 2>/dev/null)"
t0=$(date +%s.%N)
kill -TERM "$(pgrep -P "$tpid" -x nbdattach)"
wait "$tpid"
rc=$?
el=$(seconds_since "$t0")
expect_eq "hung server: SIGTERM ends the run, the provider killed: exit 137 (after $el s)" 137 "$rc"
awk -v e="$el" 'BEGIN { exit !(e < 30) }' && pass "hung server: run ends within 30 s ($el s)" ||
	fail "hung server: run ends within 30 s" "$el s"
grep -q 'the provider outlived SIGKILL by 1 s (waiting for its server?): detaching its volumes' "$tmp/stuck.err" &&
	pass "hung server: run says why it detaches" || fail "hung server: run says why it detaches" "$(cat "$tmp/stuck.err")"
udevadm settle
got="$(connected):$(state_files):$(leftovers stuck)"
expect_eq "hung server: device released, no state, no provider" "0::" "$got"
kill -KILL "$(cat "$tmp/h.pid")"
[ "$got" = "0::" ] || { pkill -KILL -f marker-stuck; "$NBDATTACH" cleanup >/dev/null 2>&1; }

# A parent with children of its own: they are its own to reap.
python3 - "$NBDATTACH" "$uri" <<'PY' && pass "the caller's own children are untouched" || fail "the caller's own children are untouched" "see above"
import os, subprocess, sys
kid = os.fork()
if kid == 0:
    os._exit(33)
r = subprocess.run([sys.argv[1], "run", "--tag", "parent", "--volume", "name=a,uri=" + sys.argv[2], "--", "true"])
pid, status = os.waitpid(kid, 0)
assert r.returncode == 0, r.returncode
assert pid == kid and os.WEXITSTATUS(status) == 33, (pid, status)
PY

# The provider exits but a member of its process group (it ignored SIGTERM) lives on: it is
# killed, nothing of the provider outlives the run.
"$NBDATTACH" run --tag grp "${vols[@]}" -- sh -c 'trap "" TERM; sleep 765432 & exit 0' >/dev/null 2>&1
expect_eq "group member surviving its leader: run exits 0" 0 "$?"
for i in $(seq 50); do pgrep -f 'sleep 765432' >/dev/null || break; sleep 0.1; done
expect_eq "group member surviving its leader: killed when the leader exits" "" "$(pgrep -f 'sleep 765432')"
pkill -KILL -f 'sleep 765432'
# What left the provider's group (setsid, as a daemon does) is killed too: it carries the run id.
"$NBDATTACH" run --tag esc "${vols[@]}" -- sh -c 'setsid sleep 765433 </dev/null >/dev/null 2>&1 & exit 0' >/dev/null 2>&1
expect_eq "a process that left the provider's group: run exits 0" 0 "$?"
for i in $(seq 50); do pgrep -f 'sleep 765433' >/dev/null || break; sleep 0.1; done
expect_eq "a process that left the provider's group: killed when the provider exits" "" "$(pgrep -f 'sleep 765433')"
pkill -KILL -f 'sleep 765433'
# Also when the id comes after 64 KiB of other variables; and only the whole id: a process
# whose id merely starts with ours is another run's (here: one that changed it, and so escapes).
"$NBDATTACH" run --tag esc "${vols[@]}" -- sh -c '
	big=$(head -c 70000 /dev/zero | tr "\0" x)
	env -i BIG="$big" NBDATTACH_RUN_ID="$NBDATTACH_RUN_ID" setsid sleep 765434 </dev/null >/dev/null 2>&1 &
	env NBDATTACH_RUN_ID="${NBDATTACH_RUN_ID}0" setsid sleep 765435 </dev/null >/dev/null 2>&1 &
	sleep 0.5; exit 0' >/dev/null 2>&1
expect_eq "run id after 64 KiB of environment: run exits 0" 0 "$?"
for i in $(seq 50); do pgrep -f 'sleep 765434' >/dev/null || break; sleep 0.1; done
expect_eq "run id after 64 KiB of environment: killed" "" "$(pgrep -f 'sleep 765434')"
expect_eq "an id that only starts with the run's: not killed" 1 "$(pgrep -f 'sleep 765435' | wc -l)"
pkill -KILL -f 'sleep 76543[45]'

# A caller that ignores SIGCHLD (inherited across exec): the kernel must not reap our children
# behind our back, the provider's status still comes through, map writers still count.
ign_chld() { python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execvp(sys.argv[1], sys.argv[1:])' "$@"; }
ign_chld "$NBDATTACH" run --tag chld "${vols[@]}" -- sh -c 'exit 7' 2>"$tmp/chld.err"
rc=$?
expect_eq "SIGCHLD ignored by the caller: the provider's exit 7 passes through ($(tail -n 1 "$tmp/chld.err"))" 7 "$rc"
ign_chld "$NBDATTACH" run --tag chld --map pipe "${vols[@]}" -- sh -c 'cat <&4 >/dev/null && cat <&5 >/dev/null' 2>"$tmp/chld.err"
rc=$?
expect_eq "SIGCHLD ignored by the caller, --map pipe: exit 0 ($(tail -n 1 "$tmp/chld.err"))" 0 "$rc"
expect_eq "SIGCHLD ignored: all detached, no state" "0:" "$(connected):$(state_files)"

# Exec failures: not found (ENOENT, ENOTDIR) is 127, anything else the exec says is 126.
printf '#!/bin/sh\nexit 0\n' > "$tmp/noexec"
chmod 0644 "$tmp/noexec"
vol1=(--volume "name=a,uri=$uri")
"$NBDATTACH" run --tag ex "${vol1[@]}" -- /etc/passwd/provider 2>/dev/null
expect_eq "provider path through a file (ENOTDIR): exit 127" 127 "$?"
"$NBDATTACH" run --tag ex "${vol1[@]}" -- nbdattach-no-such-provider 2>/dev/null
expect_eq "provider not in PATH: exit 127" 127 "$?"
"$NBDATTACH" run --tag ex "${vol1[@]}" -- "$tmp/noexec" 2>/dev/null
expect_eq "provider not executable (EACCES): exit 126" 126 "$?"
"$NBDATTACH" run --tag ex "${vol1[@]}" -- "$tmp" 2>/dev/null
expect_eq "provider a directory: exit 126" 126 "$?"
expect_eq "exec failures: all detached, no state" "0:" "$(connected):$(state_files)"

# Map writers: only the helper's own SIGTERM to a writer still running is an expected end.
# Each connection to this server takes 6 s to open, so the writers are still opening when the
# provider acts.
nbdkit -U "$tmp/slow.sock" -P "$tmp/slow.pid" --filter=delay memory 16M delay-open=6 ||
	fail "slow-opening nbdkit starts"
defer "kill -9 \$(cat '$tmp/slow.pid') 2>/dev/null"
slow=(--volume "name=s,uri=nbd+unix:///?socket=$tmp/slow.sock")
"$NBDATTACH" run --tag mw --map pipe --no-discard "${slow[@]}" -- true 2>"$tmp/mw.err"
rc=$?
expect_eq "map writer still running at release gets our SIGTERM: exit 0 ($(tail -n 1 "$tmp/mw.err"))" 0 "$rc"
"$NBDATTACH" run --tag mw --map pipe --no-discard "${slow[@]}" -- \
	sh -c 'pkill -KILL -f "^nbdattach map --granularity"' 2>"$tmp/mw.err"
rc=$?
expect_eq "map writer killed by someone else (SIGKILL, as the OOM killer would): exit 125" 125 "$rc"
grep -q 'map writer was killed by signal 9' "$tmp/mw.err" && pass "map writer killed: run says so" ||
	fail "map writer killed: run says so" "$(cat "$tmp/mw.err")"
# A provider that closes its map before the writer has written it (the writer is still opening
# its connection) and then exits 0: the writer dies of SIGPIPE, and the backup is not complete.
"$NBDATTACH" run --tag mw --map pipe --no-discard "${slow[@]}" -- sh -c 'exec 4<&-; sleep 9' 2>"$tmp/mw.err"
rc=$?
expect_eq "map writer killed by SIGPIPE (the provider closed its map early), provider exit 0: exit 125" 125 "$rc"
grep -q 'map writer was killed by signal 13' "$tmp/mw.err" && pass "map writer SIGPIPE: run says so" ||
	fail "map writer SIGPIPE: run says so" "$(cat "$tmp/mw.err")"
expect_eq "map writers: all detached, no state" "0:" "$(connected):$(state_files)"

# NBDATTACH_RUN_ID comes first in the provider's environment, so that cleanup finds a dead
# run's descendants even behind 64 KiB of inherited environment.
first=$("$NBDATTACH" run --tag env "${vol1[@]}" -- \
	python3 -c 'import sys; sys.stdout.write(open("/proc/self/environ", "rb").read().split(b"\0")[0].split(b"=")[0].decode())' 2>/dev/null)
expect_eq "NBDATTACH_RUN_ID is the provider's first variable" NBDATTACH_RUN_ID "$first"
cat > "$tmp/forker" <<'PY'
#!/usr/bin/python3
import os, subprocess, sys
subprocess.Popen(["sleep", "654321"], start_new_session=True)  # not in the provider's group
open(sys.argv[1], "w").close()
os.execvp("sleep", ["sleep", "1000"])
PY
chmod +x "$tmp/forker"
BIG=$(head -c 70000 /dev/zero | tr '\0' x) NBDATTACH_FAULT=wait "$NBDATTACH" run --tag env "${vol1[@]}" -- \
	"$tmp/forker" "$tmp/forker.started" >/dev/null 2>&1
rc=$?
wait_for_file "$tmp/forker.started" 60
"$NBDATTACH" cleanup >/dev/null 2>&1
udevadm settle
for i in $(seq 50); do pgrep -f 'sleep 654321' >/dev/null || break; sleep 0.1; done
expect_eq "killed at wait with 70 KiB of environment, then cleanup: exit 137, no descendant left" \
	"137:" "$rc:$(pgrep -f 'sleep 654321')"
pkill -KILL -f 'sleep 654321'
expect_eq "big environment: all detached, no state" "0:" "$(connected):$(state_files)"

# A volume whose server dies is journaled (detach:NAME) before it is released: the helper
# killed right there leaves nothing cleanup cannot finish. The provider never reads, so only
# the release of the dead volume can reach that step.
qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/e.pid" \
	--socket="$tmp/e.sock" --export-name=disk "$tmp/disk.raw" || fail "third qemu-nbd starts"
NBDATTACH_FAULT=detach:a timeout 120 "$NBDATTACH" run --tag deadfault \
	--volume "name=a,uri=nbd+unix:///disk?socket=$tmp/e.sock" -- \
	sh -c 'touch "$1"; while :; do sleep 1; done' marker-deadfault "$tmp/deadfault.started" >/dev/null 2>&1 &
pid=$!
wait_for_file "$tmp/deadfault.started" 60
kill -KILL "$(cat "$tmp/e.pid")"
wait "$pid"
rc=$?
"$NBDATTACH" cleanup >/dev/null 2>&1
udevadm settle
for i in $(seq 50); do [ -z "$(leftovers deadfault)" ] && break; sleep 0.1; done
expect_eq "killed at detach of a dead volume, then cleanup: exit 137, no device, state or child" \
	"137:0::" "$rc:$(connected):$(state_files):$(leftovers deadfault)"

# gives_up WHAT VOLUME REASON: run on VOLUME (--volume's spec) ends after its 30 s with exit 125,
# REASON among its lines, and nothing left (before: it waited for good, its signals held).
gives_up() {
	local out rc
	out=$(timeout 120 "$NBDATTACH" run --tag gives-up --volume "$2" -- true 2>&1)
	rc=$?
	udevadm settle
	expect_eq "$1: run exits 125" 125 "$rc"
	case "$out" in *"$3"*) pass "$1: the map's reason" ;; *) fail "$1: the map's reason" "$out" ;; esac
	expect_eq "$1: nothing left" "0:" "$(connected):$(state_files)"
}

# qemu-nbd's default --shared=1: the device's connection takes the only client slot, and the
# map's waits in the listen backlog for a greeting that the handshake's 30 s bound.
qemu-nbd --fork --persistent --read-only --format=raw --pid-file="$tmp/one.pid" \
	--socket="$tmp/one.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd --shared=1 starts"
defer "kill \$(cat '$tmp/one.pid') 2>/dev/null"
gives_up "one client slot" "name=a,uri=nbd+unix:///disk?socket=$tmp/one.sock" \
	"cannot map 'nbd+unix:///disk?socket=$tmp/one.sock': the server did not complete the handshake in 30 s"

# A server that answers the handshake but never a block status request: run's map, in its own
# process, waits 30 s for a reply.
python3 "$TOP/tests/helpers/hostile-nbd.py" "$tmp/stall.sock" stall &
defer "kill $! 2>/dev/null"
wait_for_file "$tmp/stall.sock"
gives_up "block status never answered" "name=a,bitmap=x,uri=nbd+unix:///?socket=$tmp/stall.sock" \
	"the server did not answer a block status request within 30 s"
