#!/bin/bash
# nbdattach run forwards SIGINT, SIGHUP, SIGQUIT and SIGTERM to the provider's process group:
# the provider and a child in its group each record the signal they got. A provider that exits
# from its handler has that status returned; one that dies of the signal gives 128 + N. Either
# way nothing is left: no device connected, no process of the provider's group, no map writer,
# no state file.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "run-signals" "runs only inside the test VM"; exit 0; }
command -v pgrep >/dev/null 2>&1 || { fail "pgrep is installed (procps, tests/setup-deps)" "missing: the leftover checks cannot work"; exit 1; }

tmp=$(mktmpdir)
head -c $((16 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-nbd --fork --persistent --shared=32 --read-only --format=raw --pid-file="$tmp/q.pid" \
	--socket="$tmp/q.sock" --export-name=disk "$tmp/disk.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid') 2>/dev/null"
uri="nbd+unix:///disk?socket=$tmp/q.sock"
vols=(--volume "name=a,uri=$uri" --volume "name=b,uri=$uri")
connected() { ls /sys/block/nbd*/pid 2>/dev/null | wc -l; }
state_files() { find /run/nbdattach -type f 2>/dev/null | tr '\n' ' '; }

# The provider: RECORDER LOG MODE STARTED MARKER. It forks a child (same process group) that
# records every signal it gets and lives on, so only the helper's kill of the group ends it.
# The provider records the signal, then exits 40 + N (MODE exit) or dies of it (MODE die).
cat > "$tmp/recorder" <<'PY'
#!/usr/bin/python3
import os, resource, signal, sys, time
log, mode, started = sys.argv[1:4]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGQUIT's default action dumps core
who = "provider"
SIGS = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM)

def record(sig, frame):
    with open(log, "a") as f:
        f.write("%s %s\n" % (who, signal.Signals(sig).name))
    if who == "child":
        return
    # The helper kills the group once the provider is gone: let the child record first (it
    # never does when the signal reached the provider alone).
    for _ in range(100):
        with open(log) as f:
            if "child " in f.read():
                break
        time.sleep(0.05)
    if mode == "exit":
        os._exit(40 + sig)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)

for s in SIGS:
    signal.signal(s, record)
r, w = os.pipe()
if os.fork() == 0:
    who = "child"
    os.write(w, b"x")
    while True:
        time.sleep(0.1)
os.read(r, 1)  # the child's handlers are in place
open(started, "w").close()
while True:
    time.sleep(0.1)
PY
chmod +x "$tmp/recorder"

# one_signal SIG MODE EXPECTED-STATUS [RUN-OPTIONS...]
one_signal() {
	local sig=$1 mode=$2 want=$3 d tpid pid rc left got i
	shift 3
	d="SIG$sig, provider ${mode}s$([ $# -gt 0 ] && echo " ($*)")"
	rm -f "$tmp/rec.log" "$tmp/started"
	# The watchdog (timeout) ends a run that ignores the signal; the signal goes to the helper
	# itself, not to timeout (which would relay it to its whole process group).
	timeout -s KILL 60 "$NBDATTACH" run --tag sig "$@" "${vols[@]}" -- \
		"$tmp/recorder" "$tmp/rec.log" "$mode" "$tmp/started" "marker-sig-$sig-$mode" 2>"$tmp/run.err" &
	tpid=$!
	if ! wait_for_file "$tmp/started" 60; then
		fail "$d: the provider starts" "$(cat "$tmp/run.err")"
		wait "$tpid"
		"$NBDATTACH" cleanup >/dev/null 2>&1
		return
	fi
	pid=$(pgrep -P "$tpid" -x nbdattach)
	kill -"$sig" "$pid"
	wait "$tpid"
	rc=$?
	expect_eq "$d: run exits $want ($(tail -n 1 "$tmp/run.err"))" "$want" "$rc"
	expect_eq "$d: the provider and its group's child got it" "child SIG$sig
provider SIG$sig" "$(sort "$tmp/rec.log" 2>/dev/null)"
	for i in $(seq 50); do [ -z "$(pgrep -f "marker-sig-$sig-$mode")" ] && break; sleep 0.1; done
	left=$(pgrep -f "marker-sig-$sig-$mode|nbdattach map .*$tmp/" | tr '\n' ' ')
	udevadm settle
	got="$(connected):$(listed ' connected '):$left:$(state_files)"
	expect_eq "$d: nothing left (connected, listed, processes, state)" "0:0::" "$got"
	# A failed check must not leave the next case a run to trip over.
	if [ "$got" != "0:0::" ]; then
		pkill -KILL -f "marker-sig-$sig-$mode"
		"$NBDATTACH" cleanup >/dev/null 2>&1
	fi
}

for sig in INT HUP QUIT TERM; do
	n=$(kill -l "$sig")
	one_signal "$sig" exit $((40 + n))
	one_signal "$sig" die $((128 + n)) --map pipe
done
