#!/bin/bash
# Bad input: each a one-line error, non-zero exit, nothing left (no connected device, no state).
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "attach-badinput" "runs only inside the test VM"; exit 0; }
. "$TOP/tests/fixtures/qemu-nbd-bitmap.sh"

tmp=$(mktmpdir)
connected() { ls /sys/block/nbd*/pid 2>/dev/null | wc -l; }

# expect_refused DESC ARGS...: one stderr line starting "nbdattach: ", exit != 0, nothing left.
expect_refused() {
	local d=$1 out rc; shift
	out=$("$NBDATTACH" attach "$@" 2>&1 >/dev/null); rc=$?
	if [ "$rc" -ne 0 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [ "${out#nbdattach: }" != "$out" ]; then
		pass "$d: $out"
	else
		fail "$d" "rc=$rc out=$out"
	fi
	expect_eq "$d: no device connected" 0 "$(connected)"
	expect_eq "$d: no state" "" "$(ls /run/nbdattach/devices 2>/dev/null)"
}

# A unix-socket server from python3: MODE garbage|close-mid-handshake.
pyserver() {
	python3 - "$1" "$2" <<'PY' &
import os, socket, sys
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(8)
while True:
    c, _ = s.accept()
    if mode == "garbage":
        c.sendall(os.urandom(4096))
    else:
        c.sendall(b"NBDMAGIC")  # then hang up in the middle of the greeting
    c.close()
PY
	defer "kill $!"
	wait_for_file "$1"
}

img_create "$tmp/a.qcow2" 16M
qnbd_start "$tmp/a.qcow2" "$tmp/a.sock" disk || fail "qemu-nbd fixture starts"
pyserver "$tmp/garbage.sock" garbage
pyserver "$tmp/close.sock" close

nbdkit -U "$tmp/zero.sock" -P "$tmp/zero.pid" eval get_size='echo 0' pread='exit 0' || fail "nbdkit size 0 starts"
defer "kill \$(cat '$tmp/zero.pid')"
# nbdkit refuses to advertise a bad block size itself, so a python3 server does: fixed newstyle,
# NBD_OPT_GO answered with NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE min=1000.
python3 - "$tmp/bs.sock" <<'PY' &
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
def rep(c, opt, typ, data=b""):
    c.sendall(struct.pack(">QIII", 0x3e889045565a9, opt, typ, len(data)) + data)
def serve(c):
    c.sendall(b"NBDMAGICIHAVEOPT" + struct.pack(">H", 3))
    c.recv(4)
    while True:
        h = c.recv(16, socket.MSG_WAITALL)
        if len(h) < 16: return
        _, opt, ln = struct.unpack(">QII", h)
        if ln: c.recv(ln, socket.MSG_WAITALL)
        if opt == 7:  # GO
            rep(c, opt, 3, struct.pack(">HQH", 0, 1 << 20, 1))
            rep(c, opt, 3, struct.pack(">HIII", 3, 1000, 4096, 65536))
            rep(c, opt, 1)
            c.recv(1 << 16); return
        rep(c, opt, 0x80000001)
while True:
    c, _ = s.accept()
    try: serve(c)
    finally: c.close()
PY
defer "kill $!"
wait_for_file "$tmp/bs.sock"
nbdkit -U "$tmp/plain.sock" -P "$tmp/plain.pid" eval get_size='echo 1048576' pread='dd if=/dev/zero bs=$3 count=1 status=none' ||
	fail "nbdkit without multi-conn starts"
defer "kill \$(cat '$tmp/plain.pid')"

expect_refused "missing socket" "nbd+unix:///disk?socket=$tmp/none.sock"
expect_refused "garbage server" "nbd+unix:///disk?socket=$tmp/garbage.sock"
expect_refused "unknown export" "nbd+unix:///nosuch?socket=$tmp/a.sock"
expect_refused "closes mid-handshake" "nbd+unix:///disk?socket=$tmp/close.sock"
expect_refused "size 0" "nbd+unix:///?socket=$tmp/zero.sock"
# libnbd 1.14 discards a block-size info that is not a power of two, as if none had been sent:
# the kernel must still only ever get a valid block size, and the device detaches cleanly.
dev=$("$NBDATTACH" attach --json "nbd+unix:///?socket=$tmp/bs.sock" 2>"$tmp/bs.err")
rc=$?
expect_eq "server advertising block size 1000: attach gives a device ($(cat "$tmp/bs.err"))" 0 "$rc"
bs=$(printf %s "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["block_size"])' 2>/dev/null)
case "$bs" in 512|1024|2048|4096) pass "server advertising block size 1000: device block size $bs" ;;
	*) fail "server advertising block size 1000: device block size valid" "got '$bs'" ;; esac
check "server advertising block size 1000: detach" "$NBDATTACH" detach \
	"$(printf %s "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["device"])')"
expect_eq "server advertising block size 1000: nothing left" "0:" "$(connected):$(ls /run/nbdattach/devices 2>/dev/null)"
nbdkit -U "$tmp/odd.sock" -P "$tmp/odd.pid" eval get_size='echo 1000' pread='dd if=/dev/zero bs=$3 count=1 status=none' ||
	fail "nbdkit odd size starts"
defer "kill \$(cat '$tmp/odd.pid')"
expect_refused "size not a multiple of 512" "nbd+unix:///?socket=$tmp/odd.sock"
expect_refused "--block-size not a power of two" --block-size 1000 "$(qnbd_uri "$tmp/a.sock")"
expect_refused "nbds:// URI" "nbds+unix:///disk?socket=$tmp/a.sock"
expect_refused "invalid tag" --tag '../x' "$(qnbd_uri "$tmp/a.sock")"
expect_refused "unknown option" --frobnicate "$(qnbd_uri "$tmp/a.sock")"
expect_refused "connections without multi-conn" --connections 2 "nbd+unix:///?socket=$tmp/plain.sock"
# The caller learns the device only from attach's output: when it cannot be written, the
# device must not stay behind, nobody's.
out=$("$NBDATTACH" attach "$(qnbd_uri "$tmp/a.sock")" 2>&1 >/dev/full); rc=$?
expect_eq "output to a full disk: exit 1 ($out)" 1 "$rc"
case "$out" in "nbdattach: cannot attach "*"standard output: No space left on device") pass "output to a full disk: one line" ;;
	*) fail "output to a full disk: one line" "$out" ;; esac
udevadm settle
expect_eq "output to a full disk: no device connected" 0 "$(connected)"
expect_eq "output to a full disk: no state" "" "$(find /run/nbdattach/devices /run/nbdattach/udev /run/nbdattach/claims -type f 2>/dev/null)"
# A server that takes the connection and never greets: attach gives up after the 30 s the
# handshake gets (the watchdog's 124 is what it did before: wait for good).
python3 "$TOP/tests/helpers/hostile-nbd.py" "$tmp/silent.sock" silent &
defer "kill $!"
wait_for_file "$tmp/silent.sock"
out=$(timeout 90 "$NBDATTACH" attach "nbd+unix:///?socket=$tmp/silent.sock" 2>&1 >/dev/null)
rc=$?
expect_eq "server that never greets: exit 1 with the reason" \
	"1:nbdattach: cannot attach 'nbd+unix:///?socket=$tmp/silent.sock': cannot connect: the server did not complete the handshake in 30 s (Connection timed out)" \
	"$rc:$out"
expect_eq "server that never greets: nothing left" "0:" "$(connected):$(ls /run/nbdattach/devices 2>/dev/null)"
# A connection that dies while the device is being attached (the server closes it right after
# the handshake, and still answers new ones): nobody but attach hears that LINK_DEAD.
python3 "$TOP/tests/helpers/hostile-nbd.py" "$tmp/hangup.sock" hangup &
defer "kill $!"
wait_for_file "$tmp/hangup.sock"
expect_refused "connection dies while attaching" "nbd+unix:///?socket=$tmp/hangup.sock"
out=$("$NBDATTACH" attach "nbd+unix:///?socket=$tmp/hangup.sock" 2>&1 >/dev/null)
case "$out" in *"its connection died while attaching"*) pass "the message says why ($out)" ;;
	*) fail "the message says why" "$out" ;; esac
udevadm settle
if command -v pgrep >/dev/null; then
	expect_eq "connection dies while attaching: no monitor left" "" "$(pgrep -f 'nbdattach monitor' || true)"
else
	skip "connection dies while attaching: no monitor left" "pgrep not installed"
fi
