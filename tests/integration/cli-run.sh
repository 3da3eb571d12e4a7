#!/bin/bash
# Host, no VM: run's and discard's argument parsing; each mistake is one line
# "nbdattach: ..." and a usage exit (run: 125, which no provider status can be; discard: 2),
# before anything is attached or spawned.
. "$(dirname "$0")/../lib.sh"

tmp=$(mktmpdir)
# usage_err DESC EXPECTED-SUBSTRING ARGS...: a usage exit, one line "nbdattach: ..." containing
# it, and the provider (which would create $tmp/ran) never started.
usage_err() {
	local d=$1 want=$2 out rc usage=2; shift 2
	[ "$1" = run ] && usage=125
	out=$("$NBDATTACH" "$@" 2>&1 >/dev/null); rc=$?
	if [ "$rc" -eq "$usage" ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [[ "$out" == "nbdattach: "*"$want"* ]] &&
		[ ! -e "$tmp/ran" ]; then
		pass "$d"
	else
		fail "$d" "rc=$rc out=$out$([ -e "$tmp/ran" ] && echo ' (the provider ran)')"
	fi
}
P=(-- touch "$tmp/ran")
V=(--volume "name=a,uri=nbd+unix:///?socket=$tmp/none.sock")

usage_err "run without volumes" "no --volume given" run "${P[@]}"
usage_err "run without a provider" "expected -- PROVIDER" run "${V[@]}"
usage_err "run with two volumes of one name" "two volumes named 'a'" run "${V[@]}" "${V[@]}" "${P[@]}"
many=()
for i in $(seq 17); do many+=(--volume "name=v$i,uri=nbd://x/"); done
usage_err "run with 17 volumes" "at most 16 volumes" run "${many[@]}" "${P[@]}"
usage_err "run volume without a name" "name= and uri= are required" run --volume uri=nbd://x/ "${P[@]}"
usage_err "run volume with uri= not last" "name= and uri= are required" run --volume 'uri=nbd://x/,name=a' "${P[@]}"
usage_err "run volume with an unknown key" "unknown volume key 'bogus'" run --volume 'name=a,bogus=1,uri=nbd://x/' "${P[@]}"
usage_err "run volume with a bad name" "invalid volume name '../a'" run --volume 'name=../a,uri=nbd://x/' "${P[@]}"
usage_err "run volume granularity not a power of two" "invalid volume granularity '65537'" \
	run --volume 'name=a,granularity=65537,uri=nbd://x/' "${P[@]}"
usage_err "run volume connections 0" "invalid volume connections '0'" run --volume 'name=a,connections=0,uri=nbd://x/' "${P[@]}"
usage_err "run with a bad --map" "invalid --map 'bogus'" run --map bogus "${V[@]}" "${P[@]}"
usage_err "run with a grace beyond an hour" "invalid --grace '3601'" run --grace 3601 "${V[@]}" "${P[@]}"
usage_err "run with a bad tag" "invalid --tag" run --tag '../x' "${V[@]}" "${P[@]}"
usage_err "run with an unknown option" "unknown option '--frob'" run --frob "${V[@]}" "${P[@]}"
usage_err "discard without a range" "expected DEVICE|URI OFFSET LENGTH" discard nbd://x/
usage_err "discard with a length of 0" "invalid LENGTH '0'" discard nbd://x/ 0 0
usage_err "discard with a hex offset" "invalid OFFSET '0x10'" discard nbd://x/ 0x10 65536
usage_err "discard with a bad granularity" "invalid --granularity '1000'" discard --granularity 1000 nbd://x/ 0 65536
