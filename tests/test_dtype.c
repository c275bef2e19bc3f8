/*
 * test_dtype.c -- exhaustive checks of the scalar codecs against values
 * derived here, independently, from the bit-level definitions.
 */
#include "test.h"
#include "quant/dtype.h"
#include "dsq.h"

#include <math.h>

/* Independent decoder: sign, exponent, mantissa with the given widths. */
static double ref_decode(unsigned code, int ebits, int mbits, int bias, int fn) {
    int s = (code >> (ebits + mbits)) & 1;
    int e = (code >> mbits) & ((1 << ebits) - 1);
    int m = code & ((1 << mbits) - 1);
    int emax = (1 << ebits) - 1;
    double v;
    if (fn && e == emax && m == (1 << mbits) - 1) return NAN;
    if (!fn && e == emax) return m ? NAN : (s ? -INFINITY : INFINITY);
    if (e == 0) v = ldexp((double)m, 1 - bias - mbits);
    else v = ldexp(1.0 + ldexp((double)m, -mbits), e - bias);
    return s ? -v : v;
}

static int same(double a, float b) {
    if (isnan(a)) return isnan(b);
    if (a == 0) return b == 0 && (signbit(a) != 0) == (signbit(b) != 0);
    return a == (double)b;
}

TEST(test_dtype_e4m3_decode_all) {
    dsq_codecs_init();
    for (unsigned c = 0; c < 256; c++)
        CHECKF(same(ref_decode(c, 4, 3, 7, 1), dsq_e4m3_to_f32((uint8_t)c)), "e4m3 code 0x%02x", c);
    CHECK(dsq_e4m3_to_f32(0x7E) == 448.0f);
    CHECK(dsq_e4m3_to_f32(0x38) == 1.0f);
    CHECK(dsq_e4m3_to_f32(0x01) == 0.001953125f);
}

TEST(test_dtype_e5m2_decode_all) {
    dsq_codecs_init();
    for (unsigned c = 0; c < 256; c++)
        CHECKF(same(ref_decode(c, 5, 2, 15, 0), dsq_e5m2_to_f32((uint8_t)c)), "e5m2 code 0x%02x", c);
    CHECK(dsq_e5m2_to_f32(0x7B) == 57344.0f);
}

TEST(test_dtype_f16_bf16_decode_all) {
    for (unsigned c = 0; c < 65536; c++) {
        CHECKF(same(ref_decode(c, 5, 10, 15, 0), dsq_f16_to_f32((uint16_t)c)), "f16 0x%04x", c);
        CHECKF(same(ref_decode(c, 8, 7, 127, 0), dsq_bf16_to_f32((uint16_t)c)), "bf16 0x%04x", c);
    }
}

/* Encoding: every finite code round-trips; the midpoint between two
 * neighbours goes to the one with an even mantissa; just off the midpoint goes
 * to the nearer one. */
typedef uint32_t (*enc_fn)(float);
static uint32_t enc_e4m3(float x) { return dsq_f32_to_e4m3(x); }
static uint32_t enc_e5m2(float x) { return dsq_f32_to_e5m2(x); }
static uint32_t enc_f16(float x) { return dsq_f32_to_f16(x); }
static uint32_t enc_bf16(float x) { return dsq_f32_to_bf16(x); }

static int check_encoder(enc_fn enc, int ebits, int mbits, int bias, int fn, unsigned *bad) {
    unsigned n = 1u << (1 + ebits + mbits), half = n / 2;
    for (unsigned c = 0; c < half; c++) {
        double v = ref_decode(c, ebits, mbits, bias, fn);
        if (isnan(v) || isinf(v)) continue;
        if (enc((float)v) != c || enc((float)-v) != (c | half)) { *bad = c; return 0; }
        double w = ref_decode(c + 1, ebits, mbits, bias, fn);
        if (isnan(w) || isinf(w)) continue;
        double mid = (v + w) / 2;
        if ((float)mid != mid) continue; /* not representable in f32 (bf16 edge) */
        unsigned even = (c & 1) ? c + 1 : c;
        if (enc((float)mid) != even) { *bad = c; return 0; }
        if (enc(nextafterf((float)mid, 0)) != c) { *bad = c; return 0; }
        if (enc(nextafterf((float)mid, INFINITY)) != c + 1) { *bad = c; return 0; }
    }
    return 1;
}

TEST(test_dtype_encode_rne_all) {
    unsigned bad = 0;
    CHECKF(check_encoder(enc_e4m3, 4, 3, 7, 1, &bad), "e4m3 near code 0x%x", bad);
    CHECKF(check_encoder(enc_e5m2, 5, 2, 15, 0, &bad), "e5m2 near code 0x%x", bad);
    CHECKF(check_encoder(enc_f16, 5, 10, 15, 0, &bad), "f16 near code 0x%x", bad);
    CHECKF(check_encoder(enc_bf16, 8, 7, 127, 0, &bad), "bf16 near code 0x%x", bad);
}

TEST(test_dtype_saturation_and_specials) {
    CHECK(dsq_f32_to_e4m3(448.0f) == 0x7E);
    CHECK(dsq_f32_to_e4m3(470.0f) == 0x7E);
    CHECK(dsq_f32_to_e4m3(1e9f) == 0x7E);
    CHECK(dsq_f32_to_e4m3(-INFINITY) == 0xFE);
    CHECK((dsq_f32_to_e4m3(NAN) & 0x7F) == 0x7F);
    CHECK(dsq_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(dsq_f32_to_e4m3(0.0009765625f) == 0x00);  /* half the min subnormal: tie to even (0) */
    CHECK(dsq_f32_to_e4m3(0.0029296875f) == 0x02);  /* 1.5 * 2^-9: tie to even (2) */
    CHECK(dsq_f32_to_e5m2(1e6f) == 0x7C);
    CHECK(dsq_f32_to_f16(65520.0f) == 0x7C00);      /* rounds up to inf */
    CHECK(dsq_f32_to_f16(65519.0f) == 0x7BFF);
    CHECK(dsq_f32_to_bf16(NAN) != 0 && isnan(dsq_bf16_to_f32(dsq_f32_to_bf16(NAN))));
}

TEST(test_dtype_ue8m0_and_pow2) {
    for (int b = 0; b < 255; b++) {
        float s = dsq_ue8m0_to_f32((uint8_t)b);
        CHECK(s == (float)ldexp(1.0, b - 127));
        CHECK(dsq_f32_to_ue8m0(s) == b);
    }
    CHECK(isnan(dsq_ue8m0_to_f32(255)));
    CHECK(dsq_f32_to_ue8m0(3.0f) == 255);
    CHECK(dsq_pow2_ceil(1.0f) == 1.0f);
    CHECK(dsq_pow2_ceil(1.0001f) == 2.0f);
    CHECK(dsq_pow2_ceil(0.3f) == 0.5f);
    CHECK(dsq_pow2_ceil(1e-4f / 448.0f) == (float)ldexp(1.0, -22));
}

TEST(test_dtype_block_dequant_partial) {
    /* 3x5 matrix, 2x2 blocks -> 2x3 scale grid with partial edges */
    uint8_t q[15];
    float sc[6] = {1, 2, 4, 8, 16, 32}, out[15];
    dsq_codecs_init();
    for (int i = 0; i < 15; i++) q[i] = 0x38; /* 1.0 */
    dsq_fp8_block_dequant(q, sc, 5, 0, 3, 2, 2, out);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) CHECK(out[i * 5 + j] == sc[(i / 2) * 3 + j / 2]);
    dsq_fp8_block_dequant(q, sc, 5, 2, 3, 2, 2, out);
    CHECK(out[0] == 8 && out[4] == 32);
}
