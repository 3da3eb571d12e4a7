#!/bin/bash
# The build is -Werror clean with clang as well as gcc, and `make install` honours DESTDIR and
# PREFIX and installs a library that a pkg-config consumer can link against.
. "$(dirname "$0")/../lib.sh"
tmp=$(mktmpdir)
cd "$TOP" || exit 1

if command -v clang >/dev/null; then
	check "clang build is -Werror clean" make -s BUILD="$tmp/clang" CC=clang all
else
	fail "clang build is -Werror clean" "clang not installed (tests/setup-deps installs it)"
fi

dest=$tmp/dest
check "make install with DESTDIR and PREFIX" make -s BUILD="$tmp/gcc" DESTDIR="$dest" PREFIX=/usr install
for f in usr/sbin/nbdattach usr/lib/libregionmap.a usr/lib/libregionmap.so.0 usr/lib/libregionmap.so \
	usr/include/regionmap.h usr/lib/pkgconfig/regionmap.pc; do
	check "installs /$f" test -e "$dest/$f"
done
for m in man/*.[0-9]; do
	[ -e "$m" ] || continue
	s=${m##*.}
	check "installs man page ${m##*/}" test -e "$dest/usr/share/man/man$s/${m##*/}"
done
for r in udev/*.rules; do
	[ -e "$r" ] && check "installs udev rule ${r##*/}" test -e "$dest/lib/udev/rules.d/${r##*/}"
done
expect_eq "installed udev rules run the installed helper" "1 0" \
	"$(grep -c 'RUN+="/usr/sbin/nbdattach cleanup' "$dest/lib/udev/rules.d/60-nbdattach.rules") $(grep -c '@BINDIR@' "$dest/lib/udev/rules.d/60-nbdattach.rules")"
for c in modprobe.d/*.conf; do
	[ -e "$c" ] && check "installs modprobe.d snippet ${c##*/}" test -e "$dest/lib/modprobe.d/${c##*/}"
done

# A consumer built only from what was installed, through pkg-config.
cat > "$tmp/consumer.c" <<'C'
#include <regionmap.h>
#include <stdio.h>
int main(void) { int fd; if (regionmap_memfd_create("t", &fd) < 0) return 1; puts("linked"); return 0; }
C
sed -i "s|^prefix=.*|prefix=$dest/usr|; s|^libdir=.*|libdir=$dest/usr/lib|; s|^includedir=.*|includedir=$dest/usr/include|" \
	"$dest/usr/lib/pkgconfig/regionmap.pc"
if cc -o "$tmp/consumer" "$tmp/consumer.c" $(PKG_CONFIG_PATH=$dest/usr/lib/pkgconfig pkg-config --cflags --libs regionmap) &&
	[ "$(LD_LIBRARY_PATH=$dest/usr/lib "$tmp/consumer")" = linked ]; then
	pass "installed libregionmap links and runs via pkg-config"
else
	fail "installed libregionmap links and runs via pkg-config" "consumer did not build or run"
fi
check "installed nbdattach runs" "$dest/usr/sbin/nbdattach" --version
