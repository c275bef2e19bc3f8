/*
 * ggml_avx2.c -- AVX2 (+F16C) versions of the ggml block kernels of
 * ggml_blocks.h: the dequantizers and the quantizers' search loops.
 *
 * Like simd_avx2.c, the functions carry __attribute__((target)) and the
 * table is handed out only when the CPU has the instructions, so one binary
 * runs everywhere; -DDSQ_NO_SIMD compiles none of it.
 *
 * Bit-exactness with the scalar kernels:
 *   - Dequantizers do the scalar arithmetic lane by lane: f16 fields widen
 *     with F16C (exact, NaN payloads quieted as ggml_blocks.c does), integer
 *     codes convert exactly, and each product or sum is one vector mul / add
 *     / sub in the scalar's order (d * sc first, then times the code).  No
 *     FMA anywhere: a fused multiply-add would round once where the scalar
 *     code rounds twice.
 *   - Search loops keep the scalar's 8 lanes as the 8 lanes of one vector
 *     and combine them with the same scalar tree at the end.  The clamp is
 *     max then min (equal to the scalar comparisons for the finite inputs the
 *     drivers pass; the one difference, the sign of a zero, is erased by the
 *     rounding), rounding is the same add / subtract of 1.5 * 2^23, and the
 *     IQ4 index counts the same thresholds as the scalar table (by bucket).
 */
#include "ggml_blocks.h"

#include <stddef.h>
#include <string.h>

#if !defined(DSQ_NO_SIMD) && defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <cpuid.h>
#include <immintrin.h>

#define TGT __attribute__((target("avx2,f16c")))

/* ---- helpers ----------------------------------------------------------------- */

TGT static inline __m256 bcast_h(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))));
}
TGT static inline float h2f(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
/* Eight bytes as signed / unsigned int32 lanes. */
TGT static inline __m256i u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
TGT static inline __m256i i8x8(const int8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
/* Low / high nibbles of eight bytes. */
TGT static inline __m256i lo4(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi32(15)); }
TGT static inline __m256i hi4(__m256i v) { return _mm256_srli_epi32(v, 4); }
/* Bits [b, b + 8) of a 32-bit word as 0/1 lanes. */
TGT static inline __m256i bits8(uint32_t word, int b) {
    const __m256i sh = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(word >> b)), sh), _mm256_set1_epi32(1));
}
TGT static inline __m256 cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* IQ4 grid values of 8 indexes 0..15. */
TGT static inline __m256 nl_val(__m256i idx) {
    const __m256 lo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10);
    const __m256 hi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
    __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), m);
}

/* ---- dequantizers ----------------------------------------------------------------- */

/* Q8_0: 32 int8 codes as 4 vectors, each times d. */
TGT static void q8_0_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q8_0 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d);
        for (int j = 0; j < 32; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(cvt(i8x8(b[i].qs + j)), d));
    }
}

/* Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL: bytes j .. j+7 hold elements j .. j+7
 * in their low nibbles and j+16 .. j+23 in their high nibbles, so each load
 * of 8 bytes gives two output vectors 16 elements apart. */
TGT static void q4_0_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_0 *b = vy;
    const __m256i k8 = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d);
        for (int j = 0; j < 16; j += 8) {
            __m256i q = u8x8(b[i].qs + j);
            _mm256_storeu_ps(x + j, _mm256_mul_ps(cvt(_mm256_sub_epi32(lo4(q), k8)), d));
            _mm256_storeu_ps(x + j + 16, _mm256_mul_ps(cvt(_mm256_sub_epi32(hi4(q), k8)), d));
        }
    }
}

TGT static void q4_1_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_1 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d), m = bcast_h(b[i].m);
        for (int j = 0; j < 16; j += 8) {
            __m256i q = u8x8(b[i].qs + j);
            _mm256_storeu_ps(x + j, _mm256_add_ps(_mm256_mul_ps(cvt(lo4(q)), d), m));
            _mm256_storeu_ps(x + j + 16, _mm256_add_ps(_mm256_mul_ps(cvt(hi4(q)), d), m));
        }
    }
}

/* The fifth bits of elements j .. j+7 are bits j .. j+7 of qh. */
TGT static void q5_0_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_0 *b = vy;
    const __m256i k16 = _mm256_set1_epi32(16);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j += 8) {
            __m256i q = u8x8(b[i].qs + j);
            __m256i q0 = _mm256_or_si256(lo4(q), _mm256_slli_epi32(bits8(qh, j), 4));
            __m256i q1 = _mm256_or_si256(hi4(q), _mm256_slli_epi32(bits8(qh, j + 16), 4));
            _mm256_storeu_ps(x + j, _mm256_mul_ps(cvt(_mm256_sub_epi32(q0, k16)), d));
            _mm256_storeu_ps(x + j + 16, _mm256_mul_ps(cvt(_mm256_sub_epi32(q1, k16)), d));
        }
    }
}

TGT static void q5_1_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_1 *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d), m = bcast_h(b[i].m);
        uint32_t qh = le32(b[i].qh);
        for (int j = 0; j < 16; j += 8) {
            __m256i q = u8x8(b[i].qs + j);
            __m256i q0 = _mm256_or_si256(lo4(q), _mm256_slli_epi32(bits8(qh, j), 4));
            __m256i q1 = _mm256_or_si256(hi4(q), _mm256_slli_epi32(bits8(qh, j + 16), 4));
            _mm256_storeu_ps(x + j, _mm256_add_ps(_mm256_mul_ps(cvt(q0), d), m));
            _mm256_storeu_ps(x + j + 16, _mm256_add_ps(_mm256_mul_ps(cvt(q1), d), m));
        }
    }
}

/* Q2_K / Q3_K: the 2-bit field of elements 128h + 32j + l .. l + 7 is bits
 * 2j..2j+1 of qs[32h + l ..]. */
TGT static inline __m256i two_bits(const uint8_t *qs, int e) {
    __m256i v = u8x8(qs + 32 * (e / 128) + e % 32);
    return _mm256_and_si256(_mm256_srli_epi32(v, 2 * ((e / 32) % 4)), _mm256_set1_epi32(3));
}

/* Q2_K: eight elements share a 16-element sub-block (one scale and min) and
 * a 2-bit field position, so each vector is one load, shift and mask. */
TGT static void q2_k_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q2_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int e = 0; e < 256; e += 8) {
            int sc = b[i].scales[e / 16];
            __m256 dl = _mm256_set1_ps(d * (float)(sc & 0xF)), ml = _mm256_set1_ps(dmin * (float)(sc >> 4));
            _mm256_storeu_ps(x + e, _mm256_sub_ps(_mm256_mul_ps(dl, cvt(two_bits(b[i].qs, e))), ml));
        }
    }
}

/* Q3_K: as Q2_K, minus 4 where the element's hmask bit is clear; the
 * 6-bit scale is unpacked per sub-block in scalar code. */
TGT static void q3_k_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q3_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        const uint8_t *s = b[i].scales;
        for (int e = 0; e < 256; e += 8) {
            int j = e / 16, lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
            int sc = lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
            __m256 dl = _mm256_set1_ps(d * (float)(sc - 32));
            /* high bit of element e is bit e / 32 of hmask[e % 32] */
            __m256i h = _mm256_and_si256(_mm256_srli_epi32(u8x8(b[i].hmask + e % 32), e / 32), _mm256_set1_epi32(1));
            __m256i q = _mm256_sub_epi32(two_bits(b[i].qs, e),
                                         _mm256_andnot_si256(_mm256_slli_epi32(h, 2), _mm256_set1_epi32(4)));
            _mm256_storeu_ps(x + e, _mm256_mul_ps(dl, cvt(q)));
        }
    }
}

static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: chunk c of 64 elements is 32 bytes, low nibbles for sub-block
 * 2c and high nibbles for 2c + 1; the products d * sc and dmin * mn are
 * scalar, as ggml forms them. */
TGT static void q4_k_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q4_k *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            int sc, mn;
            k4_scale_min(2 * c, b[i].scales, &sc, &mn);
            __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)mn);
            k4_scale_min(2 * c + 1, b[i].scales, &sc, &mn);
            __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)mn);
            for (int l = 0; l < 32; l += 8) {
                __m256i q = u8x8(b[i].qs + 32 * c + l);
                _mm256_storeu_ps(x + 64 * c + l, _mm256_sub_ps(_mm256_mul_ps(d1, cvt(lo4(q))), m1));
                _mm256_storeu_ps(x + 64 * c + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d2, cvt(hi4(q))), m2));
            }
        }
    }
}

TGT static void q5_k_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q5_k *b = vy;
    const __m256i one = _mm256_set1_epi32(1);
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            int sc, mn;
            k4_scale_min(2 * c, b[i].scales, &sc, &mn);
            __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)mn);
            k4_scale_min(2 * c + 1, b[i].scales, &sc, &mn);
            __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)mn);
            for (int l = 0; l < 32; l += 8) {
                __m256i q = u8x8(b[i].qs + 32 * c + l), h = u8x8(b[i].qh + l);
                __m256i h0 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c), one), 4);
                __m256i h1 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * c + 1), one), 4);
                _mm256_storeu_ps(x + 64 * c + l, _mm256_sub_ps(_mm256_mul_ps(d1, cvt(_mm256_add_epi32(lo4(q), h0))), m1));
                _mm256_storeu_ps(x + 64 * c + 32 + l,
                                 _mm256_sub_ps(_mm256_mul_ps(d2, cvt(_mm256_add_epi32(hi4(q), h1))), m2));
            }
        }
    }
}

/* Q6_K: eight elements share their (h, k) position and a scale; d * scale is
 * one scalar product, then times the code. */
TGT static void q6_k_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_q6_k *b = vy;
    const __m256i k32 = _mm256_set1_epi32(32), m3 = _mm256_set1_epi32(3);
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        for (int e = 0; e < 256; e += 8) {
            int h = e / 128, k = (e / 32) % 4, l = e % 32;
            __m256i lo = u8x8(b[i].ql + 64 * h + l + 32 * (k & 1));
            lo = (k >> 1) ? hi4(lo) : lo4(lo);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi32(u8x8(b[i].qh + 32 * h + l), 2 * k), m3);
            __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), k32);
            __m256 ds = _mm256_set1_ps(d * (float)b[i].scales[e / 16]);
            _mm256_storeu_ps(x + e, _mm256_mul_ps(ds, cvt(q)));
        }
    }
}

TGT static void iq4_nl_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_iq4_nl *b = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 d = bcast_h(b[i].d);
        for (int j = 0; j < 16; j += 8) {
            __m256i q = u8x8(b[i].qs + j);
            _mm256_storeu_ps(x + j, _mm256_mul_ps(d, nl_val(lo4(q))));
            _mm256_storeu_ps(x + j + 16, _mm256_mul_ps(d, nl_val(hi4(q))));
        }
    }
}

/* IQ4_XS: per 32-element sub-block a 6-bit scale, then nibbles as IQ4_NL. */
TGT static void iq4_xs_dq(const void *vy, float *x, int64_t n) {
    const dsq_blk_iq4_xs *b = vy;
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float d = h2f(b[i].d);
        unsigned sh = (unsigned)b[i].scales_h[0] | (unsigned)b[i].scales_h[1] << 8;
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((sh >> (2 * ib)) & 3) << 4;
            __m256 dl = _mm256_set1_ps(d * (float)(ls - 32));
            for (int j = 0; j < 16; j += 8) {
                __m256i q = u8x8(b[i].qs + 16 * ib + j);
                _mm256_storeu_ps(x + 32 * ib + j, _mm256_mul_ps(dl, nl_val(lo4(q))));
                _mm256_storeu_ps(x + 32 * ib + j + 16, _mm256_mul_ps(dl, nl_val(hi4(q))));
            }
        }
    }
}

/* ---- search loops --------------------------------------------------------------------- */

/* Lane sums in the scalar's tree ((0+1)+(2+3))+((4+5)+(6+7)): two hadds
 * form (0+1)+(2+3) in the low half and (4+5)+(6+7) in the high half. */
TGT static inline float vsum(__m256 v) {
    __m256 h = _mm256_hadd_ps(v, v);
    h = _mm256_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
/* The same for two and three vectors at once: lanes 0, 1 (, 2) of the result. */
TGT static inline void vsum2(__m256 a, __m256 b, float *out) {
    __m256 h = _mm256_hadd_ps(a, b);
    h = _mm256_hadd_ps(h, h);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    out[0] = _mm_cvtss_f32(s);
    out[1] = _mm_cvtss_f32(_mm_shuffle_ps(s, s, 1));
}
TGT static inline void vsum3(__m256 a, __m256 b, __m256 c, float *out) {
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, c));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    out[0] = _mm_cvtss_f32(s);
    out[1] = _mm_cvtss_f32(_mm_shuffle_ps(s, s, 1));
    out[2] = _mm_cvtss_f32(_mm_shuffle_ps(s, s, 2));
}

/* Round to nearest even of clamp(t, lo, hi), as the scalar ucode. */
TGT static inline __m256 vucode(__m256 t, __m256 lo, __m256 hi) {
    const __m256 C = _mm256_set1_ps(12582912.0f);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    return _mm256_sub_ps(_mm256_add_ps(t, C), C);
}

/* The IQ4 grid value nearest t.  As in the scalar table, the index is the
 * number of thresholds 2 * midpoint + 256 (quant/ggml_quant.c) at or below
 * c = (int)(2t + 512) - 256, c in [0, 511].  The thresholds are at least 23
 * apart, so each 16-wide bucket c >> 4 holds at most one: entry b packs the
 * count below the bucket (high half) and the threshold inside it (low half,
 * 0x7FFF for none).  Generated from the thresholds {25, 69, 108, 142, 172,
 * 199, 224, 247, 270, 294, 319, 347, 378, 414, 458} and checked against the
 * plain count for every c. */
static const int32_t g_bucket[32] = {
    0x7fff,  0x19,    0x17fff, 0x17fff, 0x10045, 0x27fff, 0x2006c, 0x37fff, 0x3008e, 0x47fff, 0x400ac,
    0x57fff, 0x500c7, 0x67fff, 0x77fff, 0x700f7, 0x8010e, 0x97fff, 0x90126, 0xa013f, 0xb7fff, 0xb015b,
    0xc7fff, 0xc017a, 0xd7fff, 0xd019e, 0xe7fff, 0xe7fff, 0xe01ca, 0xf7fff, 0xf7fff, 0xf7fff};

typedef struct nltab {
    __m256i t[4];
} nltab;

TGT static inline nltab nl_tab(void) {
    nltab r;
    for (int k = 0; k < 4; k++) r.t[k] = _mm256_loadu_si256((const __m256i *)(g_bucket + 8 * k));
    return r;
}

TGT static inline __m256 vnl(const nltab *tb, __m256 t) {
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(127.5f));
    __m256i c = _mm256_sub_epi32(
        _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), t), _mm256_set1_ps(512.0f))),
        _mm256_set1_epi32(256));
    __m256i b = _mm256_srli_epi32(c, 4);
    /* 32-entry lookup: permutes on the low 3 bits, blends on bits 3 and 4 */
    __m256 m3 = _mm256_castsi256_ps(_mm256_slli_epi32(b, 28)), m4 = _mm256_castsi256_ps(_mm256_slli_epi32(b, 27));
    __m256 p0 = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tb->t[0], b));
    __m256 p1 = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tb->t[1], b));
    __m256 p2 = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tb->t[2], b));
    __m256 p3 = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tb->t[3], b));
    __m256i e = _mm256_castps_si256(_mm256_blendv_ps(_mm256_blendv_ps(p0, p1, m3), _mm256_blendv_ps(p2, p3, m3), m4));
    __m256i thr = _mm256_and_si256(e, _mm256_set1_epi32(0xFFFF));
    __m256i idx = _mm256_sub_epi32(_mm256_srli_epi32(e, 16), _mm256_cmpgt_epi32(c, _mm256_sub_epi32(thr, _mm256_set1_epi32(1))));
    return nl_val(idx);
}

TGT static void u_sums_avx2(const float *x, const float *w, int n, float lo, float hi, const float *is, int m,
                            float *out) {
    __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), vis = _mm256_set1_ps(is[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 v = vucode(_mm256_mul_ps(vis, vx), vlo, vhi), wv = _mm256_mul_ps(_mm256_loadu_ps(w + i), v);
            a = _mm256_add_ps(a, _mm256_mul_ps(wv, vx));
            b = _mm256_add_ps(b, _mm256_mul_ps(wv, v));
        }
        vsum2(a, b, out + 2 * j);
    }
}

TGT static void nl_sums_avx2(const float *x, const float *w, int n, const float *is, int m, float *out) {
    const nltab tb = nl_tab();
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), vis = _mm256_set1_ps(is[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 v = vnl(&tb, _mm256_mul_ps(vis, vx)), wv = _mm256_mul_ps(_mm256_loadu_ps(w + i), v);
            a = _mm256_add_ps(a, _mm256_mul_ps(wv, vx));
            b = _mm256_add_ps(b, _mm256_mul_ps(wv, v));
        }
        vsum2(a, b, out + 2 * j);
    }
}

TGT static void u_err_avx2(const float *x, const float *w, int n, float lo, float hi, const float *dl,
                           const float *inv, int m, float *out) {
    __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), vdl = _mm256_set1_ps(dl[j]), vinv = _mm256_set1_ps(inv[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 r = _mm256_sub_ps(vx, _mm256_mul_ps(vdl, vucode(_mm256_mul_ps(vx, vinv), vlo, vhi)));
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), r), r));
        }
        out[j] = vsum(a);
    }
}

TGT static void nl_err_avx2(const float *x, const float *w, int n, const float *dl, const float *inv, int m,
                            float *out) {
    const nltab tb = nl_tab();
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), vdl = _mm256_set1_ps(dl[j]), vinv = _mm256_set1_ps(inv[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 r = _mm256_sub_ps(vx, _mm256_mul_ps(vdl, vnl(&tb, _mm256_mul_ps(vx, vinv))));
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), r), r));
        }
        out[j] = vsum(a);
    }
}

TGT static void a_sums_avx2(const float *x, const float *w, int n, float nmax, const float *is, float off, int m,
                            float *out) {
    __m256 voff = _mm256_set1_ps(off), z = _mm256_setzero_ps(), vn = _mm256_set1_ps(nmax);
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps(), c = _mm256_setzero_ps(), vis = _mm256_set1_ps(is[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 l = vucode(_mm256_mul_ps(vis, _mm256_sub_ps(vx, voff)), z, vn);
            __m256 wl = _mm256_mul_ps(_mm256_loadu_ps(w + i), l);
            a = _mm256_add_ps(a, wl);
            b = _mm256_add_ps(b, _mm256_mul_ps(wl, l));
            c = _mm256_add_ps(c, _mm256_mul_ps(wl, vx));
        }
        vsum3(a, b, c, out + 3 * j);
    }
}

TGT static void a_err_avx2(const float *x, const float *w, int n, float nmax, const float *dl, const float *inv,
                           const float *c, int m, float *out) {
    __m256 z = _mm256_setzero_ps(), vn = _mm256_set1_ps(nmax);
    for (int j = 0; j < m; j++) {
        __m256 a = _mm256_setzero_ps(), vdl = _mm256_set1_ps(dl[j]), vinv = _mm256_set1_ps(inv[j]);
        __m256 vc = _mm256_set1_ps(c[j]);
        for (int i = 0; i < n; i += 8) {
            __m256 vx = _mm256_loadu_ps(x + i);
            __m256 l = vucode(_mm256_mul_ps(_mm256_sub_ps(vx, vc), vinv), z, vn);
            __m256 r = _mm256_sub_ps(vx, _mm256_add_ps(_mm256_mul_ps(vdl, l), vc));
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), r), r));
        }
        out[j] = vsum(a);
    }
}

static const dsq_gbsearch s_avx2 = {
    .u_sums = u_sums_avx2,
    .nl_sums = nl_sums_avx2,
    .u_err = u_err_avx2,
    .nl_err = nl_err_avx2,
    .a_sums = a_sums_avx2,
    .a_err = a_err_avx2,
};

static const dsq_gbkern k_avx2 = {
    .name = "avx2",
    .dq = {
        [DSQ_GB_Q8_0] = q8_0_dq,
        [DSQ_GB_Q4_0] = q4_0_dq,
        [DSQ_GB_Q4_1] = q4_1_dq,
        [DSQ_GB_Q5_0] = q5_0_dq,
        [DSQ_GB_Q5_1] = q5_1_dq,
        [DSQ_GB_Q2_K] = q2_k_dq,
        [DSQ_GB_Q3_K] = q3_k_dq,
        [DSQ_GB_Q4_K] = q4_k_dq,
        [DSQ_GB_Q5_K] = q5_k_dq,
        [DSQ_GB_Q6_K] = q6_k_dq,
        [DSQ_GB_IQ4_NL] = iq4_nl_dq,
        [DSQ_GB_IQ4_XS] = iq4_xs_dq,
    },
    .search = &s_avx2,
};

/* F16C from CPUID leaf 1 (ECX bit 29), as simd_avx2.c checks it. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

const dsq_gbkern *dsq_gbkern_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && has_f16c()) return &k_avx2;
    return NULL;
}

#else /* no SIMD build */

const dsq_gbkern *dsq_gbkern_avx2(void) { return NULL; }

#endif
