# meshbuy build.  `make` builds bin/; `make test` builds a sanitized tree and
# runs every suite; `make demo` runs one order end to end.  Binaries are
# discovered from folders, tests from file names: adding a module or a test
# never needs an edit here.

CC       ?= cc
PKGS     := rdkafka jansson libcurl hiredis openssl libevent
WARN     := -Wall -Wextra -Werror -Wformat=2 -Wstrict-prototypes -Wwrite-strings \
            -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARN) -Ilib -Iworker -MMD -MP
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lrdkafka -ljansson -lcurl -lhiredis -lssl -lcrypto -levent) -lm

# SAN=1: AddressSanitizer + UndefinedBehaviorSanitizer, in its own tree.
ifeq ($(SAN),1)
O        ?= build/san
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
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

.PHONY: all test asan units bench demo lint fuzz valgrind clean deps deps-check
all: deps-check $(BINS)

$(O)/%.o: %.c
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
define prog_rule
$(BIN)/$(1): $(patsubst %.c,$(O)/%.o,$(call prog_src,$(1))) $(if $(call uses_worker,$(1)),$(WORKER_A)) $(if $(call uses_steps,$(1)),$(STEPS_A)) $(LIB_A)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(PROGS),$(eval $(call prog_rule,$(word 1,$(subst :, ,$(p))))))

$(O)/tests/%: $(O)/tests/unit/%.o $(WORKER_A) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

deps-check:
	@ops/deps --check >/dev/null 2>&1 || ops/deps

deps:
	ops/deps

# The one test command: sanitized build, unit then component suites.
test:
	$(MAKE) SAN=1 all units
	tests/run --bin build/san/bin --units build/san/tests

asan: test

units: $(UNITS)

bench: all
	ops/bench/run --bin bin

demo: all
	ops/demo --bin bin

# libFuzzer on the order parser (clang); FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p build/fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Ilib \
	  tests/fuzz/fuzz_order.c $(LIB_SRC) -o build/fuzz/fuzz_order $(LDLIBS)
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_order -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus \
	  tests/fixtures/order/valid tests/fixtures/order/invalid

lint:
	ops/lint

# The unit suites under valgrind's memcheck (unsanitized build; children not traced).
valgrind:
	$(MAKE) O=build/vg BIN=build/vg/bin all units
	@set -e; for t in build/vg/tests/test_*; do \
	  echo "valgrind $$t"; \
	  MB_BIN=$(CURDIR)/build/vg/bin valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite $$t >/dev/null; \
	done

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
