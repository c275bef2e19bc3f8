/*
 * quant_int.h -- the kernel table behind quant.h.  The drivers in quant.c
 * (unit iteration, range and scale choice, scale search) are shared scalar
 * code; only these element loops have a scalar (_ref) and an AVX2 version.
 * Every quantizing kernel must produce the same bytes as its _ref twin for
 * every input, which is what makes dsq_q_quantize reproducible everywhere.
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
 */
#ifndef DSQ_QUANT_INT_H
#define DSQ_QUANT_INT_H

#include "quant.h"

#include <math.h>
#include <stdint.h>

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
    /* optional, see above */
    void (*e4m3_keymax)(const uint8_t *q, int64_t n, uint8_t *acc);
    void (*e4m3_gkey)(const uint8_t *q, int64_t n, int64_t G, uint8_t *pos, uint8_t *neg);
    void (*e4m3_remap)(const uint8_t *q, int64_t ldq, int64_t rows, int64_t n, const uint8_t *t,
                       uint8_t *out, int64_t ldo);
    void (*e4m3_i4_enc)(const uint8_t *q, int64_t n, int64_t G, const float *s, const float *inv,
                        const uint8_t *z, uint8_t *out);
} dsq_qkern;

/* Key of an E4M3 byte (see above). */
static inline unsigned dsq_q_e4m3_key(uint8_t q) { return (unsigned)((q + 1) & 0x7F); }

/* The scalar reference kernels (quant_ref.c). */
extern const dsq_qkern dsq_qkern_ref;
/* AVX2 kernels, or NULL when built with DSQ_NO_SIMD, on non-x86 targets, or
 * when the CPU lacks AVX2, FMA or F16C (simd_avx2.c). */
const dsq_qkern *dsq_qkern_avx2(void);
/* The kernel set used by the non-_ref entry points, chosen once. */
const dsq_qkern *dsq_qkern_best(void);

/* The scalar helpers shared by the reference kernels and the drivers
 * (dsq_q_maxps / dsq_q_minps, dsq_q_i4_code / dsq_q_i8_code) are in quant.h,
 * beside the storage accessors that use them. */

#endif
