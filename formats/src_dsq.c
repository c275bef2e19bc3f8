/*
 * src_dsq.c -- the model-source backend of .dsq containers (container.c,
 * docs/FORMAT.md).  A stacked routed-expert tensor [experts, out, in] is
 * one tensor of the source per expert, named as upstream names it; every
 * other container tensor is itself.  Side files are decompressed when first
 * asked for and kept until close.
 */
#include "formats/source_int.h"
#include "formats/container.h"

#include <stdio.h>

typedef struct dsqbe {
    dsq_ctr *c;
    int *ti, *te;        /* tensor -> container tensor, expert (0 when not stacked) */
    char *names;         /* per-expert names, 160 bytes each; from malloc */
    int cur;             /* current streamed tensor */
    struct { char *name, *data; size_t len; } files[8]; /* decompressed side files */
    int n_files;
} dsqbe;

#define NAME_CAP 160

static const src_ops g_dsq_ops;

static int dsq_bid(const char *path, int is_dir, const uint8_t *head, size_t n) {
    (void)path;
    return !is_dir && n >= 8 && !memcmp(head, DSQ_CTR_MAGIC, 8) ? 100 : 0;
}

static int dsq_open(dsq_src *s, const char *path, int flags, dsq_err *err) {
    (void)flags;
    dsqbe *b = dsq_calloc(1, sizeof *b);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    s->be = b;
    s->ops = &g_dsq_ops;
    s->kind = "dsq";
    s->random_access = 1;
    b->cur = -1;
    int rc = dsq_ctr_open(&b->c, path, err);
    if (rc) return rc;
    const dsq_ctr *c = b->c;
    s->cfg = dsq_ctr_config(c);
    s->config_json = dsq_ctr_config_json(c);
    s->config_len = strlen(s->config_json);
    int64_t n = 0, n_stacked = 0;
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        int e = dsq_ctr_tensor(c, i)->experts;
        n += e ? e : 1;
        n_stacked += e;
    }
    if (n > INT32_MAX / 2) return dsq_fail(err, DSQ_E_FORMAT, "%s: too many tensors", path);
    s->t = dsq_calloc((size_t)n + 1, sizeof *s->t);
    b->ti = dsq_malloc(sizeof *b->ti * ((size_t)n + 1));
    b->te = dsq_malloc(sizeof *b->te * ((size_t)n + 1));
    b->names = dsq_malloc((size_t)n_stacked * NAME_CAP + 1);
    if (!s->t || !b->ti || !b->te || !b->names) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    char *nm = b->names;
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        const dsq_ctensor *ct = dsq_ctr_tensor(c, i);
        int ne = ct->experts ? ct->experts : 1;
        uint64_t bytes = 0;
        for (int k = 0; k < DSQ_ARR_N; k++) bytes += ct->arr[k].size;
        for (int e = 0; e < ne; e++) {
            dsq_stensor *t = &s->t[s->n];
            b->ti[s->n] = i;
            b->te[s->n] = e;
            s->n++;
            t->role = ct->role;
            t->layer = ct->layer;
            t->is_mtp = ct->is_mtp;
            t->expert = -1;
            t->rows = ct->rows;
            t->cols = ct->cols;
            t->scheme = ct->scheme;
            t->dtype = DSQ_DT_INVALID;
            t->colscale = ct->arr[DSQ_ARR_COLSCALE].size > 0;
            t->nbytes = bytes / (uint64_t)ne;
            t->recipe = ct->recipe;
            if (ct->experts) {
                dsq_expert_name(nm, NAME_CAP, ct->layer, e, ct->role);
                t->name = nm;
                nm += NAME_CAP;
                t->expert = e;
                t->n_dims = 2;
                t->shape[0] = ct->rows;
                t->shape[1] = ct->cols;
            } else {
                t->name = ct->name;
                t->n_dims = ct->n_dims;
                memcpy(t->shape, ct->shape, sizeof t->shape);
            }
        }
    }
    return DSQ_OK;
}

static void dsq_close_be(dsq_src *s) {
    dsqbe *b = s->be;
    if (!b) return;
    for (int k = 0; k < b->n_files; k++) {
        free(b->files[k].name);
        free(b->files[k].data);
    }
    dsq_ctr_close(b->c);
    free(b->ti);
    free(b->te);
    free(b->names);
    free(b);
}

static int dsq_qmat_of(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err) {
    const dsqbe *b = s->be;
    int rc = dsq_ctr_qmat(b->c, b->ti[i], b->te[i], m, err);
    if (rc) return rc;
    *colscale = dsq_ctr_colscale(b->c, b->ti[i], b->te[i]);
    return DSQ_OK;
}

static int dsq_rows(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    dsq_qmat m;
    const void *cs;
    int rc = dsq_qmat_of(s, i, &m, &cs, err);
    if (rc) return rc;
    if ((rc = dsq_q_dequantize(&m, r0, r1, dst, err))) return rc;
    if (cs)
        for (int64_t r = 0; r < r1 - r0; r++)
            for (int64_t j = 0; j < m.cols; j++) dst[r * m.cols + j] *= dsq_lef32((const uint8_t *)cs + 4 * j);
    return DSQ_OK;
}

static int dsq_next(dsq_src *s, int *i, dsq_err *err) {
    (void)err;
    dsqbe *b = s->be;
    if (b->cur + 1 >= s->n) return DSQ_EOF;
    *i = ++b->cur;
    return DSQ_OK;
}

static int dsq_data(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err) {
    dsqbe *b = s->be;
    if (b->cur < 0) return dsq_fail(err, DSQ_E_ARG, "%s: no current tensor", s->path);
    return dsq_qmat_of(s, b->cur, m, colscale, err);
}

static const void *dsq_file(dsq_src *s, const char *name, size_t *len, dsq_err *err) {
    dsqbe *b = s->be;
    for (int k = 0; k < b->n_files; k++)
        if (!strcmp(b->files[k].name, name)) {
            *len = b->files[k].len;
            return b->files[k].data;
        }
    *len = 0;
    dsq_err e2 = {0};
    char *data;
    size_t n;
    int rc = dsq_ctr_file(b->c, name, &data, &n, err ? err : &e2);
    if (rc) {
        if (rc == DSQ_E_NOTFOUND && err) memset(err, 0, sizeof *err);
        return NULL;
    }
    char *nm = dsq_strdup(name);
    if (!nm || b->n_files == (int)(sizeof b->files / sizeof b->files[0])) {
        free(nm);
        free(data);
        if (err) dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        return NULL;
    }
    b->files[b->n_files].name = nm;
    b->files[b->n_files].data = data;
    b->files[b->n_files].len = n;
    b->n_files++;
    *len = n;
    return data;
}

static int dsq_part(const dsq_src *s, int i, char *path, size_t cap) {
    if (i > 0) return DSQ_EOF;
    snprintf(path, cap, "%s", s->path);
    return DSQ_OK;
}

static const src_ops g_dsq_ops = {dsq_close_be, dsq_qmat_of, dsq_rows, dsq_next, dsq_data, dsq_file, dsq_part};
const src_backend dsq_src_backend_dsq = {"dsq", dsq_bid, dsq_open};

struct dsq_ctr *dsq_src_ctr(const dsq_src *s) { return s->ops == &g_dsq_ops ? ((dsqbe *)s->be)->c : NULL; }
