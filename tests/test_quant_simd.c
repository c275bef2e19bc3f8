/*
 * test_quant_simd.c -- the fast kernels against the scalar reference: each
 * kernel on random bit patterns and constructed rounding ties, then whole
 * quantize / dequantize calls on awkward shapes (odd rows, columns that are
 * not multiples of 8, 32 or 128, zeros, huge and tiny values) from f32, bf16
 * and FP8 sources; and the 1-thread versus 2-thread identity of
 * dsq_q_quantize_pool.  In a SIMD=none build the kernel tests skip and the
 * end-to-end ones compare the reference with itself.
 */
#include "test.h"
#include "quant/quant.h"
#include "quant/quant_int.h"
#include "quant/dtype.h"
#include "common.h"
#include "pool.h"

#include <math.h>
#include <stdlib.h>

static uint64_t g_rng;
static uint32_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* Random f32 in a useful spread: any bit pattern (NaN, inf, subnormal) one
 * time in 8, otherwise sign * 2^[-40, 20) * [1, 2). */
static float any_f(void) {
    uint32_t u = rnd();
    if ((u & 7) == 0) return bits_f(rnd());
    return bits_f((rnd() & 0x807FFFFFu) | (uint32_t)(127 - 40 + (int)(u >> 3) % 60) << 23);
}

/* The table's quantization kernels when they are not the reference ones. */
static const dsq_qkern *fast(void) {
    const dsq_qkern *k = dsq_qkern_best();
    return k->i4_enc == dsq_qkern_ref.i4_enc ? NULL : k;
}

enum { NK = 4099 }; /* odd length: every kernel runs its vector loop and tail */

TEST(test_quant_simd_encode_kernels) {
    const dsq_qkern *k = fast(), *r = &dsq_qkern_ref;
    if (!k) SKIP("no SIMD kernels in this build or on this CPU");
    static float x[NK];
    static uint8_t a[2 * NK], b[2 * NK];
    g_rng = 21;
    dsq_codecs_init();
    for (int rep = 0; rep < 40; rep++) {
        for (int i = 0; i < NK; i++) x[i] = any_f();
        if (rep & 1) /* E4M3 ties: midpoints of neighbours and one ulp around */
            for (int i = 0; i + 3 < NK; i += 3) {
                unsigned c = rnd() % 126;
                float m = (dsq_e4m3_lut[c] + dsq_e4m3_lut[c + 1]) / 2;
                x[i] = m;
                x[i + 1] = nextafterf(m, 0);
                x[i + 2] = -nextafterf(m, INFINITY);
            }
        float scales[] = {1.0f, 0.0078125f, 3.0f, 1e-3f, ldexpf(1, -126), ldexpf(1, 127), ldexpf(1, -130)};
        for (int si = 0; si < 7; si++) {
            float s = scales[si];
            k->e4m3_enc(x, NK, s, a);
            r->e4m3_enc(x, NK, s, b);
            for (int i = 0; i < NK; i++)
                CHECKF(a[i] == b[i], "e4m3_enc x=%a s=%a: %02x vs %02x", (double)x[i], (double)s, a[i], b[i]);
            /* tie balancing on the same codes, over segments with and
             * without a vector tail */
            int64_t lens[] = {128, 37, 8, NK};
            for (int li = 0; li < 4; li++) {
                int64_t off = li == 3 ? 0 : 100 * li;
                k->e4m3_ties(x + off, lens[li], s, a + off);
                r->e4m3_ties(x + off, lens[li], s, b + off);
                CHECKF(memcmp(a + off, b + off, (size_t)lens[li]) == 0, "e4m3_ties s=%a n=%ld", (double)s,
                       (long)lens[li]);
            }
            for (int z = 0; z < 16; z += 5) {
                k->i4_enc(x + 1, NK - 1, 1.0f / s, z, a);
                r->i4_enc(x + 1, NK - 1, 1.0f / s, z, b);
                CHECKF(memcmp(a, b, NK / 2) == 0, "i4_enc s=%g z=%d", (double)s, z);
            }
            k->i8_enc(x, NK, 1.0f / s, a);
            r->i8_enc(x, NK, 1.0f / s, b);
            CHECKF(memcmp(a, b, NK) == 0, "i8_enc s=%g", (double)s);
        }
        for (int i = 0; i < NK; i += 2) x[i] = bits_f(rnd()); /* raw patterns for the 16-bit floats */
        k->bf16_enc(x, NK, a);
        r->bf16_enc(x, NK, b);
        CHECK(memcmp(a, b, 2 * NK) == 0);
        k->f16_enc(x, NK, a);
        r->f16_enc(x, NK, b);
        for (int i = 0; i < NK; i++)
            CHECKF(a[2 * i] == b[2 * i] && a[2 * i + 1] == b[2 * i + 1], "f16_enc %a", (double)x[i]);
        for (int n = 0; n < 40; n++) {
            float l1, h1, l2, h2;
            CHECK(k->absmax(x + n, NK - 2 * n) == r->absmax(x + n, NK - 2 * n));
            k->minmax(x + n, NK - 2 * n, &l1, &h1);
            r->minmax(x + n, NK - 2 * n, &l2, &h2);
            CHECK(l1 == l2 && h1 == h2);
        }
    }
}

TEST(test_quant_simd_decode_kernels) {
    const dsq_qkern *k = fast(), *r = &dsq_qkern_ref;
    if (!k) SKIP("no SIMD kernels in this build or on this CPU");
    static uint8_t p[2 * NK];
    static float a[NK], b[NK];
    g_rng = 22;
    dsq_codecs_init();
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < 2 * NK; i++) p[i] = (uint8_t)rnd();
        float s = rep ? ldexpf((float)(rnd() % 1000 + 1), (int)(rnd() % 40) - 30) : 1.0f;
        if (rep == 1) s = 0x1p125f; /* too large for the F16C decode: f32 route */
        if (rep == 2) s = ldexpf(3.0f, -140); /* subnormal scale */
        int n = NK - rep;
        k->e4m3_dq(p, n, s, a);
        r->e4m3_dq(p, n, s, b);
        for (int i = 0; i < n; i++) CHECK(isnan(b[i]) ? isnan(a[i]) : memcmp(&a[i], &b[i], 4) == 0);
        k->bf16_dq(p, n, a);
        r->bf16_dq(p, n, b);
        CHECK(memcmp(a, b, 4 * (size_t)n) == 0);
        k->f16_dq(p, n, a);
        r->f16_dq(p, n, b);
        CHECK(memcmp(a, b, 4 * (size_t)n) == 0); /* NaNs canonical on both sides */
        k->i8_dq(p, n, s, a);
        r->i8_dq(p, n, s, b);
        CHECK(memcmp(a, b, 4 * (size_t)n) == 0);
        k->i4_dq(p, n, s, rep % 16, a);
        r->i4_dq(p, n, s, rep % 16, b);
        CHECK(memcmp(a, b, 4 * (size_t)n) == 0);
    }
}

/* The optional E4M3-source kernels against their definitions in
 * quant_int.h, written out here element by element. */
TEST(test_quant_simd_e4m3_kernels) {
    const dsq_qkern *k = fast();
    if (!k) SKIP("no SIMD kernels in this build or on this CPU");
    if (!k->e4m3_keymax || !k->e4m3_gkey || !k->e4m3_remap || !k->e4m3_i4_enc) SKIP("no E4M3 kernels");
    static uint8_t q[NK], acc[NK], ref[NK], out[NK], t[128], pos[NK], neg[NK];
    static float x[NK];
    g_rng = 26;
    dsq_codecs_init();
    for (int rep = 0; rep < 24; rep++) {
        for (int i = 0; i < NK; i++) q[i] = (uint8_t)rnd();
        if (rep & 1) /* runs of NaN codes and zeros, small magnitudes */
            for (int i = 0; i < NK; i++) q[i] = (uint8_t)(rnd() % 4 == 0 ? 0x7F | (rnd() & 0x80) : q[i] & 0x87);
        int n = NK - rep;
        for (int i = 0; i < n; i++) acc[i] = ref[i] = (uint8_t)(rnd() % 130);
        k->e4m3_keymax(q, n, acc);
        for (int i = 0; i < n; i++) {
            unsigned key = (q[i] & 0x7F) == 0x7F ? 0 : (q[i] & 0x7Fu) + 1;
            CHECK(acc[i] == (key > ref[i] ? key : ref[i]));
        }
        for (int64_t G = 32; G <= 128; G *= 2) {
            k->e4m3_gkey(q, n, G, pos, neg);
            for (int64_t g = 0; g * G < n; g++) {
                unsigned p = 0, m = 0, a = 0;
                for (int64_t i = g * G; i < n && i < (g + 1) * G; i++) {
                    unsigned key = (q[i] & 0x7F) == 0x7F ? 0 : (q[i] & 0x7Fu) + 1;
                    if (q[i] & 0x80) m = key > m ? key : m;
                    else p = key > p ? key : p;
                    a = key > a ? key : a;
                }
                CHECKF(pos[g] == p && neg[g] == m, "gkey G=%d group %d", (int)G, (int)g);
                pos[g] = 0xEE;
                k->e4m3_gkey(q + g * G, n - g * G < G ? n - g * G : G, G, pos + g, NULL);
                CHECK(pos[g] == a);
            }
        }
        for (int i = 0; i < 128; i++) t[i] = (uint8_t)(rnd() & 0x7F);
        int64_t w = 1 + rep * 37 % 200, rows = n / w;
        k->e4m3_remap(q, w, rows, w - rep % 3, t, out, w);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < w - rep % 3; i++) {
                uint8_t v = q[r * w + i];
                CHECK(out[r * w + i] == (t[v & 0x7F] | (v & 0x80)));
            }
        /* INT4 codes straight from bytes: power-of-two products make exact
         * rounding ties common */
        float ss[] = {1.0f, 0.25f, 3e-3f, 0x1p-117f, 0x1p-140f, 0x1.fffffep118f, 7.0f};
        float invs[] = {1.0f, 2.0f, 0.5f, 1.0f / 3.0f, 0x1p100f, 0x1p-100f, 7.25f};
        for (int si = 0; si < 7; si++)
            for (int ii = 0; ii < 7; ii++) {
                float s = ss[si], inv = si == 2 ? invs[ii] * 333.0f : invs[ii];
                int z = (si + ii) % 16;
                uint8_t zb = (uint8_t)z;
                k->e4m3_i4_enc(q + rep % 2, n - rep % 2, n, &s, &inv, &zb, out);
                dsq_qkern_ref.e4m3_dq(q + rep % 2, n - rep % 2, s, x);
                dsq_qkern_ref.i4_enc(x, n - rep % 2, inv, z, ref);
                CHECKF(memcmp(out, ref, (size_t)(n - rep % 2 + 1) / 2) == 0, "e4m3_i4_enc s=%a inv=%a z=%d",
                       (double)s, (double)inv, z);
            }
        /* many groups, each with its own parameters */
        static float gs[NK / 32 + 1], gi[NK / 32 + 1];
        static uint8_t gz[NK / 32 + 1];
        int64_t G = 32 << (rep % 3), m = n - n % 2;
        for (int64_t g = 0; g * G < m; g++) {
            gs[g] = ss[rnd() % 7];
            gi[g] = invs[rnd() % 7];
            gz[g] = (uint8_t)(rnd() % 16);
        }
        k->e4m3_i4_enc(q, m, G, gs, gi, gz, out);
        for (int64_t g = 0; g * G < m; g++) {
            int64_t w = m - g * G < G ? m - g * G : G;
            dsq_qkern_ref.e4m3_dq(q + g * G, w, gs[g], x);
            dsq_qkern_ref.i4_enc(x, w, gi[g], gz[g], ref);
            CHECKF(memcmp(out + g * G / 2, ref, (size_t)(w + 1) / 2) == 0, "e4m3_i4_enc group %d", (int)g);
        }
    }
}

/* ---- whole calls ------------------------------------------------------------- */

static dsq_qmat qm_new(int t, int64_t rows, int64_t cols, dsq_qsizes *z) {
    dsq_qmat m = {t, rows, cols, NULL, NULL, NULL};
    dsq_q_sizes(t, rows, cols, z, NULL);
    m.data = malloc(z->data + 1);
    memset(m.data, 0xA5, z->data + 1);
    if (z->scale) m.scale = calloc(1, z->scale);
    if (z->zero) m.zero = calloc(1, z->zero);
    return m;
}
static void qm_free(dsq_qmat *m) {
    free(m->data);
    free(m->scale);
    free(m->zero);
}

/* Weights with exact zeros, outliers, huge and tiny rows. */
static void fill(float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float mag = r % 5 == 1 ? 1e4f : r % 5 == 2 ? 1e-20f : r % 5 == 3 ? 3e-39f : 0.05f;
        for (int64_t c = 0; c < cols; c++) {
            uint32_t k = rnd();
            float v = ((float)(k >> 8) / 16777216.0f * 2 - 1) * mag;
            if ((k & 31) == 0) v = 0;
            if ((k & 255) == 1) v *= 30;
            x[r * cols + c] = v;
        }
    }
}

static int same_output(int t, const dsq_qmat *src, const dsq_qopts *o, const char **what) {
    dsq_qsizes z;
    dsq_qmat a = qm_new(t, src->rows, src->cols, &z), b = qm_new(t, src->rows, src->cols, &z);
    int ok = 1;
    dsq_err e;
    *what = "quantize";
    if (dsq_q_prepare(src, &a, o, &e) || dsq_q_quantize(src, &a, 0, src->rows, o, &e) ||
        dsq_q_prepare_ref(src, &b, o, &e) || dsq_q_quantize_ref(src, &b, 0, src->rows, o, &e))
        ok = 0;
    if (ok && (memcmp(a.data, b.data, z.data) || (z.scale && memcmp(a.scale, b.scale, z.scale)) ||
               (z.zero && memcmp(a.zero, b.zero, z.zero))))
        ok = 0;
    if (ok) {
        *what = "dequantize";
        size_t n = (size_t)(src->rows * src->cols);
        float *fa = malloc(4 * n + 4), *fb = malloc(4 * n + 4);
        if (dsq_q_dequantize(&a, 0, src->rows, fa, &e) || dsq_q_dequantize_ref(&a, 0, src->rows, fb, &e) ||
            memcmp(fa, fb, 4 * n))
            ok = 0;
        free(fa);
        free(fb);
    }
    qm_free(&a);
    qm_free(&b);
    return ok;
}

TEST(test_quant_simd_identical) {
    static const int64_t shapes[][2] = {{1, 1},   {3, 7},    {1, 33},  {5, 129}, {129, 130},
                                        {2, 257}, {131, 31}, {4, 1000}, {3, 512}};
    g_rng = 23;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        float *x = malloc(sizeof(float) * rows * cols);
        fill(x, rows, cols);
        /* three sources: f32, bf16 of it, FP8 block of it */
        dsq_qsizes zb, zf;
        dsq_qmat s32 = {DSQ_Q_F32, rows, cols, x, NULL, NULL};
        dsq_qmat sbf = qm_new(DSQ_Q_BF16, rows, cols, &zb), sf8 = qm_new(DSQ_Q_FP8_BLOCK, rows, cols, &zf);
        CHECK(dsq_q_quantize(&s32, &sbf, 0, rows, NULL, NULL) == DSQ_OK);
        CHECK(dsq_q_quantize(&s32, &sf8, 0, rows, NULL, NULL) == DSQ_OK);
        const dsq_qmat *srcs[3] = {&s32, &sbf, &sf8};
        for (int t = 0; t < DSQ_Q_COUNT; t++)
            for (int k = 0; k < 3; k++) {
                const char *what;
                if (dsq_q_scheme(t)->kind == DSQ_QK_GGML && cols % dsq_q_scheme(t)->group) continue;
                dsq_qopts o = {NULL, 8, 0.6f, 0};
                CHECKF(same_output(t, srcs[k], NULL, &what), "%s from source %d [%lld, %lld]: %s differs",
                       dsq_q_scheme(t)->name, k, (long long)rows, (long long)cols, what);
                if (k == 0 && rows * cols < 5000)
                    CHECKF(same_output(t, srcs[k], &o, &what), "%s with clip search [%lld, %lld]: %s differs",
                           dsq_q_scheme(t)->name, (long long)rows, (long long)cols, what);
            }
        qm_free(&sbf);
        qm_free(&sf8);
        free(x);
    }
}

/* FP8 block sources as found in the wild and worse: random bytes with NaN
 * codes, f32 scales that are negative, zero, NaN, inf, huge, subnormal or
 * arbitrary, ue8m0 scales including 255; every destination, through the
 * E4M3 kernels where they apply and the f32 route elsewhere, equals the
 * reference; also with rows longer than the scratch. */
TEST(test_quant_simd_fp8_sources) {
    static const int64_t shapes[][2] = {{130, 300}, {129, 64}, {3, 97}, {2, 16384 + 200}};
    g_rng = 27;
    dsq_codecs_init();
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        for (int ue = 0; ue < 2; ue++) {
            dsq_qsizes z;
            dsq_qmat src = qm_new(ue ? DSQ_Q_FP8_BLOCK_UE8M0 : DSQ_Q_FP8_BLOCK, rows, cols, &z);
            uint8_t *q = src.data;
            for (uint64_t i = 0; i < z.data; i++) {
                q[i] = (uint8_t)rnd();
                if (i % 7 == 3) q[i] &= 0x8F; /* rows with smaller maxima */
            }
            int64_t ns = z.scale_rows * z.scale_cols;
            for (int64_t i = 0; i < ns; i++) {
                if (ue) {
                    uint8_t b = (uint8_t)(127 - 20 + (int)(rnd() % 40));
                    if (i % 9 == 4) b = (uint8_t)(i % 2 ? 255 : i % 3 ? 0 : 254);
                    ((uint8_t *)src.scale)[i] = b;
                    continue;
                }
                static const float odd[] = {0.0f, -0.0f, -1.5f, NAN, INFINITY, 0x1p120f, 0x1.fffffep118f,
                                            0x1p119f, 0x1p-140f, 0x1p-126f, 1e-30f, 0x1p-3f};
                float s = ldexpf((float)(rnd() % 100000 + 1), -(int)(rnd() % 30) - 10);
                if (i % 4 == 1) s = odd[rnd() % (sizeof odd / sizeof odd[0])];
                uint32_t u;
                memcpy(&u, &s, 4);
                dsq_st32((uint8_t *)src.scale + 4 * i, u);
            }
            for (int t = 0; t < DSQ_Q_COUNT; t++) {
                if (cols > 16384 && dsq_q_scheme(t)->kind == DSQ_QK_FLOAT) continue;
                if (dsq_q_scheme(t)->kind == DSQ_QK_GGML && cols % dsq_q_scheme(t)->group) continue;
                const char *what;
                CHECKF(same_output(t, &src, NULL, &what), "%s from fp8%s [%lld, %lld]: %s differs",
                       dsq_q_scheme(t)->name, ue ? "-ue8m0" : "", (long long)rows, (long long)cols, what);
            }
            qm_free(&src);
        }
    }
}

/* dsq_q_quantize_pool on 1 and 2 workers, and plain row-range calls split at
 * odd places, all give the same bytes. */
TEST(test_quant_threads_identical) {
    int64_t rows = 300, cols = 260;
    float *x = malloc(sizeof(float) * rows * cols);
    g_rng = 24;
    fill(x, rows, cols);
    dsq_qmat src = {DSQ_Q_F32, rows, cols, x, NULL, NULL};
    dsq_pool *p1 = dsq_pool_new(1), *p2 = dsq_pool_new(2);
    CHECK(p1 && p2);
    int ts[] = {DSQ_Q_FP8_BLOCK, DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_TENSOR, DSQ_Q_FP8_CHANNEL,
                DSQ_Q_INT4_G128_SYM, DSQ_Q_INT4_G32_ASYM_F16, DSQ_Q_INT8_CHANNEL, DSQ_Q_BF16};
    for (int ti = 0; ti < 8; ti++) {
        int t = ts[ti];
        dsq_qsizes z;
        dsq_qmat a = qm_new(t, rows, cols, &z), b = qm_new(t, rows, cols, &z), c = qm_new(t, rows, cols, &z);
        dsq_qopts o = {NULL, ti & 1 ? 6 : 0, 0, 0};
        CHECK(dsq_q_quantize_pool(p1, &src, &a, &o, NULL) == DSQ_OK);
        CHECK(dsq_q_quantize_pool(p2, &src, &b, &o, NULL) == DSQ_OK);
        CHECK(dsq_q_prepare(&src, &c, &o, NULL) == DSQ_OK);
        int64_t u = dsq_q_row_unit(t), cut = u == 1 ? 77 : 128;
        CHECK(dsq_q_quantize(&src, &c, cut, rows, &o, NULL) == DSQ_OK);
        CHECK(dsq_q_quantize(&src, &c, 0, cut, &o, NULL) == DSQ_OK);
        CHECKF(memcmp(a.data, b.data, z.data) == 0 && memcmp(a.data, c.data, z.data) == 0, "%s data",
               dsq_q_scheme(t)->name);
        if (z.scale) CHECK(memcmp(a.scale, b.scale, z.scale) == 0 && memcmp(a.scale, c.scale, z.scale) == 0);
        if (z.zero) CHECK(memcmp(a.zero, b.zero, z.zero) == 0 && memcmp(a.zero, c.zero, z.zero) == 0);
        qm_free(&a);
        qm_free(&b);
        qm_free(&c);
    }
    dsq_pool_free(p1);
    dsq_pool_free(p2);
    free(x);
}

/* Rows longer than the scratch (16384 floats): channel units and block
 * windows are streamed in chunks; fast and reference paths still agree, the
 * search still never loses, and FP8 stays within its error bound. */
TEST(test_quant_long_rows) {
    int64_t rows = 3, cols = 16384 + 130;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    g_rng = 25;
    fill(x, rows, cols);
    for (int64_t r = 0; r < rows; r++) x[r * cols + cols - 1] = 0.7f; /* range set in the last chunk */
    dsq_qmat src = {DSQ_Q_F32, rows, cols, x, NULL, NULL};
    int ts[] = {DSQ_Q_FP8_BLOCK, DSQ_Q_FP8_CHANNEL_UE8M0, DSQ_Q_FP8_TENSOR, DSQ_Q_INT8_CHANNEL,
                DSQ_Q_INT4_G128_ASYM};
    for (int ti = 0; ti < 5; ti++) {
        const char *what;
        dsq_qopts o = {NULL, 4, 0, 0};
        CHECKF(same_output(ts[ti], &src, NULL, &what), "%s long rows: %s", dsq_q_scheme(ts[ti])->name, what);
        CHECKF(same_output(ts[ti], &src, &o, &what), "%s long rows, search: %s", dsq_q_scheme(ts[ti])->name, what);
        dsq_qsizes z;
        dsq_qmat d = qm_new(ts[ti], rows, cols, &z);
        double e[2];
        for (int k = 0; k < 2; k++) {
            CHECK(dsq_q_prepare(&src, &d, k ? &o : NULL, NULL) == DSQ_OK);
            CHECK(dsq_q_quantize(&src, &d, 0, rows, k ? &o : NULL, NULL) == DSQ_OK);
            CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
            e[k] = 0;
            for (int64_t i = 0; i < rows * cols; i++) e[k] += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            if (dsq_q_scheme(ts[ti])->kind == DSQ_QK_FP8 && k == 0) {
                /* relative 2^-4, or half a subnormal step of the largest
                 * possible scale (2 amax / 448 with power-of-two rounding) */
                double gmax = 0;
                for (int64_t i = 0; i < rows * cols; i++) gmax = fmax(gmax, fabs(x[i]));
                for (int64_t i = 0; i < rows * cols; i++)
                    CHECK(fabs((double)x[i] - y[i]) <= fabs(x[i]) * 0.0625 + gmax * 2 / 448 / 1024);
            }
        }
        CHECK(e[1] <= e[0] * (1 + 1e-12));
        qm_free(&d);
    }
    free(x);
    free(y);
}

/* The dense entries of the kernel table follow the one CPU probe (every
 * feature 0 and every entry the reference one in a SIMD=none build), and
 * the rank-m updates and X^T X of the fast table are bit-identical to the
 * reference loops on lengths around every vector width (X^T X: under a
 * compiler that does not contract multiply-adds, see quant_int.h). */
TEST(test_quant_simd_dense_kernels) {
    const dsq_cpu *cpu = dsq_cpu_get();
    const dsq_qkern *k = dsq_qkern_best(), *r = &dsq_qkern_ref;
#ifdef DSQ_NO_SIMD
    CHECK(!cpu->avx && !cpu->avx2 && !cpu->fma && !cpu->f16c);
#endif
    CHECK((k->sub_many != r->sub_many) == (cpu->avx != 0));
    CHECK((k->sub_many_f != r->sub_many_f) == (cpu->avx != 0));
    CHECK((k->add_many != r->add_many) == (cpu->avx != 0));
    CHECK((k->xtx_acc != r->xtx_acc) == (cpu->avx2 && cpu->fma));
    CHECK((k->gemm_6x16 != r->gemm_6x16) == (cpu->avx2 && cpu->fma));
    CHECK((k->gemm_pack16 != NULL) == (cpu->avx2 && cpu->fma) && r->gemm_pack16 == NULL);
    CHECK((k->i4_enc != r->i4_enc) == (cpu->avx2 && cpu->fma && cpu->f16c));
    if (k->sub_many == r->sub_many && k->xtx_acc == r->xtx_acc) SKIP("no SIMD dense kernels in this build or on this CPU");
    enum { N = 77, M = 5 };
    g_rng = 33;
    static double da[2][M][N], dx[M][N], ds[M];
    static float fa[2][N], fx[M][N], fs[M], xt[40 * N], ta[2][N * N];
    for (int p = 0; p < M; p++) {
        ds[p] = (double)any_f();
        fs[p] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
        for (int j = 0; j < N; j++) {
            dx[p][j] = (double)any_f() * 0.5;
            fx[p][j] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
            da[0][p][j] = da[1][p][j] = (double)any_f();
        }
    }
    for (int n = 0; n <= N; n++)
        for (int m = 1; m <= M; m++) {
            const double *xd[M];
            const float *xf[M];
            double *ad[2][M];
            for (int p = 0; p < M; p++) {
                xd[p] = dx[p];
                xf[p] = fx[p];
                ad[0][p] = da[0][p];
                ad[1][p] = da[1][p];
            }
            for (int j = 0; j < N; j++) fa[0][j] = fa[1][j] = (float)(rnd() % 2001) / 100.0f;
            k->sub_many(da[0][0], xd, ds, m, n);
            r->sub_many(da[1][0], xd, ds, m, n);
            k->sub_many_f(fa[0], xf, fs, m, n);
            r->sub_many_f(fa[1], xf, fs, m, n);
            k->add_many(ad[0] + 1, ds, m - 1, dx[0], n);
            r->add_many(ad[1] + 1, ds, m - 1, dx[0], n);
            CHECKF(!memcmp(da[0], da[1], sizeof da[0]), "sub_many / add_many m %d n %d", m, n);
            CHECKF(!memcmp(fa[0], fa[1], sizeof fa[0]), "sub_many_f m %d n %d", m, n);
        }
    for (int i = 0; i < 40 * N; i++) xt[i] = rnd() % 5 == 0 ? 0.0f : (float)(rnd() % 2001) / 1000.0f - 1.0f;
    for (int c = 1; c <= N; c += 19) {
        memset(ta, 0, sizeof ta);
        k->xtx_acc(ta[0], xt, 40, c);
        r->xtx_acc(ta[1], xt, 40, c);
#ifndef __clang__
        CHECKF(!memcmp(ta[0], ta[1], sizeof ta[0]), "xtx_acc c %d", c);
#else
        /* clang contracts x * y + t into an FMA where the target has one */
        for (int i = 0; i < c * c; i++)
            CHECKF(fabsf(ta[0][i] - ta[1][i]) <= 1e-5f * (1 + fabsf(ta[1][i])), "xtx_acc c %d element %d", c, i);
#endif
    }
}
