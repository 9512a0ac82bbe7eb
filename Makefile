# eddy - build, run and test. `make help` lists the targets.
#
#   make          build build/eddy (and libeddy, eddy.pc, the examples); installs nothing
#   make run      install missing dependencies (deploy/install-deps.sh), build, start eddy
#                 standalone on :6020 (data in ./data)
#   make test     install, build, run every test suite (build check; unit; end-to-end standalone,
#                 two-process and 3 nodes + 2 brokers behind haproxy; cluster failures; backend
#                 library and eddy ctl; deploy/ checks)
#   make asan     the same suites against an ASan+UBSan build in build-asan/
#   make tsan     unit, end-to-end standalone and backend suites under ThreadSanitizer (build-tsan/)
#   make fuzz     the libFuzzer targets of tests/fuzz/, FUZZ_SECONDS (60) each (build-fuzz/);
#                 make fuzz-short: 30 s each, as CI runs them
#   make deps     only install the missing Debian packages (as root, or with sudo)
#   make install  eddy, libeddy (static, shared), eddy.h and eddy.pc under PREFIX (/usr/local)
#   make clean

BUILD      ?= build
SAN        ?= 0
CC         ?= cc
PKG_CONFIG ?= pkg-config
PKGS       := libwebsockets msgpack libprotobuf-c jansson yaml-0.1 libsodium libpcre2-8 libcurl libjwt libssl libcrypto \
              raft libuv
LIB_PKGS   := msgpack jansson libssl libcrypto
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -DEDDY_VERSION='"$(VERSION)"' -DPCRE2_CODE_UNIT_WIDTH=8 -I$(BUILD)/gen -Icommon -Ibroker -Inode \
               -Iclient
# SAN=1: ASan+UBSan (make asan); SAN=thread: ThreadSanitizer (make tsan); SAN=fuzz:
# ASan+UBSan with libFuzzer's coverage instrumentation, for clang (make fuzz).
# LIB_SAN goes into eddy.pc's Libs: a program linking the instrumented libeddy.a needs the runtime.
ifeq ($(SAN),1)
CFLAGS_OPT  := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
LIB_SAN     :=
else ifeq ($(SAN),thread)
CFLAGS_OPT  := -O1 -fno-omit-frame-pointer -fsanitize=thread
LDFLAGS_SAN := -fsanitize=thread
LIB_SAN     := -fsanitize=thread
else ifeq ($(SAN),fuzz)
CFLAGS_OPT  := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
LIB_SAN     :=
else
CFLAGS_OPT  := -O2
LDFLAGS_SAN :=
LIB_SAN     :=
endif

# Build flags live in files under $(BUILD)/flags, written at recipe time (never
# when make reads this file, so packages installed earlier in the same run count)
# and rewritten only when their text changes: everything built with a flags file
# depends on it, so new package flags (or SAN, CFLAGS, VERSION) rebuild exactly
# what used them and nothing stale stays in $(BUILD). Recipes read them with
# $(file <...), expanded when the recipe runs. (The files end without a newline:
# make 4.3's $(file <) does not always strip it, and a newline would split a recipe line.)
FLAGS_DIR   := $(BUILD)/flags
FLAGS       := $(addprefix $(FLAGS_DIR)/,cflags ldflags ldlibs liblibs opt pc)
EDDY_CFLAGS  = $(file <$(FLAGS_DIR)/cflags)
EDDY_LDFLAGS = $(file <$(FLAGS_DIR)/ldflags)
EDDY_LDLIBS  = $(file <$(FLAGS_DIR)/ldlibs)
LIB_LIBS     = $(file <$(FLAGS_DIR)/liblibs)
OPT_FLAGS    = $(file <$(FLAGS_DIR)/opt)
# what an object / a program linked against libeddycore / one against libeddy uses
CC_DEPS     := $(FLAGS_DIR)/cflags
CORE_LINK   := $(FLAGS_DIR)/cflags $(FLAGS_DIR)/ldflags $(FLAGS_DIR)/ldlibs
PUB_LINK    := $(FLAGS_DIR)/opt $(FLAGS_DIR)/ldflags $(FLAGS_DIR)/liblibs
# $(call sq,TEXT): TEXT as one single-quoted shell word
sq = '$(subst ','\'',$(1))'

PROTO_GEN  := $(BUILD)/gen/deepstream.pb-c.c
CORE_SRC   := $(wildcard common/*.c) $(wildcard broker/*.c) $(wildcard node/*.c)
CORE_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC)) $(BUILD)/obj/gen/deepstream.pb-c.o
MAIN_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard cmd/*.c))
# libeddy, the backend library: client/ and the parts of common/ it stands on
CLIENT_SRC := $(wildcard client/*.c)
CLIENT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLIENT_SRC))
LIB_SRC    := $(CLIENT_SRC) $(addprefix common/,clustermap.c dict.c jsonpath.c linktls.c log.c mem.c \
              mpack.c nodelink.c ops.c queue.c shardmap.c util.c)
LIB_PIC    := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIB_SRC))
SOVERSION  := 0
EXAMPLES   := $(patsubst client/examples/%.c,$(BUILD)/examples/%,$(wildcard client/examples/*.c))
PREFIX     ?= /usr/local
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

# A recipe that fails leaves no half-written target behind (a failed link would look up to date).
.DELETE_ON_ERROR:

.PHONY: install backend-test build-check all run test asan tsan fuzz fuzz-build fuzz-short unit e2e e2e-standalone e2e-cluster e2e-haproxy cluster-test deps npm-deps clean help bench FORCE

all: $(BUILD)/eddy $(BUILD)/libeddy.a $(BUILD)/libeddy.so $(BUILD)/eddy.pc $(EXAMPLES) $(BUILD)/eddy-bench

# The flags files. The recipe runs on every make that needs one (FORCE) and
# fails, naming what is missing, when pkg-config cannot resolve a package: a
# build never goes on with empty package flags. With `make deps all` (also -j)
# the dependencies are installed first.
$(FLAGS) &: FORCE | $(filter deps,$(MAKECMDGOALS))
	@mkdir -p $(FLAGS_DIR)
	@set -e; \
	cmds=""; mods=""; \
	for c in $(firstword $(PKG_CONFIG)) protoc-c $(firstword $(CC)); do command -v $$c >/dev/null 2>&1 || cmds="$$cmds $$c"; done; \
	if command -v $(firstword $(PKG_CONFIG)) >/dev/null 2>&1; then \
	  for p in $(PKGS); do $(PKG_CONFIG) --exists $$p 2>/dev/null || mods="$$mods $$p"; done; \
	fi; \
	if [ -n "$$cmds$$mods" ]; then \
	  msg=""; [ -z "$$cmds" ] || msg="no command$$cmds"; [ -z "$$mods" ] || msg="$${msg:+$$msg; }$(firstword $(PKG_CONFIG)) finds no$$mods"; \
	  echo "eddy: the build dependencies are not installed: $$msg" >&2; \
	  echo "eddy: install them with 'make deps' as root or as a user with sudo ('make run' and 'make test' do it first), see deploy/install-deps.sh" >&2; \
	  exit 1; \
	fi; \
	pc_cflags=$$($(PKG_CONFIG) --cflags $(PKGS)); \
	pc_libs=$$($(PKG_CONFIG) --libs $(PKGS)); \
	pc_liblibs=$$($(PKG_CONFIG) --libs $(LIB_PKGS)); \
	put() { f=$(FLAGS_DIR)/$$1; shift; line=""; for w in "$$@"; do [ -z "$$w" ] || line="$${line:+$$line }$$w"; done; \
	  printf '%s' "$$line" >"$$f.tmp"; \
	  if cmp -s "$$f.tmp" "$$f"; then rm -f "$$f.tmp"; else mv -f "$$f.tmp" "$$f"; echo "flags: $$f: $$line"; fi; }; \
	put cflags $(call sq,$(strip $(CFLAGS_BASE) $(CFLAGS_OPT))) "$$pc_cflags" $(call sq,$(strip $(CFLAGS))); \
	put ldflags $(call sq,$(strip $(LDFLAGS_SAN) $(LDFLAGS))); \
	put ldlibs "$$pc_libs" $(call sq,$(strip -lnng -lrocksdb -lpthread -lm $(LDLIBS))); \
	put liblibs -lnng "$$pc_liblibs" -lpthread $(LIB_SAN); \
	put opt $(call sq,$(strip $(CFLAGS_OPT))); \
	put pc $(call sq,$(PREFIX) $(VERSION))

FORCE:

$(BUILD)/gen/deepstream.pb-c.c $(BUILD)/gen/deepstream.pb-c.h: proto/deepstream.proto | $(FLAGS_DIR)/cflags
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen --proto_path=proto proto/deepstream.proto

$(BUILD)/obj/gen/deepstream.pb-c.o: $(PROTO_GEN) $(CC_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(EDDY_CFLAGS) -Wno-error -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_GEN) $(CC_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(EDDY_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libeddycore.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/eddy: $(MAIN_OBJ) $(CLIENT_OBJ) $(BUILD)/libeddycore.a $(CORE_LINK)
	$(CC) $(EDDY_LDFLAGS) -o $@ $(MAIN_OBJ) $(CLIENT_OBJ) $(BUILD)/libeddycore.a $(EDDY_LDLIBS)

$(BUILD)/pic/%.o: %.c $(PROTO_GEN) $(CC_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(EDDY_CFLAGS) -fPIC -fvisibility=hidden -DEDDY_LIBRARY -MMD -MP -c $< -o $@

$(BUILD)/libeddy.a: $(LIB_PIC)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libeddy.so: $(LIB_PIC) $(FLAGS_DIR)/ldflags $(FLAGS_DIR)/liblibs
	$(CC) $(EDDY_LDFLAGS) -shared -Wl,-soname,libeddy.so.$(SOVERSION) -o $@ $(LIB_PIC) $(LIB_LIBS)

# eddy.pc for $(BUILD)/ and for make install; PREFIX and VERSION are in its flags file
$(BUILD)/eddy.pc: client/eddy.pc.in $(FLAGS_DIR)/liblibs $(FLAGS_DIR)/pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIB_LIBS)|' $< > $@

# examples use only the public header and the static library, as a user's program would
$(BUILD)/examples/%: client/examples/%.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(EDDY_LDFLAGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/eddy $(DESTDIR)$(PREFIX)/bin/eddy
	install -m 644 client/eddy.h $(DESTDIR)$(PREFIX)/include/eddy.h
	install -m 644 $(BUILD)/libeddy.a $(DESTDIR)$(PREFIX)/lib/libeddy.a
	install -m 755 $(BUILD)/libeddy.so $(DESTDIR)$(PREFIX)/lib/libeddy.so.$(SOVERSION)
	ln -sf libeddy.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libeddy.so
	install -m 644 $(BUILD)/eddy.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/eddy.pc

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libeddycore.a $(CORE_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(EDDY_CFLAGS) $(EDDY_LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(EDDY_LDLIBS) -lcmocka

# a stranger on a node's nng ports, with nng's own TLS (cluster-tests/links.test.mjs)
$(BUILD)/tests/link_probe: tests/links/link_probe.c $(BUILD)/libeddycore.a $(CORE_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(EDDY_CFLAGS) $(EDDY_LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(EDDY_LDLIBS)

# the backend library's tests use only the public header and libeddy.a
$(BUILD)/tests/test_backend: tests/backend/test_backend.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wno-unused-parameter $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) -lcmocka $(EDDY_LDFLAGS)

# event streams: starts, stops and kills eddy processes of its own
$(BUILD)/tests/test_streams: tests/backend/test_streams.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wno-unused-parameter $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) -lcmocka $(EDDY_LDFLAGS)

backend-test: all $(BUILD)/tests/test_backend $(BUILD)/tests/test_streams npm-deps
	bash tests/backend/run.sh $(BUILD)

$(BUILD)/bench_backend: tests/bench/bench_backend.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(EDDY_LDFLAGS)

# a backend's resume after missed events, beside receiving them live (tests/bench/resume.sh)
$(BUILD)/bench_validate: tests/bench/bench_validate.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(EDDY_LDFLAGS)

$(BUILD)/bench_resume: tests/bench/bench_resume.c client/eddy.h $(BUILD)/libeddy.a $(PUB_LINK)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter $(OPT_FLAGS) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(EDDY_LDFLAGS)

# the native load generator (libwebsockets client; frames from broker/frames.c)
$(BUILD)/eddy-bench: tests/bench/eddy_bench.c tests/bench/bench.c tests/bench/bench_events.c tests/bench/bench_records.c \
                    tests/bench/bench_rpc.c tests/bench/bench_connections.c tests/bench/bench.h $(BUILD)/libeddycore.a \
                    $(CORE_LINK)
	$(CC) $(EDDY_CFLAGS) $(EDDY_LDFLAGS) -o $@ $(filter %.c,$^) $(BUILD)/libeddycore.a $(EDDY_LDLIBS)

$(BUILD)/bench_node: tests/bench/bench_node.c $(BUILD)/libeddycore.a $(CORE_LINK)
	$(CC) $(EDDY_CFLAGS) $(EDDY_LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(EDDY_LDLIBS)

# what one permission check costs (ns per check for a few rules)
$(BUILD)/bench_rules: tests/bench/bench_rules.c $(BUILD)/libeddycore.a $(CORE_LINK)
	$(CC) $(EDDY_CFLAGS) $(EDDY_LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(EDDY_LDLIBS)

-include $(shell find $(BUILD)/obj $(BUILD)/pic -name '*.d' 2>/dev/null)

# Dependencies: Debian packages (apt-get as root, with sudo otherwise, or the
# exact command is printed) and the pinned npm test clients. run and test
# install first, then build in a new make, so nothing here ever saw the
# machine before the install.
deps:
	@bash deploy/install-deps.sh

npm-deps:
	@test -d node_modules/@deepstream/client || npm ci --no-audit --no-fund

# With IPv6 (dual-stack sockets, the Linux default) eddy listens on :: for both
# families: Debian 12's node 18 resolves localhost to ::1 first and, unlike node
# 20, does not fall back to 127.0.0.1, so a client of localhost:6020 needs both.
run: deps
	$(MAKE) all
	@mkdir -p data
	@host=""; if [ -e /proc/net/if_inet6 ] && [ "$$(cat /proc/sys/net/ipv6/bindv6only 2>/dev/null)" != 1 ]; then \
	  host="--host ::"; fi; \
	echo "$(BUILD)/eddy standalone $$host --port 6020 --data ./data"; \
	exec $(BUILD)/eddy standalone $$host --port 6020 --data ./data

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "# $$t"; $$t; done

# The node suites run their test files through tests/run-tests.mjs, which
# kills a file (and every process it started) after --timeout seconds: no
# node --test-timeout / --test-concurrency, so Debian 12's node 18 runs them.
NODE_TESTS = node tests/run-tests.mjs
# The end-to-end files run E2E_JOBS at a time (each starts its own servers on free
# ports; files marked `run-tests: alone` bound latencies and run by themselves).
E2E_JOBS ?= 2
E2E = $(NODE_TESTS) --jobs $(E2E_JOBS) --timeout 600 tests/e2e
e2e-standalone: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=standalone $(E2E)
# two-process mode with its links over TLS (tls+tcp://, certificates made at test time),
# the haproxy cluster over plain tcp://: both kinds of link run every suite
e2e-cluster: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=cluster EDDY_LINK_TLS=1 $(E2E)
e2e-haproxy: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=haproxy EDDY_LINK_TLS=0 $(E2E)
e2e: e2e-standalone e2e-cluster e2e-haproxy

# 3 nodes, 2 brokers and haproxy started by cluster-tests/cluster.sh (its links over TLS),
# and strangers on a node's ports (tests/links/link_probe.c)
cluster-test: all npm-deps $(BUILD)/tests/link_probe
	EDDY_BIN=$(BUILD)/eddy $(NODE_TESTS) --timeout 900 cluster-tests

# The build from scratch as on a fresh machine (packages installed during the
# same make), and rebuilds when package flags change: tests/build-check/fresh-build.sh
build-check:
	bash tests/build-check/fresh-build.sh

test: deps
	$(MAKE) all
	$(MAKE) build-check
	$(MAKE) unit
	$(MAKE) e2e
	$(MAKE) cluster-test
	$(MAKE) backend-test
	EDDY_BIN=$(BUILD)/eddy bash deploy/check.sh

# ASan+UBSan: every suite but the end-to-end one through haproxy, whose
# brokers and nodes run the code cluster mode and cluster-test already run
# under the sanitizers (it adds only the load balancer in front): CI time.
asan: deps
	$(MAKE) BUILD=build-asan SAN=1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(MAKE) BUILD=build-asan SAN=1 unit e2e-standalone e2e-cluster cluster-test backend-test

# ThreadSanitizer: everything built with -fsanitize=thread (gcc) in build-tsan/,
# then the unit tests, the standalone end-to-end suite and the backend suite.
# Reports go to files (TSAN_OPTIONS log_path) as well as failing the process
# (exitcode 66: the suites check every server's exit code); any report file
# left at the end fails the target, even from a process a test killed.
# tests/tsan.supp suppresses only races inside the libraries that are not
# instrumented (RocksDB, nng, libuv's descriptors), and says what else each entry could hide.
TSAN_BUILD   := build-tsan
TSAN_REPORTS  = $(abspath $(TSAN_BUILD))/tsan-reports
TSAN_ENV      = TSAN_OPTIONS='exitcode=66 second_deadlock_stack=1 history_size=4 log_path=$(TSAN_REPORTS)/report suppressions=$(abspath tests/tsan.supp)'
tsan: deps
	$(MAKE) BUILD=$(TSAN_BUILD) SAN=thread all $(patsubst tests/unit/%.c,$(TSAN_BUILD)/tests/%,$(UNIT_SRC))
	@rm -rf $(TSAN_REPORTS); mkdir -p $(TSAN_REPORTS)
	@rc=0; \
	$(TSAN_ENV) $(MAKE) BUILD=$(TSAN_BUILD) SAN=thread unit || rc=1; \
	$(TSAN_ENV) EDDY_BIN=$(TSAN_BUILD)/eddy EDDY_MODE=standalone $(E2E) || rc=1; \
	$(TSAN_ENV) $(MAKE) BUILD=$(TSAN_BUILD) SAN=thread backend-test || rc=1; \
	if ls $(TSAN_REPORTS)/report.* >/dev/null 2>&1; then \
	  cat $(TSAN_REPORTS)/report.*; \
	  echo "tsan: $$(cat $(TSAN_REPORTS)/report.* | grep -c '^WARNING: ThreadSanitizer') report(s) in $(TSAN_REPORTS)" >&2; rc=1; \
	fi; \
	[ $$rc = 0 ] && echo "tsan: no report" || { echo "tsan: FAILED" >&2; exit 1; }

# Fuzzing: the libFuzzer targets of tests/fuzz/ (see its README), built with
# clang's ASan+UBSan into build-fuzz/, each run for FUZZ_SECONDS from its seed
# corpus (tests/fuzz/corpus/<target>/; what it finds stays in build-fuzz/).
# A crash, leak, timeout or sanitizer report fails the run and leaves its
# reproducer in build-fuzz/artifacts/<target>/. FUZZ_JOBS of them run at once
# (1; each gets FUZZ_SECONDS all the same). fuzz-short is CI's: 30 s each, 2 at once.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_BUILD   := build-fuzz
FUZZ_TARGETS := fuzz_frame fuzz_ops fuzz_json fuzz_config fuzz_rules fuzz_jif
# fuzz_frame counts the node's storage work through these (tests/fuzz/fuzz_frame.c)
FUZZ_WRAP    := -Wl,--wrap=persist_load,--wrap=persist_write,--wrap=persist_poll

# fuzz_frame links no libwebsockets: tests/fuzz/fake_lws.c stands in for it
$(BUILD)/fuzz_frame: tests/fuzz/fuzz_frame.c tests/fuzz/fake_lws.c tests/fuzz/fake_lws.h $(BUILD)/libeddycore.a \
                     $(CORE_LINK)
	$(CC) $(EDDY_CFLAGS) -Itests/fuzz -fsanitize=fuzzer $(EDDY_LDFLAGS) $(FUZZ_WRAP) -o $@ \
	  tests/fuzz/fuzz_frame.c tests/fuzz/fake_lws.c $(BUILD)/libeddycore.a $(filter-out -lwebsockets,$(EDDY_LDLIBS))

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(BUILD)/libeddycore.a $(CORE_LINK)
	$(CC) $(EDDY_CFLAGS) -fsanitize=fuzzer $(EDDY_LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a \
	  $(filter-out -lwebsockets,$(EDDY_LDLIBS))

fuzz-build: deps
	$(MAKE) BUILD=$(FUZZ_BUILD) SAN=fuzz CC=$(FUZZ_CC) $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	FUZZ_JOBS=$(FUZZ_JOBS) bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=30 FUZZ_JOBS=2

# Benchmarks (figures, not pass/fail): every eddy-bench scenario against
# @deepstream/server 7.0.2, eddy standalone and a 3-node/2-broker cluster, side
# by side (results also in $(BUILD)/bench-results.jsonl); the HTTP API (POST
# /api, one emit and 100 emits a request) beside deepstream; node-side record
# apply+persist; permission checks; backend round trips; a cluster with 1 and 2
# brokers; a backend resuming an event stream after 100k missed events, beside receiving them live;
# login storms (1000 clients at once, then reconnecting) per auth type,
# beside deepstream; a cluster with plain and with TLS links (tests/bench/links-tls.sh);
# replicated writes (replicas 1 against 2, cluster.raft) and 10 failovers timed.
bench: all $(BUILD)/bench_node $(BUILD)/bench_rules $(BUILD)/bench_backend $(BUILD)/bench_resume $(BUILD)/bench_validate npm-deps
	bash tests/bench/side-by-side.sh $(BUILD)
	bash tests/bench/http-api.sh $(BUILD)
	bash tests/bench/tls.sh $(BUILD)
	bash tests/bench/links-tls.sh $(BUILD)
	$(BUILD)/bench_node 200000 100 1000 batch 1000
	$(BUILD)/bench_rules
	bash tests/bench/permissions.sh $(BUILD)
	bash tests/bench/backend.sh $(BUILD)
	bash tests/bench/resume.sh $(BUILD)
	bash tests/bench/validation.sh $(BUILD)
	bash tests/bench/changesets.sh $(BUILD)
	node tests/bench/cluster-brokers.mjs $(BUILD)/eddy
	bash tests/bench/backplane.sh $(BUILD)
	node tests/bench/logins.mjs $(BUILD)
	bash tests/bench/replication.sh $(BUILD)
	bash tests/bench/failover.sh $(BUILD) 10

clean:
	rm -rf build build-asan build-tsan build-fuzz

help:
	@sed -n '1,15p' Makefile
