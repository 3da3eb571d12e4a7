#!/bin/bash
# Region-map benchmark: a qemu-storage-daemon null-co export whose dirty bitmap alternates
# dirty/clean every 64 KiB (64 GiB: 524,288 dirty extents; 1 TiB: 8.4 M with BENCH_MAP_TIB=1).
# Median of BENCH_ROUNDS (default 5) interleaved rounds, each running once: the bare libnbd
# block-status loop (the floor), the same loop with 4 requests in flight (how much a pipelining
# client could gain), `nbdattach map` in each format to /dev/null, and `nbdinfo --map`
# (interleaved so that drift on a busy machine hits every contender alike); peak RSS of the
# binary stream; and the CPU time the server itself spends producing the extents during the bare
# loop: no client can finish sooner, so nbdinfo's time over it is the best ratio any client could
# reach against nbdinfo.
# Targets: binary <= 1.5x the bare loop, >= 25x faster than nbdinfo --map, RSS < 16 MiB.
. "$(dirname "$0")/../tests/lib.sh"

for t in qemu-storage-daemon nbdinfo python3 /usr/bin/time; do
	command -v $t >/dev/null || { skip "bench-map" "$t not installed"; exit 0; }
done
LOOP=$BUILD/bench/blockstatus-loop
WRITER=$BUILD/bench/dirty-writer
[ -x "$LOOP" ] && [ -x "$WRITER" ] || { fail "bench-map" "run make tests first"; exit 1; }
tmp=$(mktmpdir)
G=65536
CTX=qemu:dirty-bitmap:b

qmp() {
	python3 - "$tmp/qmp.sock" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def recv():
    while True:
        m = json.loads(f.readline())
        if "event" not in m: return m
recv()
for cmd in ['{"execute":"qmp_capabilities"}'] + sys.argv[2:]:
    f.write(cmd + "\n"); f.flush()
    r = recv()
    if "error" in r: sys.exit("QMP failed: %s" % r["error"].get("desc"))
PY
}

# start_export SIZE: null-co node, non-persistent bitmap, a writable export "w" to dirty it and
# a read-only export "m" carrying the bitmap.
start_export() {
	rm -f "$tmp/nbd.sock" "$tmp/qmp.sock"
	qemu-storage-daemon --daemonize --pidfile "$tmp/qsd.pid" \
		--blockdev "driver=null-co,node-name=n0,size=$1" \
		--nbd-server "addr.type=unix,addr.path=$tmp/nbd.sock,max-connections=0" \
		--chardev "socket,id=qmp,path=$tmp/qmp.sock,server=on,wait=off" --monitor chardev=qmp ||
		return 1
	defer "kill \$(cat '$tmp/qsd.pid')"
	qmp "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"n0\",\"name\":\"b\",\"granularity\":$G,\"persistent\":false}}" \
		'{"execute":"block-export-add","arguments":{"type":"nbd","id":"w","node-name":"n0","name":"w","writable":true}}' \
		'{"execute":"block-export-add","arguments":{"type":"nbd","id":"m","node-name":"n0","name":"m","writable":false,"bitmaps":[{"node":"n0","name":"b"}]}}'
}

stop_export() {
	local pid
	pid=$(cat "$tmp/qsd.pid")
	kill "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
}

secs() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null || return 1; t1=$(date +%s%N); echo "$(( (t1 - t0) / 1000 ))"; }
# server_cpu CMD...: microseconds of CPU the qemu-storage-daemon used while CMD ran.
server_cpu() {
	local pid c0 c1
	pid=$(cat "$tmp/qsd.pid")
	c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	"$@" >/dev/null || return 1
	c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	echo $(( (c1 - c0) * 1000000 / $(getconf CLK_TCK) ))
}
ROUNDS=${BENCH_ROUNDS:-5}
# median FIGURE...: the middle one.
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
fmt() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

bench_size() {
	local label=$1 size=$2 uri loop pipe bin text ni nbdinfo server rss nrss want r
	start_export "$size" || { fail "bench-map $label" "qemu-storage-daemon"; return; }
	t0=$(date +%s)
	"$WRITER" "nbd+unix:///w?socket=$tmp/nbd.sock" $G || { fail "bench-map $label" "dirty-writer"; return; }
	echo "# $label: dirtied in $(( $(date +%s) - t0 )) s"
	uri="nbd+unix:///m?socket=$tmp/nbd.sock"
	want="$(( size / G / 2 )) $(( size / 2 ))"
	expect_eq "bench-map $label: map has the expected extents" "end $want" \
		"$("$NBDATTACH" map "$uri" --bitmap b --format text | tail -n 1)"
	local -a t_loop t_pipe t_bin t_text t_ni t_nbdinfo t_server
	for (( r = 0; r < ROUNDS; r++ )); do
		t_loop+=("$(secs "$LOOP" "$uri" "$CTX")") &&
		t_pipe+=("$(secs "$LOOP" "$uri" "$CTX" 4)") &&
		t_bin+=("$(secs "$NBDATTACH" map "$uri" --bitmap b)") &&
		t_text+=("$(secs "$NBDATTACH" map "$uri" --bitmap b --format text)") &&
		t_ni+=("$(secs "$NBDATTACH" map "$uri" --bitmap b --format nbdinfo)") &&
		t_nbdinfo+=("$(secs nbdinfo --map="$CTX" "$uri")") &&
		t_server+=("$(server_cpu "$LOOP" "$uri" "$CTX")") ||
		{ fail "bench-map $label" "a timed command failed"; stop_export; return; }
	done
	loop=$(median "${t_loop[@]}") pipe=$(median "${t_pipe[@]}") bin=$(median "${t_bin[@]}") text=$(median "${t_text[@]}")
	ni=$(median "${t_ni[@]}") nbdinfo=$(median "${t_nbdinfo[@]}") server=$(median "${t_server[@]}")
	rss=$( { /usr/bin/time -f %M "$NBDATTACH" map "$uri" --bitmap b >/dev/null; } 2>&1 | tail -n 1)
	nrss=$( { /usr/bin/time -f %M nbdinfo --map="$CTX" "$uri" >/dev/null; } 2>&1 | tail -n 1)
	stop_export
	printf '\n%-34s %9s %9s\n' "$label ($(( size / G / 2 )) dirty extents)" "median/$ROUNDS" "vs loop"
	printf '%-34s %9s %9s\n' "bare libnbd block-status loop" "$(fmt "$loop")" 1.0
	printf '%-34s %9s %9s\n' "bare loop, 4 requests in flight" "$(fmt "$pipe")" "$(ratio "$pipe" "$loop")"
	printf '%-34s %9s %9s\n' "nbdattach map --format binary" "$(fmt "$bin")" "$(ratio "$bin" "$loop")"
	printf '%-34s %9s %9s\n' "nbdattach map --format text" "$(fmt "$text")" "$(ratio "$text" "$loop")"
	printf '%-34s %9s %9s\n' "nbdattach map --format nbdinfo" "$(fmt "$ni")" "$(ratio "$ni" "$loop")"
	printf '%-34s %9s %9s\n' "nbdinfo --map" "$(fmt "$nbdinfo")" "$(ratio "$nbdinfo" "$loop")"
	printf '%-34s %9s %9s\n' "server CPU during the bare loop" "$(fmt "$server")" "$(ratio "$server" "$loop")"
	printf '%-34s %9s\n' "nbdinfo --map / binary" "$(ratio "$nbdinfo" "$bin")x"
	printf '%-34s %9s\n' "nbdinfo --map / bare loop" "$(ratio "$nbdinfo" "$loop")x"
	printf '%-34s %9s\n' "nbdinfo --map / 4 in flight" "$(ratio "$nbdinfo" "$pipe")x"
	printf '%-34s %9s\n' "nbdinfo --map / server CPU" "$(ratio "$nbdinfo" "$server")x"
	printf '%-34s %9s\n' "peak RSS binary stream" "${rss} KiB"
	printf '%-34s %9s\n\n' "peak RSS nbdinfo --map" "${nrss} KiB"
	# Targets. Sub-10 ms loops are noise-dominated, so allow 5 ms of slack on the ratio.
	if [ "$bin" -le $(( loop * 3 / 2 + 5000 )) ]; then pass "bench-map $label: binary <= 1.5x bare loop"
	else fail "bench-map $label: binary <= 1.5x bare loop" "$(ratio "$bin" "$loop")x"; fi
	if [ $(( bin * 25 )) -le "$nbdinfo" ]; then pass "bench-map $label: binary >= 25x faster than nbdinfo --map"
	else fail "bench-map $label: binary >= 25x faster than nbdinfo --map" "$(ratio "$nbdinfo" "$bin")x"; fi
	if [ "$rss" -lt 16384 ]; then pass "bench-map $label: stream RSS < 16 MiB"
	else fail "bench-map $label: stream RSS < 16 MiB" "$rss KiB"; fi
}

bench_size "64 GiB" $((64 << 30))
[ "${BENCH_MAP_TIB:-1}" = 1 ] && bench_size "1 TiB" $((1 << 40))
