/*
 * src_ckpt.c -- the model-source backend of upstream checkpoints: a folder
 * of safetensors shards with config.json (and the index), a single
 * .safetensors file, or a .tar / .zip archive of such a folder (ckpt.c,
 * archive.c).  Every tensor but the *_scale_inv companions is a tensor of
 * the source; an FP8 weight's block scales are its scale array.
 *
 * Folders are mapped and read at random; archives only forward, through
 * the checkpoint stream (ckpt_stream.c).
 */
#include "formats/source_int.h"
#include "formats/ckpt_int.h"

#include <stdio.h>

typedef struct ckbe {
    dsq_ckpt *ck;
    int *ck_of;              /* tensor -> checkpoint index; from malloc */
    int *t_of;               /* checkpoint index -> tensor or -1; from malloc */
    dsq_ckpt_stream *st;     /* the stream, once started */
    int cur;                 /* checkpoint index of the current streamed tensor */
    void **keep;             /* [tensor] converted views given by qmat (compressed-tensors) */
    dsq_qmat *keep_m;        /* [tensor] the views over them */
    void *cur_tmp;           /* the current streamed tensor's converted view */
} ckbe;

static const src_ops g_ck_ops;

/* The scheme that stores a checkpoint dtype as it is, or -1. */
static int scheme_of(const dsq_config *cfg, dsq_dtype dt) {
    switch (dt) {
    case DSQ_DT_F32: return DSQ_Q_F32;
    case DSQ_DT_F16: return DSQ_Q_F16;
    case DSQ_DT_BF16: return DSQ_Q_BF16;
    case DSQ_DT_F8_E4M3: return cfg->block_rows == 128 && cfg->block_cols == 128 ? DSQ_Q_FP8_BLOCK : -1;
    default: return -1;
    }
}

static int ck_bid(const char *path, int is_dir, const uint8_t *head, size_t n) {
    (void)path; (void)is_dir; (void)head; (void)n;
    return 1; /* folders, .safetensors files and archives: ckpt.c tells them apart */
}

static int ck_open(dsq_src *s, const char *path, int flags, dsq_err *err) {
    ckbe *b = dsq_calloc(1, sizeof *b);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    s->be = b;
    s->ops = &g_ck_ops;
    b->cur = -1;
    int rc = dsq_ckpt_open(&b->ck, path, flags & DSQ_SRC_ALLOW_UNKNOWN ? DSQ_OPEN_ALLOW_UNKNOWN : 0, err);
    if (rc) return rc;
    dsq_ckpt *ck = b->ck;
    int n = dsq_ckpt_n_tensors(ck);
    s->kind = dsq_ckpt_is_archive(ck) ? "archive" : "folder";
    s->random_access = !dsq_ckpt_is_archive(ck);
    s->cfg = dsq_ckpt_config(ck);
    s->config_json = dsq_ckpt_blob(ck, "config.json", &s->config_len);
    s->t = dsq_calloc((size_t)n + 1, sizeof *s->t);
    b->ck_of = dsq_malloc(sizeof *b->ck_of * ((size_t)n + 1));
    b->t_of = dsq_malloc(sizeof *b->t_of * ((size_t)n + 1));
    if (!s->t || !b->ck_of || !b->t_of) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const dsq_tinfo *ti = dsq_ckpt_tensor(ck, i);
        b->t_of[i] = -1;
        if (ti->role == DSQ_R_SCALE) continue; /* a companion: its weight carries it */
        dsq_stensor *t = &s->t[s->n];
        b->ck_of[s->n] = i;
        b->t_of[i] = s->n++;
        t->name = ti->name;
        t->role = ti->role;
        t->layer = ti->layer;
        t->expert = ti->expert;
        t->is_mtp = ti->is_mtp;
        t->n_dims = ti->n_dims;
        for (int k = 0; k < 4; k++) t->shape[k] = k < ti->n_dims ? ti->shape[k] : 0;
        t->rows = ti->n_dims == 2 ? ti->shape[0] : 1;
        t->cols = ti->n_dims == 2 ? ti->shape[1] : ti->numel;
        t->dtype = ti->dtype;
        t->scheme = dsq_ckpt_scheme(ck, i) >= 0 ? dsq_ckpt_scheme(ck, i) : scheme_of(s->cfg, ti->dtype);
        t->nbytes = dsq_ckpt_stored_bytes(ck, i);
    }
    return DSQ_OK;
}

static void ck_close(dsq_src *s) {
    ckbe *b = s->be;
    if (!b) return;
    dsq_ckpt_stream_close(b->st);
    if (b->keep)
        for (int i = 0; i < s->n; i++) free(b->keep[i]);
    free(b->keep);
    free(b->keep_m);
    free(b->cur_tmp);
    dsq_ckpt_close(b->ck);
    free(b->ck_of);
    free(b->t_of);
    free(b);
}

/* The quant view of tensor i whose bytes are data; *tmp: what a
 * compressed-tensors weight needed converted (free it when the view ends). */
static int view_qmat(const dsq_src *s, int i, const void *data, dsq_qmat *m, void **tmp, dsq_err *err) {
    const ckbe *b = s->be;
    const dsq_stensor *t = &s->t[i];
    *tmp = NULL;
    if (dsq_ckpt_scheme(b->ck, b->ck_of[i]) >= 0) return dsq_ckpt_qmat(b->ck, b->ck_of[i], data, m, tmp, err);
    *m = (dsq_qmat){t->scheme, t->rows, t->cols, (void *)data,
                    (void *)dsq_ckpt_scales(b->ck, b->ck_of[i], NULL, NULL), NULL};
    return DSQ_OK;
}

/* Views stay valid until close: a converted one is kept per tensor and
 * handed out again, not converted again. */
static int ck_qmat(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err) {
    ckbe *b = s->be;
    const void *data;
    int rc = dsq_src_scheme(s, i, err);
    if (rc < 0) return rc;
    *colscale = NULL;
    if (b->keep && b->keep[i]) {
        *m = b->keep_m[i];
        return DSQ_OK;
    }
    if ((rc = dsq_ckpt_view(b->ck, b->ck_of[i], &data, err))) return rc;
    void *tmp;
    if ((rc = view_qmat(s, i, data, m, &tmp, err))) return rc;
    if (tmp) {
        if (!b->keep && (!(b->keep = dsq_calloc((size_t)s->n + 1, sizeof *b->keep)) ||
                         !(b->keep_m = dsq_calloc((size_t)s->n + 1, sizeof *b->keep_m)))) {
            free(tmp);
            return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        }
        b->keep[i] = tmp;
        b->keep_m[i] = *m;
    }
    return DSQ_OK;
}

/* The two dtypes that carry nearly all of a checkpoint's bytes take quant's
 * vectorized decoders (FP8 E4M3 with 128x128 f32 block scales is exactly
 * the "fp8-block" scheme; BF16 is a plain widening); both are bit-identical
 * to the reader's scalar path, which handles everything else. */
static int ck_rows(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    const ckbe *b = s->be;
    int id = b->ck_of[i];
    const dsq_tinfo *t = dsq_ckpt_tensor(b->ck, id);
    const void *data = NULL;
    if (dsq_ckpt_scheme(b->ck, id) < 0 && t->n_dims == 2 && r0 >= 0 && r0 <= r1 && r1 <= t->shape[0] && dsq_ckpt_view(b->ck, id, &data, NULL) == DSQ_OK) {
        int64_t rows = t->shape[0], cols = t->shape[1];
        if (t->dtype == DSQ_DT_BF16) {
            dsq_q_bf16_to_f32_row((const uint8_t *)data + r0 * cols * 2, (r1 - r0) * cols, dst);
            return DSQ_OK;
        }
        int64_t sr, sc;
        const float *sp = t->dtype == DSQ_DT_F8_E4M3 ? dsq_ckpt_scales(b->ck, id, &sr, &sc) : NULL;
        const int edge = dsq_q_scheme(DSQ_Q_FP8_BLOCK)->group;
        dsq_qsizes qs;
        /* the checkpoint's blocks and scale grid are exactly fp8-block's */
        if (sp && s->cfg->block_rows == edge && s->cfg->block_cols == edge &&
            dsq_q_sizes(DSQ_Q_FP8_BLOCK, rows, cols, &qs, NULL) == DSQ_OK && sr == qs.scale_rows &&
            sc == qs.scale_cols) {
            /* dequantizing never writes through the matrix pointers */
            dsq_qmat m = {DSQ_Q_FP8_BLOCK, rows, cols, (void *)data, (void *)sp, NULL};
            return dsq_q_dequantize(&m, r0, r1, dst, err);
        }
    }
    return dsq_ckpt_rows_f32(b->ck, id, r0, r1, dst, err);
}

static int ck_next(dsq_src *s, int *i, dsq_err *err) {
    ckbe *b = s->be;
    int rc;
    if (!b->st && (rc = dsq_ckpt_stream_open(&b->st, b->ck, err))) return rc;
    for (;;) {
        int idx;
        if ((rc = dsq_ckpt_stream_next(b->st, &idx, err))) return rc;
        if (b->t_of[idx] < 0) continue; /* a scale companion: its weight carries it */
        b->cur = idx;
        *i = b->t_of[idx];
        return DSQ_OK;
    }
}

static int ck_data(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err) {
    ckbe *b = s->be;
    if (!b->st || b->cur < 0) return dsq_fail(err, DSQ_E_ARG, "%s: no current tensor", s->path);
    int i = b->t_of[b->cur], rc = dsq_src_scheme(s, i, err);
    const void *data;
    if (rc < 0) return rc;
    if ((rc = dsq_ckpt_stream_data(b->st, &data, err))) return rc;
    free(b->cur_tmp);
    if ((rc = view_qmat(s, i, data, m, &b->cur_tmp, err))) return rc;
    *colscale = NULL;
    return DSQ_OK;
}

static const void *ck_file(dsq_src *s, const char *name, size_t *len, dsq_err *err) {
    (void)err;
    return dsq_ckpt_blob(((ckbe *)s->be)->ck, name, len);
}

/* An archive is one file; a folder is its side files and its shards. */
static int ck_part(const dsq_src *s, int i, char *path, size_t cap) {
    const dsq_ckpt *ck = ((const ckbe *)s->be)->ck;
    if (dsq_ckpt_is_archive(ck)) {
        if (i > 0) return DSQ_EOF;
        snprintf(path, cap, "%s", s->path);
        return DSQ_OK;
    }
    for (int k = 0; k < CK_N_BLOBS; k++)
        if (dsq_ckpt_blob(ck, ck_blob_names[k], NULL) && i-- == 0) {
            snprintf(path, cap, "%s/%s", dsq_ckpt_path(ck), ck_blob_names[k]);
            return DSQ_OK;
        }
    if (i >= dsq_ckpt_n_shards(ck)) return DSQ_EOF;
    snprintf(path, cap, "%s/%s", dsq_ckpt_path(ck), dsq_ckpt_shard_name(ck, i));
    return DSQ_OK;
}

static const src_ops g_ck_ops = {ck_close, ck_qmat, ck_rows, ck_next, ck_data, ck_file, ck_part};
const src_backend dsq_src_backend_ckpt = {"ckpt", ck_bid, ck_open};

dsq_ckpt *dsq_src_ckpt(const dsq_src *s) { return s->ops == &g_ck_ops ? ((ckbe *)s->be)->ck : NULL; }
