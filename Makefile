# meshbuy build.  `make` builds bin/; `make test` builds a sanitized tree and
# runs every suite; `make demo` runs one order end to end.  Binaries are
# discovered from folders, tests from file names: adding a module or a test
# never needs an edit here.
#
# Packages first: every compile waits (order-only) for a stamp that `ops/deps`
# leaves once the Debian packages are in, so `make -jN` in a fresh clone
# installs before it compiles.  `make` needs the build profile only (compilers
# and -dev packages, `ops/deps --build`); test, lint, fuzz, valgrind, bench and
# demo need the full one (`ops/deps --all`: redis, kcat, clang, shellcheck...).

CC       ?= cc
PKGS     := rdkafka jansson hiredis openssl libevent
WARN     := -Wall -Wextra -Werror -Wformat=2 -Wstrict-prototypes -Wwrite-strings \
            -Wno-missing-field-initializers
# CFLAGS is yours (make CFLAGS=-O0): what the build needs is appended whatever it says.
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -Ilib -Iworker -MMD -MP

# pkg-config runs when a link first needs it (after the deps stamp), not when the
# Makefile is read: on a fresh machine the packages are not there yet.  Once per make.
pkg_libs = $(or $(shell pkg-config --libs $(PKGS) 2>/dev/null),$(error pkg-config --libs $(PKGS) failed: run ops/deps --build))
PKG_LIBS = $(eval PKG_LIBS := $$(call pkg_libs))$(PKG_LIBS)
LDLIBS   = $(PKG_LIBS) -lm

# The package stamps (ops/deps is idempotent; a stamp only saves re-checking).
DEPS_BUILD := build/.deps-build.ok
DEPS_ALL   := build/.deps-all.ok

# SAN=1: AddressSanitizer + UndefinedBehaviorSanitizer, in its own tree.
ifeq ($(SAN),1)
O        ?= build/san
# MB_CHECK_SPLIT: the worker proves every split checkpoint's dirty marks (mb_saga.c).
override CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
                    -DMB_CHECK_SPLIT
override LDFLAGS += -fsanitize=address,undefined
else
O        ?= build/rel
endif
BIN      ?= $(if $(filter 1,$(SAN)),$(O)/bin,bin)

LIB_SRC    := $(wildcard lib/*.c)
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c worker/steps/*.c))
LIB_OBJ    := $(LIB_SRC:%.c=$(O)/%.o)
WORKER_OBJ := $(WORKER_SRC:%.c=$(O)/%.o)
LIB_A      := $(O)/libmeshbuy.a
WORKER_A   := $(O)/libworker.a
# The sagas without the engine: definitions, steps, the shared state-document rewrites and
# the check driver (meshctl links these, not the worker).
STEPS_SRC  := $(wildcard worker/steps/*.c) $(addprefix worker/,mb_sagadef.c mb_sagadoc.c mb_step.c mb_check.c)
STEPS_A    := $(O)/libsteps.a

# binary name -> its folder
PROGS := meshworker:worker meshbuy:producer cloudsim:ops/cloudsim \
         devkafka:ops/devkafka meshctl:ops/meshctl meshbench:ops/bench
prog_dir  = $(word 2,$(subst :, ,$(filter $(1):%,$(PROGS))))
prog_src  = $(if $(filter worker,$(call prog_dir,$(1))),worker/main.c,$(wildcard $(call prog_dir,$(1))/*.c))
BINS := $(foreach p,$(PROGS),$(if $(call prog_src,$(word 1,$(subst :, ,$(p)))),$(BIN)/$(word 1,$(subst :, ,$(p)))))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)

# Every object of this tree, for its header dependencies (.d next to the .o, wherever O is).
PROG_OBJ := $(foreach p,$(PROGS),$(patsubst %.c,$(O)/%.o,$(call prog_src,$(word 1,$(subst :, ,$(p))))))
ALL_OBJ  := $(LIB_OBJ) $(WORKER_OBJ) $(PROG_OBJ) $(UNIT_SRC:%.c=$(O)/%.o)

.PHONY: all test asan units bench demo lint fuzz valgrind clean deps
all: $(BINS)

# The version every binary prints (--version): `git describe` of this tree, "dev" without git.
# Only lib/mb_version.c gets it, and a stamp rewritten when it changes recompiles that file.
MB_VERSION := $(or $(shell git describe --always --dirty 2>/dev/null),dev)
VERSION_STAMP := $(O)/.version
$(shell mkdir -p $(O) && [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = "$(MB_VERSION)" ] || \
    printf '%s' "$(MB_VERSION)" >$(VERSION_STAMP))
$(O)/lib/mb_version.o: $(VERSION_STAMP)
$(O)/lib/mb_version.o: override CFLAGS += -DMB_VERSION='"$(MB_VERSION)"'

$(O)/%.o: %.c | $(DEPS_BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(WORKER_A): $(WORKER_OBJ)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^
$(STEPS_A): $(STEPS_SRC:%.c=$(O)/%.o)
	@mkdir -p $(dir $@); rm -f $@; ar rcs $@ $^

# Only the worker links the worker objects; meshctl links the sagas without the engine.
uses_worker = $(filter meshworker,$(1))
uses_steps  = $(filter meshctl,$(1))
# The worker and cloudsim make and free millions of small JSON objects while thousands of
# jobs stay in memory; there glibc's malloc took a quarter of the worker's CPU (bin searches,
# consolidation), and with jemalloc (Redis's allocator) the worker's CPU per saga fell from
# 3.7 to 2.8 ms (ops/bench/README.md).  The sanitizers bring their own allocator.
# `make MALLOC_LIBS=` links glibc's instead.
ifeq ($(SAN),1)
MALLOC_LIBS ?=
else
MALLOC_LIBS ?= -ljemalloc
endif
uses_malloc = $(filter meshworker cloudsim,$(1))
define prog_rule
$(BIN)/$(1): $(patsubst %.c,$(O)/%.o,$(call prog_src,$(1))) $(if $(call uses_worker,$(1)),$(WORKER_A)) $(if $(call uses_steps,$(1)),$(STEPS_A)) $(LIB_A) | $(DEPS_BUILD)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $(if $(call uses_malloc,$(1)),$$(MALLOC_LIBS))
endef
$(foreach p,$(PROGS),$(eval $(call prog_rule,$(word 1,$(subst :, ,$(p))))))

$(O)/tests/%: $(O)/tests/unit/%.o $(WORKER_A) $(LIB_A) | $(DEPS_BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Remade when ops/deps (its package lists) changes.
$(DEPS_BUILD): ops/deps
	ops/deps --build
	@mkdir -p $(dir $@); touch $@
$(DEPS_ALL): ops/deps
	ops/deps --all
	@mkdir -p $(dir $@); touch $@

# Install (or check) the full profile now, stamp or not.
deps:
	ops/deps --all
	@mkdir -p $(dir $(DEPS_ALL)); touch $(DEPS_ALL)

# The one test command: sanitized build, unit then component suites.
test: | $(DEPS_ALL)
	$(MAKE) SAN=1 all units
	tests/run --bin build/san/bin --units build/san/tests

asan: test

units: $(UNITS)
# The unit objects are intermediate to make: keep them (and what their .d files say).
.SECONDARY: $(UNIT_SRC:%.c=$(O)/%.o)

bench: all | $(DEPS_ALL)
	ops/bench/run --bin bin

demo: all | $(DEPS_ALL)
	ops/demo --bin bin

# libFuzzer (clang): each tests/fuzz/fuzz_NAME.c is built with the library (plus
# FUZZ_EXTRA) and run for FUZZ_SECONDS from build/fuzz/corpus/NAME and its seed
# directories FUZZ_SEEDS_NAME; a crash leaves build/fuzz/NAME-crash-* and fails (the run's
# output is kept in build/fuzz/NAME.log).
# `make fuzz-NAME` runs one.
FUZZ_SECONDS ?= 60
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_EXTRA := ops/meshctl/mc_edit.c
FUZZ_SEEDS_order    := tests/fixtures/order/valid tests/fixtures/order/invalid
FUZZ_SEEDS_event    := tests/fixtures/mesh-status/valid tests/fixtures/mesh-status/invalid
FUZZ_SEEDS_kafka    := tests/fixtures/order/valid tests/fixtures/order/invalid
FUZZ_SEEDS_dlq_edit := tests/fuzz/seeds/dlq_edit tests/fixtures/order/valid \
                       tests/fixtures/order/invalid
FUZZ_SEEDS_json_dump := tests/fixtures/order/valid tests/fixtures/mesh-status/valid \
                        tests/fixtures/mesh-status/invalid
FUZZ_SEEDS_jscan := tests/fuzz/seeds/jscan tests/fixtures/order/valid \
                    tests/fixtures/mesh-status/invalid
FUZZ_SEEDS_http1 := tests/fuzz/seeds/http1
FUZZ_SEEDS_sign  := tests/fuzz/seeds/sign
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -Ilib -Iworker -Iops/meshctl

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC) $(FUZZ_EXTRA) $(wildcard lib/*.h ops/meshctl/*.h) | $(DEPS_ALL)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(FUZZ_EXTRA) $(LIB_SRC) -o $@ $(LDLIBS)

# One after the other (not in parallel): each gets the cores for its FUZZ_SECONDS.  A failure
# is named again at the end with the artifact its run wrote (the path libFuzzer prints, not
# the newest file: an earlier run's may be newer than a run that wrote none) in base64
# (`base64 -d` gives the input back), as a CI log's tail may be all there is to reproduce it.
fuzz: $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
	@failed=; for t in $(FUZZ_NAMES); do \
	  $(MAKE) --no-print-directory fuzz-$$t || failed="$$failed $$t"; \
	done; \
	for t in $$failed; do \
	  echo "fuzz $$t: FAILED (exit $$(cat build/fuzz/$$t.rc))"; \
	  grep -E '^(SUMMARY: |==[0-9]+== ?ERROR: |.* in LLVMFuzzerTestOneInput )' build/fuzz/$$t.log | \
	    head -n 4 | sed "s/^/fuzz $$t: /"; \
	  for a in $$(sed -n 's/.*Test unit written to //p' build/fuzz/$$t.log | tail -n 1); do \
	    echo "fuzz $$t: artifact $$a ($$(wc -c <$$a) bytes; base64 of its first 4 KB):"; \
	    head -c 4096 $$a | base64 -w 0; echo; \
	  done; \
	done; test -z "$$failed"

fuzz-%: build/fuzz/fuzz_%
	@mkdir -p build/fuzz/corpus/$*
	@echo "fuzz $*: $(FUZZ_SECONDS)s"
	@{ $< -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/$*- \
	    build/fuzz/corpus/$* $(FUZZ_SEEDS_$*) 2>&1; echo $$? >build/fuzz/$*.rc; } | \
	  tee build/fuzz/$*.log; exit "$$(cat build/fuzz/$*.rc)"

lint: | $(DEPS_ALL)
	ops/lint

# The unit suites under valgrind's memcheck (unsanitized build; children not traced).
valgrind: | $(DEPS_ALL)
	$(MAKE) O=build/vg BIN=build/vg/bin all units
	@set -e; for t in build/vg/tests/test_*; do \
	  echo "valgrind $$t"; \
	  MB_BIN=$(CURDIR)/build/vg/bin valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite $$t >/dev/null; \
	done

clean:
	rm -rf build bin

-include $(ALL_OBJ:.o=.d)
