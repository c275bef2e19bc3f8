/*
 * weights_ckpt.c -- dsq_weights over an upstream checkpoint folder: rows are
 * dequantized straight from the mapped shards (FP8 with block scales, BF16,
 * F16, F32).
 */
#include "verify/weights.h"

static int ck_find(void *ctx, const char *name) { return dsq_ckpt_find(ctx, name); }
static int ck_shape(void *ctx, int id, int64_t shape[4]) {
    const dsq_tinfo *t = dsq_ckpt_tensor(ctx, id);
    for (int i = 0; i < 4; i++) shape[i] = i < t->n_dims ? t->shape[i] : 1;
    return t->n_dims;
}
static int ck_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    return dsq_ckpt_rows_f32(ctx, id, r0, r1, dst, err);
}

void dsq_weights_from_ckpt(dsq_weights *w, const dsq_ckpt *ck) {
    w->cfg = dsq_ckpt_config(ck);
    w->ctx = (void *)ck;
    w->find = ck_find;
    w->shape = ck_shape;
    w->rows_f32 = ck_rows;
}
