/*
 * methods.c -- GPTQ and AWQ (see methods.h).
 *
 * GPTQ follows Frantar et al. 2022 ("GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", Algorithm 1):
 * damp H, take the upper Cholesky factor U of H^-1, then quantize column by
 * column, spreading each column's error over the columns not yet quantized
 * through row i of U, with lazy batch updates every `block` columns.  The
 * factorisations are calib/linalg.c's, the vector updates entries of the
 * library's kernel table (quant/quant_int.h), and every code, scale and zero
 * point is read and written through quant.h's storage accessors.
 *
 * The ggml block schemes (q4_k, iq4_xs, ...) go through the same loop with
 * block-wise parameters: each block is chosen by quant/'s block quantizer
 * on its error-updated weights, and each element coded with the block's
 * grid through ggml_blocks.h's element access (gb_column below).
 *
 * AWQ follows Lin et al. 2023 ("AWQ: Activation-aware Weight Quantization"):
 * a grid search over the exponent of per-input-channel scales derived from
 * mean |activation|.
 */
#include "calib/methods.h"
#include "calib/fold.h"
#include "calib/linalg.h"
#include "common.h"
#include "common/pool.h"
#include "quant/ggml_blocks.h"
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>

/* ---- scheme helpers -------------------------------------------------------
 * Where codes, scales and zero points live, and what a code means, is
 * quant.h's knowledge (its storage accessors); these only combine them. */

/* The value the scheme's encoder gives w in a unit with scale s (1/s = inv)
 * and zero point z. */
static inline float qvalue(const dsq_qlayout *L, float w, float s, float inv, int z) {
    return dsq_q_code_value(L, dsq_q_code_of(L, w, s, inv, z), s, z);
}

/* The value of integer level t (code t + z) with scale s: t * s. */
static inline float lvalue(const dsq_qlayout *L, int t, float s, int z) { return dsq_q_code_value(L, t + z, s, z); }

/* Parameters of the unit whose first element is (r, c), from its values
 * x[i * ld + k] (nrows x ncols), chosen as dsq_q_quantize chooses them
 * (absmax, or the clip search weighted by hw[c + k]: the Hessian diagonal)
 * and stored into L's matrix; *s and *z receive them. */
static void unit_params(const dsq_qlayout *L, int64_t r, int64_t c, const float *x, int64_t nrows, int64_t ncols,
                        int64_t ld, const float *hw, int clip_steps, float clip_min, float *s, int *z) {
    dsq_qopts o = {0};
    o.imp = hw ? hw + c : NULL;
    o.clip_steps = clip_steps;
    o.clip_min = clip_min;
    dsq_q_choose(L->m->type, x, nrows, ncols, ld, &o, s, z, NULL); /* options checked by dsq_gptq_apply */
    dsq_q_scale_put(L, dsq_q_unit(L, r, c), *s);
    dsq_q_zero_put(L, r, c / L->unit_cols, *z);
}

/* Encode the matrix of exactly representable values Q with the parameters
 * already stored in dst. */
static int encode_fixed(const float *Q, int64_t rows, int64_t cols, const dsq_qmat *dst, dsq_err *err) {
    dsq_qmat src = {DSQ_Q_F32, rows, cols, (void *)Q, NULL, NULL};
    dsq_qopts o = {0};
    o.fixed = 1;
    return dsq_q_quantize(&src, dst, 0, rows, &o, err);
}

/* ---- GPTQ ------------------------------------------------------------------- */

/* One GPTQ job: rows [r0, r1).  Rows are independent given U (each row's
 * errors only move that row's later columns), so rows split over threads
 * give the same result as one thread. */
typedef struct gjob {
    const dsq_qlayout *L;  /* the destination */
    const float *U;        /* [n x n] upper Cholesky factor of H^-1, f32 */
    const float *Wp;       /* permuted weights */
    float *Q;              /* permuted results */
    const int64_t *perm;
    const float *hw;       /* Hessian diagonal by original column (clip search weights) */
    int64_t n, B, r0, r1;
    int dynamic, clip_steps;
    float clip_min;
    const dsq_qkern *K;    /* the kernel table (sub_many_f) */
    const float *W;        /* original weights (static parameters) */
    int gb;                /* ggml destination: its DSQ_GB_* type; else -1 */
    const dsq_gbsearch *gks; /* the ggml block search kernels */
    int fail;              /* out of memory */
} gjob;

/* Static parameters of rows [r0, r1) from the original weights (ggml
 * blocks: whole blocks, codes included, which gptq_rows then replaces). */
static void gptq_static(void *arg) {
    gjob *j = arg;
    int64_t cols = j->n, ur = j->L->unit_rows, uc = j->L->unit_cols;
    if (j->gb >= 0) {
        for (int64_t r = j->r0; r < j->r1; r++)
            dsq_gb_quantize(j->gks, j->gb, j->W + r * cols, j->hw,
                            (uint8_t *)j->L->m->data + (uint64_t)r * j->L->sz.row_bytes, cols);
        return;
    }
    for (int64_t r = j->r0; r < j->r1; r += ur)
        for (int64_t c0 = 0; c0 < cols; c0 += uc) {
            int64_t r1 = r + ur < j->r1 ? r + ur : j->r1, c1 = c0 + uc < cols ? c0 + uc : cols;
            float s;
            int z;
            unit_params(j->L, r, c0, j->W + r * cols + c0, r1 - r, c1 - c0, cols, j->hw, j->clip_steps, j->clip_min,
                        &s, &z);
        }
}

/* Column i (original column orig) of a row of ggml blocks (row: its
 * bytes in the destination, w: its current weights in quantization order),
 * which returns the value it is quantized to.  With dynamic parameters
 * (natural order, i == orig) a block's parameters are chosen from the
 * current weights of the block when its first column is reached, by the
 * block quantizer with the Hessian diagonal as importance, and each later
 * sub-block's scale (and min) codes again, d and dmin kept, when the
 * sub-block's first column is: all earlier columns' updates have reached it
 * then (see dsq_gptq_apply on the lazy-block size).  Against choosing them
 * all at the block's start, that lowered the output error of the K-quants
 * and IQ4_XS by 4-12% on tests/test_gptq_ggml.c's layers; a wider search
 * around the least-squares codes (R + 1) gained under 1% more and is not
 * done.  One-level blocks have no sub-blocks (their refit is a no-op).  The
 * element is then coded with
 * the level nearest w[i] under its fixed parameters, (*a, *c) of the
 * sub-block starting at column *sub0, loaded when it changes. */
static float gb_column(const gjob *j, const dsq_gbtype *g, uint8_t *row, const float *w, int64_t i, int64_t orig,
                       int64_t *sub0, float *a, float *c) {
    int64_t e = orig % g->blck, s0 = orig - orig % g->sub;
    uint8_t *blk = row + (orig / g->blck) * g->bytes;
    if (s0 != *sub0) {
        if (j->dynamic) {
            const float *wb = w + (i - e), *hb = j->hw + (orig - e);
            if (e == 0) dsq_gb_quantize(j->gks, j->gb, wb, hb, blk, g->blck);
            else dsq_gb_sub_refit(j->gks, j->gb, blk, wb, hb, (int)(e / g->sub));
        }
        dsq_gb_elem_params(j->gb, blk, (int)e, a, c);
        *sub0 = s0;
    }
    float q;
    dsq_gb_code_put(j->gb, blk, (int)e, dsq_gb_nearest(j->gb, *a, *c, w[i], &q));
    return q;
}

static void gptq_rows(void *arg) {
    gjob *j = arg;
    const dsq_qlayout L = *j->L; /* a local copy: float stores cannot alias it */
    const dsq_gbtype *gt = j->gb >= 0 ? dsq_gb_type(j->gb) : NULL;
    int64_t n = j->n, B = j->B;
    float *w = malloc(sizeof *w * (size_t)n), *eb = malloc(sizeof *eb * (size_t)B);
    const float **ux = malloc(sizeof *ux * (size_t)B);
    if (!w || !eb || !ux) {
        free(w); free(eb); free(ux);
        j->fail = 1;
        return;
    }
    for (int64_t r = j->r0; r < j->r1; r++) {
        memcpy(w, j->Wp + r * n, sizeof *w * (size_t)n);
        float s = 1, inv = 1, ga = 0, gc = 0;
        int z = 0;
        int64_t ulast = -1; /* unit whose s, inv, z are loaded */
        int64_t gsub = -1;  /* ggml: sub-block whose ga, gc are loaded */
        uint8_t *grow = gt ? (uint8_t *)L.m->data + (uint64_t)r * L.sz.row_bytes : NULL;
        for (int64_t i1 = 0; i1 < n; i1 += B) {
            int64_t i2 = i1 + B < n ? i1 + B : n;
            for (int64_t i = i1; i < i2; i++) {
                int64_t orig = j->perm[i];
                float q;
                if (gt) {
                    q = gb_column(j, gt, grow, w, i, orig, &gsub, &ga, &gc);
                } else if (j->dynamic) {
                    if (orig % L.unit_cols == 0) {
                        /* new group: parameters from its current (updated) weights,
                         * which without act-order are columns i .. i+G-1 */
                        int64_t c1 = orig + L.unit_cols < n ? orig + L.unit_cols : n;
                        unit_params(&L, r, orig, w + orig, 1, c1 - orig, 0, j->hw, j->clip_steps, j->clip_min, &s, &z);
                        inv = 1.0f / s;
                    }
                } else {
                    int64_t u = dsq_q_unit(&L, r, orig);
                    if (u != ulast) {
                        s = dsq_q_scale_get(&L, u);
                        inv = 1.0f / s;
                        z = dsq_q_zero_get(&L, r, orig / L.unit_cols);
                        ulast = u;
                    }
                }
                if (!gt) q = qvalue(&L, w[i], s, inv, z);
                const float *u = j->U + i * n;
                j->Q[r * n + i] = q;
                float e = (w[i] - q) / u[i];
                eb[i - i1] = e;
                const float *ui = u + i + 1;
                j->K->sub_many_f(w + i + 1, &ui, &e, 1, i2 - i - 1);
            }
            /* lazy update of the columns after the block: w[c] -= e_k u_k[c]
             * for the block's nonzero errors, k in order */
            int m = 0;
            for (int64_t k = 0; k < i2 - i1; k++)
                if (eb[k] != 0) {
                    eb[m] = eb[k];
                    ux[m++] = j->U + (i1 + k) * n + i2;
                }
            if (m && i2 < n) j->K->sub_many_f(w + i2, ux, eb, m, n - i2);
        }
    }
    free(w);
    free(eb);
    free(ux);
}

/* ---- refinement ------------------------------------------------------------- */

/* The stored form of a positive scale s (rounded to nearest even), in
 * *back; 0 when s or its stored form is not a positive finite number. */
static int scale_round(const dsq_qlayout *L, float s, float *back) {
    if (!(s > 0) || !(s < INFINITY)) return 0;
    *back = dsq_q_scale_stored(L, s);
    return *back > 0 && *back < INFINITY;
}

/* One refinement job: rows [r0, r1) of the permuted GPTQ result Q, refined
 * against the damped permuted Hessian Hd by alternating
 *   codes:  a coordinate-descent pass, each code set to the grid point that
 *           minimises (w - q)^T Hd (w - q) with the others fixed (never
 *           increases it);
 *   scales: the least-squares scales of the row's groups for fixed codes
 *           (normal equations of the same objective), rounded to the stored
 *           type and kept only when the objective goes down. */
typedef struct rjob {
    const dsq_qlayout *L;  /* the destination */
    const double *Hd;
    const float *Wp;
    float *Q;
    const int64_t *perm;
    int64_t n, r0, r1;
    int iters, fail;
} rjob;

static double row_obj(const double *Hd, const double *e, double *r, int64_t n) {
    double o = 0;
    for (int64_t i = 0; i < n; i++) {
        const double *h = Hd + i * n;
        double t = 0;
        for (int64_t k = 0; k < n; k++) t += h[k] * e[k];
        r[i] = t;
        o += e[i] * t;
    }
    return o;
}

static void refine_rows(void *arg) {
    rjob *j = arg;
    const dsq_qlayout *L = j->L;
    int64_t n = j->n, G = dsq_q_units_per_row(L);
    int clo, chi; /* code range: level t of a group with zero point z is code t + z */
    dsq_q_code_range(L, &clo, &chi);
    double *e = malloc(sizeof *e * (size_t)n), *r = malloc(sizeof *r * (size_t)n), *hw = malloc(sizeof *hw * (size_t)n);
    double *Y = malloc(sizeof *Y * (size_t)(n * G)), *M = malloc(sizeof *M * (size_t)(G * G)), *b = malloc(sizeof *b * (size_t)G);
    float *s = malloc(sizeof *s * (size_t)G), *s_new = malloc(sizeof *s_new * (size_t)G), *q = malloc(sizeof *q * (size_t)n);
    int *t = malloc(sizeof *t * (size_t)n), *z = malloc(sizeof *z * (size_t)G);
    int64_t *grp = malloc(sizeof *grp * (size_t)n);
    if (!e || !r || !hw || !Y || !M || !b || !s || !s_new || !q || !t || !z || !grp) {
        j->fail = 1;
        goto out;
    }
    for (int64_t i = 0; i < n; i++) grp[i] = j->perm[i] / L->unit_cols;
    for (int64_t row = j->r0; row < j->r1; row++) {
        const float *w = j->Wp + row * n;
        float *Qr = j->Q + row * n;
        int64_t sbase = dsq_q_unit(L, row, 0); /* the row's groups are units sbase .. sbase + G - 1 */
        for (int64_t g = 0; g < G; g++) {
            s[g] = dsq_q_scale_get(L, sbase + g);
            z[g] = dsq_q_zero_get(L, row, g);
        }
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!(fabsf(w[i]) < INFINITY) || !(s[grp[i]] > 0)) bad = 1;
            t[i] = (int)rintf(Qr[i] / s[grp[i]]);
            q[i] = Qr[i];
        }
        if (bad) continue; /* non-finite weights: leave GPTQ's result */
        /* Hd w, for the scale normal equations */
        for (int64_t i = 0; i < n; i++) {
            double a = 0;
            for (int64_t k = 0; k < n; k++) a += j->Hd[i * n + k] * w[k];
            hw[i] = a;
        }
        for (int64_t i = 0; i < n; i++) e[i] = (double)w[i] - q[i];
        double obj = row_obj(j->Hd, e, r, n);
        for (int it = 0; it < j->iters; it++) {
            /* codes */
            for (int64_t i = 0; i < n; i++) {
                const double *h = j->Hd + i * n;
                double hii = h[i];
                if (!(hii > 0)) continue;
                float sg = s[grp[i]];
                int zg = z[grp[i]];
                double target = (double)q[i] + r[i] / hii;
                double tt = rint(target / sg);
                int lo = clo - zg, hi = chi - zg;
                int tn = tt < lo ? lo : tt > hi ? hi : (int)tt;
                if (tn == t[i]) continue;
                float qn = lvalue(L, tn, sg, zg);
                double dl = (double)qn - q[i];
                t[i] = tn;
                q[i] = qn;
                e[i] -= dl;
                for (int64_t k = 0; k < n; k++) r[k] -= dl * h[k];
            }
            obj = row_obj(j->Hd, e, r, n); /* resync against drift */
            /* scales: (A^T Hd A) s = A^T Hd w, A[i][g] = t_i [grp i = g] */
            for (int64_t i = 0; i < n * G; i++) Y[i] = 0;
            for (int64_t i = 0; i < n; i++) {
                const double *h = j->Hd + i * n;
                double *y = Y + i * G;
                for (int64_t k = 0; k < n; k++) y[grp[k]] += h[k] * t[k];
            }
            for (int64_t i = 0; i < G * G; i++) M[i] = 0;
            for (int64_t g = 0; g < G; g++) b[g] = 0;
            for (int64_t i = 0; i < n; i++) {
                for (int64_t g = 0; g < G; g++) M[grp[i] * G + g] += t[i] * Y[i * G + g];
                b[grp[i]] += t[i] * hw[i];
            }
            for (int64_t g = 0; g < G; g++) M[g * G + g] += 1e-12 * (M[g * G + g] > 0 ? M[g * G + g] : 1);
            if (dsq_spd_solve(M, b, G)) break;
            int changed = 0;
            for (int64_t g = 0; g < G; g++) {
                float back;
                s_new[g] = s[g];
                if (scale_round(L, (float)b[g], &back) && back != s[g]) {
                    s_new[g] = back;
                    changed = 1;
                }
            }
            if (!changed) break;
            for (int64_t i = 0; i < n; i++) e[i] = (double)w[i] - (double)lvalue(L, t[i], s_new[grp[i]], z[grp[i]]);
            double o2 = row_obj(j->Hd, e, r, n);
            if (!(o2 < obj)) {
                for (int64_t i = 0; i < n; i++) e[i] = (double)w[i] - q[i];
                obj = row_obj(j->Hd, e, r, n);
                break;
            }
            obj = o2;
            for (int64_t g = 0; g < G; g++)
                if (s_new[g] != s[g]) {
                    s[g] = s_new[g];
                    dsq_q_scale_put(L, sbase + g, s[g]);
                }
            for (int64_t i = 0; i < n; i++) q[i] = lvalue(L, t[i], s[grp[i]], z[grp[i]]);
        }
        memcpy(Qr, q, sizeof *q * (size_t)n);
    }
out:
    free(e); free(r); free(hw); free(Y); free(M); free(b); free(s); free(s_new); free(q);
    free(t); free(z); free(grp);
}

struct dsq_gptq_factor {
    int64_t n;
    double damp;       /* as given (0: the default) */
    int act_order;
    int64_t *perm;     /* [n] quantization order: perm[i] is the i-th column quantized */
    float *hw;         /* [n] Hessian diagonal by original column (clip search weights) */
    float *U;          /* [n x n] upper Cholesky factor of the damped, permuted H^-1 */
    double *Hd;        /* [n x n] the damped, permuted H itself, kept for refinement rounds */
};

void dsq_gptq_factor_free(dsq_gptq_factor *f) {
    if (!f) return;
    free(f->perm);
    free(f->hw);
    free(f->U);
    free(f->Hd);
    free(f);
}

int dsq_gptq_factor_new(dsq_gptq_factor **out, const double *H, int64_t n, const dsq_gptq_opts *o, dsq_err *err) {
    *out = NULL;
    int rc = DSQ_OK;
    double damp = o && o->damp > 0 ? o->damp : 0.01;
    int act = o ? o->act_order : 0;
    dsq_gptq_factor *f = dsq_calloc(1, sizeof *f);
    double *Hd = dsq_malloc(sizeof *Hd * (size_t)(n * n)), *tmp = dsq_malloc(sizeof *tmp * (size_t)(n * n));
    if (f) {
        f->n = n;
        f->damp = o ? o->damp : 0;
        f->act_order = act;
        f->perm = dsq_malloc(sizeof *f->perm * (size_t)n);
        f->hw = dsq_malloc(sizeof *f->hw * (size_t)n);
        f->U = dsq_malloc(sizeof *f->U * (size_t)(n * n));
    }
    if (!f || !Hd || !tmp || !f->perm || !f->hw || !f->U) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory for a %lld-column Hessian", (long long)n);
        goto out;
    }
    int64_t *perm = f->perm;
    /* damped Hessian; dead columns get H_ii = 1 and no influence */
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1;
    for (int64_t i = 0; i < n; i++) {
        perm[i] = i;
        f->hw[i] = H[i * n + i] > 0 ? (float)H[i * n + i] : 0.0f;
    }
    if (act) {
        /* stable sort by decreasing diagonal */
        for (int64_t i = 1; i < n; i++) {
            int64_t v = perm[i], k = i;
            while (k > 0 && H[perm[k - 1] * n + perm[k - 1]] < H[v * n + v]) { perm[k] = perm[k - 1]; k--; }
            perm[k] = v;
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) Hd[i * n + k] = H[perm[i] * n + perm[k]];
    for (int64_t i = 0; i < n; i++) {
        if (!(Hd[i * n + i] > 0)) {
            for (int64_t k = 0; k < n; k++) Hd[i * n + k] = Hd[k * n + i] = 0;
            Hd[i * n + i] = 1;
        }
        Hd[i * n + i] += damp * mean;
    }
    if (o && o->refine > 0) {
        if (!(f->Hd = dsq_malloc(sizeof *f->Hd * (size_t)(n * n)))) {
            rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory for a %lld-column Hessian", (long long)n);
            goto out;
        }
        memcpy(f->Hd, Hd, sizeof *Hd * (size_t)(n * n));
    }
    /* U = upper Cholesky factor of H^-1 = L^T, kept in f32 for the updates */
    if ((rc = dsq_spd_inv_chol(Hd, n, tmp, o ? o->pool : NULL))) {
        rc = rc == DSQ_E_NOMEM ? dsq_fail(err, rc, "gptq: out of memory for a %lld-column Hessian", (long long)n)
                               : dsq_fail(err, DSQ_E_ARG, "gptq: Hessian is not positive definite even after damping");
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++) f->U[i * n + k] = k >= i ? (float)Hd[k * n + i] : 0.0f;
    *out = f;
    f = NULL;
out:
    free(Hd);
    free(tmp);
    dsq_gptq_factor_free(f);
    return rc;
}

int dsq_gptq_apply(const float *W, int64_t rows, const double *H, const dsq_gptq_factor *f, const dsq_gptq_opts *o,
                   const dsq_qmat *dst, double *out_err, dsq_err *err) {
    const dsq_qscheme *d = dsq_q_scheme(dst->type);
    int64_t n = f->n, cols = f->n;
    if (!d || d->kind == DSQ_QK_FLOAT || d->gran == DSQ_QG_TENSOR)
        return dsq_fail(err, DSQ_E_ARG, "gptq: scheme %s is not supported", d ? d->name : "?");
    if (dst->cols != cols || dst->rows != rows)
        return dsq_fail(err, DSQ_E_ARG, "gptq: [%lld x %lld] destination for a %lld-column factor", (long long)dst->rows,
                        (long long)dst->cols, (long long)cols);
    if ((o ? o->act_order : 0) != f->act_order || (o ? o->damp : 0) != f->damp || (o && o->refine > 0 && !f->Hd))
        return dsq_fail(err, DSQ_E_ARG, "gptq: factor made with other options");
    dsq_qlayout L;
    int rc = dsq_q_layout_init(&L, dst, err);
    if (rc) return rc;
    int clip = o ? o->clip_steps : 0;
    float clip_min = o ? o->clip_min : 0;
    if (clip < 0 || clip > DSQ_Q_MAX_CLIP || (clip_min != 0 && !(clip_min > 0 && clip_min < 1)))
        return dsq_fail(err, DSQ_E_ARG, "gptq: clip_steps %d outside [0, %d] or clip_min %g outside (0, 1)", clip,
                        DSQ_Q_MAX_CLIP, (double)clip_min);
    int act = f->act_order;
    int64_t B = o && o->block > 0 ? o->block : 128;
    int64_t urows = L.unit_rows;
    /* ggml blocks: a block's parameters are chosen when its first column is
     * reached, from its weights with every earlier column's update applied.
     * Inside a lazy block [i1, i2) the columns [i, i2) are up to date at
     * column i, the later ones only at i2, so a ggml block (and sub-block)
     * must start a lazy block or end inside its own: B a multiple of the
     * ggml block, or a divisor of it (B = 128 and a 256-column super-block:
     * the super-block starts a lazy block, and its second half has its
     * first half's updates by the time a sub-block there is re-chosen).
     * Any other B is rounded up to a multiple of the block. */
    int gb = d->kind == DSQ_QK_GGML ? dst->type - DSQ_Q_GGML_Q8_0 : -1;
    if (gb >= 0) {
        int64_t bl = dsq_gb_type(gb)->blck;
        if (B % bl && bl % B) B = (B + bl - 1) / bl * bl;
    }
    const dsq_qkern *K = dsq_qkern_best();
    const int64_t *perm = f->perm;
    const float *hw = f->hw;
    float *Wp = dsq_malloc(sizeof *Wp * (size_t)(rows * n)), *Q = dsq_calloc((size_t)(rows * n), sizeof *Q);
    gjob *jobs = NULL;
    if (!Wp || !Q) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory for a [%lld x %lld] matrix", (long long)rows, (long long)cols);
        goto out;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < n; k++) Wp[r * n + k] = W[r * n + perm[k]];
    /* with act_order, "static groups": ggml blocks from the original weights */
    int dynamic = !act && (d->gran == DSQ_QG_GROUP || gb >= 0);
    const dsq_gbsearch *gks = dsq_gbkern_best()->search; /* same bytes as the reference search */
    int nj = o && o->pool ? dsq_pool_size(o->pool) * 4 : 1;
    if (nj > rows) nj = (int)(rows ? rows : 1);
    jobs = dsq_calloc((size_t)nj, sizeof *jobs);
    if (!jobs) { rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory"); goto out; }
    for (int k = 0; k < nj; k++) {
        /* block schemes share scales across 128-row bands: split on band
         * edges; whole rows keep the zero-point bytes groups share apart */
        int64_t r0 = rows * k / nj, r1 = rows * (k + 1) / nj;
        if (urows > 1) {
            r0 = (r0 / urows) * urows;
            r1 = k + 1 == nj ? rows : (r1 / urows) * urows;
        }
        jobs[k] = (gjob){&L, f->U, Wp, Q, perm, hw, n, B, r0, r1, dynamic, clip, clip_min, K, W, gb, gks, 0};
    }
    /* static parameters (channel / block granularity, or act-order groups)
     * come from the original weights before any update */
    for (int pass = dynamic; pass < 2; pass++) {
        for (int k = 0; k < nj; k++) {
            if (o && o->pool) dsq_pool_add(o->pool, pass ? gptq_rows : gptq_static, &jobs[k]);
            else (pass ? gptq_rows : gptq_static)(&jobs[k]);
        }
        if (o && o->pool) dsq_pool_join(o->pool);
    }
    for (int k = 0; k < nj; k++)
        if (jobs[k].fail) { rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory"); goto out; }
    /* refinement: int kinds only (ggml blocks keep GPTQ's codes) */
    if (o && o->refine > 0 && (d->kind == DSQ_QK_INT4 || d->kind == DSQ_QK_INT8) &&
        (d->gran == DSQ_QG_GROUP || d->gran == DSQ_QG_CHANNEL) &&
        (d->sdt == DSQ_DT_F32 || d->sdt == DSQ_DT_BF16 || d->sdt == DSQ_DT_F16)) {
        rjob *rj = dsq_calloc((size_t)nj, sizeof *rj);
        if (!rj) { rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory"); goto out; }
        for (int k = 0; k < nj; k++) {
            rj[k] = (rjob){&L, f->Hd, Wp, Q, perm, n, jobs[k].r0, jobs[k].r1, o->refine, 0};
            if (o->pool) dsq_pool_add(o->pool, refine_rows, &rj[k]);
            else refine_rows(&rj[k]);
        }
        if (o->pool) dsq_pool_join(o->pool);
        int failed = 0;
        for (int k = 0; k < nj; k++) failed |= rj[k].fail;
        free(rj);
        if (failed) { rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory while refining"); goto out; }
    }
    /* back to the original column order, then encode with the stored
     * parameters (ggml blocks hold their codes already) */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < n; k++) Wp[r * n + perm[k]] = Q[r * n + k];
    if (gb < 0 && (rc = encode_fixed(Wp, rows, cols, dst, err))) goto out;
    if (out_err && H) {
        /* tr(dW H dW^T) / tr(W H W^T) with the undamped H */
        double num = 0, den = 0;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < n; i++) {
                double di = (double)W[r * n + i] - Wp[r * n + i], wi = W[r * n + i];
                double hd = 0, hw = 0;
                for (int64_t k = 0; k < n; k++) {
                    hd += H[i * n + k] * ((double)W[r * n + k] - Wp[r * n + k]);
                    hw += H[i * n + k] * W[r * n + k];
                }
                num += di * hd;
                den += wi * hw;
            }
        }
        *out_err = den > 0 ? num / den : 0;
    }
out:
    free(Wp);
    free(Q);
    free(jobs);
    return rc;
}

int dsq_gptq(const float *W, int64_t rows, int64_t cols, const double *H, const dsq_gptq_opts *o,
             const dsq_qmat *dst, double *out_err, dsq_err *err) {
    const dsq_qscheme *d = dsq_q_scheme(dst->type);
    if (!d || d->kind == DSQ_QK_FLOAT || d->gran == DSQ_QG_TENSOR)
        return dsq_fail(err, DSQ_E_ARG, "gptq: scheme %s is not supported", d ? d->name : "?");
    dsq_gptq_factor *f;
    int rc = dsq_gptq_factor_new(&f, H, cols, o, err);
    if (rc) return rc;
    rc = dsq_gptq_apply(W, rows, H, f, o, dst, out_err, err);
    dsq_gptq_factor_free(f);
    return rc;
}


int dsq_gptq_target(const float *W, int64_t rows, int64_t cols, const double *H, const double *C, double damp,
                    double alpha, float *out, dsq_err *err) {
    int64_t n = cols;
    double *A = dsq_malloc(sizeof *A * (size_t)(n * n)), *tmp = dsq_malloc(sizeof *tmp * (size_t)(n * n));
    double *Mx = dsq_malloc(sizeof *Mx * (size_t)(n * n));
    int rc = DSQ_OK;
    if (!A || !tmp || !Mx) { rc = dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory"); goto out; }
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1;
    for (int64_t k = 0; k < n * n; k++) A[k] = H[k];
    for (int64_t i = 0; i < n; i++) A[i * n + i] += (damp > 0 ? damp : 0.01) * mean;
    int sr = dsq_spd_inverse(A, n, tmp, NULL);
    if (sr) {
        rc = sr == DSQ_E_NOMEM ? dsq_fail(err, DSQ_E_NOMEM, "gptq: out of memory")
                               : dsq_fail(err, DSQ_E_ARG, "gptq: Hessian is not positive definite even after damping");
        goto out;
    }
    /* Mx = alpha (C A - I), then out = W + W Mx; each sum over k in
     * ascending order, one add_many (m[j] += c a[j]) per nonzero term */
    const dsq_qkern *K = dsq_qkern_best();
    for (int64_t i = 0; i < n; i++) {
        double *m = Mx + i * n;
        for (int64_t j = 0; j < n; j++) m[j] = 0;
        for (int64_t k = 0; k < n; k++) {
            double c = C[i * n + k];
            if (c != 0) K->add_many(&m, &c, 1, A + k * n, n);
        }
        for (int64_t j = 0; j < n; j++) m[j] = alpha * (m[j] - (i == j));
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * n;
        double *acc = tmp;
        for (int64_t j = 0; j < n; j++) acc[j] = w[j];
        for (int64_t k = 0; k < n; k++) {
            double wk = w[k];
            if (wk != 0) K->add_many(&acc, &wk, 1, Mx + k * n, n);
        }
        for (int64_t j = 0; j < n; j++) out[r * n + j] = (float)acc[j];
    }
out:
    free(A);
    free(tmp);
    free(Mx);
    return rc;
}

/* ---- AWQ ---------------------------------------------------------------------- */

double dsq_weighted_err(const float *W, const dsq_qmat *q, const float *colscale, const float *mean_sq) {
    int64_t rows = q->rows, cols = q->cols;
    float *row = malloc(sizeof *row * (size_t)cols);
    if (!row) return -1;
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++) {
        dsq_q_dequantize(q, r, r + 1, row, NULL);
        for (int64_t j = 0; j < cols; j++) {
            double y = colscale ? (double)row[j] * colscale[j] : row[j];
            double dlt = (double)W[r * cols + j] - y, m = mean_sq ? mean_sq[j] : 1.0;
            num += m * dlt * dlt;
            den += m * (double)W[r * cols + j] * W[r * cols + j];
        }
    }
    free(row);
    return den > 0 ? num / den : 0;
}

void dsq_awq_scales(const float *mean_abs, int64_t cols, float alpha, float *s) {
    double lmax = -INFINITY, lmin = INFINITY;
    for (int64_t j = 0; j < cols; j++) {
        float m = mean_abs[j] > 1e-8f ? mean_abs[j] : 1e-8f;
        s[j] = powf(m, alpha);
        double l = log(s[j]);
        lmax = l > lmax ? l : lmax;
        lmin = l < lmin ? l : lmin;
    }
    float norm = (float)exp(-(lmax + lmin) / 2);
    for (int64_t j = 0; j < cols; j++) s[j] *= norm;
}

int dsq_awq(const float *W, int64_t rows, int64_t cols, const float *mean_abs, const float *mean_sq,
            int n_grid, int clip_steps, const dsq_qmat *dst, float *colscale, float *alpha_out,
            double *out_err, dsq_err *err) {
    /* the search of a one-member group (calib/fold.h), then W diag(s) quantized
     * once more with the chosen scales; the reader multiplies by 1/s */
    dsq_fold_member m = {W, rows, mean_sq, dst->type, clip_steps, 0};
    float *s = dsq_malloc(sizeof *s * (size_t)cols), *Ws = dsq_malloc(sizeof *Ws * (size_t)(rows * cols));
    int rc = s && Ws ? dsq_fold_search(&m, 1, cols, mean_abs, mean_sq, n_grid, s, alpha_out, out_err, err)
                     : dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory");
    if (!rc) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) Ws[r * cols + j] = W[r * cols + j] * s[j];
        dsq_qmat src = {DSQ_Q_F32, rows, cols, Ws, NULL, NULL};
        dsq_qopts qo = {0};
        qo.clip_steps = clip_steps;
        if (!(rc = dsq_q_prepare(&src, dst, &qo, err)) && !(rc = dsq_q_quantize(&src, dst, 0, rows, &qo, err)))
            for (int64_t j = 0; j < cols; j++) colscale[j] = 1.0f / s[j];
    }
    free(s);
    free(Ws);
    return rc;
}
