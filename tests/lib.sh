# Sourced by every shell test (host and VM).  A test reports each assertion on a line of its
# own; tests/run counts them:
#   ok DESCRIPTION
#   FAIL DESCRIPTION: REASON
#   skip DESCRIPTION: REASON      (only for a prerequisite that truly cannot exist; name it)
# Cleanups registered with `defer` run in reverse order when the script exits, whatever happens.

set -u
TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
NBDATTACH=${NBDATTACH:-$BUILD/nbdattach}
export TOP BUILD NBDATTACH

_failed=0
_deferred=

pass() { echo "ok $1"; }
fail() { echo "FAIL $1: ${2:-failed}"; _failed=$((_failed + 1)); }
skip() { echo "skip $1: $2"; }

# check DESCRIPTION COMMAND...: passes when the command exits 0.
check() {
	_d=$1; shift
	if _out=$("$@" 2>&1); then pass "$_d"; else fail "$_d" "\`$*\` failed: $(printf %s "$_out" | tail -n 3 | tr '\n' ' ')"; fi
}

# check_fails DESCRIPTION COMMAND...: passes when the command exits non-zero.
check_fails() {
	_d=$1; shift
	if _out=$("$@" 2>&1); then fail "$_d" "\`$*\` unexpectedly succeeded"; else pass "$_d"; fi
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# defer COMMAND-STRING: run at exit, last registered first.
defer() { _deferred="$1
$_deferred"; }

_run_deferred() {
	_rc=$?
	set +e # a cleanup that finds nothing to clean must not turn a pass into a failure
	_list=$_deferred
	_deferred=
	printf '%s\n' "$_list" | while IFS= read -r _c; do
		[ -n "$_c" ] && eval "$_c" >/dev/null 2>&1
	done
	true
	[ "$_failed" -gt 0 ] && exit 1
	exit "$_rc"
}
trap _run_deferred EXIT
trap 'exit 130' INT TERM

# A private scratch directory, removed at exit. Callers use dir=$(mktmpdir), a subshell whose
# own defer would be lost: the directories live in one per-test parent the test's shell
# removes last.
_tmproot=$(mktemp -d "${TMPDIR:-/tmp}/nbdattach-test.XXXXXX") || exit 1
defer "rm -rf --one-file-system '$_tmproot'"
# set_free_queues RA_KB MAX_KB NOMERGES: give every free nbd minor these queue settings (another
# tool's choice, which nbdattach must put back at detach; "" leaves one as it is), and each
# minor its own again when the test exits.
set_free_queues() {
	local q a v
	for q in /sys/block/nbd*; do
		[ -e "$q/pid" ] && continue
		for a in read_ahead_kb:$1 max_sectors_kb:$2 nomerges:$3; do
			v=${a#*:} a=$q/queue/${a%%:*}
			[ -n "$v" ] || continue
			defer "echo $(cat "$a") > $a"
			echo "$v" > "$a"
		done
	done
}

# seconds_since T0: seconds (one decimal) since T0, a `date +%s.%N` reading.
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

mktmpdir() {
	mktemp -d "$_tmproot/XXXXXX"
}

# wait_for_file PATH [SECONDS]: wait until PATH exists (servers creating their socket).
# Uses inotify-free polling at 10 ms: only for starting third-party servers in tests.
wait_for_file() {
	_n=$(( ${2:-10} * 100 ))
	while [ ! -e "$1" ] && [ "$_n" -gt 0 ]; do sleep 0.01; _n=$((_n - 1)); done
	[ -e "$1" ]
}

in_vm() { [ -n "${NBDATTACH_VM:-}" ]; }

# kernel_log: the guest kernel's messages since the current test started (tests/vm/guest-init
# writes a marker to /dev/kmsg before each test). Fails, printing a line that no check expects,
# when dmesg fails or the marker is gone (the ring buffer wrapped): an empty log must not
# pass for a clean one.
kernel_log() {
	local log
	log=$(dmesg) || { echo "kernel_log: dmesg failed"; return 1; }
	printf '%s\n' "$log" | awk -v t="nbdattach-test-start ${NBDATTACH_TEST:-}" '
		index($0, t) { keep = 1; next } keep { print } END { if (!keep) { print "kernel_log: no start marker"; exit 1 } }'
}

# count_io_errors: "I/O error" lines in the kernel log of the current test; "unknown" (never
# a number) when that log cannot be had.
count_io_errors() {
	local log
	log=$(kernel_log) || { echo unknown; return 0; }
	printf '%s\n' "$log" | grep -c -i 'I/O error' || true
}

# listed [PATTERN]: how many lines of `nbdattach list` contain PATTERN (default ' nbdattach ':
# devices of ours); "list failed: ..." (never a number) when list itself fails, so that a
# crashed list does not read as "nothing left".
listed() {
	local out
	out=$("$NBDATTACH" list 2>&1) || { echo "list failed: $out"; return 0; }
	printf '%s\n' "$out" | grep -c -e "${1:- nbdattach }" || true
}

# io_errors_since N: count_io_errors minus N (an earlier count), or "unknown".
io_errors_since() {
	local n
	n=$(count_io_errors)
	case "$n:$1" in *[!0-9:]*|:*|*:) echo unknown ;; *) echo $(( n - $1 )) ;; esac
}
