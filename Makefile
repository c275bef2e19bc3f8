# dsq -- one non-recursive Makefile.
#
#   make            build build/dsq (and libdsq.a)
#   make test       build and run the test suite (tests/run)
#   make sanitize   rebuild with AddressSanitizer + UBSan and run the suite
#   make demo       end-to-end job on a generated tiny model
#   make bench      benchmarks (see bench/README.md)
#   make SIMD=none  force the scalar reference kernels everywhere
#
# Dependencies come from Debian packages and are found with pkg-config; a
# missing one is installed with apt-get when run as root, otherwise the exact
# command is printed.

CC      ?= cc
BUILD   ?= build
PKGS    := zlib libarchive libcjson libxxhash libpcre2-8
DEBS    := zlib1g-dev libarchive-dev libcjson-dev libxxhash-dev libpcre2-dev pkg-config

# -O2 -g: optimised but debuggable.  No -ffast-math: the forward pass and the
# quantizers must round exactly as written (NaN checks, RNE ties).
OPT     ?= -O2 -g
# -Wno-format-truncation: paths and messages are cut to fixed buffers on purpose.
WARN    := -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter -Wno-format-truncation
CFLAGS  += -std=c11 $(OPT) $(WARN) $(SAN) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
           -Iinclude -Icommon -I. -fno-strict-aliasing
ifeq ($(SIMD),none)
CFLAGS  += -DDSQ_NO_SIMD
endif
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# pkg-config lookups are deferred (=) so a fresh machine can install first.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS     = $(PKG_LIBS) -lpthread -lm

LIB_SRC  := $(sort $(wildcard common/*.c formats/*.c quant/*.c calib/*.c verify/*.c convert/*.c))
LIB_SRC  := $(filter-out convert/main.c,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
HDRS     := $(wildcard include/*.h common/*.h formats/*.h quant/*.h calib/*.h verify/*.h convert/*.h tests/*.h)

.PHONY: all test sanitize asan ubsan demo bench clean deps golden fuzz calib-table
all: deps $(BUILD)/dsq

deps:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	if [ -n "$$missing" ]; then \
	  echo "missing build dependencies:$$missing"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: apt-get install -y $(DEBS)"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null || exit 1; \
	  else \
	    echo "run as root:  apt-get update && apt-get install -y $(DEBS)"; exit 1; \
	  fi; \
	fi

$(BUILD)/obj/%.o: %.c $(HDRS) | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/libdsq.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dsq: $(BUILD)/obj/convert/main.o $(BUILD)/libdsq.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# Every `TEST(test_x)` line in tests/*.c becomes one entry of the runner.
$(BUILD)/gen/tests_list.h: $(TEST_SRC)
	@mkdir -p $(dir $@)
	@{ printf '#define TESTS \\\n'; \
	   grep -h -o '^TEST([a-z0-9_]*)' $(TEST_SRC) | sed 's/^TEST(\(.*\))/    T(\1) \\/'; \
	   printf '\n'; } > $@

$(BUILD)/obj/tests/run.o: $(BUILD)/gen/tests_list.h
$(BUILD)/obj/tests/run.o: CFLAGS += -I$(BUILD)/gen

$(BUILD)/tests/run: $(TEST_OBJ) $(BUILD)/libdsq.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

test: all $(BUILD)/tests/run
	@mkdir -p $(BUILD)/tmp
	DSQ_BIN=$(BUILD)/dsq DSQ_TEST_TMP=$(BUILD)/tmp $(BUILD)/tests/run $(T)

# The same suite under AddressSanitizer + UBSan, in its own build tree.
sanitize asan ubsan:
	$(MAKE) BUILD=build-san OPT="-O1 -g" SAN="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" test

demo: all
	@sh tools/demo.sh $(BUILD)/dsq

bench: all
	@sh bench/run.sh $(BUILD)/dsq

# rtn / mse / awq / gptq x presets on ../shared's tiny-v32 -> docs/CALIB_RESULTS.md
calib-table: all
	@sh tools/calib_table.sh $(BUILD)/dsq

# Tokenizer encode MB/s (bench/tok_bench.c); a standalone program linking libdsq.a.
$(BUILD)/bench/tok_bench: bench/tok_bench.c $(BUILD)/libdsq.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ bench/tok_bench.c $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)

clean:
	rm -rf build build-san

# ---- benchmarks (bench/*.c, each a program linked against libdsq) ----------
$(BUILD)/bench/%: bench/%.c $(BUILD)/libdsq.a $(wildcard bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)
$(BUILD)/bench/quant_bench: bench/quant_bench.c $(BUILD)/libdsq.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libdsq.a $(LDFLAGS) $(LDLIBS)
