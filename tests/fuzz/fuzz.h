/*
 * fuzz.h -- helpers shared by the fuzz targets in tests/fuzz/ (each file
 * defines LLVMFuzzerTestOneInput, the libFuzzer entry point) and by the
 * corpus generator.
 *
 * The same target source is built two ways:
 *   - `make fuzz`: with clang -fsanitize=fuzzer into build-fuzz/fuzz/<target>;
 *   - `make test`: with -DLLVMFuzzerTestOneInput=fuzz_<target> into the test
 *     runner, where tests/test_fuzz_replay.c feeds it every file of
 *     tests/fuzz/corpus/<target>/ (zstd's tests/fuzz/regression_driver.c).
 *
 * A target returns 0 for every input the library rejects cleanly.  An input
 * that breaks a documented promise (a successful parse whose result violates
 * the checks the parser claims to make, a quantizer outside its stated error
 * bound, a round trip that changes bytes) stops the process through
 * FUZZ_CHECK, which libFuzzer records as a crash like any sanitizer report.
 */
#ifndef DSQ_FUZZ_H
#define DSQ_FUZZ_H

#include "dsq.h"

#include <stddef.h>
#include <stdint.h>

/* Report a broken invariant: print where and abort(). */
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));
#define FUZZ_CHECK(cond)                                          \
    do {                                                          \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond);        \
    } while (0)

/* A per-process scratch folder, created on first use and removed at exit:
 * $DSQ_FUZZ_TMP if set, else /dev/shm (fsync is free on tmpfs), else $TMPDIR
 * or /tmp.  fuzz_dir(name) is a subfolder of it, one per target, so targets
 * sharing a process never see each other's files; the returned string stays
 * valid for the life of the process. */
const char *fuzz_tmpdir(void);
const char *fuzz_dir(const char *name);
/* Remove the scratch folder now (the replay test calls it; exit does too). */
void fuzz_cleanup(void);
/* dir + "/" + name in one of 8 rotating static buffers (copy it to keep it). */
const char *fuzz_path(const char *dir, const char *name);
/* Write n bytes to path (truncating); 0 on success. */
int fuzz_write(const char *path, const void *data, size_t n);

/* The small model shape every checkpoint target and seed uses: all roles
 * (indexer, dense and MoE layers, shared and routed experts, one MTP layer),
 * 16x16 FP8 blocks so edge blocks are partial in both directions. */
void fuzz_shape_config(dsq_config *c);
/* config.json text of fuzz_shape_config (cached; do not free). */
const char *fuzz_shape_json(void);
/* Write a synthetic checkpoint of that shape into dir (FP8 unless bf16). */
int fuzz_gen_ckpt(const char *dir, int n_shards, int bf16);

#endif
