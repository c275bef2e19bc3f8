/*
 * dtype.h -- scalar codecs for the element types found in checkpoints:
 * FP8 E4M3 (FN), FP8 E5M2, UE8M0, BF16, F16, F32.  Pure functions, no I/O.
 *
 * Decoding is exact.  Encoding rounds to nearest, ties to even.  Overflow:
 *   E4M3  saturates to +-448 (the format has no infinity; the upstream
 *         quantizer clamps to [-448, 448] before casting), NaN -> 0x7F/0xFF.
 *   E5M2, F16  overflow to +-inf as IEEE does; NaN stays NaN (quiet).
 *   BF16  IEEE rounding of the top half, NaN -> quiet NaN.
 */
#ifndef DSQ_DTYPE_H
#define DSQ_DTYPE_H

#include <stdint.h>
#include <string.h>

extern float dsq_e4m3_lut[256]; /* written once by dsq_codecs_init(), read-only after */
extern float dsq_e5m2_lut[256];

void dsq_codecs_init(void); /* idempotent; called by the library entry points */

static inline float dsq_e4m3_to_f32(uint8_t b) { return dsq_e4m3_lut[b]; }
static inline float dsq_e5m2_to_f32(uint8_t b) { return dsq_e5m2_lut[b]; }
uint8_t dsq_f32_to_e4m3(float x);
uint8_t dsq_f32_to_e5m2(float x);

static inline float dsq_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t dsq_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float dsq_f16_to_f32(uint16_t h);
uint16_t dsq_f32_to_f16(float f);

/* UE8M0: byte b is 2^(b-127); 255 is NaN. */
float dsq_ue8m0_to_f32(uint8_t b);
/* Exponent byte of a positive power of two s (exact), or 255 if s is not a
 * finite positive power of two representable in UE8M0. */
uint8_t dsq_f32_to_ue8m0(float s);
/* Smallest power of two >= v for v > 0 normal (bit-exact form of the upstream
 * kernel: exponent + (mantissa != 0)). */
float dsq_pow2_ceil(float v);

/* Widen n elements of a stored dtype (F32/F16/BF16/F8_E4M3/F8_E5M2,
 * little-endian, any alignment) to f32.  Returns 0, or -1 for other dtypes. */
int dsq_to_f32(int dtype, const void *src, float *dst, int64_t n);

/* FP8 block dequantization of rows [r0, r1) of a [rows, cols] E4M3 matrix q
 * with a [ceil(rows/br), ceil(cols/bc)] f32 scale grid:
 *     w[i][j] = e4m3(q[i][j]) * scale[i / br][j / bc]
 * dst receives (r1 - r0) * cols floats.  Partial edge blocks need no special
 * case: floor division maps them to the last block row / column. */
void dsq_fp8_block_dequant(const uint8_t *q, const float *scale, int64_t cols,
                           int64_t r0, int64_t r1, int br, int bc, float *dst);

#endif
