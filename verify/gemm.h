/*
 * gemm.h -- the one matrix kernel of the reference forward pass:
 *
 *     Y[t][n] = (acc ? Y[t][n] : 0) + sum_{k=0}^{K-1} X[t][k] * W[n][k]
 *
 * i.e. activations X [T x K] (one row per token) times the transpose of a
 * weight tile W [N x K] (one row per output feature, the layout of a linear
 * layer's weight).  Everything is f32.
 *
 * Summation order is fixed and independent of blocking: every Y[t][n] is
 * accumulated in one f32 accumulator over k = 0, 1, ..., K-1, one multiply-add
 * per k.  The AVX2 kernel uses fused multiply-add, the scalar kernel a
 * separate multiply and add, so the two differ by rounding; within one build
 * the result never depends on how rows or columns are split over threads or
 * tiles.
 */
#ifndef DSQ_GEMM_H
#define DSQ_GEMM_H

#include <stdint.h>

/* Depth of one packed weight panel (elements of k) and its width (columns). */
#define DSQ_GEMM_KC 256
#define DSQ_GEMM_NR 16
/* Products with at most this many tokens (rows of X) swap the roles of the
 * operands; weight rows are then taken DSQ_GEMM_CHUNK at a time. */
#define DSQ_GEMM_SMALL_T 64
#define DSQ_GEMM_CHUNK 240
/* Floats of scratch dsq_gemm_nt needs in `pack` (64-byte aligned): a packed
 * panel, plus the transposed output block of the few-token path. */
#define DSQ_GEMM_PACK (DSQ_GEMM_KC * DSQ_GEMM_NR + (DSQ_GEMM_CHUNK + 8) * DSQ_GEMM_SMALL_T)

/* Dispatching kernel: AVX2+FMA when the CPU has it (and the build was not
 * made with DSQ_NO_SIMD), otherwise the scalar kernel.  Strides are in
 * floats.  T, N, K >= 0; K == 0 with acc == 0 writes zeros. */
void dsq_gemm_nt(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                 int64_t ldw, float *Y, int64_t ldy, int acc, float *pack);

/* The same blocked algorithm with the scalar micro-kernel, whatever the CPU. */
void dsq_gemm_nt_scalar(int T, int N, int K, const float *X, int64_t ldx, const float *W,
                        int64_t ldw, float *Y, int64_t ldy, int acc, float *pack);

/* Name of the kernel dsq_gemm_nt uses on this machine: "avx2" or "scalar". */
const char *dsq_gemm_kernel(void);

#endif
