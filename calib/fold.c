/*
 * fold.c -- the shared AWQ scale search of a group of consumers (fold.h).
 */
#include "calib/fold.h"
#include "calib/methods.h"
#include "common.h"

#include <math.h>

int dsq_fold_accum(const dsq_fold_member *m, int64_t cols, const float *mean_abs, const float *mean_sq, int n_grid,
                   double *num, double *den, dsq_err *err) {
    const dsq_qscheme *d = dsq_q_scheme(m->scheme);
    if (!d) return dsq_fail(err, DSQ_E_ARG, "awq: member without a scheme");
    if (d->kind == DSQ_QK_FLOAT) return DSQ_OK; /* scaled exactly: no error */
    if (n_grid < 1) n_grid = 20;
    const float *msq = m->mean_sq ? m->mean_sq : mean_sq;
    int64_t rows = m->rows;
    dsq_qsizes z;
    int rc = dsq_q_sizes(m->scheme, rows, cols, &z, err);
    if (rc) return rc;
    float *Ws = dsq_malloc(sizeof *Ws * (size_t)(rows * cols + 1));
    float *s = dsq_malloc(sizeof *s * (size_t)cols), *inv = dsq_malloc(sizeof *inv * (size_t)cols);
    uint8_t *buf = dsq_malloc(z.data + z.scale + z.zero + 1);
    if (!Ws || !s || !inv || !buf) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory");
        goto out;
    }
    double dn = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) dn += (double)msq[j] * m->W[r * cols + j] * m->W[r * cols + j];
    for (int g = 0; g <= n_grid; g++) {
        dsq_awq_scales(mean_abs, cols, (float)g / (float)n_grid, s);
        for (int64_t j = 0; j < cols; j++) inv[j] = 1.0f / s[j];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) Ws[r * cols + j] = m->W[r * cols + j] * s[j];
        dsq_qmat src = {DSQ_Q_F32, rows, cols, Ws, NULL, NULL};
        dsq_qmat q = {m->scheme, rows, cols, buf, z.scale ? buf + z.data : NULL, z.zero ? buf + z.data + z.scale : NULL};
        dsq_qopts qo = {0};
        qo.clip_steps = m->clip_steps;
        qo.clip_min = m->clip_min;
        if ((rc = dsq_q_prepare(&src, &q, &qo, err)) || (rc = dsq_q_quantize(&src, &q, 0, rows, &qo, err))) goto out;
        double e = dsq_weighted_err(m->W, &q, inv, msq);
        if (e < 0) { rc = dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory"); goto out; }
        num[g] += e * dn;
    }
    *den += dn;
out:
    free(Ws);
    free(s);
    free(inv);
    free(buf);
    return rc;
}

void dsq_fold_pick(const double *num, double den, int n_grid, int64_t cols, const float *mean_abs, float *s_out,
                   float *alpha_out, double *err_out) {
    if (n_grid < 1) n_grid = 20;
    int best = 0;
    for (int g = 1; g <= n_grid; g++)
        if (num[g] < num[best]) best = g; /* first best wins: alpha 0 (plain) on ties */
    float alpha = (float)best / (float)n_grid;
    dsq_awq_scales(mean_abs, cols, alpha, s_out);
    if (alpha_out) *alpha_out = alpha;
    if (err_out) *err_out = den > 0 ? num[best] / den : 0;
}

int dsq_fold_search(const dsq_fold_member *m, int n, int64_t cols, const float *mean_abs, const float *mean_sq,
                    int n_grid, float *s_out, float *alpha_out, double *err_out, dsq_err *err) {
    if (n_grid < 1) n_grid = 20;
    double *num = dsq_calloc((size_t)n_grid + 1, sizeof *num), den = 0;
    if (!num) return dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory");
    int rc = DSQ_OK;
    for (int k = 0; k < n && !rc; k++) rc = dsq_fold_accum(&m[k], cols, mean_abs, mean_sq, n_grid, num, &den, err);
    if (!rc) dsq_fold_pick(num, den, n_grid, cols, mean_abs, s_out, alpha_out, err_out);
    free(num);
    return rc;
}
