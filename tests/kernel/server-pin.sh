#!/bin/bash
# The server a device was attached to is pinned: the journal records its socket's inode and the
# uid listening on it, and every later connection to the journaled URI checks both.
# - discard DEVICE through a socket path swapped for a symlink to another server's socket is
#   refused, and that server's image keeps its bytes; with the path restored, the same discard
#   reaches the device's own server (its range reads zeros: the positive control);
# - a run stopped at its map step while the path is swapped: its map is refused, nothing left;
# - a --no-monitor device whose server was restarted on the same path: the new server's answer
#   is not taken for the device's (cleanup keeps it with a warning, discards are refused);
# - the longest URI a run takes maps through the pinned socket with either transport.
# (Another uid listening on the same inode needs an inode number reused: tests/unit/discard.c.)
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "server-pin" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
start_server() { # NAME: a writable export whose TRIMs punch holes in NAME.raw
	[ -e "$tmp/$1.raw" ] || head -c $((16 << 20)) /dev/urandom > "$tmp/$1.raw"
	qemu-nbd --fork --persistent --shared=8 --format=raw --discard=unmap --pid-file="$tmp/$1.pid" \
		--socket="$tmp/$1.sock" --export-name=disk "$tmp/$1.raw" || fail "qemu-nbd $1 starts"
	defer "kill \$(cat '$tmp/$1.pid') 2>/dev/null"
}
state_files() { find /run/nbdattach -type f 2>/dev/null | sort | tr '\n' ' '; }
zeros() { cmp -s -n $((1 << 20)) "$1" /dev/zero; } # FILE: its first MiB reads zeros

start_server a
start_server b
dev=$("$NBDATTACH" attach --tag pin --name a "nbd+unix:///disk?socket=$tmp/a.sock")
expect_eq "attach" 0 "$?"
n=${dev#/dev/}
j=/run/nbdattach/devices/$n
expect_eq "journal: the socket's inode" "$(stat -c %i "$tmp/a.sock")" "$(sed -n 's/^socket-ino=//p' "$j")"
expect_eq "journal: the socket's filesystem" "$(stat -c %d "$tmp/a.sock")" "$(sed -n 's/^socket-dev=//p' "$j")"
expect_eq "journal: the uid qemu-nbd listens as" 0 "$(sed -n 's/^server-uid=//p' "$j")"
birth=$(stat -c %W "$tmp/a.sock")
if [ "$birth" -gt 0 ] 2>/dev/null; then
	expect_eq "journal: the socket's birth time (s)" "$birth" "$(( $(sed -n 's/^socket-btime=//p' "$j") / 1000000000 ))"
else
	check_fails "journal: no birth time where the filesystem keeps none" grep -q '^socket-btime=' "$j"
fi

# Whoever can rename in the socket's directory points the path at another server's socket.
b_sum=$(sha256sum < "$tmp/b.raw")
mv "$tmp/a.sock" "$tmp/a.moved"
ln -s "$tmp/b.sock" "$tmp/a.sock"
out=$("$NBDATTACH" discard "$dev" 0 $((1 << 20)) 2>&1); rc=$?
expect_eq "discard through the swapped path fails" 1 "$rc"
check "... saying the path leads to another socket ($out)" grep -q "another socket than it was attached to" <<< "$out"
expect_eq "the other server's image keeps its bytes" "$b_sum" "$(sha256sum < "$tmp/b.raw")"
check "the device still reads from its own server" cmp -s -n 65536 "$dev" "$tmp/a.raw"
rm "$tmp/a.sock"
mv "$tmp/a.moved" "$tmp/a.sock"
check_fails "positive control: a.raw's first MiB is data" zeros "$tmp/a.raw"
out=$("$NBDATTACH" discard "$dev" 0 $((1 << 20)) 2>&1); rc=$?
expect_eq "discard with the path restored" "0:discarded 1048576 bytes in 1 requests; 0 bytes not in whole 65536-byte granules left" "$rc:$out"
check "... reached the device's own server: a.raw's first MiB reads zeros" zeros "$tmp/a.raw"
"$NBDATTACH" detach "$dev"
expect_eq "detach" 0 "$?"

# A run's map goes only to the socket its volume was attached to: the helper stopped at its map
# step (NBDATTACH_FAULT_SIGNAL=STOP), the path swapped, then continued.
vol="name=a,uri=nbd+unix:///disk?socket=$tmp/a.sock"
"$NBDATTACH" run --tag pinrun --volume "$vol" -- true
expect_eq "positive control: the run as such succeeds" 0 "$?"
state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }
for transport in memfd pipe; do
	NBDATTACH_FAULT=map:a NBDATTACH_FAULT_SIGNAL=STOP "$NBDATTACH" run --map "$transport" --tag pinrun \
		--volume "$vol" -- true > "$tmp/run.out" 2>&1 &
	rp=$!
	for i in $(seq 300); do [ "$(state "$rp")" = T ] && break; sleep 0.1; done
	expect_eq "run ($transport) stopped at its map step" T "$(state "$rp")"
	mv "$tmp/a.sock" "$tmp/a.moved"
	ln -s "$tmp/b.sock" "$tmp/a.sock"
	kill -CONT "$rp"
	wait "$rp"; rc=$?
	rm "$tmp/a.sock"
	mv "$tmp/a.moved" "$tmp/a.sock"
	expect_eq "run ($transport): the helper failed before the provider" 125 "$rc"
	check "run ($transport): its map refused, saying why ($(head -c 300 "$tmp/run.out"))" grep -q \
		"cannot map volume 'a': its socket path now leads to another socket than it was attached to" "$tmp/run.out"
	udevadm settle
	expect_eq "run ($transport): no device of ours left" 0 "$(listed)"
done

# A server restarted on the same path: a new socket, and the new server's answer says nothing
# about the device's own. cleanup keeps the device and says why, as it cannot tell.
start_server c
dev=$("$NBDATTACH" attach --no-monitor --tag pin --name c "nbd+unix:///disk?socket=$tmp/c.sock")
check "attach --no-monitor" test -b "$dev"
ino=$(sed -n 's/^socket-ino=//p' "/run/nbdattach/devices/${dev#/dev/}")
kill -KILL "$(cat "$tmp/c.pid")"
for i in $(seq 50); do [ -e "/proc/$(cat "$tmp/c.pid")" ] || break; sleep 0.1; done
rm -f "$tmp/c.sock"
touch "$tmp/filler" # on a filesystem that reuses inode numbers, not this one at once
start_server c
check "a new server answers on the path" nbdinfo --size "nbd+unix:///disk?socket=$tmp/c.sock"
if [ "$(stat -c %i "$tmp/c.sock")" = "$ino" ]; then
	skip "restarted server" "the new socket got the old inode number back (then its birth time decides: tests/unit/pin.c)"
else
	out=$("$NBDATTACH" cleanup 2>&1); rc=$?
	expect_eq "cleanup: kept, with a warning naming it" \
		"0:nbdattach: warning: '$dev' kept: its socket path now leads to another socket or server than it was attached to, so whether its own server is gone cannot be told" "$rc:$out"
	check "the device is still connected" test -e "/sys/block/${dev#/dev/}/pid"
	out=$("$NBDATTACH" discard "$dev" 0 65536 2>&1)
	expect_eq "discard to the restarted server refused" \
		"nbdattach: cannot discard on '$dev': its socket path now leads to another socket than it was attached to" "$out"
fi

# The longest URI a run takes (2047 bytes) is mapped by the pipe transport's writer as by the
# memfd path: the writer gets the URI as given and the pinned socket as a descriptor. (A socket
# path shorter than /proc/self/fd/4, rewritten to it, would make the URI too long.)
ln -s "$tmp/a.sock" /run/npin
defer "rm -f /run/npin"
base="nbd+unix:///disk?socket=/run/npin&pad="
long=$base$(printf '%*s' $((2047 - ${#base})) '' | tr ' ' x)
expect_eq "the long URI is 2047 bytes" 2047 "${#long}"
for transport in memfd pipe; do
	out=$("$NBDATTACH" run --map "$transport" --tag pinlong --volume "name=l,uri=$long" -- \
		sh -c '"$1" /dev/fd/4 | tail -n 1' sh "$BUILD/tests/helpers/rmap-dump" 2>"$tmp/long.err")
	rc=$?
	expect_eq "a 2047-byte URI, $transport map: the whole export ($(tail -n 1 "$tmp/long.err"))" \
		"0:end 1 $((16 << 20))" "$rc:$out"
done

"$NBDATTACH" detach "$dev"
expect_eq "detach" 0 "$?"
udevadm settle
expect_eq "state directory empty" "" "$(state_files)"
expect_eq "no device of ours left" 0 "$(listed)"
