#!/bin/bash
# What 60-nbdattach.rules sets on a device of ours beyond what hygiene-guestdisk looks at
# (blkid, LVM, partitions): the flags that keep multipath, ModemManager, udisks, the
# persistent-storage rules and systemd away, a root-only node, and no inotify watch, so that
# closing the device after a write does not make udev re-probe it.  The same export attached
# by nbd-client, and the minor nbdattach has released, get none of it: the rules match neither
# too little nor too much.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "hygiene-udev" "runs only inside the test VM"; exit 0; }
command -v nbd-client >/dev/null || { skip "hygiene-udev" "nbd-client not installed"; exit 0; }

tmp=$(mktmpdir)
truncate -s 32M "$tmp/disk.raw"
qemu-nbd --fork --persistent --shared=4 --format=raw --pid-file="$tmp/q.pid" --socket="$tmp/q.sock" \
	--export-name=disk "$tmp/disk.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid')"

# A real host's 50-udev-default.rules makes block nodes root:disk 0660, but the rig's udevd
# (--resolve-names=never) ignores GROUP="disk" and leaves every node root:root 0600, as ours:
# give this test's nbd nodes the real host's permissions, by number.
disk_gid=$(getent group disk | cut -d: -f3)
perms=/run/udev/rules.d/50-nbdattach-test-perms.rules
echo "SUBSYSTEM==\"block\", KERNEL==\"nbd*\", GROUP=\"${disk_gid:-6}\", MODE=\"0660\"" > "$perms"
udevadm control --reload
# Put the nodes back as the rig has them.
restore_perms() {
	rm -f "$perms"
	udevadm control --reload
	[ -n "${dev:-}" ] && udevadm trigger --action=change "$dev"
	[ -n "${fdev:-}" ] && udevadm trigger --action=change "$fdev"
	udevadm settle
}
defer restore_perms

dev=$("$NBDATTACH" attach --tag udv --name disk "nbd+unix:///disk?socket=$tmp/q.sock" 2>"$tmp/err")
rc=$?
expect_eq "attach succeeds ($(cat "$tmp/err"))" 0 "$rc"
defer "'$NBDATTACH' detach '$dev'"
n=${dev#/dev/}
# Another tool's device: nbd-client on the highest free minor.
fdev=
for q in $(ls -d /sys/block/nbd* | sort -V -r); do
	[ -e "$q/pid" ] || { fdev=/dev/${q##*/}; break; }
done
check "nbd-client attaches the same export to $fdev" nbd-client -N disk -unix "$tmp/q.sock" "$fdev" -b 4096
defer "nbd-client -d $fdev"
udevadm settle

props() { udevadm info --query=property --name="$1"; }
# watched DEV: udev holds an inotify watch on DEV.  systemd 252 keeps two links per watch in
# /run/udev/watch: bMAJ:MIN -> the watch descriptor, and the descriptor -> bMAJ:MIN.
watched() {
	local id
	id=b$(cat "/sys/block/${1#/dev/}/dev")
	[ -L "/run/udev/watch/$id" ] || [ -n "$(find /run/udev/watch -lname "$id" 2>/dev/null)" ]
}

# --- Properties: ours has each, nbd-client's none.
ours=$(props "$dev") foreign=$(props "$fdev")
flags="UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1 UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG=1
	DM_UDEV_DISABLE_OTHER_RULES_FLAG=1 DM_MULTIPATH_DEVICE_PATH=0 UDISKS_IGNORE=1
	ID_MM_DEVICE_IGNORE=1 SYSTEMD_READY=0"
for kv in NBDATTACH=1 "NBDATTACH_ID=$(cat "/sys/block/$n/backend")" NBDATTACH_TAG=udv NBDATTACH_NAME=disk $flags; do
	printf '%s\n' "$ours" | grep -qxF "$kv" && pass "ours: $kv" || fail "ours: $kv" "missing"
	printf '%s\n' "$foreign" | grep -q "^${kv%%=*}=" &&
		fail "nbd-client's: no ${kv%%=*}" "$(printf '%s\n' "$foreign" | grep "^${kv%%=*}=")" ||
		pass "nbd-client's: no ${kv%%=*}"
done
# The persistent-storage flag at work: stock rules give every disk a by-diskseq link.
expect_eq "ours: no /dev/disk links, only the stable one" "nbdattach/udv/disk" \
	"$(udevadm info --query=symlink --name="$dev")"
check "nbd-client's: stock /dev/disk/by-diskseq link" \
	sh -c "udevadm info --query=symlink --name='$fdev' | grep -q 'disk/by-diskseq/'"
expect_eq "ours: node root:root 0600" "0:0 600" "$(stat -c '%u:%g %a' "$dev")"
expect_eq "nbd-client's: node root:disk 0660 as the host's rules make it" "0:${disk_gid:-6} 660" \
	"$(stat -c '%u:%g %a' "$fdev")"

# --- No inotify watch on ours; nbd-client's has the one 60-block.rules asks for.
check_fails "ours: udev holds no inotify watch on $dev" watched "$dev"
check "nbd-client's: udev watches $fdev" watched "$fdev"

# The watch at work: closing a watched device after a write makes udev synthesize a "change"
# uevent (and re-run every probe).  Write to ours first, then to nbd-client's: udevd handles
# its inotify events in the order they come, so once the kernel has sent nbd-client's change,
# one for ours would have come before it.
coproc mon { exec udevadm monitor --kernel --subsystem-match=block; }
# shellcheck disable=SC2154 # mon_PID is set by coproc
mon_pid=$mon_PID
defer '[ -n "$mon_pid" ] && kill "$mon_pid"' # not once reaped: the pid may be another's
# udevadm subscribes before it prints its header, which ends with an empty line.
while IFS= read -r -t 30 line <&"${mon[0]}" && [ -n "$line" ]; do :; done
check "write and close $dev" dd if=/dev/zero of="$dev" bs=4096 count=1 oflag=direct status=none
check "write and close $fdev" dd if=/dev/zero of="$fdev" bs=4096 count=1 oflag=direct status=none
seen_ours=0 seen_foreign=0
while IFS= read -r -t 60 line <&"${mon[0]}"; do
	case "$line" in
	*" change "*"/block/$n (block)") seen_ours=1 ;;
	*" change "*"/block/${fdev#/dev/} (block)") seen_foreign=1; break ;;
	esac
done
kill "$mon_pid"; wait "$mon_pid" 2>/dev/null; mon_pid=
expect_eq "nbd-client's: a write and close makes udev send a change uevent" 1 "$seen_foreign"
expect_eq "ours: a write and close makes no change uevent" 0 "$seen_ours"

# --- The released minor goes back to stock treatment for its next user.  (Stock 99-systemd
# gives any nbd disk without a pid SYSTEMD_READY=0, so that one is not ours to check.)
check "detach" "$NBDATTACH" detach "$dev"
udevadm settle
released=$(props "$dev")
for kv in NBDATTACH=1 NBDATTACH_ID= NBDATTACH_TAG= NBDATTACH_NAME= $flags; do
	case "$kv" in SYSTEMD_READY=*) continue ;; esac
	printf '%s\n' "$released" | grep -q "^${kv%%=*}=" &&
		fail "released $n: no ${kv%%=*}" "$(printf '%s\n' "$released" | grep "^${kv%%=*}=")" ||
		pass "released $n: no ${kv%%=*}"
done
check "released $n: udev watches it again" watched "$dev"
expect_eq "released $n: node root:disk 0660 again" "0:${disk_gid:-6} 660" "$(stat -c '%u:%g %a' "$dev")"
