/*
 * ckpt_index.c -- fuzz target: model.safetensors.index.json.  A checkpoint
 * folder of the fuzz shape (fuzz.h) with two valid shards is generated once;
 * each input replaces its index and the folder is opened with
 * dsq_ckpt_open, which lists the shards from the index and cross-checks the
 * weight_map against the shard headers.
 *
 * Input: the index JSON.  A folder that opens must hold every generated
 * tensor exactly once, each in the shard its header came from.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *dir;
    static int n_expect = -1;
    if (!dir) {
        dir = fuzz_dir("ckpt_index");
        if (fuzz_gen_ckpt(dir, 2, 0)) abort();
        dsq_ckpt *ck;
        dsq_err err = {0};
        if (dsq_ckpt_open(&ck, dir, 0, &err)) {
            fprintf(stderr, "fuzz: %s\n", err.msg);
            abort();
        }
        n_expect = dsq_ckpt_n_tensors(ck);
        dsq_ckpt_close(ck);
    }
    if (fuzz_write(fuzz_path(dir, "model.safetensors.index.json"), data, size)) abort();
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    int rc = dsq_ckpt_open(&ck, dir, 0, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && ck == NULL && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(dsq_ckpt_n_tensors(ck) == n_expect);
    FUZZ_CHECK(dsq_ckpt_n_shards(ck) >= 1);
    for (int i = 0; i < n_expect; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        FUZZ_CHECK(dsq_ckpt_find(ck, t->name) == i);
        FUZZ_CHECK(t->shard >= 0 && t->shard < dsq_ckpt_n_shards(ck));
        FUZZ_CHECK(t->offset + t->nbytes <= dsq_ckpt_shard_size(ck, t->shard));
    }
    for (int i = 0; i < dsq_ckpt_n_warnings(ck); i++) FUZZ_CHECK(dsq_ckpt_warning(ck, i) != NULL);
    dsq_ckpt_close(ck);
    return 0;
}
