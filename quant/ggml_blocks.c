/*
 * ggml_blocks.c -- the reference dequantizers of the ggml block types
 * (ggml_blocks.h), their per-type table, and the scalar kernel set.
 *
 * Each dequantizer reproduces ggml's dequantize_row_* (ggml-quants.c of
 * llama.cpp) operation for operation: the same products in the same order,
 * with no fused multiply-add, so the output floats are bit-identical.  The
 * f16 fields widen exactly, a NaN keeping its payload with the quiet bit
 * set, which is what ggml's scalar conversion and x86's F16C both produce.
 * The layouts themselves are documented in quant.h.
 */
#include "ggml_blocks.h"

#include <pthread.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* gcc in -std=c11 never contracts; clang would */
#endif

const int8_t dsq_gb_iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* ---- f16 ------------------------------------------------------------------ */

/* f16 bits to f32, exactly; NaN payloads are kept and quieted (x86 F16C). */
static inline float h2f(const uint8_t *p) {
    uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 1023, u;
    float f;
    if (e == 31) {
        u = s | 0x7F800000u | m << 13 | (m ? 0x400000u : 0);
    } else if (e == 0) {
        f = (float)m * 0x1p-24f; /* subnormal (or zero): exact */
        memcpy(&u, &f, 4);
        u |= s;
    } else {
        u = s | (e + 112) << 23 | m << 13;
    }
    memcpy(&f, &u, 4);
    return f;
}

/* ---- dequantizers ----------------------------------------------------------- */

/* One-level blocks of 32: x = code * d (Q8_0, Q4_0, Q5_0, IQ4_NL through the
 * grid) or code * d + m (Q4_1, Q5_1); the int code converts exactly. */
void dsq_q8_0_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q8_0 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 32; j++) x[j] = (float)b[i].qs[j] * d;
    }
}

void dsq_q4_0_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_0 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            x[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            x[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void dsq_q4_1_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_1 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < 16; j++) {
            x[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            x[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void dsq_q5_0_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_0 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            x[j] = (float)(((b[i].qs[j] & 0xF) | h0 << 4) - 16) * d;
            x[j + 16] = (float)(((b[i].qs[j] >> 4) | h1 << 4) - 16) * d;
        }
    }
}

void dsq_q5_1_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_1 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            x[j] = (float)((b[i].qs[j] & 0xF) | h0 << 4) * d + m;
            x[j + 16] = (float)((b[i].qs[j] >> 4) | h1 << 4) * d + m;
        }
    }
}

/* Element e = 128h + 32j + l of Q2_K / Q3_K: bits 2j..2j+1 of qs[32h + l];
 * sub-block e / 16. */
void dsq_q2_k_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q2_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int e = 0; e < 256; e++) {
            int sc = b[i].scales[e / 16];
            float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            x[e] = dl * (float)q - ml;
        }
    }
}

void dsq_q3_k_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q3_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        for (int e = 0; e < 256; e++) {
            float dl = d * (float)(dsq_gb_k3_scale(e / 16, b[i].scales) - 32);
            int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            int hi = (b[i].hmask[e % 32] >> (e / 32)) & 1;
            x[e] = dl * (float)(q - (hi ? 0 : 4));
        }
    }
}

/* Element e = 64c + l (l < 32): low nibble of qs[32c + l]; e = 64c + 32 + l:
 * its high nibble.  Sub-block e / 32. */
void dsq_q4_k_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            int sc, mn;
            dsq_gb_k4_scale_min(2 * c, b[i].scales, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            dsq_gb_k4_scale_min(2 * c + 1, b[i].scales, &sc, &mn);
            float d2 = d * (float)sc, m2 = dmin * (float)mn;
            const uint8_t *q = b[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) x[64 * c + l] = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) x[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void dsq_q5_k_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            int sc, mn;
            dsq_gb_k4_scale_min(2 * c, b[i].scales, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            dsq_gb_k4_scale_min(2 * c + 1, b[i].scales, &sc, &mn);
            float d2 = d * (float)sc, m2 = dmin * (float)mn;
            const uint8_t *q = b[i].qs + 32 * c, *qh = b[i].qh;
            for (int l = 0; l < 32; l++)
                x[64 * c + l] = d1 * (float)((q[l] & 0xF) + (((qh[l] >> (2 * c)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                x[64 * c + 32 + l] = d2 * (float)((q[l] >> 4) + (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
        }
    }
}

/* Element e = 128h + 32k + l (k = 0..3, l < 32): low 4 bits from ql[64h + l
 * + 32(k & 1)] (low nibble for k < 2, high nibble for k >= 2), high 2 bits
 * from bits 2k..2k+1 of qh[32h + l]; scale e / 16. */
/* Q6_K's scale product d * scales[e / 16] is formed first, then times the
 * signed code: ggml's "d * sc[is] * q" associates that way. */
void dsq_q6_k_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_q6_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, k = (e / 32) % 4, l = e % 32;
            int lo = b[i].ql[64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1)) & 0xF;
            int hi = (b[i].qh[32 * h + l] >> (2 * k)) & 3;
            x[e] = d * (float)b[i].scales[e / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

void dsq_iq4_nl_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_iq4_nl *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            x[j] = d * (float)dsq_gb_iq4_grid[b[i].qs[j] & 0xF];
            x[j + 16] = d * (float)dsq_gb_iq4_grid[b[i].qs[j] >> 4];
        }
    }
}

void dsq_iq4_xs_dequantize_ref(const void *vy, float *x, int64_t n) {
    const dsq_blk_iq4_xs *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        unsigned sh = (unsigned)b[i].scales_h[0] | (unsigned)b[i].scales_h[1] << 8;
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((sh >> (2 * ib)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            const uint8_t *q = b[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                x[32 * ib + j] = dl * (float)dsq_gb_iq4_grid[q[j] & 0xF];
                x[32 * ib + j + 16] = dl * (float)dsq_gb_iq4_grid[q[j] >> 4];
            }
        }
    }
}

/* ---- element access (ggml_blocks.h) -------------------------------------------
 * The reading side: the same fields, widened and multiplied as the
 * dequantizers above do it. */

void dsq_gb_elem_params(int type, const void *blk, int e, float *a, float *c) {
    const uint8_t *p = blk;
    int sc, mn;
    *c = 0;
    switch (type) {
    case DSQ_GB_Q8_0: case DSQ_GB_Q4_0: case DSQ_GB_Q5_0: case DSQ_GB_IQ4_NL:
        *a = h2f(p); /* d is the first field of each */
        break;
    case DSQ_GB_Q4_1: case DSQ_GB_Q5_1:
        *a = h2f(p);
        *c = -h2f(p + 2);
        break;
    case DSQ_GB_Q2_K: {
        const dsq_blk_q2_k *b = blk;
        sc = b->scales[e / 16];
        *a = h2f(b->d) * (float)(sc & 0xF);
        *c = h2f(b->dmin) * (float)(sc >> 4);
        break;
    }
    case DSQ_GB_Q3_K: {
        const dsq_blk_q3_k *b = blk;
        *a = h2f(b->d) * (float)(dsq_gb_k3_scale(e / 16, b->scales) - 32);
        break;
    }
    case DSQ_GB_Q4_K: case DSQ_GB_Q5_K: {
        /* d, dmin and scales[12] sit at the same offsets in both */
        const dsq_blk_q4_k *b = blk;
        dsq_gb_k4_scale_min(e / 32, b->scales, &sc, &mn);
        *a = h2f(b->d) * (float)sc;
        *c = h2f(b->dmin) * (float)mn;
        break;
    }
    case DSQ_GB_Q6_K: {
        const dsq_blk_q6_k *b = blk;
        *a = h2f(b->d) * (float)b->scales[e / 16];
        break;
    }
    case DSQ_GB_IQ4_XS: {
        const dsq_blk_iq4_xs *b = blk;
        unsigned sh = (unsigned)b->scales_h[0] | (unsigned)b->scales_h[1] << 8;
        int ib = e / 32, ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((sh >> (2 * ib)) & 3) << 4;
        *a = h2f(b->d) * (float)(ls - 32);
        break;
    }
    default: *a = 0; break;
    }
}

int dsq_gb_code_get(int type, const void *blk, int e) {
    const uint8_t *p = blk;
    int h = e / 128, k = (e / 32) % 4, l = e % 32;
    switch (type) {
    case DSQ_GB_Q8_0: return ((const dsq_blk_q8_0 *)blk)->qs[e] + 127;
    case DSQ_GB_Q4_0: case DSQ_GB_IQ4_NL: return (p[2 + e % 16] >> (4 * (e / 16))) & 0xF;
    case DSQ_GB_Q4_1: return (p[4 + e % 16] >> (4 * (e / 16))) & 0xF;
    case DSQ_GB_Q5_0: case DSQ_GB_Q5_1: {
        int o = type == DSQ_GB_Q5_0 ? 2 : 4; /* qh[4], then qs[16] */
        return ((p[o + 4 + e % 16] >> (4 * (e / 16))) & 0xF) | ((p[o + e / 8] >> (e % 8)) & 1) << 4;
    }
    case DSQ_GB_Q2_K: return (((const dsq_blk_q2_k *)blk)->qs[32 * h + l] >> (2 * k)) & 3;
    case DSQ_GB_Q3_K: {
        const dsq_blk_q3_k *b = blk;
        return ((b->qs[32 * h + l] >> (2 * k)) & 3) | ((b->hmask[l] >> (e / 32)) & 1) << 2;
    }
    case DSQ_GB_Q4_K: {
        const dsq_blk_q4_k *b = blk;
        return (b->qs[32 * (e / 64) + l] >> (4 * ((e / 32) % 2))) & 0xF;
    }
    case DSQ_GB_Q5_K: {
        const dsq_blk_q5_k *b = blk;
        int c = e / 64, hi = (e / 32) % 2;
        return ((b->qs[32 * c + l] >> (4 * hi)) & 0xF) | ((b->qh[l] >> (2 * c + hi)) & 1) << 4;
    }
    case DSQ_GB_Q6_K: {
        const dsq_blk_q6_k *b = blk;
        int lo = b->ql[64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1)) & 0xF;
        return lo | ((b->qh[32 * h + l] >> (2 * k)) & 3) << 4;
    }
    case DSQ_GB_IQ4_XS: {
        const dsq_blk_iq4_xs *b = blk;
        return (b->qs[16 * (e / 32) + e % 16] >> (4 * ((e % 32) / 16))) & 0xF;
    }
    default: return 0;
    }
}

/* ---- tables ---------------------------------------------------------------- */

/* The element grids are the quantizers' (ggml_quant.c: G_Q8 ... K_IQ4XS). */
#define T(id, nm, gt, bl, by, f, sub, nlev, lo, nl) \
    [id] = {nm, gt, bl, by, dsq_##f##_quantize_ref, dsq_##f##_dequantize_ref, sub, nlev, lo, nl}
static const dsq_gbtype g_types[DSQ_GB_COUNT] = {
    T(DSQ_GB_Q8_0, "q8_0", 8, 32, 34, q8_0, 32, 255, -127, 0),
    T(DSQ_GB_Q4_0, "q4_0", 2, 32, 18, q4_0, 32, 16, -8, 0),
    T(DSQ_GB_Q4_1, "q4_1", 3, 32, 20, q4_1, 32, 16, 0, 0),
    T(DSQ_GB_Q5_0, "q5_0", 6, 32, 22, q5_0, 32, 32, -16, 0),
    T(DSQ_GB_Q5_1, "q5_1", 7, 32, 24, q5_1, 32, 32, 0, 0),
    T(DSQ_GB_Q2_K, "q2_k", 10, 256, 84, q2_k, 16, 4, 0, 0),
    T(DSQ_GB_Q3_K, "q3_k", 11, 256, 110, q3_k, 16, 8, -4, 0),
    T(DSQ_GB_Q4_K, "q4_k", 12, 256, 144, q4_k, 32, 16, 0, 0),
    T(DSQ_GB_Q5_K, "q5_k", 13, 256, 176, q5_k, 32, 32, 0, 0),
    T(DSQ_GB_Q6_K, "q6_k", 14, 256, 210, q6_k, 16, 64, -32, 0),
    T(DSQ_GB_IQ4_NL, "iq4_nl", 20, 32, 18, iq4_nl, 32, 16, 0, 1),
    T(DSQ_GB_IQ4_XS, "iq4_xs", 23, 256, 136, iq4_xs, 32, 16, 0, 1),
};
#undef T

const dsq_gbtype *dsq_gb_type(int i) {
    return i >= 0 && i < DSQ_GB_COUNT ? &g_types[i] : NULL;
}

const dsq_gbkern dsq_gbkern_ref = {
    .name = "ref",
    .dq = {
        [DSQ_GB_Q8_0] = dsq_q8_0_dequantize_ref,
        [DSQ_GB_Q4_0] = dsq_q4_0_dequantize_ref,
        [DSQ_GB_Q4_1] = dsq_q4_1_dequantize_ref,
        [DSQ_GB_Q5_0] = dsq_q5_0_dequantize_ref,
        [DSQ_GB_Q5_1] = dsq_q5_1_dequantize_ref,
        [DSQ_GB_Q2_K] = dsq_q2_k_dequantize_ref,
        [DSQ_GB_Q3_K] = dsq_q3_k_dequantize_ref,
        [DSQ_GB_Q4_K] = dsq_q4_k_dequantize_ref,
        [DSQ_GB_Q5_K] = dsq_q5_k_dequantize_ref,
        [DSQ_GB_Q6_K] = dsq_q6_k_dequantize_ref,
        [DSQ_GB_IQ4_NL] = dsq_iq4_nl_dequantize_ref,
        [DSQ_GB_IQ4_XS] = dsq_iq4_xs_dequantize_ref,
    },
    .search = &dsq_gbsearch_ref,
};

/* ---- dispatch ------------------------------------------------------------
 * Chosen once under pthread_once, read-only afterwards (the same pattern as
 * quant_ref.c's dsq_qkern_best). */
static const dsq_gbkern *g_best;
static pthread_once_t g_best_once = PTHREAD_ONCE_INIT;

static void choose_best(void) {
    const dsq_gbkern *k = dsq_gbkern_avx2();
    g_best = k ? k : &dsq_gbkern_ref;
}

const dsq_gbkern *dsq_gbkern_best(void) {
    pthread_once(&g_best_once, choose_best);
    return g_best;
}
