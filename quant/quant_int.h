/*
 * quant_int.h -- the kernel table of the library and the CPU probe behind it.
 * The drivers in quant.c (unit iteration, range and scale choice, scale
 * search) are shared scalar code; only these element loops have a scalar
 * (_ref) and an AVX2 version.  Every quantizing kernel must produce the same
 * bytes as its _ref twin for every input, which is what makes dsq_q_quantize
 * reproducible everywhere.  The dense kernels at the end of the table serve
 * calib/ (linear algebra, GPTQ, statistics) and verify/ (the matrix product):
 * one probe and one table choose every SIMD path of the library, and
 * `make SIMD=none` (DSQ_NO_SIMD) turns all of them off at once.
 *
 * Semantics (all n >= 0, pointers of any alignment, little-endian bytes):
 *   e4m3_dq   out[i] = e4m3(q[i]) * s               (one rounding)
 *   bf16_dq / f16_dq   out[i] = widen(p[2i..2i+1])  (exact)
 *   i8_dq     out[i] = (float)(int8)p[i] * s
 *   i4_dq     out[i] = (float)(u_i - z) * s, u_i the nibble of element i
 *             counting from the LOW nibble of p[0]
 *   absmax    max |x| over finite x (0 if none)
 *   minmax    *mn = min(0, finite x), *mx = max(0, finite x)
 *   e4m3_enc  out[i] = dsq_f32_to_e4m3(x[i] / s)
 *   i8_enc    out[i] = clamp(rne(t), -127, 127), t = x[i] * inv with NaN -> 0
 *             and t clamped to [-128, 128] before rounding
 *   i4_enc    u_i = clamp(rne(t) + z, 0, 15), t = x[i] * inv, NaN -> 0,
 *             clamped to [-16, 16]; packed two per byte, element 2j in the
 *             low nibble of out[j]; odd n leaves the last high nibble 0
 *   bf16_enc / f16_enc  dsq_f32_to_bf16 / dsq_f32_to_f16, stored LE
 *   e4m3_ties on out = e4m3_enc(x, n, s) with s a normal power of two (else
 *             nothing): the exact ties (dsq_e4m3_is_tie(v), v = x[i] * (1/s))
 *             take the code that keeps the segment's error sum smallest.
 *             sum: the errors e4m3(out[i]) - v of the other elements with
 *             v finite, added in f32 into acc[i % 8] in order, then
 *             ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7));
 *             then each tie in order: e = e4m3(out[i]) - v; if sum * e > 0,
 *             out[i] becomes the other nearest code (same sign bit) and e = -e;
 *             sum += e.  Every error here is exact in f32.
 *
 * Optional kernels for E4M3 sources (NULL in the reference set; the drivers
 * then decode to f32 and use the kernels above).  They rest on two facts:
 * E4M3 magnitudes order like their 7-bit codes, so a range is a byte max;
 * and inside one source block every value is e4m3(q) * s for one s, so a
 * re-quantized code is a function of the source byte alone.  The key of a
 * byte q is (q & 0x7F) + 1, or 0 for the NaN codes 0x7F / 0xFF.
 *   e4m3_keymax  acc[i] = max(acc[i], key(q[i]))  (element-wise over rows)
 *   e4m3_gkey    for each group k of G consecutive bytes (the last may be
 *                shorter): pos[k] = max key over bytes with the sign clear,
 *                neg[k] = over bytes with the sign set (0 if none); with
 *                neg NULL, pos[k] is the max key over the whole group
 *   e4m3_remap   tile of rows x n bytes (row strides ldq, ldo):
 *                out = t[q & 0x7F] | (q & 0x80), t a 128-byte table
 *   e4m3_i4_enc  for each group k of G consecutive bytes (G even, the last
 *                group may be shorter): i4_enc(e4m3_dq(group, s[k]), inv[k],
 *                z[k]) into out + k * G / 2, for 0 < s[k] < 2^119
 *
 * Dense kernels (simd_avx2_dense.c; each entry's feature needs are its own,
 * so the table may mix AVX and scalar entries).  The rank-m updates perform,
 * per element, exactly the operations written here in this order (products
 * then subtractions or additions, no fused multiply-add, no reassociation),
 * so their SIMD versions are bit-identical to the _ref ones:
 *   sub_many   a[j] = (..((a[j] - s[0] x[0][j]) - s[1] x[1][j]) ..) - s[m-1] x[m-1][j],
 *              j < n (f64)
 *   sub_many_f the same in f32 (GPTQ's error updates)
 *   add_many   a[r][j] += s[r] x[j], r < m, j < n (f64)
 *   xtx_acc    tmp[i][j] += x[k][i] x[k][j] for j >= i, over the n rows k of
 *              x ([n x c]) in order, rows with x[k][i] == 0 skipped for that
 *              i (f32; one C loop, DSQ_K_XTX_BODY, compiled twice)
 *   gemm_6x16  c[i ldc + j] = (acc ? c[i ldc + j] : 0) + sum_k xr[i][k] pk[16 k + j],
 *              i < 6, j < 16, k = 0 .. kc-1 in order, one f32 accumulator per
 *              element (verify/gemm.c); the AVX2 kernel uses fused
 *              multiply-add, so it differs from _ref by rounding
 *   gemm_6x8   the same on an 8-column panel pk[8 k + j]
 *   gemm_pack16 (optional, NULL in _ref) pack[16 k + j] = w[j ldw + k], j < 16,
 *              k < kc, pack 32-byte aligned
 */
#ifndef DSQ_QUANT_INT_H
#define DSQ_QUANT_INT_H

#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Shape of the matrix-product micro-kernels: rows of X, columns of a panel. */
#define DSQ_K_GEMM_MR 6
#define DSQ_K_GEMM_NR 16

typedef struct dsq_qkern {
    const char *name;
    void (*e4m3_dq)(const uint8_t *q, int64_t n, float s, float *out);
    void (*bf16_dq)(const uint8_t *p, int64_t n, float *out);
    void (*f16_dq)(const uint8_t *p, int64_t n, float *out);
    void (*i8_dq)(const uint8_t *p, int64_t n, float s, float *out);
    void (*i4_dq)(const uint8_t *p, int64_t n, float s, int z, float *out);
    float (*absmax)(const float *x, int64_t n);
    void (*minmax)(const float *x, int64_t n, float *mn, float *mx);
    void (*e4m3_enc)(const float *x, int64_t n, float s, uint8_t *out);
    void (*i8_enc)(const float *x, int64_t n, float inv, uint8_t *out);
    void (*i4_enc)(const float *x, int64_t n, float inv, int z, uint8_t *out);
    void (*bf16_enc)(const float *x, int64_t n, uint8_t *out);
    void (*f16_enc)(const float *x, int64_t n, uint8_t *out);
    void (*e4m3_ties)(const float *x, int64_t n, float s, uint8_t *out);
    /* optional, see above */
    void (*e4m3_keymax)(const uint8_t *q, int64_t n, uint8_t *acc);
    void (*e4m3_gkey)(const uint8_t *q, int64_t n, int64_t G, uint8_t *pos, uint8_t *neg);
    void (*e4m3_remap)(const uint8_t *q, int64_t ldq, int64_t rows, int64_t n, const uint8_t *t,
                       uint8_t *out, int64_t ldo);
    void (*e4m3_i4_enc)(const uint8_t *q, int64_t n, int64_t G, const float *s, const float *inv,
                        const uint8_t *z, uint8_t *out);
    /* dense kernels, see above */
    void (*sub_many)(double *a, const double *const *x, const double *s, int m, int64_t n);
    void (*sub_many_f)(float *a, const float *const *x, const float *s, int m, int64_t n);
    void (*add_many)(double *const *a, const double *s, int m, const double *x, int64_t n);
    void (*xtx_acc)(float *tmp, const float *x, int64_t n, int64_t c);
    void (*gemm_6x16)(int kc, const float *const xr[DSQ_K_GEMM_MR], const float *pk, float *c, int64_t ldc,
                      int acc);
    void (*gemm_6x8)(int kc, const float *const xr[DSQ_K_GEMM_MR], const float *pk, float *c, int64_t ldc,
                     int acc);
    void (*gemm_pack16)(const float *w, int64_t ldw, int kc, float *pack);
} dsq_qkern;

/* s a normal power of two (x * (1 / s) is then exactly x / s). */
static inline int dsq_q_scale_pow2(float s) {
    uint32_t u;
    memcpy(&u, &s, 4);
    return (u & 0x807FFFFFu) == 0 && u >= 0x00800000u && u < 0x7F800000u;
}

/* v exactly halfway between two finite E4M3 values: from 2^-6 up (normal
 * codes) the 20 mantissa bits E4M3 drops are 1000...0, below it (subnormal
 * codes, steps of 2^-9) |v| * 512 is an odd multiple of 1/2. */
static inline int dsq_e4m3_is_tie(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u &= 0x7FFFFFFFu;
    if (u >= 0x3C800000u) return u < 0x43E00000u && (u & 0xFFFFFu) == 0x80000u;
    float t = fabsf(v) * 512.0f;
    return t - floorf(t) == 0.5f;
}

/* One tie of e4m3_ties: v a tie, *q its current code. */
static inline void dsq_e4m3_tie_step(float v, uint8_t *q, float *sum) {
    float e = dsq_e4m3_lut[*q] - v;
    unsigned m = *q & 127u, o = fabsf(v) > dsq_e4m3_lut[m] ? m + 1 : m - 1;
    int flip = *sum * e > 0; /* selects, not branches: the direction is data */
    *q = (uint8_t)(flip ? (*q & 128u) | o : *q);
    *sum += flip ? -e : e;
}

/* The body of xtx_acc for (float *tmp, const float *x, int64_t n, int64_t c),
 * compiled as is by quant_ref.c and for AVX2+FMA by simd_avx2_dense.c.  The
 * compilers keep each element's sums in row order (no -ffast-math), so the
 * two agree bit for bit as long as the build does not contract a * b + c
 * into an FMA: GCC in ISO C mode does not, clang does by default, and then
 * the AVX2 sums differ in the last bits (only statistics see them). */
#define DSQ_K_XTX_BODY                                                        \
    for (int64_t t = 0; t < n; t++) {                                         \
        const float *r = x + t * c;                                           \
        for (int64_t i = 0; i < c; i++) {                                     \
            float xi = r[i];                                                  \
            if (xi == 0) continue;                                            \
            float *ti = tmp + i * c;                                          \
            for (int64_t j = i; j < c; j++) ti[j] += xi * r[j];               \
        }                                                                     \
    }

/* Key of an E4M3 byte (see above). */
static inline unsigned dsq_q_e4m3_key(uint8_t q) { return (unsigned)((q + 1) & 0x7F); }

/* CPU features the kernels use (1 = present). */
typedef struct dsq_cpu {
    int avx, avx2, fma, f16c;
} dsq_cpu;

/* The CPU's features: probed once, at the first call, and read-only after.
 * All 0 when built with DSQ_NO_SIMD or for a target other than x86-64. */
const dsq_cpu *dsq_cpu_get(void);
/* The probe itself (simd_avx2.c); use dsq_cpu_get. */
void dsq_cpu_probe(dsq_cpu *out);

/* The scalar reference kernels (quant_ref.c), every entry but the optional
 * ones set. */
extern const dsq_qkern dsq_qkern_ref;
/* The AVX2 quantization kernels (everything up to e4m3_i4_enc; the dense
 * entries NULL), or NULL when built with DSQ_NO_SIMD, on non-x86 targets, or
 * when cpu lacks AVX2, FMA or F16C (simd_avx2.c). */
const dsq_qkern *dsq_qkern_avx2(const dsq_cpu *cpu);
/* Replace the dense entries of *k that cpu can run with their AVX / AVX2
 * versions (simd_avx2_dense.c; a no-op in a DSQ_NO_SIMD build). */
void dsq_qkern_dense_avx2(dsq_qkern *k, const dsq_cpu *cpu);
/* The table used by every non-_ref entry point of the library: the AVX2
 * quantization kernels or the reference ones, and each dense kernel the CPU
 * supports; filled once at the first call, read-only after. */
const dsq_qkern *dsq_qkern_best(void);

/* The scalar helpers shared by the reference kernels and the drivers
 * (dsq_q_maxps / dsq_q_minps, dsq_q_i4_code / dsq_q_i8_code) are in quant.h,
 * beside the storage accessors that use them. */

#endif
