/*
 * dtype.c -- FP8 / BF16 / F16 / UE8M0 codecs (see dtype.h for the rules).
 *
 * The two FP8 decode tables are generated at start-up from the bit-level
 * definitions (deepseek-v32.md section 3.1 and 3.2); the tests recompute every
 * entry independently with ldexp.
 */
#include "dtype.h"
#include "dsq.h"

#include <math.h>
#include <pthread.h>

float dsq_e4m3_lut[256];
float dsq_e5m2_lut[256];

static void build_tables(void) {
    float *e4 = dsq_e4m3_lut, *e5 = dsq_e5m2_lut;
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float v;
        if (e == 15 && m == 7) v = NAN;
        else if (e == 0) v = ldexpf((float)m, -9);
        else v = ldexpf((float)(8 + m), e - 10);
        e4[b] = s ? -v : v;
        int e2 = (b >> 2) & 31, m2 = b & 3;
        if (e2 == 31) v = m2 ? NAN : INFINITY;
        else if (e2 == 0) v = ldexpf((float)m2, -16);
        else v = ldexpf((float)(4 + m2), e2 - 17);
        e5[b] = s ? -v : v;
    }
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
void dsq_codecs_init(void) { pthread_once(&g_once, build_tables); }

/* Round |x| (f32 bits u, sign cleared, finite) to a minifloat with `mbits`
 * mantissa bits and exponent bias `bias`; returns the unsigned code without
 * the sign, possibly above the largest finite code (caller saturates). */
static uint32_t minifloat_round(uint32_t u, int mbits, int bias) {
    int e32 = (int)(u >> 23) - 127;
    int emin = 1 - bias;
    if (e32 < emin) {
        /* subnormal target: code = rne(a / 2^(emin - mbits)); exact scaling */
        float a;
        memcpy(&a, &u, 4);
        float q = rintf(ldexpf(a, mbits - emin)); /* default mode: ties to even */
        return (uint32_t)q; /* q == 2^mbits is exactly the smallest normal */
    }
    int shift = 23 - mbits;
    uint32_t r = u + ((1u << (shift - 1)) - 1u) + ((u >> shift) & 1u);
    return (r >> shift) - ((uint32_t)(127 - bias) << mbits);
}

uint8_t dsq_f32_to_e4m3(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint8_t)(sign | 0x7F);
    if (u >= 0x43E00000u) return (uint8_t)(sign | 0x7E); /* >= 448 (incl. inf): saturate */
    uint32_t c = minifloat_round(u, 3, 7);
    if (c > 0x7E) c = 0x7E;
    return (uint8_t)(sign | c);
}

uint8_t dsq_f32_to_e5m2(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint8_t)(sign | 0x7E);
    if (u >= 0x7F800000u) return (uint8_t)(sign | 0x7C);
    if (u >= 0x48000000u) return (uint8_t)(sign | 0x7C); /* >= 2^17: inf */
    uint32_t c = minifloat_round(u, 2, 15);
    if (c > 0x7C) c = 0x7C;
    return (uint8_t)(sign | c);
}

float dsq_f16_to_f32(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexpf((float)m, -24);
    else v = ldexpf((float)(1024 + m), e - 25);
    return s ? -v : v;
}

uint16_t dsq_f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint16_t)(sign | 0x7E00);
    if (u >= 0x47800000u) return (uint16_t)(sign | 0x7C00); /* >= 65536: inf */
    uint32_t c = minifloat_round(u, 10, 15);
    if (c > 0x7C00) c = 0x7C00;
    return (uint16_t)(sign | c);
}

float dsq_ue8m0_to_f32(uint8_t b) {
    if (b == 255) return NAN;
    return ldexpf(1.0f, (int)b - 127);
}

uint8_t dsq_f32_to_ue8m0(float s) {
    if (!(s > 0) || isinf(s)) return 255;
    int e;
    float f = frexpf(s, &e); /* s = f * 2^e, f in [0.5, 1) */
    if (f != 0.5f) return 255;
    int b = e - 1 + 127;
    if (b < 0 || b > 254) return 255;
    return (uint8_t)b;
}

float dsq_pow2_ceil(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    int E = (int)((u >> 23) & 0xFF), M = (int)(u & 0x7FFFFF);
    int k = E - 127 + (M != 0);
    return ldexpf(1.0f, k);
}

int dsq_to_f32(int dtype, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    switch (dtype) {
    case DSQ_DT_F32:
        memcpy(dst, src, (size_t)n * 4); /* little-endian host assumed (checked in build) */
        return 0;
    case DSQ_DT_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = dsq_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    case DSQ_DT_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    case DSQ_DT_F8_E4M3:
        dsq_codecs_init();
        for (int64_t i = 0; i < n; i++) dst[i] = dsq_e4m3_lut[p[i]];
        return 0;
    case DSQ_DT_F8_E5M2:
        dsq_codecs_init();
        for (int64_t i = 0; i < n; i++) dst[i] = dsq_e5m2_lut[p[i]];
        return 0;
    default:
        return -1;
    }
}

void dsq_fp8_block_dequant(const uint8_t *q, const float *scale, int64_t cols,
                           int64_t r0, int64_t r1, int br, int bc, float *dst) {
    dsq_codecs_init();
    int64_t scols = (cols + bc - 1) / bc;
    for (int64_t i = r0; i < r1; i++) {
        const uint8_t *qr = q + i * cols;
        const float *sr = scale + (i / br) * scols;
        float *d = dst + (i - r0) * cols;
        for (int64_t jb = 0; jb < scols; jb++) {
            float s = sr[jb];
            int64_t j0 = jb * bc, j1 = j0 + bc < cols ? j0 + bc : cols;
            for (int64_t j = j0; j < j1; j++) d[j] = dsq_e4m3_lut[qr[j]] * s;
        }
    }
}
