/*
 * round_trip.c -- fuzz target: quantize, dequantize, write a container,
 * read it back (the shape of zstd's tests/fuzz/simple_round_trip.c).
 *
 * Input layout (short inputs are fine; missing bytes read as 0):
 *   byte 0     scheme id (mod DSQ_Q_COUNT, quant/quant.h)
 *   byte 1     rows, 0..255
 *   bytes 2-3  cols, u16 LE mod 1025 (0..1024); rows are halved until the
 *              matrix has at most 2^13 elements
 *   byte 4     flags: bits 0-1 clip_steps {0, 0, 3, 20}; bit 2 clip_min from
 *              byte 5; bit 3 per-column importance; bit 4 values are bf16
 *              (2 bytes each) instead of f32 (4 bytes); bit 5 write and read
 *              back a container; bit 6 store it as 2 stacked experts
 *   byte 5     clip_min = (byte + 1) / 257 when bit 2 is set
 *   bytes 6..  the values, reused cyclically when the matrix needs more
 *
 * Checks, all promises of quant.h: the fast and reference quantizers write
 * identical bytes (and every byte, whatever the buffer held before); row
 * ranges split on row_unit and the pool driver give the same bytes; the fast
 * and reference dequantizers agree bit for bit; float schemes round as
 * dtype.h says; with plain absmax, each element's error is within the
 * scheme's bound (FP8: half an E4M3 step, INT8 / INT4: s/2) unless its scale
 * saturated; finite inputs give finite outputs, NaN gives 0 in integer
 * schemes; ggml block schemes (whose columns are cut to whole blocks) give
 * finite outputs within twice the block's range.  Then the arrays go through dsq_ctrw_* into a container that
 * dsq_ctr_open must accept, verify and return byte for byte.
 */
#include "fuzz.h"
#include "common.h"
#include "formats/container.h"
#include "quant/dtype.h"
#include "quant/quant.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ELEMS (1 << 13) /* keeps the clip search under sanitizers fast */

typedef struct qbuf {
    dsq_qmat m;
    uint8_t *p[3]; /* data, scale, zero; from malloc */
} qbuf;

static void qbuf_init(qbuf *b, int type, int64_t rows, int64_t cols, const dsq_qsizes *sz, int fill) {
    uint64_t n[3] = {sz->data, sz->scale, sz->zero};
    for (int k = 0; k < 3; k++) {
        b->p[k] = malloc(n[k] + 1);
        FUZZ_CHECK(b->p[k] != NULL);
        memset(b->p[k], fill, n[k] + 1);
    }
    b->m.type = type;
    b->m.rows = rows;
    b->m.cols = cols;
    b->m.data = b->p[0];
    b->m.scale = sz->scale ? b->p[1] : NULL;
    b->m.zero = sz->zero ? b->p[2] : NULL;
}

static void qbuf_free(qbuf *b) {
    for (int k = 0; k < 3; k++) free(b->p[k]);
}

static int qbuf_same(const qbuf *a, const qbuf *b, const dsq_qsizes *sz) {
    return !memcmp(a->p[0], b->p[0], sz->data) && !memcmp(a->p[1], b->p[1], sz->scale) &&
           !memcmp(a->p[2], b->p[2], sz->zero);
}

/* Stored scale of the unit holding element (r, c), and whether it is the
 * largest finite value of its dtype (saturated: the bound does not apply). */
static float unit_scale(const dsq_qscheme *sc, const dsq_qmat *m, const dsq_qsizes *sz, int64_t r,
                        int64_t c, int *saturated) {
    int64_t idx = 0;
    if (sc->gran == DSQ_QG_CHANNEL) idx = r;
    else if (sc->gran == DSQ_QG_BLOCK) idx = (r / sc->group) * sz->scale_cols + c / sc->group;
    else if (sc->gran == DSQ_QG_GROUP) idx = r * sz->scale_cols + c / sc->group;
    const uint8_t *p = m->scale;
    float s = 1.0f;
    *saturated = 0;
    switch (sc->sdt) {
    case DSQ_DT_F32: s = dsq_lef32(p + 4 * idx); break;
    case DSQ_DT_F16: s = dsq_f16_to_f32(dsq_le16(p + 2 * idx)); *saturated = s == 65504.0f; break;
    case DSQ_DT_BF16: s = dsq_bf16_to_f32(dsq_le16(p + 2 * idx)); *saturated = dsq_le16(p + 2 * idx) == 0x7F7F; break;
    case DSQ_DT_F8_E8M0: s = dsq_ue8m0_to_f32(p[idx]); break;
    default: break;
    }
    return s;
}

static int same_bits(float a, float b) {
    return !memcmp(&a, &b, 4) || (isnan(a) && isnan(b));
}

/* ggml blocks: every output is finite (f16 scales saturate), and where the
 * block's largest finite |x| leaves the f16 scales unsaturated, no finite
 * element is off by more than twice that. */
static void check_ggml(const dsq_qscheme *sc, const dsq_qmat *m, const float *x, const float *y) {
    const int64_t B = sc->group;
    for (int64_t r = 0; r < m->rows; r++)
        for (int64_t b = 0; b < m->cols; b += B) {
            const float *xb = x + r * m->cols + b, *yb = y + r * m->cols + b;
            double amax = 0;
            for (int64_t e = 0; e < B; e++)
                if (isfinite(xb[e])) amax = fmax(amax, fabs((double)xb[e]));
            for (int64_t e = 0; e < B; e++) {
                FUZZ_CHECK(isfinite(yb[e]));
                if (isfinite(xb[e]) && amax < 1e4) FUZZ_CHECK(fabs((double)xb[e] - yb[e]) <= 2 * amax);
            }
        }
}

/* Element-wise promises for x -> y. */
static void check_values(const dsq_qscheme *sc, const dsq_qmat *m, const dsq_qsizes *sz,
                         const float *x, const float *y, int absmax) {
    if (sc->kind == DSQ_QK_GGML) {
        check_ggml(sc, m, x, y);
        return;
    }
    for (int64_t r = 0; r < m->rows; r++)
        for (int64_t c = 0; c < m->cols; c++) {
            float xv = x[r * m->cols + c], yv = y[r * m->cols + c];
            if (sc->kind == DSQ_QK_FLOAT) {
                float want = sc->elem == DSQ_DT_F32 ? xv
                           : sc->elem == DSQ_DT_F16 ? dsq_f16_to_f32(dsq_f32_to_f16(xv))
                                                    : dsq_bf16_to_f32(dsq_f32_to_bf16(xv));
                FUZZ_CHECK(same_bits(want, yv));
                continue;
            }
            int sat;
            float s = unit_scale(sc, m, sz, r, c, &sat);
            FUZZ_CHECK(isfinite(s) && s > 0);
            if (isnan(xv)) {
                FUZZ_CHECK(sc->kind == DSQ_QK_FP8 ? isnan(yv) : yv == 0);
                continue;
            }
            if (isinf(xv)) {
                FUZZ_CHECK(!isnan(yv) && (xv > 0 ? yv >= 0 : yv <= 0));
                if (sc->kind == DSQ_QK_FP8) FUZZ_CHECK(yv == (xv > 0 ? 448.0f : -448.0f) * s);
                continue;
            }
            FUZZ_CHECK(!isnan(yv));
            /* Near FLT_MAX the stored scale, rounded up, times the extreme
             * code passes FLT_MAX: FLT_MAX decodes to inf in fp8-*-ue8m0
             * (256 * 2^120), int8-channel and int4 asym.  Only "not NaN"
             * is promised there. */
            if (fabsf(xv) > 1e36f) continue;
            FUZZ_CHECK(isfinite(yv));
            if (!absmax || sat) continue;
            double ax = fabs((double)xv), err = fabs((double)xv - (double)yv);
            double slop = ax * 0x1p-20 + (double)s * 0x1p-20 + 1e-44;
            double bound = sc->kind == DSQ_QK_FP8 ? fmax(ax / 16, (double)s / 1024) * (1 + 0x1p-20)
                                                  : (double)s / 2;
            FUZZ_CHECK(err <= bound + slop);
        }
}

/* Write the matrix (and, stacked, a second expert) into a container, read it
 * back and compare. */
static void container_trip(const qbuf *q, const qbuf *q2, const dsq_qsizes *sz, int experts,
                           const float *deq, const uint8_t *data, size_t size) {
    const char *path = fuzz_path(fuzz_dir("round_trip"), "rt.dsq");
    const dsq_qmat *m = &q->m;
    dsq_err err = {0};
    dsq_ctrw *w;
    FUZZ_CHECK(dsq_ctrw_open(&w, path, 1, &err) == DSQ_OK);
    dsq_ctw_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "model.layers.1.mlp.experts.down_proj.weight";
    t.role = DSQ_R_UNKNOWN;
    t.layer = -1;
    t.experts = experts;
    t.scheme = m->type;
    t.rows = m->rows;
    t.cols = m->cols;
    if (experts) {
        t.n_dims = 3;
        t.shape[0] = experts; t.shape[1] = m->rows; t.shape[2] = m->cols;
    } else if (m->rows == 1) {
        t.n_dims = 1;
        t.shape[0] = m->cols;
    } else {
        t.n_dims = 2;
        t.shape[0] = m->rows; t.shape[1] = m->cols;
    }
    t.recipe = "{\"rule\": 0}";
    FUZZ_CHECK(dsq_ctrw_add_tensor(w, &t, &err) == 0);
    size_t fl = size < 100 ? size : 100;
    FUZZ_CHECK(dsq_ctrw_add_file(w, "tokenizer.json", data, fl, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_ctrw_layout(w, &err) == DSQ_OK);
    uint64_t n[3] = {sz->data, sz->scale, sz->zero};
    for (int e = 0; e < (experts ? experts : 1); e++)
        for (int k = 0; k < 3; k++)
            if (n[k]) {
                FUZZ_CHECK(dsq_ctrw_slice_size(w, 0, k) == n[k]);
                FUZZ_CHECK(dsq_ctrw_write(w, 0, e, k, (e ? q2 : q)->p[k], n[k], &err) == DSQ_OK);
            }
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "config_json", fuzz_shape_json());
    char *ms = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    FUZZ_CHECK(ms != NULL);
    int rc = dsq_ctrw_finish(w, ms, &err);
    free(ms);
    FUZZ_CHECK(rc == DSQ_OK);

    dsq_ctr *c;
    rc = dsq_ctr_open(&c, path, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    FUZZ_CHECK(rc == DSQ_OK);
    FUZZ_CHECK(dsq_ctr_verify(c, NULL, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_ctr_n_tensors(c) == 1);
    const dsq_ctensor *ct = dsq_ctr_tensor(c, 0);
    FUZZ_CHECK(ct->scheme == m->type && ct->rows == m->rows && ct->cols == m->cols);
    FUZZ_CHECK(ct->experts == experts && ct->n_dims == t.n_dims);
    for (int e = 0; e < (experts ? experts : 1); e++) {
        dsq_qmat cm;
        FUZZ_CHECK(dsq_ctr_qmat(c, 0, e, &cm, &err) == DSQ_OK);
        const qbuf *src = e ? q2 : q;
        void *arr[3] = {cm.data, cm.scale, cm.zero};
        for (int k = 0; k < 3; k++) {
            FUZZ_CHECK(!n[k] == !arr[k]);
            if (n[k]) FUZZ_CHECK(!memcmp(arr[k], src->p[k], n[k]));
        }
        if (e == 0 && m->rows * m->cols > 0) {
            float *y = malloc(sizeof *y * (size_t)(m->rows * m->cols));
            FUZZ_CHECK(y && dsq_q_dequantize(&cm, 0, m->rows, y, &err) == DSQ_OK);
            FUZZ_CHECK(!memcmp(y, deq, sizeof *y * (size_t)(m->rows * m->cols)));
            free(y);
        }
    }
    char *f = NULL;
    size_t len = 0;
    FUZZ_CHECK(dsq_ctr_file(c, "tokenizer.json", &f, &len, &err) == DSQ_OK);
    FUZZ_CHECK(len == fl && !memcmp(f, data, fl));
    free(f);
    dsq_ctr_close(c);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t hdr[6] = {0};
    memcpy(hdr, data, size < 6 ? size : 6);
    const uint8_t *pay = size > 6 ? data + 6 : NULL;
    size_t np = size > 6 ? size - 6 : 0;
    int type = hdr[0] % DSQ_Q_COUNT;
    int64_t rows = hdr[1], cols = dsq_le16(hdr + 2) % 1025;
    if (dsq_q_scheme(type)->kind == DSQ_QK_GGML) cols -= cols % dsq_q_scheme(type)->group; /* whole blocks */
    while (rows * cols > MAX_ELEMS) rows /= 2;
    unsigned fl = hdr[4];
    static const int clips[4] = {0, 0, 3, 20};
    dsq_qopts opt = {NULL, clips[fl & 3], (fl & 4) ? (float)(hdr[5] + 1) / 257.0f : 0.0f, 0};
    int absmax = opt.clip_steps < 2;
    const dsq_qscheme *sc = dsq_q_scheme(type);
    FUZZ_CHECK(sc != NULL);
    dsq_codecs_init();

    int64_t ne = rows * cols;
    float *x = malloc(sizeof *x * (size_t)(ne + 1));
    float *imp = malloc(sizeof *imp * (size_t)(cols + 1));
    FUZZ_CHECK(x && imp);
    size_t w = (fl & 16) ? 2 : 4;
    for (int64_t k = 0; k < ne; k++) {
        uint8_t b[4] = {0};
        for (size_t j = 0; j < w && np; j++) b[j] = pay[((size_t)k * w + j) % np];
        x[k] = w == 2 ? dsq_bf16_to_f32(dsq_le16(b)) : dsq_lef32(b);
    }
    for (int64_t c = 0; c < cols; c++) imp[c] = (float)(c % 7) * 0.5f;
    if (fl & 8) opt.imp = imp;

    dsq_err err = {0};
    dsq_qsizes sz;
    FUZZ_CHECK(dsq_q_sizes(type, rows, cols, &sz, &err) == DSQ_OK);
    dsq_qmat src = {DSQ_Q_F32, rows, cols, x, NULL, NULL};
    qbuf a, b, s, p;
    qbuf_init(&a, type, rows, cols, &sz, 0x00);
    qbuf_init(&b, type, rows, cols, &sz, 0xFF);
    qbuf_init(&s, type, rows, cols, &sz, 0x5A);
    qbuf_init(&p, type, rows, cols, &sz, 0xA5);

    /* fast and reference paths, every byte written */
    FUZZ_CHECK(dsq_q_prepare(&src, &a.m, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_quantize(&src, &a.m, 0, rows, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_prepare_ref(&src, &b.m, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_quantize_ref(&src, &b.m, 0, rows, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(qbuf_same(&a, &b, &sz));
    /* two row ranges split on row_unit; the pool driver inline */
    int64_t unit = dsq_q_row_unit(type), mid = (rows / 2) / unit * unit;
    FUZZ_CHECK(dsq_q_prepare(&src, &s.m, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_quantize(&src, &s.m, mid, rows, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_quantize(&src, &s.m, 0, mid, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(qbuf_same(&a, &s, &sz));
    FUZZ_CHECK(dsq_q_quantize_pool(NULL, &src, &p.m, &opt, &err) == DSQ_OK);
    FUZZ_CHECK(qbuf_same(&a, &p, &sz));

    float *y = malloc(sizeof *y * (size_t)(ne + 1)), *y2 = malloc(sizeof *y2 * (size_t)(ne + 1));
    FUZZ_CHECK(y && y2);
    FUZZ_CHECK(dsq_q_dequantize(&a.m, 0, rows, y, &err) == DSQ_OK);
    FUZZ_CHECK(dsq_q_dequantize_ref(&a.m, 0, rows, y2, &err) == DSQ_OK);
    FUZZ_CHECK(!memcmp(y, y2, sizeof *y * (size_t)ne));
    check_values(sc, &a.m, &sz, x, y, absmax);

    if (fl & 32) {
        int experts = (fl & 64) ? 2 : 0;
        /* the second expert holds the negated matrix */
        for (int64_t k = 0; k < ne; k++) x[k] = -x[k];
        FUZZ_CHECK(dsq_q_quantize_pool(NULL, &src, &s.m, &opt, &err) == DSQ_OK);
        container_trip(&a, &s, &sz, experts, y, data, size);
    }
    qbuf_free(&a);
    qbuf_free(&b);
    qbuf_free(&s);
    qbuf_free(&p);
    free(x);
    free(imp);
    free(y);
    free(y2);
    return 0;
}
