# dsq -- one non-recursive Makefile.
#
#   make            build build/dsq (and libdsq.a)
#   make test       build and run the test suite (tests/run); T=name runs
#                   only the tests whose name contains it
#   make sanitize   the suite under AddressSanitizer + UBSan together (CI)
#   make asan       the suite under AddressSanitizer alone
#   make ubsan      the suite under UndefinedBehaviorSanitizer alone
#   make tsan       the suite under ThreadSanitizer (CI)
#   make demo       end-to-end job on a generated tiny model
#   make bench      benchmarks (bench/run.sh, bench/run.d/*.sh)
#   make calib-table  calibrated 4-bit results on ../shared -> docs/CALIB_RESULTS.md
#   make gguf-table   GGUF presets against llama.cpp's files, measured by llama.cpp -> docs/GGUF_RESULTS.md
#   make fuzz       libFuzzer on every parser (clang), FUZZ_SECONDS each, FUZZ=target
#   make fuzz-driver  one plain replay program per fuzz target
#   make fuzz-corpus  regenerate the seed files of tests/fuzz/corpus/
#   make clean      remove every build folder
#
# Variables: SIMD=none forces the scalar reference kernels everywhere;
# SAN=asan|ubsan|tsan|asan,ubsan builds with those sanitizers (what the
# targets above set).  Each set of them builds in its own folder -- build/,
# build-nosimd/, build-asan/, build-asan-ubsan/, build-nosimd-tsan/ ... -- so
# `make SIMD=none test` after `make test` never links the other's objects.
# BUILD=dir picks a folder by hand.  Anything else that changes objects (CC,
# OPT, CFLAGS, LDFLAGS) is recorded in $(BUILD)/flags, and a change rebuilds
# that folder.
#
# Dependencies come from Debian packages and are found with pkg-config; a
# missing one is installed with apt-get when run as root, otherwise the exact
# command is printed.

CC      ?= cc
PKGS    := zlib libarchive libcjson libxxhash libpcre2-8
DEBS    := zlib1g-dev libarchive-dev libcjson-dev libxxhash-dev libpcre2-dev pkg-config python3
comma   := ,

# Sanitizers by name.  float-cast-overflow: gcc leaves it out of
# -fsanitize=undefined, and it is what catches a JSON number converted to an
# integer without a range check.  -fno-sanitize-recover: the first UB report
# ends the program, so a test cannot pass over one.  TSan cannot be combined
# with ASan, and needs -fsanitize=thread on the link as well (LDFLAGS).
SAN_asan  := -fsanitize=address
SAN_ubsan := -fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
SAN_tsan  := -fsanitize=thread
SAN_NAMES := $(subst $(comma), ,$(SAN))
ifneq ($(filter-out asan ubsan tsan,$(SAN_NAMES)),)
$(error SAN=$(SAN): the sanitizers are asan, ubsan and tsan, comma-separated)
endif
ifneq ($(and $(filter tsan,$(SAN_NAMES)),$(filter asan,$(SAN_NAMES))),)
$(error SAN=$(SAN): ThreadSanitizer cannot be combined with AddressSanitizer)
endif
# -fno-omit-frame-pointer: whole stacks in the reports.
SAN_FLAGS = $(foreach s,$(SAN_NAMES),$(SAN_$(s))) $(if $(SAN),-fno-omit-frame-pointer)

# One build folder per set of flags that change objects (see the top).
BUILD   ?= build$(if $(filter none,$(SIMD)),-nosimd)$(if $(SAN),-$(subst $(comma),-,$(SAN)))

# -O2 -g: optimised but debuggable.  No -ffast-math: the forward pass and the
# quantizers must round exactly as written (NaN checks, RNE ties).  -O1 under
# the sanitizers: reports stay close to the source (and -O2 is no faster
# under TSan, whose checks on every load and store dominate).
OPT     ?= $(if $(SAN),-O1 -g,-O2 -g)
# -Wno-format-truncation: paths and messages are cut to fixed buffers on purpose.
WARN    := -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter -Wno-format-truncation
CFLAGS  += -std=c11 $(OPT) $(WARN) $(SAN_FLAGS) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
           -Iinclude -Icommon -I. -fno-strict-aliasing
ifeq ($(SIMD),none)
CFLAGS  += -DDSQ_NO_SIMD
endif
LDFLAGS += $(SAN_FLAGS)
# -MMD -MP: the compiler writes each object's header dependencies next to it
# (.d, included below); -MP adds an empty rule per header, so deleting or
# renaming a header does not stop the build.
DEPFLAGS := -MMD -MP
# For a program compiled and linked in one step: its .d is <program>.d.
DEPFLAGS_PROG = -MMD -MP -MF $@.d -MT $@

# pkg-config lookups are deferred (=) so a fresh machine can install first.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# -ldl: tests/test_ggml_ref.c opens llama.cpp's prebuilt libggml-base.so.
LDLIBS     = $(PKG_LIBS) -lpthread -lm -ldl

LIB_SRC  := $(sort $(wildcard common/*.c formats/*.c quant/*.c calib/*.c verify/*.c pipeline/*.c synth/*.c convert/*.c))
LIB_SRC  := $(filter-out convert/main.c,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
# Fuzz targets (tests/fuzz/<target>.c) are linked into the runner too, each
# renamed to fuzz_<target>, so tests/test_fuzz_replay.c can replay the corpus.
FUZZ_SRC     := $(filter-out tests/fuzz/fuzz_util.c tests/fuzz/gen_corpus.c tests/fuzz/driver.c,$(sort $(wildcard tests/fuzz/*.c)))
FUZZ_TARGETS := $(basename $(notdir $(FUZZ_SRC)))
TEST_OBJ += $(FUZZ_TARGETS:%=$(BUILD)/obj/tests/fuzz/%.o) $(BUILD)/obj/tests/fuzz/fuzz_util.o

# The flags of this folder's objects, rewritten only when they change, so
# that every object and program depending on it is rebuilt then (git's
# GIT-CFLAGS).
FLAGS_NOW := $(CC) $(CFLAGS) $(LDFLAGS)

.PHONY: all test sanitize asan ubsan tsan demo bench calib-table gguf-table clean deps fuzz fuzz-bin fuzz-corpus fuzz-driver FORCE
all: deps $(BUILD)/dsq

deps:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	: "python3 runs tests/ct_ref.py, the independent compressed-tensors reader: installed when we can, else those checks skip"; \
	command -v python3 >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && missing="$$missing python3"; }; \
	if [ -n "$$missing" ]; then \
	  echo "missing build dependencies:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: apt-get install -y $(DEBS)"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null || exit 1; \
	  else \
	    echo "run as root:  apt-get update && apt-get install -y $(DEBS)"; exit 1; \
	  fi; \
	fi

$(BUILD)/flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/flags | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(DEPFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/libdsq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dsq: $(BUILD)/obj/convert/main.o $(BUILD)/libdsq.a $(BUILD)/flags
	$(CC) $(CFLAGS) -o $@ $(filter %.o %.a,$^) $(LDFLAGS) $(LDLIBS)

# Every `TEST(test_x)` line in tests/*.c becomes one entry of the runner.
$(BUILD)/gen/tests_list.h: $(TEST_SRC)
	@mkdir -p $(dir $@)
	@{ printf '#define TESTS \\\n'; \
	   grep -h -o '^TEST([a-z0-9_]*)' $(TEST_SRC) | sed 's/^TEST(\(.*\))/    T(\1) \\/'; \
	   printf '\n'; } > $@

$(BUILD)/obj/tests/run.o: $(BUILD)/gen/tests_list.h
$(BUILD)/obj/tests/run.o: CFLAGS += -I$(BUILD)/gen

$(BUILD)/tests/run: $(TEST_OBJ) $(BUILD)/libdsq.a $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o %.a,$^) $(LDFLAGS) $(LDLIBS)

# Sanitized suites: every report, from the runner or from a dsq it starts,
# goes to $(BUILD)/san-report.<pid> (log_path) instead of into output that a
# test captured and need not show (a command expected to fail would hide
# one), and any such file fails the suite.  (gcc's UBSan linked with ASan
# still writes to stderr; `make ubsan` alone honours log_path.)
# Under TSan the trained models of ../shared are left out (DSQ_SHARED points
# at nothing; those tests count as skipped): with every load and store
# checked, GPTQ on them runs ~20 times slower, which takes the suite from
# ~3 to ~20 minutes on two busy cores, and the generated models take the
# same threaded paths.  TSAN_SHARED=../shared puts them back.
TSAN_SHARED ?= $(BUILD)/no-shared
SAN_ENV_asan  := ASAN_OPTIONS
SAN_ENV_ubsan := UBSAN_OPTIONS
SAN_ENV_tsan  := TSAN_OPTIONS
ifneq ($(SAN),)
SAN_LOG   = $(abspath $(BUILD))/san-report
TEST_ENV  = $(foreach s,$(SAN_NAMES),$(SAN_ENV_$(s))="log_path=$(SAN_LOG) $$$(SAN_ENV_$(s))") \
            $(if $(filter tsan,$(SAN_NAMES)),DSQ_SHARED=$(TSAN_SHARED))
SAN_CHECK = ; rc=$$?; for f in $(SAN_LOG).*; do [ -f "$$f" ] && { cat "$$f"; echo "sanitizer report: $$f"; rc=1; }; done; exit $$rc
endif

# The runner and every dsq it starts (DSQ_BIN) come from the same folder, so
# a sanitized suite checks the command line's processes too.
test: all $(BUILD)/tests/run
	@mkdir -p $(BUILD)/tmp
	@rm -f $(BUILD)/san-report.*
	$(TEST_ENV) DSQ_BIN=$(BUILD)/dsq DSQ_TEST_TMP=$(BUILD)/tmp $(BUILD)/tests/run $(T)$(SAN_CHECK)

# The suite under sanitizers, each set rebuilt in its own folder.
# `sanitize` runs ASan and UBSan in one pass (one suite run in CI).
san_vars = SAN=$(1) BUILD=$(BUILD)-$(subst $(comma),-,$(1))
sanitize:
	$(MAKE) --no-print-directory $(call san_vars,asan$(comma)ubsan) test
asan ubsan tsan:
	$(MAKE) --no-print-directory $(call san_vars,$@) test

demo: all
	@sh tools/demo.sh $(BUILD)/dsq

bench: all
	@sh bench/run.sh $(BUILD)/dsq

# rtn / mse / awq / gptq x presets on ../shared's tiny-v32 -> docs/CALIB_RESULTS.md
calib-table: all
	@sh tools/calib_table.sh $(BUILD)/dsq

gguf-table: all llama
	@sh tools/gguf_table.sh $(BUILD)/dsq $(LLAMA_DIR)

# Every build folder, whatever flags made it.
clean:
	rm -rf build build-*

# ---- benchmarks (bench/*.c, each a program linked against libdsq) ----------
$(BUILD)/bench/%: bench/%.c $(BUILD)/libdsq.a $(BUILD)/flags | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS_PROG) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)

# ---- fuzzing (tests/fuzz/README.md) ------------------------------------------
# Replay build: the entry point LLVMFuzzerTestOneInput of tests/fuzz/X.c
# becomes fuzz_X, so every target links into tests/run side by side.
$(BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c $(BUILD)/flags | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(DEPFLAGS) $(PKG_CFLAGS) -DLLVMFuzzerTestOneInput=fuzz_$* -c $< -o $@

$(BUILD)/gen/fuzz_list.h: $(FUZZ_SRC)
	@mkdir -p $(dir $@)
	@{ printf '#define FUZZ_TARGETS \\\n'; \
	   for t in $(FUZZ_TARGETS); do printf '    F(%s) \\\n' $$t; done; printf '\n'; } > $@

$(BUILD)/obj/tests/test_fuzz_replay.o: $(BUILD)/gen/fuzz_list.h
$(BUILD)/obj/tests/test_fuzz_replay.o: CFLAGS += -I$(BUILD)/gen

# libFuzzer build: clang, the library itself instrumented for coverage
# (-fsanitize=fuzzer-no-link) and checked by ASan + UBSan; one binary per
# target in build-fuzz/fuzz/.  -Wno-unknown-warning-option: clang does not
# know gcc's -Wno-format-truncation.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ         ?= $(FUZZ_TARGETS)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

fuzz-bin: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/obj/tests/fuzz/fuzz_util.o $(BUILD)/libdsq.a $(BUILD)/flags
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(CC) $(CFLAGS) $(DEPFLAGS_PROG) $(PKG_CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/obj/tests/fuzz/fuzz_util.o \
	  $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)

# Each target runs FUZZ_SECONDS with its checked-in corpus (read only) and a
# working corpus in build-fuzz/corpus/; inputs that crash, leak or time out
# are copied into tests/fuzz/corpus/<target>/ so `make test` replays them.
# Scratch files go to a folder of their own (on tmpfs when there is one),
# removed after each target even when a crash skipped the target's cleanup.
fuzz: deps
	@printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' | \
	  $(FUZZ_CC) -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null || { \
	  echo "libFuzzer not found: '$(FUZZ_CC) -fsanitize=fuzzer' must link."; \
	  echo "Debian/Ubuntu:  apt-get install clang libclang-rt-dev   (or clang-14 libclang-rt-14-dev)"; exit 1; }
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g" \
	  SAN_FLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN) -Wno-unknown-warning-option" LDFLAGS="$(FUZZ_SAN)" fuzz-bin
	@found=""; for t in $(FUZZ); do \
	  mkdir -p build-fuzz/corpus/$$t build-fuzz/crash/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/dsq-fuzz-run.XXXXXX"); [ -d /dev/shm ] && [ -w /dev/shm ] && \
	    { rmdir "$$tmp"; tmp=$$(mktemp -d /dev/shm/dsq-fuzz-run.XXXXXX); }; \
	  DSQ_FUZZ_TMP=$$tmp build-fuzz/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
	    -dict=tests/fuzz/fuzz.dict -artifact_prefix=build-fuzz/crash/$$t/ -print_final_stats=1 \
	    build-fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>build-fuzz/$$t.log; \
	  rm -rf "$$tmp"; \
	  grep -E '^(stat::number_of_executed_units|stat::new_units_added|SUMMARY)' build-fuzz/$$t.log; \
	  for f in build-fuzz/crash/$$t/*; do \
	    [ -f "$$f" ] || continue; known=""; \
	    for c in tests/fuzz/corpus/$$t/*; do cmp -s "$$f" "$$c" && known="$$c"; done; \
	    if [ -z "$$known" ]; then cp "$$f" tests/fuzz/corpus/$$t/; known=tests/fuzz/corpus/$$t/$${f##*/}; fi; \
	    rm -f "$$f"; found="$$found $$known"; \
	  done; \
	done; \
	if [ -n "$$found" ]; then echo "failing inputs (logs in build-fuzz/*.log):"; \
	  for f in $$found; do echo "  $$f"; done; exit 1; fi

# One plain program per target (tests/fuzz/driver.c): replay files by hand.
# driver.c comes first: with two sources the .d holds the last one's headers,
# and driver.c includes none of ours.
fuzz-driver: $(FUZZ_TARGETS:%=$(BUILD)/fuzz-driver/%)

$(BUILD)/fuzz-driver/%: tests/fuzz/%.c tests/fuzz/driver.c $(BUILD)/obj/tests/fuzz/fuzz_util.o $(BUILD)/libdsq.a $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS_PROG) $(PKG_CFLAGS) -o $@ tests/fuzz/driver.c $< $(BUILD)/obj/tests/fuzz/fuzz_util.o \
	  $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)

# Seeds: generated from synthetic checkpoints (and ../shared when present).
$(BUILD)/gen_corpus: tests/fuzz/gen_corpus.c $(BUILD)/obj/tests/fuzz/fuzz_util.o $(BUILD)/libdsq.a $(BUILD)/flags
	$(CC) $(CFLAGS) $(DEPFLAGS_PROG) $(PKG_CFLAGS) -o $@ $< $(BUILD)/obj/tests/fuzz/fuzz_util.o $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)

fuzz-corpus: $(BUILD)/gen_corpus
	$(BUILD)/gen_corpus tests/fuzz/corpus

# ---- llama.cpp harness (tests/llama/) ----------------------------------------
# tests/llama/fetch.sh unpacks llama.cpp's prebuilt CPU libraries and the
# exact source they were built from (for llama.h and gguf.h) into
# $(BUILD)/llama; the logits driver and the ggml GGUF tool are built against
# them there, with an rpath to the libraries.  Exit 77 from fetch.sh (npm
# unreachable) is not an error: the tests that need llama.cpp skip.
LLAMA_DIR  := $(BUILD)/llama
LLAMA_LIBS  = $(abspath $(LLAMA_DIR))/bins/linux-x64
LLAMA_INC   = -I$(LLAMA_DIR)/llama.cpp/include -I$(LLAMA_DIR)/llama.cpp/ggml/include
LLAMA_LINK  = -L$(LLAMA_LIBS) -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so \
              -Wl,-rpath,$(LLAMA_LIBS) -ldl -lm

.PHONY: llama
llama:
	@rc=0; sh tests/llama/fetch.sh $(LLAMA_DIR) || rc=$$?; \
	if [ $$rc = 0 ]; then $(MAKE) --no-print-directory $(LLAMA_DIR)/llama_logits $(LLAMA_DIR)/ggml_gguf $(LLAMA_DIR)/llama_quant; \
	elif [ $$rc = 77 ]; then echo "llama.cpp not reachable (npm): its tests will be skipped"; \
	else exit $$rc; fi

$(LLAMA_DIR)/llama_logits $(LLAMA_DIR)/ggml_gguf $(LLAMA_DIR)/llama_quant: $(LLAMA_DIR)/%: tests/llama/%.c
	$(CC) -std=c11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE $(LLAMA_INC) -o $@ $< $(LLAMA_LINK)

test: llama

# Header dependencies written by the compiler (DEPFLAGS); absent before the
# first build, when everything is built anyway.
-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/convert/main.d \
  $(wildcard $(BUILD)/bench/*.d $(BUILD)/fuzz/*.d $(BUILD)/fuzz-driver/*.d $(BUILD)/gen_corpus.d)
