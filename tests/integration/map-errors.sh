#!/bin/bash
# nbdattach map failures: each is exactly one stderr line "nbdattach: ...", exit 1 (2 for usage),
# and a broken server never yields a map with a valid end line or trailer.
. "$(dirname "$0")/../lib.sh"
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

DUMP=$BUILD/tests/helpers/rmap-dump
HOSTILE=$TOP/tests/helpers/hostile-nbd.py
dir=$(mktmpdir)

# one_line DESC WANT_RC PATTERN CMD...: exit status WANT_RC, one stderr line matching PATTERN.
one_line() {
	local d=$1 want=$2 pat=$3 rc err
	shift 3
	"$@" >"$dir/out" 2>"$dir/err"
	rc=$?
	err=$(cat "$dir/err")
	if [ "$rc" != "$want" ]; then fail "$d" "exit $rc, expected $want ($err)"
	elif [ "$(wc -l <"$dir/err")" != 1 ]; then fail "$d" "stderr not one line: $err"
	elif ! grep -q -e "$pat" "$dir/err"; then fail "$d" "stderr '$err' lacks '$pat'"
	else pass "$d"; fi
}

nosock="nbd+unix:///disk?socket=$dir/missing.sock"
one_line "missing socket" 1 "^nbdattach: cannot map '$nosock': .*No such file" \
	"$NBDATTACH" map "$nosock" --bitmap b
one_line "nbds:// refused" 2 "map: cannot use 'nbds://h/e': .*NBD client cannot speak TLS" \
	"$NBDATTACH" map nbds://h/e --bitmap b
one_line "nbds+unix:// refused" 2 "cannot speak TLS" \
	"$NBDATTACH" map "nbds+unix:///e?socket=/x" --bitmap b
one_line "other scheme refused" 2 "unsupported URI scheme" "$NBDATTACH" map "http://h/e"
one_line "bad option: usage" 2 "^nbdattach: unknown option '--bogus'" "$NBDATTACH" map x --bogus
one_line "missing URI: usage" 2 "map: missing URI" "$NBDATTACH" map --full
one_line "bad format: usage" 2 "invalid --format 'xml'" "$NBDATTACH" map x --format xml
one_line "bad granularity: usage" 2 "invalid --granularity '3000'" "$NBDATTACH" map x --granularity 3000
one_line "--bitmap with --full: usage" 2 "mutually exclusive" "$NBDATTACH" map x --full --bitmap b
one_line "bitmap name of 1007 bytes: usage" 2 "invalid --bitmap name (expected 1 to 1006 printable ASCII" \
	"$NBDATTACH" map x --bitmap "$(printf 'b%.0s' $(seq 1007))"
one_line "bitmap name with a control character: usage" 2 "invalid --bitmap name" \
	"$NBDATTACH" map x --bitmap $'a\eb'
# A region map's context is printable ASCII (regionmap(5)); JSON output needs valid text too.
one_line "bitmap name not ASCII: usage" 2 "invalid --bitmap name" "$NBDATTACH" map x --bitmap 'bé'
one_line "--output with --output-fd: usage" 2 "mutually exclusive" "$NBDATTACH" map x --output f --output-fd 3
one_line "--server-uid with nbd://: usage" 2 "map: --server-uid needs an nbd+unix:// URI" \
	"$NBDATTACH" map nbd://localhost/e --server-uid 0
one_line "--server-uid over 32 bits: usage" 2 "invalid --server-uid '4294967296'" \
	"$NBDATTACH" map "nbd+unix:///e?socket=/x" --server-uid 4294967296
one_line "--socket-fd with nbd://: usage" 2 "map: --socket-fd needs an nbd+unix:// URI" \
	"$NBDATTACH" map nbd://localhost/e --socket-fd 3
one_line "--socket-fd not open: one line, exit 1" 1 "cannot map 'nbd+unix:///e?socket=/x': --socket-fd does not name an open socket\$" \
	"$NBDATTACH" map "nbd+unix:///e?socket=/x" --socket-fd 9
one_line "--socket-fd of a regular file: one line, exit 1" 1 "--socket-fd does not name an open socket\$" \
	"$NBDATTACH" map "nbd+unix:///e?socket=/x" --socket-fd 3 3<"$0"

if command -v qemu-nbd >/dev/null; then
	img_create "$dir/a.qcow2" 1M
	img_bitmap_add "$dir/a.qcow2" b
	img_write "$dir/a.qcow2" 0 4096
	qnbd_start "$dir/a.qcow2" "$dir/q.sock" disk b
	one_line "unknown bitmap: the whole context named" 1 \
		"export does not offer meta context 'qemu:dirty-bitmap:nosuch'\$" \
		"$NBDATTACH" map "$(qnbd_uri "$dir/q.sock")" --bitmap nosuch
	one_line "unknown export" 1 "cannot map '.*': .*no export named 'nosuch'" \
		"$NBDATTACH" map "$(qnbd_uri "$dir/q.sock" nosuch)" --bitmap b
	one_line "output directory missing" 1 "cannot create '$dir/no/dir/m'" \
		"$NBDATTACH" map "$(qnbd_uri "$dir/q.sock")" --bitmap b --output "$dir/no/dir/m"
	# --server-uid: SO_PEERCRED of the listening socket, ours here (qemu-nbd runs as us)
	expect_eq "--server-uid of the server's creator: mapped" "0 65536 end 1 65536" \
		"$("$NBDATTACH" map "$(qnbd_uri "$dir/q.sock")" --bitmap b --format text --server-uid "$(id -u)" |
			tr '\n' ' ' | sed 's/ $//')"
	one_line "--server-uid of another uid: refused, no map" 1 \
		"cannot map '.*q.sock': the server's socket was created by uid $(id -u), not uid 12345\$" \
		"$NBDATTACH" map "$(qnbd_uri "$dir/q.sock")" --bitmap b --format text --server-uid 12345
	expect_eq "--server-uid of another uid: nothing written" 0 "$(wc -c <"$dir/out")"
	# --socket-fd: through the descriptor (opened O_PATH on the socket), whatever the path names
	expect_eq "--socket-fd: mapped through the descriptor, not the path" "0 65536 end 1 65536" \
		"$(python3 -c 'import os, subprocess, sys
os.dup2(os.open(sys.argv[1], os.O_PATH), 5)
sys.exit(subprocess.call(sys.argv[2:], pass_fds=[5]))' "$dir/q.sock" \
			"$NBDATTACH" map "$(qnbd_uri "$dir/missing.sock")" --bitmap b --format text --socket-fd 5 |
			tr '\n' ' ' | sed 's/ $//')"
	# The longest bitmap name a command takes fills the map header's context (1024 bytes).
	long=$(printf 'b%.0s' $(seq 1006))
	img_create "$dir/l.qcow2" 1M
	img_bitmap_add "$dir/l.qcow2" "$long"
	img_write "$dir/l.qcow2" 65536 4096
	qnbd_start "$dir/l.qcow2" "$dir/l.sock" disk "$long"
	expect_eq "1006-byte bitmap name: mapped" "65536 65536 end 1 65536" \
		"$("$NBDATTACH" map "$(qnbd_uri "$dir/l.sock")" --bitmap "$long" --format text | tr '\n' ' ' | sed 's/ $//')"
	expect_eq "1006-byte bitmap name: the header carries the whole context" 1024 \
		"$("$NBDATTACH" map "$(qnbd_uri "$dir/l.sock")" --bitmap "$long" | head -c 4096 | tr -d '\0' |
			grep -ao "qemu:dirty-bitmap:b*" | head -n 1 | tr -d '\n' | wc -c)"
else
	skip "qemu-nbd cases" "qemu-nbd not installed"
fi

# Hostile server modes: one clear line, exit 1, no end line (text) and no trailer (binary); the
# nbdinfo form has no end marker, so its exit status and error line are all a caller has
# (pass "raw-ok" for modes only the dirty-region forms refuse).
hostile() {
	local mode=$1 pat=$2 nbdinfo=${3:-} sock=$dir/h-$1.sock pid uri
	python3 "$HOSTILE" "$sock" "$mode" &
	pid=$!
	defer "kill $pid"
	wait_for_file "$sock" || { fail "hostile $mode" "server did not start"; return; }
	uri="nbd+unix:///?socket=$sock"
	one_line "hostile $mode: one line, exit 1" 1 "cannot map '$uri': .*$pat" \
		"$NBDATTACH" map "$uri" --bitmap x --format text
	if grep -q '^end ' "$dir/out"; then fail "hostile $mode: no end line" "$(tail -n 1 "$dir/out")"
	else pass "hostile $mode: no end line"; fi
	"$NBDATTACH" map "$uri" --bitmap x 2>/dev/null >"$dir/bin"
	check_fails "hostile $mode: binary map has no valid trailer" "$DUMP" "$dir/bin"
	if [ "$nbdinfo" != raw-ok ]; then
		one_line "hostile $mode: nbdinfo form: one line, exit 1" 1 "cannot map '$uri': .*$pat" \
			"$NBDATTACH" map "$uri" --bitmap x --format nbdinfo
	fi
	kill "$pid"
}
if command -v python3 >/dev/null; then
	hostile no-progress "no progress"
	hostile zero-length "zero-length extent"
	hostile overflow "past the export end"
	hostile past-request "past the request"
	hostile past-export-end "past the export end"
	hostile wrong-context "no progress"
	hostile two-chunks "second block status chunk for 'qemu:dirty-bitmap:x' in one reply"
	hostile misaligned "not aligned to granularity 65536; pass --granularity" raw-ok
	# The server dies after the first reply: a long prefix is already out, but no form may
	# look complete, and only the exit status says so for the nbdinfo form.
	hostile dies "Transport endpoint is not connected"
	expect_eq "hostile dies: the nbdinfo prefix was written (only exit 1 tells)" yes \
		"$([ "$(wc -l <"$dir/out")" -gt 1000 ] && echo yes)"
	# --output: a map that fails halfway (its temp file already written to) leaves the old
	# target as it was and no temp file.
	python3 "$HOSTILE" "$dir/dies-out.sock" dies &
	defer "kill $!"
	wait_for_file "$dir/dies-out.sock" || fail "hostile dies (--output)" "server did not start"
	mkdir "$dir/outdir" && echo old > "$dir/outdir/keep.map"
	check_fails "hostile dies: map --output exits non-zero" \
		"$NBDATTACH" map "nbd+unix:///?socket=$dir/dies-out.sock" --bitmap x --output "$dir/outdir/keep.map"
	expect_eq "hostile dies: map --output leaves the old target and no temp file" "old|keep.map" \
		"$(cat "$dir/outdir/keep.map")|$(ls -A "$dir/outdir" | tr '\n' ' ' | sed 's/ $//')"
	# The control: the same server answering correctly gives a valid map.
	python3 "$HOSTILE" "$dir/good.sock" good &
	defer "kill $!"
	wait_for_file "$dir/good.sock"
	expect_eq "hostile server in good mode: valid map" "end 8 524288" \
		"$("$NBDATTACH" map "nbd+unix:///?socket=$dir/good.sock" --bitmap x | "$DUMP" | tail -n 1)"
	# An empty export: no region map has a size 0 (regionmap(5)), but nbdinfo prints nothing
	# and succeeds, and so does its form.
	python3 "$HOSTILE" "$dir/empty.sock" empty &
	defer "kill $!"
	wait_for_file "$dir/empty.sock"
	uri="nbd+unix:///?socket=$dir/empty.sock"
	one_line "empty export: text refused" 1 "cannot map '$uri': export is empty\$" \
		"$NBDATTACH" map "$uri" --bitmap x --format text
	one_line "empty export: binary refused" 1 "cannot map '$uri': export is empty\$" \
		"$NBDATTACH" map "$uri" --bitmap x
	out=$("$NBDATTACH" map "$uri" --bitmap x --format nbdinfo 2>&1)
	rc=$?
	expect_eq "empty export: nbdinfo form prints nothing, exit 0" "0:" "$rc:$out"
	out=$(nbdinfo --map=qemu:dirty-bitmap:x "$uri" 2>&1)
	expect_eq "empty export: so does nbdinfo --map" "0:" "$?:$out"
	# --server-uid against a server another user started: the uid checked is the listener's
	# (the system's python3: a root-only interpreter, such as pyenv's, is out of its reach)
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [ -x /usr/bin/python3 ]; then
		nd=$(mktmpdir)
		chmod 0711 "$_tmproot" && chmod 0777 "$nd"
		setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 "$HOSTILE" "$nd/n.sock" good &
		defer "kill $!"
		wait_for_file "$nd/n.sock" || fail "server run by uid 65534" "it did not start"
		uri="nbd+unix:///?socket=$nd/n.sock"
		one_line "--server-uid 0, server run by uid 65534: refused" 1 \
			"the server's socket was created by uid 65534, not uid 0\$" \
			"$NBDATTACH" map "$uri" --bitmap x --server-uid 0
		expect_eq "--server-uid 65534, server run by uid 65534: valid map" "end 8 524288" \
			"$("$NBDATTACH" map "$uri" --bitmap x --server-uid 65534 | "$DUMP" | tail -n 1)"
	else
		skip "--server-uid against another user's server" "needs root, setpriv and /usr/bin/python3"
	fi
	# Legal: the final extent of a reply runs past the request (NBD spec); it is cut at the
	# request end, and the map is exactly the server's dirty regions.
	python3 "$HOSTILE" "$dir/fpr.sock" final-past-request &
	defer "kill $!"
	wait_for_file "$dir/fpr.sock"
	uri="nbd+unix:///?socket=$dir/fpr.sock"
	B=$((0xFFF00000)) S=$((8 << 30))
	exp="0 65536
$((B - (1 << 20))) $((2 << 20))
$((S - 65536)) 65536
end 3 $((65536 + (2 << 20) + 65536))"
	expect_eq "final extent past the request: text map right" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap x --format text 2>&1)"
	expect_eq "final extent past the request: binary map right" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap x 2>&1 | "$DUMP" 2>&1)"
	expect_eq "final extent past the request: nbdinfo form right" \
"$(printf '%10d  %10d  %3d  %s\n' 0 65536 1 dirty 65536 $((B - (1 << 20) - 65536)) 0 clean \
	$((B - (1 << 20))) $((2 << 20)) 1 dirty $((B + (1 << 20))) $((S - 65536 - B - (1 << 20))) 0 clean \
	$((S - 65536)) 65536 1 dirty)" \
		"$("$NBDATTACH" map "$uri" --bitmap x --format nbdinfo 2>&1)"
	# Legal too: replies that stop short of the request. The map is exactly the same dirty
	# regions ($exp).
	python3 "$HOSTILE" "$dir/short.sock" short &
	defer "kill $!"
	wait_for_file "$dir/short.sock"
	uri="nbd+unix:///?socket=$dir/short.sock"
	expect_eq "replies stopping short: text map right" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap x --format text 2>&1)"
	expect_eq "replies stopping short: binary map right" "$exp" \
		"$("$NBDATTACH" map "$uri" --bitmap x 2>&1 | "$DUMP" 2>&1)"
else
	skip "hostile server" "python3 not installed"
fi
