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
done
# kill_server S: SIGKILL server S, if the pid is still that server (the test kills some itself).
kill_server() {
	local pid
	pid=$(cat "$tmp/$1.pid" 2>/dev/null) || return 0
	grep -qF "$tmp/$1.sock" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"
}
defer "for s in a b c d; do kill_server \$s; done"
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
# more_drops PID N: the drops on PID's sockets pass N within 10 s.
more_drops() {
	local i
	for i in $(seq 100); do
		[ "$(drops "$1")" -gt "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# overrun WHO PID OTHER OTHER_DEV OWN OWN_DEV: with PID (WHO) stopped, server OTHER (whose device
# OTHER_DEV has 16 connections) dies and then OWN, PID's own: the kernel drops events on PID's
# socket, the last of them OWN's LINK_DEAD, and OWN_DEV stays until PID runs again.
overrun() {
	local who=$1 pid=$2 other=$3 odev=$4 own=$5 dev=$6 d
	kill -STOP "$pid"
	kill_server "$other"
	check "$other's own monitor releases $other after its server died" wait_released "$odev"
	check "$other's sixteen LINK_DEADs overran the stopped $who's buffer" more_drops "$pid" 0
	d=$(drops "$pid")
	kill_server "$own"
	check "$own's own LINK_DEAD was dropped too (after $d)" more_drops "$pid" "$d"
	check "$own is still attached while the $who is stopped" test -e "/sys/block/$dev/pid"
	kill -CONT "$pid"
}
defer '[ -n "$mpid" ] && kill -CONT "$mpid"'
overrun monitor "$mpid" b "$nb" a "$na"
check "a's monitor releases a after the overrun" wait_released "$na"
# The monitor removes the entry after its DISCONNECT returns, which may be after the kernel has
# dropped the device's pid attribute.
for i in $(seq 100); do [ -e "$sd/$na" ] || break; sleep 0.1; done
check "a's journal entry is gone" test ! -e "$sd/$na"
for i in $(seq 100); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
check "a's monitor has exited" sh -c "! kill -0 $mpid 2>/dev/null"
mpid=
expect_eq "nothing of the tag is left in list" 0 "$(listed ' ovr ')"

# run: the same with its own subscription, a provider that never reads, and a volume whose
# server dies while run is stopped.
sysctl -qw net.core.rmem_max=4096
"$NBDATTACH" run --tag rovr --volume "name=c,uri=nbd+unix:///disk?socket=$tmp/c.sock" -- \
	sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 600' provider "$tmp/provider.pid" \
	>"$tmp/run.out" 2>"$tmp/run.err" &
rpid=$!
# On a failed check: no run, provider or device left for the next test.
defer '[ -n "$rpid" ] && kill -9 "$rpid"; p=$(cat "$tmp/provider.pid"); grep -q "^sleep" "/proc/$p/cmdline" && kill -9 "$p"; "$NBDATTACH" detach --force --tag rovr'
wait_for_file "$tmp/provider.pid" 60
ppid_=$(cat "$tmp/provider.pid")
sysctl -qw net.core.rmem_max="$rmem"
devc=$(readlink -f /dev/nbdattach/rovr/c)
devd=$("$NBDATTACH" attach --tag ovr --name d --connections 16 "nbd+unix:///disk?socket=$tmp/d.sock" \
	2>"$tmp/d.err")
check "run attached c ($devc)" test -b "$devc"
check "d attached with 16 connections ($devd$(cat "$tmp/d.err"))" test -b "$devd"
nc=${devc#/dev/} nd=${devd#/dev/}
expect_eq "no drops on run's netlink socket yet" 0 "$(drops "$rpid")"
defer '[ -n "$rpid" ] && kill -CONT "$rpid"'
overrun run "$rpid" d "$nd" c "$nc"
check "run releases c after the overrun, its provider still running" wait_released "$nc"
check "the provider is still running" grep -q "^sleep" "/proc/$ppid_/cmdline"
check "run says why" grep -q "volume 'c': the server went away: releasing $devc" "$tmp/run.err"
kill -TERM "$rpid"
wait "$rpid"
rc=$?
rpid=
expect_eq "run returns the provider's death by the SIGTERM it forwarded (143)" 143 "$rc"
expect_eq "nothing of run is left in list" 0 "$(listed ' rovr ')"
