/*
 * quant_ref.c -- the scalar reference kernels of quant_int.h ("reference
 * implementation for deterministic creation of model files", as ggml-quants.c
 * puts it), the dense kernels' scalar versions, and the run-time choice
 * between them and the SIMD sets: the one CPU probe and the one table.
 *
 * These loops define the output bytes; simd_avx2.c must match them exactly,
 * and simd_avx2_dense.c the rank-m updates (see quant_int.h).
 */
#include "quant_int.h"
#include "quant.h"
#include "dtype.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static void e4m3_dq_ref(const uint8_t *q, int64_t n, float s, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = dsq_e4m3_lut[q[i]] * s;
}

static void bf16_dq_ref(const uint8_t *p, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = dsq_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

static void f16_dq_ref(const uint8_t *p, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

static void i8_dq_ref(const uint8_t *p, int64_t n, float s, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i] * s;
}

static void i4_dq_ref(const uint8_t *p, int64_t n, float s, int z, float *out) {
    for (int64_t i = 0; i < n; i++) {
        int u = (i & 1) ? p[i / 2] >> 4 : p[i / 2] & 15;
        out[i] = (float)(u - z) * s;
    }
}

/* Non-finite elements count as 0, so a stray inf/NaN cannot blow the range
 * up; the comparison form matches _mm256_max_ps. */
static float absmax_ref(const float *x, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (!(a < INFINITY)) a = 0;
        m = dsq_q_maxps(m, a);
    }
    return m;
}

static void minmax_ref(const float *x, int64_t n, float *mn, float *mx) {
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = fabsf(x[i]) < INFINITY ? x[i] : 0.0f;
        lo = dsq_q_minps(lo, v);
        hi = dsq_q_maxps(hi, v);
    }
    *mn = lo;
    *mx = hi;
}

static void e4m3_enc_ref(const float *x, int64_t n, float s, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = dsq_f32_to_e4m3(x[i] / s);
}

/* The error sum of e4m3_ties (quant_int.h) over the non-tie elements. */
static float ties_sum_ref(const float *x, int64_t n, float inv, const uint8_t *out) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        if (fabsf(v) < INFINITY && !dsq_e4m3_is_tie(v)) acc[i % 8] += dsq_e4m3_lut[out[i]] - v;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void e4m3_ties_ref(const float *x, int64_t n, float s, uint8_t *out) {
    if (!dsq_q_scale_pow2(s)) return;
    const float inv = 1.0f / s;
    float sum = ties_sum_ref(x, n, inv, out);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] * inv;
        if (dsq_e4m3_is_tie(v)) dsq_e4m3_tie_step(v, &out[i], &sum);
    }
}

static void i8_enc_ref(const float *x, int64_t n, float inv, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)(int8_t)dsq_q_i8_code(x[i], inv);
}

static void i4_enc_ref(const float *x, int64_t n, float inv, int z, uint8_t *out) {
    for (int64_t i = 0; i < n; i += 2) {
        unsigned lo = dsq_q_i4_code(x[i], inv, z);
        unsigned hi = i + 1 < n ? dsq_q_i4_code(x[i + 1], inv, z) : 0;
        out[i / 2] = (uint8_t)(lo | hi << 4);
    }
}

static void bf16_enc_ref(const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = dsq_f32_to_bf16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static void f16_enc_ref(const float *x, int64_t n, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = dsq_f32_to_f16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ---- dense kernels ---------------------------------------------------------- */

static void sub_many_ref(double *a, const double *const *x, const double *s, int m, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double v = a[j];
        for (int p = 0; p < m; p++) v -= s[p] * x[p][j];
        a[j] = v;
    }
}

static void sub_many_f_ref(float *a, const float *const *x, const float *s, int m, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        float v = a[j];
        for (int p = 0; p < m; p++) v -= s[p] * x[p][j];
        a[j] = v;
    }
}

static void add_many_ref(double *const *a, const double *s, int m, const double *x, int64_t n) {
    for (int r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) a[r][j] += s[r] * x[j];
}

static void xtx_acc_ref(float *tmp, const float *x, int64_t n, int64_t c) { DSQ_K_XTX_BODY }

#define MR DSQ_K_GEMM_MR
#define NR DSQ_K_GEMM_NR

/* A separate multiply and add per k: the scalar kernel rounds twice. */
static void gemm_6x16_ref(int kc, const float *const xr[MR], const float *pk, float *c, int64_t ldc, int acc) {
    float a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) a[i][j] = acc ? c[i * ldc + j] : 0.0f;
    for (int k = 0; k < kc; k++) {
        const float *b = pk + (int64_t)k * NR;
        for (int i = 0; i < MR; i++) {
            float x = xr[i][k];
            for (int j = 0; j < NR; j++) a[i][j] += x * b[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = a[i][j];
}

static void gemm_6x8_ref(int kc, const float *const xr[MR], const float *pk, float *c, int64_t ldc, int acc) {
    float a[MR][8];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 8; j++) a[i][j] = acc ? c[i * ldc + j] : 0.0f;
    for (int k = 0; k < kc; k++) {
        const float *b = pk + (int64_t)k * 8;
        for (int i = 0; i < MR; i++) {
            float x = xr[i][k];
            for (int j = 0; j < 8; j++) a[i][j] += x * b[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 8; j++) c[i * ldc + j] = a[i][j];
}

#undef MR
#undef NR

const dsq_qkern dsq_qkern_ref = {
    .name = "ref",
    .e4m3_dq = e4m3_dq_ref,
    .bf16_dq = bf16_dq_ref,
    .f16_dq = f16_dq_ref,
    .i8_dq = i8_dq_ref,
    .i4_dq = i4_dq_ref,
    .absmax = absmax_ref,
    .minmax = minmax_ref,
    .e4m3_enc = e4m3_enc_ref,
    .e4m3_ties = e4m3_ties_ref,
    .i8_enc = i8_enc_ref,
    .i4_enc = i4_enc_ref,
    .bf16_enc = bf16_enc_ref,
    .f16_enc = f16_enc_ref,
    .sub_many = sub_many_ref,
    .sub_many_f = sub_many_f_ref,
    .add_many = add_many_ref,
    .xtx_acc = xtx_acc_ref,
    .gemm_6x16 = gemm_6x16_ref,
    .gemm_6x8 = gemm_6x8_ref,
};

/* ---- dispatch ------------------------------------------------------------
 * The writable globals of quant/: the CPU features and the chosen table, each
 * written once under pthread_once and read-only afterwards.  Two once-flags,
 * because filling the table reads the features. */
static dsq_cpu g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;
static dsq_qkern g_best;
static pthread_once_t g_best_once = PTHREAD_ONCE_INIT;

static void probe_cpu(void) { dsq_cpu_probe(&g_cpu); }

const dsq_cpu *dsq_cpu_get(void) {
    pthread_once(&g_cpu_once, probe_cpu);
    return &g_cpu;
}

static void choose_best(void) {
    dsq_codecs_init();
    const dsq_cpu *cpu = dsq_cpu_get();
    const dsq_qkern *k = dsq_qkern_avx2(cpu);
    /* the quantization kernels go together (one name for the set), the
     * dense ones one by one after them */
    g_best = k ? *k : dsq_qkern_ref;
    g_best.sub_many = dsq_qkern_ref.sub_many;
    g_best.sub_many_f = dsq_qkern_ref.sub_many_f;
    g_best.add_many = dsq_qkern_ref.add_many;
    g_best.xtx_acc = dsq_qkern_ref.xtx_acc;
    g_best.gemm_6x16 = dsq_qkern_ref.gemm_6x16;
    g_best.gemm_6x8 = dsq_qkern_ref.gemm_6x8;
    g_best.gemm_pack16 = NULL;
    dsq_qkern_dense_avx2(&g_best, cpu);
}

const dsq_qkern *dsq_qkern_best(void) {
    pthread_once(&g_best_once, choose_best);
    return &g_best;
}

const char *dsq_q_simd_name(void) { return dsq_qkern_best()->name; }
