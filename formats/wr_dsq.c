/*
 * wr_dsq.c -- the .dsq container as an output format (writer.h over the
 * container writer of container.c): a quant view's data, scale and
 * zero-point arrays and the column multipliers become the tensor's arrays.
 */
#include "formats/writer_int.h"
#include "formats/container.h"

static int d_open(dsq_mwriter *w, const char *path, int force, dsq_err *err) {
    dsq_ctrw *c;
    int rc = dsq_ctrw_open(&c, path, force, err);
    if (!rc) w->be = c;
    return rc;
}

static int d_check(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    if (t->part != DSQ_PART_WHOLE) return dsq_fail(err, DSQ_E_ARG, "%s: %s: a container stores tensors whole", w->path, t->name);
    return DSQ_OK;
}

static int d_add_tensor(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) { return dsq_ctrw_add_tensor(w->be, t, err); }

static int d_add_file(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err) {
    return dsq_ctrw_add_file(w->be, name, data, len, err);
}

static int d_layout(dsq_mwriter *w, dsq_err *err) { return dsq_ctrw_layout(w->be, err); }

static int d_put(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err) {
    const void *arr[DSQ_ARR_N] = {m->data, m->scale, m->zero, colscale};
    for (int k = 0; k < DSQ_ARR_N; k++) {
        uint64_t n = dsq_ctrw_slice_size(w->be, i, k);
        if (!n) continue;
        if (!arr[k]) return dsq_fail(err, DSQ_E_ARG, "%s: tensor %d lacks its %s array", w->path, i,
                                     k == DSQ_ARR_COLSCALE ? "column-scale" : k == DSQ_ARR_ZERO ? "zero-point"
                                     : k == DSQ_ARR_SCALE ? "scale" : "data");
        int rc = dsq_ctrw_write(w->be, i, e, k, arr[k], n, err);
        if (rc) return rc;
    }
    return DSQ_OK;
}

static uint64_t d_slice_bytes(const dsq_mwriter *w, int i) {
    uint64_t n = 0;
    for (int k = 0; k < DSQ_ARR_N; k++) n += dsq_ctrw_slice_size(w->be, i, k);
    return n;
}

static int d_finish(dsq_mwriter *w, const char *meta_json, dsq_err *err) {
    int rc = dsq_ctrw_finish(w->be, meta_json, err);
    w->be = NULL;
    return rc;
}

static void d_abort(dsq_mwriter *w) {
    dsq_ctrw_abort(w->be);
    w->be = NULL;
}

const wr_ops dsq_wr_ops_dsq = {DSQ_OUT_DSQ, 0, d_open, d_check, d_add_tensor, d_add_file, d_layout, d_put, d_slice_bytes, d_finish, d_abort};
