/*
 * test_ggml_blocks.c -- the ggml block schemes (quant/ggml_blocks.h) on their
 * own: traits and sizes; hand-made blocks with known values; every decoder
 * against an element-by-element decoder written from quant.h's layout text;
 * quantization error bounds; all-zero, NaN, infinite, huge, tiny and
 * zero-importance blocks; AVX2 against scalar (dequantize, the search
 * kernels, and quantized bytes); and the dsq_q_* matrix driver with these
 * schemes (sources, windows, long rows, threads, refusals).  The comparison
 * with llama.cpp's own library is in test_ggml_ref.c.
 */
#include "test.h"
#include "quant/quant.h"
#include "quant/ggml_blocks.h"
#include "quant/dtype.h"
#include "common.h"
#include "pool.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static uint64_t g_rng;
static uint32_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static double urand(void) { return (rnd() + 0.5) / 4294967296.0; }
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
static int same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

/* Weight-like values: Gaussian, 1% outliers at 6 sigma, per-row scale. */
static void fill_weights(float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.02 * exp(0.5 * gauss());
        for (int64_t c = 0; c < cols; c++) {
            double g = gauss();
            if (urand() < 0.01) g *= 6;
            x[r * cols + c] = (float)(g * s);
        }
    }
}

static const int g_ids[DSQ_GB_COUNT] = {8, 2, 3, 6, 7, 10, 11, 12, 13, 14, 20, 23};

static int scheme_of(int i) { return DSQ_Q_GGML_Q8_0 + i; }

/* ---- traits ------------------------------------------------------------------ */

TEST(test_ggml_blocks_traits) {
    static const char *names[DSQ_GB_COUNT] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k",
                                              "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"};
    static const int blck[DSQ_GB_COUNT] = {32, 32, 32, 32, 32, 256, 256, 256, 256, 256, 32, 256};
    static const int bytes[DSQ_GB_COUNT] = {34, 18, 20, 22, 24, 84, 110, 144, 176, 210, 18, 136};
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        int t = scheme_of(i);
        const dsq_qscheme *s = dsq_q_scheme(t);
        const dsq_gbtype *g = dsq_gb_type(i);
        CHECK(s && g);
        CHECKF(!strcmp(s->name, names[i]) && !strcmp(g->name, names[i]), "scheme %d is %s", t, s->name);
        CHECK(dsq_q_from_name(names[i]) == t);
        CHECK(s->kind == DSQ_QK_GGML && s->gran == DSQ_QG_GGML && s->group == blck[i]);
        CHECK(g->blck == blck[i] && g->bytes == bytes[i] && g->ggml_type == g_ids[i]);
        CHECK(dsq_q_ggml_type(t) == g_ids[i] && dsq_q_from_ggml_type(g_ids[i]) == t);
        CHECK(s->bpw == 8.0 * bytes[i] / blck[i]);
        dsq_qsizes z;
        dsq_err e;
        CHECK(dsq_q_sizes(t, 3, 2 * 256, &z, &e) == DSQ_OK);
        CHECK(z.row_bytes == (uint64_t)(512 / blck[i] * bytes[i]) && z.data == 3 * z.row_bytes);
        CHECK(z.scale == 0 && z.zero == 0 && z.scale_rows == 0 && z.scale_cols == 0);
        CHECK(dsq_q_bpw(t, 7, 1024) == s->bpw);
        CHECK(dsq_q_sizes(t, 3, blck[i] + 16, &z, &e) == DSQ_E_ARG);
        CHECKF(strstr(e.msg, names[i]) && strstr(e.msg, "multiple"), "message: %s", e.msg);
        CHECK(dsq_q_sizes(t, 3, 0, &z, &e) == DSQ_OK && z.data == 0);
        float s0;
        int z0;
        CHECK(dsq_q_params(t, -1, 1, &s0, &z0, NULL) == DSQ_E_ARG);
    }
    CHECK(dsq_q_ggml_type(DSQ_Q_F32) == 0 && dsq_q_ggml_type(DSQ_Q_F16) == 1 && dsq_q_ggml_type(DSQ_Q_BF16) == 30);
    CHECK(dsq_q_ggml_type(DSQ_Q_INT4_G32_SYM) == -1 && dsq_q_from_ggml_type(9) == -1);
    CHECK(dsq_q_find(DSQ_QK_GGML, DSQ_QG_GGML, 32, 1, DSQ_DT_INVALID) == -1);
    CHECK(dsq_gb_type(DSQ_GB_COUNT) == NULL && dsq_gb_type(-1) == NULL);
}

/* ---- an independent decoder, element by element, from quant.h -------------------- */

static float f16at(const uint8_t *p) { return dsq_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static int nib(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; } /* 32-element order */
static const int K[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void k4_sm(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Element e of block p of type i (finite f16 fields). */
static float spec_decode(int i, const uint8_t *p, int e) {
    switch (i) {
    case DSQ_GB_Q8_0: return (float)(int8_t)p[2 + e] * f16at(p);
    case DSQ_GB_Q4_0: return (float)(nib(p + 2, e) - 8) * f16at(p);
    case DSQ_GB_Q4_1: return (float)nib(p + 4, e) * f16at(p) + f16at(p + 2);
    case DSQ_GB_Q5_0: {
        uint32_t qh = dsq_le32(p + 2);
        return (float)((nib(p + 6, e) | (int)((qh >> e) & 1) << 4) - 16) * f16at(p);
    }
    case DSQ_GB_Q5_1: {
        uint32_t qh = dsq_le32(p + 4);
        return (float)(nib(p + 8, e) | (int)((qh >> e) & 1) << 4) * f16at(p) + f16at(p + 2);
    }
    case DSQ_GB_IQ4_NL: return f16at(p) * (float)K[nib(p + 2, e)];
    case DSQ_GB_Q2_K: {
        int h = e / 128, k = (e / 32) % 4, l = e % 32, sc = p[e / 16];
        int q = (p[16 + 32 * h + l] >> (2 * k)) & 3;
        return (f16at(p + 80) * (float)(sc & 15)) * (float)q - (f16at(p + 82) * (float)(sc >> 4));
    }
    case DSQ_GB_Q3_K: {
        int h = e / 128, k = (e / 32) % 4, l = e % 32, j = e / 16;
        const uint8_t *s = p + 96;
        int sj = (j < 8 ? s[j] & 15 : s[j - 8] >> 4) | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
        int low = (p[32 + 32 * h + l] >> (2 * k)) & 3, hb = (p[e % 32] >> (e / 32)) & 1;
        return (f16at(p + 108) * (float)(sj - 32)) * (float)(low - (hb ? 0 : 4));
    }
    case DSQ_GB_Q4_K:
    case DSQ_GB_Q5_K: {
        int c = e / 64, l = e % 32, hi = (e / 32) & 1, j = e / 32, sc, mn;
        k4_sm(p + 4, j, &sc, &mn);
        const uint8_t *qs = p + (i == DSQ_GB_Q4_K ? 16 : 48);
        int q = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
        if (i == DSQ_GB_Q5_K) q += ((p[16 + l] >> (2 * c + hi)) & 1) << 4;
        return (f16at(p) * (float)sc) * (float)q - (f16at(p + 2) * (float)mn);
    }
    case DSQ_GB_Q6_K: {
        int h = e / 128, k = (e / 32) % 4, l = e % 32;
        int lo = p[64 * h + l + 32 * (k & 1)];
        lo = k >= 2 ? lo >> 4 : lo & 15;
        int hi = (p[128 + 32 * h + l] >> (2 * k)) & 3;
        return (f16at(p + 208) * (float)(int8_t)p[192 + e / 16]) * (float)((lo | hi << 4) - 32);
    }
    case DSQ_GB_IQ4_XS: {
        int j = e / 32, sh = p[2] | p[3] << 8;
        int ls = ((p[4 + j / 2] >> (4 * (j % 2))) & 15) | ((sh >> (2 * j)) & 3) << 4;
        return (f16at(p) * (float)(ls - 32)) * (float)K[nib(p + 8 + 16 * j, e % 32)];
    }
    }
    return NAN;
}

/* A random finite f16 of moderate size (either sign). */
static void rand_f16(uint8_t *p) {
    uint16_t h = (uint16_t)(((rnd() % 20 + 5) << 10) | (rnd() & 0x83FF));
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}
/* Byte offsets of the f16 fields of type i. */
static int f16_fields(int i, int *off) {
    switch (i) {
    case DSQ_GB_Q4_1:
    case DSQ_GB_Q5_1:
    case DSQ_GB_Q4_K:
    case DSQ_GB_Q5_K: off[0] = 0; off[1] = 2; return 2;
    case DSQ_GB_Q2_K: off[0] = 80; off[1] = 82; return 2;
    case DSQ_GB_Q3_K: off[0] = 108; return 1;
    case DSQ_GB_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; return 1;
    }
}

TEST(test_ggml_blocks_spec_decode) {
    g_rng = 11;
    uint8_t blk[256];
    float y[256], z[256];
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        const dsq_gbkern *fast = dsq_gbkern_best();
        for (int rep = 0; rep < 300; rep++) {
            for (int k = 0; k < g->bytes; k++) blk[k] = (uint8_t)rnd();
            int off[2], nf = f16_fields(i, off);
            for (int f = 0; f < nf; f++) rand_f16(blk + off[f]);
            g->dequantize_ref(blk, y, g->blck);
            fast->dq[i](blk, z, g->blck);
            for (int e = 0; e < g->blck; e++) {
                float want = spec_decode(i, blk, e);
                CHECKF(same_bits(y[e], want), "%s elem %d: %a, layout says %a", g->name, e, (double)y[e],
                       (double)want);
                CHECKF(same_bits(z[e], want), "%s (%s) elem %d: %a vs %a", g->name, fast->name, e, (double)z[e],
                       (double)want);
            }
        }
    }
}

/* ---- known answers ---------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Decode one block of type i through the matrix API (fast and reference). */
static int decode1(int i, const void *blk, float *out) {
    const dsq_gbtype *g = dsq_gb_type(i);
    dsq_qmat m = {scheme_of(i), 1, g->blck, (void *)blk, NULL, NULL};
    float tmp[256];
    if (dsq_q_dequantize(&m, 0, 1, out, NULL) != DSQ_OK) return 0;
    if (dsq_q_dequantize_ref(&m, 0, 1, tmp, NULL) != DSQ_OK) return 0;
    return memcmp(tmp, out, sizeof(float) * (size_t)g->blck) == 0;
}

TEST(test_ggml_blocks_known_answers) {
    uint8_t b[256];
    float y[256];

    memset(b, 0, sizeof b); /* q8_0: d = 0.5 */
    put16(b, 0x3800);
    b[2] = (uint8_t)-127; b[3] = (uint8_t)-1; b[5] = 1; b[6] = 127;
    CHECK(decode1(DSQ_GB_Q8_0, b, y));
    CHECK(y[0] == -63.5f && y[1] == -0.5f && y[2] == 0 && y[3] == 0.5f && y[4] == 63.5f);

    memset(b, 0, sizeof b); /* q4_0: d = 2, byte 0 = 0x0F */
    put16(b, 0x4000);
    b[2] = 0x0F;
    CHECK(decode1(DSQ_GB_Q4_0, b, y));
    CHECK(y[0] == 14 && y[16] == -16 && y[1] == -16);

    memset(b, 0, sizeof b); /* q4_1: d = 1, m = -1, byte 0 = 0x5A */
    put16(b, 0x3C00);
    put16(b + 2, 0xBC00);
    b[4] = 0x5A;
    CHECK(decode1(DSQ_GB_Q4_1, b, y));
    CHECK(y[0] == 9 && y[16] == 4 && y[1] == -1);

    memset(b, 0, sizeof b); /* q5_0: d = 1, qh bit 0, byte 0 = 0x03 */
    put16(b, 0x3C00);
    b[2] = 1;
    b[6] = 0x03;
    CHECK(decode1(DSQ_GB_Q5_0, b, y));
    CHECK(y[0] == 3 && y[16] == -16 && y[1] == -16);

    memset(b, 0, sizeof b); /* q5_1: d = 0.5, m = 1, qh bit 17, byte 1 = 0xF0 */
    put16(b, 0x3800);
    put16(b + 2, 0x3C00);
    b[4 + 2] = 0x02;
    b[8 + 1] = 0xF0;
    CHECK(decode1(DSQ_GB_Q5_1, b, y));
    CHECK(y[17] == 0.5f * 31 + 1 && y[1] == 1);

    memset(b, 0, sizeof b); /* iq4_nl: d = 1, byte 0 = 0xF0 */
    put16(b, 0x3C00);
    b[2] = 0xF0;
    CHECK(decode1(DSQ_GB_IQ4_NL, b, y));
    CHECK(y[0] == -127 && y[16] == 113);

    memset(b, 0, sizeof b); /* q2_k: d = 2, dmin = 1, sub-block 7: sc 3 mn 4, elem 120 code 3 */
    put16(b + 80, 0x4000);
    put16(b + 82, 0x3C00);
    b[7] = 3 | 4 << 4;
    b[16 + 24] = 0xC0;
    CHECK(decode1(DSQ_GB_Q2_K, b, y));
    CHECK(y[120] == 14 && y[121] == -4 && y[0] == 0);

    memset(b, 0, sizeof b); /* q3_k: d = 1, s_10 = 5 (stored 37), elem 165 low 3 high 1 */
    put16(b + 108, 0x3C00);
    b[96 + 2] = 0x50;
    b[96 + 10] = 0x20;
    b[32 + 37] = 0x0C;
    b[5] = 1 << 5;
    CHECK(decode1(DSQ_GB_Q3_K, b, y));
    CHECK(y[165] == 15 && y[166] == -20 && y[0] == 128); /* s_0 stored 0: -32 times code -4 */

    memset(b, 0, sizeof b); /* q4_k: d = 1, dmin = 0.5, sub-block 5: sc 45 mn 33, elem 163 code 7 */
    put16(b, 0x3C00);
    put16(b + 2, 0x3800);
    b[4 + 9] = 0x1D;
    b[4 + 1] = 0x80;
    b[4 + 5] = 0x80;
    b[16 + 64 + 3] = 0x70;
    CHECK(decode1(DSQ_GB_Q4_K, b, y));
    CHECK(y[163] == 298.5f && y[164] == -16.5f && y[0] == 0);

    memset(b, 0, sizeof b); /* q5_k: same scales, elem 163 code 7 + 16 (qh[3] bit 5) */
    put16(b, 0x3C00);
    put16(b + 2, 0x3800);
    b[4 + 9] = 0x1D;
    b[4 + 1] = 0x80;
    b[4 + 5] = 0x80;
    b[48 + 64 + 3] = 0x70;
    b[16 + 3] = 1 << 5;
    CHECK(decode1(DSQ_GB_Q5_K, b, y));
    CHECK(y[163] == 45 * 23 - 16.5f && y[164] == -16.5f);

    memset(b, 0, sizeof b); /* q6_k: d = 0.25, scale 3 = -2, elem 50 code 37 */
    put16(b + 208, 0x3400);
    b[192 + 3] = (uint8_t)-2;
    b[50] = 0x05;
    b[128 + 18] = 0x08;
    CHECK(decode1(DSQ_GB_Q6_K, b, y));
    CHECK(y[50] == -2.5f && y[51] == 16.0f);

    memset(b, 0, sizeof b); /* iq4_xs: d = 0.5, sub-block 3 ls = 40, elem 98 index 9 */
    put16(b, 0x3800);
    b[4 + 1] = 0x80;
    b[2] = 0x80;
    b[8 + 48 + 2] = 0x09;
    CHECK(decode1(DSQ_GB_IQ4_XS, b, y));
    CHECK(y[98] == 52 && y[99] == 0.5f * 8 * -127 && y[0] == 0.5f * -32 * -127);
}

/* ---- quantization -------------------------------------------------------------------- */

/* Relative error bounds, sum (x - y)^2 / sum x^2 on fill_weights data: about
 * 1.3x what the quantizers reach (and above llama.cpp's own figures). */
static const double g_rel_bound[DSQ_GB_COUNT] = {8e-5, 1.9e-2, 9e-3, 4.7e-3, 2.2e-3, 0.105,
                                                 4.2e-2, 9.2e-3, 2.3e-3, 7e-4, 1.2e-2, 1.2e-2};

static double rel_err(const float *x, const float *y, const float *imp, int64_t rows, int64_t cols) {
    double e = 0, s = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double w = imp ? imp[c] : 1, d = (double)x[r * cols + c] - y[r * cols + c];
            e += w * d * d;
            s += w * (double)x[r * cols + c] * x[r * cols + c];
        }
    return e / s;
}

/* Quantize an f32 matrix into scheme t (all rows, fast path); returns the
 * data (malloc'd) or NULL. */
static uint8_t *quant_f32(int t, const float *x, int64_t rows, int64_t cols, const float *imp, int ref) {
    dsq_qsizes z;
    if (dsq_q_sizes(t, rows, cols, &z, NULL) != DSQ_OK) return NULL;
    uint8_t *q = malloc(z.data + 1);
    memset(q, 0xA5, z.data + 1);
    dsq_qmat src = {DSQ_Q_F32, rows, cols, (void *)x, NULL, NULL}, dst = {t, rows, cols, q, NULL, NULL};
    dsq_qopts o = {imp, 0, 0, 0};
    int rc = ref ? dsq_q_quantize_ref(&src, &dst, 0, rows, &o, NULL) : dsq_q_quantize(&src, &dst, 0, rows, &o, NULL);
    if (rc != DSQ_OK || q[z.data] != 0xA5) {
        free(q);
        return NULL;
    }
    return q;
}

static int dequant(int t, const uint8_t *q, int64_t rows, int64_t cols, float *y) {
    dsq_qmat m = {t, rows, cols, (void *)q, NULL, NULL};
    return dsq_q_dequantize(&m, 0, rows, y, NULL) == DSQ_OK;
}

TEST(test_ggml_blocks_error_bounds) {
    enum { R = 16, C = 1024 };
    static float x[R * C], y[R * C], imp[C];
    g_rng = 5;
    fill_weights(x, R, C);
    for (int c = 0; c < C; c++) imp[c] = (float)exp(1.5 * gauss());
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        int t = scheme_of(i);
        uint8_t *q = quant_f32(t, x, R, C, NULL, 0), *qi = quant_f32(t, x, R, C, imp, 0);
        CHECK(q && qi);
        CHECK(dequant(t, q, R, C, y));
        double e = rel_err(x, y, NULL, R, C), ew0 = rel_err(x, y, imp, R, C);
        CHECKF(e < g_rel_bound[i], "%s: relative error %.3g above %.3g", dsq_gb_type(i)->name, e, g_rel_bound[i]);
        CHECK(dequant(t, qi, R, C, y));
        double ew = rel_err(x, y, imp, R, C);
        /* the importance must buy a lower weighted error (Q8_0's margin is thin) */
        CHECKF(ew < ew0 * (i == DSQ_GB_Q8_0 ? 1.0 : 0.98), "%s: weighted error %.4g with importance, %.4g without",
               dsq_gb_type(i)->name, ew, ew0);
        free(q);
        free(qi);
    }
}

/* Exact bytes of the all-zero block, and values that must come back. */
TEST(test_ggml_blocks_edge_values) {
    float x[256], y[256];
    uint8_t q[256];
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        const int n = g->blck;
        /* all zero (and -0): d = 0 and the codes of 0 */
        for (int e = 0; e < n; e++) x[e] = (e & 1) ? -0.0f : 0.0f;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        for (int e = 0; e < n; e++) CHECKF(y[e] == 0, "%s zero block elem %d = %g", g->name, e, (double)y[e]);
        int off[2], nf = f16_fields(i, off);
        for (int f = 0; f < nf; f++) CHECK(q[off[f]] == 0 && q[off[f] + 1] == 0);

        /* one non-zero value: it comes back (within its code step), the rest ~0 */
        for (int e = 0; e < n; e++) x[e] = 0;
        x[n / 3] = -3.25f;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        CHECKF(fabsf(y[n / 3] + 3.25f) < 0.02f, "%s single value -> %g", g->name, (double)y[n / 3]);
        for (int e = 0; e < n; e++)
            if (e != n / 3) CHECKF(fabsf(y[e]) < 0.06f, "%s zero elem %d -> %g", g->name, e, (double)y[e]);

        /* NaN and infinities among ordinary values */
        g_rng = 77 + (uint64_t)i;
        for (int e = 0; e < n; e++) x[e] = (float)gauss();
        x[1] = NAN;
        x[2] = INFINITY;
        x[3] = -INFINITY;
        x[4] = 0.0f;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        float lo = INFINITY, hi = -INFINITY;
        for (int e = 0; e < n; e++) {
            CHECKF(isfinite(y[e]), "%s non-finite output at %d", g->name, e);
            lo = fminf(lo, y[e]);
            hi = fmaxf(hi, y[e]);
        }
        /* +inf takes the largest value of its sub-block's grid, -inf the smallest;
         * NaN the code nearest 0 */
        int sub = i == DSQ_GB_Q2_K || i == DSQ_GB_Q3_K || i == DSQ_GB_Q6_K ? 16 : 32;
        CHECKF(y[2] > 0 && y[3] < 0, "%s: +inf -> %g, -inf -> %g", g->name, (double)y[2], (double)y[3]);
        for (int e = 0; e < sub; e++)
            CHECKF(y[2] >= y[e] && y[3] <= y[e], "%s: +inf -> %g, -inf -> %g, elem %d -> %g", g->name,
                   (double)y[2], (double)y[3], e, (double)y[e]);
        CHECKF(fabsf(y[1] - y[4]) <= 1e-6f, "%s: NaN -> %g, 0 -> %g", g->name, (double)y[1], (double)y[4]);
        for (int e = 5; e < n; e++)
            CHECKF(fabsf(y[e] - x[e]) < 1.5f, "%s elem %d: %g -> %g", g->name, e, (double)x[e], (double)y[e]);

        /* huge values: f16 scales saturate, output stays finite and ordered */
        for (int e = 0; e < n; e++) x[e] = (e % 5 - 2) * 1e30f;
        x[0] = FLT_MAX;
        x[1] = -FLT_MAX;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        for (int e = 0; e < n; e++) CHECKF(isfinite(y[e]), "%s huge: elem %d = %g", g->name, e, (double)y[e]);
        CHECKF(y[0] >= 65504 && y[1] <= -65504, "%s huge: %g %g", g->name, (double)y[0], (double)y[1]);

        /* tiny and subnormal values: a block with no representable scale is 0,
         * and nothing goes non-finite */
        for (int e = 0; e < n; e++) x[e] = (float)gauss() * 1e-39f;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        for (int e = 0; e < n; e++) CHECKF(isfinite(y[e]) && fabsf(y[e]) < 1e-6f, "%s tiny elem %d", g->name, e);
        /* values that f16 scales still resolve (x ~ 1e-3) keep their accuracy */
        for (int e = 0; e < n; e++) x[e] = (float)gauss() * 1e-3f;
        g->quantize_ref(x, NULL, q, n);
        g->dequantize_ref(q, y, n);
        double se = 0, sx = 0;
        for (int e = 0; e < n; e++) {
            se += (double)(x[e] - y[e]) * (x[e] - y[e]);
            sx += (double)x[e] * x[e];
        }
        CHECKF(se / sx < 3 * g_rel_bound[i] + 1e-4, "%s small values: rel %.3g", g->name, se / sx);

        /* all-zero importance is the same as no importance information at all
         * for the choices (a valid block that decodes close to x) */
        float imp[256] = {0};
        for (int e = 0; e < n; e++) x[e] = (float)gauss();
        g->quantize_ref(x, imp, q, n);
        g->dequantize_ref(q, y, n);
        se = sx = 0;
        for (int e = 0; e < n; e++) {
            se += (double)(x[e] - y[e]) * (x[e] - y[e]);
            sx += (double)x[e] * x[e];
        }
        CHECKF(se / sx < 3 * g_rel_bound[i], "%s zero importance: rel %.3g", g->name, se / sx);
    }
}

/* ---- SIMD ------------------------------------------------------------------------------ */

static const dsq_gbkern *fast_kern(void) {
    const dsq_gbkern *k = dsq_gbkern_best();
    return k == &dsq_gbkern_ref ? NULL : k;
}

/* Dequantizers on raw random bytes: every f16 pattern (NaN payloads, inf,
 * subnormals), bit for bit. */
TEST(test_ggml_blocks_simd_dequant) {
    const dsq_gbkern *k = fast_kern();
    if (!k) SKIP("no SIMD kernels in this build or on this CPU");
    enum { NB = 64 };
    static uint8_t buf[NB * 210];
    static float a[NB * 256], b[NB * 256];
    g_rng = 3;
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < DSQ_GB_COUNT; i++) {
            const dsq_gbtype *g = dsq_gb_type(i);
            for (int j = 0; j < NB * g->bytes; j++) buf[j] = (uint8_t)rnd();
            if (rep & 1) { /* special f16 fields */
                static const uint16_t sp[] = {0x7C00, 0xFC00, 0x7E00, 0x7D01, 0xFE55, 0x0001, 0x8001, 0x03FF,
                                              0x7BFF, 0x0000, 0x8000};
                int off[2], nf = f16_fields(i, off);
                for (int bl = 0; bl < NB; bl++)
                    for (int f = 0; f < nf; f++) put16(buf + bl * g->bytes + off[f], sp[rnd() % 11]);
            }
            g->dequantize_ref(buf, a, NB * g->blck);
            k->dq[i](buf, b, NB * g->blck);
            CHECKF(memcmp(a, b, sizeof(float) * NB * (size_t)g->blck) == 0, "%s: %s dequantize differs", g->name,
                   k->name);
        }
}

/* The search kernels on random inputs and candidates. */
TEST(test_ggml_blocks_simd_search) {
    const dsq_gbkern *k = fast_kern();
    if (!k) SKIP("no SIMD kernels in this build or on this CPU");
    const dsq_gbsearch *f = k->search, *r = &dsq_gbsearch_ref;
    float x[32], w[32], is[48], dl[48], inv[48], c[48], o1[144], o2[144];
    g_rng = 9;
    for (int rep = 0; rep < 2000; rep++) {
        int n = (rep & 1) ? 32 : 16, m = 1 + (int)(rnd() % 48);
        for (int i = 0; i < n; i++) {
            x[i] = (float)gauss() * 0.3f;
            if (rnd() % 9 == 0) x[i] = 0;
            w[i] = (float)urand() * 2;
        }
        for (int j = 0; j < m; j++) {
            is[j] = (float)(gauss() * 60);
            dl[j] = (float)(gauss() * 0.05);
            inv[j] = rnd() % 5 ? 1.0f / dl[j] : 0.0f;
            c[j] = (float)(gauss() * 0.2);
        }
        float lo = -(float)(1 + rnd() % 64), hi = -lo - 1, nmax = (float)(1 + rnd() % 31), off = (float)gauss() * 0.1f;
        r->u_sums(x, w, n, lo, hi, is, m, o1);
        f->u_sums(x, w, n, lo, hi, is, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * 2 * (size_t)m) == 0, "u_sums rep %d", rep);
        r->nl_sums(x, w, n, is, m, o1);
        f->nl_sums(x, w, n, is, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * 2 * (size_t)m) == 0, "nl_sums rep %d", rep);
        r->u_err(x, w, n, lo, hi, dl, inv, m, o1);
        f->u_err(x, w, n, lo, hi, dl, inv, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * (size_t)m) == 0, "u_err rep %d", rep);
        r->nl_err(x, w, n, dl, inv, m, o1);
        f->nl_err(x, w, n, dl, inv, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * (size_t)m) == 0, "nl_err rep %d", rep);
        r->a_sums(x, w, n, nmax, is, off, m, o1);
        f->a_sums(x, w, n, nmax, is, off, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * 3 * (size_t)m) == 0, "a_sums rep %d", rep);
        r->a_err(x, w, n, nmax, dl, inv, c, m, o1);
        f->a_err(x, w, n, nmax, dl, inv, c, m, o2);
        CHECKF(memcmp(o1, o2, sizeof(float) * (size_t)m) == 0, "a_err rep %d", rep);
    }
    /* the IQ4 index: the grid value nearest t (ties at the midpoints go up) */
    for (int i = 0; i < 8; i++) w[i] = 1;
    for (int s = -140 * 64; s <= 140 * 64; s++) {
        float t = (float)s / 64, one = 1, d1 = 1;
        for (int i = 0; i < 8; i++) x[i] = t;
        r->nl_err(x, w, 8, &d1, &one, 1, o1);
        f->nl_err(x, w, 8, &d1, &one, 1, o2);
        float best = INFINITY;
        for (int j = 0; j < 16; j++) best = fminf(best, (t - K[j]) * (t - K[j]));
        CHECKF(o1[0] == 8 * best && o2[0] == 8 * best, "IQ4 nearest of %g: %g %g vs %g", (double)t, (double)o1[0],
               (double)o2[0], (double)(8 * best));
    }
}

/* Whole quantizations: every type, with and without importance, on weights
 * and on adversarial blocks; the fast path writes the reference bytes. */
TEST(test_ggml_blocks_simd_quant) {
    enum { R = 6, C = 1024 };
    static float x[R * C], imp[C];
    g_rng = 41;
    fill_weights(x, R, C);
    /* row 1: huge, row 2: tiny, row 3: specials, row 4: zero-heavy, row 5: sparse importance */
    for (int c = 0; c < C; c++) {
        x[1 * C + c] *= 1e33f;
        x[2 * C + c] *= 1e-36f;
        if (c % 17 == 3) x[3 * C + c] = (c & 1) ? NAN : (c & 2) ? INFINITY : -INFINITY;
        if (c % 3) x[4 * C + c] = 0;
        imp[c] = (float)exp(2 * gauss());
        if (c % 5 == 0) imp[c] = 0;
    }
    for (int i = 0; i < DSQ_GB_COUNT; i++)
        for (int wi = 0; wi < 2; wi++) {
            int t = scheme_of(i);
            uint8_t *a = quant_f32(t, x, R, C, wi ? imp : NULL, 0), *b = quant_f32(t, x, R, C, wi ? imp : NULL, 1);
            CHECK(a && b);
            dsq_qsizes z;
            dsq_q_sizes(t, R, C, &z, NULL);
            CHECKF(memcmp(a, b, z.data) == 0, "%s%s: fast and reference bytes differ", dsq_gb_type(i)->name,
                   wi ? " with importance" : "");
            /* and the direct reference entry point writes the same bytes */
            uint8_t *c = malloc(z.data);
            for (int r = 0; r < R; r++)
                dsq_gb_type(i)->quantize_ref(x + r * C, wi ? imp : NULL, c + r * z.row_bytes, C);
            CHECKF(memcmp(a, c, z.data) == 0, "%s: driver and quantize_ref differ", dsq_gb_type(i)->name);
            free(a);
            free(b);
            free(c);
        }
}

/* ---- the matrix driver ------------------------------------------------------------------ */

TEST(test_ggml_blocks_driver) {
    enum { R = 5, C = 16384 + 512 }; /* rows longer than the driver's scratch */
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C), *w = malloc(sizeof(float) * R * C);
    g_rng = 8;
    fill_weights(x, R, C);
    dsq_err e;
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        int t = scheme_of(i);
        const dsq_gbtype *g = dsq_gb_type(i);
        uint8_t *q = quant_f32(t, x, R, C, NULL, 0);
        CHECK(q);
        /* row by row through quantize_ref gives the same bytes: chunking is invisible */
        dsq_qsizes z;
        dsq_q_sizes(t, R, C, &z, NULL);
        uint8_t *q2 = malloc(z.data);
        for (int r = 0; r < R; r++) g->quantize_ref(x + (int64_t)r * C, NULL, q2 + r * z.row_bytes, C);
        CHECKF(memcmp(q, q2, z.data) == 0, "%s long rows", g->name);
        /* dequantize: whole, reference, and unaligned windows */
        dsq_qmat m = {t, R, C, q, NULL, NULL};
        CHECK(dsq_q_dequantize(&m, 0, R, y, &e) == DSQ_OK);
        for (int r = 0; r < R; r++) g->dequantize_ref(q + r * z.row_bytes, w + (int64_t)r * C, C);
        CHECK(memcmp(y, w, sizeof(float) * R * C) == 0);
        static const int64_t win[][2] = {{0, 1}, {3, 29}, {31, 33}, {5, 300}, {250, 770}, {256, 512}, {C - 7, C}};
        for (size_t k = 0; k < sizeof win / sizeof win[0]; k++) {
            int64_t c0 = win[k][0], c1 = win[k][1];
            CHECK(dsq_q_dequantize_tile(&m, 1, 4, c0, c1, w, c1 - c0 + 3, &e) == DSQ_OK);
            for (int r = 1; r < 4; r++)
                CHECKF(memcmp(w + (r - 1) * (c1 - c0 + 3), y + (int64_t)r * C + c0, sizeof(float) * (size_t)(c1 - c0)) == 0,
                       "%s window [%lld, %lld)", g->name, (long long)c0, (long long)c1);
        }
        /* a ggml matrix as a source: re-quantizing into int8 reads the decoded values */
        int8_t *i8 = malloc((size_t)R * C);
        float s8[R];
        dsq_qmat d8 = {DSQ_Q_INT8_CHANNEL, R, C, i8, s8, NULL};
        CHECK(dsq_q_quantize(&m, &d8, 0, R, NULL, &e) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d8, 0, R, w, &e) == DSQ_OK);
        for (int64_t k = 0; k < (int64_t)R * C; k += 97) CHECK(fabsf(w[k] - y[k]) <= s8[k / C] * 0.5001f);
        free(i8);
        /* the same type from a bf16 and an FP8 source equals quantizing their f32 values */
        dsq_qsizes zb, zf;
        dsq_q_sizes(DSQ_Q_BF16, R, C, &zb, NULL);
        dsq_q_sizes(DSQ_Q_FP8_BLOCK, R, C, &zf, NULL);
        uint8_t *bf = malloc(zb.data), *f8 = malloc(zf.data), *f8s = malloc(zf.scale);
        dsq_qmat src32 = {DSQ_Q_F32, R, C, x, NULL, NULL}, sb = {DSQ_Q_BF16, R, C, bf, NULL, NULL};
        dsq_qmat sf = {DSQ_Q_FP8_BLOCK, R, C, f8, f8s, NULL};
        CHECK(dsq_q_quantize(&src32, &sb, 0, R, NULL, &e) == DSQ_OK);
        CHECK(dsq_q_quantize(&src32, &sf, 0, R, NULL, &e) == DSQ_OK);
        const dsq_qmat *srcs[2] = {&sb, &sf};
        for (int s = 0; s < 2; s++) {
            CHECK(dsq_q_dequantize(srcs[s], 0, R, w, &e) == DSQ_OK);
            uint8_t *qa = quant_f32(t, w, R, C, NULL, 0);
            dsq_qmat dq = {t, R, C, q2, NULL, NULL};
            CHECK(dsq_q_quantize(srcs[s], &dq, 0, R, NULL, &e) == DSQ_OK);
            CHECKF(qa && memcmp(qa, q2, z.data) == 0, "%s from source %d", g->name, s);
            free(qa);
        }
        /* threads: pool of 2 and odd row splits */
        dsq_pool *pool = dsq_pool_new(2);
        dsq_qmat dp = {t, R, C, q2, NULL, NULL};
        memset(q2, 0x33, z.data);
        CHECK(dsq_q_quantize_pool(pool, &src32, &dp, NULL, &e) == DSQ_OK);
        CHECK(memcmp(q, q2, z.data) == 0);
        memset(q2, 0x44, z.data);
        CHECK(dsq_q_quantize(&src32, &dp, 3, R, NULL, &e) == DSQ_OK);
        CHECK(dsq_q_quantize(&src32, &dp, 0, 3, NULL, &e) == DSQ_OK);
        CHECK(memcmp(q, q2, z.data) == 0);
        dsq_pool_free(pool);
        /* refusals: preset parameters, a row that is not a multiple of the block */
        dsq_qopts fx = {NULL, 0, 0, 1};
        CHECK(dsq_q_quantize(&src32, &dp, 0, R, &fx, &e) == DSQ_E_ARG);
        CHECKF(strstr(e.msg, g->name) != NULL, "message: %s", e.msg);
        dsq_qmat bad = {t, 1, g->blck + 8, q2, NULL, NULL}, bsrc = {DSQ_Q_F32, 1, g->blck + 8, x, NULL, NULL};
        CHECK(dsq_q_quantize(&bsrc, &bad, 0, 1, NULL, &e) == DSQ_E_ARG);
        CHECK(dsq_q_dequantize(&bad, 0, 1, w, &e) == DSQ_E_ARG);
        /* clip options are accepted and change nothing */
        dsq_qopts cl = {NULL, 20, 0.5f, 0};
        CHECK(dsq_q_quantize(&src32, &dp, 0, R, &cl, &e) == DSQ_OK);
        CHECK(memcmp(q, q2, z.data) == 0);
        free(bf);
        free(f8);
        free(f8s);
        free(q);
        free(q2);
    }
    free(x);
    free(y);
    free(w);
}
