#!/bin/bash
# A map producer SIGKILLed halfway: the reader of the stream must report an error, never a
# shorter map (regionmap(5): no trailer, no map).
. "$(dirname "$0")/../lib.sh"

DUMP=$BUILD/tests/helpers/rmap-dump
command -v python3 >/dev/null || { skip "map-killed" "python3 not installed"; exit 0; }
dir=$(mktmpdir)
python3 "$TOP/tests/helpers/hostile-nbd.py" "$dir/slow.sock" slow &
defer "kill $!"
wait_for_file "$dir/slow.sock" || { fail "slow server started"; exit 1; }
uri="nbd+unix:///?socket=$dir/slow.sock"

mkfifo "$dir/pipe"
: > "$dir/out" # opening the fifo blocks until the producer starts: the output must exist first
"$DUMP" >"$dir/out" 2>"$dir/err" <"$dir/pipe" &
dump=$!
"$NBDATTACH" map "$uri" --bitmap x >"$dir/pipe" &
producer=$!
defer "kill -KILL $producer"
# Wait until regions flow (the reader has printed some), then kill the producer mid-stream.
n=500
while [ "$(wc -l <"$dir/out")" -lt 1000 ] && [ $n -gt 0 ]; do sleep 0.01; n=$((n - 1)); done
if kill -0 $producer 2>/dev/null; then pass "producer still running mid-stream"; else fail "producer still running mid-stream" "it finished early"; fi
kill -KILL $producer
wait $dump
rc=$?
expect_eq "reader of a killed stream exits 1" 1 "$rc"
check "reader reports a truncated map" grep -q "^rmap-dump: error:" "$dir/err"
check_fails "reader printed no end line" grep -q '^end ' "$dir/out"
expect_eq "regions were flowing before the kill" yes "$([ "$(wc -l <"$dir/out")" -ge 1000 ] && echo yes)"
