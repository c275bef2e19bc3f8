/*
 * weights_ctr.c -- dsq_weights over a .dsq container: upstream tensor names
 * are mapped onto container tensors (a routed expert "...experts.7.up_proj
 * .weight" onto slice 7 of the stacked "...experts.up_proj.weight"), and
 * rows are dequantized from any storage scheme with quant/.
 *
 * Ids encode (tensor, expert) as tensor * ID_STRIDE + expert.
 */
#include "verify/weights.h"
#include "formats/container.h"
#include "common.h"

#include <stdio.h>
#include <string.h>

#define ID_STRIDE 65536

static int ctr_find(void *ctx, const char *name) {
    const dsq_ctr *c = ctx;
    int i = dsq_ctr_find(c, name);
    if (i >= 0) return i * ID_STRIDE;
    int layer, expert;
    dsq_role r = dsq_classify(name, &layer, &expert);
    if (expert < 0 || (r != DSQ_R_EXP_GATE && r != DSQ_R_EXP_UP && r != DSQ_R_EXP_DOWN)) return -1;
    char nm[160];
    dsq_expert_name(nm, sizeof nm, layer, -1, r);
    i = dsq_ctr_find(c, nm);
    if (i < 0 || expert >= dsq_ctr_tensor(c, i)->experts || expert >= ID_STRIDE) return -1;
    return i * ID_STRIDE + expert;
}

static int ctr_shape(void *ctx, int id, int64_t shape[4]) {
    const dsq_ctensor *t = dsq_ctr_tensor(ctx, id / ID_STRIDE);
    shape[2] = shape[3] = 1;
    if (t->n_dims == 1) {
        shape[0] = t->cols;
        shape[1] = 1;
        return 1;
    }
    shape[0] = t->rows;
    shape[1] = t->cols;
    return 2;
}

static int ctr_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    dsq_qmat m;
    int rc = dsq_ctr_qmat(ctx, id / ID_STRIDE, id % ID_STRIDE, &m, err);
    if (rc) return rc;
    if ((rc = dsq_q_dequantize(&m, r0, r1, dst, err))) return rc;
    const uint8_t *cs = dsq_ctr_colscale(ctx, id / ID_STRIDE, id % ID_STRIDE);
    if (cs)
        for (int64_t r = 0; r < r1 - r0; r++)
            for (int64_t j = 0; j < m.cols; j++) dst[r * m.cols + j] *= dsq_lef32(cs + 4 * j);
    return DSQ_OK;
}

void dsq_weights_from_ctr(dsq_weights *w, const dsq_ctr *c) {
    w->cfg = dsq_ctr_config(c);
    w->ctx = (void *)c;
    w->find = ctr_find;
    w->shape = ctr_shape;
    w->rows_f32 = ctr_rows;
}
