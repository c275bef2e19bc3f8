/*
 * simd_avx2_dense.c -- the AVX / AVX2+FMA versions of the dense kernels of
 * quant_int.h: the rank-m updates of calib/'s linear algebra and GPTQ, the
 * X^T X accumulation of calib/stats.c, and the matrix-product micro-kernels
 * and panel packing of verify/gemm.c.  Their scalar versions are in
 * quant_ref.c; which ones run is decided once from the CPU probe
 * (dsq_qkern_best), each by its own feature needs.
 *
 * Exactness: the rank-m updates do per element the operations of the _ref
 * loops in the same order (separate multiply and add, no FMA), only several
 * elements at a time, so they are bit-identical to them; xtx_acc is the same
 * C loop compiled for AVX2 (see quant_int.h); the GEMM micro-kernels use
 * FMA and differ from _ref by rounding, which gemm.h documents.
 */
#include "quant_int.h"

#include <stdint.h>

#if !defined(DSQ_NO_SIMD) && defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#define AVX __attribute__((target("avx")))
#define AVX2 __attribute__((target("avx2,fma")))
#define MR DSQ_K_GEMM_MR
#define NR DSQ_K_GEMM_NR

/* ---- rank-m updates (f64 linear algebra, GPTQ's f32 error updates) ---------- */

/* Four vectors at a time in sub_many: the m subtractions into one element
 * form a dependency chain, so independent chains keep the units busy. */
AVX static void sub_many_avx(double *a, const double *const *x, const double *s, int m, int64_t n) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256d v0 = _mm256_loadu_pd(a + j), v1 = _mm256_loadu_pd(a + j + 4);
        __m256d v2 = _mm256_loadu_pd(a + j + 8), v3 = _mm256_loadu_pd(a + j + 12);
        for (int p = 0; p < m; p++) {
            __m256d sp = _mm256_set1_pd(s[p]);
            const double *xp = x[p] + j;
            v0 = _mm256_sub_pd(v0, _mm256_mul_pd(sp, _mm256_loadu_pd(xp)));
            v1 = _mm256_sub_pd(v1, _mm256_mul_pd(sp, _mm256_loadu_pd(xp + 4)));
            v2 = _mm256_sub_pd(v2, _mm256_mul_pd(sp, _mm256_loadu_pd(xp + 8)));
            v3 = _mm256_sub_pd(v3, _mm256_mul_pd(sp, _mm256_loadu_pd(xp + 12)));
        }
        _mm256_storeu_pd(a + j, v0);
        _mm256_storeu_pd(a + j + 4, v1);
        _mm256_storeu_pd(a + j + 8, v2);
        _mm256_storeu_pd(a + j + 12, v3);
    }
    for (; j + 4 <= n; j += 4) {
        __m256d v = _mm256_loadu_pd(a + j);
        for (int p = 0; p < m; p++) v = _mm256_sub_pd(v, _mm256_mul_pd(_mm256_set1_pd(s[p]), _mm256_loadu_pd(x[p] + j)));
        _mm256_storeu_pd(a + j, v);
    }
    for (; j < n; j++) {
        double v = a[j];
        for (int p = 0; p < m; p++) v -= s[p] * x[p][j];
        a[j] = v;
    }
}
AVX static void add_many_avx(double *const *a, const double *s, int m, const double *x, int64_t n) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        __m256d xv = _mm256_loadu_pd(x + j);
        for (int r = 0; r < m; r++)
            _mm256_storeu_pd(a[r] + j, _mm256_add_pd(_mm256_loadu_pd(a[r] + j), _mm256_mul_pd(_mm256_set1_pd(s[r]), xv)));
    }
    for (; j < n; j++)
        for (int r = 0; r < m; r++) a[r][j] += s[r] * x[j];
}
AVX static void sub_many_f_avx(float *a, const float *const *x, const float *s, int m, int64_t n) {
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 v0 = _mm256_loadu_ps(a + j), v1 = _mm256_loadu_ps(a + j + 8);
        __m256 v2 = _mm256_loadu_ps(a + j + 16), v3 = _mm256_loadu_ps(a + j + 24);
        for (int p = 0; p < m; p++) {
            __m256 sp = _mm256_set1_ps(s[p]);
            const float *xp = x[p] + j;
            v0 = _mm256_sub_ps(v0, _mm256_mul_ps(sp, _mm256_loadu_ps(xp)));
            v1 = _mm256_sub_ps(v1, _mm256_mul_ps(sp, _mm256_loadu_ps(xp + 8)));
            v2 = _mm256_sub_ps(v2, _mm256_mul_ps(sp, _mm256_loadu_ps(xp + 16)));
            v3 = _mm256_sub_ps(v3, _mm256_mul_ps(sp, _mm256_loadu_ps(xp + 24)));
        }
        _mm256_storeu_ps(a + j, v0);
        _mm256_storeu_ps(a + j + 8, v1);
        _mm256_storeu_ps(a + j + 16, v2);
        _mm256_storeu_ps(a + j + 24, v3);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(a + j);
        for (int p = 0; p < m; p++) v = _mm256_sub_ps(v, _mm256_mul_ps(_mm256_set1_ps(s[p]), _mm256_loadu_ps(x[p] + j)));
        _mm256_storeu_ps(a + j, v);
    }
    for (; j < n; j++) {
        float v = a[j];
        for (int p = 0; p < m; p++) v -= s[p] * x[p][j];
        a[j] = v;
    }
}

/* ---- X^T X ------------------------------------------------------------------ */

AVX2 static void xtx_acc_avx2(float *tmp, const float *x, int64_t n, int64_t c) { DSQ_K_XTX_BODY }

/* ---- matrix-product micro-kernels (verify/gemm.c) ------------------------------
 * The 6 x 16 kernel keeps the block of C in 12 AVX2 registers (the largest
 * block that leaves room for two panel loads and one broadcast in the 16 ymm
 * registers); per k it issues 12 FMAs for 8 loads, so it is bound by the FMA
 * units, not by memory. */

AVX2 static void gemm_6x16_avx2(int kc, const float *const xr[MR], const float *pk, float *c, int64_t ldc, int acc) {
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

AVX2 static void gemm_6x8_avx2(int kc, const float *const xr[MR], const float *pk, float *c, int64_t ldc, int acc) {
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
AVX2 static void gemm_pack16_avx2(const float *W, int64_t ldw, int kc, float *pack) {
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

void dsq_qkern_dense_avx2(dsq_qkern *k, const dsq_cpu *cpu) {
    if (cpu->avx) {
        k->sub_many = sub_many_avx;
        k->sub_many_f = sub_many_f_avx;
        k->add_many = add_many_avx;
    }
    if (cpu->avx2 && cpu->fma) {
        k->xtx_acc = xtx_acc_avx2;
        k->gemm_6x16 = gemm_6x16_avx2;
        k->gemm_6x8 = gemm_6x8_avx2;
        k->gemm_pack16 = gemm_pack16_avx2;
    }
}

#else /* no SIMD build */

void dsq_qkern_dense_avx2(dsq_qkern *k, const dsq_cpu *cpu) {
    (void)k;
    (void)cpu;
}

#endif
