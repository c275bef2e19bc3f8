/*
 * quant.c -- the quantize / dequantize drivers of quant.h: argument checks,
 * walking a matrix unit by unit (group, row, 128x128 block, whole tensor,
 * or a row of ggml blocks, which ggml_quant.c quantizes),
 * range measurement, scale and zero-point choice, the optional clip-ratio
 * search (also offered one unit at a time as dsq_q_choose), and the layout
 * validation behind dsq_q_layout_init; scales, zero points and single codes
 * are read and written with quant.h's storage accessors.  The element loops
 * are kernels from quant_int.h, so the same driver runs the reference and
 * the AVX2 path; all choices made here are scalar and shared, which is why
 * the two paths cannot disagree on a scale.
 *
 * Scratch lives on the stack (SCR floats per call), never on the heap: a
 * unit that fits (any group, any 128x128 block, rows up to SCR columns) is
 * loaded once and kept; a longer row or a whole tensor is streamed in chunks
 * for every pass (range, search, encode).
 */
#include "quant.h"
#include "quant_int.h"
#include "ggml_blocks.h"
#include "dtype.h"
#include "common.h"
#include "pool.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define SCR 16384     /* scratch floats: one 128x128 block, 64 KiB of stack */
#define MAX_JOBS 64   /* row ranges per dsq_q_quantize_pool call           */

/* Parameters of one unit: stored scale s (and its stored code), 1/s, zero
 * point z (8 for symmetric INT4, 0 where unused). */
typedef struct qparam {
    float s, inv;
    int z;
    uint32_t code;
} qparam;

typedef struct qctx {
    const dsq_qkern *k;
    dsq_qlayout src, dst;
    const float *imp; /* [cols] or NULL */
    int nclip;        /* ratios tried; < 2 means plain absmax */
    int fixed;        /* parameters preset in dst (dsq_qopts.fixed) */
    float clip_min;
    float *scr;       /* SCR floats, owned by the caller's stack frame */
} qctx;

/* ---- scale choice --------------------------------------------------------- */

/* Smallest value of dtype sdt that is >= r (r > 0), saturating at the
 * largest finite one; *code receives its stored bits. */
static float round_up_store(dsq_dtype sdt, float r, uint32_t *code) {
    uint16_t h;
    switch (sdt) {
    case DSQ_DT_BF16:
        h = dsq_f32_to_bf16(r);
        if (dsq_bf16_to_f32(h) < r) h++;
        if (h >= 0x7F80) h = 0x7F7F;
        *code = h;
        return dsq_bf16_to_f32(h);
    case DSQ_DT_F16:
        h = dsq_f32_to_f16(r);
        if (dsq_f16_to_f32(h) < r) h++;
        if (h >= 0x7C00) h = 0x7BFF;
        *code = h;
        return dsq_f16_to_f32(h);
    case DSQ_DT_F8_E8M0: {
        float s = dsq_pow2_ceil(r);
        *code = dsq_f32_to_ue8m0(s);
        return s;
    }
    default:
        memcpy(code, &r, 4);
        return r;
    }
}

static uint32_t one_code(dsq_dtype sdt) {
    switch (sdt) {
    case DSQ_DT_BF16: return 0x3F80;
    case DSQ_DT_F16: return 0x3C00;
    case DSQ_DT_F8_E8M0: return 127;
    default: return 0x3F800000u;
    }
}

/* Scale and zero point of a unit whose (clipped) range is [lo, hi], lo <= 0
 * <= hi; symmetric schemes use hi = amax only.  The formulas are the ones
 * documented in quant.h. */
static inline qparam make_params(const dsq_qscheme *d, float lo, float hi) {
    qparam p;
    int asym = !d->sym;
    float range = asym ? hi - lo : hi;
    float qmax = d->kind == DSQ_QK_FP8 ? 448.0f
               : d->kind == DSQ_QK_INT8 ? 127.0f
               : asym ? 15.0f : 7.5f;
    p.z = d->kind == DSQ_QK_INT4 && d->sym ? 8 : 0;
    if (!(range > 0)) {
        p.s = 1.0f;
        p.code = one_code(d->sdt);
    } else {
        float r = range / qmax;
        if (!(r >= FLT_MIN)) r = FLT_MIN;
        p.s = round_up_store(d->sdt, r, &p.code);
        if (asym) {
            float z = rintf(-lo / p.s);
            p.z = z < 0 ? 0 : z > 15 ? 15 : (int)z;
        }
    }
    p.inv = 1.0f / p.s;
    return p;
}

/* ---- loading source rows -------------------------------------------------- */

/* n E4M3 codes times s.  A NaN scale gives the positive quiet NaN for
 * every element: a NaN code times a NaN scale would otherwise keep the sign
 * of whichever operand the compiler put first. */
static void e4m3_seg(const dsq_qkern *k, const uint8_t *q, int64_t n, float s, float *out) {
    if (s != s) {
        for (int64_t i = 0; i < n; i++) out[i] = NAN;
        return;
    }
    k->e4m3_dq(q, n, s, out);
}

/* The ggml block kernels that go with kernel set k: the reference ones for
 * the reference set, else the best this CPU has. */
static const dsq_gbkern *gb_kern(const dsq_qkern *k) {
    return k == &dsq_qkern_ref ? &dsq_gbkern_ref : dsq_gbkern_best();
}

/* Columns [c0, c1) of a row of ggml blocks: whole blocks straight into out,
 * the partial ones at either end through a block of scratch. */
static void ggml_seg(const dsq_qkern *k, const dsq_qlayout *q, const uint8_t *row, int64_t c0, int64_t c1, float *out) {
    const int ti = q->m->type - DSQ_Q_GGML_Q8_0;
    const dsq_gbtype *g = dsq_gb_type(ti);
    const dsq_gb_dequant_fn dq = gb_kern(k)->dq[ti];
    const int64_t B = g->blck;
    int64_t f0 = (c0 + B - 1) / B * B, f1 = c1 / B * B; /* whole blocks [f0, f1) */
    float tmp[DSQ_GB_QKK];
    if (f0 > f1) { /* inside one block */
        dq(row + c0 / B * g->bytes, tmp, B);
        memcpy(out, tmp + c0 % B, (size_t)(c1 - c0) * 4);
        return;
    }
    if (c0 < f0) {
        dq(row + c0 / B * g->bytes, tmp, B);
        memcpy(out, tmp + c0 % B, (size_t)(f0 - c0) * 4);
    }
    if (f1 > f0) dq(row + f0 / B * g->bytes, out + (f0 - c0), f1 - f0);
    if (c1 > f1) {
        dq(row + f1 / B * g->bytes, tmp, B);
        memcpy(out + (f1 - c0), tmp, (size_t)(c1 - f1) * 4);
    }
}

/* Row r, columns [c0, c1) of the source, dequantized to f32. */
static void load_seg(const dsq_qkern *k, const dsq_qlayout *q, int64_t r, int64_t c0, int64_t c1,
                     float *out) {
    const dsq_qscheme *sc = q->sc;
    const uint8_t *row = (const uint8_t *)q->m->data + (uint64_t)r * q->sz.row_bytes;
    int64_t n = c1 - c0;
    if (n <= 0) return;
    switch (sc->kind) {
    case DSQ_QK_FLOAT:
        if (sc->elem == DSQ_DT_F32) memcpy(out, row + 4 * c0, (size_t)n * 4);
        else if (sc->elem == DSQ_DT_F16) k->f16_dq(row + 2 * c0, n, out);
        else k->bf16_dq(row + 2 * c0, n, out);
        return;
    case DSQ_QK_FP8:
        if (sc->gran == DSQ_QG_BLOCK) {
            const int64_t B = sc->group, sbase = (r / B) * q->sz.scale_cols;
            for (int64_t j = c0; j < c1;) {
                int64_t jb = j / B, je = (jb + 1) * B < c1 ? (jb + 1) * B : c1;
                e4m3_seg(k, row + j, je - j, dsq_q_scale_get(q, sbase + jb), out + (j - c0));
                j = je;
            }
        } else {
            e4m3_seg(k, row + c0, n, dsq_q_scale_get(q, sc->gran == DSQ_QG_TENSOR ? 0 : r), out);
        }
        return;
    case DSQ_QK_INT8:
        k->i8_dq(row + c0, n, dsq_q_scale_get(q, r), out);
        return;
    case DSQ_QK_INT4: {
        const int64_t G = sc->group;
        for (int64_t j = c0; j < c1;) {
            int64_t g = j / G, je = (g + 1) * G < c1 ? (g + 1) * G : c1;
            float s = dsq_q_scale_get(q, r * q->sz.scale_cols + g);
            int z = dsq_q_zero_get(q, r, g);
            if (j & 1) { /* odd start: one high nibble, then byte-aligned */
                out[j - c0] = dsq_q_code_value(q, dsq_q_code_get(q, r, j), s, z);
                j++;
            }
            if (je > j) k->i4_dq(row + j / 2, je - j, s, z, out + (j - c0));
            j = je;
        }
        return;
    }
    case DSQ_QK_GGML:
        ggml_seg(k, q, row, c0, c1, out);
        return;
    }
}

/* ---- units ---------------------------------------------------------------- */

/* A rectangle of the matrix: rows [r0, r1), columns [c0, c1).  `res` is its
 * f32 copy (row stride c1 - c0) when it fits in scratch, else NULL and every
 * pass streams it through scratch again. */
typedef struct unit {
    int64_t r0, r1, c0, c1;
    const float *res;
} unit;

/* Runs the statement (last argument) on every row chunk of u, at most SCR
 * columns each, with X the chunk's f32 values, R its row, C its first column
 * and W its width. */
#define FOR_CHUNKS(c, u, X, R, C, W, ...)                                     \
    do {                                                                      \
        if ((u)->res) {                                                       \
            for (int64_t R = (u)->r0; R < (u)->r1; R++) {                     \
                int64_t C = (u)->c0, W = (u)->c1 - (u)->c0;                   \
                const float *X = (u)->res + (R - (u)->r0) * W;                \
                __VA_ARGS__                                                   \
            }                                                                 \
        } else {                                                              \
            for (int64_t R = (u)->r0; R < (u)->r1; R++)                       \
                for (int64_t C = (u)->c0; C < (u)->c1; C += SCR) {            \
                    int64_t W = (u)->c1 - C < SCR ? (u)->c1 - C : SCR;        \
                    load_seg((c)->k, &(c)->src, R, C, C + W, (c)->scr);       \
                    const float *X = (c)->scr;                                \
                    __VA_ARGS__                                               \
                }                                                             \
        }                                                                     \
    } while (0)

/* Range of a unit: [0, amax] for symmetric schemes, [min(0,min), max(0,max)]
 * otherwise.  max/min are order-independent, so chunking cannot change it. */
static void unit_range(qctx *c, const unit *u, float *lo, float *hi) {
    float l = 0, h = 0;
    int sym = c->dst.sc->sym;
    if (u->res) {
        int64_t n = (u->r1 - u->r0) * (u->c1 - u->c0);
        if (sym) h = c->k->absmax(u->res, n);
        else c->k->minmax(u->res, n, &l, &h);
    } else {
        FOR_CHUNKS(c, u, x, r, col, w, {
            (void)r; (void)col;
            if (sym) {
                h = dsq_q_maxps(h, c->k->absmax(x, w));
            } else {
                float a, b;
                c->k->minmax(x, w, &a, &b);
                l = dsq_q_minps(l, a);
                h = dsq_q_maxps(h, b);
            }
        });
    }
    *lo = l;
    *hi = h;
}

/* Running weighted squared errors e[i] of one row chunk for the nc <= ERR_NC
 * candidates p[i] (scalar for both paths: it decides scales, so it must not
 * depend on the kernel set).  Each e[i] is still summed in value order; the
 * candidates only interleave, as independent chains, for speed. */
#define ERR_NC 8
static inline void err_acc_k(dsq_qkind kind, double *e, const qparam *p, int nc, const float *x, int64_t w,
                             const float *imp) {
    for (int64_t j = 0; j < w; j++) {
        float v = x[j];
        if (!(fabsf(v) < INFINITY)) continue;
        double wj = imp ? (double)imp[j] : 1.0;
        for (int i = 0; i < nc; i++) {
            float y = dsq_qk_code_value(kind, dsq_qk_code_of(kind, v, p[i].s, p[i].inv, p[i].z), p[i].s, p[i].z);
            double t = (double)v - (double)y;
            e[i] += wj * t * t;
        }
    }
}

/* err_acc_k with the kind as a constant in each loop. */
static void err_acc(const dsq_qscheme *d, double *e, const qparam *p, int nc, const float *x, int64_t w,
                    const float *imp) {
    switch (d->kind) {
    case DSQ_QK_FP8: err_acc_k(DSQ_QK_FP8, e, p, nc, x, w, imp); break;
    case DSQ_QK_INT8: err_acc_k(DSQ_QK_INT8, e, p, nc, x, w, imp); break;
    default: err_acc_k(DSQ_QK_INT4, e, p, nc, x, w, imp); break;
    }
}

/* Absmax parameters, or the best clip ratio when a search was asked for. */
static qparam unit_choose(qctx *c, const unit *u, float lo, float hi) {
    const dsq_qscheme *d = c->dst.sc;
    qparam cand[DSQ_Q_MAX_CLIP];
    double e[DSQ_Q_MAX_CLIP];
    int nc = 0;
    cand[nc++] = make_params(d, lo, hi);
    if (c->nclip < 2 || !(hi - lo > 0)) return cand[0];
    for (int k = 1; k < c->nclip; k++) {
        float rho = 1.0f - (1.0f - c->clip_min) * (float)k / (float)(c->nclip - 1);
        qparam p = make_params(d, lo * rho, hi * rho);
        /* equal stored parameters give equal errors: score each once */
        if (p.code == cand[nc - 1].code && p.z == cand[nc - 1].z) continue;
        cand[nc++] = p;
    }
    if (nc == 1) return cand[0];
    for (int i = 0; i < nc; i++) e[i] = 0;
    FOR_CHUNKS(c, u, x, r, col, w, {
        (void)r;
        const float *im = c->imp ? c->imp + col : NULL;
        for (int i = 0; i < nc; i += ERR_NC) err_acc(d, e + i, cand + i, nc - i < ERR_NC ? nc - i : ERR_NC, x, w, im);
    });
    int best = 0;
    for (int i = 1; i < nc; i++)
        if (e[i] < e[best]) best = i;
    return cand[best];
}

/* Encode w values of row r starting at column col into the destination. */
static void encode_seg(const qctx *c, int64_t r, int64_t col, const float *x, int64_t w,
                       const qparam *p) {
    const dsq_qlayout *q = &c->dst;
    uint8_t *row = (uint8_t *)q->m->data + (uint64_t)r * q->sz.row_bytes;
    switch (q->sc->kind) {
    case DSQ_QK_FLOAT:
        if (q->sc->elem == DSQ_DT_F32) memcpy(row + 4 * col, x, (size_t)w * 4);
        else if (q->sc->elem == DSQ_DT_F16) c->k->f16_enc(x, w, row + 2 * col);
        else c->k->bf16_enc(x, w, row + 2 * col);
        break;
    case DSQ_QK_FP8:
        c->k->e4m3_enc(x, w, p->s, row + col);
        c->k->e4m3_ties(x, w, p->s, row + col); /* exact ties balanced along the segment */
        break;
    case DSQ_QK_INT8: c->k->i8_enc(x, w, p->inv, row + col); break;
    case DSQ_QK_INT4: c->k->i4_enc(x, w, p->inv, p->z, row + col / 2); break; /* col is even */
    case DSQ_QK_GGML: break; /* ggml_rows encodes whole rows */
    }
}

static void unit_encode(qctx *c, const unit *u, const qparam *p) {
    FOR_CHUNKS(c, u, x, r, col, w, { encode_seg(c, r, col, x, w, p); });
}

/* Range, choice, scale store and encoding of one unit. */
static void unit_quant(qctx *c, const unit *u, int64_t sidx) {
    float lo, hi;
    unit_range(c, u, &lo, &hi);
    qparam p = unit_choose(c, u, lo, hi);
    dsq_q_scale_store(&c->dst, sidx, p.code);
    unit_encode(c, u, &p);
}

/* Load rows [r0, r1) x cols [c0, c1) of the source into scratch. */
static const float *load_rect(qctx *c, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    for (int64_t r = r0; r < r1; r++) load_seg(c->k, &c->src, r, c0, c1, c->scr + (r - r0) * (c1 - c0));
    return c->scr;
}

/* Parameters of a *-tensor destination from its stored scale. */
static qparam tensor_params(const qctx *c) {
    qparam p;
    p.s = dsq_q_scale_get(&c->dst, 0);
    p.inv = 1.0f / p.s;
    p.z = 0;
    p.code = 0;
    return p;
}

/* Scale of source block (row r, column j) when the E4M3 kernels may use it:
 * 0 < s < 2^119 keeps every e4m3(q) * s finite (and the F16C decode exact),
 * so ranges follow from byte keys.  0 otherwise (NaN, inf, zero, negative
 * or huge scales take the f32 route). */
static float e4m3_src_scale(const qctx *c, int64_t r, int64_t j) {
    const dsq_qlayout *q = &c->src;
    const int64_t B = q->sc->group;
    float s = dsq_q_scale_get(q, (r / B) * q->sz.scale_cols + j / B);
    return s > 0 && s < 0x1p119f ? s : 0;
}

/* |e4m3 value| * s of the largest key, 0 for key 0 (no finite element). */
static float key_value(unsigned key, float s) { return key ? dsq_e4m3_lut[key - 1] * s : 0.0f; }

/* FP8 block source to FP8 block destination, rows [b, be) x cols [w0, w1)
 * of one band, with the E4M3 kernels: in a block every element is e4m3(q) *
 * s, so its amax is the value of the largest byte key, and its new code is
 * a function of the source byte.  Pass 1 takes the keys row by row (the
 * source streams in order), then each block gets a 128-entry table built
 * with the ordinary decode and encode kernels, applied to the block's bytes
 * (still in cache).  Same bytes as the f32 route.  Returns 0, having written
 * nothing, when a source scale is unusable. */
static int block_window_e4m3(qctx *c, int64_t b, int64_t be, int64_t w0, int64_t w1) {
    const dsq_qkern *k = c->k;
    const dsq_qscheme *d = c->dst.sc;
    const int64_t B = d->group, cols = c->dst.m->cols, nb = (w1 - w0 + B - 1) / B;
    float ss[SCR / 128], x[128];
    uint8_t t[128], code[128];
    for (int64_t kb = 0; kb < nb; kb++)
        if (!(ss[kb] = e4m3_src_scale(c, b, w0 + kb * B))) return 0;
    const uint8_t *src = (const uint8_t *)c->src.m->data;
    uint8_t *dst = (uint8_t *)c->dst.m->data, *acc = (uint8_t *)c->scr; /* w1 - w0 <= SCR bytes */
    memset(acc, 0, (size_t)(w1 - w0));
    for (int64_t r = b; r < be; r++) k->e4m3_keymax(src + (uint64_t)r * (uint64_t)cols + w0, w1 - w0, acc);
    for (int i = 0; i < 128; i++) code[i] = (uint8_t)i;
    qparam p[SCR / 128];
    for (int64_t kb = 0; kb < nb; kb++) {
        int64_t j = kb * B, je = j + B < w1 - w0 ? j + B : w1 - w0;
        unsigned key = 0;
        for (int64_t i = j; i < je; i++) key = acc[i] > key ? acc[i] : key;
        p[kb] = make_params(d, 0, key_value(key, ss[kb]));
        /* a table cannot balance exact ties (the e4m3_ties kernel): such
         * a block takes the f32 route */
        if (!dsq_q_scale_pow2(p[kb].s)) continue;
        k->e4m3_dq(code, 128, ss[kb], x);
        for (int i = 0; i < 127; i++)
            if (dsq_e4m3_is_tie(x[i] / p[kb].s)) return 0;
    }
    for (int64_t kb = 0; kb < nb; kb++) {
        int64_t j = kb * B, je = j + B < w1 - w0 ? j + B : w1 - w0;
        dsq_q_scale_store(&c->dst, (b / B) * c->dst.sz.scale_cols + w0 / B + kb, p[kb].code);
        k->e4m3_dq(code, 128, ss[kb], x);
        k->e4m3_enc(x, 128, p[kb].s, t);
        uint64_t off = (uint64_t)b * (uint64_t)cols + (uint64_t)(w0 + j);
        k->e4m3_remap(src + off, cols, be - b, je - j, t, dst + off, cols);
    }
    return 1;
}

/* Block scales without a search, walking each 128-row band row by row so the
 * source streams in order: pass 1 takes every block's amax, pass 2 encodes
 * (the band's source bytes are still in cache).  Columns go in windows of
 * at most SCR so a row piece fits in scratch.  Same bytes as unit_quant. */
static void block_rows_absmax(qctx *c, int64_t r0, int64_t r1) {
    const dsq_qscheme *d = c->dst.sc;
    const int64_t B = d->group, cols = c->dst.m->cols, rows = c->dst.m->rows;
    const int e4 = c->k->e4m3_remap && c->src.sc->kind == DSQ_QK_FP8 && c->src.sc->gran == DSQ_QG_BLOCK &&
                   d->kind == DSQ_QK_FP8;
    float amax[SCR / 128];
    qparam p[SCR / 128];
    for (int64_t b = r0; b < r1; b += B) {
        int64_t be = b + B < rows ? b + B : rows;
        for (int64_t w0 = 0; w0 < cols; w0 += SCR) {
            int64_t w1 = w0 + SCR < cols ? w0 + SCR : cols, nb = (w1 - w0 + B - 1) / B;
            if (e4 && block_window_e4m3(c, b, be, w0, w1)) continue;
            for (int64_t k = 0; k < nb; k++) amax[k] = 0;
            for (int64_t r = b; r < be; r++) {
                load_seg(c->k, &c->src, r, w0, w1, c->scr);
                for (int64_t k = 0; k < nb; k++) {
                    int64_t j = k * B, je = j + B < w1 - w0 ? j + B : w1 - w0;
                    amax[k] = dsq_q_maxps(amax[k], c->k->absmax(c->scr + j, je - j));
                }
            }
            for (int64_t k = 0; k < nb; k++) {
                p[k] = make_params(d, 0, amax[k]);
                dsq_q_scale_store(&c->dst, (b / B) * c->dst.sz.scale_cols + w0 / B + k, p[k].code);
            }
            for (int64_t r = b; r < be; r++) {
                load_seg(c->k, &c->src, r, w0, w1, c->scr);
                for (int64_t k = 0; k < nb; k++) {
                    int64_t j = k * B, je = j + B < w1 - w0 ? j + B : w1 - w0;
                    encode_seg(c, r, w0 + j, c->scr + j, je - j, &p[k]);
                }
            }
        }
    }
}

/* INT4 groups of row r, columns [cc, ce) (cc a multiple of the group, ce -
 * cc <= SCR), through f32. */
static void group_chunk(qctx *c, int64_t r, int64_t cc, int64_t ce) {
    const dsq_qscheme *d = c->dst.sc;
    const int64_t G = d->group;
    float lo[SCR / 32], hi[SCR / 32];
    qparam par[SCR / 32];
    const float *x = load_rect(c, r, r + 1, cc, ce);
    uint8_t *out = (uint8_t *)c->dst.m->data + (uint64_t)r * c->dst.sz.row_bytes;
    /* three sweeps over the chunk's groups (ranges, parameters, codes) so
     * the divisions of neighbouring groups overlap instead of forming one
     * long dependency chain */
    int64_t g0 = cc / G, ng = (ce - cc + G - 1) / G;
    for (int64_t k = 0; k < ng; k++) {
        int64_t j = cc + k * G, je = j + G < ce ? j + G : ce;
        lo[k] = 0;
        if (d->sym) hi[k] = c->k->absmax(x + (j - cc), je - j);
        else c->k->minmax(x + (j - cc), je - j, &lo[k], &hi[k]);
    }
    for (int64_t k = 0; k < ng; k++) {
        int64_t j = cc + k * G, je = j + G < ce ? j + G : ce;
        if (c->nclip < 2) {
            par[k] = make_params(d, lo[k], hi[k]);
        } else {
            unit u = {r, r + 1, j, je, x + (j - cc)};
            par[k] = unit_choose(c, &u, lo[k], hi[k]);
        }
        dsq_q_scale_store(&c->dst, r * c->dst.sz.scale_cols + g0 + k, par[k].code);
        if (!d->sym) dsq_q_zero_put(&c->dst, r, g0 + k, par[k].z);
    }
    for (int64_t k = 0; k < ng; k++) {
        int64_t j = cc + k * G, je = j + G < ce ? j + G : ce;
        c->k->i4_enc(x + (j - cc), je - j, par[k].inv, par[k].z, out + j / 2);
    }
}

/* Columns per window of group_rows_e4m3: a multiple of 128 and of every
 * INT4 group size. */
#define E4W 1024

/* INT4 groups from an FP8 block source (128x128) with the E4M3 kernels,
 * without the absmax search.  A group never crosses a source block, so its
 * range is the value of its largest byte key (per sign for asym) and its
 * codes come straight from the bytes.  The parameters depend only on the
 * source scale and those keys, so inside one 128-row band and E4W-column
 * window they are computed once per (source block, key) and cached.  Same
 * bytes as the f32 route, which windows with an unusable scale take. */
static void group_rows_e4m3(qctx *c, int64_t r0, int64_t r1) {
    const dsq_qscheme *d = c->dst.sc;
    const dsq_qkern *k = c->k;
    const int64_t G = d->group, B = 128, cols = c->dst.m->cols;
    qparam cache[E4W / 128][128];
    uint8_t tag[E4W / 128][128], pos[E4W / 32], neg[E4W / 32], gz[E4W / 32];
    float ss[E4W / 128], gs[E4W / 32], ginv[E4W / 32];
    for (int64_t b = r0; b < r1;) {
        int64_t be = (b / B + 1) * B < r1 ? (b / B + 1) * B : r1;
        for (int64_t w0 = 0; w0 < cols; w0 += E4W) {
            int64_t w1 = w0 + E4W < cols ? w0 + E4W : cols, nb = (w1 - w0 + B - 1) / B;
            int64_t ng = (w1 - w0 + G - 1) / G;
            int ok = 1;
            for (int64_t kb = 0; kb < nb; kb++)
                if (!(ss[kb] = e4m3_src_scale(c, b, w0 + kb * B))) ok = 0;
            if (!ok) {
                for (int64_t r = b; r < be; r++) group_chunk(c, r, w0, w1);
                continue;
            }
            memset(tag, 0, sizeof tag); /* tag: neg key + 1 of the cached entry, 0 = empty */
            for (int64_t r = b; r < be; r++) {
                const uint8_t *q = (const uint8_t *)c->src.m->data + (uint64_t)r * c->src.sz.row_bytes + w0;
                uint8_t *out = (uint8_t *)c->dst.m->data + (uint64_t)r * c->dst.sz.row_bytes;
                int64_t sbase = r * c->dst.sz.scale_cols + w0 / G;
                k->e4m3_gkey(q, w1 - w0, G, pos, d->sym ? NULL : neg);
                for (int64_t g = 0; g < ng; g++) {
                    int64_t kb = g * G / B;
                    unsigned kp = pos[g], kn = d->sym ? 0 : neg[g];
                    qparam *p = &cache[kb][kp];
                    if (tag[kb][kp] != kn + 1) {
                        *p = make_params(d, d->sym ? 0 : -key_value(kn, ss[kb]), key_value(kp, ss[kb]));
                        tag[kb][kp] = (uint8_t)(kn + 1);
                    }
                    dsq_q_scale_store(&c->dst, sbase + g, p->code);
                    if (!d->sym) dsq_q_zero_put(&c->dst, r, w0 / G + g, p->z);
                    gs[g] = ss[kb];
                    ginv[g] = p->inv;
                    gz[g] = (uint8_t)p->z;
                }
                k->e4m3_i4_enc(q, w1 - w0, G, gs, ginv, gz, out + w0 / 2);
            }
        }
        b = be;
    }
}

/* Parameters stored in dst for unit sidx (group g of row r). */
static qparam stored_params(const qctx *c, int64_t sidx, int64_t r, int64_t g) {
    qparam p;
    p.s = dsq_q_scale_get(&c->dst, sidx);
    p.inv = 1.0f / p.s;
    p.z = dsq_q_zero_get(&c->dst, r, g);
    p.code = 0;
    return p;
}

/* dsq_qopts.fixed: encode every unit with the parameters already stored. */
static void quant_rows_fixed(qctx *c, int64_t r0, int64_t r1) {
    const dsq_qlayout *L = &c->dst;
    const int64_t cols = L->m->cols, uc = L->unit_cols;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t j = 0; j < cols;) {
            int64_t g = j / uc, je = (g + 1) * uc < cols ? (g + 1) * uc : cols;
            if (je - j > SCR) je = j + SCR; /* long rows in pieces; j stays even */
            qparam p = L->sc->gran == DSQ_QG_NONE ? (qparam){1.0f, 1.0f, 0, 0} : stored_params(c, dsq_q_unit(L, r, j), r, g);
            load_seg(c->k, &c->src, r, j, je, c->scr);
            encode_seg(c, r, j, c->scr, je - j, &p);
            j = je;
        }
}

/* ggml block destination: each row from the source in chunks of whole
 * blocks (at most SCR floats), through the block search with the row's
 * importance.  Blocks are independent, so the chunking cannot change a byte. */
static void ggml_rows(qctx *c, int64_t r0, int64_t r1) {
    const int ti = c->dst.m->type - DSQ_Q_GGML_Q8_0;
    const dsq_gbtype *g = dsq_gb_type(ti);
    const dsq_gbsearch *ks = gb_kern(c->k)->search;
    const int64_t cols = c->dst.m->cols, chunk = SCR / g->blck * g->blck;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *row = (uint8_t *)c->dst.m->data + (uint64_t)r * c->dst.sz.row_bytes;
        for (int64_t j = 0; j < cols; j += chunk) {
            int64_t w = cols - j < chunk ? cols - j : chunk;
            load_seg(c->k, &c->src, r, j, j + w, c->scr);
            dsq_gb_quantize(ks, ti, c->scr, c->imp ? c->imp + j : NULL, row + j / g->blck * g->bytes, w);
        }
    }
}

/* Quantize rows [r0, r1); arguments already validated. */
static void quant_rows(qctx *c, int64_t r0, int64_t r1) {
    const dsq_qscheme *d = c->dst.sc;
    const int64_t cols = c->dst.m->cols, rows = c->dst.m->rows;
    if (d->kind == DSQ_QK_GGML) {
        ggml_rows(c, r0, r1);
        return;
    }
    if (c->fixed) {
        quant_rows_fixed(c, r0, r1);
        return;
    }
    switch (d->gran) {
    case DSQ_QG_GGML: break; /* ggml_rows above */
    case DSQ_QG_NONE:
    case DSQ_QG_TENSOR: {
        qparam p = {1.0f, 1.0f, 0, 0};
        if (d->gran == DSQ_QG_TENSOR) p = tensor_params(c);
        unit u = {r0, r1, 0, cols, NULL};
        unit_encode(c, &u, &p);
        break;
    }
    case DSQ_QG_CHANNEL:
        for (int64_t r = r0; r < r1; r++) {
            unit u = {r, r + 1, 0, cols, NULL};
            if (cols <= SCR) u.res = load_rect(c, r, r + 1, 0, cols);
            unit_quant(c, &u, r);
        }
        break;
    case DSQ_QG_BLOCK: {
        const int64_t B = d->group;
        if (c->nclip < 2) {
            block_rows_absmax(c, r0, r1);
            break;
        }
        for (int64_t b = r0; b < r1; b += B) {
            int64_t be = b + B < rows ? b + B : rows;
            for (int64_t cb = 0; cb * B < cols; cb++) {
                int64_t ce = (cb + 1) * B < cols ? (cb + 1) * B : cols;
                unit u = {b, be, cb * B, ce, NULL};
                u.res = load_rect(c, b, be, cb * B, ce);
                unit_quant(c, &u, (b / B) * c->dst.sz.scale_cols + cb);
            }
        }
        break;
    }
    case DSQ_QG_GROUP: {
        const int64_t G = d->group, chunk = (SCR / G) * G;
        if (c->k->e4m3_i4_enc && c->nclip < 2 && c->src.sc->kind == DSQ_QK_FP8 &&
            c->src.sc->gran == DSQ_QG_BLOCK && c->src.sc->group == 128) {
            group_rows_e4m3(c, r0, r1);
            break;
        }
        for (int64_t r = r0; r < r1; r++)
            for (int64_t cc = 0; cc < cols; cc += chunk) group_chunk(c, r, cc, cc + chunk < cols ? cc + chunk : cols);
        break;
    }
    }
}

/* ---- argument checks ------------------------------------------------------ */

static int meta_init(dsq_qlayout *q, const dsq_qmat *m, const char *what, dsq_err *err) {
    int rc;
    if (!m) return dsq_fail(err, DSQ_E_ARG, "quant: %s matrix is NULL", what);
    q->m = m;
    q->sc = dsq_q_scheme(m->type);
    if (!q->sc) return dsq_fail(err, DSQ_E_ARG, "quant: %s has unknown scheme id %d", what, m->type);
    if ((rc = dsq_q_sizes(m->type, m->rows, m->cols, &q->sz, err)) < 0) return rc;
    if ((q->sz.data && !m->data) || (q->sz.scale && !m->scale) || (q->sz.zero && !m->zero))
        return dsq_fail(err, DSQ_E_ARG, "quant: %s (%s) is missing its data, scale or zero array",
                        what, q->sc->name);
    const dsq_qscheme *sc = q->sc;
    int whole = sc->gran == DSQ_QG_NONE || sc->gran == DSQ_QG_TENSOR, tiled = sc->gran == DSQ_QG_BLOCK;
    q->unit_rows = tiled ? sc->group : whole && m->rows > 1 ? m->rows : 1;
    q->unit_cols = tiled || sc->gran == DSQ_QG_GROUP ? sc->group : m->cols > 1 ? m->cols : 1;
    q->zero_row_bytes = q->sz.zero ? ((uint64_t)q->sz.scale_cols + 1) / 2 : 0;
    return DSQ_OK;
}

int dsq_q_layout_init(dsq_qlayout *L, const dsq_qmat *m, dsq_err *err) {
    memset(L, 0, sizeof *L);
    dsq_codecs_init(); /* dsq_q_code_of / dsq_q_code_value decode FP8 through the table */
    return meta_init(L, m, "matrix", err);
}

static int ctx_init(qctx *c, const dsq_qkern *k, const dsq_qmat *src, const dsq_qmat *dst,
                    const dsq_qopts *opt, dsq_err *err) {
    int rc;
    memset(c, 0, sizeof *c);
    c->k = k;
    if ((rc = meta_init(&c->src, src, "source", err)) < 0) return rc;
    if ((rc = meta_init(&c->dst, dst, "destination", err)) < 0) return rc;
    if (src->rows != dst->rows || src->cols != dst->cols)
        return dsq_fail(err, DSQ_E_ARG, "quant: source [%lld, %lld] and destination [%lld, %lld] differ",
                        (long long)src->rows, (long long)src->cols, (long long)dst->rows,
                        (long long)dst->cols);
    c->clip_min = 0.5f;
    if (opt) {
        if (opt->clip_steps < 0 || opt->clip_steps > DSQ_Q_MAX_CLIP)
            return dsq_fail(err, DSQ_E_ARG, "quant: clip_steps %d outside 0..%d", opt->clip_steps, DSQ_Q_MAX_CLIP);
        c->nclip = opt->clip_steps;
        if (opt->clip_min != 0) {
            if (!(opt->clip_min > 0 && opt->clip_min < 1))
                return dsq_fail(err, DSQ_E_ARG, "quant: clip_min %g outside (0, 1)", (double)opt->clip_min);
            c->clip_min = opt->clip_min;
        }
        if (opt->imp) {
            for (int64_t j = 0; j < dst->cols; j++)
                if (!(opt->imp[j] >= 0 && opt->imp[j] < INFINITY))
                    return dsq_fail(err, DSQ_E_ARG, "quant: importance of column %lld is %g",
                                    (long long)j, (double)opt->imp[j]);
            c->imp = opt->imp;
        }
        c->fixed = opt->fixed != 0;
        if (c->fixed && c->dst.sc->kind == DSQ_QK_GGML)
            return dsq_fail(err, DSQ_E_ARG, "quant %s: preset (fixed) block parameters are not supported",
                            c->dst.sc->name);
    }
    /* FP8 re-quantization goes through dtype.h's decode table. */
    dsq_codecs_init();
    return DSQ_OK;
}

/* ---- public entry points -------------------------------------------------- */

static int prepare(const dsq_qkern *k, const dsq_qmat *src, const dsq_qmat *dst,
                   const dsq_qopts *opt, dsq_err *err) {
    qctx c;
    int rc = ctx_init(&c, k, src, dst, opt, err);
    if (rc < 0) return rc;
    if (c.dst.sc->gran != DSQ_QG_TENSOR || c.fixed) return DSQ_OK;
    float scr[SCR];
    c.scr = scr;
    unit u = {0, dst->rows, 0, dst->cols, NULL};
    float lo, hi;
    unit_range(&c, &u, &lo, &hi);
    qparam p = unit_choose(&c, &u, lo, hi);
    dsq_q_scale_store(&c.dst, 0, p.code);
    return DSQ_OK;
}

int dsq_q_prepare(const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *opt, dsq_err *err) {
    return prepare(dsq_qkern_best(), src, dst, opt, err);
}
int dsq_q_prepare_ref(const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *opt,
                      dsq_err *err) {
    return prepare(&dsq_qkern_ref, src, dst, opt, err);
}

static int check_rows(const qctx *c, int64_t r0, int64_t r1, dsq_err *err) {
    const dsq_qscheme *d = c->dst.sc;
    int64_t rows = c->dst.m->rows, unitr = d->row_unit;
    if (r0 < 0 || r1 < r0 || r1 > rows)
        return dsq_fail(err, DSQ_E_ARG, "quant %s: row range [%lld, %lld) outside [0, %lld)", d->name,
                        (long long)r0, (long long)r1, (long long)rows);
    if (r0 % unitr || (r1 % unitr && r1 != rows))
        return dsq_fail(err, DSQ_E_ARG, "quant %s: row range [%lld, %lld) not aligned to %lld rows",
                        d->name, (long long)r0, (long long)r1, (long long)unitr);
    if (d->gran == DSQ_QG_TENSOR) {
        float s = dsq_q_scale_get(&c->dst, 0);
        if (!(s > 0 && s < INFINITY))
            return dsq_fail(err, DSQ_E_ARG, "quant %s: tensor scale not prepared (%g)", d->name, (double)s);
    }
    return DSQ_OK;
}

static int quantize(const dsq_qkern *k, const dsq_qmat *src, const dsq_qmat *dst, int64_t r0,
                    int64_t r1, const dsq_qopts *opt, dsq_err *err) {
    qctx c;
    int rc = ctx_init(&c, k, src, dst, opt, err);
    if (rc < 0) return rc;
    if ((rc = check_rows(&c, r0, r1, err)) < 0) return rc;
    float scr[SCR];
    c.scr = scr;
    quant_rows(&c, r0, r1);
    return DSQ_OK;
}

int dsq_q_quantize(const dsq_qmat *src, const dsq_qmat *dst, int64_t r0, int64_t r1,
                   const dsq_qopts *opt, dsq_err *err) {
    return quantize(dsq_qkern_best(), src, dst, r0, r1, opt, err);
}
int dsq_q_quantize_ref(const dsq_qmat *src, const dsq_qmat *dst, int64_t r0, int64_t r1,
                       const dsq_qopts *opt, dsq_err *err) {
    return quantize(&dsq_qkern_ref, src, dst, r0, r1, opt, err);
}

typedef struct qjob {
    const qctx *c;
    int64_t r0, r1;
} qjob;

static void quant_job(void *arg) {
    const qjob *j = arg;
    qctx c = *j->c;
    float scr[SCR];
    c.scr = scr;
    quant_rows(&c, j->r0, j->r1);
}

int dsq_q_quantize_pool(struct dsq_pool *pool, const dsq_qmat *src, const dsq_qmat *dst,
                        const dsq_qopts *opt, dsq_err *err) {
    qctx c;
    int rc = prepare(dsq_qkern_best(), src, dst, opt, err);
    if (rc < 0) return rc;
    if ((rc = ctx_init(&c, dsq_qkern_best(), src, dst, opt, err)) < 0) return rc;
    if ((rc = check_rows(&c, 0, dst->rows, err)) < 0) return rc;
    int64_t unitr = c.dst.sc->row_unit, units = (dst->rows + unitr - 1) / unitr;
    int64_t nj = (int64_t)dsq_pool_size(pool) * 4;
    if (nj > MAX_JOBS) nj = MAX_JOBS;
    if (nj > units) nj = units;
    if (nj < 1) return DSQ_OK;
    qjob jobs[MAX_JOBS];
    for (int64_t i = 0; i < nj; i++) {
        int64_t a = units * i / nj * unitr, b = units * (i + 1) / nj * unitr;
        jobs[i] = (qjob){&c, a, b < dst->rows ? b : dst->rows};
    }
    dsq_pool_for(pool, (int)nj, quant_job, jobs, sizeof jobs[0]);
    return DSQ_OK;
}

static int dequant(const dsq_qkern *k, const dsq_qmat *m, int64_t r0, int64_t r1, int64_t c0,
                   int64_t c1, float *out, int64_t ld, dsq_err *err) {
    dsq_qlayout q;
    int rc = meta_init(&q, m, "matrix", err);
    if (rc < 0) return rc;
    if (r0 < 0 || r1 < r0 || r1 > m->rows || c0 < 0 || c1 < c0 || c1 > m->cols || ld < c1 - c0)
        return dsq_fail(err, DSQ_E_ARG, "dequant %s: window [%lld, %lld) x [%lld, %lld) ld %lld outside [%lld, %lld]",
                        q.sc->name, (long long)r0, (long long)r1, (long long)c0, (long long)c1,
                        (long long)ld, (long long)m->rows, (long long)m->cols);
    if (r1 > r0 && c1 > c0 && !out) return dsq_fail(err, DSQ_E_ARG, "dequant %s: out is NULL", q.sc->name);
    dsq_codecs_init();
    for (int64_t r = r0; r < r1; r++) load_seg(k, &q, r, c0, c1, out + (r - r0) * ld);
    return DSQ_OK;
}

int dsq_q_dequantize(const dsq_qmat *m, int64_t r0, int64_t r1, float *out, dsq_err *err) {
    return dequant(dsq_qkern_best(), m, r0, r1, 0, m ? m->cols : 0, out, m ? m->cols : 0, err);
}
int dsq_q_dequantize_ref(const dsq_qmat *m, int64_t r0, int64_t r1, float *out, dsq_err *err) {
    return dequant(&dsq_qkern_ref, m, r0, r1, 0, m ? m->cols : 0, out, m ? m->cols : 0, err);
}
int dsq_q_dequantize_tile(const dsq_qmat *m, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                          float *out, int64_t ld, dsq_err *err) {
    return dequant(dsq_qkern_best(), m, r0, r1, c0, c1, out, ld, err);
}

/* ---- row conversions ------------------------------------------------------ */

void dsq_q_f32_to_bf16_row(const float *x, int64_t n, void *out) { dsq_qkern_best()->bf16_enc(x, n, out); }
void dsq_q_f32_to_f16_row(const float *x, int64_t n, void *out) { dsq_qkern_best()->f16_enc(x, n, out); }
void dsq_q_bf16_to_f32_row(const void *p, int64_t n, float *out) { dsq_qkern_best()->bf16_dq(p, n, out); }
void dsq_q_f16_to_f32_row(const void *p, int64_t n, float *out) { dsq_qkern_best()->f16_dq(p, n, out); }

int dsq_q_params(int scheme, float lo, float hi, float *s, int *z, uint32_t *code) {
    const dsq_qscheme *d = dsq_q_scheme(scheme);
    if (!d || d->kind == DSQ_QK_FLOAT || d->kind == DSQ_QK_GGML) return DSQ_E_ARG;
    qparam p = make_params(d, d->sym ? 0 : lo, d->sym ? (fabsf(lo) > hi ? fabsf(lo) : hi) : hi);
    *s = p.s;
    *z = p.z;
    if (code) *code = p.code;
    return DSQ_OK;
}

int dsq_q_choose(int scheme, const float *x, int64_t nrows, int64_t ncols, int64_t ld, const dsq_qopts *opt,
                 float *s, int *z, uint32_t *bits) {
    const dsq_qscheme *d = dsq_q_scheme(scheme);
    if (!d || d->kind == DSQ_QK_FLOAT || nrows < 0 || ncols < 0 || (nrows > 1 && ld < ncols) ||
        (!x && nrows && ncols))
        return DSQ_E_ARG;
    qctx c = {0};
    c.k = dsq_qkern_best();
    c.dst.sc = d; /* the search reads only the scheme of the destination */
    c.imp = opt ? opt->imp : NULL;
    c.nclip = opt ? opt->clip_steps : 0;
    c.clip_min = opt && opt->clip_min != 0 ? opt->clip_min : 0.5f;
    if (c.nclip < 0 || c.nclip > DSQ_Q_MAX_CLIP || !(c.clip_min > 0 && c.clip_min < 1)) return DSQ_E_ARG;
    unit u = {0, nrows, 0, ncols, NULL};
    float scr[SCR];
    dsq_qmat src = {DSQ_Q_F32, nrows, ld, (void *)x, NULL, NULL};
    if (nrows <= 1 || ld == ncols) {
        u.res = x; /* contiguous: the unit is its own copy */
    } else {
        /* strided rows stream through scratch as an f32 source [nrows, ld] */
        c.src.m = &src;
        c.src.sc = dsq_q_scheme(DSQ_Q_F32);
        c.src.sz.row_bytes = (uint64_t)ld * 4;
        c.scr = scr;
    }
    dsq_codecs_init();
    float lo, hi;
    unit_range(&c, &u, &lo, &hi);
    qparam p = unit_choose(&c, &u, lo, hi);
    *s = p.s;
    *z = p.z;
    if (bits) *bits = p.code;
    return DSQ_OK;
}
