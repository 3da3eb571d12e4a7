#!/bin/bash
# detach refuses a device that something else uses, with --force too (--force only overrides
# the owner check): held by device-mapper (a linear target), held by md (a one-disk raid1
# array), used as swap, and used as swap through another node, which /proc/swaps names instead
# of /dev/nbdN.  Each time: status 1, one error line saying why, and the device stays ours,
# connected and readable; once the holder is gone, detach takes it.  Another tool's device
# held by device-mapper is refused with --force as well.
. "$(dirname "$0")/../lib.sh"
in_vm || { skip "detach-holders" "runs only inside the test VM"; exit 0; }
command -v nbd-client >/dev/null || { skip "detach-holders" "nbd-client not installed"; exit 0; }

tmp=$(mktmpdir)
connected() { test -e "/sys/block/${1#/dev/}/pid"; }
head -c $((32 << 20)) /dev/urandom > "$tmp/disk.raw"
qemu-nbd --fork --persistent --shared=4 --format=raw --pid-file="$tmp/q.pid" --socket="$tmp/q.sock" \
	--export-name=disk "$tmp/disk.raw" || fail "qemu-nbd starts"
defer "kill \$(cat '$tmp/q.pid')"
uri="nbd+unix:///disk?socket=$tmp/q.sock"

# readable DEV: 1 MiB from the middle of the device, O_DIRECT, is the image's.
readable() {
	cmp -s <(dd if="$1" bs=1M skip=8 count=1 iflag=direct status=none) \
		<(dd if="$tmp/disk.raw" bs=1M skip=8 count=1 status=none)
}

# refused WHAT DEV REASON [DETACH-ARGS...]: each way of detaching DEV (by default the device,
# the device with --force, its tag and name) exits 1 with one stderr line
# "nbdattach: cannot detach 'DEV': ...REASON..." and nothing on stdout; DEV is still connected
# with the same backend identifier and journal entry, and reads the image's bytes.
refused() {
	local what=$1 dev=$2 reason=$3 id out rc err a
	shift 3
	[ $# -gt 0 ] || set -- "$dev" "--force $dev" "--tag hold --name $what"
	id=$(cat "/sys/block/${dev#/dev/}/backend")
	for a in "$@"; do
		# shellcheck disable=SC2086 # $a is a list of words
		out=$("$NBDATTACH" detach $a 2>"$tmp/err"); rc=$?
		err=$(cat "$tmp/err")
		expect_eq "$what: detach $a exits 1 ($err)" 1 "$rc"
		expect_eq "$what: detach $a prints nothing on stdout" "" "$out"
		expect_eq "$what: detach $a prints one error line" 1 "$(wc -l < "$tmp/err")"
		case "$err" in
		"nbdattach: cannot detach '$dev': "*"$reason"*) pass "$what: the error says why" ;;
		*) fail "$what: the error says why" "expected '$reason' in: $err" ;;
		esac
	done
	# A disconnected device held open keeps its pid and backend files: the read and, for ours,
	# the journal entry are what tell.
	check "$what: still connected" connected "$dev"
	case "$id" in nbdattach:*)
		check "$what: journal entry kept" test -e "/run/nbdattach/devices/${dev#/dev/}" ;;
	esac
	expect_eq "$what: same backend identifier" "$id" "$(cat "/sys/block/${dev#/dev/}/backend")"
	readable "$dev" && pass "$what: still reads the image's bytes" ||
		fail "$what: still reads the image's bytes" "O_DIRECT read differs or fails"
}

# attach_one NAME: a fresh device of ours, tag "hold", detached at exit if a check left it.
attach_one() {
	local rc
	dev=$("$NBDATTACH" attach --tag hold --name "$1" "$uri" 2>"$tmp/err"); rc=$?
	expect_eq "$1: attach succeeds ($(cat "$tmp/err"))" 0 "$rc"
	defer "'$NBDATTACH' detach '$dev'"
	n=${dev#/dev/}
	sectors=$(blockdev --getsz "$dev")
}

# released WHAT DEV: once the holder is gone, detach succeeds and the device and its journal
# entry are gone.
released() {
	udevadm settle
	expect_eq "$1: holders/ empty once the holder is gone" "" "$(ls "/sys/block/${2#/dev/}/holders")"
	check "$1: detach succeeds once the holder is gone" "$NBDATTACH" detach "$2"
	check_fails "$1: disconnected" connected "$2"
	check_fails "$1: journal entry removed" test -e "/run/nbdattach/devices/${2#/dev/}"
}

# --- device-mapper: a linear target over the whole device.
if modprobe dm_mod && command -v dmsetup >/dev/null; then
	attach_one dm
	if timeout 60 dmsetup create nbdattach-hold --table "0 $sectors linear $dev 0"; then
		defer "dmsetup remove nbdattach-hold"
		udevadm settle
		holder=$(ls "/sys/block/$n/holders")
		case "$holder" in dm-[0-9]*) pass "dm: the kernel lists $holder as holder" ;;
			*) fail "dm: the kernel lists a dm holder" "holders/: '$holder'" ;; esac
		refused dm "$dev" "$dev is held by $holder (device-mapper/md)"
		check "dm: remove the mapping" timeout 60 dmsetup remove nbdattach-hold
		released dm "$dev"
	else
		fail "dm: dmsetup create a linear mapping over $dev"
	fi
else
	skip "dm" "dm_mod or dmsetup not available in the guest"
fi

# --- md: a one-disk raid1 array without metadata, built through md's sysfs interface
# (Documentation/admin-guide/md.rst): mdadm is not among tests/setup-deps' packages, and this
# writes nothing to the device.
md=/sys/block/md_nbdattach/md
if modprobe md_mod && modprobe raid1; then
	attach_one md
	defer "echo clear > $md/array_state"
	if echo md_nbdattach > /sys/module/md_mod/parameters/new_array && echo none > "$md/metadata_version" &&
		echo raid1 > "$md/level" && echo 1 > "$md/raid_disks" && cat "/sys/block/$n/dev" > "$md/new_dev" &&
		echo 0 > "$md/dev-$n/slot" && echo $((sectors / 2)) > "$md/dev-$n/size" &&
		echo active > "$md/array_state"; then
		udevadm settle
		expect_eq "md: the kernel lists the array as holder" md_nbdattach "$(ls "/sys/block/$n/holders")"
		refused md "$dev" "$dev is held by md_nbdattach (device-mapper/md)"
		check "md: stop the array" sh -c "echo clear > $md/array_state"
		released md "$dev"
	else
		fail "md: raid1 array over $dev through sysfs" "$(cat "$md/array_state" 2>&1)"
		echo clear > "$md/array_state" 2>/dev/null
	fi
else
	skip "md" "md_mod or raid1 module not available in the guest"
fi

# --- Another tool's device held by device-mapper: --force does not override the holder check.
if modprobe dm_mod && command -v dmsetup >/dev/null; then
	fdev=
	for q in $(ls -d /sys/block/nbd* | sort -V -r); do
		[ -e "$q/pid" ] || { fdev=/dev/${q##*/}; break; }
	done
	if nbd-client -N disk -unix "$tmp/q.sock" "$fdev" -b 4096 >/dev/null 2>&1; then
		defer "nbd-client -d $fdev"
		if timeout 60 dmsetup create nbdattach-foreign --table "0 $(blockdev --getsz "$fdev") linear $fdev 0"; then
			defer "dmsetup remove nbdattach-foreign"
			udevadm settle
			holder=$(ls "/sys/block/${fdev#/dev/}/holders")
			refused foreign "$fdev" "$fdev is held by $holder (device-mapper/md)" "--force $fdev"
			check "foreign: remove the mapping" timeout 60 dmsetup remove nbdattach-foreign
			udevadm settle
			check "foreign: detach --force succeeds once the holder is gone" "$NBDATTACH" detach --force "$fdev"
			check_fails "foreign: disconnected" connected "$fdev"
		else
			fail "foreign: dmsetup create a linear mapping over $fdev"
		fi
	else
		fail "foreign: nbd-client attaches $fdev"
	fi
else
	skip "foreign" "dm_mod or dmsetup not available in the guest"
fi

# --- swap.  mkswap writes its header at the start; readable() looks at the middle.
attach_one swap
check "swap: mkswap" mkswap -q "$dev"
if swapon "$dev"; then
	defer "swapoff '$dev'"
	check "swap: /proc/swaps names $dev" grep -q "^${dev}[[:space:]]" /proc/swaps
	refused swap "$dev" "$dev is used as swap"
	check "swap: swapoff" swapoff "$dev"
	released swap "$dev"
else
	fail "swap: swapon $dev"
fi

# --- swap through a node of our own: /proc/swaps names that node, never /dev/nbdN, and only
# the exclusive open sees that the device is in use.
attach_one swapnode
check "swapnode: mkswap" mkswap -q "$dev"
mknod "$tmp/node" b $((0x$(stat -c %t "$dev"))) $((0x$(stat -c %T "$dev")))
if swapon "$tmp/node"; then
	defer "swapoff '$tmp/node'"
	check_fails "swapnode: /proc/swaps does not name $dev" grep -q "^${dev}[[:space:]]" /proc/swaps
	refused swapnode "$dev" "$n is in use"
	check "swapnode: swapoff" swapoff "$tmp/node"
	released swapnode "$dev"
else
	fail "swapnode: swapon $tmp/node"
fi
