#!/bin/bash
# Host, no VM: argument parsing and one-line error messages of attach/detach/list/status.
. "$(dirname "$0")/../lib.sh"

# usage_err DESC EXPECTED-SUBSTRING ARGS...: a usage exit (2; run: 125), one line
# "nbdattach: ..." containing it.
usage_err() {
	local d=$1 want=$2 out rc usage=2; shift 2
	[ "$1" = run ] && usage=125
	out=$("$NBDATTACH" "$@" 2>&1 >/dev/null); rc=$?
	if [ "$rc" -eq "$usage" ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [[ "$out" == "nbdattach: "*"$want"* ]]; then
		pass "$d"
	else
		fail "$d" "rc=$rc out=$out"
	fi
}

usage_err "attach without URI" "missing URI" attach
usage_err "attach unknown option" "unknown option '--frob'" attach --frob nbd://x/
usage_err "attach option without argument" "needs an argument" attach --tag
usage_err "attach invalid tag" "invalid --tag '../x'" attach --tag ../x nbd://x/
usage_err "attach tag too long" "invalid --tag" attach --tag "$(printf 'a%.0s' $(seq 65))" nbd://x/
usage_err "attach invalid name" "invalid --name 'a b'" attach --name 'a b' nbd://x/
usage_err "attach bad connections" "invalid --connections '0'" attach --connections 0 nbd://x/
usage_err "attach bad timeout" "invalid --timeout 'x'" attach --timeout x nbd://x/
usage_err "attach not a URI" "attach: cannot use '/tmp/file': unsupported URI scheme" attach /tmp/file
usage_err "attach TLS URI" "attach: cannot use 'nbds+unix:///d?socket=/x': TLS (nbds://) is not supported" \
	attach 'nbds+unix:///d?socket=/x'
usage_err "attach a negative timeout" "invalid --timeout '-5'" attach --timeout -5 nbd://x/
usage_err "attach block size not a power of two" "invalid --block-size '1000' (expected a power of two" attach --block-size 1000 nbd://x/
usage_err "attach block size above the page size" "invalid --block-size '8192'" attach --block-size 8192 nbd://x/
usage_err "attach max-request not a power of two" "invalid --max-request '65537'" attach --max-request 65537 nbd://x/
# Linux 6.1 keeps the timeout in jiffies in 32 bits: a larger one would wrap to a short one.
usage_err "attach timeout the kernel would wrap" "invalid --timeout '4294968'" attach --timeout 4294968 nbd://x/
# One bitmap-name rule for every command: up to 1006 printable ASCII characters (a map's context
# holds 1024; the journal and the text forms are line-oriented).
long=$(printf 'b%.0s' $(seq 1006))
usage_err "attach bitmap name of 1007 bytes" "invalid --bitmap name (expected 1 to 1006 printable ASCII" \
	attach --bitmap "${long}b" nbd://x/
usage_err "attach bitmap name with a tab" "invalid --bitmap name" attach --bitmap $'a\tb' nbd://x/
usage_err "attach bitmap name not ASCII" "invalid --bitmap name" attach --bitmap 'bé' nbd://x/
usage_err "run bitmap name not ASCII" "invalid volume bitmap name" run --volume 'name=a,bitmap=bé,uri=nbd://x/' -- true
usage_err "run bitmap name of 1007 bytes" "invalid volume bitmap name (expected 1 to 1006 printable ASCII" \
	run --volume "name=a,bitmap=${long}b,uri=nbd://x/" -- true
out=$("$NBDATTACH" attach --bitmap "$long" 'nbd://x/' 2>&1); rc=$?
[ "$rc" -ne 2 ] && [[ "$out" != *"invalid --bitmap"* ]] && pass "attach takes a 1006-byte bitmap name" ||
	fail "attach takes a 1006-byte bitmap name" "rc=$rc $out"
out=$("$NBDATTACH" run --volume "name=a,bitmap=$long,uri=nbd+unix:///?socket=/nonexistent" -- true 2>&1); rc=$?
[ "$rc" -ne 2 ] && [[ "$out" != *"invalid volume bitmap"* ]] && pass "run takes a 1006-byte bitmap name" ||
	fail "run takes a 1006-byte bitmap name" "rc=$rc $out"
usage_err "run volume granularity below a page" "invalid volume granularity '512'" \
	run --volume 'name=a,granularity=512,uri=nbd://x/' -- true
usage_err "run volume block size not a power of two" "invalid volume block-size '1000'" \
	run --volume 'name=a,block-size=1000,uri=nbd://x/' -- true
usage_err "run volume TLS URI" "NBD client cannot speak TLS" run --volume 'name=a,uri=nbds://x/' -- true
usage_err "run volume not an NBD URI" "unsupported URI scheme" run --volume 'name=a,uri=/tmp/file' -- true
usage_err "run timeout the kernel would wrap" "invalid --timeout '4294968'" \
	run --timeout 4294968 --volume 'name=a,uri=nbd://x/' -- true
usage_err "discard refuses a non-NBD URI" \
	"discard: cannot use 'http://x/': unsupported URI scheme (expected nbd://, nbd+unix:// or nbd+vsock://)" \
	discard http://x/ 0 65536
# A journaled URI is connected to again from other directories (monitor, cleanup, discard).
usage_err "attach relative socket" "attach: cannot use 'nbd+unix:///d?socket=nbd.sock': the socket= path must be absolute" \
	attach 'nbd+unix:///d?socket=nbd.sock'
usage_err "map relative socket (after another key)" "socket= path must be absolute" map 'nbd+unix:///d?tls=off&socket=./s'
usage_err "run relative socket" "socket= path must be absolute" run --volume 'name=a,uri=nbd+unix:///?socket=s' -- true
usage_err "discard relative socket" "socket= path must be absolute" discard 'nbd+unix:///?socket=s' 0 65536
# As libnbd reads the query: keys percent-decoded, pairs split on ';' too, the last one wins.
usage_err "relative socket behind an encoded key" "socket= path must be absolute" map 'nbd+unix:///?sock%65t=rel' --bitmap b
usage_err "relative socket after ';'" "socket= path must be absolute" map 'nbd+unix:///?tls=off;socket=rel' --bitmap b
# libnbd takes the last of several; which one a reader of the URI sees is not worth guessing.
usage_err "two sockets (';')" "more than one socket= parameter" map 'nbd+unix:///?socket=/abs;socket=rel' --bitmap b
usage_err "two sockets (one encoded)" "more than one socket= parameter" attach 'nbd+unix:///?socket=/a&%73ocket=/a'
usage_err "'&' mixed with ';'" "mixes '&' with ';' or holds %00" discard 'nbd+unix:///?socket=/x;y=1&z=2' 0 65536
usage_err "an encoded NUL in a key" "mixes '&' with ';' or holds %00" attach 'nbd+unix:///?socket=/a&socket%00x=rel'
usage_err "overlong URI" "the URI is too long (at most 2047 bytes)" discard "nbd+unix:///?socket=/$(printf 'x%.0s' $(seq 5000))" 0 65536
usage_err "nbd+unix:// without socket=" "nbd+unix:// needs ?socket=/ABSOLUTE/PATH" attach 'nbd+unix:///disk'
usage_err "encoded relative socket" "socket= path must be absolute" map 'nbd+unix:///?socket=%41bc' --bitmap b
usage_err "empty socket" "socket= path must be absolute" map 'nbd+unix:///?socket=' --bitmap b
out=$("$NBDATTACH" map 'nbd+unix:///d?socket=%2Fnonexistent%2Fs.sock' --bitmap b 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == *"No such file"* ]] && pass "a percent-encoded absolute socket= path is taken" ||
	fail "a percent-encoded absolute socket= path is taken" "rc=$rc $out"
usage_err "discard refuses nbds://" "discard: cannot use 'nbds://x/': TLS" discard nbds://x/ 0 65536
usage_err "discard past 2^64" "OFFSET + LENGTH is beyond 2^64" discard nbd://x/ 18446744073709551615 2
usage_err "discard on a minor beyond the kernel's" "'/dev/nbd99999999' is not an nbd device" discard /dev/nbd99999999 0 1
usage_err "discard on nbd01" "'nbd01' is not an nbd device" discard nbd01 0 1
usage_err "discard a negative offset" "invalid argument '-1'" discard nbd://x/ -1 5
usage_err "attach two URIs" "too many arguments" attach nbd://a/ nbd://b/
usage_err "detach nothing" "give either DEVICE or --tag" detach
usage_err "detach both" "give either DEVICE or --tag" detach /dev/nbd0 --tag x
usage_err "detach --name without --tag" "give either DEVICE or --tag" detach --name x
usage_err "detach not an nbd device" "not an nbd device" detach /dev/sda
usage_err "status without device" "exactly one DEVICE" status
usage_err "status not an nbd device" "not an nbd device" status /dev/nbdx
usage_err "list extra argument" "unexpected argument" list --foo
usage_err "cleanup extra argument" "unexpected argument" cleanup nbd0
usage_err "cleanup --device not an nbd device" "not an nbd device" cleanup --device sda
usage_err "cleanup unknown option" "unknown option" cleanup --all
usage_err "monitor without identifier" "expected DEVICE --identifier ID" monitor nbd0


# --help is an option of each command: after other options it prints the synopsis; as an
# option's value it is that value (a bitmap may be named "-h").
for c in attach detach list status map discard cleanup monitor run version; do
	out=$("$NBDATTACH" $c --help 2>&1); rc=$?
	[ "$rc" = 0 ] && [[ "$out" == "Usage: nbdattach $c"* ]] && pass "$c --help" || fail "$c --help" "rc=$rc $out"
done
for args in "status nbd0 --help" "list --json -h" "version -h"; do
	out=$("$NBDATTACH" $args 2>&1); rc=$?
	[ "$rc" = 0 ] && [[ "$out" == "Usage: nbdattach ${args%% *}"* ]] && pass "$args" || fail "$args" "rc=$rc $out"
done
out=$("$NBDATTACH" attach --tag x --read-only --help 2>&1); rc=$?
[ "$rc" = 0 ] && [[ "$out" == "Usage: nbdattach attach"* ]] && pass "attach OPTIONS --help" || fail "attach OPTIONS --help" "rc=$rc $out"
out=$("$NBDATTACH" map --bitmap -h --format text 'nbd+unix:///?socket=/nonexistent' 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == "nbdattach: cannot map 'nbd+unix:///?socket=/nonexistent': "*"No such file"* ]] &&
	pass "map --bitmap -h: a bitmap named -h, not help" || fail "map --bitmap -h" "rc=$rc $out"
out=$("$NBDATTACH" map --output --help 'nbd+unix:///?socket=/nonexistent' 2>&1); rc=$?
[ "$rc" = 1 ] && [[ "$out" == "nbdattach: cannot map"* ]] && [ ! -e --help ] &&
	pass "map --output --help: a file named --help, not help" || fail "map --output --help" "rc=$rc $out"
out=$("$NBDATTACH" run --volume 'name=a,uri=nbd://x/' -- sh -c 'echo provider' --help 2>&1); rc=$?
[[ "$out" != "Usage:"* ]] && pass "run: --help after -- is the provider's" || fail "run: --help after --" "rc=$rc $out"
# Options may follow the URI or device (except run's, which end at --).
out=$("$NBDATTACH" attach 'nbd+unix:///d?socket=/nonexistent' --json 2>&1); rc=$?
[ "$rc" != 2 ] && pass "attach URI --json parses" || fail "attach URI --json parses" "rc=$rc $out"
out=$("$NBDATTACH" detach nbd1000000 --force 2>&1); rc=$?
[ "$rc" != 2 ] && pass "detach DEVICE --force parses" || fail "detach DEVICE --force parses" "rc=$rc $out"
check "list works without the module" "$NBDATTACH" list
"$NBDATTACH" status /dev/nbd0 >/dev/null; expect_eq "status without device: exit 3" 3 "$?"

if [ "$(id -u)" = 0 ]; then
	if genl ctrl get name nbd >/dev/null 2>&1 || [ -e /sys/module/nbd ]; then
		skip "module-missing message" "this host has the nbd family"
	else
		out=$("$NBDATTACH" attach 'nbd+unix:///d?socket=/nonexistent' 2>&1); rc=$?
		[ "$rc" -eq 1 ] && [[ "$out" == "nbdattach: cannot attach 'nbd+unix:///d?socket=/nonexistent': nbd kernel module not loaded: run 'modprobe nbd'"* ]] &&
			pass "attach without the module: $out" || fail "attach without the module" "rc=$rc $out"
	fi
	# cleanup refuses a state directory it must not trust, in one line (it used to exit 1 silently).
	sdir=$(mktmpdir)
	ln -s "$sdir" "$sdir.link"; defer "rm -f '$sdir.link'"
	for sd in "$sdir.link" relative/dir; do
		for args in "" "--device nbd1"; do
			out=$(NBDATTACH_STATE_DIR=$sd "$NBDATTACH" cleanup $args 2>&1); rc=$?
			[ "$rc" = 1 ] && [[ "$out" == "nbdattach: cannot clean up: state directory '$sd': "* ]] &&
				pass "cleanup $args: untrusted state directory $sd: $out" || fail "cleanup $args with $sd" "rc=$rc $out"
		done
	done
	if ! genl ctrl get name nbd >/dev/null 2>&1 && [ ! -e /sys/module/nbd ]; then
		out=$("$NBDATTACH" monitor --identifier x nbd0 2>&1); rc=$?
		[ "$rc" = 1 ] && [ "$out" = "nbdattach: cannot monitor '/dev/nbd0': nbd kernel module not loaded" ] &&
			pass "monitor by hand says why it cannot" || fail "monitor by hand says why it cannot" "rc=$rc $out"
	fi
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$NBDATTACH" attach nbd://x/ 2>&1); rc=$?
	[ "$rc" -eq 1 ] && [[ "$out" == *"must be run as root"* ]] && pass "not root: clear message" || fail "not root" "rc=$rc $out"
else
	skip "module-missing message" "needs root"
	skip "not root: clear message" "runs as root only (it drops to nobody)"
	skip "cleanup: untrusted state directory" "needs root"
fi
