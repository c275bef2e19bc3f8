/*
 * source.c -- opening a model source by bidding, and what every source
 * shares: the tensor list and its name index (see source.h).
 */
#include "formats/source_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const src_backend *const g_backends[] = {&dsq_src_backend_dsq, &dsq_src_backend_gguf, &dsq_src_backend_ckpt};

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The name index; a name given twice keeps its first tensor. */
static int build_index(dsq_src *s, dsq_err *err) {
    size_t cap = 16;
    while (cap < (size_t)s->n * 2 + 2) cap <<= 1;
    s->ht = dsq_malloc(sizeof *s->ht * cap);
    if (!s->ht) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    s->ht_cap = cap;
    for (size_t k = 0; k < cap; k++) s->ht[k] = -1;
    for (int i = 0; i < s->n; i++) {
        size_t k = fnv(s->t[i].name) & (cap - 1);
        while (s->ht[k] >= 0 && strcmp(s->t[s->ht[k]].name, s->t[i].name)) k = (k + 1) & (cap - 1);
        if (s->ht[k] < 0) s->ht[k] = i;
    }
    return DSQ_OK;
}

int dsq_src_open(dsq_src **out, const char *path, int flags, dsq_err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return dsq_fail(err, DSQ_E_IO, "%s: no such file or folder", path);
    uint8_t head[64];
    size_t nh = 0;
    if (S_ISREG(st.st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t r = read(fd, head, sizeof head);
            nh = r > 0 ? (size_t)r : 0;
            close(fd);
        }
    }
    const src_backend *best = NULL;
    int best_bid = 0;
    for (size_t k = 0; k < sizeof g_backends / sizeof g_backends[0]; k++) {
        int b = g_backends[k]->bid(path, S_ISDIR(st.st_mode), head, nh);
        if (b > best_bid) {
            best_bid = b;
            best = g_backends[k];
        }
    }
    if (!best) return dsq_fail(err, DSQ_E_FORMAT, "%s: not a model dsq reads", path);
    dsq_src *s = dsq_calloc(1, sizeof *s);
    if (!s || !(s->path = dsq_strdup(path))) {
        free(s);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    int rc = best->open(s, path, flags, err);
    if (!rc) rc = build_index(s, err);
    if (rc) {
        dsq_src_close(s);
        return rc;
    }
    *out = s;
    return DSQ_OK;
}

void dsq_src_close(dsq_src *s) {
    if (!s) return;
    if (s->ops) s->ops->close(s);
    free(s->t);
    free(s->ht);
    free(s->path);
    free(s);
}

const char *dsq_src_path(const dsq_src *s) { return s->path; }
const char *dsq_src_kind(const dsq_src *s) { return s->kind; }
int dsq_src_random_access(const dsq_src *s) { return s->random_access; }
const dsq_config *dsq_src_config(const dsq_src *s) { return s->cfg; }
int dsq_src_n_tensors(const dsq_src *s) { return s->n; }
const dsq_stensor *dsq_src_tensor(const dsq_src *s, int i) { return &s->t[i]; }

const char *dsq_src_config_json(const dsq_src *s, size_t *len) {
    if (len) *len = s->config_len;
    return s->config_json;
}

const void *dsq_src_file(dsq_src *s, const char *name, size_t *len, dsq_err *err) {
    size_t dummy;
    return s->ops->file(s, name, len ? len : &dummy, err);
}

int dsq_src_part(const dsq_src *s, int i, char *path, size_t cap) { return s->ops->part(s, i, path, cap); }

int dsq_src_find(const dsq_src *s, const char *name) {
    if (!s->ht) return -1;
    size_t k = fnv(name) & (s->ht_cap - 1);
    while (s->ht[k] >= 0) {
        if (!strcmp(s->t[s->ht[k]].name, name)) return s->ht[k];
        k = (k + 1) & (s->ht_cap - 1);
    }
    return -1;
}

int dsq_src_scheme(const dsq_src *s, int i, dsq_err *err) {
    const dsq_stensor *t = &s->t[i];
    if (t->scheme >= 0) return t->scheme;
    if (t->dtype == DSQ_DT_F8_E4M3)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: FP8 block size %dx%d (only 128x128 is supported)", t->name,
                        s->cfg->block_rows, s->cfg->block_cols);
    return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: dtype %s cannot be stored", t->name, dsq_dtype_name(t->dtype));
}

int dsq_src_qmat(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err) {
    if (i < 0 || i >= s->n) return dsq_fail(err, DSQ_E_ARG, "%s: tensor %d out of range", s->path, i);
    const void *cs = NULL;
    int rc = s->ops->qmat(s, i, m, &cs, err);
    if (colscale) *colscale = cs;
    return rc;
}

int dsq_src_rows_f32(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    if (i < 0 || i >= s->n) return dsq_fail(err, DSQ_E_ARG, "%s: tensor %d out of range", s->path, i);
    return s->ops->rows_f32(s, i, r0, r1, dst, err);
}

int dsq_src_next(dsq_src *s, int *i, dsq_err *err) { return s->ops->next(s, i, err); }

int dsq_src_data(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err) {
    const void *cs = NULL;
    int rc = s->ops->data(s, m, &cs, err);
    if (colscale) *colscale = cs;
    return rc;
}
