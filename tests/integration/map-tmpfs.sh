#!/bin/bash
# nbdattach map into files on tmpfs (/dev/shm): F_GET_SEALS works on every shmem file, but a
# tmpfs file carries F_SEAL_SEAL from creation and can never be sealed, so it must get the
# stream form (not fail after the whole walk trying to seal it). A sealable memfd is still sealed.
. "$(dirname "$0")/../lib.sh"

DUMP=$BUILD/tests/helpers/rmap-dump
command -v python3 >/dev/null || { skip "map-tmpfs" "python3 not installed"; exit 0; }
[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || { skip "map-tmpfs" "/dev/shm is not a tmpfs"; exit 0; }
dir=$(mktmpdir)
shm=$(mktemp -d /dev/shm/nbdattach-test.XXXXXX) || { fail "scratch directory in /dev/shm"; exit 1; }
defer "rm -rf --one-file-system '$shm'"

python3 "$TOP/tests/helpers/hostile-nbd.py" "$dir/good.sock" good &
defer "kill $!"
wait_for_file "$dir/good.sock" || { fail "server started"; exit 1; }
uri="nbd+unix:///?socket=$dir/good.sock"
want=$("$NBDATTACH" map "$uri" --bitmap x | "$DUMP" 2>&1)
expect_eq "reference map through a pipe" "end 8 524288" "$(printf '%s\n' "$want" | tail -n 1)"

check "--output FILE on tmpfs succeeds" "$NBDATTACH" map "$uri" --bitmap x --output "$shm/out.map"
expect_eq "--output FILE on tmpfs reads back equal" "$want" "$("$DUMP" "$shm/out.map" 2>&1)"
expect_eq "--output FILE on tmpfs: no temporary file left" "out.map" "$(ls -A "$shm")"

check "stdout redirected to a tmpfs file succeeds" \
	sh -c '"$1" map "$2" --bitmap x >"$3"' sh "$NBDATTACH" "$uri" "$shm/redirect.map"
expect_eq "stdout redirected to tmpfs reads back equal" "$want" "$("$DUMP" "$shm/redirect.map" 2>&1)"

check "--output-fd on a tmpfs file succeeds" \
	sh -c '"$1" map "$2" --bitmap x --output-fd 3 3>"$3"' sh "$NBDATTACH" "$uri" "$shm/fd.map"
expect_eq "--output-fd on tmpfs reads back equal" "$want" "$("$DUMP" "$shm/fd.map" 2>&1)"

check "--full to a tmpfs file succeeds" \
	sh -c '"$1" map "$2" --full >"$3"' sh "$NBDATTACH" "$uri" "$shm/full.map"
expect_eq "--full on tmpfs reads back as one region" "0 1048576
end 1 1048576" "$("$DUMP" "$shm/full.map" 2>&1)"

# The control: a sealable memfd still gets the count and all four seals (the reader checks).
expect_eq "sealable memfd still sealed and read in memfd mode" "$want" \
	"$("$DUMP" --spawn-memfd "$NBDATTACH" map "$uri" --bitmap x 2>&1)"
