#!/bin/bash
# A guest disk (GPT; ext4 on p1; LVM PV on p2 with a volume group, a logical volume and ext4 on
# it) attached by nbdattach: the host gets no partitions, no device-mapper devices, no active
# volume group, no blkid properties, and the node is root's with a stable link. The same disk
# attached by plain nbd-client with the stock nbd module (the anchor) shows what stock udev
# and the kernel do, so this test can fail.
# A volume group on a whole disk: no pvscan or activation either, and LVM commands see it
# only until lvm.conf filters nbd devices out as nbdattach(8) says.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "hygiene-guestdisk" "runs only inside the test VM"; exit 0; }

tmp=$(mktmpdir)
LVMCONF='global { use_lvmpolld = 0 } activation { udev_sync = 1 udev_rules = 1 }'
lvm_() { lvm "$@" --config "$LVMCONF"; }

# The guest's disk, built on a loop device inside the VM.
truncate -s 160M "$tmp/guest.raw"
printf 'label: gpt\n,40M,L\n,,E6D6D379-F507-44C2-A23C-238F2A3DF928\n' | sfdisk -q "$tmp/guest.raw" ||
	fail "partition table written"
modprobe loop
loopdev=$(losetup -P -f --show "$tmp/guest.raw") || { fail "loop device for the guest image"; exit 1; }
udevadm settle
mkfs.ext4 -q -L guestroot "${loopdev}p1" || fail "ext4 on p1"
lvm_ pvcreate -q "${loopdev}p2" >/dev/null && lvm_ vgcreate -q guestvg "${loopdev}p2" >/dev/null &&
	lvm_ lvcreate -q -L 32M -n lv0 guestvg >/dev/null || fail "guest volume group created"
udevadm settle
mkfs.ext4 -q /dev/guestvg/lv0 || fail "ext4 on the guest's logical volume"
lvm_ vgchange -q -an guestvg >/dev/null
losetup -d "$loopdev"
udevadm settle

qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/q.pid" \
	--socket="$tmp/q.sock" --export-name=guest "$tmp/guest.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid')"
uri="nbd+unix:///guest?socket=$tmp/q.sock"

# evidence DEV: what the host made of the disk (one word per finding).
evidence() {
	local dev=$1 n=${1#/dev/} props
	props=$(udevadm info --query=property --name="$dev" 2>/dev/null)
	ls -d /sys/block/"$n"/"$n"p* >/dev/null 2>&1 && echo partitions
	printf '%s\n' "$props" | grep -q '^ID_PART_TABLE_TYPE=' && echo part-table-probed
	printf '%s\n' "$props" | grep -q '^ID_FS_' && echo fs-probed
	for p in /sys/block/"$n"/"$n"p*; do
		[ -e "$p" ] || continue
		udevadm info --query=property --path="$p" | grep -q '^ID_FS_TYPE=' && echo "fs-probed:${p##*/}"
	done
	ls /sys/block | grep -q '^dm-' && echo dm-devices
	lvm_ vgs --noheadings -o vg_name 2>/dev/null | grep -q guestvg && echo vg-visible
	[ -e /dev/guestvg/lv0 ] && echo vg-active
	ls /run/lvm/pvs_online/* >/dev/null 2>&1 && echo lvm-pvscan
}

# --- The anchor: nbd-client with the stock module (partition scanning on) and stock rules.
# Whatever happens until the module is back with the rig's options (modprobe.d/nbdattach.conf,
# max_part=0, as tests/vm/guest-init loads it), the next tests must not get the stock module.
restore_module() {
	[ "$(cat /sys/module/nbd/parameters/max_part 2>/dev/null)" = 0 ] && return
	# The guest's volume group first: while its mapping holds nbd0p2, nbd0 stays connected.
	lvm_ vgchange -q -an guestvg
	nbd-client -d /dev/nbd0
	"$NBDATTACH" detach --tag hyg
	udevadm settle
	if [ -e /sys/module/nbd ]; then
		for i in 1 2 3 4 5; do rmmod nbd && break; sleep 1; done
	fi
	modprobe nbd
}
defer restore_module
check "nbd module reloads with stock options" sh -c 'rmmod nbd && modprobe -C /dev/null nbd'
# 512-byte blocks: the GPT was written with 512-byte sectors.
check "nbd-client attaches the guest disk" nbd-client -N guest -unix "$tmp/q.sock" /dev/nbd0 -b 512
udevadm settle
anchor=$(evidence /dev/nbd0 | tr '\n' ' ')
echo "anchor (nbd-client, stock): $anchor"
[ -n "$anchor" ] && pass "stock udev and kernel look into the guest disk: $anchor" ||
	fail "stock udev and kernel look into the guest disk" "no evidence: the test could not fail"
lvm_ vgchange -q -an guestvg >/dev/null 2>&1
nbd-client -d /dev/nbd0 >/dev/null
udevadm settle
lvm_ pvscan --cache >/dev/null 2>&1
rm -rf /run/lvm/pvs_online /run/lvm/vgs_online

# nbdattach on the stock module: it says partition scanning is on (only modprobe.d fixes that).
dev=$("$NBDATTACH" attach --block-size 512 --tag hyg --name stock "$uri" 2>"$tmp/warn")
check "nbdattach attaches on the stock module ($dev)" test -b "$dev"
grep -q 'max_part=' "$tmp/warn" && pass "attach warns about partition scanning: $(cat "$tmp/warn")" ||
	fail "attach warns about partition scanning" "stderr: $(cat "$tmp/warn")"
udevadm settle
# The kernel's own scan still creates partitions here, and an explicit `lvm vgs` scans every
# block device it finds, those partitions included: that is why modprobe.d sets max_part=0.
if [ -b "$dev" ]; then
	left=$(evidence "$dev" | grep -v -e "^partitions$" -e "^vg-visible$" | tr "\n" " ")
	expect_eq "even with partition scanning on, udev probes neither the disk nor its partitions" "" "$left"
else
	fail "even with partition scanning on, udev probes neither the disk nor its partitions" "no device to look at"
fi
"$NBDATTACH" detach "$dev" >/dev/null
udevadm settle
check "nbd module reloads with nbdattach's options" sh -c 'rmmod nbd && modprobe nbd'
expect_eq "max_part from modprobe.d/nbdattach.conf" 0 "$(cat /sys/module/nbd/parameters/max_part)"

# --- nbdattach with its modprobe.d and udev rules.
set_free_queues 192 "" 1
dev=$("$NBDATTACH" attach --block-size 512 --tag hyg --name guest "$uri" 2>"$tmp/err")
rc=$?
expect_eq "attach succeeds ($(cat "$tmp/err"))" 0 "$rc"
defer "'$NBDATTACH' detach --tag hyg"
n=${dev#/dev/}
udevadm settle
expect_eq "no warning on stderr" "" "$(cat "$tmp/err")"
expect_eq "the host made nothing of the guest disk" "" "$(evidence "$dev" | tr '\n' ' ')"
props=$(udevadm info --query=property --name="$dev")
for p in NBDATTACH=1 SYSTEMD_READY=0 UDISKS_IGNORE=1 DM_UDEV_DISABLE_OTHER_RULES_FLAG=1 \
	UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG=1 NBDATTACH_TAG=hyg NBDATTACH_NAME=guest; do
	printf '%s\n' "$props" | grep -qx "$p" && pass "udev: $p" || fail "udev: $p" "missing"
done
# The node's owner and mode: hygiene-udev.sh, which gives the rig's nbd nodes a real host's
# root:disk 0660 first (here every node is 0600 whatever our rule says).
expect_eq "read_ahead_kb and nomerges untouched without --bitmap" "192 1" \
	"$(cat "/sys/block/$n/queue/read_ahead_kb") $(cat "/sys/block/$n/queue/nomerges")"
expect_eq "stable link /dev/nbdattach/hyg/guest" "$dev" "$(readlink -f /dev/nbdattach/hyg/guest)"
cmp -s <(dd if="$dev" bs=1M count=4 iflag=direct status=none) <(head -c 4M "$tmp/guest.raw") &&
	pass "the device still reads the guest's bytes" || fail "the device reads the guest's bytes" "differs"

# Two tags, one name: two links, two devices.
d1=$("$NBDATTACH" attach --tag tag-a --name disk "$uri") && d2=$("$NBDATTACH" attach --tag tag-b --name disk "$uri")
expect_eq "same name under two tags: two links" "$d1 $d2" \
	"$(readlink -f /dev/nbdattach/tag-a/disk) $(readlink -f /dev/nbdattach/tag-b/disk)"
[ "$d1" != "$d2" ] && pass "two distinct devices ($d1, $d2)" || fail "two distinct devices" "$d1 $d2"
check "detach --tag tag-a" "$NBDATTACH" detach --tag tag-a
check "detach --tag tag-b" "$NBDATTACH" detach --tag tag-b
check "detach" "$NBDATTACH" detach "$dev"
udevadm settle
check_fails "link gone after detach" test -e /dev/nbdattach/hyg/guest
check_fails "links of the other tags gone" test -e /dev/nbdattach/tag-a/disk -o -e /dev/nbdattach/tag-b/disk
expect_eq "no udev records or claims left" "" "$(find /run/nbdattach/udev /run/nbdattach/claims -type f 2>/dev/null)"

# --- A volume group on the whole disk (no partition table, so max_part=0 does not hide it):
# udev-driven LVM (69-lvm.rules: pvscan, autoactivation) stays away, but an LVM command scans
# block devices itself and sees it, unless lvm.conf filters nbd devices out (nbdattach(8)).
truncate -s 64M "$tmp/whole.raw"
loopdev=$(losetup -f --show "$tmp/whole.raw") || fail "loop device for the whole-disk image"
lvm_ pvcreate -q "$loopdev" >/dev/null && lvm_ vgcreate -q wholevg "$loopdev" >/dev/null &&
	lvm_ lvcreate -q -L 8M -n lv0 wholevg >/dev/null || fail "whole-disk volume group created"
lvm_ vgchange -q -an wholevg >/dev/null
losetup -d "$loopdev"
udevadm settle
rm -rf /run/lvm/pvs_online /run/lvm/vgs_online
qemu-nbd --fork --persistent --shared=8 --read-only --format=raw --pid-file="$tmp/w.pid" \
	--socket="$tmp/w.sock" --export-name=whole "$tmp/whole.raw" || fail "qemu-nbd (whole disk) starts"
defer "kill \$(cat '$tmp/w.pid')"
dev=$("$NBDATTACH" attach --block-size 512 --tag hyg --name whole "nbd+unix:///whole?socket=$tmp/w.sock")
udevadm settle
expect_eq "whole-disk PV: no pvscan, no activation, no device-mapper device" "" \
	"$( { ls /run/lvm/pvs_online/* >/dev/null 2>&1 && echo lvm-pvscan
	      [ -e /dev/wholevg/lv0 ] && echo vg-active
	      ls /sys/block | grep -q '^dm-' && echo dm-devices; } | tr '\n' ' ')"
expect_eq "whole-disk PV: an LVM command still sees the volume group (why the filter is needed)" \
	wholevg "$(lvm_ vgs --noheadings -o vg_name 2>/dev/null | tr -d ' ' | grep -x wholevg)"
expect_eq "whole-disk PV: not with the documented global_filter" "" \
	"$(lvm vgs --config "$LVMCONF devices { global_filter = [ \"r|^/dev/nbd|\" ] }" --noheadings \
		-o vg_name 2>/dev/null | tr -d ' ' | grep -x wholevg)"
check "whole-disk PV: detach" "$NBDATTACH" detach "$dev"
udevadm settle
