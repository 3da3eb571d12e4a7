#!/bin/bash
# Short libFuzzer runs of every parser of untrusted input (tests/fuzz/*.c) over their seed
# corpora: the region map reader, the journals and claim records, the provider's acks, the
# server's block-status replies and the socket= of a URI.
. "$(dirname "$0")/../lib.sh"

tmp=$(mktmpdir)
for src in "$TOP"/tests/fuzz/*.c; do
	name=$(basename "$src" .c)
	fuzzer=$BUILD/fuzz/$name
	if [ ! -x "$fuzzer" ]; then
		if ! command -v "${CLANG:-clang}" >/dev/null; then
			skip "fuzz $name" "clang not installed"
			continue
		fi
		fail "fuzz $name" "$fuzzer not built (run 'make $fuzzer')"
		continue
	fi
	mkdir -p "$tmp/$name"
	cp "$TOP"/tests/fuzz/corpus/"$name"/* "$tmp/$name"/ 2>/dev/null
	if out=$("$fuzzer" -max_total_time="${FUZZ_CHECK_TIME:-8}" -artifact_prefix="$tmp/" "$tmp/$name" 2>&1); then
		pass "fuzz $name for ${FUZZ_CHECK_TIME:-8} s: $(printf %s "$out" | grep -o 'Done [0-9]* runs' | tail -n 1)"
	else
		fail "fuzz $name" "$(printf %s "$out" | grep -E 'ERROR|SUMMARY|artifact' | head -n 3 | tr '\n' ' ')"
	fi
done
