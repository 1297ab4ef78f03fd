# sse-server — build, run, test.
#
#   make              build ./sse-server
#   make run          install missing Debian packages, build, serve on :8080
#   make run-cluster  one process per core on :8080 in front of one local Redis (--redis)
#   make test         install missing packages, build, run every test
#   make test SAN=1   the same, server and tests built with ASan + UBSan
#   make e2e          browser tests: the pages in Debian's Chromium (make deps-e2e installs it)
#   make bench        the load suite against nginx, nchan and the Node reference: bench/RESULTS.md
#   make fuzz         libFuzzer on the request path for FUZZ_SECONDS (60)
#   make clean
#
# llhttp comes as C sources in Debian's node-llhttp package; we compile them
# ourselves, without -Werror: their warnings are not ours to fix.

CXX ?= g++
CC  ?= gcc
DEB_PACKAGES := g++ make node-llhttp doctest-dev libsqlite3-dev sqlite3 curl wrk strace libhiredis-dev redis-server
LLHTTP_SRC   := /usr/share/llhttp
LLHTTP_INC   := /usr/share/include/llhttp
CXXFLAGS     := -std=c++20 -Wall -Wextra -Werror -I$(LLHTTP_INC) -Ibuild/lua
REL_OPT      := -O2
# _GLIBCXX_ASSERTIONS: bounds checks in the standard containers (ASan cannot see an index past size() within capacity()).
SAN_OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -D_GLIBCXX_ASSERTIONS
LUA_INCS     := $(patsubst apps/%.lua,build/lua/%.lua.inc,$(wildcard apps/*/*.lua)) build/lua/engine/version.lua.inc
HEADERS      := $(wildcard *.hpp) $(wildcard engine/*.hpp) $(wildcard apps/*.hpp) $(wildcard apps/*/*.hpp) $(LUA_INCS)
TEST_SRCS    := $(wildcard test/*.cpp test/loop/*.cpp test/engine/*.cpp test/apps/*.cpp)
TEST_HDRS    := $(wildcard test/*.hpp)
llhttp_o      = $(patsubst %,build/$(1)/llhttp/%.o,api http llhttp)
test_o        = $(patsubst test/%.cpp,build/$(1)/test/%.o,$(TEST_SRCS))
JOBS         ?= $(shell nproc)

ifeq ($(SAN),1)
  TEST_SERVER := build/san/sse-server
  TEST_BIN    := build/san/run_tests
else
  TEST_SERVER := sse-server
  TEST_BIN    := build/rel/run_tests
endif

E2E_PACKAGES := chromium fonts-wqy-microhei

.PHONY: all deps deps-e2e deps-bench deps-fuzz run run-cluster test test-cluster e2e bench fuzz clean

all: sse-server bench/ssefan bench/floor

sse-server: server.cpp $(HEADERS) $(call llhttp_o,rel)
	$(CXX) $(CXXFLAGS) $(REL_OPT) -o $@ server.cpp $(call llhttp_o,rel) -lsqlite3 -lhiredis -pthread

build/san/sse-server: server.cpp $(HEADERS) $(call llhttp_o,san)
	$(CXX) $(CXXFLAGS) $(SAN_OPT) -o $@ server.cpp $(call llhttp_o,san) -lsqlite3 -lhiredis -pthread

# The tests: one object per file, so they compile in parallel (make test
# runs its sub-make with -j$(JOBS)); each depends on every header.
build/rel/test/%.o: test/%.cpp $(TEST_HDRS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -O1 -g -c -o $@ $<

build/san/test/%.o: test/%.cpp $(TEST_HDRS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(SAN_OPT) -c -o $@ $<

build/rel/run_tests: $(call test_o,rel) $(call llhttp_o,rel)
	$(CXX) $(CXXFLAGS) -O1 -g -o $@ $^ -lsqlite3 -lhiredis -pthread

build/san/run_tests: $(call test_o,san) $(call llhttp_o,san)
	$(CXX) $(CXXFLAGS) $(SAN_OPT) -o $@ $^ -lsqlite3 -lhiredis -pthread

# The apps' Redis scripts are .lua files (apps/<app>/*.lua, and the
# version rule every state script starts with, engine/version.lua); each
# becomes a C++ raw string the app #includes (g++ 12 has no #embed). A
# script that holds the raw string's end marker is refused.
define lua_inc
	@mkdir -p $(dir $@)
	@if grep -qF ')lua"' $<; then echo "$<: a script may not contain )lua\"" >&2; exit 1; fi
	{ echo 'R"lua('; cat $<; echo ')lua"'; } >$@
endef
build/lua/%.lua.inc: apps/%.lua
	$(lua_inc)
build/lua/engine/%.lua.inc: engine/%.lua
	$(lua_inc)

# Preloaded into a test's redis-server whose clock must disagree with ours,
# and into a test's server whose disk fails at a commit.
build/%.so: test/%.c
	@mkdir -p build
	$(CC) -std=c11 -Wall -Wextra -Werror -O1 -shared -fPIC -o $@ $<

bench/ssefan: bench/ssefan.cpp
	$(CXX) -std=c++20 -Wall -Wextra -Werror $(REL_OPT) -o $@ $<

bench/floor: bench/floor.c
	$(CC) -std=c11 -Wall -Wextra -Werror $(REL_OPT) -o $@ $<

build/rel/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_OPT) -I$(LLHTTP_INC) -c -o $@ $<

build/san/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_OPT) -I$(LLHTTP_INC) -c -o $@ $<

# Without node-llhttp there is nothing to compile: say what to do.
$(LLHTTP_SRC)/%.c:
	@echo "$@ is missing: run 'make deps' (installs Debian's node-llhttp), or 'make run' / 'make test'" >&2; exit 1

# $(call install_missing,PACKAGES[,npm]): installs those of the Debian
# PACKAGES that are missing, as root or through sudo; with npm, Node.js
# and npm too if the machine has no npm.
define install_missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	$(if $(2),command -v npm >/dev/null || missing="$$missing nodejs npm";) \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi
endef

# Installs the Debian packages that are missing.
deps:
	$(call install_missing,$(DEB_PACKAGES))

# The browser tests' needs: Debian's Chromium (never a downloaded one), a
# font with Chinese glyphs for the apps' names, Node.js and npm if the
# machine has none, and playwright-core as pinned in test/e2e's lock file.
deps-e2e: deps
	$(call install_missing,$(E2E_PACKAGES),npm)
	cd test/e2e && npm ci --no-audit --no-fund

# Sub-makes, so that nothing is built before deps has installed llhttp.
run: deps
	$(MAKE) sse-server
	./sse-server

# The one soak (20 s of votes past 200 stalled subscribers) runs beside the
# rest of the suite: it waits far more than it works. Its report follows
# the suite's; make test fails if either does.
SOAK := *never read while votes flow*
test: deps
	$(MAKE) -j$(JOBS) $(TEST_SERVER) $(TEST_BIN) build/clock_ahead.so build/fail_fsync.so
	@export SSE_SERVER=./$(TEST_SERVER); log=$$(mktemp); \
	./$(TEST_BIN) -tc='$(SOAK)' >$$log 2>&1 & soak=$$!; \
	./$(TEST_BIN) -tce='$(SOAK)'; rest=$$?; \
	wait $$soak; soaked=$$?; cat $$log; rm -f $$log; \
	[ $$rest -eq 0 ] && [ $$soaked -eq 0 ]

# One sse-server per core on :8080 (SO_REUSEPORT), all in front of one
# redis-server of our own: its config, unix socket, append-only file and log
# in build/cluster (appendfsync everysec: see the README's "Scaling out").
# One admin token for all (SSE_ADMIN_TOKEN, else a random one, printed).
# Ctrl-C stops every process by PID.
CLUSTER := build/cluster
run-cluster: deps
	$(MAKE) sse-server
	@mkdir -p $(CLUSTER)
	@printf 'port 0\nunixsocket %s/redis.sock\nunixsocketperm 700\ndir %s\nappendonly yes\nappendfsync everysec\nsave ""\n' \
	  "$$PWD/$(CLUSTER)" "$$PWD/$(CLUSTER)" >$(CLUSTER)/redis.conf
	@token=$${SSE_ADMIN_TOKEN:-$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}; pids=; \
	trap 'exit 0' INT TERM; trap 'kill $$pids 2>/dev/null; wait; echo "run-cluster: stopped"' EXIT; \
	redis-server $(CLUSTER)/redis.conf >$(CLUSTER)/redis.log 2>&1 & pids=$$!; \
	for i in $$(seq 50); do [ -S $(CLUSTER)/redis.sock ] && break; sleep 0.1; done; \
	[ -S $(CLUSTER)/redis.sock ] || { echo "redis-server did not start: see $(CLUSTER)/redis.log"; exit 1; }; \
	for i in $$(seq $$(nproc)); do \
	  SSE_ADMIN_TOKEN=$$token ./sse-server --reuse-port --redis $(CLUSTER)/redis.sock --db $(CLUSTER)/sse-$$i.db & pids="$$pids $$!"; \
	done; \
	sleep 0.5; echo "run-cluster: $$(nproc) processes on http://127.0.0.1:8080, one Redis ($(CLUSTER)/redis.sock); admin token $$token"; \
	wait

# The cluster test (test/cluster/cluster.py): network namespaces as machines,
# Redis's bytes delayed by a relay of our own, faults, and a checker of what
# the clients saw. Needs CAP_NET_ADMIN (root), and says so in one line without it.
build/cluster-relay: test/cluster/relay.cpp
	@mkdir -p build
	$(CXX) -std=c++20 -Wall -Wextra -Werror $(REL_OPT) -o $@ $<

test-cluster: deps
	$(MAKE) sse-server build/cluster-relay
	python3 test/cluster/cluster.py

# The peers the benchmark measures us against, and what drives them.
deps-bench: deps
	$(call install_missing,nginx-light libnginx-mod-nchan python3 valgrind,npm)
	@# Debian starts nginx as a service when it installs it: the benchmark runs its own.
	@if command -v systemctl >/dev/null; then systemctl stop nginx 2>/dev/null || true; fi
	cd bench/node-reference && npm ci --no-audit --no-fund

bench: deps-bench
	$(MAKE) sse-server bench/ssefan bench/floor
	bench/run.sh

# libFuzzer comes with clang; its runtime with Debian's libclang-rt-14-dev.
FUZZ_SECONDS ?= 60
FUZZ_OPT := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

deps-fuzz: deps
	$(call install_missing,clang libclang-rt-14-dev)

build/fuzz/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_OPT) -fsanitize=fuzzer-no-link -I$(LLHTTP_INC) -c -o $@ $<

build/fuzz/fuzz_request: test/fuzz/fuzz_request.cpp server.cpp $(HEADERS) $(call llhttp_o,fuzz)
	clang++ -std=c++20 -Wall -Wextra $(FUZZ_OPT) -fsanitize=fuzzer -I$(LLHTTP_INC) -Ibuild/lua -o $@ test/fuzz/fuzz_request.cpp \
	  $(call llhttp_o,fuzz) -lsqlite3 -lhiredis -pthread

# Replays every input that ever crashed it (test/fuzz/regressions), then
# explores from the seed corpus for FUZZ_SECONDS. A crash stops it, saved
# under build/fuzz/ for a regression file.
fuzz: deps deps-fuzz
	$(MAKE) build/fuzz/fuzz_request
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_request -runs=0 test/fuzz/regressions
	build/fuzz/fuzz_request -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/ build/fuzz/corpus test/fuzz/corpus

e2e: deps-e2e
	$(MAKE) sse-server
	cd test/e2e && npm test

clean:
	rm -rf build sse-server bench/ssefan bench/floor test/e2e/node_modules test/e2e/screenshots
