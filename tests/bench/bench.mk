# The benchmark suite, included by the top Makefile (tests/bench/README.md).
#
#   make bench          the full default set, every peer, 3 runs each
#                       (under 25 minutes, the cluster's cases about 2 of
#                       them); build/bench/results.json
#   make bench-smoke    a quick pass over every scenario and peer (about a
#                       minute)
#   make bench-perf     perf profiles of gatewayd under echo and broadcast
#   make bench-base     gatewayd as of BASE_REV beside the current one, in
#                       one run (default: before the redelivery journal)
#
# BENCH_ARGS passes options to tests/bench/run.py, e.g.
#   make bench BENCH_ARGS="--runs 5 --scenarios echo --peers gatewayd-c,websocketd"

BENCH_BUILD    := $(BUILD)/bench
BENCH_PROGRAMS := $(BENCH_BUILD)/wsbench $(BENCH_BUILD)/bench_room \
    $(BENCH_BUILD)/floor_server
# websocketd and python3-websockets are the peers; perf is for bench-perf;
# openssl makes the TLS cases' certificate; gatewayd-cluster's nodes share
# a redis-server.
BENCH_PACKAGES := websocketd linux-perf python3-websockets openssl \
    redis-server
BENCH_ARGS     ?=
BENCH_RUN      := $(PYTHON) tests/bench/run.py --build $(BUILD)

# Bun, the peer to beat: npm's bun package, whose postinstall takes the
# binary from its optional dependency @oven/bun-linux-x64, on the npm
# registry like the rest (nothing else is fetched).  That build needs
# AVX2; a CPU without it gets @oven/bun-linux-x64-baseline instead.
# $(BUN) links whichever binary runs.  Without npm or the registry, the
# bun peer is skipped, and run.py says so.
BUN_DIR        := $(BENCH_BUILD)/bun
BUN            := $(BUN_DIR)/bun
BUN_VERSION    ?= 1
BUN_CANDIDATES := node_modules/bun/bin/bun.exe \
    node_modules/@oven/bun-linux-x64/bin/bun \
    node_modules/@oven/bun-linux-x64-baseline/bin/bun

.PHONY: bench bench-smoke bench-perf bench-deps bench-programs bench-bun bench-base

$(BENCH_BUILD):
	mkdir -p $@

# The generator links the gateway's own frame codec and handshake.
$(BENCH_BUILD)/wsbench: tests/bench/wsbench.c $(BUILD)/ws_frame.o \
    $(BUILD)/utf8.o $(BUILD)/handshake.o $(BUILD)/http_req.o \
    $(BUILD)/blob.o gatewayd/*.h | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $< \
	    $(BUILD)/ws_frame.o $(BUILD)/utf8.o $(BUILD)/handshake.o \
	    $(BUILD)/http_req.o $(BUILD)/blob.o $(PKG_LIBS) -lm

$(BENCH_BUILD)/bench_room: tests/bench/bench_room.c | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $<

# The floor peer: only the system calls a WebSocket server must make.
# It links libcrypto alone (for the accept key), not all of PKG_LIBS, so
# that it loads nothing it does not use.
$(BENCH_BUILD)/floor_server: tests/bench/floor_server.c | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $< -lcrypto

bench-programs: $(BUILD)/gatewayd $(BENCH_PROGRAMS) bench-bun

bench-bun: $(BUN)

$(BUN): | $(BENCH_BUILD)
	@if ! command -v npm >/dev/null; then \
	    echo "bench: npm is missing: the bun peer will be skipped"; \
	    exit 0; fi; \
	if grep -qw avx2 /proc/cpuinfo; then pkg=bun@$(BUN_VERSION); \
	else pkg=@oven/bun-linux-x64-baseline@$(BUN_VERSION); fi; \
	echo "npm install --prefix $(BUN_DIR) $$pkg"; \
	npm install --prefix $(BUN_DIR) --no-audit --no-fund \
	    --loglevel=error $$pkg || true; \
	for exe in $(BUN_CANDIDATES); do \
	    if [ -x $(BUN_DIR)/$$exe ] && \
	        $(BUN_DIR)/$$exe --version >/dev/null 2>&1; then \
	        ln -sfn $$exe $@; \
	        echo "bench: Bun $$($@ --version) in $(BUN_DIR)"; exit 0; \
	    fi; \
	done; \
	echo "bench: no Bun binary runs: the bun peer will be skipped"

# The top Makefile's deps step, with the peers and perf added.
bench-deps:
	$(MAKE) deps DEBIAN_PACKAGES="$(DEBIAN_PACKAGES) $(BENCH_PACKAGES)"

bench: bench-deps
	$(MAKE) bench-programs
	$(BENCH_RUN) $(BENCH_ARGS)

bench-smoke: bench-deps
	$(MAKE) bench-programs
	$(BENCH_RUN) --quick $(BENCH_ARGS)

bench-perf: bench-deps
	$(MAKE) bench-programs
	$(BENCH_RUN) --perf $(BENCH_ARGS)

# The same cases before and after a change, in one run: gatewayd as of
# REV (built in a scratch worktree) beside the current one.  By default
# REV is the commit before the redelivery journal, and the cases echo and
# broadcast: what redelivery costs.
BASE_REV ?= 058a0c7^
BASE_DIR = $(BENCH_BUILD)/base
bench-base: bench-deps
	$(MAKE) bench-programs
	rm -rf $(BASE_DIR) && git worktree prune
	git worktree add --detach $(BASE_DIR) $(BASE_REV)
	$(MAKE) -C $(BASE_DIR) all
	$(BENCH_RUN) --base $(BASE_DIR)/build/gatewayd \
	    --peers gatewayd-c,gatewayd-base \
	    $(or $(BENCH_ARGS),--cases echo-1000,broadcast-1000)
	git worktree remove --force $(BASE_DIR)
