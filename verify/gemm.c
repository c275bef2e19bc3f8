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

/* The same on an 8-column panel (pk[k*8 + j]): the tail of a token panel. */
static void micro8_scalar(int kc, const float *const xr[MR], const float *pk, float *c,
                          int64_t ldc, int acc) {
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

__attribute__((target("avx2,fma")))
static void micro8_avx2(int kc, const float *const xr[MR], const float *pk, float *c,
                        int64_t ldc, int acc) {
    __m256 c0, c1, c2, c3, c4, c5;
    if (acc) {
        c0 = _mm256_loadu_ps(c + 0 * ldc); c1 = _mm256_loadu_ps(c + 1 * ldc);
        c2 = _mm256_loadu_ps(c + 2 * ldc); c3 = _mm256_loadu_ps(c + 3 * ldc);
        c4 = _mm256_loadu_ps(c + 4 * ldc); c5 = _mm256_loadu_ps(c + 5 * ldc);
    } else {
        c0 = c1 = c2 = c3 = c4 = c5 = _mm256_setzero_ps();
    }
    const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
    for (int k = 0; k < kc; k++) {
        __m256 b = _mm256_load_ps(pk);
        pk += 8;
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x0 + k), b, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x1 + k), b, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x2 + k), b, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x3 + k), b, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(x4 + k), b, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(x5 + k), b, c5);
    }
    _mm256_storeu_ps(c + 0 * ldc, c0); _mm256_storeu_ps(c + 1 * ldc, c1);
    _mm256_storeu_ps(c + 2 * ldc, c2); _mm256_storeu_ps(c + 3 * ldc, c3);
    _mm256_storeu_ps(c + 4 * ldc, c4); _mm256_storeu_ps(c + 5 * ldc, c5);
}

/* Pack a full 16-row panel with 8 x 8 register transposes: the packing pass
 * touches every weight once per window, so a scalar transpose would cost a
 * noticeable fraction of the multiply itself when few tokens share a tile
 * (routed experts). */
__attribute__((target("avx2,fma")))
static void pack16_avx2(const float *W, int64_t ldw, int kc, float *pack) {
    int k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int half = 0; half < 2; half++) {
            const float *w = W + (int64_t)(8 * half) * ldw + k;
            __m256 r0 = _mm256_loadu_ps(w), r1 = _mm256_loadu_ps(w + ldw);
            __m256 r2 = _mm256_loadu_ps(w + 2 * ldw), r3 = _mm256_loadu_ps(w + 3 * ldw);
            __m256 r4 = _mm256_loadu_ps(w + 4 * ldw), r5 = _mm256_loadu_ps(w + 5 * ldw);
            __m256 r6 = _mm256_loadu_ps(w + 6 * ldw), r7 = _mm256_loadu_ps(w + 7 * ldw);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *p = pack + (int64_t)k * NR + 8 * half;
            _mm256_store_ps(p + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_store_ps(p + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_store_ps(p + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_store_ps(p + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_store_ps(p + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_store_ps(p + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_store_ps(p + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_store_ps(p + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    for (; k < kc; k++)
        for (int j = 0; j < NR; j++) pack[k * NR + j] = W[(int64_t)j * ldw + k];
}
#endif

/* pk[k][j] = W[j][k] for j < nr, zero for nr <= j < width (16 or 8). */
static void pack_cols(const float *W, int64_t ldw, int kc, int nr, int width, float *pack) {
    for (int j = 0; j < width; j++) {
        if (j < nr) {
            const float *w = W + (int64_t)j * ldw;
            for (int k = 0; k < kc; k++) pack[k * width + j] = w[k];
        } else {
            for (int k = 0; k < kc; k++) pack[k * width + j] = 0.0f;
        }
    }
}
static void pack_scalar(const float *W, int64_t ldw, int kc, int nr, float *pack) {
    pack_cols(W, ldw, kc, nr, NR, pack);
}

typedef void (*pack_fn)(const float *W, int64_t ldw, int kc, float *pack);

/* ---- blocked driver ------------------------------------------------------- */

static void gemm_blocked(micro_fn micro, pack_fn pack16, int T, int N, int K, const float *X,
                         int64_t ldx, const float *W, int64_t ldw, float *Y, int64_t ldy, int acc,
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
            const float *w = W + (int64_t)n0 * ldw + k0;
            if (nr == NR && pack16) pack16(w, ldw, kc, pack);
            else pack_scalar(w, ldw, kc, nr, pack);
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

/* Few tokens (T <= SMALL_T): the roles swap.  The tokens are packed into
 * 16-wide panels (reused by every weight row) and the weight rows are
 * broadcast from the row-major tile as they are, so the weights are never
 * repacked -- with few tokens per weight element that repacking would cost
 * as much as the multiply.  The micro-kernel then produces Y transposed,
 * which is kept in a small local buffer across k blocks and transposed into
 * Y at the end.  fma(w, x, c) == fma(x, w, c) exactly, so every element gets
 * the same bits as in the other orientation. */
#define SMALL_T DSQ_GEMM_SMALL_T
#define CHUNK DSQ_GEMM_CHUNK /* weight rows per transposed block: whole groups of MR = 6 */

static void gemm_small(micro_fn micro, micro_fn micro8, pack_fn pack16, int T, int N, int K,
                       const float *X, int64_t ldx, const float *W, int64_t ldw, float *Y,
                       int64_t ldy, int acc, float *pack) {
    /* the transposed block lives after the packed panel; its rows past the
     * chunk catch the unused rows of a short row group */
    float *yt = pack + KC * NR;
    int tp = (T + NR - 1) / NR * NR;
    for (int c0 = 0; c0 < N; c0 += CHUNK) {
        int nc = N - c0 < CHUNK ? N - c0 : CHUNK;
        memset(yt, 0, sizeof(float) * (size_t)(nc + MR) * SMALL_T);
        if (acc)
            for (int n = 0; n < nc; n++)
                for (int t = 0; t < T; t++) yt[n * SMALL_T + t] = Y[(int64_t)t * ldy + c0 + n];
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            int a = acc || k0 > 0;
            for (int t0 = 0; t0 < tp; t0 += NR) {
                int nt = T - t0 < NR ? T - t0 : NR, narrow = nt <= 8;
                const float *x = X + (int64_t)t0 * ldx + k0;
                /* a tail of at most 8 tokens gets the 8-wide kernel: half the padding */
                if (narrow) pack_cols(x, ldx, kc, nt, 8, pack);
                else if (nt == NR && pack16) pack16(x, ldx, kc, pack);
                else pack_scalar(x, ldx, kc, nt, pack);
                for (int n0 = 0; n0 < nc; n0 += MR) {
                    const float *wr[MR];
                    for (int i = 0; i < MR; i++)
                        wr[i] = W + (int64_t)(c0 + (n0 + i < nc ? n0 + i : nc - 1)) * ldw + k0;
                    (narrow ? micro8 : micro)(kc, wr, pack, yt + n0 * SMALL_T + t0, SMALL_T, a);
                }
            }
        }
        for (int t = 0; t < T; t++)
            for (int n = 0; n < nc; n++) Y[(int64_t)t * ldy + c0 + n] = yt[n * SMALL_T + t];
    }
}

static void gemm(micro_fn micro, micro_fn micro8, pack_fn pack16, int T, int N, int K,
                 const float *X, int64_t ldx, const float *W, int64_t ldw, float *Y, int64_t ldy,
                 int acc, float *pack) {
    if (T > 0 && T <= SMALL_T && N > 0 && K > 0)
        gemm_small(micro, micro8, pack16, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
    else
        gemm_blocked(micro, pack16, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
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
        gemm(micro_avx2, micro8_avx2, pack16_avx2, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
        return;
    }
#endif
    gemm(micro_scalar, micro8_scalar, NULL, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}

void dsq_gemm_nt_scalar(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                        int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    gemm(micro_scalar, micro8_scalar, NULL, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}
