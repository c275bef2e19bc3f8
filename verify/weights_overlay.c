/*
 * weights_overlay.c -- see weights_overlay.h.  Ids are the base's ids, so a
 * forward pass that resolved its tensor ids once (at creation) sees entries
 * put in later; an open-addressing table maps an id to its entry.
 */
#include "verify/weights_overlay.h"
#include "common.h"

#include <stdio.h>

typedef struct ov_entry {
    int id;            /* base id */
    char name[160];
    dsq_qmat m;        /* arrays in one malloc block at m.data */
    float *colscale;
} ov_entry;

struct dsq_woverlay {
    dsq_weights w;
    const dsq_weights *base;
    ov_entry *e;
    int n, cap;
    int *ht;           /* id -> entry index + 1 (0 empty), open addressing */
    int ht_cap;
};

static unsigned hid(int id) { return (unsigned)id * 2654435761u; }

static const ov_entry *lookup(const dsq_woverlay *o, int id) {
    if (!o->ht_cap) return NULL;
    for (unsigned k = hid(id) & (unsigned)(o->ht_cap - 1);; k = (k + 1) & (unsigned)(o->ht_cap - 1)) {
        int v = o->ht[k];
        if (!v) return NULL;
        if (o->e[v - 1].id == id) return &o->e[v - 1];
    }
}

static int rehash(dsq_woverlay *o) {
    int cap = 64;
    while (cap < o->n * 2 + 2) cap <<= 1;
    int *ht = dsq_calloc((size_t)cap, sizeof *ht);
    if (!ht) return DSQ_E_NOMEM;
    for (int i = 0; i < o->n; i++) {
        unsigned k = hid(o->e[i].id) & (unsigned)(cap - 1);
        while (ht[k]) k = (k + 1) & (unsigned)(cap - 1);
        ht[k] = i + 1;
    }
    free(o->ht);
    o->ht = ht;
    o->ht_cap = cap;
    return DSQ_OK;
}

static int ov_find(void *ctx, const char *name) {
    dsq_woverlay *o = ctx;
    return o->base->find(o->base->ctx, name);
}

static int ov_shape(void *ctx, int id, int64_t shape[4]) {
    dsq_woverlay *o = ctx;
    return o->base->shape(o->base->ctx, id, shape);
}

static int ov_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    dsq_woverlay *o = ctx;
    const ov_entry *e = lookup(o, id);
    if (!e) return o->base->rows_f32(o->base->ctx, id, r0, r1, dst, err);
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
    if (o->ht) memset(o->ht, 0, sizeof *o->ht * (size_t)o->ht_cap);
}

void dsq_woverlay_free(dsq_woverlay *o) {
    if (!o) return;
    dsq_woverlay_clear(o);
    free(o->e);
    free(o->ht);
    free(o);
}

int dsq_woverlay_put(dsq_woverlay *o, const char *name, dsq_qmat m, float *colscale) {
    int id = o->base->find(o->base->ctx, name);
    if (id < 0) return DSQ_E_NOTFOUND;
    int64_t shape[4];
    int nd = o->base->shape(o->base->ctx, id, shape);
    if ((nd == 2 && (shape[0] != m.rows || shape[1] != m.cols)) || (nd == 1 && (m.rows != 1 || shape[0] != m.cols)))
        return DSQ_E_ARG;
    ov_entry *old = (ov_entry *)lookup(o, id);
    if (old) {
        free(old->m.data);
        free(old->colscale);
        old->m = m;
        old->colscale = colscale;
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
    e->id = id;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->m = m;
    e->colscale = colscale;
    if (o->n * 2 + 2 > o->ht_cap) return rehash(o);
    unsigned k = hid(id) & (unsigned)(o->ht_cap - 1);
    while (o->ht[k]) k = (k + 1) & (unsigned)(o->ht_cap - 1);
    o->ht[k] = o->n;
    return DSQ_OK;
}
