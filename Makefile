# eddy - build, run and test. `make help` lists the targets.
#
#   make          build build/eddy
#   make run      install missing dependencies, build, start eddy standalone on :6020 (data in ./data)
#   make test     install, build, run every test suite (unit; end-to-end standalone, two-process and
#                 3 nodes + 2 brokers behind haproxy; cluster failures; backend library and
#                 eddy ctl; deploy/ checks)
#   make asan     the same suites against an ASan+UBSan build in build-asan/
#   make install  eddy, libeddy (static, shared), eddy.h and eddy.pc under PREFIX (/usr/local)
#   make clean

BUILD    ?= build
SAN      ?= 0
CC       ?= cc
PKGS     := libwebsockets msgpack libprotobuf-c jansson yaml-0.1 libsodium libpcre2-8
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -DEDDY_VERSION='"$(VERSION)"' -DPCRE2_CODE_UNIT_WIDTH=8 -I$(BUILD)/gen -Icommon -Ibroker -Inode \
               -Iclient
ifeq ($(SAN),1)
CFLAGS_OPT  := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_SAN := -fsanitize=address,undefined
else
CFLAGS_OPT  := -O2
LDFLAGS_SAN :=
endif
CFLAGS  += $(CFLAGS_BASE) $(CFLAGS_OPT) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lnng -lrocksdb -lpthread -lm
LDFLAGS += $(LDFLAGS_SAN)

PROTO_GEN  := $(BUILD)/gen/deepstream.pb-c.c
CORE_SRC   := $(wildcard common/*.c) $(wildcard broker/*.c) $(wildcard node/*.c)
CORE_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC)) $(BUILD)/obj/gen/deepstream.pb-c.o
MAIN_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard cmd/*.c))
# libeddy, the backend library: client/ and the parts of common/ it stands on
CLIENT_SRC := $(wildcard client/*.c)
CLIENT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLIENT_SRC))
LIB_SRC    := $(CLIENT_SRC) $(addprefix common/,clustermap.c config.c dict.c jsonpath.c log.c mem.c \
              mpack.c nodelink.c ops.c queue.c shardmap.c util.c yamljson.c)
LIB_PIC    := $(patsubst %.c,$(BUILD)/pic/%.o,$(LIB_SRC))
LIB_LIBS   := -lnng $(shell pkg-config --libs msgpack jansson yaml-0.1 2>/dev/null) -lpthread
SOVERSION  := 0
EXAMPLES   := $(patsubst client/examples/%.c,$(BUILD)/examples/%,$(wildcard client/examples/*.c))
PREFIX     ?= /usr/local
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: install backend-test all run test asan unit e2e e2e-standalone e2e-cluster e2e-haproxy cluster-test deps npm-deps clean help bench

all: $(BUILD)/eddy $(BUILD)/libeddy.a $(BUILD)/libeddy.so $(BUILD)/eddy.pc $(EXAMPLES) $(BUILD)/eddy-bench

$(BUILD)/gen/deepstream.pb-c.c $(BUILD)/gen/deepstream.pb-c.h: proto/deepstream.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen --proto_path=proto proto/deepstream.proto

$(BUILD)/obj/gen/deepstream.pb-c.o: $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-error -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libeddycore.a: $(CORE_OBJ)
	ar rcs $@ $^

$(BUILD)/eddy: $(MAIN_OBJ) $(CLIENT_OBJ) $(BUILD)/libeddycore.a
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(CLIENT_OBJ) $(BUILD)/libeddycore.a $(LDLIBS)

$(BUILD)/pic/%.o: %.c $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -DEDDY_LIBRARY -MMD -MP -c $< -o $@

$(BUILD)/libeddy.a: $(LIB_PIC)
	ar rcs $@ $^

$(BUILD)/libeddy.so: $(LIB_PIC)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libeddy.so.$(SOVERSION) -o $@ $^ $(LIB_LIBS)

$(BUILD)/eddy.pc: client/eddy.pc.in VERSION
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIB_LIBS)|' $< > $@

# examples use only the public header and the static library, as a user's program would
$(BUILD)/examples/%: client/examples/%.c client/eddy.h $(BUILD)/libeddy.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(CFLAGS_OPT) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(LDFLAGS_SAN)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/eddy $(DESTDIR)$(PREFIX)/bin/eddy
	install -m 644 client/eddy.h $(DESTDIR)$(PREFIX)/include/eddy.h
	install -m 644 $(BUILD)/libeddy.a $(DESTDIR)$(PREFIX)/lib/libeddy.a
	install -m 755 $(BUILD)/libeddy.so $(DESTDIR)$(PREFIX)/lib/libeddy.so.$(SOVERSION)
	ln -sf libeddy.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libeddy.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIB_LIBS)|' client/eddy.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/eddy.pc

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libeddycore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(LDLIBS) -lcmocka

# the backend library's tests use only the public header and libeddy.a
$(BUILD)/tests/test_backend: tests/backend/test_backend.c client/eddy.h $(BUILD)/libeddy.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wno-unused-parameter $(CFLAGS_OPT) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) -lcmocka $(LDFLAGS_SAN)

backend-test: all $(BUILD)/tests/test_backend npm-deps
	bash tests/backend/run.sh $(BUILD)

$(BUILD)/bench_backend: tests/bench/bench_backend.c client/eddy.h $(BUILD)/libeddy.a
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(CFLAGS_OPT) -Iclient -o $@ $< \
	  $(BUILD)/libeddy.a $(LIB_LIBS) $(LDFLAGS_SAN)

# the native load generator (libwebsockets client; frames from broker/frames.c)
$(BUILD)/eddy-bench: tests/bench/eddy_bench.c tests/bench/bench.c tests/bench/bench_events.c tests/bench/bench_records.c \
                    tests/bench/bench_rpc.c tests/bench/bench_connections.c tests/bench/bench.h $(BUILD)/libeddycore.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) $(BUILD)/libeddycore.a $(LDLIBS)

$(BUILD)/bench_node: tests/bench/bench_node.c $(BUILD)/libeddycore.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libeddycore.a $(LDLIBS)

-include $(shell find $(BUILD)/obj $(BUILD)/pic -name '*.d' 2>/dev/null)

# Dependencies: Debian packages (apt-get when root, otherwise the exact command
# is printed) and the pinned npm test clients.
deps:
	@bash deploy/install-deps.sh

npm-deps:
	@test -d node_modules/@deepstream/client || npm ci --no-audit --no-fund

run: deps all
	@mkdir -p data
	$(BUILD)/eddy standalone --port 6020 --data ./data

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "# $$t"; $$t; done

E2E = node --test --test-concurrency=1 --test-timeout=120000 tests/e2e/
e2e-standalone: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=standalone $(E2E)
e2e-cluster: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=cluster $(E2E)
e2e-haproxy: all npm-deps
	EDDY_BIN=$(BUILD)/eddy EDDY_MODE=haproxy $(E2E)
e2e: e2e-standalone e2e-cluster e2e-haproxy

# 3 nodes, 2 brokers and haproxy started by cluster-tests/cluster.sh
cluster-test: all npm-deps
	EDDY_BIN=$(BUILD)/eddy node --test --test-concurrency=1 --test-timeout=300000 cluster-tests/

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) e2e
	$(MAKE) cluster-test
	$(MAKE) backend-test
	EDDY_BIN=build/eddy bash deploy/check.sh

asan: deps
	$(MAKE) BUILD=build-asan SAN=1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(MAKE) BUILD=build-asan SAN=1 unit e2e cluster-test backend-test

# Benchmarks (figures, not pass/fail): every eddy-bench scenario against
# @deepstream/server 7.0.2, eddy standalone and a 3-node/2-broker cluster, side
# by side (results also in $(BUILD)/bench-results.jsonl); node-side record
# apply+persist; backend round trips; a cluster with 1 and 2 brokers.
bench: all $(BUILD)/bench_node $(BUILD)/bench_backend npm-deps
	bash tests/bench/side-by-side.sh $(BUILD)
	$(BUILD)/bench_node 200000 100 1000 batch 1000
	bash tests/bench/backend.sh $(BUILD)
	node tests/bench/cluster-brokers.mjs $(BUILD)/eddy

clean:
	rm -rf build build-asan

help:
	@sed -n '1,12p' Makefile
