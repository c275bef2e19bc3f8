/*
 * test_gptq_ggml.c -- GPTQ into the ggml block schemes (calib/methods.c on
 * top of quant/ggml_blocks.h's element access).
 *
 * The element access first, on its own: every level of every element of
 * quantized blocks of each type decodes, through dequantize_ref, to exactly
 * (a * g(l)) - c; code_put changes no other element; nearest is the nearest
 * level; a sub-block refit changes only its sub-block and never raises that
 * sub-block's weighted error.
 *
 * Then GPTQ itself on synthetic layers with correlated inputs (x = A z for a
 * random mixing A, 2048 samples): for each of the 12 types its output error
 * tr(dW H dW^T) / tr(W H W^T) must be clearly below (< 0.9x) that of the
 * block quantizer weighted by diag(H) (what the mse method does); the
 * output decodes to the values GPTQ reported its error for, bit for bit;
 * pools of 1 and 2 workers give the bytes of no pool; act_order (static
 * groups) works; lazy-block sizes that do not fit the blocks are rounded;
 * refine is skipped; dead columns give finite blocks.  Each type prints its
 * ratio and the XXH3 of its bytes, which must be the same in a SIMD=none
 * build (the quantizer's contract: the bytes never depend on the kernels).
 */
#include "test.h"
#include "calib/methods.h"
#include "quant/quant.h"
#include "quant/ggml_blocks.h"
#include "common/pool.h"

#include <math.h>
#include <stdlib.h>
#include <xxhash.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* the error sums below repeat methods.c's */
#endif

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1DULL) >> 32);
}
static double urand(void) { return (rnd() + 0.5) / 4294967296.0; }
static double gauss(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
static int same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static int scheme_of(int i) { return DSQ_Q_GGML_Q8_0 + i; }
static int is_super(int i) { return dsq_gb_type(i)->blck == 256; }

static float level_value(const dsq_gbtype *g, float a, float c, int l) {
    float v = a * (g->nl ? (float)dsq_gb_iq4_grid[l] : (float)(g->g_lo + l));
    return v - c;
}

/* ---- element access ------------------------------------------------------------ */

/* A block of weight-like values (per-sub-block scale, a few outliers) and an
 * importance with a few zero columns. */
static void fill_block(float *x, float *imp, int n) {
    for (int i = 0; i < n; i++) {
        double s = 0.02 * exp(0.7 * gauss());
        x[i] = (float)(gauss() * s * (urand() < 0.02 ? 6 : 1));
        imp[i] = urand() < 0.05 ? 0.0f : (float)(0.1 + urand() * 3);
    }
}

TEST(test_gptq_ggml_elem_access) {
    float x[256], imp[256], dq[256], dq2[256];
    uint8_t blk[256], blk2[256];
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        int n = g->blck;
        CHECK(g->sub > 0 && n % g->sub == 0 && g->n_levels >= 4);
        for (int rep = 0; rep < 3; rep++) {
            fill_block(x, imp, n);
            dsq_gb_quantize(&dsq_gbsearch_ref, i, x, rep ? imp : NULL, blk, n);
            g->dequantize_ref(blk, dq, n);
            /* the quantizer's own codes decode to (a * g(l)) - c */
            for (int e = 0; e < n; e++) {
                float a, c;
                dsq_gb_elem_params(i, blk, e, &a, &c);
                int l = dsq_gb_code_get(i, blk, e);
                CHECKF(l >= 0 && l < g->n_levels, "%s: level %d of element %d", g->name, l, e);
                CHECKF(same_bits(dq[e], level_value(g, a, c, l)), "%s: element %d decodes to %a, not %a", g->name, e,
                       (double)dq[e], (double)level_value(g, a, c, l));
            }
            /* every level of every element, stored alone */
            for (int e = 0; e < n; e++) {
                float a, c;
                dsq_gb_elem_params(i, blk, e, &a, &c);
                int l0 = dsq_gb_code_get(i, blk, e);
                for (int l = 0; l < g->n_levels; l++) {
                    memcpy(blk2, blk, (size_t)g->bytes);
                    dsq_gb_code_put(i, blk2, e, l);
                    CHECK(dsq_gb_code_get(i, blk2, e) == l);
                    g->dequantize_ref(blk2, dq2, n);
                    CHECKF(same_bits(dq2[e], level_value(g, a, c, l)), "%s: element %d level %d", g->name, e, l);
                    for (int k = 0; k < n; k++)
                        CHECKF(k == e || same_bits(dq2[k], dq[k]), "%s: code_put(%d) changed element %d", g->name, e, k);
                    dsq_gb_code_put(i, blk2, e, l0);
                    CHECKF(!memcmp(blk2, blk, (size_t)g->bytes), "%s: code_put(%d) back is not the block", g->name, e);
                }
                /* nearest: no level is closer (in exact arithmetic) */
                for (int t = 0; t < 8; t++) {
                    float w = (float)(gauss() * 0.04), v;
                    int l = dsq_gb_nearest(i, a, c, w, &v);
                    CHECK(l >= 0 && l < g->n_levels && same_bits(v, level_value(g, a, c, l)));
                    for (int k = 0; k < g->n_levels; k++)
                        CHECKF(fabs((double)w - level_value(g, a, c, k)) >= fabs((double)w - v), "%s: level %d nearer %g than %d",
                               g->name, k, (double)w, l);
                }
            }
            /* a sub-block refit: only its own scale bits, never a higher error */
            if (n == 256) {
                for (int j = 0; j < n / g->sub; j++) {
                    for (int k = 0; k < n; k++) x[k] += (float)(gauss() * 0.005); /* "updated" weights */
                    memcpy(blk2, blk, (size_t)g->bytes);
                    dsq_gb_sub_refit(&dsq_gbsearch_ref, i, blk2, x, imp, j);
                    double e0 = 0, e1 = 0;
                    for (int k = j * g->sub; k < (j + 1) * g->sub; k++) {
                        float a0, c0, a1, c1, v0, v1;
                        dsq_gb_elem_params(i, blk, k, &a0, &c0);
                        dsq_gb_elem_params(i, blk2, k, &a1, &c1);
                        dsq_gb_nearest(i, a0, c0, x[k], &v0);
                        dsq_gb_nearest(i, a1, c1, x[k], &v1);
                        double w = imp[k] > 0 ? imp[k] : 0;
                        e0 += w * ((double)x[k] - v0) * ((double)x[k] - v0);
                        e1 += w * ((double)x[k] - v1) * ((double)x[k] - v1);
                    }
                    /* the refit scores in f32 on a scaled copy: allow rounding */
                    CHECKF(e1 <= e0 * (1 + 1e-5) + 1e-30, "%s: refit of sub-block %d raised the error %g -> %g", g->name, j, e0,
                           e1);
                    g->dequantize_ref(blk2, dq2, n);
                    for (int k = 0; k < n; k++)
                        CHECKF((k >= j * g->sub && k < (j + 1) * g->sub) || same_bits(dq2[k], dq[k]),
                               "%s: refit of sub-block %d changed element %d", g->name, j, k);
                    memcpy(blk, blk2, (size_t)g->bytes);
                    memcpy(dq, dq2, sizeof dq);
                }
            } else {
                memcpy(blk2, blk, (size_t)g->bytes);
                dsq_gb_sub_refit(&dsq_gbsearch_ref, i, blk2, x, imp, 0);
                CHECK(!memcmp(blk2, blk, (size_t)g->bytes)); /* one-level blocks: a no-op */
            }
        }
        /* an all-zero block: a = 0, every element at the level of 0 */
        memset(x, 0, sizeof x);
        dsq_gb_quantize(&dsq_gbsearch_ref, i, x, NULL, blk, n);
        float a, c, v;
        dsq_gb_elem_params(i, blk, 0, &a, &c);
        CHECK(a == 0 && dsq_gb_nearest(i, a, c, 0.5f, &v) == dsq_gb_code_get(i, blk, 0) && v == 0);
    }
}

/* ---- synthetic layers ------------------------------------------------------------ */

typedef struct layer {
    int64_t rows, cols;
    float *W;     /* [rows x cols] */
    double *H;    /* [cols x cols] E[x x^T] */
    float *hdiag; /* [cols] diag(H) as the mse importance */
} layer;

/* W Gaussian with per-row scales and 1% outliers; inputs x = A z, z ~ N(0, I)
 * of dimension cols, A a random mixing (identity plus a dense Gaussian part)
 * with per-channel gains, n_dead channels never active. */
static void make_layer(layer *L, int64_t rows, int64_t cols, int64_t N, int n_dead) {
    g_rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(rows * 131 + cols); /* the same layer whichever tests run */
    L->rows = rows;
    L->cols = cols;
    L->W = malloc(sizeof *L->W * (size_t)(rows * cols));
    L->H = calloc((size_t)(cols * cols), sizeof *L->H);
    L->hdiag = malloc(sizeof *L->hdiag * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.02 * exp(0.4 * gauss());
        for (int64_t c = 0; c < cols; c++) L->W[r * cols + c] = (float)(gauss() * s * (urand() < 0.01 ? 5 : 1));
    }
    float *A = malloc(sizeof *A * (size_t)(cols * cols)), *X = malloc(sizeof *X * (size_t)(N * cols));
    float *z = malloc(sizeof *z * (size_t)cols);
    for (int64_t i = 0; i < cols; i++) {
        double gain = exp(0.8 * gauss()) * (i % 41 == 7 ? 8 : 1);
        for (int64_t k = 0; k < cols; k++)
            A[i * cols + k] = (float)(gain * ((i == k) * 0.5 + gauss() / sqrt((double)cols)));
    }
    for (int64_t t = 0; t < N; t++) {
        for (int64_t k = 0; k < cols; k++) z[k] = (float)gauss();
        for (int64_t i = 0; i < cols; i++) {
            double v = 0;
            for (int64_t k = 0; k < cols; k++) v += (double)A[i * cols + k] * z[k];
            X[t * cols + i] = i >= 5 && i < 5 + n_dead ? 0.0f : (float)v;
        }
    }
    for (int64_t t = 0; t < N; t++) {
        const float *x = X + t * cols;
        for (int64_t i = 0; i < cols; i++) {
            if (x[i] == 0) continue;
            double xi = x[i] / (double)N;
            for (int64_t k = i; k < cols; k++) L->H[i * cols + k] += xi * x[k];
        }
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t k = 0; k < i; k++) L->H[i * cols + k] = L->H[k * cols + i];
    for (int64_t i = 0; i < cols; i++) L->hdiag[i] = (float)L->H[i * cols + i];
    free(A);
    free(X);
    free(z);
}

static void free_layer(layer *L) {
    free(L->W);
    free(L->H);
    free(L->hdiag);
}

/* A destination of scheme t (ggml blocks: data only). */
static dsq_qmat qm_alloc(int t, int64_t rows, int64_t cols, uint64_t *nbytes) {
    dsq_qsizes z;
    dsq_q_sizes(t, rows, cols, &z, NULL);
    *nbytes = z.data;
    dsq_qmat m = {t, rows, cols, calloc(1, z.data + 1), NULL, NULL};
    return m;
}

/* tr(dW H dW^T) / tr(W H W^T) of the decoded q, computed as methods.c
 * computes GPTQ's *out_err (same operations, same order), so equal decoded
 * values give the same double. */
static double rel_err(const layer *L, const dsq_qmat *q) {
    int64_t rows = L->rows, n = L->cols;
    float *Wq = malloc(sizeof *Wq * (size_t)(rows * n));
    dsq_q_dequantize(q, 0, rows, Wq, NULL);
    const float *W = L->W;
    const double *H = L->H;
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < n; i++) {
            double di = (double)W[r * n + i] - Wq[r * n + i], wi = W[r * n + i];
            double hd = 0, hw = 0;
            for (int64_t k = 0; k < n; k++) {
                hd += H[i * n + k] * ((double)W[r * n + k] - Wq[r * n + k]);
                hw += H[i * n + k] * W[r * n + k];
            }
            num += di * hd;
            den += wi * hw;
        }
    }
    free(Wq);
    return den > 0 ? num / den : 0;
}

/* The error GPTQ reported must be the error of what dst decodes to: every
 * value GPTQ quantized to is the decoded one, bit for bit (the sums would
 * differ otherwise).  A compiler that contracts the sums into fused
 * multiply-adds could do so differently in the two files. */
static int same_err(double reported, double decoded) {
#if defined(__FP_FAST_FMA) && defined(__clang__)
    return fabs(reported - decoded) <= 1e-12 * fabs(decoded);
#else
    return reported == decoded;
#endif
}

/* The importance-weighted block quantization of W (imp = diag(H)). */
static double plain_err(const layer *L, int t) {
    uint64_t nb;
    dsq_qmat q = qm_alloc(t, L->rows, L->cols, &nb);
    dsq_qmat src = {DSQ_Q_F32, L->rows, L->cols, L->W, NULL, NULL};
    dsq_qopts qo = {0};
    qo.imp = L->hdiag;
    double e = dsq_q_quantize_pool(NULL, &src, &q, &qo, NULL) ? -1 : rel_err(L, &q);
    free(q.data);
    return e;
}

/* ---- GPTQ against the weighted block search, per type ---------------------------- */

static void gptq_types(int64_t rows, int64_t cols, int supers) {
    layer L;
    make_layer(&L, rows, cols, 2048, 0);
    dsq_err err = {0};
    dsq_gptq_opts o = {0.01, 0, 128, NULL, 0, 0, 0}, oa = {0.01, 1, 128, NULL, 0, 0, 0};
    dsq_gptq_factor *f = NULL, *fa = NULL;
    CHECKF(dsq_gptq_factor_new(&f, L.H, cols, &o, &err) == 0, "%s", err.msg);
    CHECKF(dsq_gptq_factor_new(&fa, L.H, cols, &oa, &err) == 0, "%s", err.msg);
    dsq_pool *p1 = dsq_pool_new(1), *p2 = dsq_pool_new(2);
    CHECK(p1 && p2);
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        if (is_super(i) != supers) continue;
        const dsq_gbtype *g = dsq_gb_type(i);
        int t = scheme_of(i);
        uint64_t nb;
        dsq_qmat q = qm_alloc(t, rows, cols, &nb), q1 = qm_alloc(t, rows, cols, &nb), q2 = qm_alloc(t, rows, cols, &nb),
                 qa = qm_alloc(t, rows, cols, &nb);
        double e, ea;
        CHECKF(dsq_gptq_apply(L.W, rows, L.H, f, &o, &q, &e, &err) == 0, "%s: %s", g->name, err.msg);
        double ed = rel_err(&L, &q), ep = plain_err(&L, t);
        CHECKF(same_err(e, ed), "%s: GPTQ's values are not what the blocks decode to (error %.17g vs %.17g)", g->name, e, ed);
        /* pools of 1 and 2 workers: the same bytes */
        o.pool = p1;
        CHECKF(dsq_gptq_apply(L.W, rows, NULL, f, &o, &q1, NULL, &err) == 0, "%s", err.msg);
        o.pool = p2;
        CHECKF(dsq_gptq_apply(L.W, rows, NULL, f, &o, &q2, NULL, &err) == 0, "%s", err.msg);
        o.pool = NULL;
        CHECKF(!memcmp(q.data, q1.data, nb) && !memcmp(q.data, q2.data, nb), "%s: bytes depend on the pool", g->name);
        /* act_order: static groups from the original weights */
        CHECKF(dsq_gptq_apply(L.W, rows, L.H, fa, &oa, &qa, &ea, &err) == 0, "%s: %s", g->name, err.msg);
        CHECKF(same_err(ea, rel_err(&L, &qa)), "%s act_order: values are not the decoded ones", g->name);
        fprintf(stderr, "  %-6s %lldx%lld: gptq/plain %.3f (gptq %.3e, plain %.3e), act_order %.3f, xxh3 %016llx\n",
                g->name, (long long)rows, (long long)cols, ed / ep, ed, ep, ea / ep,
                (unsigned long long)XXH3_64bits(q.data, nb));
        CHECKF(ed < 0.9 * ep, "%s: gptq error %.3e not below 0.9x the weighted search's %.3e", g->name, ed, ep);
        CHECKF(ea < ep, "%s: act_order gptq error %.3e not below the weighted search's %.3e", g->name, ea, ep);
        free(q.data);
        free(q1.data);
        free(q2.data);
        free(qa.data);
    }
    dsq_pool_free(p1);
    dsq_pool_free(p2);
    dsq_gptq_factor_free(f);
    dsq_gptq_factor_free(fa);
    free_layer(&L);
}

TEST(test_gptq_ggml_superblocks) { gptq_types(64, 512, 1); }
TEST(test_gptq_ggml_blocks32) { gptq_types(64, 512, 0); }
TEST(test_gptq_ggml_blocks32_short) { gptq_types(64, 96, 0); }

/* ---- lazy-block sizes, refine, dead columns, the asymmetric target ------------------ */

TEST(test_gptq_ggml_options) {
    layer L;
    make_layer(&L, 16, 512, 1024, 40); /* columns 5..44: never active */
    dsq_err err = {0};
    for (int i = 0; i < DSQ_GB_COUNT; i++) {
        const dsq_gbtype *g = dsq_gb_type(i);
        int t = scheme_of(i);
        uint64_t nb;
        dsq_qmat a = qm_alloc(t, L.rows, L.cols, &nb), b = qm_alloc(t, L.rows, L.cols, &nb);
        /* a lazy block that neither divides nor is a multiple of the ggml
         * block is rounded up to a multiple of it */
        dsq_gptq_opts o = {0.01, 0, 100, NULL, 0, 0, 0}, o2 = {0.01, 0, g->blck == 256 ? 256 : 128, NULL, 0, 0, 0};
        double e;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &a, &e, &err) == 0, "%s: %s", g->name, err.msg);
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o2, &b, NULL, &err) == 0, "%s: %s", g->name, err.msg);
        CHECKF(!memcmp(a.data, b.data, nb), "%s: lazy block 100 is not rounded to %d", g->name, o2.block);
        CHECK(same_err(e, rel_err(&L, &a)));
        /* lazy blocks smaller than the ggml block (dividing it) */
        o.block = 16;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &b, &e, &err) == 0, "%s: %s", g->name, err.msg);
        CHECK(same_err(e, rel_err(&L, &b)));
        /* dead columns: finite values everywhere */
        float *x = malloc(sizeof *x * (size_t)(L.rows * L.cols));
        dsq_q_dequantize(&b, 0, L.rows, x, NULL);
        for (int64_t k = 0; k < L.rows * L.cols; k++) CHECKF(isfinite(x[k]), "%s: element %lld", g->name, (long long)k);
        free(x);
        /* refine does not apply to ggml blocks: the same bytes without it */
        o.block = 128;
        o.refine = 1;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &b, NULL, &err) == 0, "%s: %s", g->name, err.msg);
        o.refine = 0;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &a, NULL, &err) == 0, "%s: %s", g->name, err.msg);
        CHECKF(!memcmp(a.data, b.data, nb), "%s: refine changed the bytes", g->name);
        free(a.data);
        free(b.data);
    }
    /* the asymmetric target (reference inputs = the quantized ones, C = H):
     * GPTQ of W H Hd^-1 works unchanged */
    float *V = malloc(sizeof *V * (size_t)(L.rows * L.cols));
    CHECK(dsq_gptq_target(L.W, L.rows, L.cols, L.H, L.H, 0.01, 0.5, V, &err) == 0);
    uint64_t nb;
    dsq_qmat q = qm_alloc(DSQ_Q_GGML_Q4_K, L.rows, L.cols, &nb);
    dsq_gptq_opts o = {0.01, 0, 128, NULL, 0, 0, 0};
    double e;
    CHECKF(dsq_gptq(V, L.rows, L.cols, L.H, &o, &q, &e, &err) == 0, "%s", err.msg);
    CHECK(e > 0 && e < 0.05);
    free(q.data);
    free(V);
    free_layer(&L);
}
