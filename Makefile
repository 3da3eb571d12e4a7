# nbdattach — plain Makefile.  `make V=1` shows the commands.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
UDEVRULESDIR ?= /lib/udev/rules.d
MODPROBEDIR  ?= /lib/modprobe.d
DESTDIR    ?=

VERSION    := 0.1.0
SOVERSION  := 0

CC         ?= cc
PKG_CONFIG ?= pkg-config
BUILD      ?= build
CLANG      ?= clang
FUZZ_TIME  ?= 60

ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-7s %s\n'
endif

DEP_PKGS   := libnl-3.0 libnl-genl-3.0 libnbd libudev mount
CFLAGS     ?= -O2 -g
WARNFLAGS  := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
CPPFLAGS   += -D_GNU_SOURCE -Isrc/regionmap -Isrc/nbdattach
PKG_CFLAGS  = $(shell $(PKG_CONFIG) --cflags $(DEP_PKGS) 2>/dev/null)
PKG_LIBS    = $(shell $(PKG_CONFIG) --libs $(DEP_PKGS) 2>/dev/null)
ALL_CFLAGS  = $(WARNFLAGS) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP

RM_SRCS    := $(sort $(wildcard src/regionmap/*.c))
RM_OBJS    := $(RM_SRCS:src/%.c=$(BUILD)/obj/%.o)
RM_PIC     := $(RM_SRCS:src/%.c=$(BUILD)/pic/%.o)
NA_SRCS    := $(sort $(wildcard src/nbdattach/*.c))
NA_OBJS    := $(NA_SRCS:src/%.c=$(BUILD)/obj/%.o)
NA_LIBOBJS := $(filter-out $(BUILD)/obj/nbdattach/main.o,$(NA_OBJS))
UNIT_SRCS  := $(sort $(wildcard tests/unit/*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c) $(wildcard bench/*.c) $(wildcard examples/*.c))
HELPER_BINS := $(HELPER_SRCS:%.c=$(BUILD)/%)
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/*.c))
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
MAN_PAGES  := $(sort $(wildcard man/*.[0-9]))

LIBRM_A    := $(BUILD)/libregionmap.a
LIBRM_SO   := $(BUILD)/libregionmap.so.$(SOVERSION)
LIBNA_A    := $(BUILD)/libnbdattach-internal.a

.PHONY: all check check-deps demo bench fuzz install uninstall clean tests
.DEFAULT_GOAL := all

all: $(BUILD)/nbdattach $(LIBRM_A) $(LIBRM_SO) $(BUILD)/regionmap.pc

$(BUILD)/obj/%.o: src/%.c
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/pic/%.o: src/%.c
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -DREGIONMAP_BUILDING_SHARED -c -o $@ $<

$(LIBRM_A): $(RM_OBJS)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBRM_SO): $(RM_PIC)
	$(say) LD $@
	$(Q)$(CC) -shared -Wl,-soname,libregionmap.so.$(SOVERSION) -Wl,-z,relro,-z,now -o $@ $^
	$(Q)ln -sf libregionmap.so.$(SOVERSION) $(BUILD)/libregionmap.so

$(LIBNA_A): $(NA_LIBOBJS)
	$(say) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/nbdattach: $(BUILD)/obj/nbdattach/main.o $(LIBNA_A) $(LIBRM_A)
	$(say) LD $@
	$(Q)$(CC) $(CFLAGS) -Wl,-z,relro,-z,now -o $@ $^ $(PKG_LIBS)

# Also at install time: the prefix given to make install is the one that counts.
PC_SUBST = sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|'
$(BUILD)/regionmap.pc: src/regionmap/regionmap.pc.in Makefile
	$(say) GEN $@
	@mkdir -p $(@D)
	$(Q)$(PC_SUBST) $< > $@

# Unit tests, test helpers, benchmarks and examples link the library and nbdattach's internals.
$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBNA_A) $(LIBRM_A)
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%: %.c $(LIBNA_A) $(LIBRM_A)
	$(say) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS)

# libFuzzer targets: clang only, library sources rebuilt with sanitizers.
$(BUILD)/fuzz/%: tests/fuzz/%.c $(RM_SRCS)
	$(say) FUZZ $@
	@mkdir -p $(@D)
	$(Q)$(CLANG) -std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc/regionmap -Isrc/nbdattach -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -o $@ $^ $(FUZZ_LIBS)

# Per-target extra sources/libraries for fuzzers of nbdattach's parsers.
$(BUILD)/fuzz/state-parse: src/nbdattach/state.c src/nbdattach/devices.c
$(BUILD)/fuzz/state-parse: FUZZ_LIBS = $(shell $(PKG_CONFIG) --cflags --libs mount)
$(BUILD)/fuzz/claim-parse: src/nbdattach/claims.c src/nbdattach/state.c src/nbdattach/devices.c
$(BUILD)/fuzz/claim-parse: FUZZ_LIBS = $(shell $(PKG_CONFIG) --cflags --libs mount)
$(BUILD)/fuzz/ack-parse: src/nbdattach/ack.c src/nbdattach/devices.c
$(BUILD)/fuzz/ack-parse: FUZZ_LIBS = $(shell $(PKG_CONFIG) --cflags --libs mount)
$(BUILD)/fuzz/run-parse: src/nbdattach/runs.c src/nbdattach/state.c src/nbdattach/devices.c src/nbdattach/children.c
$(BUILD)/fuzz/run-parse: FUZZ_LIBS = $(shell $(PKG_CONFIG) --cflags --libs mount)
$(BUILD)/fuzz/uri-pin: src/nbdattach/pin.c
$(BUILD)/fuzz/uri-pin: FUZZ_LIBS = $(shell $(PKG_CONFIG) --cflags --libs libnbd)

tests: all $(UNIT_BINS) $(HELPER_BINS)

check-deps:
	$(Q)tests/setup-deps

# Dependencies first (a separate make run so pkg-config sees freshly installed packages).
check: check-deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)if command -v $(CLANG) >/dev/null; then $(MAKE) --no-print-directory $(FUZZ_BINS); fi
	$(Q)BUILD=$(BUILD) tests/run $(TESTS)

demo: check-deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) tests/demo

bench: check-deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)BUILD=$(BUILD) bench/run

fuzz: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do \
		n=$${f##*/}; mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		$$f -max_total_time=$(FUZZ_TIME) $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(UDEVRULESDIR) $(DESTDIR)$(MODPROBEDIR)
	install -m 0755 $(BUILD)/nbdattach $(DESTDIR)$(BINDIR)/nbdattach
	install -m 0644 $(LIBRM_A) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(LIBRM_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libregionmap.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libregionmap.so
	install -m 0644 src/regionmap/regionmap.h $(DESTDIR)$(INCLUDEDIR)/
	$(PC_SUBST) src/regionmap/regionmap.pc.in \
		> $(DESTDIR)$(PKGCONFIGDIR)/regionmap.pc.tmp && \
		chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/regionmap.pc.tmp && \
		mv $(DESTDIR)$(PKGCONFIGDIR)/regionmap.pc.tmp $(DESTDIR)$(PKGCONFIGDIR)/regionmap.pc
	for r in udev/*.rules; do [ -e "$$r" ] || continue; \
		sed 's|@BINDIR@|$(BINDIR)|g' "$$r" > $(DESTDIR)$(UDEVRULESDIR)/$${r##*/}.tmp && \
		chmod 0644 $(DESTDIR)$(UDEVRULESDIR)/$${r##*/}.tmp && \
		mv $(DESTDIR)$(UDEVRULESDIR)/$${r##*/}.tmp $(DESTDIR)$(UDEVRULESDIR)/$${r##*/}; done
	for c in modprobe.d/*.conf; do [ -e "$$c" ] && install -m 0644 "$$c" $(DESTDIR)$(MODPROBEDIR)/ || true; done
	for m in $(MAN_PAGES); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	@# Onto the live system: the loader finds libregionmap.so.0 in LIBDIR only through its
	@# cache; the module options apply when nbd is next loaded.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then PATH="$$PATH:/usr/sbin:/sbin" ldconfig || exit 1; fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(cat /sys/module/nbd/parameters/max_part 2>/dev/null || echo 0)" != 0 ]; then \
		echo "note: nbd is loaded with max_part != 0; reload it (rmmod nbd) for $(MODPROBEDIR)/nbdattach.conf"; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/nbdattach $(DESTDIR)$(LIBDIR)/libregionmap.* \
		$(DESTDIR)$(INCLUDEDIR)/regionmap.h $(DESTDIR)$(PKGCONFIGDIR)/regionmap.pc
	for r in udev/*.rules; do rm -f $(DESTDIR)$(UDEVRULESDIR)/$${r##*/}; done
	for c in modprobe.d/*.conf; do rm -f $(DESTDIR)$(MODPROBEDIR)/$${c##*/}; done
	for m in $(MAN_PAGES); do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
