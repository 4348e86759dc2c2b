# gatewayd: a WebSocket gateway whose rooms are backend programs.
#
#   make            build build/gatewayd
#   make run        build and run the demo (conf/demo.ini) in the foreground
#   make cluster-demo  build and run three nodes that share their rooms
#                   through Redis, behind HAProxy (conf/cluster), in the
#                   foreground
#   make test       unit tests, fuzz corpus replay and smoke, the pytest
#                   suite, then all of it again under ASan+UBSan
#   make stress     the long attack runs that make test leaves out
#   make fuzz       run every fuzz target for FUZZ_SECONDS each
#   make install    install the binary, the reference config (unless one
#                   is there), the systemd units, man pages, docs, examples
#   make uninstall  remove what make install put there
#   make deps       install the Debian packages the build and tests need
#   make deps-run   only those the build and make run need
#   make deps-cluster  those and the ones make cluster-demo adds
#
# CFLAGS, CC, PREFIX, DESTDIR and the directories below may be overridden;
# SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer
# into build-san/.

PYTHON      ?= /usr/bin/python3
CC          ?= cc
CFLAGS      ?= -O2 -g
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= /etc
DOCDIR      ?= $(PREFIX)/share/doc/gatewayd
MANDIR      ?= $(PREFIX)/share/man
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
FUZZ_CC     ?= clang-14
FUZZ_SECONDS ?= 60
SMOKE_SECONDS ?= 10

WARNINGS    := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
               -Wmissing-prototypes -Wno-unused-parameter
PKGS        := libevent jansson openssl inih libsystemd zlib hiredis
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS     = $(shell pkg-config --libs $(PKGS))
ALL_CFLAGS   = $(WARNINGS) -D_GNU_SOURCE -Igatewayd $(PKG_CFLAGS) $(CFLAGS)

ifeq ($(SANITIZE),1)
BUILD       := build-san
ALL_CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=all
LDSAN       := -fsanitize=address,undefined
else
BUILD       := build
endif

# The I/O-free modules: parsers, codecs, records, the config model.
PURE        := utf8 ws_frame ws_deflate http_req handshake record cfg idmap env \
               http_static metrics journal blob proxy_header
# The I/O glue around one libevent loop.
GLUE        := log stats conn tls listener client http admin room backend \
               cluster server upgrade ctl main
PURE_OBJS   := $(PURE:%=$(BUILD)/%.o)
GLUE_OBJS   := $(GLUE:%=$(BUILD)/%.o)
UNIT_TESTS  := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/test_*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

# What building and running need (make run installs only these), what
# make cluster-demo adds, and what the tests add: fuzzers and sanitizers,
# the peers and tools they drive.
RUN_PACKAGES  := build-essential pkg-config libevent-dev libssl-dev \
    libinih-dev libjansson-dev zlib1g-dev libsystemd-dev libhiredis-dev \
    python3 jq
CLUSTER_PACKAGES := redis-server haproxy
TEST_PACKAGES := clang-14 libclang-rt-14-dev valgrind python3-pytest \
    python3-websockets python3-pytest-asyncio python3-pytest-timeout \
    python3-trustme python3-selenium chromium chromium-driver websocketd bc \
    openssl prometheus $(CLUSTER_PACKAGES) redis-tools
DEBIAN_PACKAGES := $(RUN_PACKAGES) $(TEST_PACKAGES)

.PHONY: all run cluster-demo test unit pytest stress fuzz fuzz-smoke \
    fuzz-replay deps deps-run deps-cluster install uninstall clean bench

all: $(BUILD)/gatewayd

$(BUILD)/gatewayd: $(PURE_OBJS) $(GLUE_OBJS)
	$(CC) $(LDSAN) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: gatewayd/%.c gatewayd/*.h | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD) $(BUILD)/unit $(BUILD)/fuzz:
	mkdir -p $@

# A unit test #includes the module it tests, to reach its static functions,
# and links the other pure modules.
$(BUILD)/unit/test_%: tests/unit/test_%.c tests/unit/check.h gatewayd/*.c gatewayd/*.h | $(BUILD)/unit
	$(CC) $(ALL_CFLAGS) -Itests/unit $(LDSAN) -o $@ $< \
	    $(filter-out $(BUILD)/$*.o,$(PURE_OBJS)) $(PKG_LIBS)

$(UNIT_TESTS): $(PURE_OBJS)

unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

# The long attack runs (pytest -m stress) are left out: make stress.
pytest: PYTEST_ARGS ?= -m "not stress"
pytest: $(BUILD)/gatewayd
	GATEWAYD=$(abspath $(BUILD)/gatewayd) $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

stress: $(BUILD)/gatewayd
	GATEWAYD=$(abspath $(BUILD)/gatewayd) $(PYTHON) -m pytest -q tests -m stress

# libFuzzer drivers, built with clang and both sanitizers.
FUZZ_FLAGS := $(WARNINGS) -D_GNU_SOURCE -Igatewayd $(PKG_CFLAGS) -O1 -g \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/*.h gatewayd/*.c gatewayd/*.h \
    | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(PURE:%=gatewayd/%.c) $(PKG_LIBS)

# Replay every corpus file once: findings stay fixed.
fuzz-replay: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    $(BUILD)/fuzz/$$t -runs=0 tests/fuzz/corpus/$$t >/dev/null 2>&1 || \
	    { echo "fuzz replay failed: $$t"; $(BUILD)/fuzz/$$t -runs=0 tests/fuzz/corpus/$$t; exit 1; }; \
	    echo "fuzz replay: $$t ok"; done

fuzz-smoke: FUZZ_SECONDS = $(SMOKE_SECONDS)
fuzz-smoke: fuzz
fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	    $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	        -artifact_prefix=$(BUILD)/fuzz/$$t- \
	        $(BUILD)/fuzz/corpus-$$t tests/fuzz/corpus/$$t 2>$(BUILD)/fuzz/$$t.log || \
	        { tail -n 40 $(BUILD)/fuzz/$$t.log; exit 1; }; \
	    tail -n 1 $(BUILD)/fuzz/$$t.log; done

# The sanitizer build runs the whole suite too; the plain build's pytest
# run comes last so that its summary closes the output.
test: deps
	$(MAKE) all unit fuzz-replay fuzz-smoke
	$(MAKE) SANITIZE=1 all unit
	$(MAKE) SANITIZE=1 pytest
	$(MAKE) pytest

run: deps-run
	$(MAKE) all
	./conf/demo.sh $(BUILD)/gatewayd conf/demo.ini

# Redis, three gatewayd nodes sharing their rooms through it and HAProxy
# in front, until ^C (docs/CLUSTER.md).
cluster-demo: deps-cluster
	$(MAKE) all
	./conf/cluster/demo.sh $(BUILD)/gatewayd

deps-run:
	$(MAKE) deps DEBIAN_PACKAGES="$(RUN_PACKAGES)"

deps-cluster:
	$(MAKE) deps DEBIAN_PACKAGES="$(RUN_PACKAGES) $(CLUSTER_PACKAGES)"

# Install what is missing, and only that: apt-get update is slow and needs
# the network, so it runs only when a package is absent.
deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	    $$SUDO apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# make install needs no root with DESTDIR, and writes nothing in the
# source or build tree (so that "sudo make install" leaves no root-owned
# files there).  The units are made from their templates, systemd/*.in,
# whose @BINDIR@, @SYSCONFDIR@ and @DOCDIR@ it fills in; the reference
# config and the man pages get the paths of PREFIX in their examples.  The
# config is installed only where there is none: an existing one, changed
# or not, is never overwritten.
UNITS       := gatewayd.service gatewayd@.service gatewayd.socket
DOCS        := README.md $(wildcard docs/*.md)
EXAMPLES     = $(shell find examples -type f ! -name '*.pyc' \
                   ! -path '*/__pycache__/*' | LC_ALL=C sort)
CONFIG       = $(DESTDIR)$(SYSCONFDIR)/gatewayd/gatewayd.ini
UNIT_DEST    = $(DESTDIR)$(SYSTEMD_UNIT_DIR)
SUBST_UNIT   = sed -e 's|@BINDIR@|$(BINDIR)|g' \
                   -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'
SUBST_PATHS  = sed -e 's|/usr/local/share/doc/gatewayd|$(DOCDIR)|g' \
                   -e 's|/usr/local/|$(PREFIX)/|g' \
                   -e 's|/etc/gatewayd|$(SYSCONFDIR)/gatewayd|g' \
                   -e 's|^\.I /lib/systemd/system/|.I $(SYSTEMD_UNIT_DIR)/|'

install: all
	install -D -m 755 $(BUILD)/gatewayd $(DESTDIR)$(BINDIR)/gatewayd
	install -d $(DESTDIR)$(SYSCONFDIR)/gatewayd
	@if [ -e $(CONFIG) ]; then \
	    echo "keeping $(CONFIG) (not overwritten)"; \
	else \
	    echo "$(SUBST_PATHS) conf/gatewayd.ini >$(CONFIG)"; \
	    $(SUBST_PATHS) conf/gatewayd.ini >$(CONFIG) && chmod 644 $(CONFIG); \
	fi
	install -d $(UNIT_DEST)
	set -e; for u in $(UNITS); do \
	    $(SUBST_UNIT) systemd/$$u.in >$(UNIT_DEST)/$$u; \
	    chmod 644 $(UNIT_DEST)/$$u; \
	    if grep -n '@[A-Z_]*@' $(UNIT_DEST)/$$u; then \
	        echo "systemd/$$u.in: an @...@ is left"; exit 1; fi; done
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	$(SUBST_PATHS) man/gatewayd.8 >$(DESTDIR)$(MANDIR)/man8/gatewayd.8
	$(SUBST_PATHS) man/gatewayd.ini.5 >$(DESTDIR)$(MANDIR)/man5/gatewayd.ini.5
	chmod 644 $(DESTDIR)$(MANDIR)/man8/gatewayd.8 \
	    $(DESTDIR)$(MANDIR)/man5/gatewayd.ini.5
	set -e; for f in $(DOCS); do \
	    install -D -m 644 $$f $(DESTDIR)$(DOCDIR)/$$f; done
	set -e; for f in $(EXAMPLES); do \
	    if [ -x $$f ]; then m=755; else m=644; fi; \
	    install -D -m $$m $$f $(DESTDIR)$(DOCDIR)/$$f; done

# Removes what install put there, then the directories of gatewayd's own
# that are left empty ($(DOCDIR)'s tree, $(SYSCONFDIR)/gatewayd).  The
# config goes only when it is the reference as install writes it: one that
# was there before, or was changed since, stays.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/gatewayd
	rm -f $(UNITS:%=$(UNIT_DEST)/%)
	rm -f $(DESTDIR)$(MANDIR)/man8/gatewayd.8 \
	    $(DESTDIR)$(MANDIR)/man5/gatewayd.ini.5
	rm -f $(DOCS:%=$(DESTDIR)$(DOCDIR)/%)
	rm -f $(EXAMPLES:%=$(DESTDIR)$(DOCDIR)/%)
	@if $(SUBST_PATHS) conf/gatewayd.ini | cmp -s - $(CONFIG); then \
	    echo "rm -f $(CONFIG)"; rm -f $(CONFIG); \
	elif [ -e $(CONFIG) ]; then \
	    echo "keeping $(CONFIG) (not the reference config)"; fi
	if [ -d $(DESTDIR)$(DOCDIR) ]; then \
	    find $(DESTDIR)$(DOCDIR) -depth -type d -empty -delete; fi
	if [ -d $(DESTDIR)$(SYSCONFDIR)/gatewayd ]; then \
	    rmdir --ignore-fail-on-non-empty $(DESTDIR)$(SYSCONFDIR)/gatewayd; fi

clean:
	rm -rf build build-san

# The benchmark suite (make bench): tests/bench/bench.mk.
-include tests/bench/bench.mk
