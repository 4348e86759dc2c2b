# The benchmark suite, included by the top Makefile (tests/bench/README.md).
#
#   make bench          the full default set, every peer, 3 runs each
#                       (under 15 minutes); build/bench/results.json
#   make bench-smoke    a quick pass over every scenario and peer (< 60 s)
#   make bench-perf     perf profiles of gatewayd under echo and broadcast
#
# BENCH_ARGS passes options to tests/bench/run.py, e.g.
#   make bench BENCH_ARGS="--runs 5 --scenarios echo --peers gatewayd-c,websocketd"

BENCH_BUILD    := $(BUILD)/bench
BENCH_PROGRAMS := $(BENCH_BUILD)/wsbench $(BENCH_BUILD)/bench_room \
    $(BENCH_BUILD)/floor_server
# websocketd and python3-websockets are the peers; perf is for bench-perf.
BENCH_PACKAGES := websocketd linux-perf python3-websockets
BENCH_ARGS     ?=
BENCH_RUN      := $(PYTHON) tests/bench/run.py --build $(BUILD)

.PHONY: bench bench-smoke bench-perf bench-deps bench-programs

$(BENCH_BUILD):
	mkdir -p $@

# The generator links the gateway's own frame codec and handshake.
$(BENCH_BUILD)/wsbench: tests/bench/wsbench.c $(BUILD)/ws_frame.o \
    $(BUILD)/utf8.o $(BUILD)/handshake.o $(BUILD)/http_req.o \
    gatewayd/*.h | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $< \
	    $(BUILD)/ws_frame.o $(BUILD)/utf8.o $(BUILD)/handshake.o \
	    $(BUILD)/http_req.o $(PKG_LIBS) -lm

$(BENCH_BUILD)/bench_room: tests/bench/bench_room.c | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $<

# The floor peer: only the system calls a WebSocket server must make.
# It links libcrypto alone (for the accept key), not all of PKG_LIBS, so
# that it loads nothing it does not use.
$(BENCH_BUILD)/floor_server: tests/bench/floor_server.c | $(BENCH_BUILD)
	$(CC) $(ALL_CFLAGS) $(LDSAN) $(LDFLAGS) -o $@ $< -lcrypto

bench-programs: $(BUILD)/gatewayd $(BENCH_PROGRAMS)

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
