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
 * The 6 x 16 micro-kernel, with its 8-column twin and the panel packing, is
 * an entry of the library's kernel table (quant/quant_int.h: scalar in
 * quant_ref.c, AVX2+FMA in simd_avx2_dense.c); this file is the blocking
 * around it.
 *
 * Every Y element is accumulated over k in increasing order in one f32
 * accumulator (stored to Y between k blocks, which does not round), so the
 * result does not depend on T, N, blocking or threading.
 */
#include "verify/gemm.h"
#include "quant/quant_int.h"

#include <string.h>

#define MR DSQ_K_GEMM_MR
#define NR DSQ_GEMM_NR
#define KC DSQ_GEMM_KC

_Static_assert(DSQ_GEMM_NR == DSQ_K_GEMM_NR, "gemm.h panel width is the micro-kernels' (quant_int.h)");

/* c[i*ldc + j] (+)= sum_k xr[i][k] * pk[k*NR + j] for i < MR, j < NR: the
 * micro-kernels of the kernel table (quant_int.h), scalar or AVX2+FMA. */
typedef void (*micro_fn)(int kc, const float *const xr[MR], const float *pk, float *c,
                         int64_t ldc, int acc);

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

static void gemm_with(const dsq_qkern *k, int T, int N, int K, const float *X, int64_t ldx, const float *W,
                      int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    gemm(k->gemm_6x16, k->gemm_6x8, k->gemm_pack16, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}

const char *dsq_gemm_kernel(void) {
    return dsq_qkern_best()->gemm_6x16 == dsq_qkern_ref.gemm_6x16 ? "scalar" : "avx2";
}

void dsq_gemm_nt(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                 int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    gemm_with(dsq_qkern_best(), T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}

void dsq_gemm_nt_scalar(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                        int64_t ldw, float *Y, int64_t ldy, int acc, float *pack) {
    gemm_with(&dsq_qkern_ref, T, N, K, X, ldx, W, ldw, Y, ldy, acc, pack);
}
