/*
 * test_weights.c -- dsq_weights over a checkpoint folder source: the vectorized
 * FP8-block and BF16 row paths give exactly the bytes of the reader's own
 * dequantization, for whole tensors and odd row ranges; bad ranges fail.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "pipeline/model.h"

#include <stdlib.h>

static int compare_all(const char *dir) {
    dsq_ckpt *ck;
    dsq_src *src;
    dsq_err err = {0};
    dsq_weights w;
    if (dsq_ckpt_open(&ck, dir, 0, &err)) return -1;
    if (dsq_model_open(&src, &w, dir, &err)) {
        dsq_ckpt_close(ck);
        return -1;
    }
    int bad = 0, n2 = 0;
    for (int i = 0; i < dsq_ckpt_n_tensors(ck) && !bad; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        if (t->n_dims != 2 || t->role == DSQ_R_SCALE) continue;
        int id = w.find(w.ctx, t->name);
        if (id < 0) return -1;
        n2++;
        int64_t rows = t->shape[0], cols = t->shape[1];
        int64_t r0s[] = {0, 1, rows / 2, rows - 1}, r1s[] = {rows, rows - 1 > 1 ? rows - 1 : rows, rows, rows};
        float *a = malloc(sizeof(float) * (size_t)(rows * cols)), *b = malloc(sizeof(float) * (size_t)(rows * cols));
        for (int k = 0; k < 4 && !bad; k++) {
            int64_t r0 = r0s[k], r1 = r1s[k] < r0 ? r0 : r1s[k];
            int ra = w.rows_f32(w.ctx, id, r0, r1, a, &err), rb = dsq_ckpt_rows_f32(ck, i, r0, r1, b, &err);
            bad = ra || rb || memcmp(a, b, sizeof(float) * (size_t)((r1 - r0) * cols));
            if (bad) fprintf(stderr, "  %s rows %lld..%lld differ\n", t->name, (long long)r0, (long long)r1);
        }
        if (!bad) bad = w.rows_f32(w.ctx, id, 0, rows + 1, a, &err) >= 0; /* past the end */
        free(a);
        free(b);
    }
    dsq_ckpt_close(ck);
    dsq_src_close(src);
    return bad || n2 == 0 ? -1 : 0;
}

TEST(test_weights_ckpt_fast_rows) {
    const char *d = t_tmpdir();
    CHECK(tu_gen_micro(t_path(d, "fp8"), 0, 2) == 0);
    CHECK(tu_gen_micro(t_path(d, "bf16"), 1, 1) == 0);
    CHECK(compare_all(t_path(d, "fp8")) == 0);
    CHECK(compare_all(t_path(d, "bf16")) == 0);
}
