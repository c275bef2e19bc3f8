/*
 * weights_overlay.c -- see weights_overlay.h.  Overlay ids are
 * OV_BASE + entry index; ids below OV_BASE belong to the base.
 */
#include "verify/weights_overlay.h"
#include "common.h"

#include <stdio.h>

#define OV_BASE (1 << 30)

typedef struct ov_entry {
    char name[160];
    dsq_qmat m;        /* arrays in one malloc block at m.data */
    float *colscale;
} ov_entry;

struct dsq_woverlay {
    dsq_weights w;
    const dsq_weights *base;
    ov_entry *e;
    int n, cap;
};

static int ov_find(void *ctx, const char *name) {
    dsq_woverlay *o = ctx;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->e[i].name, name)) return OV_BASE + i;
    int id = o->base->find(o->base->ctx, name);
    return id >= OV_BASE ? -1 : id;
}

static int ov_shape(void *ctx, int id, int64_t shape[4]) {
    dsq_woverlay *o = ctx;
    if (id < OV_BASE) return o->base->shape(o->base->ctx, id, shape);
    const dsq_qmat *m = &o->e[id - OV_BASE].m;
    shape[2] = shape[3] = 1;
    if (m->rows == 1) {
        shape[0] = m->cols;
        shape[1] = 1;
        return 1;
    }
    shape[0] = m->rows;
    shape[1] = m->cols;
    return 2;
}

static int ov_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    dsq_woverlay *o = ctx;
    if (id < OV_BASE) return o->base->rows_f32(o->base->ctx, id, r0, r1, dst, err);
    const ov_entry *e = &o->e[id - OV_BASE];
    int rc = dsq_q_dequantize(&e->m, r0, r1, dst, err);
    if (rc || !e->colscale) return rc;
    for (int64_t r = 0; r < r1 - r0; r++)
        for (int64_t j = 0; j < e->m.cols; j++) dst[r * e->m.cols + j] *= e->colscale[j];
    return DSQ_OK;
}

dsq_woverlay *dsq_woverlay_new(const dsq_weights *base) {
    dsq_woverlay *o = dsq_calloc(1, sizeof *o);
    if (!o) return NULL;
    o->base = base;
    o->w.cfg = base->cfg;
    o->w.ctx = o;
    o->w.find = ov_find;
    o->w.shape = ov_shape;
    o->w.rows_f32 = ov_rows;
    return o;
}

const dsq_weights *dsq_woverlay_weights(dsq_woverlay *o) { return &o->w; }

void dsq_woverlay_clear(dsq_woverlay *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->e[i].m.data);
        free(o->e[i].colscale);
    }
    o->n = 0;
}

void dsq_woverlay_free(dsq_woverlay *o) {
    if (!o) return;
    dsq_woverlay_clear(o);
    free(o->e);
    free(o);
}

int dsq_woverlay_put(dsq_woverlay *o, const char *name, dsq_qmat m, float *colscale) {
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->e[i].name, name)) {
            free(o->e[i].m.data);
            free(o->e[i].colscale);
            o->e[i].m = m;
            o->e[i].colscale = colscale;
            return DSQ_OK;
        }
    if (o->n == o->cap) {
        int nc = o->cap ? o->cap * 2 : 64;
        ov_entry *ne = dsq_realloc(o->e, sizeof *ne * (size_t)nc);
        if (!ne) return DSQ_E_NOMEM;
        o->e = ne;
        o->cap = nc;
    }
    ov_entry *e = &o->e[o->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->m = m;
    e->colscale = colscale;
    return DSQ_OK;
}
