#!/bin/bash
# Short libFuzzer run of the region map reader over its seed corpus (regionmap(5)).
. "$(dirname "$0")/../lib.sh"

FUZZER=$BUILD/fuzz/regionmap-reader
if [ ! -x "$FUZZER" ]; then
	if ! command -v "${CLANG:-clang}" >/dev/null; then
		skip "fuzz regionmap reader" "clang not installed"
		exit 0
	fi
	fail "fuzz regionmap reader" "$FUZZER not built (run 'make $FUZZER')"
	exit 1
fi

tmp=$(mktmpdir)
cp "$TOP"/tests/fuzz/corpus/regionmap-reader/* "$tmp"/ 2>/dev/null
if out=$("$FUZZER" -max_total_time=10 -artifact_prefix="$tmp/" "$tmp" 2>&1); then
	pass "fuzz regionmap reader for 10 s: $(printf %s "$out" | grep -o 'Done [0-9]* runs' | tail -n 1)"
else
	fail "fuzz regionmap reader" "$(printf %s "$out" | grep -E 'ERROR|SUMMARY|artifact' | head -n 3 | tr '\n' ' ')"
fi
