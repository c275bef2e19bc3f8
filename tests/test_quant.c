/*
 * test_quant.c -- the storage schemes of quant/quant.h: traits and sizes,
 * byte layouts (a hand-computed INT4 example, exhaustive nibble / byte
 * round trips), analytic error bounds, exact round trips of representable
 * values, all-zero units, UE8M0 scales, per-expert independence, the clip
 * search, FP8 re-quantization and argument checks.  Fast-path identity and
 * threading are in test_quant_simd.c.
 */
#include "test.h"
#include "quant/quant.h"
#include "quant/quant_int.h"
#include "quant/dtype.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>

/* ---- helpers ------------------------------------------------------------ */

static uint64_t g_rng;
static uint32_t rnd(void) { /* xorshift64*: fixed sequence per seed */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }
/* Gaussian-ish weights with occasional outliers and exact zeros. */
static float wrand(void) {
    float v = frand() + frand() + frand();
    uint32_t k = rnd() % 64;
    if (k == 0) v *= 8;
    if (k == 1) v = 0;
    return v * 0.02f;
}

/* A matrix of scheme t with freshly allocated arrays (free with qm_free). */
static dsq_qmat qm_new(int t, int64_t rows, int64_t cols) {
    dsq_qsizes z;
    dsq_qmat m = {t, rows, cols, NULL, NULL, NULL};
    if (dsq_q_sizes(t, rows, cols, &z, NULL) != DSQ_OK) return m;
    m.data = calloc(1, z.data + 1);
    if (z.scale) m.scale = calloc(1, z.scale);
    if (z.zero) m.zero = calloc(1, z.zero);
    return m;
}
static void qm_free(dsq_qmat *m) {
    free(m->data);
    free(m->scale);
    free(m->zero);
}
static dsq_qmat f32_mat(float *x, int64_t rows, int64_t cols) {
    return (dsq_qmat){DSQ_Q_F32, rows, cols, x, NULL, NULL};
}

/* Stored scale of element (r, c) of m, decoded. */
static float scale_at(const dsq_qmat *m, int64_t r, int64_t c) {
    const dsq_qscheme *s = dsq_q_scheme(m->type);
    dsq_qsizes z;
    dsq_q_sizes(m->type, m->rows, m->cols, &z, NULL);
    int64_t idx = 0;
    switch (s->gran) {
    case DSQ_QG_TENSOR: idx = 0; break;
    case DSQ_QG_CHANNEL: idx = r; break;
    case DSQ_QG_BLOCK: idx = (r / 128) * z.scale_cols + c / 128; break;
    case DSQ_QG_GROUP: idx = r * z.scale_cols + c / s->group; break;
    default: return 1;
    }
    const uint8_t *p = m->scale;
    switch (s->sdt) {
    case DSQ_DT_F32: return dsq_lef32(p + 4 * idx);
    case DSQ_DT_F16: return dsq_f16_to_f32(dsq_le16(p + 2 * idx));
    case DSQ_DT_BF16: return dsq_bf16_to_f32(dsq_le16(p + 2 * idx));
    default: return dsq_ue8m0_to_f32(p[idx]);
    }
}

static int quant_all(const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *o) {
    dsq_err e;
    if (dsq_q_prepare(src, dst, o, &e) != DSQ_OK) return -1;
    return dsq_q_quantize(src, dst, 0, dst->rows, o, &e);
}

/* ---- traits and sizes ----------------------------------------------------- */

TEST(test_quant_traits) {
    for (int t = 0; t < DSQ_Q_COUNT; t++) {
        const dsq_qscheme *s = dsq_q_scheme(t);
        CHECKF(s && s->name, "scheme %d has no entry", t);
        CHECK(dsq_q_from_name(s->name) == t);
        if (s->kind == DSQ_QK_GGML) CHECK(dsq_q_from_ggml_type(dsq_q_ggml_type(t)) == t);
        else CHECKF(dsq_q_find(s->kind, s->gran, s->group, s->sym, s->kind == DSQ_QK_FLOAT ? s->elem : s->sdt) == t, "find %s", s->name);
        /* nominal bpw equals the exact figure for an aligned shape */
        CHECKF(fabs(dsq_q_bpw(t, 256, 8192) - s->bpw) < 5e-3, "%s bpw %g vs %g", s->name,
               dsq_q_bpw(t, 256, 8192), s->bpw);
    }
    CHECK(dsq_q_scheme(DSQ_Q_COUNT) == NULL && dsq_q_scheme(-1) == NULL);
    CHECK(dsq_q_from_name("int5") == -1);
    CHECK(dsq_q_find(DSQ_QK_INT4, DSQ_QG_GROUP, 128, 1, DSQ_DT_BF16) == DSQ_Q_INT4_G128_SYM);
    CHECK(dsq_q_row_unit(DSQ_Q_FP8_BLOCK) == 128 && dsq_q_row_unit(DSQ_Q_INT4_G32_SYM) == 1);
    CHECK(fabs(dsq_q_scheme(DSQ_Q_INT4_G128_SYM)->bpw - 4.125) < 1e-12);
    CHECK(fabs(dsq_q_scheme(DSQ_Q_INT4_G32_ASYM)->bpw - 4.625) < 1e-12);

    dsq_qsizes z;
    CHECK(dsq_q_sizes(DSQ_Q_INT4_G128_SYM, 3, 257, &z, NULL) == DSQ_OK);
    CHECK(z.row_bytes == 129 && z.data == 387 && z.scale == 3 * 3 * 2 && z.zero == 0);
    CHECK(dsq_q_sizes(DSQ_Q_INT4_G32_ASYM, 2, 100, &z, NULL) == DSQ_OK);
    CHECK(z.scale_cols == 4 && z.scale == 16 && z.zero == 4);
    CHECK(dsq_q_sizes(DSQ_Q_INT4_G32_ASYM, 2, 70, &z, NULL) == DSQ_OK);
    CHECK(z.scale_cols == 3 && z.zero == 4); /* 3 nibbles -> 2 bytes per row */
    CHECK(dsq_q_sizes(DSQ_Q_FP8_BLOCK, 300, 130, &z, NULL) == DSQ_OK);
    CHECK(z.scale_rows == 3 && z.scale_cols == 2 && z.scale == 24 && z.data == 39000);
    CHECK(dsq_q_sizes(DSQ_Q_FP8_BLOCK_UE8M0, 300, 130, &z, NULL) == DSQ_OK && z.scale == 6);
    CHECK(dsq_q_sizes(DSQ_Q_FP8_TENSOR, 5, 5, &z, NULL) == DSQ_OK && z.scale == 4);
    CHECK(dsq_q_sizes(DSQ_Q_INT8_CHANNEL_F16, 5, 5, &z, NULL) == DSQ_OK && z.scale == 10);
    CHECK(dsq_q_sizes(DSQ_Q_BF16, 5, 5, &z, NULL) == DSQ_OK && z.data == 50 && z.scale == 0);
    dsq_err e;
    CHECK(dsq_q_sizes(DSQ_Q_F32, (int64_t)1 << 40, (int64_t)1 << 40, &z, &e) == DSQ_E_ARG);
    CHECK(dsq_q_sizes(DSQ_Q_F32, -1, 4, &z, &e) == DSQ_E_ARG);
    CHECK(dsq_q_sizes(99, 1, 1, &z, &e) == DSQ_E_ARG);
}

/* ---- layouts ---------------------------------------------------------------- */

/* Worked by hand: amax 1 -> r = 1/7.5 = 0.1333..; bf16 0x3E08 = 0.1328125 is
 * below it, so the scale rounds up to 0x3E09 = 0.13378906.  Codes:
 * -1/s = -7.47 -> -7 (u 1), 0 -> 0 (u 8), 0.5/s = 3.74 -> 4 (u 12),
 * 1/s = 7.47 -> 7 (u 15); bytes 0x81 0xFC (even column in the low nibble). */
TEST(test_quant_int4_golden) {
    float x[5] = {-1.0f, 0.0f, 0.5f, 1.0f, 0.25f};
    dsq_qmat src = f32_mat(x, 1, 4);
    dsq_qmat d = qm_new(DSQ_Q_INT4_G32_SYM, 1, 4);
    CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
    const uint8_t *q = d.data, *s = d.scale;
    CHECKF(q[0] == 0x81 && q[1] == 0xFC, "bytes %02x %02x", q[0], q[1]);
    CHECK(s[0] == 0x09 && s[1] == 0x3E);
    qm_free(&d);

    /* Odd column count: the last high nibble is 0.  Asymmetric, x = {0.5,
     * 1.0, 0.25}: range [0, 1], r = 1/15 -> bf16 up 0x3D89 (0.06689453),
     * z = 0, codes 0.5/s = 7.47 -> 7, 1/s = 14.95 -> 15, 0.25/s = 3.74 -> 4. */
    src = f32_mat(x + 2, 1, 3);
    d = qm_new(DSQ_Q_INT4_G32_ASYM, 1, 3);
    CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
    q = d.data;
    s = d.scale;
    const uint8_t *zp = d.zero;
    CHECKF(q[0] == (7 | 15 << 4) && q[1] == 4, "bytes %02x %02x", q[0], q[1]);
    CHECKF(s[0] == 0x89 && s[1] == 0x3D, "scale %02x%02x", s[1], s[0]);
    CHECK(zp[0] == 0);
    qm_free(&d);
}

/* Every byte value through the nibble and byte kernels of both kernel sets,
 * at every position of a 32-element vector (so the SIMD loops see it). */
TEST(test_quant_pack_exhaustive) {
    const dsq_qkern *ks[2] = {&dsq_qkern_ref, dsq_qkern_best()};
    dsq_codecs_init();
    for (int ki = 0; ki < 2; ki++) {
        const dsq_qkern *k = ks[ki];
        for (int b = 0; b < 256; b++) {
            uint8_t in[16], out[32];
            float x[32];
            for (int i = 0; i < 16; i++) in[i] = (uint8_t)(b + 37 * i);
            /* INT4: decode with s = 1, z = 8 and re-encode with inv = 1 */
            k->i4_dq(in, 32, 1.0f, 8, x);
            for (int i = 0; i < 32; i++) {
                int u = (i & 1) ? in[i / 2] >> 4 : in[i / 2] & 15;
                CHECKF(x[i] == (float)(u - 8), "%s i4_dq byte %d pos %d", k->name, b, i);
            }
            k->i4_enc(x, 32, 1.0f, 8, out);
            CHECKF(memcmp(in, out, 16) == 0, "%s i4 nibble round trip %d", k->name, b);
            /* E4M3: every code decodes like the table and encodes back */
            uint8_t e8[32];
            for (int i = 0; i < 32; i++) e8[i] = (uint8_t)(b + 11 * i);
            k->e4m3_dq(e8, 32, 1.0f, x);
            for (int i = 0; i < 32; i++) {
                float v = dsq_e4m3_lut[e8[i]];
                CHECKF(isnan(v) ? isnan(x[i]) : memcmp(&v, &x[i], 4) == 0, "%s e4m3 %d", k->name, e8[i]);
            }
            k->e4m3_enc(x, 32, 1.0f, out);
            CHECKF(memcmp(e8, out, 32) == 0, "%s e4m3 round trip from %d", k->name, b);
            /* INT8: -127..127 round trip; -128 clamps to -127 */
            k->i8_dq(e8, 32, 1.0f, x);
            k->i8_enc(x, 32, 1.0f, out);
            for (int i = 0; i < 32; i++) {
                CHECK(x[i] == (float)(int8_t)e8[i]);
                CHECK(out[i] == (e8[i] == 0x80 ? 0x81 : e8[i]));
            }
        }
    }
}

/* ---- error bounds ------------------------------------------------------------ */

static const int64_t k_cols[] = {1, 7, 33, 130, 257};

TEST(test_quant_int4_error_bound) {
    g_rng = 11;
    for (int t = DSQ_Q_INT4_G32_SYM; t <= DSQ_Q_INT4_G128_ASYM_F16; t++) {
        for (size_t ci = 0; ci < sizeof k_cols / sizeof k_cols[0]; ci++) {
            int64_t rows = 3, cols = k_cols[ci];
            float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
            for (int64_t i = 0; i < rows * cols; i++) x[i] = wrand();
            if (cols > 1) x[cols + 1] = 1e-30f; /* tiny next to normal values */
            dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
            dsq_err e;
            CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
            CHECK(dsq_q_dequantize(&d, 0, rows, y, &e) == DSQ_OK);
            const dsq_qscheme *sc = dsq_q_scheme(t);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    float s = scale_at(&d, r, c);
                    double err = fabs((double)x[r * cols + c] - y[r * cols + c]);
                    CHECKF(err <= s * 0.5 * (1 + 1e-6) + fabs(x[r * cols + c]) * 1e-6,
                           "%s [%lld,%lld] x=%g y=%g s=%g", sc->name, (long long)r, (long long)c,
                           (double)x[r * cols + c], (double)y[r * cols + c], (double)s);
                }
            /* the stored scale is never below the raw one (rounded up) */
            for (int64_t c = 0; c < cols; c += sc->group) {
                float amax = 0, mn = 0, mx = 0;
                for (int64_t j = c; j < c + sc->group && j < cols; j++) {
                    amax = fmaxf(amax, fabsf(x[j]));
                    mn = fminf(mn, x[j]);
                    mx = fmaxf(mx, x[j]);
                }
                float raw = sc->sym ? amax / 7.5f : (mx - mn) / 15.0f;
                CHECK(scale_at(&d, 0, c) >= raw);
            }
            qm_free(&d);
            free(x);
            free(y);
        }
    }
}

TEST(test_quant_int8_error_bound) {
    g_rng = 12;
    for (int t = DSQ_Q_INT8_CHANNEL; t <= DSQ_Q_INT8_CHANNEL_F16; t++) {
        int64_t rows = 5, cols = 257;
        float x[5 * 257], y[5 * 257];
        for (int i = 0; i < rows * cols; i++) x[i] = wrand() * (float)(1 + i / cols * 100);
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float s = scale_at(&d, r, c);
                double err = fabs((double)x[r * cols + c] - y[r * cols + c]);
                CHECKF(err <= s * 0.5 * (1 + 1e-6), "int8 err %g s %g", err, (double)s);
            }
        qm_free(&d);
    }
}

TEST(test_quant_fp8_error_bound) {
    g_rng = 13;
    int64_t rows = 300, cols = 130;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) x[i] = wrand() * (i % 7 == 0 ? 1e-3f : 1.0f);
    x[5] = 3e4f;   /* huge */
    x[6] = 1e-35f; /* tiny */
    for (int t = DSQ_Q_FP8_TENSOR; t <= DSQ_Q_FP8_BLOCK_UE8M0; t++) {
        const dsq_qscheme *sc = dsq_q_scheme(t);
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                double v = x[r * cols + c], w = y[r * cols + c], s = scale_at(&d, r, c);
                double a = fabs(v / s), err = fabs(v - w);
                if (a >= 0.015625) /* normal E4M3 range: 3 mantissa bits */
                    CHECKF(err <= fabs(v) * 0.0625 * (1 + 1e-6), "%s rel err x=%g y=%g s=%g", sc->name, v, w, s);
                else /* subnormal range: half a step of 2^-9 */
                    CHECKF(err <= s * 0.0009765625 * (1 + 1e-6), "%s abs err x=%g y=%g s=%g", sc->name, v, w, s);
            }
        qm_free(&d);
    }
    free(x);
    free(y);
}

/* ---- exact round trips ------------------------------------------------------- */

/* Values built from codes and a power-of-two scale, with the extreme code
 * present in every unit, come back bit for bit (the scale formula returns the
 * same scale).  Symmetric INT4 is excluded on purpose: its raw scale is
 * amax/7.5 and no code sits at 7.5, so a code-built group gets a new scale. */
TEST(test_quant_exact_roundtrip) {
    g_rng = 14;
    int64_t rows = 130, cols = 257;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    dsq_codecs_init();
    /* FP8, block and channel: codes times 2^-7 with 448 in every unit */
    int fp8t[] = {DSQ_Q_FP8_BLOCK, DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_CHANNEL, DSQ_Q_FP8_CHANNEL_UE8M0,
                  DSQ_Q_FP8_TENSOR_UE8M0};
    for (size_t ti = 0; ti < 5; ti++) {
        for (int64_t i = 0; i < rows * cols; i++) {
            uint8_t b = (uint8_t)(rnd() & 0xFF);
            if ((b & 0x7F) == 0x7F) b = 0x10;
            x[i] = dsq_e4m3_lut[b] * 0.0078125f;
            if (i % 128 == 0) x[i] = 448.0f * 0.0078125f;
        }
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(fp8t[ti], rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        CHECKF(memcmp(x, y, sizeof(float) * rows * cols) == 0, "%s round trip", dsq_q_scheme(fp8t[ti])->name);
        qm_free(&d);
    }
    /* INT8: q * 2^-3 with |q| = 127 in every row */
    for (int64_t i = 0; i < rows * cols; i++) x[i] = (float)((int)(rnd() % 255) - 127) * 0.125f;
    for (int64_t r = 0; r < rows; r++) x[r * cols + 3] = -127 * 0.125f;
    for (int t = DSQ_Q_INT8_CHANNEL; t <= DSQ_Q_INT8_CHANNEL_F16; t++) {
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        CHECK(memcmp(x, y, sizeof(float) * rows * cols) == 0);
        qm_free(&d);
    }
    /* asymmetric INT4: (u - z) * 2^-4 with codes 0 and 15 in every group */
    for (int t = DSQ_Q_INT4_G32_ASYM; t <= DSQ_Q_INT4_G128_ASYM_F16; t++) {
        const dsq_qscheme *sc = dsq_q_scheme(t);
        if (sc->sym) continue;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g * sc->group < cols; g++) {
                int z = (int)(rnd() % 16);
                for (int64_t c = g * sc->group; c < (g + 1) * sc->group && c < cols; c++) {
                    int u = (int)(rnd() % 16);
                    if (c == g * sc->group) u = 0;
                    if (c == g * sc->group + 1 || c == cols - 1) u = 15;
                    x[r * cols + c] = (float)(u - z) * 0.0625f;
                }
            }
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        /* a last group of one column holds a single code: skip it */
        for (int64_t i = 0; i < rows * cols; i++)
            if (cols % sc->group != 1 || i % cols != cols - 1)
                CHECKF(x[i] == y[i], "%s at %lld: %g vs %g", sc->name, (long long)i, (double)x[i], (double)y[i]);
        qm_free(&d);
    }
    /* float schemes: representable values pass unchanged */
    for (int64_t i = 0; i < rows * cols; i++) x[i] = dsq_f16_to_f32((uint16_t)(rnd() & 0x7BFF));
    for (int t = DSQ_Q_F32; t <= DSQ_Q_BF16; t++) {
        if (t == DSQ_Q_BF16)
            for (int64_t i = 0; i < rows * cols; i++) x[i] = dsq_bf16_to_f32((uint16_t)(rnd() & 0x7F7F));
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(t, rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
        CHECK(memcmp(x, y, sizeof(float) * rows * cols) == 0);
        qm_free(&d);
    }
    free(x);
    free(y);
}

TEST(test_quant_zero_units) {
    float x[3 * 70] = {0};
    for (int t = DSQ_Q_FP8_TENSOR; t < DSQ_Q_COUNT; t++) {
        const dsq_qscheme *sc = dsq_q_scheme(t);
        if (sc->kind == DSQ_QK_GGML) continue; /* 70 columns; test_ggml_blocks.c has its zero blocks */
        dsq_qmat src = f32_mat(x, 3, 70), d = qm_new(t, 3, 70);
        dsq_qsizes z;
        dsq_q_sizes(t, 3, 70, &z, NULL);
        memset(d.data, 0x5A, z.data);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        for (int64_t r = 0; r < 3; r++)
            for (int64_t c = 0; c < 70; c++) CHECKF(scale_at(&d, r, c) == 1.0f, "%s scale", sc->name);
        const uint8_t *q = d.data;
        for (uint64_t i = 0; i < z.data; i++) {
            uint8_t want = sc->kind == DSQ_QK_INT4 && sc->sym ? 0x88 : 0;
            CHECKF(q[i] == want, "%s byte %llu = %02x", sc->name, (unsigned long long)i, q[i]);
        }
        if (z.zero)
            for (uint64_t i = 0; i < z.zero; i++) CHECK(((uint8_t *)d.zero)[i] == 0);
        qm_free(&d);
    }
}

TEST(test_quant_ue8m0_pow2) {
    g_rng = 15;
    int64_t rows = 200, cols = 300;
    float *x = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) x[i] = wrand() * ldexpf(1.0f, (int)(i / cols % 60) - 30);
    int ts[] = {DSQ_Q_FP8_TENSOR_UE8M0, DSQ_Q_FP8_CHANNEL_UE8M0, DSQ_Q_FP8_BLOCK_UE8M0};
    for (int ti = 0; ti < 3; ti++) {
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(ts[ti], rows, cols);
        dsq_qsizes z;
        dsq_q_sizes(ts[ti], rows, cols, &z, NULL);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        for (uint64_t i = 0; i < z.scale; i++) {
            uint8_t b = ((uint8_t *)d.scale)[i];
            CHECK(b >= 1 && b <= 254);
        }
        /* nothing saturates: |x| / s <= 448 everywhere */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float s = scale_at(&d, r, c);
                int e;
                CHECK(frexpf(s, &e) == 0.5f);
                CHECK(fabsf(x[r * cols + c]) / s <= 448.0f);
            }
        qm_free(&d);
    }
    free(x);
}

/* ---- per expert -------------------------------------------------------------- */

/* A stacked [4, 130, 200] tensor quantized expert by expert: changing expert
 * 3 changes no byte belonging to expert 2. */
TEST(test_quant_per_expert_independent) {
    enum { E = 4, R = 130, C = 200 };
    g_rng = 16;
    float *x = malloc(sizeof(float) * E * R * C);
    for (int64_t i = 0; i < (int64_t)E * R * C; i++) x[i] = wrand();
    int ts[] = {DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_TENSOR, DSQ_Q_FP8_CHANNEL, DSQ_Q_INT4_G32_ASYM,
                DSQ_Q_INT8_CHANNEL};
    for (int ti = 0; ti < 5; ti++) {
        dsq_qsizes z;
        dsq_q_sizes(ts[ti], R, C, &z, NULL);
        uint64_t per = z.data + z.scale + z.zero;
        uint8_t *a = calloc(E, per), *b = calloc(E, per);
        for (int pass = 0; pass < 2; pass++) {
            uint8_t *buf = pass ? b : a;
            if (pass)
                for (int64_t i = 3 * R * C; i < 4 * R * C; i++) x[i] = x[i] * 100 + 0.5f;
            for (int e = 0; e < E; e++) {
                uint8_t *base = buf + e * per;
                dsq_qmat src = f32_mat(x + (int64_t)e * R * C, R, C);
                dsq_qmat d = {ts[ti], R, C, base, z.scale ? base + z.data : NULL,
                              z.zero ? base + z.data + z.scale : NULL};
                CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
            }
        }
        CHECK(memcmp(a, b, 3 * per) == 0);
        CHECK(memcmp(a + 3 * per, b + 3 * per, per) != 0);
        for (int64_t i = 3 * R * C; i < 4 * R * C; i++) x[i] = wrand();
        free(a);
        free(b);
    }
    free(x);
}

/* ---- clip search ------------------------------------------------------------- */

static double werr(const float *x, const float *y, int64_t rows, int64_t cols, const float *imp) {
    double e = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double t = (double)x[r * cols + c] - y[r * cols + c];
            e += (imp ? imp[c] : 1.0) * t * t;
        }
    return e;
}

TEST(test_quant_clip_never_worse) {
    g_rng = 17;
    int64_t rows = 130, cols = 300;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    float imp[300];
    for (int64_t i = 0; i < rows * cols; i++) x[i] = wrand();
    for (int c = 0; c < cols; c++) imp[c] = (float)(rnd() % 1000) / 100.0f;
    int ts[] = {DSQ_Q_INT4_G32_SYM, DSQ_Q_INT4_G128_ASYM, DSQ_Q_INT4_G64_SYM_F16, DSQ_Q_INT8_CHANNEL,
                DSQ_Q_FP8_BLOCK, DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_CHANNEL, DSQ_Q_FP8_TENSOR};
    for (int ti = 0; ti < 8; ti++) {
        for (int wi = 0; wi < 2; wi++) {
            const float *im = wi ? imp : NULL;
            dsq_qopts o0 = {im, 0, 0, 0}, o1 = {im, 20, 0.5f, 0};
            dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(ts[ti], rows, cols);
            CHECK(quant_all(&src, &d, &o0) == DSQ_OK);
            CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
            double e0 = werr(x, y, rows, cols, im);
            CHECK(quant_all(&src, &d, &o1) == DSQ_OK);
            CHECK(dsq_q_dequantize(&d, 0, rows, y, NULL) == DSQ_OK);
            double e1 = werr(x, y, rows, cols, im);
            CHECKF(e1 <= e0 * (1 + 1e-12), "%s: clip %g > absmax %g", dsq_q_scheme(ts[ti])->name, e1, e0);
            /* INT4 with outliers gains clearly from clipping */
            if (dsq_q_scheme(ts[ti])->kind == DSQ_QK_INT4) CHECK(e1 < e0 * 0.99);
            qm_free(&d);
        }
    }
    free(x);
    free(y);
}

/* E4M3 from BF16-like values: every element is a nearest rounding (the
 * error of round-half-to-even, magnitude for magnitude), exact ties go the
 * way that keeps each 128-column block row's error sum small, and the
 * summed |block row error| is well below round-half-to-even's (with
 * power-of-two scales, where x / s has many exact ties). */
TEST(test_quant_fp8_balanced_ties) {
    g_rng = 41;
    int64_t rows = 192, cols = 384;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) x[i] = dsq_bf16_to_f32(dsq_f32_to_bf16(frand() * 0.05f));
    dsq_codecs_init();
    int ts[] = {DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_CHANNEL};
    for (int ti = 0; ti < 2; ti++) {
        dsq_qmat a = qm_new(ts[ti], rows, cols), xs = f32_mat(x, rows, cols);
        CHECK(quant_all(&xs, &a, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&a, 0, rows, y, NULL) == DSQ_OK);
        int64_t moved = 0, same_mag = 1, decoded = 1;
        for (int64_t i = 0; i < rows * cols; i++)
            if (y[i] != dsq_e4m3_to_f32(((uint8_t *)a.data)[i]) * scale_at(&a, i / cols, i % cols)) decoded = 0;
        CHECK(decoded);
        double sb = 0, se = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c0 = 0; c0 < cols; c0 += 128) {
                double db = 0, de = 0;
                for (int64_t j = c0; j < c0 + 128; j++) {
                    int64_t i = r * cols + j;
                    float sc = scale_at(&a, r, j);
                    double e = (double)dsq_e4m3_to_f32(dsq_f32_to_e4m3(x[i] / sc)) * sc - x[i];
                    double b = (double)dsq_e4m3_to_f32(((uint8_t *)a.data)[i]) * sc - x[i];
                    if (fabs(b) != fabs(e)) same_mag = 0;
                    if (b != e) moved++;
                    db += b;
                    de += e;
                }
                sb += fabs(db);
                se += fabs(de);
            }
        CHECK(same_mag);
        if (ts[ti] == DSQ_Q_FP8_BLOCK_UE8M0) { /* power-of-two scales: ties of x / s are exact */
            CHECK(moved > rows * cols / 100);
            CHECK(sb < 0.5 * se);
        } else {
            CHECK(sb <= se);
        }
        qm_free(&a);
    }
    free(x);
    free(y);
}

/* ---- FP8 sources -------------------------------------------------------------- */

/* Re-quantizing an upstream FP8 block-scaled weight equals quantizing its
 * dsq_fp8_block_dequant values. */
TEST(test_quant_fp8_source) {
    g_rng = 18;
    int64_t rows = 200, cols = 300;
    dsq_qsizes z;
    dsq_q_sizes(DSQ_Q_FP8_BLOCK, rows, cols, &z, NULL);
    uint8_t *q = malloc(z.data);
    float sc[2 * 3], *x = malloc(sizeof(float) * rows * cols);
    for (uint64_t i = 0; i < z.data; i++) {
        q[i] = (uint8_t)rnd();
        if ((q[i] & 0x7F) == 0x7F) q[i] = 0x3F;
    }
    for (int i = 0; i < 6; i++) sc[i] = ldexpf(1.0f, -(int)(rnd() % 20));
    dsq_codecs_init();
    dsq_fp8_block_dequant(q, sc, cols, 0, rows, 128, 128, x);
    dsq_qmat fsrc = {DSQ_Q_FP8_BLOCK, rows, cols, q, sc, NULL};
    float *y = malloc(sizeof(float) * rows * cols);
    CHECK(dsq_q_dequantize(&fsrc, 0, rows, y, NULL) == DSQ_OK);
    CHECK(memcmp(x, y, sizeof(float) * rows * cols) == 0);
    int ts[] = {DSQ_Q_INT4_G128_SYM, DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_CHANNEL, DSQ_Q_INT8_CHANNEL_F16,
                DSQ_Q_BF16};
    for (int ti = 0; ti < 5; ti++) {
        dsq_qmat a = qm_new(ts[ti], rows, cols), b = qm_new(ts[ti], rows, cols);
        dsq_qmat xsrc = f32_mat(x, rows, cols);
        CHECK(quant_all(&fsrc, &a, NULL) == DSQ_OK);
        CHECK(quant_all(&xsrc, &b, NULL) == DSQ_OK);
        dsq_qsizes zz;
        dsq_q_sizes(ts[ti], rows, cols, &zz, NULL);
        CHECK(memcmp(a.data, b.data, zz.data) == 0);
        if (zz.scale) CHECK(memcmp(a.scale, b.scale, zz.scale) == 0);
        qm_free(&a);
        qm_free(&b);
    }
    /* ue8m0 block scales on the same grid re-quantize to the same codes */
    dsq_qmat d = qm_new(DSQ_Q_FP8_BLOCK, rows, cols);
    CHECK(quant_all(&fsrc, &d, NULL) == DSQ_OK);
    dsq_qmat d2 = qm_new(DSQ_Q_FP8_BLOCK_UE8M0, rows, cols);
    CHECK(quant_all(&d, &d2, NULL) == DSQ_OK);
    float *w = malloc(sizeof(float) * rows * cols);
    CHECK(dsq_q_dequantize(&d2, 0, rows, w, NULL) == DSQ_OK);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = x[i], e = fabs(v - w[i]);
        CHECK(e <= fabs(v) * 0.125 + 1e-3);
    }
    qm_free(&d);
    qm_free(&d2);
    free(q);
    free(x);
    free(y);
    free(w);
}

TEST(test_quant_dequant_tile) {
    g_rng = 19;
    int64_t rows = 5, cols = 77;
    float x[5 * 77], full[5 * 77], tile[5 * 80];
    for (int i = 0; i < rows * cols; i++) x[i] = wrand();
    int ts[] = {DSQ_Q_INT4_G32_ASYM, DSQ_Q_INT4_G64_SYM, DSQ_Q_FP8_BLOCK, DSQ_Q_INT8_CHANNEL, DSQ_Q_F16};
    for (int ti = 0; ti < 5; ti++) {
        dsq_qmat src = f32_mat(x, rows, cols), d = qm_new(ts[ti], rows, cols);
        CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
        CHECK(dsq_q_dequantize(&d, 0, rows, full, NULL) == DSQ_OK);
        for (int64_t c0 = 0; c0 < cols; c0 += 13)
            for (int64_t c1 = c0; c1 <= cols; c1 += 17) {
                CHECK(dsq_q_dequantize_tile(&d, 1, 4, c0, c1, tile, 80, NULL) == DSQ_OK);
                for (int64_t r = 1; r < 4; r++)
                    CHECK(memcmp(tile + (r - 1) * 80, full + r * cols + c0, sizeof(float) * (c1 - c0)) == 0);
            }
        qm_free(&d);
    }
}

/* ---- argument checks ---------------------------------------------------------- */

TEST(test_quant_args) {
    float x[300 * 4] = {0}, imp[4] = {1, 1, -1, 1};
    dsq_err e;
    dsq_qmat src = f32_mat(x, 300, 4), d = qm_new(DSQ_Q_FP8_BLOCK, 300, 4);
    CHECK(dsq_q_quantize(&src, &d, 0, 128, NULL, &e) == DSQ_OK);
    CHECK(dsq_q_quantize(&src, &d, 128, 300, NULL, &e) == DSQ_OK);
    CHECK(dsq_q_quantize(&src, &d, 0, 100, NULL, &e) == DSQ_E_ARG);
    CHECK(dsq_q_quantize(&src, &d, 64, 128, NULL, &e) == DSQ_E_ARG);
    CHECK(dsq_q_quantize(&src, &d, 0, 301, NULL, &e) == DSQ_E_ARG);
    CHECK(dsq_q_quantize(&src, &d, 5, 4, NULL, &e) == DSQ_E_ARG);
    dsq_qopts o = {imp, 0, 0, 0};
    CHECK(dsq_q_quantize(&src, &d, 0, 300, &o, &e) == DSQ_E_ARG);
    o = (dsq_qopts){NULL, 65, 0, 0};
    CHECK(dsq_q_quantize(&src, &d, 0, 300, &o, &e) == DSQ_E_ARG);
    o = (dsq_qopts){NULL, 20, 1.5f, 0};
    CHECK(dsq_q_quantize(&src, &d, 0, 300, &o, &e) == DSQ_E_ARG);
    void *sv = d.scale;
    d.scale = NULL;
    CHECK(dsq_q_quantize(&src, &d, 0, 300, NULL, &e) == DSQ_E_ARG);
    d.scale = sv;
    dsq_qmat bad = f32_mat(x, 299, 4);
    CHECK(dsq_q_quantize(&bad, &d, 0, 128, NULL, &e) == DSQ_E_ARG);
    bad.type = 1000;
    CHECK(dsq_q_quantize(&bad, &d, 0, 128, NULL, &e) == DSQ_E_ARG);
    CHECK(dsq_q_dequantize(&d, 0, 301, x, &e) == DSQ_E_ARG);
    CHECK(dsq_q_dequantize_tile(&d, 0, 1, 2, 5, x, 8, &e) == DSQ_E_ARG);
    CHECK(dsq_q_dequantize_tile(&d, 0, 1, 1, 4, x, 2, &e) == DSQ_E_ARG);
    qm_free(&d);
    /* a tensor scheme needs dsq_q_prepare first */
    d = qm_new(DSQ_Q_FP8_TENSOR, 300, 4);
    CHECK(dsq_q_quantize(&src, &d, 0, 300, NULL, &e) == DSQ_E_ARG);
    CHECK(dsq_q_prepare(&src, &d, NULL, &e) == DSQ_OK);
    CHECK(dsq_q_quantize(&src, &d, 0, 300, NULL, &e) == DSQ_OK);
    qm_free(&d);
    CHECK(dsq_q_quantize(NULL, &d, 0, 1, NULL, &e) == DSQ_E_ARG);
}

/* Hostile values: NaN and inf are ignored by the range and encode as
 * documented, without upsetting their neighbours. */
TEST(test_quant_nonfinite) {
    float x[8] = {1.0f, NAN, INFINITY, -INFINITY, -0.5f, 0.25f, 0, 0}, y[8];
    dsq_qmat src = f32_mat(x, 1, 8);
    dsq_qmat d = qm_new(DSQ_Q_INT4_G32_SYM, 1, 8);
    CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
    CHECK(dsq_q_dequantize(&d, 0, 1, y, NULL) == DSQ_OK);
    float s = scale_at(&d, 0, 0);
    CHECK(s >= 1.0f / 7.5f && s < 1.0f / 7.4f);
    CHECK(y[1] == 0 && y[2] == 7 * s && y[3] == -8 * s);
    qm_free(&d);
    d = qm_new(DSQ_Q_FP8_CHANNEL_UE8M0, 1, 8);
    CHECK(quant_all(&src, &d, NULL) == DSQ_OK);
    const uint8_t *q = d.data;
    CHECK(q[1] == 0x7F && q[2] == 0x7E && q[3] == 0xFE);
    CHECK(scale_at(&d, 0, 0) == 1.0f / 256);
    qm_free(&d);
}

/* ---- storage accessors ---------------------------------------------------- */

/* The accessors of quant.h against the quantizer and the layouts above: for
 * every scheme with units, on a shape with partial blocks, an odd number of
 * groups and an odd column count, (1) every element's code, scale and zero
 * point decode to exactly what dsq_q_dequantize gives, its scale agreeing
 * with this file's own reading of the layout and its code with a re-encode
 * of the decoded value; (2) putting every scale, zero point and code again,
 * in order, into garbage-filled arrays rebuilds the same bytes (padding
 * nibbles included); (3) dsq_q_choose gives every unit the parameters the
 * quantizer stored, with and without an importance-weighted clip search. */
TEST(test_quant_layout_accessors) {
    enum { R = 130, C = 201 };
    static float x[R * C], y[R * C], imp[C];
    g_rng = 91;
    for (int i = 0; i < R * C; i++) x[i] = wrand();
    for (int j = 0; j < C; j++) imp[j] = (float)(rnd() % 100) / 10.0f;
    dsq_qmat src = f32_mat(x, R, C);
    for (int t = 0; t < DSQ_Q_COUNT; t++) {
        const dsq_qscheme *sc = dsq_q_scheme(t);
        /* ggml blocks keep their scales inside the blocks: no unit accessors */
        if (sc->kind == DSQ_QK_FLOAT || sc->kind == DSQ_QK_GGML) continue;
        for (int search = 0; search < 2; search++) {
            dsq_qopts o = {0};
            if (search) {
                o.imp = imp;
                o.clip_steps = 12;
                o.clip_min = 0.6f;
            }
            dsq_qmat d = qm_new(t, R, C);
            CHECK(quant_all(&src, &d, &o) == DSQ_OK);
            CHECK(dsq_q_dequantize(&d, 0, R, y, NULL) == DSQ_OK);
            dsq_qlayout L;
            dsq_err e;
            CHECK(dsq_q_layout_init(&L, &d, &e) == DSQ_OK);
            dsq_qsizes z;
            dsq_q_sizes(t, R, C, &z, NULL);
            CHECK(dsq_q_units_per_row(&L) == z.scale_cols);
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < C; j++) {
                    int64_t u = dsq_q_unit(&L, r, j);
                    float s = dsq_q_scale_get(&L, u);
                    int zp = dsq_q_zero_get(&L, r, j / L.unit_cols), c = dsq_q_code_get(&L, r, j);
                    float v = dsq_q_code_value(&L, c, s, zp);
                    CHECKF(u >= 0 && u < z.scale_rows * z.scale_cols, "%s unit %lld", sc->name, (long long)u);
                    CHECKF(s == scale_at(&d, r, j), "%s (%lld, %lld): scale", sc->name, (long long)r, (long long)j);
                    CHECKF(!memcmp(&v, &y[r * C + j], 4), "%s (%lld, %lld): %g decodes to %g", sc->name, (long long)r,
                           (long long)j, (double)y[r * C + j], (double)v);
                    CHECKF(dsq_q_code_of(&L, v, s, 1.0f / s, zp) == c, "%s (%lld, %lld): re-encode", sc->name,
                           (long long)r, (long long)j);
                }
            /* (2) rebuild through the put functions */
            dsq_qmat b = qm_new(t, R, C);
            memset(b.data, 0xA5, z.data);
            memset(b.scale, 0xA5, z.scale);
            if (z.zero) memset(b.zero, 0xA5, z.zero);
            dsq_qlayout LB;
            CHECK(dsq_q_layout_init(&LB, &b, &e) == DSQ_OK);
            for (int64_t u = 0; u < z.scale_rows * z.scale_cols; u++) {
                float s = dsq_q_scale_get(&L, u);
                CHECK(dsq_q_scale_stored(&LB, s) == s);
                dsq_q_scale_put(&LB, u, s);
            }
            for (int64_t r = 0; r < R; r++) {
                for (int64_t g = 0; g < z.scale_cols; g++) dsq_q_zero_put(&LB, r, g, dsq_q_zero_get(&L, r, g));
                for (int64_t j = 0; j < C; j++) dsq_q_code_put(&LB, r, j, dsq_q_code_get(&L, r, j));
            }
            CHECKF(!memcmp(d.data, b.data, z.data), "%s: codes rebuilt differ", sc->name);
            CHECKF(!memcmp(d.scale, b.scale, z.scale), "%s: scales rebuilt differ", sc->name);
            CHECKF(!z.zero || !memcmp(d.zero, b.zero, z.zero), "%s: zero points rebuilt differ", sc->name);
            qm_free(&b);
            /* (3) the quantizer's choice, unit by unit (tensor: the whole matrix) */
            for (int64_t r = 0; r < R; r += L.unit_rows)
                for (int64_t j = 0; j < C; j += L.unit_cols) {
                    int64_t nr = R - r < L.unit_rows ? R - r : L.unit_rows, nc = C - j < L.unit_cols ? C - j : L.unit_cols;
                    dsq_qopts ou = o;
                    ou.imp = o.imp ? o.imp + j : NULL;
                    float s;
                    int zz;
                    uint32_t bits;
                    CHECK(dsq_q_choose(t, x + r * C + j, nr, nc, C, &ou, &s, &zz, &bits) == DSQ_OK);
                    int64_t u = dsq_q_unit(&L, r, j);
                    CHECKF(s == dsq_q_scale_get(&L, u) && zz == dsq_q_zero_get(&L, r, j / L.unit_cols) &&
                               bits == dsq_q_scale_bits(&L, s),
                           "%s search %d: unit %lld chosen %g/%d, stored %g/%d", sc->name, search, (long long)u, (double)s,
                           zz, (double)dsq_q_scale_get(&L, u), dsq_q_zero_get(&L, r, j / L.unit_cols));
                }
            qm_free(&d);
        }
    }
    float s;
    int zz;
    CHECK(dsq_q_choose(DSQ_Q_BF16, x, 1, 4, 4, NULL, &s, &zz, NULL) == DSQ_E_ARG);
    dsq_qopts bad = {0};
    bad.clip_steps = DSQ_Q_MAX_CLIP + 1;
    CHECK(dsq_q_choose(DSQ_Q_INT4_G32_SYM, x, 1, 4, 4, &bad, &s, &zz, NULL) == DSQ_E_ARG);
    CHECK(dsq_q_choose(DSQ_Q_INT4_G32_SYM, x, 2, 4, 3, NULL, &s, &zz, NULL) == DSQ_E_ARG);
}
