#!/bin/bash
# A server that takes the connection and never greets (qemu-nbd does that to connections past
# its --shared clients, leaving them in its listen backlog): map and discard give up after the
# 30 s the handshake gets, with the reason, instead of waiting for good. And one that greets but
# never answers a block status request: map gives up after the 30 s a reply gets. All at once.
. "$(dirname "$0")/../lib.sh"

command -v python3 >/dev/null || { skip "silent-server" "python3 not installed"; exit 0; }
dir=$(mktmpdir)
python3 "$TOP/tests/helpers/hostile-nbd.py" "$dir/silent.sock" silent &
defer "kill $! 2>/dev/null"
wait_for_file "$dir/silent.sock" || { fail "silent server" "it did not start"; exit 1; }
python3 "$TOP/tests/helpers/hostile-nbd.py" "$dir/stall.sock" stall &
defer "kill $! 2>/dev/null"
wait_for_file "$dir/stall.sock" || { fail "stalling server" "it did not start"; exit 1; }
stall="nbd+unix:///?socket=$dir/stall.sock"
uri="nbd+unix:///?socket=$dir/silent.sock"

t0=$(date +%s.%N)
# (the watchdog's 124 is what the code before the deadline got)
( timeout 90 "$NBDATTACH" map "$uri" --bitmap x --format text >"$dir/map.out" 2>&1
  echo $? >"$dir/map.rc" ) &
m=$!
( timeout 90 "$NBDATTACH" discard "$uri" 0 65536 >"$dir/discard.out" 2>&1
  echo $? >"$dir/discard.rc" ) &
d=$!
( timeout 90 "$NBDATTACH" map "$stall" --bitmap x >"$dir/stall.out" 2>&1
  echo $? >"$dir/stall.rc" ) &
st=$!
wait $m $d $st
took=$(seconds_since "$t0")
expect_eq "map: exit 1 with the reason" \
	"1:nbdattach: cannot map '$uri': the server did not complete the handshake in 30 s" \
	"$(cat "$dir/map.rc"):$(cat "$dir/map.out")"
expect_eq "discard: exit 1 with the reason" \
	"1:nbdattach: cannot discard on '$uri': cannot connect for discards: the server did not complete the handshake in 30 s" \
	"$(cat "$dir/discard.rc"):$(cat "$dir/discard.out")"
expect_eq "map, a server that never answers block status: exit 1 with the reason" \
	"1:nbdattach: cannot map '$stall': the server did not answer a block status request within 30 s" \
	"$(cat "$dir/stall.rc"):$(cat "$dir/stall.out")"
expect_eq "all gave up after the 30 s, not before ($took s)" yes \
	"$(awk -v s="$took" 'BEGIN { print (s >= 29 && s < 60) ? "yes" : "no" }')"

# A full map asks the stalled server nothing, and then says goodbye without waiting for it
# (a polite disconnect waits for the server to close its end, which it never does).
out=$(timeout 20 "$NBDATTACH" map "$stall" --full --format text 2>&1)
expect_eq "full map of a stalled server: done, without waiting for its goodbye" "0:0 1048576
end 1 1048576" "$?:$out"
