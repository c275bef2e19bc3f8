/*
 * weights.h -- how the forward pass reaches model weights, whatever stores
 * them: any model source with random access (formats/source.h), or an
 * overlay of staged replacements over one (weights_overlay.h).  The forward pass only ever asks
 * for f32 rows of one tensor at a time, so it never holds the dequantized
 * model in memory.
 */
#ifndef DSQ_WEIGHTS_H
#define DSQ_WEIGHTS_H

#include "dsq.h"

typedef struct dsq_weights {
    const dsq_config *cfg;
    void *ctx;
    /* Tensor id by upstream name ("model.layers.3.mlp.experts.7.up_proj.weight"),
     * or -1 if absent. */
    int (*find)(void *ctx, const char *name);
    /* Logical shape; returns n_dims. */
    int (*shape)(void *ctx, int id, int64_t shape[4]);
    /* Rows [r0, r1) of a 2-D tensor (or the whole of a 1-D one with r0=0,
     * r1=1) dequantized to f32, (r1-r0) x cols, row-major.  Thread-safe:
     * may be called from several threads at once. */
    int (*rows_f32)(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err);
} dsq_weights;

/* The weights of a model source (formats/source.h), which must stay open
 * while w is used.  DSQ_E_UNSUPPORTED for sources without random access
 * (archives). */
struct dsq_src;
int dsq_weights_from_src(dsq_weights *w, const struct dsq_src *s, dsq_err *err);

#endif
