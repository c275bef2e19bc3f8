/*
 * simd_avx2.c -- AVX2 (+FMA, F16C) versions of the quant_int.h kernels.
 * Each loop handles whole vectors with intrinsics and leaves the tail to the
 * same scalar code as quant_ref.c (ggml-cpu/arch/x86/quants.c style).
 *
 * Built without -mavx2: the functions carry __attribute__((target)) and the
 * table is only handed out when the CPU probe (at the end of this file, the
 * library's only one) says the CPU has the instructions, so one binary runs
 * everywhere.  -DDSQ_NO_SIMD (make SIMD=none) compiles none of it.
 *
 * Bit-exactness with the reference, kernel by kernel:
 *   - E4M3 decode rebuilds the value exactly (as F16 bits widened by F16C,
 *     or f32 bits for huge scales), NaN codes as the table's quiet NaN, and
 *     applies the scale in ONE multiply, so the product rounds once, as
 *     dsq_e4m3_lut[q] * s does.
 *   - E4M3 encode is dtype.c's minifloat_round done on 8 lanes: bias-adjusted
 *     RNE on the f32 bits for normal results, rne(a * 2^9) below 2^-6, a
 *     min() for saturation, NaN forced to 0x7F.  x / s is an IEEE division;
 *     when s is a normal power of two it becomes x * (1/s), the same
 *     correctly rounded quotient.
 *   - Integer codes: x * inv, NaN -> 0, then one clamp straight to the code
 *     range and cvtps (round to nearest even under the default MXCSR); for
 *     integer bounds this equals dsq_q_i4_code / dsq_q_i8_code's
 *     clamp-round-clamp.
 *   - max/min of finite values do not depend on the order of evaluation.
 *   - F16 uses F16C (IEEE RNE) with NaNs rewritten to dtype.c's quiet NaN.
 */
#include "quant_int.h"
#include "dtype.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#if !defined(DSQ_NO_SIMD) && defined(__x86_64__) && defined(__GNUC__)

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>

#define TGT __attribute__((target("avx2,fma,f16c")))

/* ---- decoding -------------------------------------------------------------- */

TGT static inline __m256 e4m3x8(__m128i b) {
    __m256i v = _mm256_cvtepu8_epi32(b);
    __m256i mag = _mm256_and_si256(v, _mm256_set1_epi32(0x7F));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
    __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(mag, 20)), _mm256_set1_ps(0x1p120f));
    __m256 nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F)));
    f = _mm256_blendv_ps(f, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)), nan);
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

/* Sixteen E4M3 bytes as F16 bit patterns: E4M3 and F16 differ only in
 * exponent width and bias (7 vs 15), so the 7 magnitude bits moved up by 7
 * are an F16 of value 2^-8 times the E4M3 value, subnormals included.  NaN
 * codes become F16 0x7E00 (widening to the f32 quiet NaN) with their sign. */
TGT static inline __m256i e4m3x16_h(__m128i b) {
    __m256i v = _mm256_cvtepu8_epi16(b);
    __m256i mag = _mm256_and_si256(v, _mm256_set1_epi16(0x7F));
    __m256i sign = _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x80)), 8);
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(mag, 7), sign);
    __m256i nan = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7F));
    return _mm256_blendv_epi8(h, _mm256_or_si256(sign, _mm256_set1_epi16(0x7E00)), nan);
}

TGT static void e4m3_dq_avx2(const uint8_t *q, int64_t n, float s, float *out) {
    int64_t i = 0;
    /* f16(q) * (256 s) is one rounding of the exact product e4m3(q) * s, like
     * the table path, as long as 256 s itself is exact (no overflow). */
    if (fabsf(s) < 0x1p119f) {
        const __m256 vs = _mm256_set1_ps(s * 256.0f);
        for (; i + 16 <= n; i += 16) {
            __m256i h = e4m3x16_h(_mm_loadu_si128((const __m128i *)(q + i)));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), vs));
            _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), vs));
        }
    } else {
        const __m256 vs = _mm256_set1_ps(s);
        for (; i + 16 <= n; i += 16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(q + i));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(e4m3x8(b), vs));
            _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(e4m3x8(_mm_srli_si128(b, 8)), vs));
        }
    }
    for (; i < n; i++) out[i] = dsq_e4m3_lut[q[i]] * s;
}

TGT static void bf16_dq_avx2(const uint8_t *p, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(v, 16));
    }
    for (; i < n; i++) out[i] = dsq_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

TGT static void f16_dq_avx2(const uint8_t *p, int64_t n, float *out) {
    const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
        f = _mm256_blendv_ps(f, _mm256_or_ps(_mm256_and_ps(f, sign), qnan), nan);
        _mm256_storeu_ps(out + i, f);
    }
    for (; i < n; i++) out[i] = dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

TGT static void i8_dq_avx2(const uint8_t *p, int64_t n, float s, float *out) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + i)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), vs));
    }
    for (; i < n; i++) out[i] = (float)(int8_t)p[i] * s;
}

TGT static void i4_dq_avx2(const uint8_t *p, int64_t n, float s, int z, float *out) {
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps((float)z);
    const __m256i sh = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4), m15 = _mm256_set1_epi32(15);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(p + i / 2));
        b = _mm_unpacklo_epi8(b, b); /* each byte twice: low nibble lane, high nibble lane */
        __m256i u0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(b), sh), m15);
        __m256i u1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), sh), m15);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(u0), vz), vs));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(u1), vz), vs));
    }
    for (; i < n; i++) {
        int u = (i & 1) ? p[i / 2] >> 4 : p[i / 2] & 15;
        out[i] = (float)(u - z) * s;
    }
}

/* ---- ranges ---------------------------------------------------------------- */

TGT static inline __m256 finite_or_zero(__m256 x, __m256 *ax) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256 a = _mm256_and_ps(x, absm);
    __m256 ok = _mm256_cmp_ps(a, inf, _CMP_LT_OQ);
    *ax = _mm256_and_ps(a, ok);
    return _mm256_and_ps(x, ok);
}

TGT static float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}
TGT static float hmin(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

TGT static float absmax_avx2(const float *x, int64_t n) {
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, a;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        finite_or_zero(_mm256_loadu_ps(x + i), &a);
        m0 = _mm256_max_ps(m0, a);
        finite_or_zero(_mm256_loadu_ps(x + i + 8), &a);
        m1 = _mm256_max_ps(m1, a);
    }
    for (; i + 8 <= n; i += 8) {
        finite_or_zero(_mm256_loadu_ps(x + i), &a);
        m0 = _mm256_max_ps(m0, a);
    }
    float m = hmax(_mm256_max_ps(m0, m1));
    for (; i < n; i++) {
        float v = fabsf(x[i]);
        if (!(v < INFINITY)) v = 0;
        m = dsq_q_maxps(m, v);
    }
    return m;
}

TGT static void minmax_avx2(const float *x, int64_t n, float *mn, float *mx) {
    __m256 lo = _mm256_setzero_ps(), hi = lo, a;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = finite_or_zero(_mm256_loadu_ps(x + i), &a);
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
    }
    float l = hmin(lo), h = hmax(hi);
    for (; i < n; i++) {
        float v = fabsf(x[i]) < INFINITY ? x[i] : 0.0f;
        l = dsq_q_minps(l, v);
        h = dsq_q_maxps(h, v);
    }
    *mn = l;
    *mx = h;
}

/* ---- encoding -------------------------------------------------------------- */

/* Eight E4M3 codes (one per int32 lane) of v, as dsq_f32_to_e4m3. */
TGT static inline __m256i e4m3_enc8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i sign = _mm256_srli_epi32(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)), 24);
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    /* normal result: RNE at mantissa bit 20, rebias 127 -> 7 */
    __m256i r = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(0x7FFFF),
                                 _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1))));
    __m256i cn = _mm256_sub_epi32(_mm256_srli_epi32(r, 20), _mm256_set1_epi32(120 << 3));
    cn = _mm256_min_epi32(cn, _mm256_set1_epi32(0x7E));
    /* subnormal result (|v| < 2^-6): rne(|v| * 2^9), exact scaling */
    __m256i cs = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)));
    __m256i sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3C800000), a);
    __m256i c = _mm256_blendv_epi8(cn, cs, sub);
    __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
    c = _mm256_or_si256(c, _mm256_and_si256(nan, _mm256_set1_epi32(0x7F)));
    return _mm256_or_si256(c, sign);
}

/* 32 int32 lanes holding 0..255 -> 32 bytes in order. */
TGT static inline __m256i pack32_u8(__m256i c0, __m256i c1, __m256i c2, __m256i c3) {
    __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
/* Same for signed lanes in -128..127. */
TGT static inline __m256i pack32_i8(__m256i c0, __m256i c1, __m256i c2, __m256i c3) {
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TGT static void e4m3_enc_avx2(const float *x, int64_t n, float s, uint8_t *out) {
    uint32_t sb;
    memcpy(&sb, &s, 4);
    uint32_t e = (sb >> 23) & 0xFF;
    int pow2 = (sb & 0x807FFFFFu) == 0 && e >= 1 && e <= 254;
    const __m256 vs = _mm256_set1_ps(s), vinv = _mm256_set1_ps(pow2 ? 1.0f / s : 0.0f);
#define E4DIV(p) (pow2 ? _mm256_mul_ps(_mm256_loadu_ps(p), vinv) : _mm256_div_ps(_mm256_loadu_ps(p), vs))
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c0 = e4m3_enc8(E4DIV(x + i)), c1 = e4m3_enc8(E4DIV(x + i + 8));
        __m256i c2 = e4m3_enc8(E4DIV(x + i + 16)), c3 = e4m3_enc8(E4DIV(x + i + 24));
        _mm256_storeu_si256((__m256i *)(out + i), pack32_u8(c0, c1, c2, c3));
    }
#undef E4DIV
    for (; i < n; i++) out[i] = dsq_f32_to_e4m3(x[i] / s);
}

/* Lanes of v that are exact E4M3 ties (dsq_e4m3_is_tie), as all-ones. */
TGT static inline __m256i e4m3_tie8(__m256 v) {
    __m256i a = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFFFFFF));
    __m256i sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3C800000), a);
    __m256i tn = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x43E00000), a),
                                  _mm256_cmpeq_epi32(_mm256_and_si256(a, _mm256_set1_epi32(0xFFFFF)),
                                                     _mm256_set1_epi32(0x80000)));
    __m256 t = _mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f));
    __m256i ts = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_sub_ps(t, _mm256_floor_ps(t)), _mm256_set1_ps(0.5f), _CMP_EQ_OQ));
    return _mm256_blendv_epi8(tn, ts, sub);
}

/* |e4m3(v)| - |v| for the code e4m3_enc gives v (finite lanes): the value
 * rounded to 3 mantissa bits as in e4m3_enc8, saturated at 448. */
TGT static inline __m256 e4m3_err8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i r = _mm256_add_epi32(a, _mm256_add_epi32(_mm256_set1_epi32(0x7FFFF),
                                 _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1))));
    __m256 dn = _mm256_min_ps(_mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xFFF00000u))),
                              _mm256_set1_ps(448.0f));
    __m256 av = _mm256_castsi256_ps(a);
    __m256 ds = _mm256_mul_ps(_mm256_round_ps(_mm256_mul_ps(av, _mm256_set1_ps(512.0f)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                              _mm256_set1_ps(1.0f / 512.0f));
    __m256 d = _mm256_blendv_ps(dn, ds, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x3C800000), a)));
    /* signed error: sign(v) * (|e4m3| - |v|) */
    return _mm256_xor_ps(_mm256_sub_ps(d, av), _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u))));
}

/* Bit positions of each byte value, for packing tie indices. */
static uint8_t tie_pos[256][8];
static void tie_pos_init(void) {
    for (int m = 0; m < 256; m++)
        for (int j = 0, k = 0; j < 8; j++)
            if (m >> j & 1) tie_pos[m][k++] = (uint8_t)j;
}

TGT static void e4m3_ties_avx2(const float *x, int64_t n, float s, uint8_t *out) {
    if (!dsq_q_scale_pow2(s)) return;
    enum { MAXI = 4096 };
    uint16_t idx[MAXI + 8]; /* tie positions of a segment of at most MAXI */
    const float inv = 1.0f / s;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i fin = _mm256_set1_epi32(0x7F800000), abs = _mm256_set1_epi32(0x7FFFFFFF);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0, nt = 0;
    const int keep = n <= MAXI;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        __m256i tie = e4m3_tie8(v);
        __m256i ok = _mm256_andnot_si256(tie, _mm256_cmpgt_epi32(fin, _mm256_and_si256(_mm256_castps_si256(v), abs)));
        acc = _mm256_add_ps(acc, _mm256_and_ps(e4m3_err8(v), _mm256_castsi256_ps(ok)));
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(tie));
        if (keep) {
            const uint8_t *p = tie_pos[m];
            for (int j = 0; j < 8; j++) idx[nt + j] = (uint16_t)(i + p[j]);
        }
        nt += __builtin_popcount(m);
    }
    float a[8];
    _mm256_storeu_ps(a, acc);
    for (; i < n; i++) {
        float v = x[i] * inv;
        if (dsq_e4m3_is_tie(v)) {
            if (keep) idx[nt] = (uint16_t)i;
            nt++;
        } else if (fabsf(v) < INFINITY) {
            a[i % 8] += dsq_e4m3_lut[out[i]] - v;
        }
    }
    if (!nt) return;
    float sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    if (keep) {
        for (int64_t k = 0; k < nt; k++) dsq_e4m3_tie_step(x[idx[k]] * inv, &out[idx[k]], &sum);
        return;
    }
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(e4m3_tie8(v)));
        while (m) {
            int j = __builtin_ctz(m);
            m &= m - 1;
            dsq_e4m3_tie_step(x[i + j] * inv, &out[i + j], &sum);
        }
    }
    for (; i < n; i++) {
        float v = x[i] * inv;
        if (dsq_e4m3_is_tie(v)) dsq_e4m3_tie_step(v, &out[i], &sum);
    }
}

/* x * inv with NaN -> 0, clamped to [lo, hi], rounded to nearest even.  With
 * integer bounds, rne(clamp(t, lo, hi)) = clamp(rne(t), lo, hi), so clamping
 * straight to the code range gives the reference's clamp-round-clamp. */
TGT static inline __m256i icode8(const float *p, __m256 vinv, __m256 lo, __m256 hi) {
    __m256 t = _mm256_mul_ps(_mm256_loadu_ps(p), vinv);
    t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q));
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    return _mm256_cvtps_epi32(t);
}

TGT static void i8_enc_avx2(const float *x, int64_t n, float inv, uint8_t *out) {
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c0 = icode8(x + i, vinv, lo, hi), c1 = icode8(x + i + 8, vinv, lo, hi);
        __m256i c2 = icode8(x + i + 16, vinv, lo, hi), c3 = icode8(x + i + 24, vinv, lo, hi);
        _mm256_storeu_si256((__m256i *)(out + i), pack32_i8(c0, c1, c2, c3));
    }
    for (; i < n; i++) out[i] = (uint8_t)(int8_t)dsq_q_i8_code(x[i], inv);
}

/* Codes u = rne(clamp(t, -z, 15 - z)) + z, packed two per byte. */
TGT static void i4_enc_avx2(const float *x, int64_t n, float inv, int z, uint8_t *out) {
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps((float)-z), hi = _mm256_set1_ps((float)(15 - z));
    const __m256i vz = _mm256_set1_epi32(z);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c0 = _mm256_add_epi32(icode8(x + i, vinv, lo, hi), vz);
        __m256i c1 = _mm256_add_epi32(icode8(x + i + 8, vinv, lo, hi), vz);
        __m256i c2 = _mm256_add_epi32(icode8(x + i + 16, vinv, lo, hi), vz);
        __m256i c3 = _mm256_add_epi32(icode8(x + i + 24, vinv, lo, hi), vz);
        __m256i b = pack32_u8(c0, c1, c2, c3);
        /* 16-bit word t = e[2t] | e[2t+1] << 8  ->  e[2t] | e[2t+1] << 4 */
        __m256i w = _mm256_and_si256(_mm256_or_si256(b, _mm256_srli_epi16(b, 4)), _mm256_set1_epi16(0xFF));
        __m128i nib = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)(out + i / 2), nib);
    }
    for (; i < n; i += 2) {
        unsigned l = dsq_q_i4_code(x[i], inv, z);
        unsigned h = i + 1 < n ? dsq_q_i4_code(x[i + 1], inv, z) : 0;
        out[i / 2] = (uint8_t)(l | h << 4);
    }
}

TGT static inline __m256i bf16x8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                     _mm256_set1_epi32(0x7F800000));
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i rn = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF),
                                   _mm256_and_si256(hi, _mm256_set1_epi32(1)))), 16);
    return _mm256_blendv_epi8(rn, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
}

TGT static void bf16_enc_avx2(const float *x, int64_t n, uint8_t *out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_packus_epi32(bf16x8(_mm256_loadu_ps(x + i)), bf16x8(_mm256_loadu_ps(x + i + 8)));
        _mm256_storeu_si256((__m256i *)(out + 2 * i), _mm256_permute4x64_epi64(h, 0xD8));
    }
    for (; i < n; i++) {
        uint16_t h = dsq_f32_to_bf16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

TGT static void f16_enc_avx2(const float *x, int64_t n, uint8_t *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        __m256i fix = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 16),
                                                       _mm256_set1_epi32(0x8000)),
                                      _mm256_set1_epi32(0x7E00));
        __m128i fix16 = _mm_packus_epi32(_mm256_castsi256_si128(fix), _mm256_extracti128_si256(fix, 1));
        __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan), _mm256_extracti128_si256(nan, 1));
        _mm_storeu_si128((__m128i *)(out + 2 * i), _mm_blendv_epi8(h, fix16, nan16));
    }
    for (; i < n; i++) {
        uint16_t h = dsq_f32_to_f16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* ---- E4M3 sources ---------------------------------------------------------- */

TGT static inline __m256i e4m3_key32(__m256i v) {
    return _mm256_and_si256(_mm256_add_epi8(v, _mm256_set1_epi8(1)), _mm256_set1_epi8(0x7F));
}

TGT static void e4m3_keymax_avx2(const uint8_t *q, int64_t n, uint8_t *acc) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i k = e4m3_key32(_mm256_loadu_si256((const __m256i *)(q + i)));
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + i));
        _mm256_storeu_si256((__m256i *)(acc + i), _mm256_max_epu8(a, k));
    }
    for (; i < n; i++) {
        unsigned k = dsq_q_e4m3_key(q[i]);
        if (k > acc[i]) acc[i] = (uint8_t)k;
    }
}

TGT static unsigned hmax_u8(__m256i v) {
    __m128i m = _mm_max_epu8(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
    m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
    return (unsigned)_mm_cvtsi128_si32(m) & 0xFF;
}

TGT static void e4m3_gkey_avx2(const uint8_t *q, int64_t n, int64_t G, uint8_t *pos, uint8_t *neg) {
    for (int64_t g = 0, j = 0; j < n; g++, j += G) {
        int64_t je = j + G < n ? j + G : n, i = j;
        __m256i mp = _mm256_setzero_si256(), mn = mp;
        for (; i + 32 <= je; i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + i)), k = e4m3_key32(v);
            if (neg) {
                __m256i sg = _mm256_cmpgt_epi8(_mm256_setzero_si256(), v);
                mp = _mm256_max_epu8(mp, _mm256_andnot_si256(sg, k));
                mn = _mm256_max_epu8(mn, _mm256_and_si256(sg, k));
            } else {
                mp = _mm256_max_epu8(mp, k);
            }
        }
        unsigned p = hmax_u8(mp), m = neg ? hmax_u8(mn) : 0;
        for (; i < je; i++) {
            unsigned k = dsq_q_e4m3_key(q[i]);
            if (neg && (q[i] & 0x80)) m = k > m ? k : m;
            else p = k > p ? k : p;
        }
        pos[g] = (uint8_t)p;
        if (neg) neg[g] = (uint8_t)m;
    }
}

/* 128-entry byte table with pshufb: sub-table j covers codes 16j..16j+15.
 * Lookup j uses the index c - 16j, whose top bit is set (pshufb gives 0)
 * exactly when c < 16j; the tables are stored as differences d_j = T_j ^
 * T_(j-1), so the XOR of all lookups telescopes to T_(c >> 4)[c & 15]. */
TGT static inline __m256i remap32(__m256i v, const __m256i *d) {
    const __m256i m7f = _mm256_set1_epi8(0x7F), s16 = _mm256_set1_epi8(16);
    __m256i c0 = _mm256_and_si256(v, m7f), c1 = _mm256_sub_epi8(c0, s16), c2 = _mm256_sub_epi8(c1, s16);
    __m256i c3 = _mm256_sub_epi8(c2, s16), c4 = _mm256_sub_epi8(c3, s16), c5 = _mm256_sub_epi8(c4, s16);
    __m256i c6 = _mm256_sub_epi8(c5, s16), c7 = _mm256_sub_epi8(c6, s16);
    __m256i y0 = _mm256_xor_si256(_mm256_shuffle_epi8(d[0], c0), _mm256_shuffle_epi8(d[1], c1));
    __m256i y1 = _mm256_xor_si256(_mm256_shuffle_epi8(d[2], c2), _mm256_shuffle_epi8(d[3], c3));
    __m256i y2 = _mm256_xor_si256(_mm256_shuffle_epi8(d[4], c4), _mm256_shuffle_epi8(d[5], c5));
    __m256i y3 = _mm256_xor_si256(_mm256_shuffle_epi8(d[6], c6), _mm256_shuffle_epi8(d[7], c7));
    __m256i y = _mm256_xor_si256(_mm256_xor_si256(y0, y1), _mm256_xor_si256(y2, y3));
    return _mm256_or_si256(y, _mm256_andnot_si256(m7f, v));
}

TGT static void e4m3_remap_avx2(const uint8_t *q, int64_t ldq, int64_t rows, int64_t n,
                                const uint8_t *t, uint8_t *out, int64_t ldo) {
    __m256i d[8];
    for (int j = 0; j < 8; j++) {
        __m128i tj = _mm_loadu_si128((const __m128i *)(t + 16 * j));
        if (j) tj = _mm_xor_si128(tj, _mm_loadu_si128((const __m128i *)(t + 16 * (j - 1))));
        d[j] = _mm256_broadcastsi128_si256(tj);
    }
    for (int64_t r = 0; r < rows; r++, q += ldq, out += ldo) {
        int64_t i = 0;
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(out + i), remap32(_mm256_loadu_si256((const __m256i *)(q + i)), d));
        for (; i < n; i++) out[i] = (uint8_t)(t[q[i] & 0x7F] | (q[i] & 0x80));
    }
}

/* Sixteen E4M3 bytes (NaN codes already cleared to 0) as F16 bit patterns,
 * as in e4m3x16_h: the sign-extended byte << 7 has the magnitude in bits
 * 7..13 and the sign in bits 14 and 15; bit 14 is dropped. */
TGT static inline __m256i e4m3x16_h0(__m128i b) {
    return _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7), _mm256_set1_epi16((short)0xBF80));
}

/* Is s * 2^8 a power of two that makes f16(q) * s exact for every E4M3
 * code (no rounding below 2^-126), with f = s * 2^8 * inv exact as well?
 * Then f16(q) * s * inv needs one multiply by f: same value, same rounding. */
static int pow2_exact(float s, float inv, float *f) {
    uint32_t u;
    memcpy(&u, &s, 4);
    if ((u & 0x807FFFFFu) || s < 0x1p-117f) return 0;
    float m = s * 256.0f * inv;
    if (!(fabsf(m) >= 0x1p-126f && fabsf(m) < 0x1p127f)) return 0;
    *f = m;
    return 1;
}

/* The vector loop of e4m3_i4_enc; `one` (a constant after inlining) says
 * vs already includes inv. */
TGT static inline int64_t e4m3_i4_loop(const uint8_t *q, int64_t n, __m256 vs, __m256 vinv, int z,
                                       uint8_t *out, const int one) {
    const __m256 hi = _mm256_set1_ps(16.0f);
    const __m256i lo8 = _mm256_set1_epi8((char)-z), hi8 = _mm256_set1_epi8((char)(15 - z));
    const __m256i z8 = _mm256_set1_epi8((char)z), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i m7f = _mm256_set1_epi8(0x7F), nib = _mm256_set1_epi16(0x1001);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        /* NaN codes become +0: their code is z either way (NaN -> 0) */
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + i));
        v = _mm256_andnot_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, m7f), m7f), v);
        __m256i h0 = e4m3x16_h0(_mm256_castsi256_si128(v)), h1 = e4m3x16_h0(_mm256_extracti128_si256(v, 1));
        /* x = e4m3(q) * s exactly as e4m3_dq rounds it, then t = x * inv;
         * x is finite, so t is never NaN; +big clamps to 16, -big converts
         * to INT_MIN and saturates low */
#define T8(h) _mm256_cvtps_epi32(_mm256_min_ps(one ? _mm256_mul_ps(_mm256_cvtph_ps(h), vs) \
                                                   : _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(h), vs), vinv), hi))
        __m256i c0 = T8(_mm256_castsi256_si128(h0)), c1 = T8(_mm256_extracti128_si256(h0, 1));
        __m256i c2 = T8(_mm256_castsi256_si128(h1)), c3 = T8(_mm256_extracti128_si256(h1, 1));
#undef T8
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
        b = _mm256_permutevar8x32_epi32(b, perm);
        b = _mm256_add_epi8(_mm256_min_epi8(_mm256_max_epi8(b, lo8), hi8), z8);
        /* byte pairs (u0, u1) -> u0 + 16 u1 in each 16-bit word, then words to bytes */
        __m256i w = _mm256_maddubs_epi16(b, nib);
        w = _mm256_permute4x64_epi64(_mm256_packus_epi16(w, w), 0xD8);
        _mm_storeu_si128((__m128i *)(out + i / 2), _mm256_castsi256_si128(w));
    }
    return i;
}

TGT static void e4m3_i4_enc_avx2(const uint8_t *q, int64_t n, int64_t G, const float *sv, const float *invv,
                                 const uint8_t *zv, uint8_t *out) {
    for (int64_t g = 0, j = 0; j < n; g++, j += G) {
        const uint8_t *qg = q + j;
        uint8_t *og = out + j / 2;
        int64_t m = j + G < n ? G : n - j;
        float s = sv[g], inv = invv[g], f1;
        int z = zv[g];
        int64_t i = pow2_exact(s, inv, &f1)
                        ? e4m3_i4_loop(qg, m, _mm256_set1_ps(f1), _mm256_set1_ps(inv), z, og, 1)
                        : e4m3_i4_loop(qg, m, _mm256_set1_ps(s * 256.0f), _mm256_set1_ps(inv), z, og, 0);
        for (; i < m; i += 2) {
            unsigned l = dsq_q_i4_code(dsq_e4m3_lut[qg[i]] * s, inv, z);
            unsigned h = i + 1 < m ? dsq_q_i4_code(dsq_e4m3_lut[qg[i + 1]] * s, inv, z) : 0;
            og[i / 2] = (uint8_t)(l | h << 4);
        }
    }
}

static const dsq_qkern k_avx2 = {
    .name = "avx2",
    .e4m3_dq = e4m3_dq_avx2,
    .bf16_dq = bf16_dq_avx2,
    .f16_dq = f16_dq_avx2,
    .i8_dq = i8_dq_avx2,
    .i4_dq = i4_dq_avx2,
    .absmax = absmax_avx2,
    .minmax = minmax_avx2,
    .e4m3_enc = e4m3_enc_avx2,
    .e4m3_ties = e4m3_ties_avx2,
    .i8_enc = i8_enc_avx2,
    .i4_enc = i4_enc_avx2,
    .bf16_enc = bf16_enc_avx2,
    .f16_enc = f16_enc_avx2,
    .e4m3_keymax = e4m3_keymax_avx2,
    .e4m3_gkey = e4m3_gkey_avx2,
    .e4m3_remap = e4m3_remap_avx2,
    .e4m3_i4_enc = e4m3_i4_enc_avx2,
};

const dsq_qkern *dsq_qkern_avx2(const dsq_cpu *cpu) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, tie_pos_init);
    return cpu->avx2 && cpu->fma && cpu->f16c ? &k_avx2 : NULL;
}

/* ---- the CPU probe ---------------------------------------------------------
 * The one place that asks the CPU; everything else reads dsq_cpu_get().
 * F16C comes from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports
 * does not know "f16c", and the fuzz build uses clang. */
void dsq_cpu_probe(dsq_cpu *out) {
    unsigned a, b, c = 0, d;
    __builtin_cpu_init();
    out->avx = __builtin_cpu_supports("avx") != 0;
    out->avx2 = __builtin_cpu_supports("avx2") != 0;
    out->fma = __builtin_cpu_supports("fma") != 0;
    out->f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

#else /* no SIMD build */

const dsq_qkern *dsq_qkern_avx2(const dsq_cpu *cpu) {
    (void)cpu;
    return NULL;
}

void dsq_cpu_probe(dsq_cpu *out) { memset(out, 0, sizeof *out); }

#endif
