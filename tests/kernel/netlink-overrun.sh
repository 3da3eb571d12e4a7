#!/bin/bash
# A monitor, or run, whose netlink receive buffer overran while it was not reading (many links
# died at once) has lost events, perhaps its own device's LINK_DEAD: it asks the server instead,
# and the device of a dead server is still released. The overrun is real: net.core.rmem_max
# caps the buffer the socket asks for, another device's 16 connections die while the process is
# stopped, then its own server, and the kernel's drop counter for the process's socket
# (/proc/net/netlink) must have counted before it runs again.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "netlink-overrun" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
sd=${NBDATTACH_STATE_DIR:-/run/nbdattach}/devices
for s in a b c d; do
	truncate -s 16M "$tmp/$s.raw"
	qemu-nbd --fork --persistent --shared=16 --format=raw --pid-file="$tmp/$s.pid" \
		--socket="$tmp/$s.sock" --export-name=disk "$tmp/$s.raw" || fail "qemu-nbd $s starts"
	defer "kill -9 \$(cat '$tmp/$s.pid') 2>/dev/null"
done
defer "'$NBDATTACH' detach --force --tag ovr >/dev/null 2>&1"

rmem=$(sysctl -n net.core.rmem_max)
defer "sysctl -qw net.core.rmem_max=$rmem"
sysctl -qw net.core.rmem_max=4096
deva=$("$NBDATTACH" attach --tag ovr --name a "nbd+unix:///disk?socket=$tmp/a.sock" 2>"$tmp/a.err")
sysctl -qw net.core.rmem_max="$rmem"
devb=$("$NBDATTACH" attach --tag ovr --name b --connections 16 "nbd+unix:///disk?socket=$tmp/b.sock" \
	2>"$tmp/b.err")
check "a attached with a small netlink buffer ($deva$(cat "$tmp/a.err"))" test -b "$deva"
check "b attached with 16 connections ($devb$(cat "$tmp/b.err"))" test -b "$devb"
na=${deva#/dev/} nb=${devb#/dev/}
mpid=$(sed -n 's/^pid=//p' "$sd/$na")
check "a's monitor runs (pid $mpid)" kill -0 "$mpid"

# drops PID: the kernel's drops on the generic netlink sockets (protocol 16) of PID.
drops() {
	local inodes
	inodes=$(for fd in /proc/"$1"/fd/*; do readlink "$fd"; done | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
	awk -v inodes="$inodes" 'BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) ours[a[i]] = 1 }
		NR > 1 && $2 == 16 && ($10 in ours) { d += $9 } END { print d + 0 }' /proc/net/netlink
}
expect_eq "no drops on the monitor's netlink socket yet" 0 "$(drops "$mpid")"

# wait_released N: /sys/block/N/pid gone within 30 s.
wait_released() {
	local i
	for i in $(seq 300); do
		[ -e "/sys/block/$1/pid" ] || return 0
		sleep 0.1
	done
	return 1
}
kill -STOP "$mpid"
defer "kill -CONT $mpid 2>/dev/null"
kill -9 "$(cat "$tmp/b.pid")"
check "b's own monitor releases b after its server died" wait_released "$nb"
kill -9 "$(cat "$tmp/a.pid")"
# a's LINK_DEAD is queued behind b's sixteen, or dropped; give the kernel's work a moment.
sleep 1
check "a is still attached while its monitor is stopped" test -e "/sys/block/$na/pid"
d=$(drops "$mpid")
check "the kernel dropped events for the stopped monitor ($d)" test "$d" -gt 0
kill -CONT "$mpid"
check "a's monitor releases a after the overrun" wait_released "$na"
check "a's journal entry is gone" test ! -e "$sd/$na"
for i in $(seq 100); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
check "a's monitor has exited" sh -c "! kill -0 $mpid 2>/dev/null"
expect_eq "nothing of the tag is left in list" "" "$("$NBDATTACH" list 2>/dev/null | grep -w ovr)"

# run: the same with its own subscription, a provider that never reads, and a volume whose
# server dies while run is stopped.
sysctl -qw net.core.rmem_max=4096
"$NBDATTACH" run --tag rovr --volume "name=c,uri=nbd+unix:///disk?socket=$tmp/c.sock" -- \
	sh -c 'touch "$1"; exec sleep 600' provider "$tmp/c.started" >"$tmp/run.out" 2>"$tmp/run.err" &
rpid=$!
defer "kill -9 $rpid 2>/dev/null"
wait_for_file "$tmp/c.started" 60
sysctl -qw net.core.rmem_max="$rmem"
devc=$(readlink -f /dev/nbdattach/rovr/c)
devd=$("$NBDATTACH" attach --tag ovr --name d --connections 16 "nbd+unix:///disk?socket=$tmp/d.sock" \
	2>"$tmp/d.err")
check "run attached c ($devc)" test -b "$devc"
check "d attached with 16 connections ($devd$(cat "$tmp/d.err"))" test -b "$devd"
nc=${devc#/dev/} nd=${devd#/dev/}
expect_eq "no drops on run's netlink socket yet" 0 "$(drops "$rpid")"
kill -STOP "$rpid"
kill -9 "$(cat "$tmp/d.pid")"
check "d's monitor releases d after its server died" wait_released "$nd"
kill -9 "$(cat "$tmp/c.pid")"
sleep 1
check "c is still attached while run is stopped" test -e "/sys/block/$nc/pid"
d=$(drops "$rpid")
check "the kernel dropped events for the stopped run ($d)" test "$d" -gt 0
kill -CONT "$rpid"
check "run releases c after the overrun, its provider still running" wait_released "$nc"
check "the provider is still running" pgrep -f "sleep 600"
check "run says why" grep -q "volume 'c': the server went away: releasing $devc" "$tmp/run.err"
kill -TERM "$rpid"
wait "$rpid"
rc=$?
check "run exits non-zero (status $rc)" test "$rc" -ne 0
expect_eq "nothing of run is left in list" "" "$("$NBDATTACH" list 2>/dev/null | grep -w rovr)"
