/*
 * weights_src.c -- dsq_weights over a model source (formats/source.h):
 * tensors by upstream name, f32 rows dequantized by the source from
 * whatever scheme stores them.
 */
#include "verify/weights.h"
#include "formats/source.h"
#include "common.h"

static int w_find(void *ctx, const char *name) { return dsq_src_find(ctx, name); }

static int w_shape(void *ctx, int id, int64_t shape[4]) {
    const dsq_stensor *t = dsq_src_tensor(ctx, id);
    for (int i = 0; i < 4; i++) shape[i] = i < t->n_dims ? t->shape[i] : 1;
    return t->n_dims;
}

static int w_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    return dsq_src_rows_f32(ctx, id, r0, r1, dst, err);
}

int dsq_weights_from_src(dsq_weights *w, const dsq_src *s, dsq_err *err) {
    if (!dsq_src_random_access(s))
        return dsq_fail(err, DSQ_E_UNSUPPORTED,
                        "%s: the forward pass needs random access: unpack the archive or convert it to .dsq",
                        dsq_src_path(s));
    w->cfg = dsq_src_config(s);
    w->ctx = (void *)s;
    w->find = w_find;
    w->shape = w_shape;
    w->rows_f32 = w_rows;
    return DSQ_OK;
}
