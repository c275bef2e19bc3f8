/*
 * gemm.c -- blocked f32 matrix product Y = X * W^T for the forward pass
 * (see gemm.h for the contract).
 *
 * Blocking follows the classic Goto/BLIS scheme, reduced to what a prefill
 * needs:
 *   - k is cut into blocks of KC = 256;
 *   - for each block, NR = 16 weight rows are packed into a "panel"
 *     pk[k][j] = W[n0 + j][k0 + k] (16 KB, stays in L1), so the inner loop
 *     reads the weights contiguously;
 *   - the panel is then swept against all T tokens, MR = 6 at a time; the
 *     6 x kc slice of X streams from L2 and each X element is broadcast
 *     against the 16 panel columns.
 * The micro-kernel keeps a 6 x 16 block of Y in 12 AVX2 registers (the
 * largest block that leaves room for two weight loads and one broadcast in
 * the 16 ymm registers).  Per k it issues 12 FMAs for 8 loads, so it is bound
 * by the FMA units, not by memory.
 *
 * Every Y element is accumulated over k in increasing order in one f32
 * accumulator (stored to Y between k blocks, which does not round), so the
 * result does not depend on T, N, blocking or threading.
 */
#include "verify/gemm.h"

#include <pthread.h>
#include <string.h>

#if !defined(DSQ_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define GEMM_HAVE_AVX2 1
#include <immintrin.h>
#endif

#define MR 6
#define NR DSQ_GEMM_NR
#define KC DSQ_GEMM_KC

/* c[i*ldc + j] (+)= sum_k xr[i][k] * pk[k*NR + j] for i < MR, j < NR. */
typedef void (*micro_fn)(int kc, const float *const xr[MR], const float *pk, float *c,
                         int64_t ldc, int acc);

/* ---- scalar micro-kernel -------------------------------------------------- */

static void micro_scalar(int kc, const float *const xr[MR], const float *pk, float *c,
                         int64_t ldc, int acc) {
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

/* ---- AVX2 + FMA micro-kernel ---------------------------------------------- */
#ifdef GEMM_HAVE_AVX2
__attribute__((target("avx2,fma")))
static void micro_avx2(int kc, const float *const xr[MR], const float *pk, float *c,
                       int64_t ldc, int acc) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (acc) {
        c00 = _mm256_loadu_ps(c + 0 * ldc); c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
        c10 = _mm256_loadu_ps(c + 1 * ldc); c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc); c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc); c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc); c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc); c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(pk), b1 = _mm256_load_ps(pk + 8), a;
        pk += NR;
        a = _mm256_broadcast_ss(x0 + k);
        c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(x1 + k);
        c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(x2 + k);
        c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(x3 + k);
        c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(x4 + k);
        c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(x5 + k);
        c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#endif

/* ---- blocked driver ------------------------------------------------------- */

static void gemm_blocked(micro_fn micro, int T, int N, int K, const float *X, int64_t ldx,
                         const float *W, int64_t ldw, float *Y, int64_t ldy, int acc,
                         float *pack) {
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc)
            for (int t = 0; t < T; t++) memset(Y + t * ldy, 0, (size_t)N * sizeof(float));
        return;
    }
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        int a = acc || k0 > 0;
        for (int n0 = 0; n0 < N; n0 += NR) {
            int nr = N - n0 < NR ? N - n0 : NR;
            /* pack the panel; missing columns of a short panel are zero */
            for (int j = 0; j < NR; j++) {
                if (j < nr) {
                    const float *w = W + (int64_t)(n0 + j) * ldw + k0;
                    for (int k = 0; k < kc; k++) pack[k * NR + j] = w[k];
                } else {
                    for (int k = 0; k < kc; k++) pack[k * NR + j] = 0.0f;
                }
            }
            for (int t0 = 0; t0 < T; t0 += MR) {
                int mr = T - t0 < MR ? T - t0 : MR;
                /* rows past T repeat the last real row; their results are dropped */
                const float *xr[MR];
                for (int i = 0; i < MR; i++)
                    xr[i] = X + (int64_t)(t0 + (i < mr ? i : mr - 1)) * ldx + k0;
                float *y = Y + (int64_t)t0 * ldy + n0;
                if (mr == MR && nr == NR) {
                    micro(kc, xr, pack, y, ldy, a);
                } else {
                    float tmp[MR * NR] = {0};
                    if (a)
                        for (int i = 0; i < mr; i++)
                            memcpy(tmp + i * NR, y + i * ldy, (size_t)nr * sizeof(float));
                    micro(kc, xr, pack, tmp, NR, a);
                    for (int i = 0; i < mr; i++)
                        memcpy(y + i * ldy, tmp + i * NR, (size_t)nr * sizeof(float));
                }
            }
        }
    }
}

/* ---- dispatch ------------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_use_avx2; /* written once under g_once, read-only afterwards */

static void detect(void) {
#ifdef GEMM_HAVE_AVX2
    __builtin_cpu_init();
    g_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    g_use_avx2 = 0;
#endif
}

const char *dsq_gemm_kernel(void) {
    pthread_once(&g_once, detect);
    return g_use_avx2 ? "avx2" : "scalar";
}

void dsq_gemm_nt(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                 int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    pthread_once(&g_once, detect);
#ifdef GEMM_HAVE_AVX2
    if (g_use_avx2) {
        gemm_blocked(micro_avx2, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
        return;
    }
#endif
    gemm_blocked(micro_scalar, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}

void dsq_gemm_nt_scalar(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                        int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    gemm_blocked(micro_scalar, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}
