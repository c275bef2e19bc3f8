/*
 * quant.h -- weight storage schemes of dsq: FP8 E4M3 with tensor / channel /
 * 128x128-block scales, INT4 groups along the input dimension, INT8 per
 * channel, the ggml / GGUF block types (Q8_0 ... Q6_K, IQ4_NL, IQ4_XS), and
 * plain F32 / F16 / BF16.  Pure functions over caller buffers:
 * no malloc, no I/O, no printing.  Each scheme has a scalar reference path
 * (dsq_q_*_ref) and a fast path (AVX2+FMA+F16C, chosen at run time) that
 * produces byte-identical quantized output.
 *
 * How to use it
 *   1) Pick a scheme: an id from dsq_qtype, by name with dsq_q_from_name()
 *      ("int4-g128-sym") or by parameters with dsq_q_find().
 *   2) dsq_q_sizes() gives the byte sizes of the data, scale and zero-point
 *      arrays for a [rows, cols] matrix; the caller allocates them.
 *   3) Describe the source as a dsq_qmat: any scheme can be a source, e.g. an
 *      upstream DeepSeek FP8 weight is {DSQ_Q_FP8_BLOCK, rows, cols, data =
 *      the E4M3 bytes, scale = the f32 weight_scale_inv grid}; a BF16 weight is
 *      {DSQ_Q_BF16, rows, cols, data}.  Quantizers read the source's exact
 *      dequantized values (e4m3(q) * s as an f32 product).
 *   4) dsq_q_prepare(src, dst) once per matrix (it computes the single scale
 *      of the *-tensor schemes and does nothing for the others), then
 *      dsq_q_quantize(src, dst, r0, r1) over disjoint row ranges, from any
 *      number of threads.  Row ranges must start and end on a multiple of
 *      dsq_q_row_unit() (128 for block schemes, else 1) or at `rows`.  The
 *      output never depends on how the rows were split.
 *      dsq_q_quantize_pool() does 4) on a common/pool.h pool.
 *   5) dsq_q_dequantize(m, r0, r1, out) turns any row range back into f32
 *      (dsq_q_dequantize_tile for a column window as well).
 *   6) Code that picks codes and parameters itself (GPTQ) reads and writes
 *      them through a dsq_qlayout (dsq_q_layout_init, "storage accessors"
 *      below) and dsq_q_choose, never by recomputing the layout.  The ggml
 *      block schemes keep parameters and codes inside their blocks: their
 *      element access is in ggml_blocks.h.
 *
 * A stacked MoE tensor [n_experts, out, in] quantized "per expert" is
 * n_experts independent [out, in] matrices: call the functions above once per
 * expert slice, so each expert's scales depend on that expert's weights only.
 * Tensor, channel and block granularity all combine with this.
 *
 * ---------------------------------------------------------------------------
 * Conventions shared by every scheme
 *
 *   A matrix is [rows, cols] row-major: rows are output channels, cols the
 *   input dimension (contiguous), as in HF [out, in] weights.  Multi-byte
 *   values are little-endian.  Pointers may have any alignment.
 *
 *   Scale dtypes.  A "raw scale" r > 0 (defined per scheme below) is stored as
 *     f32    r itself;
 *     bf16   the smallest bf16 >= r (rounded UP, so no element leaves the
 *            code range because of scale rounding), saturating at the largest
 *            finite bf16;
 *     f16    the smallest f16 >= r, saturating at 65504 (values beyond the
 *            saturated range clip);
 *     ue8m0  byte b with 2^(b-127) = dsq_pow2_ceil(r), the smallest power of
 *            two >= r, so nothing saturates.
 *   Codes are always computed from the STORED (rounded) scale s, so
 *   dequantization gives exactly the values the quantizer aimed at.
 *   r is floored at FLT_MIN = 2^-126, so 1/s is always finite.
 *
 *   All-zero unit (no finite non-zero element): scale 1 (f32 1.0, ue8m0 127,
 *   bf16 0x3F80, f16 0x3C00), zero point 0, every code encodes 0.
 *
 *   Non-finite inputs are ignored when ranges are measured.  NaN encodes to 0
 *   in integer schemes and to 0x7F|sign in FP8; +-inf to the extreme code of
 *   its sign (FP8: +-448).
 *
 *   "rne" is round to nearest, ties to even (rintf in the default mode).
 *
 * ---------------------------------------------------------------------------
 * FP8 E4M3 schemes: fp8-tensor, fp8-channel, fp8-block, and the same with a
 * "-ue8m0" suffix for power-of-two scales stored as one exponent byte.
 *
 *   data   rows * cols bytes, E4M3FN (dtype.h), row-major.
 *   scale  tensor: 1 entry; channel: rows entries; block: a grid of
 *          ceil(rows/128) x ceil(cols/128) entries, row-major, entry [i][j]
 *          covering rows 128i.., cols 128j..; edge blocks are partial and
 *          their range is taken over the real elements only.  This is the
 *          upstream DeepSeek weight_scale_inv layout.  Entries are f32
 *          (4 bytes) or ue8m0 (1 byte).  A scale is a multiplier.
 *   unit   amax = max |x| over the tensor / row / block.
 *          f32:   r = amax / 448            (s = max(r, 2^-126))
 *          ue8m0: s = dsq_pow2_ceil(max(amax / 448, 2^-126))
 *   encode q = dsq_f32_to_e4m3(x / s): IEEE division, then RNE to E4M3,
 *          saturating at +-448.  (With power-of-two s the fast path may
 *          multiply by 1/s: it is the same correctly rounded number.)
 *   decode x = e4m3(q) * s (a NaN s decodes every element to the positive
 *          quiet NaN, whatever the code).
 *
 * INT4 group schemes: int4-g{32,64,128}-{sym,asym}[-f16]
 *
 *   Groups of G consecutive columns of one row (G = 32, 64 or 128);
 *   n_groups = ceil(cols / G), the last group is shorter when G does not
 *   divide cols.  Codes u are unsigned nibbles 0..15, z the zero point:
 *          decode x = (u - z) * s
 *   data   ceil(cols/2) bytes per row, row-major: byte t of a row holds
 *          column 2t in its LOW nibble and column 2t+1 in its HIGH nibble
 *          (compressed-tensors / gpt-oss order).  When cols is odd the last
 *          high nibble is 0.
 *   scale  [rows, n_groups] bf16 (default) or f16 ("-f16" suffix).
 *   sym    z = 8, not stored (signed codes -8..7 = u - 8).
 *          r = amax / 7.5 (compressed-tensors: the extreme element maps to
 *          +-7.5; the negative side reaches -8 exactly, the positive side
 *          clamps to 7 with error <= s/2).
 *   asym   mn = min(0, min x), mx = max(0, max x) (zero is always exact);
 *          r = (mx - mn) / 15; z = clamp(rne(-mn / s), 0, 15).
 *          zero   [rows, ceil(n_groups/2)] bytes: group 2t of a row in the
 *                 low nibble of byte t, group 2t+1 in the high nibble (0 pad).
 *   encode u = clamp(rne(x * inv) + z, 0, 15), inv = 1.0f / s computed once
 *          per group in f32 (x * inv is clamped to [-16, 16] before rne).
 *   Error: |x - decode| <= s/2 (+ f32 rounding) for every element inside the
 *   (unclipped) range.
 *
 * INT8 channel schemes: int8-channel (f32 scale), int8-channel-f16,
 * int8-channel-bf16
 *
 *   data   rows * cols int8 codes q in -127..127 (two's complement bytes).
 *   scale  rows entries, f32, f16 or bf16.
 *   unit   r = amax / 127 over the row; q = clamp(rne(x * inv), -127, 127),
 *          inv = 1.0f / s; decode x = q * s.
 *
 * Float schemes: f32, f16, bf16 -- data only, rows * cols elements.
 *   f16 / bf16 round to nearest even (dsq_f32_to_f16 / dsq_f32_to_bf16:
 *   f16 overflows to inf as IEEE does); f32 copies the bits.
 *
 * ---------------------------------------------------------------------------
 * ggml block schemes: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k,
 * q6_k, iq4_nl, iq4_xs (kind DSQ_QK_GGML, gran DSQ_QG_GGML)
 *
 *   The data array is the GGUF tensor data itself: each row is cols / B
 *   consecutive blocks of B = group columns (32 or 256; cols must be a
 *   multiple of B), block b covering columns bB .. bB + B - 1; no scale or
 *   zero array.  Layouts are ggml's (ggml-common.h), byte for byte; below,
 *   offsets are within one block, f16 fields are little-endian IEEE half
 *   floats, "elem e" is column bB + e, and every formula is the float
 *   arithmetic of ggml's dequantize_row_* in its order (each product rounds
 *   to f32; no fused multiply-add).
 *
 *   q8_0 (ggml type 8), 32 elems, 34 bytes
 *     0   d       f16
 *     2   qs[32]  int8;  x[e] = qs[e] * d
 *   q4_0 (2), 32 elems, 18 bytes
 *     0   d       f16
 *     2   qs[16]  elem j (j < 16) in the LOW nibble of qs[j], elem j + 16 in
 *                 its HIGH nibble (not the (2j, 2j+1) pairing of int4-*);
 *                 x[e] = (q - 8) * d
 *   q4_1 (3), 32 elems, 20 bytes
 *     0   d, 2 m  f16, f16
 *     4   qs[16]  nibbles as q4_0;  x[e] = q * d + m
 *   q5_0 (6), 32 elems, 22 bytes
 *     0   d       f16
 *     2   qh[4]   u32 LE: bit e = bit 4 of the code of elem e
 *     6   qs[16]  low 4 bits as q4_0;  x[e] = (q - 16) * d
 *   q5_1 (7), 32 elems, 24 bytes
 *     0   d, 2 m  f16, f16
 *     4   qh[4], 8 qs[16]  as q5_0;  x[e] = q * d + m
 *   iq4_nl (20), 32 elems, 18 bytes
 *     0   d       f16
 *     2   qs[16]  4-bit indexes, nibbles as q4_0, into the grid
 *                 K = {-127, -104, -83, -65, -49, -35, -22, -10,
 *                      1, 13, 25, 38, 53, 69, 89, 113} (kvalues_iq4nl);
 *                 x[e] = d * K[q]
 *
 *   Super-blocks of 256 elements, in sub-blocks of 16 or 32:
 *   q2_k (10), 84 bytes, 16 sub-blocks of 16
 *     0   scales[16]  sub-block j: scale sc = low nibble, min mn = high nibble
 *     16  qs[64]      2-bit codes: elem e = 128h + 32k + l (h < 2, k < 4,
 *                     l < 32) is bits 2k..2k+1 of qs[32h + l]
 *     80  d, 82 dmin  f16, f16
 *                     x[e] = (d * sc) * q - (dmin * mn),  j = e / 16
 *   q3_k (11), 110 bytes, 16 sub-blocks of 16
 *     0   hmask[32]   bit e / 32 of hmask[e % 32] = bit 2 of the code of e
 *     32  qs[64]      low 2 bits, placed as q2_k
 *     96  scales[12]  16 six-bit scales s_j (stored s_j + 32): low 4 bits
 *                     of s_j in scales[j] (j < 8, low nibble) or scales[j - 8]
 *                     (j >= 8, high nibble); high 2 bits at bits
 *                     2 (j / 4) .. +1 of scales[8 + j % 4]
 *     108 d           f16
 *                     x[e] = (d * (s_j - 32)) * (low2 - (hbit ? 0 : 4))
 *   q4_k (12), 144 bytes, 8 sub-blocks of 32
 *     0   d, 2 dmin   f16, f16
 *     4   scales[12]  6-bit scale sc_j and min mn_j: for j < 4, sc_j = bits
 *                     0-5 of scales[j], mn_j = bits 0-5 of scales[j + 4]; for
 *                     j >= 4, scales[j + 4] = (sc_j & 15) | (mn_j & 15) << 4,
 *                     the top 2 bits of sc_j at bits 6-7 of scales[j - 4],
 *                     of mn_j at bits 6-7 of scales[j]
 *     16  qs[128]     elem 64c + l (c < 4, l < 32) in the LOW nibble of
 *                     qs[32c + l], elem 64c + 32 + l in its HIGH nibble
 *                     x[e] = (d * sc_j) * q - (dmin * mn_j),  j = e / 32
 *   q5_k (13), 176 bytes: as q4_k with
 *     16  qh[32]      bit 4 of the code: elem 64c + l at bit 2c of qh[l],
 *                     elem 64c + 32 + l at bit 2c + 1
 *     48  qs[128]     low 4 bits as q4_k
 *   q6_k (14), 210 bytes, 16 sub-blocks of 16
 *     0   ql[128]     low 4 bits: elem 128h + 32k + l at the low (k < 2) or
 *                     high (k >= 2) nibble of ql[64h + l + 32 (k & 1)]
 *     128 qh[64]      high 2 bits at bits 2k..2k+1 of qh[32h + l]
 *     192 scales[16]  int8, one per 16 elements
 *     208 d           f16 (the last field)
 *                     x[e] = (d * scales[e / 16]) * (q - 32)
 *   iq4_xs (23), 136 bytes, 8 sub-blocks of 32
 *     0   d           f16
 *     2   scales_h    u16 LE: bits 2j..2j+1 = high 2 bits of ls_j
 *     4   scales_l[4] nibble j % 2 of scales_l[j / 2] = low 4 bits of ls_j
 *     8   qs[128]     sub-block j in qs[16j ..], nibbles as q4_0, indexes
 *                     into K (iq4_nl)
 *                     x[e] = (d * (ls_j - 32)) * K[q],  j = e / 32
 *
 *   Decoding is bit-identical to ggml's (tests/test_ggml_ref.c checks it
 *   against llama.cpp's own library); an f16 NaN keeps its payload.  The
 *   code ranges used are ggml's: q8_0 -127..127, q4_0 -8..7, q5_0
 *   -16..15, q6_k -32..31, q3_k -4..3, signed 6-bit scales -32..31, q6_k
 *   scales -128..127.
 *
 *   Quantization minimises, block by block, E = sum imp[c] (x - decode)^2
 *   (imp = 1 without importance) with ggml's search shapes scored by E
 *   itself at the stored scales (quant/ggml_quant.c): per sub-block a scale
 *   (and min) search with least squares and Lloyd steps, the f16 / 6-bit /
 *   4-bit / int8 second-level scales chosen for E, then each sub-block's
 *   integer scale (and min) re-chosen around the ideal one and the f16
 *   super-scales refitted.  Its error is at most llama.cpp's on average
 *   (tests/test_ggml_ref.c measures both).  Non-finite inputs take no part
 *   in the search; NaN encodes as the code nearest 0, +-inf as the extreme
 *   code in its direction; a block with no finite non-zero value stores
 *   d = 0 (all zero).  Stored f16 scales saturate at +-65504.  The AVX2 path
 *   writes the same bytes as the scalar one.
 *
 * ---------------------------------------------------------------------------
 * Scale search (dsq_qopts.clip_steps >= 2): instead of the full range, try
 * clip ratios rho_k = 1 - (1 - clip_min) * k / (clip_steps - 1), k = 0..,
 * computed in f32 (rho_0 = 1 is plain absmax).  For each rho the unit's range
 * is scaled (amax * rho; asym: mn * rho and mx * rho), the scale (and zero
 * point) follow from it exactly as above, and the unit is scored by
 *     E(rho) = sum over the unit of w[col] * (x - decode(encode(x)))^2
 * accumulated in double in row-major order, w = imp (per input column,
 * length cols) or 1.  The first rho with the smallest E wins, so the result
 * is never worse than absmax in that weighted error.  The search is scalar
 * code shared by both paths.  Units are a group (int4), a row (channel), a
 * 128x128 block or the whole matrix (tensor, inside dsq_q_prepare).
 */
#ifndef DSQ_QUANT_H
#define DSQ_QUANT_H

#include "dsq.h"
#include "common.h"
#include "dtype.h"

#include <math.h>
#include <stdint.h>

/* ---- schemes ------------------------------------------------------------ */

/* Scheme ids.  Stable within a release; containers should store the name. */
typedef enum dsq_qtype {
    DSQ_Q_F32 = 0,
    DSQ_Q_F16,
    DSQ_Q_BF16,
    DSQ_Q_FP8_TENSOR,         /* "fp8-tensor"          f32 scale  */
    DSQ_Q_FP8_TENSOR_UE8M0,   /* "fp8-tensor-ue8m0"                */
    DSQ_Q_FP8_CHANNEL,        /* "fp8-channel"                     */
    DSQ_Q_FP8_CHANNEL_UE8M0,  /* "fp8-channel-ue8m0"               */
    DSQ_Q_FP8_BLOCK,          /* "fp8-block": upstream DeepSeek    */
    DSQ_Q_FP8_BLOCK_UE8M0,    /* "fp8-block-ue8m0"                 */
    DSQ_Q_INT8_CHANNEL,       /* "int8-channel"        f32 scale   */
    DSQ_Q_INT8_CHANNEL_F16,   /* "int8-channel-f16" (and int8-channel-bf16 after the ggml types) */
    DSQ_Q_INT4_G32_SYM,       /* "int4-g32-sym"        bf16 scales */
    DSQ_Q_INT4_G32_SYM_F16,   /* "int4-g32-sym-f16"                */
    DSQ_Q_INT4_G32_ASYM,      /* "int4-g32-asym"                   */
    DSQ_Q_INT4_G32_ASYM_F16,  /* "int4-g32-asym-f16"               */
    DSQ_Q_INT4_G64_SYM,
    DSQ_Q_INT4_G64_SYM_F16,
    DSQ_Q_INT4_G64_ASYM,
    DSQ_Q_INT4_G64_ASYM_F16,
    DSQ_Q_INT4_G128_SYM,
    DSQ_Q_INT4_G128_SYM_F16,
    DSQ_Q_INT4_G128_ASYM,
    DSQ_Q_INT4_G128_ASYM_F16,
    /* ggml / GGUF block types, in the order of ggml_blocks.h's DSQ_GB_* */
    DSQ_Q_GGML_Q8_0,          /* "q8_0"    32 columns, 34 bytes  */
    DSQ_Q_GGML_Q4_0,          /* "q4_0"    32, 18                */
    DSQ_Q_GGML_Q4_1,          /* "q4_1"    32, 20                */
    DSQ_Q_GGML_Q5_0,          /* "q5_0"    32, 22                */
    DSQ_Q_GGML_Q5_1,          /* "q5_1"    32, 24                */
    DSQ_Q_GGML_Q2_K,          /* "q2_k"   256, 84                */
    DSQ_Q_GGML_Q3_K,          /* "q3_k"   256, 110               */
    DSQ_Q_GGML_Q4_K,          /* "q4_k"   256, 144               */
    DSQ_Q_GGML_Q5_K,          /* "q5_k"   256, 176               */
    DSQ_Q_GGML_Q6_K,          /* "q6_k"   256, 210               */
    DSQ_Q_GGML_IQ4_NL,        /* "iq4_nl"  32, 18                */
    DSQ_Q_GGML_IQ4_XS,        /* "iq4_xs" 256, 136               */
    DSQ_Q_INT8_CHANNEL_BF16,  /* "int8-channel-bf16" (compressed-tensors W8A16) */
    DSQ_Q_COUNT
} dsq_qtype;

typedef enum dsq_qkind {
    DSQ_QK_FLOAT = 0, /* f32 / f16 / bf16 elements, no scales */
    DSQ_QK_FP8,       /* E4M3 codes and scales                 */
    DSQ_QK_INT8,      /* int8 codes, per-row scale             */
    DSQ_QK_INT4,      /* packed nibbles, per-group scale       */
    DSQ_QK_GGML       /* ggml blocks: codes and scales inside  */
} dsq_qkind;

typedef enum dsq_qgran {
    DSQ_QG_NONE = 0, /* float schemes      */
    DSQ_QG_TENSOR,   /* one scale          */
    DSQ_QG_CHANNEL,  /* one scale per row  */
    DSQ_QG_BLOCK,    /* group x group tile */
    DSQ_QG_GROUP,    /* group columns of one row */
    DSQ_QG_GGML      /* ggml blocks of group columns of one row */
} dsq_qgran;

/* Traits of one scheme (the table is const). */
typedef struct dsq_qscheme {
    const char *name;   /* "int4-g128-sym", see the enum above            */
    dsq_qkind kind;
    dsq_qgran gran;
    int group;          /* INT4: columns per group; block: tile edge 128;
                           GGML: columns per block (32 or 256); else 0     */
    int sym;            /* 1 symmetric, 0 with zero points (INT4 asym)     */
    dsq_dtype elem;     /* element dtype of the data array: F32, F16, BF16,
                           F8_E4M3, I8, or U8 for packed nibbles and ggml
                           blocks                                          */
    dsq_dtype sdt;      /* scale dtype: F32, F16, BF16, F8_E8M0, or INVALID */
    int row_unit;       /* row ranges of dsq_q_quantize align to this      */
    double bpw;         /* nominal bits per weight for large aligned shapes */
} dsq_qscheme;

/* Traits of scheme t, or NULL if t is out of range. */
const dsq_qscheme *dsq_q_scheme(int t);
/* Scheme id by name, or -1. */
int dsq_q_from_name(const char *name);
/* Scheme id by parameters (group ignored where it does not apply), or -1
 * (always -1 for DSQ_QK_GGML: find those by name or ggml type).
 * For DSQ_QK_FLOAT (gran DSQ_QG_NONE, sym 1) sdt names the element dtype.
 * Example: dsq_q_find(DSQ_QK_INT4, DSQ_QG_GROUP, 128, 1, DSQ_DT_BF16). */
int dsq_q_find(dsq_qkind kind, dsq_qgran gran, int group, int sym, dsq_dtype sdt);
/* 128 for block schemes, else 1 (0 for a bad id). */
int dsq_q_row_unit(int t);
/* The ggml type id (GGUF tensor-info type, e.g. 12 for "q4_k") of a
 * DSQ_QK_GGML scheme, or -1 for any other scheme.  F32 / F16 / BF16 map to
 * ggml's 0 / 1 / 30 as well: their bytes are the GGUF arrays too. */
int dsq_q_ggml_type(int t);
/* The scheme of ggml type id g (one of the above), or -1. */
int dsq_q_from_ggml_type(int g);


/* Storage of a [rows, cols] matrix. */
typedef struct dsq_qsizes {
    uint64_t data;        /* bytes of the data array                  */
    uint64_t scale;       /* bytes of the scale array (0 if none)     */
    uint64_t zero;        /* bytes of the zero-point array (0 if none) */
    uint64_t row_bytes;   /* data bytes per row                       */
    int64_t scale_rows;   /* scale grid shape: tensor 1x1, channel rows x 1, */
    int64_t scale_cols;   /* block ceil x ceil, group rows x n_groups; 0x0 none */
} dsq_qsizes;

/* Fill *out for scheme t and shape [rows, cols] (rows, cols >= 0, each at
 * most 2^40, no size may overflow).  DSQ_E_ARG otherwise. */
int dsq_q_sizes(int t, int64_t rows, int64_t cols, dsq_qsizes *out, dsq_err *err);
/* (DSQ_QK_GGML schemes also need cols to be a multiple of the block.) */
/* Exact bits per weight (data + scales + zero points) for that shape; 0 for
 * an empty or invalid one. */
double dsq_q_bpw(int t, int64_t rows, int64_t cols);

/* ---- matrices ------------------------------------------------------------ */

/* A [rows, cols] matrix stored in scheme `type`: the three arrays laid out as
 * described at the top of this file (sizes from dsq_q_sizes).  `scale` is
 * NULL for float schemes, `zero` is NULL unless the scheme is asymmetric.
 * Dequantizing never writes through these pointers. */
typedef struct dsq_qmat {
    int type;           /* dsq_qtype */
    int64_t rows, cols;
    void *data;
    void *scale;
    void *zero;
} dsq_qmat;

/* The ggml scheme that stores every value of scheme t exactly (its GGUF
 * twin): a ggml block type itself, Q4_0 for int4-g32-sym{,-f16}; else -1.
 * dsq_q_transcode writes src into dst of that twin scheme without changing
 * one decoded float: ggml types are copied, int4-g32-sym codes and scales
 * become Q4_0 blocks (scale d = s, code q = u: ggml decodes (q - 8) * d, as
 * dsq does).  DSQ_E_UNSUPPORTED when a bf16 scale is not an f16 or the rows
 * do not split into 32-column blocks (the caller quantizes instead),
 * DSQ_E_FORMAT for a non-finite scale. */
int dsq_q_ggml_twin(int t);
/* Can dsq_q_transcode write src-scheme matrices as dst without changing a
 * value?  The GGUF twin above, or the same codes under another scale dtype
 * (int4 groups bf16 <-> f16, int8 channels f32 / f16 / bf16, fp8 f32 <->
 * ue8m0): the codes are copied and each scale converted, DSQ_E_UNSUPPORTED
 * when one has no exact form in dst's dtype (the caller quantizes instead). */
int dsq_q_transcodable(int src, int dst);

/* Is any value m decodes to NaN or infinite?  1 with the first such
 * element's *row / *col (both -1 when it is an FP8 scale), 0 when all are
 * finite, a DSQ_E_* code on error.  Float and FP8 data are tested by their
 * bits (E4M3 0x7F / 0xFF, E8M0 0xFF), other schemes decoded a band of rows
 * at a time. */
int dsq_q_find_nonfinite(const dsq_qmat *m, int64_t *row, int64_t *col, dsq_err *err);
int dsq_q_transcode(const dsq_qmat *src, const dsq_qmat *dst, dsq_err *err);

#define DSQ_Q_MAX_CLIP 64 /* largest dsq_qopts.clip_steps */

/* Quantization options; NULL means all defaults (plain absmax).  The ggml
 * block schemes use imp and ignore clip_steps / clip_min (their own search
 * replaces the clip search); fixed is refused for them. */
typedef struct dsq_qopts {
    const float *imp;   /* per-input-column importance [cols] (finite, >= 0)
                           weighting the search error, or NULL (all 1)  */
    int clip_steps;     /* 0 or 1: absmax; 2..DSQ_Q_MAX_CLIP: ratios tried (20 is typical) */
    float clip_min;     /* smallest ratio tried, in (0, 1); 0 means 0.5  */
    int fixed;          /* 1: dst->scale (and dst->zero) already hold the
                           parameters of every unit; only the codes are
                           computed, with those parameters (calibrated
                           methods such as GPTQ choose scales themselves) */
} dsq_qopts;

/* The stored scale s (after rounding to the scheme's scale dtype, as
 * described above) and zero point z of a unit whose range is [lo, hi]
 * (lo <= 0 <= hi; symmetric schemes use hi as amax), and the bits to store
 * (*code: the scale dtype's encoding of s).  DSQ_E_ARG for float schemes. */
int dsq_q_params(int scheme, float lo, float hi, float *s, int *z, uint32_t *code);

/* Compute the single scale of a *-tensor destination from the whole source
 * and store it in dst->scale; a no-op for the other schemes.  Call once per
 * matrix before dsq_q_quantize. */
int dsq_q_prepare(const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *opt,
                  dsq_err *err);
int dsq_q_prepare_ref(const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *opt,
                      dsq_err *err);

/* Quantize rows [r0, r1) of src (same shape as dst, any scheme) into dst's
 * arrays.  Writes only the bytes of those rows (for block schemes, of those
 * 128-row bands).  Safe to call concurrently on disjoint row ranges.
 * Returns DSQ_OK or DSQ_E_ARG (bad scheme, shape, range, pointer, options,
 * or an unprepared tensor scale). */
int dsq_q_quantize(const dsq_qmat *src, const dsq_qmat *dst, int64_t r0, int64_t r1,
                   const dsq_qopts *opt, dsq_err *err);
/* The same with the scalar reference kernels only: the definition of the
 * output bytes. */
int dsq_q_quantize_ref(const dsq_qmat *src, const dsq_qmat *dst, int64_t r0, int64_t r1,
                       const dsq_qopts *opt, dsq_err *err);

/* Rows [r0, r1) of m as f32 into out ((r1 - r0) * cols floats, row-major).
 * Any r0 <= r1 <= rows.  Fast and reference paths agree bit for bit
 * (every decode is one exact-rounded f32 product). */
int dsq_q_dequantize(const dsq_qmat *m, int64_t r0, int64_t r1, float *out, dsq_err *err);
int dsq_q_dequantize_ref(const dsq_qmat *m, int64_t r0, int64_t r1, float *out, dsq_err *err);
/* Window rows [r0, r1) x cols [c0, c1) into out with row stride ld floats
 * (ld >= c1 - c0). */
int dsq_q_dequantize_tile(const dsq_qmat *m, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                          float *out, int64_t ld, dsq_err *err);

/* prepare + quantize of all rows, split over the pool's workers in
 * row_unit-aligned ranges (pool NULL: inline).  Same bytes as one call. */
struct dsq_pool;
int dsq_q_quantize_pool(struct dsq_pool *pool, const dsq_qmat *src, const dsq_qmat *dst,
                        const dsq_qopts *opt, dsq_err *err);

/* Name of the kernel set dsq_q_quantize uses: "avx2" or "ref". */
const char *dsq_q_simd_name(void);

/* ---- storage accessors ---------------------------------------------------
 * Where a matrix keeps its codes, scales and zero points (the layouts at the
 * top of this file), for code outside quant/ that chooses them itself: GPTQ
 * and its refinement in calib/.  This is the one place that knows them; the
 * drivers in quant.c use the same functions.
 *
 * A unit is one entry of the scale grid (dsq_qsizes.scale_rows x scale_cols,
 * row-major): the whole tensor, a row, a 128x128 block or a group of one row,
 * numbered in that order.  Zero points exist for the INT4 asym schemes only
 * and are addressed by (row r, group g of that row); group g of row r is unit
 * r * dsq_q_units_per_row() + g.  Codes are per element:
 *     INT4   the nibble u, 0..15              decodes to (u - z) * s
 *     INT8   the signed byte q, -127..127     decodes to q * s
 *     FP8    the E4M3 byte q, 0..255          decodes to e4m3(q) * s
 * Float schemes have neither units nor codes.
 *
 * dsq_q_layout_init() checks the matrix once; the accessors are inline and
 * check nothing (indices in range, arrays present), so inner loops may call
 * them.  The put functions of nibble arrays (INT4 codes, zero points) write
 * a whole byte for an even index, clearing its odd partner and any padding
 * nibble, so a row's codes or groups must be put in increasing order. */

typedef struct dsq_qlayout {
    const dsq_qmat *m;       /* the matrix, borrowed: must outlive the layout */
    const dsq_qscheme *sc;   /* its scheme */
    dsq_qsizes sz;           /* its array sizes and scale grid shape */
    int64_t unit_rows;       /* rows one unit spans: rows (tensor), 128 (block), else 1; >= 1 */
    int64_t unit_cols;       /* columns one unit spans in a row: cols (tensor, channel),
                                the group or block edge; >= 1 */
    uint64_t zero_row_bytes; /* bytes per row of the zero-point array; 0 without one */
} dsq_qlayout;

/* Fill *L for matrix m: DSQ_E_ARG for a NULL matrix, unknown scheme, bad
 * shape or a missing array (as dsq_q_quantize checks them). */
int dsq_q_layout_init(dsq_qlayout *L, const dsq_qmat *m, dsq_err *err);

/* Units along one row of units: n_groups for INT4, the block columns for
 * block schemes, 1 for tensor and channel scales, 0 for float schemes. */
static inline int64_t dsq_q_units_per_row(const dsq_qlayout *L) { return L->sz.scale_cols; }

/* The unit holding element (r, j). */
static inline int64_t dsq_q_unit(const dsq_qlayout *L, int64_t r, int64_t j) {
    return (r / L->unit_rows) * L->sz.scale_cols + j / L->unit_cols;
}

/* Stored scale of unit u as f32 (1 for float schemes). */
static inline float dsq_q_scale_get(const dsq_qlayout *L, int64_t u) {
    const uint8_t *p = (const uint8_t *)L->m->scale;
    switch (L->sc->sdt) {
    case DSQ_DT_F32: return dsq_lef32(p + 4 * u);
    case DSQ_DT_F16: return dsq_f16_to_f32(dsq_le16(p + 2 * u));
    case DSQ_DT_BF16: return dsq_bf16_to_f32(dsq_le16(p + 2 * u));
    case DSQ_DT_F8_E8M0: return dsq_ue8m0_to_f32(p[u]);
    default: return 1.0f;
    }
}

/* Bits of the scale dtype for s, rounded to nearest even (f32: s itself;
 * ue8m0: the exponent byte, 255 unless s is a power of two in range).  For
 * an s that dsq_q_params returned these are exactly its *code. */
static inline uint32_t dsq_q_scale_bits(const dsq_qlayout *L, float s) {
    uint32_t b = 0;
    switch (L->sc->sdt) {
    case DSQ_DT_F32: memcpy(&b, &s, 4); break;
    case DSQ_DT_F16: b = dsq_f32_to_f16(s); break;
    case DSQ_DT_BF16: b = dsq_f32_to_bf16(s); break;
    case DSQ_DT_F8_E8M0: b = dsq_f32_to_ue8m0(s); break;
    default: break;
    }
    return b;
}

/* Store scale bits b (dsq_q_scale_bits, or dsq_q_params' *code) for unit u. */
static inline void dsq_q_scale_store(const dsq_qlayout *L, int64_t u, uint32_t b) {
    uint8_t *p = (uint8_t *)L->m->scale;
    switch (L->sc->sdt) {
    case DSQ_DT_F32: dsq_st32(p + 4 * u, b); break;
    case DSQ_DT_F16:
    case DSQ_DT_BF16: dsq_st16(p + 2 * u, (uint16_t)b); break;
    case DSQ_DT_F8_E8M0: p[u] = (uint8_t)b; break;
    default: break;
    }
}

/* Store s as the scale of unit u, rounded as dsq_q_scale_bits does. */
static inline void dsq_q_scale_put(const dsq_qlayout *L, int64_t u, float s) {
    dsq_q_scale_store(L, u, dsq_q_scale_bits(L, s));
}

/* The value dsq_q_scale_put would store for s (what dsq_q_scale_get then
 * returns); NaN for a ue8m0 s that is not a power of two. */
static inline float dsq_q_scale_stored(const dsq_qlayout *L, float s) {
    uint32_t b = dsq_q_scale_bits(L, s);
    switch (L->sc->sdt) {
    case DSQ_DT_F16: return dsq_f16_to_f32((uint16_t)b);
    case DSQ_DT_BF16: return dsq_bf16_to_f32((uint16_t)b);
    case DSQ_DT_F8_E8M0: return dsq_ue8m0_to_f32((uint8_t)b);
    default: return s;
    }
}

/* Zero point of group g of row r: stored for INT4 asym, 8 for INT4 sym, 0
 * for the other kinds. */
static inline int dsq_q_zero_get(const dsq_qlayout *L, int64_t r, int64_t g) {
    if (L->sc->kind != DSQ_QK_INT4) return 0;
    if (L->sc->sym) return 8;
    const uint8_t *p = (const uint8_t *)L->m->zero + (uint64_t)r * L->zero_row_bytes;
    return (g & 1) ? p[g / 2] >> 4 : p[g / 2] & 15;
}

/* Store zero point z (0..15) of group g of row r; a no-op without a
 * zero-point array.  Groups of a row in increasing order (see above). */
static inline void dsq_q_zero_put(const dsq_qlayout *L, int64_t r, int64_t g, int z) {
    if (!L->zero_row_bytes) return;
    uint8_t *p = (uint8_t *)L->m->zero + (uint64_t)r * L->zero_row_bytes;
    if (g & 1) p[g / 2] = (uint8_t)((p[g / 2] & 15) | (z << 4));
    else p[g / 2] = (uint8_t)z;
}

/* Code of element (r, j) (0 for float schemes). */
static inline int dsq_q_code_get(const dsq_qlayout *L, int64_t r, int64_t j) {
    const uint8_t *row = (const uint8_t *)L->m->data + (uint64_t)r * L->sz.row_bytes;
    switch (L->sc->kind) {
    case DSQ_QK_INT4: return (j & 1) ? row[j / 2] >> 4 : row[j / 2] & 15;
    case DSQ_QK_INT8: return (int8_t)row[j];
    case DSQ_QK_FP8: return row[j];
    default: return 0;
    }
}

/* Store code c of element (r, j) (a no-op for float schemes).  INT4: the
 * columns of a row in increasing order (see above). */
static inline void dsq_q_code_put(const dsq_qlayout *L, int64_t r, int64_t j, int c) {
    uint8_t *row = (uint8_t *)L->m->data + (uint64_t)r * L->sz.row_bytes;
    switch (L->sc->kind) {
    case DSQ_QK_INT4:
        if (j & 1) row[j / 2] = (uint8_t)((row[j / 2] & 15) | (c << 4));
        else row[j / 2] = (uint8_t)c;
        break;
    case DSQ_QK_INT8:
    case DSQ_QK_FP8: row[j] = (uint8_t)c; break;
    default: break;
    }
}

/* Smallest and largest code of the scheme (0, 15 for INT4; -127, 127 for
 * INT8; 0, 255 for FP8; 0, 0 for float schemes). */
static inline void dsq_q_code_range(const dsq_qlayout *L, int *lo, int *hi) {
    *lo = L->sc->kind == DSQ_QK_INT8 ? -127 : 0;
    *hi = L->sc->kind == DSQ_QK_INT4 ? 15 : L->sc->kind == DSQ_QK_INT8 ? 127 : L->sc->kind == DSQ_QK_FP8 ? 255 : 0;
}

/* Scalar forms of _mm256_max_ps(a, b) / _mm256_min_ps(a, b) (the second
 * operand wins unordered and equal comparisons), used wherever a scalar
 * loop must agree with the AVX2 kernels. */
static inline float dsq_q_maxps(float a, float b) { return a > b ? a : b; }
static inline float dsq_q_minps(float a, float b) { return a < b ? a : b; }

/* One INT4 code u for x: t = x * inv (NaN -> 0, clamped to [-16, 16]),
 * u = clamp(rne(t) + z, 0, 15). */
static inline unsigned dsq_q_i4_code(float x, float inv, int z) {
    float t = x * inv;
    if (t != t) t = 0;
    t = dsq_q_minps(dsq_q_maxps(t, -16.0f), 16.0f);
    int u = (int)rintf(t) + z;
    return (unsigned)(u < 0 ? 0 : u > 15 ? 15 : u);
}
/* One INT8 code q for x: t = x * inv (NaN -> 0, clamped to [-128, 128]),
 * q = clamp(rne(t), -127, 127). */
static inline int dsq_q_i8_code(float x, float inv) {
    float t = x * inv;
    if (t != t) t = 0;
    t = dsq_q_minps(dsq_q_maxps(t, -128.0f), 128.0f);
    int q = (int)rintf(t);
    return q < -127 ? -127 : q > 127 ? 127 : q;
}

/* The code the quantizer gives x in a unit of kind k with stored scale s,
 * inv = 1.0f / s and zero point z (the encode rules above; 0 for float
 * schemes).  FP8 needs dsq_codecs_init() (dsq_q_layout_init calls it).
 * Loops that hoist the kind out pass it as a constant, which folds the
 * switch away; dsq_q_code_of takes it from the layout. */
static inline int dsq_qk_code_of(dsq_qkind k, float x, float s, float inv, int z) {
    switch (k) {
    case DSQ_QK_INT4: return (int)dsq_q_i4_code(x, inv, z);
    case DSQ_QK_INT8: return dsq_q_i8_code(x, inv);
    case DSQ_QK_FP8: return dsq_f32_to_e4m3(x / s);
    default: return 0;
    }
}
static inline int dsq_q_code_of(const dsq_qlayout *L, float x, float s, float inv, int z) {
    return dsq_qk_code_of(L->sc->kind, x, s, inv, z);
}

/* The value code c decodes to in a unit of kind k with scale s and zero
 * point z, bit for bit as dsq_q_dequantize (0 for float schemes). */
static inline float dsq_qk_code_value(dsq_qkind k, int c, float s, int z) {
    switch (k) {
    case DSQ_QK_INT4: return (float)(c - z) * s;
    case DSQ_QK_INT8: return (float)c * s;
    case DSQ_QK_FP8: return s != s ? NAN : dsq_e4m3_lut[c & 255] * s;
    default: return 0;
    }
}
static inline float dsq_q_code_value(const dsq_qlayout *L, int c, float s, int z) {
    return dsq_qk_code_value(L->sc->kind, c, s, z);
}

/* The scale *s, zero point *z and stored scale bits *bits (may be NULL)
 * dsq_q_quantize would choose for one unit of scheme `scheme` holding the
 * values x[i * ld + k], i < nrows, k < ncols (ld >= ncols when nrows > 1):
 * absmax, or the clip-ratio search when opt->clip_steps >= 2, opt->imp then
 * weighting column k of the unit (ncols entries).  opt->fixed is ignored.
 * DSQ_E_ARG for float schemes, bad sizes or options. */
int dsq_q_choose(int scheme, const float *x, int64_t nrows, int64_t ncols, int64_t ld, const dsq_qopts *opt,
                 float *s, int *z, uint32_t *bits);

/* ---- row conversions ---------------------------------------------------- */
/* n values between f32 and 16-bit floats (little-endian bytes, any
 * alignment), using the fast kernels; identical to dtype.h element by element. */
void dsq_q_f32_to_bf16_row(const float *x, int64_t n, void *out);
void dsq_q_f32_to_f16_row(const float *x, int64_t n, void *out);
void dsq_q_bf16_to_f32_row(const void *p, int64_t n, float *out);
void dsq_q_f16_to_f32_row(const void *p, int64_t n, float *out);

#endif
