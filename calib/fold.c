/*
 * fold.c -- the shared AWQ scale search of a group of consumers (fold.h).
 */
#include "calib/fold.h"
#include "calib/methods.h"
#include "common.h"

#include <math.h>

int dsq_fold_search(const dsq_fold_member *m, int n, int64_t cols, const float *mean_abs, const float *mean_sq,
                    int n_grid, float *s_out, float *alpha_out, double *err_out, dsq_err *err) {
    if (n_grid < 1) n_grid = 20;
    int64_t max_rows = 0;
    uint64_t max_bytes = 0;
    double *den = dsq_calloc((size_t)n + 1, sizeof *den);
    if (!den) return dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory");
    for (int k = 0; k < n; k++) {
        const dsq_qscheme *d = dsq_q_scheme(m[k].scheme);
        if (!d) {
            free(den);
            return dsq_fail(err, DSQ_E_ARG, "awq: member %d has no scheme", k);
        }
        if (d->kind == DSQ_QK_FLOAT) continue;
        dsq_qsizes z;
        int rc = dsq_q_sizes(m[k].scheme, m[k].rows, cols, &z, err);
        if (rc) {
            free(den);
            return rc;
        }
        if (m[k].rows > max_rows) max_rows = m[k].rows;
        if (z.data + z.scale + z.zero > max_bytes) max_bytes = z.data + z.scale + z.zero;
        const float *msq = m[k].mean_sq ? m[k].mean_sq : mean_sq;
        for (int64_t r = 0; r < m[k].rows; r++)
            for (int64_t j = 0; j < cols; j++) den[k] += (double)msq[j] * m[k].W[r * cols + j] * m[k].W[r * cols + j];
    }
    float *Ws = dsq_malloc(sizeof *Ws * (size_t)(max_rows * cols + 1));
    float *s = dsq_malloc(sizeof *s * (size_t)cols), *inv = dsq_malloc(sizeof *inv * (size_t)cols);
    uint8_t *buf = dsq_malloc(max_bytes + 1);
    int rc = DSQ_OK;
    if (!Ws || !s || !inv || !buf) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory");
        goto out;
    }
    double best = INFINITY;
    float best_alpha = 0;
    for (int g = 0; g <= n_grid; g++) {
        float alpha = (float)g / (float)n_grid;
        dsq_awq_scales(mean_abs, cols, alpha, s);
        for (int64_t j = 0; j < cols; j++) inv[j] = 1.0f / s[j];
        double num = 0, dsum = 0;
        for (int k = 0; k < n && !rc; k++) {
            if (dsq_q_scheme(m[k].scheme)->kind == DSQ_QK_FLOAT) continue;
            int64_t rows = m[k].rows;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) Ws[r * cols + j] = m[k].W[r * cols + j] * s[j];
            dsq_qsizes z;
            dsq_q_sizes(m[k].scheme, rows, cols, &z, NULL);
            dsq_qmat src = {DSQ_Q_F32, rows, cols, Ws, NULL, NULL};
            dsq_qmat q = {m[k].scheme, rows, cols, buf, z.scale ? buf + z.data : NULL, z.zero ? buf + z.data + z.scale : NULL};
            dsq_qopts qo = {0};
            qo.clip_steps = m[k].clip_steps;
            qo.clip_min = m[k].clip_min;
            if ((rc = dsq_q_prepare(&src, &q, &qo, err)) || (rc = dsq_q_quantize(&src, &q, 0, rows, &qo, err))) break;
            double e = dsq_weighted_err(m[k].W, &q, inv, m[k].mean_sq ? m[k].mean_sq : mean_sq);
            if (e < 0) { rc = dsq_fail(err, DSQ_E_NOMEM, "awq: out of memory"); break; }
            num += e * den[k];
            dsum += den[k];
        }
        if (rc) break;
        double e = dsum > 0 ? num / dsum : 0;
        if (e < best) { /* first best wins: alpha 0 (plain) on ties */
            best = e;
            best_alpha = alpha;
            memcpy(s_out, s, sizeof *s * (size_t)cols);
        }
    }
    if (!rc) {
        if (alpha_out) *alpha_out = best_alpha;
        if (err_out) *err_out = best;
    }
out:
    free(den);
    free(Ws);
    free(s);
    free(inv);
    free(buf);
    return rc;
}
