/*
 * traits.c -- the scheme table of quant.h (one const entry per dsq_qtype,
 * designated initializers as in ggml's type_traits), the storage size
 * arithmetic derived from it, and the mapping to ggml type ids.
 */
#include "quant.h"
#include "ggml_blocks.h"
#include "common.h"

#include <math.h>
#include <string.h>

#define FP8(id, nm, g, sd, bits)                                              \
    [id] = {.name = nm, .kind = DSQ_QK_FP8, .gran = g, .group = (g) == DSQ_QG_BLOCK ? 128 : 0, \
            .sym = 1, .elem = DSQ_DT_F8_E4M3, .sdt = sd,                      \
            .row_unit = (g) == DSQ_QG_BLOCK ? 128 : 1, .bpw = bits}
#define I4(id, nm, g, s, sd)                                                  \
    [id] = {.name = nm, .kind = DSQ_QK_INT4, .gran = DSQ_QG_GROUP, .group = g, .sym = s, \
            .elem = DSQ_DT_U8, .sdt = sd, .row_unit = 1,                      \
            .bpw = 4.0 + 16.0 / (g) + ((s) ? 0.0 : 4.0 / (g))}

#define GG(id, nm, g, s, bits)                                                \
    [id] = {.name = nm, .kind = DSQ_QK_GGML, .gran = DSQ_QG_GGML, .group = g, .sym = s, \
            .elem = DSQ_DT_U8, .sdt = DSQ_DT_INVALID, .row_unit = 1, .bpw = bits}

/* bpw: data bits plus scale (and zero-point) bits per weight for a large
 * matrix whose sides are multiples of the group / block. */
static const dsq_qscheme g_schemes[DSQ_Q_COUNT] = {
    [DSQ_Q_F32] = {.name = "f32", .kind = DSQ_QK_FLOAT, .gran = DSQ_QG_NONE, .sym = 1,
                   .elem = DSQ_DT_F32, .sdt = DSQ_DT_INVALID, .row_unit = 1, .bpw = 32},
    [DSQ_Q_F16] = {.name = "f16", .kind = DSQ_QK_FLOAT, .gran = DSQ_QG_NONE, .sym = 1,
                   .elem = DSQ_DT_F16, .sdt = DSQ_DT_INVALID, .row_unit = 1, .bpw = 16},
    [DSQ_Q_BF16] = {.name = "bf16", .kind = DSQ_QK_FLOAT, .gran = DSQ_QG_NONE, .sym = 1,
                    .elem = DSQ_DT_BF16, .sdt = DSQ_DT_INVALID, .row_unit = 1, .bpw = 16},
    FP8(DSQ_Q_FP8_TENSOR, "fp8-tensor", DSQ_QG_TENSOR, DSQ_DT_F32, 8.0),
    FP8(DSQ_Q_FP8_TENSOR_UE8M0, "fp8-tensor-ue8m0", DSQ_QG_TENSOR, DSQ_DT_F8_E8M0, 8.0),
    FP8(DSQ_Q_FP8_CHANNEL, "fp8-channel", DSQ_QG_CHANNEL, DSQ_DT_F32, 8.0),
    FP8(DSQ_Q_FP8_CHANNEL_UE8M0, "fp8-channel-ue8m0", DSQ_QG_CHANNEL, DSQ_DT_F8_E8M0, 8.0),
    FP8(DSQ_Q_FP8_BLOCK, "fp8-block", DSQ_QG_BLOCK, DSQ_DT_F32, 8.0 + 32.0 / 16384),
    FP8(DSQ_Q_FP8_BLOCK_UE8M0, "fp8-block-ue8m0", DSQ_QG_BLOCK, DSQ_DT_F8_E8M0, 8.0 + 8.0 / 16384),
    [DSQ_Q_INT8_CHANNEL] = {.name = "int8-channel", .kind = DSQ_QK_INT8, .gran = DSQ_QG_CHANNEL,
                            .sym = 1, .elem = DSQ_DT_I8, .sdt = DSQ_DT_F32, .row_unit = 1,
                            .bpw = 8},
    [DSQ_Q_INT8_CHANNEL_F16] = {.name = "int8-channel-f16", .kind = DSQ_QK_INT8,
                                .gran = DSQ_QG_CHANNEL, .sym = 1, .elem = DSQ_DT_I8,
                                .sdt = DSQ_DT_F16, .row_unit = 1, .bpw = 8},
    I4(DSQ_Q_INT4_G32_SYM, "int4-g32-sym", 32, 1, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G32_SYM_F16, "int4-g32-sym-f16", 32, 1, DSQ_DT_F16),
    I4(DSQ_Q_INT4_G32_ASYM, "int4-g32-asym", 32, 0, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G32_ASYM_F16, "int4-g32-asym-f16", 32, 0, DSQ_DT_F16),
    I4(DSQ_Q_INT4_G64_SYM, "int4-g64-sym", 64, 1, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G64_SYM_F16, "int4-g64-sym-f16", 64, 1, DSQ_DT_F16),
    I4(DSQ_Q_INT4_G64_ASYM, "int4-g64-asym", 64, 0, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G64_ASYM_F16, "int4-g64-asym-f16", 64, 0, DSQ_DT_F16),
    I4(DSQ_Q_INT4_G128_SYM, "int4-g128-sym", 128, 1, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G128_SYM_F16, "int4-g128-sym-f16", 128, 1, DSQ_DT_F16),
    I4(DSQ_Q_INT4_G128_ASYM, "int4-g128-asym", 128, 0, DSQ_DT_BF16),
    I4(DSQ_Q_INT4_G128_ASYM_F16, "int4-g128-asym-f16", 128, 0, DSQ_DT_F16),
    /* ggml blocks: bytes per block * 8 / columns per block (sym 0: with mins) */
    GG(DSQ_Q_GGML_Q8_0, "q8_0", 32, 1, 8.5),
    GG(DSQ_Q_GGML_Q4_0, "q4_0", 32, 1, 4.5),
    GG(DSQ_Q_GGML_Q4_1, "q4_1", 32, 0, 5.0),
    GG(DSQ_Q_GGML_Q5_0, "q5_0", 32, 1, 5.5),
    GG(DSQ_Q_GGML_Q5_1, "q5_1", 32, 0, 6.0),
    GG(DSQ_Q_GGML_Q2_K, "q2_k", 256, 0, 2.625),
    GG(DSQ_Q_GGML_Q3_K, "q3_k", 256, 1, 3.4375),
    GG(DSQ_Q_GGML_Q4_K, "q4_k", 256, 0, 4.5),
    GG(DSQ_Q_GGML_Q5_K, "q5_k", 256, 0, 5.5),
    GG(DSQ_Q_GGML_Q6_K, "q6_k", 256, 1, 6.5625),
    GG(DSQ_Q_GGML_IQ4_NL, "iq4_nl", 32, 1, 4.5),
    GG(DSQ_Q_GGML_IQ4_XS, "iq4_xs", 256, 1, 4.25),
    [DSQ_Q_INT8_CHANNEL_BF16] = {.name = "int8-channel-bf16", .kind = DSQ_QK_INT8,
                                 .gran = DSQ_QG_CHANNEL, .sym = 1, .elem = DSQ_DT_I8,
                                 .sdt = DSQ_DT_BF16, .row_unit = 1, .bpw = 8},
};
_Static_assert(DSQ_Q_GGML_IQ4_XS - DSQ_Q_GGML_Q8_0 + 1 == DSQ_GB_COUNT, "ggml schemes follow DSQ_GB_*");

const dsq_qscheme *dsq_q_scheme(int t) {
    if (t < 0 || t >= DSQ_Q_COUNT) return NULL;
    return &g_schemes[t];
}

int dsq_q_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < DSQ_Q_COUNT; t++)
        if (strcmp(g_schemes[t].name, name) == 0) return t;
    return -1;
}

int dsq_q_find(dsq_qkind kind, dsq_qgran gran, int group, int sym, dsq_dtype sdt) {
    if (kind == DSQ_QK_GGML) return -1; /* several share the parameters: use the name */
    for (int t = 0; t < DSQ_Q_COUNT; t++) {
        const dsq_qscheme *s = &g_schemes[t];
        if (s->kind != kind || s->gran != gran || s->sym != (sym != 0)) continue;
        if ((kind == DSQ_QK_FLOAT ? s->elem : s->sdt) != sdt) continue;
        if (gran == DSQ_QG_GROUP && s->group != group) continue;
        return t;
    }
    return -1;
}

int dsq_q_row_unit(int t) {
    const dsq_qscheme *s = dsq_q_scheme(t);
    return s ? s->row_unit : 0;
}

int dsq_q_ggml_type(int t) {
    switch (t) {
    case DSQ_Q_F32: return 0;
    case DSQ_Q_F16: return 1;
    case DSQ_Q_BF16: return 30;
    default: break;
    }
    const dsq_gbtype *g = dsq_gb_type(t - DSQ_Q_GGML_Q8_0);
    return g ? g->ggml_type : -1;
}

int dsq_q_from_ggml_type(int g) {
    if (g < 0) return -1;
    for (int t = 0; t < DSQ_Q_COUNT; t++)
        if (dsq_q_ggml_type(t) == g) return t;
    return -1;
}

static uint64_t sdt_size(dsq_dtype d) {
    switch (d) {
    case DSQ_DT_F32: return 4;
    case DSQ_DT_F16:
    case DSQ_DT_BF16: return 2;
    case DSQ_DT_F8_E8M0: return 1;
    default: return 0;
    }
}

int dsq_q_sizes(int t, int64_t rows, int64_t cols, dsq_qsizes *out, dsq_err *err) {
    const dsq_qscheme *s = dsq_q_scheme(t);
    memset(out, 0, sizeof *out);
    if (!s) return dsq_fail(err, DSQ_E_ARG, "quant: unknown scheme id %d", t);
    /* 2^40 per side keeps every product below 2^63 even with 4-byte elements
     * (rows * cols is checked separately). */
    const int64_t lim = (int64_t)1 << 40;
    if (rows < 0 || cols < 0 || rows > lim || cols > lim)
        return dsq_fail(err, DSQ_E_ARG, "quant %s: bad shape [%lld, %lld]", s->name,
                        (long long)rows, (long long)cols);
    uint64_t r = (uint64_t)rows, c = (uint64_t)cols, n;
    uint64_t es = s->elem == DSQ_DT_F32 ? 4 : (s->elem == DSQ_DT_F16 || s->elem == DSQ_DT_BF16) ? 2 : 1;
    if (dsq_mul_ovf(r, c, &n) || n > ((uint64_t)1 << 60))
        return dsq_fail(err, DSQ_E_ARG, "quant %s: shape [%lld, %lld] too large", s->name,
                        (long long)rows, (long long)cols);
    if (s->kind == DSQ_QK_GGML) {
        const dsq_gbtype *g = dsq_gb_type(t - DSQ_Q_GGML_Q8_0);
        if (c % (uint64_t)g->blck)
            return dsq_fail(err, DSQ_E_ARG, "quant %s: %lld columns are not a multiple of the %d-column block",
                            s->name, (long long)cols, g->blck);
        out->row_bytes = c / (uint64_t)g->blck * (uint64_t)g->bytes;
        out->data = out->row_bytes * r;
        return DSQ_OK;
    }
    out->row_bytes = s->kind == DSQ_QK_INT4 ? (c + 1) / 2 : c * es;
    out->data = out->row_bytes * r;
    uint64_t ss = sdt_size(s->sdt), g = (uint64_t)s->group;
    switch (s->gran) {
    case DSQ_QG_NONE: break;
    case DSQ_QG_TENSOR: out->scale_rows = out->scale_cols = 1; break;
    case DSQ_QG_CHANNEL: out->scale_rows = rows; out->scale_cols = 1; break;
    case DSQ_QG_BLOCK:
        out->scale_rows = (int64_t)((r + g - 1) / g);
        out->scale_cols = (int64_t)((c + g - 1) / g);
        break;
    case DSQ_QG_GROUP:
        out->scale_rows = rows;
        out->scale_cols = (int64_t)((c + g - 1) / g);
        if (!s->sym) out->zero = r * (((uint64_t)out->scale_cols + 1) / 2);
        break;
    case DSQ_QG_GGML: break; /* handled above */
    }
    out->scale = (uint64_t)out->scale_rows * (uint64_t)out->scale_cols * ss;
    return DSQ_OK;
}

double dsq_q_bpw(int t, int64_t rows, int64_t cols) {
    dsq_qsizes z;
    if (dsq_q_sizes(t, rows, cols, &z, NULL) != DSQ_OK || rows == 0 || cols == 0) return 0;
    return 8.0 * (double)(z.data + z.scale + z.zero) / ((double)rows * (double)cols);
}

/* ---- exact twins ---------------------------------------------------------- */

int dsq_q_ggml_twin(int t) {
    const dsq_qscheme *q = dsq_q_scheme(t);
    if (!q) return -1;
    if (q->kind == DSQ_QK_GGML) return t;
    if (t == DSQ_Q_INT4_G32_SYM || t == DSQ_Q_INT4_G32_SYM_F16) return DSQ_Q_GGML_Q4_0;
    return -1;
}

/* int4-g32-sym{,-f16} -> Q4_0: x = (u - 8) * s is Q4_0's d * (q - 8) with
 * q = u and d = s, when s is an f16 (always for -f16; a bf16 scale when it
 * converts to f16 and back unchanged).  ggml's dequantize_row_q4_0
 * computes (q - 8) * d in f32 exactly as dsq's decode does, so every value
 * is the same float. */
/* Same codes, another scale dtype: int4 groups BF16 <-> F16, int8 channels
 * F32 / F16 / BF16, FP8 F32 <-> UE8M0. */
static int same_codes(int a, int b) {
    const dsq_qscheme *x = dsq_q_scheme(a), *y = dsq_q_scheme(b);
    return x && y && a != b && x->kind == y->kind && x->gran == y->gran && x->group == y->group && x->sym == y->sym &&
           (x->kind == DSQ_QK_INT4 || x->kind == DSQ_QK_INT8 || x->kind == DSQ_QK_FP8);
}

int dsq_q_transcodable(int src, int dst) {
    return (dsq_q_ggml_twin(src) == dst && dst >= 0) || same_codes(src, dst);
}

static float scale_get(dsq_dtype dt, const uint8_t *p, int64_t k) {
    switch (dt) {
    case DSQ_DT_F32: return dsq_lef32(p + 4 * k);
    case DSQ_DT_F16: return dsq_f16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
    case DSQ_DT_BF16: return dsq_bf16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
    default: return p[k] == 0xFF ? NAN : dsq_ue8m0_to_f32(p[k]);
    }
}

/* v stored exactly in dt at p[k], or 0 when dt has no such value. */
static int scale_put(dsq_dtype dt, uint8_t *p, int64_t k, float v) {
    uint16_t h;
    switch (dt) {
    case DSQ_DT_F32: memcpy(p + 4 * k, &v, 4); return 1;
    case DSQ_DT_F16: h = dsq_f32_to_f16(v); if (dsq_f16_to_f32(h) != v) return 0; break;
    case DSQ_DT_BF16: h = dsq_f32_to_bf16(v); if (dsq_bf16_to_f32(h) != v) return 0; break;
    default: {
        uint8_t e = dsq_f32_to_ue8m0(v);
        if (e == 0xFF || dsq_ue8m0_to_f32(e) != v) return 0;
        p[k] = e;
        return 1;
    }
    }
    p[2 * k] = (uint8_t)h;
    p[2 * k + 1] = (uint8_t)(h >> 8);
    return 1;
}

static int transcode_scales(const dsq_qmat *src, const dsq_qmat *dst, dsq_err *err) {
    dsq_qsizes zs, zd;
    int rc = dsq_q_sizes(src->type, src->rows, src->cols, &zs, err);
    if (rc || (rc = dsq_q_sizes(dst->type, dst->rows, dst->cols, &zd, err))) return rc;
    const dsq_qscheme *qs = dsq_q_scheme(src->type), *qd = dsq_q_scheme(dst->type);
    int64_t n = (int64_t)(zs.scale_rows * zs.scale_cols);
    for (int64_t k = 0; k < n; k++) {
        float v = scale_get(qs->sdt, src->scale, k);
        if (!isfinite(v))
            return dsq_fail(err, DSQ_E_FORMAT, "transcode: scale %lld is not finite", (long long)k);
        if (!scale_put(qd->sdt, dst->scale, k, v))
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "transcode: scale %lld (%g) has no %s form", (long long)k, (double)v,
                            dsq_dtype_name(qd->sdt));
    }
    memcpy(dst->data, src->data, zs.data);
    if (zs.zero) memcpy(dst->zero, src->zero, zs.zero);
    return DSQ_OK;
}

int dsq_q_transcode(const dsq_qmat *src, const dsq_qmat *dst, dsq_err *err) {
    if (same_codes(src->type, dst->type) && src->rows == dst->rows && src->cols == dst->cols)
        return transcode_scales(src, dst, err);
    if (dsq_q_ggml_twin(src->type) != dst->type || src->rows != dst->rows || src->cols != dst->cols)
        return dsq_fail(err, DSQ_E_ARG, "transcode: %s is not an exact twin of %s", dsq_q_scheme(dst->type)->name,
                        dsq_q_scheme(src->type)->name);
    dsq_qsizes z;
    int rc = dsq_q_sizes(src->type, src->rows, src->cols, &z, err);
    if (rc) return rc;
    if (src->type == dst->type) {
        memcpy(dst->data, src->data, z.data);
        if (z.scale) memcpy(dst->scale, src->scale, z.scale);
        if (z.zero) memcpy(dst->zero, src->zero, z.zero);
        return DSQ_OK;
    }
    if (src->cols % 32)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "transcode: rows of %lld columns do not split into q4_0 blocks",
                        (long long)src->cols);
    int bf = src->type == DSQ_Q_INT4_G32_SYM;
    int64_t ng = src->cols / 32;
    const uint8_t *d = src->data, *sc = src->scale;
    uint8_t *o = dst->data;
    for (int64_t r = 0; r < src->rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *sp = sc + 2 * (r * ng + g);
            uint16_t h = (uint16_t)(sp[0] | sp[1] << 8);
            float f = bf ? dsq_bf16_to_f32(h) : dsq_f16_to_f32(h);
            if (!isfinite(f))
                return dsq_fail(err, DSQ_E_FORMAT, "transcode: row %lld group %lld: scale %g is not finite", (long long)r,
                                (long long)g, (double)f);
            if (bf) {
                uint16_t hf = dsq_f32_to_f16(f);
                if (dsq_f16_to_f32(hf) != f)
                    return dsq_fail(err, DSQ_E_UNSUPPORTED, "transcode: row %lld group %lld: bf16 scale %g is not an f16",
                                    (long long)r, (long long)g, (double)f);
                h = hf;
            }
            uint8_t *blk = o + 18 * (r * ng + g);
            blk[0] = (uint8_t)h;
            blk[1] = (uint8_t)(h >> 8);
            const uint8_t *row = d + r * z.row_bytes + 16 * g; /* 32 nibbles of the group */
            for (int j = 0; j < 16; j++) {
                uint8_t lo = (uint8_t)((j & 1 ? row[j / 2] >> 4 : row[j / 2]) & 15);            /* element j      */
                uint8_t hi = (uint8_t)((j & 1 ? row[8 + j / 2] >> 4 : row[8 + j / 2]) & 15);    /* element j + 16 */
                blk[2 + j] = (uint8_t)(lo | hi << 4);
            }
        }
    return DSQ_OK;
}

/* ---- non-finite values ---------------------------------------------------- */

/* Is element i of float dtype dt at p non-finite (exponent all ones)? */
static inline int bad_at(dsq_dtype dt, const uint8_t *p, uint64_t i) {
    switch (dt) {
    case DSQ_DT_F32: return (p[4 * i + 3] & 0x7F) == 0x7F && (p[4 * i + 2] & 0x80);
    case DSQ_DT_F16: return (p[2 * i + 1] & 0x7C) == 0x7C;
    case DSQ_DT_BF16: return (p[2 * i + 1] & 0x7F) == 0x7F && (p[2 * i] & 0x80);
    case DSQ_DT_F8_E4M3: return (p[i] & 0x7F) == 0x7F;
    case DSQ_DT_F8_E8M0: return p[i] == 0xFF;
    default: return 0;
    }
}

/* Index of the first non-finite element of n values of float dtype dt at p,
 * or -1.  Chunks are tested without an early exit (the loops vectorise:
 * this runs on every tensor convert copies), then searched when one hits. */
static int64_t bad_float(dsq_dtype dt, const uint8_t *p, uint64_t n) {
    for (uint64_t c0 = 0; c0 < n; c0 += 4096) {
        uint64_t c1 = c0 + 4096 < n ? c0 + 4096 : n;
        unsigned any = 0;
        switch (dt) {
        case DSQ_DT_F8_E4M3: {
            /* eight codes a word: a byte whose low seven bits are all ones
             * carries into its top bit when 1 is added (no byte overflows) */
            uint64_t acc = 0, i = c0;
            for (; i + 8 <= c1; i += 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                acc |= ((w & 0x7F7F7F7F7F7F7F7Full) + 0x0101010101010101ull) & 0x8080808080808080ull;
            }
            for (; i < c1; i++) acc |= (uint64_t)(((p[i] & 0x7F) + 1) & 0x80);
            any = acc != 0;
            break;
        }
        case DSQ_DT_BF16:
            for (uint64_t i = c0; i < c1; i++) any |= (unsigned)((((p[2 * i + 1] & 0x7F) << 1 | p[2 * i] >> 7) + 1) & 0x100);
            break;
        case DSQ_DT_F16:
            for (uint64_t i = c0; i < c1; i++) any |= (unsigned)(((p[2 * i + 1] & 0x7C) + 4) & 0x80);
            break;
        case DSQ_DT_F32:
            for (uint64_t i = c0; i < c1; i++) any |= (unsigned)((((p[4 * i + 3] & 0x7F) << 1 | p[4 * i + 2] >> 7) + 1) & 0x100);
            break;
        default:
            for (uint64_t i = c0; i < c1; i++) any |= (unsigned)bad_at(dt, p, i);
        }
        if (any)
            for (uint64_t i = c0; i < c1; i++)
                if (bad_at(dt, p, i)) return (int64_t)i;
    }
    return -1;
}

int dsq_q_find_nonfinite(const dsq_qmat *m, int64_t *row, int64_t *col, dsq_err *err) {
    const dsq_qscheme *q = dsq_q_scheme(m->type);
    if (!q) return dsq_fail(err, DSQ_E_ARG, "scheme %d", m->type);
    *row = *col = -1;
    dsq_qsizes z;
    int rc = dsq_q_sizes(m->type, m->rows, m->cols, &z, err);
    if (rc) return rc;
    if (q->kind == DSQ_QK_FLOAT || q->kind == DSQ_QK_FP8) {
        /* the codes themselves, then (FP8) the scales: bit tests, no decode */
        int64_t k = bad_float(q->elem, m->data, (uint64_t)(m->rows * m->cols));
        if (k >= 0) {
            *row = k / m->cols;
            *col = k % m->cols;
            return 1;
        }
        if (q->kind == DSQ_QK_FLOAT) return 0;
        uint64_t es = q->sdt == DSQ_DT_F32 ? 4 : q->sdt == DSQ_DT_F8_E8M0 ? 1 : 2;
        if (m->scale && bad_float(q->sdt, m->scale, z.scale / es) >= 0) return 1; /* a scale: row, col -1 */
        return 0;
    }
    /* integer groups and ggml blocks: decode, a band of rows at a time (a
     * NaN or infinite scale makes its elements so) */
    int64_t band = m->cols > 0 ? (int64_t)(65536 / (uint64_t)m->cols) : 1;
    if (band < 1) band = 1;
    int64_t ru = q->row_unit > 1 ? q->row_unit : 1;
    band = (band + ru - 1) / ru * ru;
    float *buf = dsq_malloc(sizeof *buf * (size_t)(band * m->cols));
    if (!buf) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int64_t r0 = 0; r0 < m->rows; r0 += band) {
        int64_t r1 = r0 + band < m->rows ? r0 + band : m->rows;
        if ((rc = dsq_q_dequantize(m, r0, r1, buf, err))) break;
        for (int64_t i = 0; i < (r1 - r0) * m->cols; i++)
            if (!isfinite(buf[i])) {
                *row = r0 + i / m->cols;
                *col = i % m->cols;
                free(buf);
                return 1;
            }
    }
    free(buf);
    return rc;
}
