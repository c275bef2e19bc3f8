/*
 * writer.c -- choosing the output format and handing each call to its
 * backend (writer.h).
 */
#include "formats/writer_int.h"

#include "quant/quant.h"

#include <stdio.h>
#include <dirent.h>
#include <sys/stat.h>

int dsq_mwriter_format_of(const char *path) {
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) return DSQ_OUT_GGUF;
    if (n >= 1 && path[n - 1] == '/') return DSQ_OUT_CT;
    return DSQ_OUT_DSQ;
}

int dsq_mwriter_nearest(int format, int scheme, int64_t cols) {
    const dsq_qscheme *q = dsq_q_scheme(scheme);
    if (!q) return -1;
    (void)cols;
    switch (format) {
    case DSQ_OUT_DSQ: return scheme;
    case DSQ_OUT_HF: return q->kind == DSQ_QK_FLOAT ? scheme : DSQ_Q_FP8_BLOCK_UE8M0;
    case DSQ_OUT_CT:
        switch (q->kind) {
        case DSQ_QK_FLOAT: case DSQ_QK_FP8: return scheme;
        case DSQ_QK_INT4: return dsq_q_find(DSQ_QK_INT4, DSQ_QG_GROUP, q->group, q->sym, DSQ_DT_BF16);
        case DSQ_QK_INT8: return DSQ_Q_INT8_CHANNEL_BF16;
        case DSQ_QK_GGML: /* 4 bits or fewer: int4 groups of 32, with zero points when the type has mins */
            return q->bpw <= 5.0 ? (q->sym ? DSQ_Q_INT4_G32_SYM : DSQ_Q_INT4_G32_ASYM) : DSQ_Q_INT8_CHANNEL_BF16;
        }
        return -1;
    default: return -1;
    }
}

int dsq_mwriter_open(dsq_mwriter **out, const char *path, int format, const dsq_config *cfg, int force,
                     dsq_err *err) {
    return dsq_mwriter_open_sharded(out, path, format, cfg, force, 0, err);
}

int dsq_mwriter_open_sharded(dsq_mwriter **out, const char *path, int format, const dsq_config *cfg, int force,
                             uint64_t shard_size, dsq_err *err) {
    *out = NULL;
    if (format == DSQ_OUT_AUTO) format = dsq_mwriter_format_of(path);
    const wr_ops *ops = NULL;
    switch (format) {
    case DSQ_OUT_DSQ: ops = &dsq_wr_ops_dsq; break;
    case DSQ_OUT_GGUF: ops = &dsq_wr_ops_gguf; break;
    case DSQ_OUT_CT: ops = &dsq_wr_ops_ct; break;
    case DSQ_OUT_HF: ops = &dsq_wr_ops_hf; break;
    default: return dsq_fail(err, DSQ_E_ARG, "%s: unknown output format %d", path, format);
    }
    dsq_mwriter *w = dsq_calloc(1, sizeof *w);
    if (!w || !(w->path = dsq_strdup(path))) {
        free(w);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    w->ops = ops;
    w->cfg = cfg;
    w->shard_size = shard_size;
    int rc = ops->open(w, path, force, err);
    if (rc) {
        free(w->path);
        free(w);
        return rc;
    }
    *out = w;
    return DSQ_OK;
}

int dsq_mwriter_format(const dsq_mwriter *w) { return w->ops->format; }
int dsq_mwriter_splits_kv_b(const dsq_mwriter *w) { return w->ops->splits_kv_b; }
int dsq_mwriter_check(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) { return w->ops->check(w, t, err); }
int dsq_mwriter_add_tensor(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    int rc = w->ops->check(w, t, err);
    return rc ? rc : w->ops->add_tensor(w, t, err);
}
int dsq_mwriter_add_file(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err) {
    return w->ops->add_file(w, name, data, len, err);
}
int dsq_mwriter_layout(dsq_mwriter *w, dsq_err *err) { return w->ops->layout(w, err); }
int dsq_mwriter_put(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err) {
    return w->ops->put(w, i, e, m, colscale, err);
}
uint64_t dsq_mwriter_slice_bytes(const dsq_mwriter *w, int i) { return w->ops->slice_bytes(w, i); }

int dsq_mwriter_finish(dsq_mwriter *w, const char *meta_json, uint64_t *size, dsq_err *err) {
    int rc = w->ops->finish(w, meta_json, err);
    struct stat st;
    if (size) *size = !rc && stat(w->path, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (size && !rc && S_ISDIR(st.st_mode)) { /* a folder: the files in it */
        *size = 0;
        DIR *d = opendir(w->path);
        struct dirent *de;
        char p[4096 + 300];
        while (d && (de = readdir(d)))
            if (snprintf(p, sizeof p, "%s/%s", w->path, de->d_name) < (int)sizeof p && stat(p, &st) == 0 && S_ISREG(st.st_mode))
                *size += (uint64_t)st.st_size;
        if (d) closedir(d);
    }
    free(w->path);
    free(w);
    return rc;
}

void dsq_mwriter_abort(dsq_mwriter *w) {
    if (!w) return;
    w->ops->abort(w);
    free(w->path);
    free(w);
}
