/*
 * weights_ckpt.c -- dsq_weights over an upstream checkpoint folder: rows are
 * dequantized straight from the mapped shards (FP8 with block scales, BF16,
 * F16, F32).
 *
 * The two dtypes that carry nearly all of a checkpoint's bytes take the
 * vectorized decoders of quant/ (FP8 E4M3 with 128x128 f32 block scales is
 * exactly quant's "fp8-block" scheme; BF16 is a plain widening).  Both are
 * bit-identical to the reader's scalar path, which handles everything else.
 */
#include "verify/weights.h"
#include "quant/quant.h"

static int ck_find(void *ctx, const char *name) { return dsq_ckpt_find(ctx, name); }
static int ck_shape(void *ctx, int id, int64_t shape[4]) {
    const dsq_tinfo *t = dsq_ckpt_tensor(ctx, id);
    for (int i = 0; i < 4; i++) shape[i] = i < t->n_dims ? t->shape[i] : 1;
    return t->n_dims;
}
static int ck_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    const dsq_ckpt *ck = ctx;
    const dsq_tinfo *t = id >= 0 && id < dsq_ckpt_n_tensors(ck) ? dsq_ckpt_tensor(ck, id) : NULL;
    const void *data = NULL;
    if (t && t->n_dims == 2 && r0 >= 0 && r0 <= r1 && r1 <= t->shape[0] &&
        dsq_ckpt_view(ck, id, &data, NULL) == DSQ_OK) {
        int64_t rows = t->shape[0], cols = t->shape[1];
        if (t->dtype == DSQ_DT_BF16) {
            dsq_q_bf16_to_f32_row((const uint8_t *)data + r0 * cols * 2, (r1 - r0) * cols, dst);
            return DSQ_OK;
        }
        const dsq_config *c = dsq_ckpt_config(ck);
        int64_t sr, sc;
        const float *s = t->dtype == DSQ_DT_F8_E4M3 ? dsq_ckpt_scales(ck, id, &sr, &sc) : NULL;
        const int edge = dsq_q_scheme(DSQ_Q_FP8_BLOCK)->group;
        dsq_qsizes qs;
        /* the checkpoint's blocks and scale grid are exactly fp8-block's */
        if (s && c->block_rows == edge && c->block_cols == edge &&
            dsq_q_sizes(DSQ_Q_FP8_BLOCK, rows, cols, &qs, NULL) == DSQ_OK && sr == qs.scale_rows &&
            sc == qs.scale_cols) {
            /* dequantizing never writes through the matrix pointers */
            dsq_qmat m = {DSQ_Q_FP8_BLOCK, rows, cols, (void *)data, (void *)s, NULL};
            return dsq_q_dequantize(&m, r0, r1, dst, err);
        }
    }
    return dsq_ckpt_rows_f32(ck, id, r0, r1, dst, err);
}

void dsq_weights_from_ckpt(dsq_weights *w, const dsq_ckpt *ck) {
    w->cfg = dsq_ckpt_config(ck);
    w->ctx = (void *)ck;
    w->find = ck_find;
    w->shape = ck_shape;
    w->rows_f32 = ck_rows;
}
