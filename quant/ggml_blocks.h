/*
 * ggml_blocks.h -- the block types of ggml / GGUF (Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) as dsq storage
 * schemes: block structs with size checks, the scalar reference quantizers
 * and dequantizers, the dequantize kernel table (scalar and AVX2), and
 * element access (one code at a time, for GPTQ).
 *
 * The byte layout of every block is ggml's (ggml-common.h of llama.cpp; the
 * layouts are written out field by field in quant.h).  Structs hold their
 * f16 fields as byte pairs, so they have no padding and no alignment
 * requirement: a block may start at any byte of a row.
 *
 * Module-internal: the public face is quant.h's schemes (DSQ_Q_GGML_*),
 * which dsq_q_quantize / dsq_q_dequantize drive through this file.
 */
#ifndef DSQ_GGML_BLOCKS_H
#define DSQ_GGML_BLOCKS_H

#include <stdint.h>

#define DSQ_GB_QK 32   /* elements of the small blocks (Q8_0, Q4_*, Q5_*, IQ4_NL) */
#define DSQ_GB_QKK 256 /* elements of a super-block (K-quants, IQ4_XS)             */

/* ---- blocks (ggml-common.h names in comments) ---------------------------- */

typedef struct dsq_blk_q8_0 { uint8_t d[2]; int8_t qs[32]; } dsq_blk_q8_0;          /* block_q8_0 */
typedef struct dsq_blk_q4_0 { uint8_t d[2]; uint8_t qs[16]; } dsq_blk_q4_0;         /* block_q4_0 */
typedef struct dsq_blk_q4_1 { uint8_t d[2], m[2]; uint8_t qs[16]; } dsq_blk_q4_1;   /* block_q4_1 */
typedef struct dsq_blk_q5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } dsq_blk_q5_0;
typedef struct dsq_blk_q5_1 { uint8_t d[2], m[2]; uint8_t qh[4]; uint8_t qs[16]; } dsq_blk_q5_1;
typedef struct dsq_blk_q2_k {
    uint8_t scales[16]; /* low nibble: 4-bit scale, high nibble: 4-bit min, per 16 */
    uint8_t qs[64];     /* 2-bit codes                                            */
    uint8_t d[2], dmin[2];
} dsq_blk_q2_k;
typedef struct dsq_blk_q3_k {
    uint8_t hmask[32];  /* high (third) bit of every code                        */
    uint8_t qs[64];     /* low 2 bits                                            */
    uint8_t scales[12]; /* 16 six-bit scales, biased by 32                       */
    uint8_t d[2];
} dsq_blk_q3_k;
typedef struct dsq_blk_q4_k {
    uint8_t d[2], dmin[2];
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins                   */
    uint8_t qs[128];
} dsq_blk_q4_k;
typedef struct dsq_blk_q5_k {
    uint8_t d[2], dmin[2];
    uint8_t scales[12];
    uint8_t qh[32];     /* fifth bit of every code                               */
    uint8_t qs[128];
} dsq_blk_q5_k;
typedef struct dsq_blk_q6_k {
    uint8_t ql[128];    /* low 4 bits                                            */
    uint8_t qh[64];     /* high 2 bits                                           */
    int8_t scales[16];  /* one per 16 elements                                   */
    uint8_t d[2];       /* last field                                            */
} dsq_blk_q6_k;
typedef struct dsq_blk_iq4_nl { uint8_t d[2]; uint8_t qs[16]; } dsq_blk_iq4_nl;
typedef struct dsq_blk_iq4_xs {
    uint8_t d[2];
    uint8_t scales_h[2]; /* u16 LE: bits 2i..2i+1 = high bits of scale i         */
    uint8_t scales_l[4]; /* nibble i (low first) = low 4 bits of scale i          */
    uint8_t qs[128];
} dsq_blk_iq4_xs;

_Static_assert(sizeof(dsq_blk_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(dsq_blk_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(dsq_blk_q4_1) == 20, "q4_1 block size");
_Static_assert(sizeof(dsq_blk_q5_0) == 22, "q5_0 block size");
_Static_assert(sizeof(dsq_blk_q5_1) == 24, "q5_1 block size");
_Static_assert(sizeof(dsq_blk_q2_k) == 84, "q2_k block size");
_Static_assert(sizeof(dsq_blk_q3_k) == 110, "q3_k block size");
_Static_assert(sizeof(dsq_blk_q4_k) == 144, "q4_k block size");
_Static_assert(sizeof(dsq_blk_q5_k) == 176, "q5_k block size");
_Static_assert(sizeof(dsq_blk_q6_k) == 210, "q6_k block size");
_Static_assert(sizeof(dsq_blk_iq4_nl) == 18, "iq4_nl block size");
_Static_assert(sizeof(dsq_blk_iq4_xs) == 136, "iq4_xs block size");

/* The 16 values of the IQ4 grid (kvalues_iq4nl in ggml-common.h). */
extern const int8_t dsq_gb_iq4_grid[16];

/* The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block's scales[12]
 * (get_scale_min_k4 in ggml-quants.c). */
static inline void dsq_gb_k4_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* The 6-bit biased scale (0..63) of sub-block j of a Q3_K block's scales[12]. */
static inline int dsq_gb_k3_scale(int j, const uint8_t *q) {
    int lo = j < 8 ? q[j] & 0xF : q[j - 8] >> 4;
    return lo | ((q[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
}

/* ---- reference quantizers and dequantizers -------------------------------
 * x: n floats (n a multiple of the type's block), imp: n per-column
 * importances (finite, >= 0) or NULL for all 1, y: n / block blocks.
 *
 * quantize_ref minimises, block by block, the weighted squared error
 *     E = sum_i imp[i] * (x[i] - decode(y)[i])^2
 * over the type's parameters with the search described in quant.h (ggml's
 * make_qx_quants / make_qkx3_quants / IQ4 searches, plus scoring every
 * candidate with its stored f16 scales and a refinement of the second-level
 * scales).  Non-finite x do not take part in the search; NaN encodes as the
 * code nearest 0, +-inf as the extreme code in its direction.  Deterministic:
 * plain scalar C with no dependence on the kernel set.
 *
 * dequantize_ref computes exactly ggml's dequantize_row_* arithmetic, in the
 * same operation order, so the floats are bit-identical to ggml's (NaN
 * payloads included, on IEEE hardware). */
#define DSQ_GB_DECL(t)                                                                \
    void dsq_##t##_quantize_ref(const float *x, const float *imp, void *y, int64_t n); \
    void dsq_##t##_dequantize_ref(const void *y, float *x, int64_t n);
DSQ_GB_DECL(q8_0)
DSQ_GB_DECL(q4_0)
DSQ_GB_DECL(q4_1)
DSQ_GB_DECL(q5_0)
DSQ_GB_DECL(q5_1)
DSQ_GB_DECL(q2_k)
DSQ_GB_DECL(q3_k)
DSQ_GB_DECL(q4_k)
DSQ_GB_DECL(q5_k)
DSQ_GB_DECL(q6_k)
DSQ_GB_DECL(iq4_nl)
DSQ_GB_DECL(iq4_xs)
#undef DSQ_GB_DECL

/* ---- per-type table ------------------------------------------------------ */

/* Index of a block type in the tables below (same order as quant.h's
 * DSQ_Q_GGML_* schemes). */
enum {
    DSQ_GB_Q8_0 = 0,
    DSQ_GB_Q4_0,
    DSQ_GB_Q4_1,
    DSQ_GB_Q5_0,
    DSQ_GB_Q5_1,
    DSQ_GB_Q2_K,
    DSQ_GB_Q3_K,
    DSQ_GB_Q4_K,
    DSQ_GB_Q5_K,
    DSQ_GB_Q6_K,
    DSQ_GB_IQ4_NL,
    DSQ_GB_IQ4_XS,
    DSQ_GB_COUNT
};

typedef void (*dsq_gb_quant_fn)(const float *x, const float *imp, void *y, int64_t n);
typedef void (*dsq_gb_dequant_fn)(const void *y, float *x, int64_t n);

typedef struct dsq_gbtype {
    const char *name;      /* "q4_k" (the dsq scheme name)          */
    int ggml_type;         /* ggml type id (GGUF tensor-info type)  */
    int blck;              /* elements per block: 32 or 256         */
    int bytes;             /* bytes per block                       */
    dsq_gb_quant_fn quantize_ref;
    dsq_gb_dequant_fn dequantize_ref;
    /* the element grid (element access, below) */
    int sub;               /* elements sharing one scale (and min): 16 or 32 */
    int n_levels;          /* levels l = 0 .. n_levels - 1 an element may hold */
    int g_lo;              /* integer grids: level l is the integer g_lo + l */
    int nl;                /* 1: level l is dsq_gb_iq4_grid[l] instead       */
} dsq_gbtype;

/* Traits of block type i (0 <= i < DSQ_GB_COUNT), else NULL. */
const dsq_gbtype *dsq_gb_type(int i);

/* A kernel set: dequantizers, one per type, with the contract of
 * dequantize_ref (whole blocks, bit-identical output), and the search loops
 * of the quantizers. */
struct dsq_gbsearch;
typedef struct dsq_gbkern {
    const char *name;
    dsq_gb_dequant_fn dq[DSQ_GB_COUNT];
    const struct dsq_gbsearch *search; /* the quantizers' inner loops, below */
} dsq_gbkern;

/* The inner loops of the quantizers' search (ggml_quant.c), on n elements
 * (a multiple of 8) with finite inputs, each scoring m <= 48 candidates
 * (is[j], dl[j], ...; results at out[j] or out[2j..], out[3j..]).  Each sum
 * runs in 8 lanes, lane k over elements k, k + 8, ..., combined as
 * ((0+1)+(2+3))+((4+5)+(6+7)); the AVX2 versions perform the same float
 * operations in the same order, so the results are bit-identical and the
 * quantized bytes do not depend on the kernel set.  "nearest" below is clamp
 * to the range, then round to nearest even (for the IQ4 grid: the grid value
 * whose half-unit cell holds t, see ggml_quant.c).
 *   u_sums   v = nearest integer in [lo, hi] to is * x:
 *            {sum (w v) x, sum (w v) v}
 *   nl_sums  the same with v = the IQ4 grid value nearest is * x
 *   u_err    sum (w r) r, r = x - dl v, v = nearest in [lo, hi] to x * inv
 *   nl_err   the same on the IQ4 grid
 *   a_sums   l = nearest in [0, nmax] to is * (x - off):
 *            {sum w l, sum (w l) l, sum (w l) x}
 *   a_err    sum (w r) r, r = x - (dl l + c), l = nearest in [0, nmax] to
 *            (x - c) * inv */
typedef struct dsq_gbsearch {
    void (*u_sums)(const float *x, const float *w, int n, float lo, float hi, const float *is, int m, float *out);
    void (*nl_sums)(const float *x, const float *w, int n, const float *is, int m, float *out);
    void (*u_err)(const float *x, const float *w, int n, float lo, float hi, const float *dl, const float *inv, int m,
                  float *out);
    void (*nl_err)(const float *x, const float *w, int n, const float *dl, const float *inv, int m, float *out);
    void (*a_sums)(const float *x, const float *w, int n, float nmax, const float *is, float off, int m, float *out);
    void (*a_err)(const float *x, const float *w, int n, float nmax, const float *dl, const float *inv,
                  const float *c, int m, float *out);
} dsq_gbsearch;

extern const dsq_gbsearch dsq_gbsearch_ref;

/* Quantize n elements into block type `type` (DSQ_GB_*) with search kernels
 * ks: the same bytes as dsq_<type>_quantize_ref for any ks. */
void dsq_gb_quantize(const dsq_gbsearch *ks, int type, const float *x, const float *imp, void *y, int64_t n);

extern const dsq_gbkern dsq_gbkern_ref;

/* The AVX2 kernels (ggml_avx2.c), or NULL in a DSQ_NO_SIMD build, on other
 * targets, or when the CPU lacks AVX2 or F16C. */
const dsq_gbkern *dsq_gbkern_avx2(void);
/* The fastest set this CPU runs, chosen once (pthread_once). */
const dsq_gbkern *dsq_gbkern_best(void);

/* ---- element access ------------------------------------------------------
 * For callers that choose the codes of a block one element at a time with
 * the block's other fields kept (GPTQ, calib/methods.c).  The "parameters"
 * of a block are every field but its element codes: d, m, dmin and the
 * sub-block scale (and min) codes.  With them fixed, element e (0 <= e <
 * blck) holds a level l, 0 <= l < n_levels, and decodes to
 *     x = (a * g(l)) - c          (an f32 product, then an f32 difference)
 * with g(l) = g_lo + l, or dsq_gb_iq4_grid[l] for the IQ4 types, and (a, c)
 * the element's sub-block parameters from dsq_gb_elem_params.  That is bit
 * for bit the value dequantize_ref gives it (c = +0 for the symmetric types,
 * and x - (+0) = x, signed zeros included; c = -m for Q4_1 / Q5_1, whose
 * "q * d + m" is the same float).  Levels and stored codes:
 *     q8_0   qs = l - 127 (l = 0 .. 254: the quantizer's -127..127)
 *     q3_k   l = 4 * (high bit) + low 2 bits, g(l) = l - 4
 *     others the stored code itself. */

/* (a, c) of element e of the block at blk (dsq_gbtype type), read from the
 * block's parameters exactly as dequantize_ref reads them. */
void dsq_gb_elem_params(int type, const void *blk, int e, float *a, float *c);
/* The level element e of the block at blk holds (q8_0: -1 for the code
 * -128, which this library never writes). */
int dsq_gb_code_get(int type, const void *blk, int e);
/* Store level l (0 <= l < n_levels) as the code of element e, changing no
 * other bit of the block.  Elements may be stored in any order. */
void dsq_gb_code_put(int type, void *blk, int e, int l);
/* The level whose value (a * g(l)) - c is nearest to w (ties: the one
 * rounding (w + c) / a gives), its value in *v.  a = 0 gives the level the
 * quantizer writes for 0.  Never NaN for finite a, c, w. */
int dsq_gb_nearest(int type, float a, float c, float w, float *v);
/* Super-blocks (q2_k .. q6_k, iq4_xs): re-choose the integer scale (and
 * min) code of sub-block j with the super-scales d (and dmin) kept, for the
 * values x[j * sub .. (j + 1) * sub) with importance imp (same layout as
 * dsq_gb_quantize, x and imp spanning the whole block: blck entries; the
 * other sub-blocks only set the working scale), minimising the weighted
 * error of the sub-block: the codes within R of the least-squares ones of
 * the quantizer's step 3 and the current code, which wins ties, so the error
 * never goes up.  Writes only the scale (and min) bits of sub-block j.  A
 * no-op for the one-level types, whose only parameters are the block's. */
void dsq_gb_sub_refit(const dsq_gbsearch *ks, int type, void *blk, const float *x, const float *imp, int j);

#endif
