/*
 * qmatrix.c -- scheme/method decisions and one-matrix quantization (see
 * qmatrix.h).
 */
#include "pipeline/qmatrix.h"
#include "calib/methods.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <xxhash.h>

void dsq_matrix_scratch_deinit(dsq_matrix_scratch *w) {
    free(w->wf);
    free(w->imp);
    dsq_gptq_factor_free(w->gf);
    memset(w, 0, sizeof *w);
}

/* The GPTQ factor for Hessian H (cols x cols) and the method's options:
 * the cached one when H and the options are those it was made from (an
 * expert's gate and up read one input, and the factor is most of GPTQ's
 * work), else a new one, which replaces it.  The key is the XXH3 of H's
 * bytes: checked like the container's arrays, not compared element by
 * element, so the cache costs no copy of H. */
static int gptq_factor(dsq_matrix_scratch *w, const double *H, int64_t cols, const dsq_gptq_opts *go, const char *what,
                       dsq_err *err) {
    uint64_t key = XXH3_64bits(H, sizeof *H * (size_t)(cols * cols));
    if (w->gf && w->gf_key == key && w->gf_cols == cols && w->gf_damp == go->damp && w->gf_act == go->act_order &&
        w->gf_refine == (go->refine > 0))
        return DSQ_OK;
    dsq_gptq_factor_free(w->gf);
    w->gf = NULL;
    int rc = dsq_gptq_factor_new(&w->gf, H, cols, go, err);
    if (rc) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return dsq_fail(err, rc, "%s: %s", what, msg);
    }
    w->gf_key = key;
    w->gf_cols = cols;
    w->gf_damp = go->damp;
    w->gf_act = go->act_order;
    w->gf_refine = go->refine > 0;
    return DSQ_OK;
}

int dsq_ggml_fallback(int s, int64_t cols) {
    for (int guard = 0; guard < 4; guard++) {
        const dsq_qscheme *q = dsq_q_scheme(s);
        if (!q || q->kind != DSQ_QK_GGML || cols % q->group == 0) return s;
        switch (s) {
        case DSQ_Q_GGML_Q2_K: case DSQ_Q_GGML_Q3_K: s = DSQ_Q_GGML_Q4_0; break;
        case DSQ_Q_GGML_Q4_K: s = DSQ_Q_GGML_Q5_0; break;
        case DSQ_Q_GGML_Q5_K: s = DSQ_Q_GGML_Q5_1; break;
        case DSQ_Q_GGML_Q6_K: s = DSQ_Q_GGML_Q8_0; break;
        case DSQ_Q_GGML_IQ4_XS: s = DSQ_Q_GGML_IQ4_NL; break;
        default: return DSQ_Q_F16;
        }
    }
    return DSQ_Q_F16;
}

int dsq_method_for(const dsq_recipe *r, const char *name, dsq_role role, int layer, int64_t cols, int src_scheme,
                    int have_calib, dsq_method *m, dsq_err *err) {
    memset(m, 0, sizeof *m);
    m->fallback_from = -1;
    const dsq_rule *u = dsq_recipe_match(r, name, role, layer);
    int s;
    if (u) s = u->scheme;
    else if (dsq_role_is_projection(role)) s = r->default_scheme;
    else if (role == DSQ_R_IDX_WEIGHTS_PROJ || role == DSQ_R_MTP_EH_PROJ) s = -1;
    else if (role == DSQ_R_EMBED || role == DSQ_R_HEAD || role == DSQ_R_MTP_EMBED || role == DSQ_R_MTP_HEAD)
        s = r->n_rules || r->default_scheme >= 0 ? DSQ_Q_BF16 : -1;
    else s = r->n_rules || r->default_scheme >= 0 ? DSQ_Q_F32 : -1;
    if (s < 0) s = src_scheme;
    int fb = dsq_ggml_fallback(s, cols);
    if (fb != s && u && u->fallback >= 0) fb = dsq_ggml_fallback(u->fallback, cols);
    if (fb != s) {
        m->fallback_from = s;
        s = fb;
    }
    m->scheme = s;
    m->method = DSQ_METHOD_PLAIN;
    if (u) {
        m->opts.clip_steps = u->clip_steps;
        m->opts.clip_min = u->clip_min;
        m->damp = u->damp > 0 ? u->damp : 0.01;
        m->act_order = u->act_order;
        m->refine = u->refine;
        m->ref_target = u->ref_target;
        m->grid = u->grid ? u->grid : 20;
        if (!strcmp(u->method, "gptq")) m->method = DSQ_METHOD_GPTQ;
        else if (!strcmp(u->method, "awq")) m->method = DSQ_METHOD_AWQ;
        else if (!strcmp(u->method, "awq-gptq")) m->method = DSQ_METHOD_AWQ_GPTQ;
        else if (m->opts.clip_steps >= 2) m->method = DSQ_METHOD_MSE;
    }
    const dsq_qscheme *sd = dsq_q_scheme(s);
    if (m->method != DSQ_METHOD_PLAIN && sd->kind == DSQ_QK_FLOAT) m->method = DSQ_METHOD_PLAIN; /* nothing to calibrate */
    if (dsq_method_needs_stats(m->method) && !have_calib)
        return dsq_fail(err, DSQ_E_ARG, "%s: method %s needs calibration statistics (dsq quant --calib FILE.dsqcal)",
                        name, u->method);
    if ((m->method == DSQ_METHOD_GPTQ || m->method == DSQ_METHOD_AWQ_GPTQ) && sd->gran == DSQ_QG_TENSOR)
        return dsq_fail(err, DSQ_E_ARG, "%s: gptq does not support per-tensor scheme %s", name, sd->name);
    m->copy = s == src_scheme && m->method == DSQ_METHOD_PLAIN;
    const char *mn = m->copy ? "copy" : m->method == DSQ_METHOD_GPTQ ? "gptq" : m->method == DSQ_METHOD_AWQ ? "awq"
                   : m->method == DSQ_METHOD_AWQ_GPTQ ? "awq-gptq" : m->method == DSQ_METHOD_MSE ? "mse" : "absmax";
    int o = snprintf(m->recipe, sizeof m->recipe, "{\"scheme\":\"%s\",\"method\":\"%s\"", sd->name, mn);
    if (m->method == DSQ_METHOD_MSE || (m->method != DSQ_METHOD_PLAIN && m->opts.clip_steps >= 2))
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"clip_steps\":%d", m->opts.clip_steps);
    if (m->method == DSQ_METHOD_GPTQ || m->method == DSQ_METHOD_AWQ_GPTQ)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"damp\":%g,\"act_order\":%s", m->damp,
                      m->act_order ? "true" : "false");
    if ((m->method == DSQ_METHOD_GPTQ || m->method == DSQ_METHOD_AWQ_GPTQ) && m->refine)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"refine\":%d", m->refine);
    if (m->method == DSQ_METHOD_GPTQ && m->ref_target > 0)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"ref_target\":%g", m->ref_target);
    if (dsq_method_has_colscale(m->method)) o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"grid\":%d", m->grid);
    if (have_calib && m->method != DSQ_METHOD_PLAIN)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"calib\":true");
    if (m->fallback_from >= 0)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"fallback_from\":\"%s\"",
                      dsq_q_scheme(m->fallback_from)->name);
    snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, "}");
    return DSQ_OK;
}

/* ---- AWQ folding ------------------------------------------------------- */

dsq_role dsq_fold_norm_of(dsq_role role) {
    switch (role) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_KV_A: case DSQ_R_IDX_WK: case DSQ_R_IDX_WEIGHTS_PROJ: return DSQ_R_INPUT_NORM;
    case DSQ_R_ATTN_Q_B: case DSQ_R_IDX_WQ_B: return DSQ_R_ATTN_Q_A_NORM;
    case DSQ_R_ATTN_KV_B: return DSQ_R_ATTN_KV_A_NORM;
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP:
    case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: case DSQ_R_ROUTER: return DSQ_R_POST_ATTN_NORM;
    default: return DSQ_R_UNKNOWN;
    }
}

int dsq_fold_record(const dsq_config *cfg, dsq_role norm, int layer, char *out, size_t n) {
    if (layer < 0 || layer >= cfg->n_layers) return -1;
    dsq_role rec = DSQ_R_UNKNOWN; /* the first weight of the group, which owns the record */
    switch (norm) {
    case DSQ_R_INPUT_NORM: rec = cfg->q_lora_rank > 0 ? DSQ_R_ATTN_Q_A : DSQ_R_UNKNOWN; break;
    case DSQ_R_ATTN_Q_A_NORM: rec = cfg->q_lora_rank > 0 ? DSQ_R_ATTN_Q_B : DSQ_R_UNKNOWN; break;
    case DSQ_R_ATTN_KV_A_NORM: rec = DSQ_R_ATTN_KV_B; break;
    case DSQ_R_POST_ATTN_NORM:
        rec = !dsq_config_is_moe_layer(cfg, layer) ? DSQ_R_DENSE_GATE : cfg->n_shared_experts > 0 ? DSQ_R_SHEXP_GATE : DSQ_R_UNKNOWN;
        break;
    default: break;
    }
    return rec == DSQ_R_UNKNOWN ? -1 : dsq_layer_weight_name(out, n, layer, -1, rec);
}

int dsq_fold_members(const dsq_config *cfg, dsq_role norm, int layer, dsq_fold_name **out) {
    static const struct { dsq_role role; int indexer; } proj[] = {
        {DSQ_R_ATTN_Q_A, 0}, {DSQ_R_ATTN_KV_A, 0}, {DSQ_R_IDX_WK, 1}, {DSQ_R_ATTN_Q_B, 0}, {DSQ_R_IDX_WQ_B, 1},
        {DSQ_R_ATTN_KV_B, 0}, {DSQ_R_DENSE_GATE, 0}, {DSQ_R_DENSE_UP, 0}, {DSQ_R_SHEXP_GATE, 0}, {DSQ_R_SHEXP_UP, 0},
        {DSQ_R_EXP_GATE, 0}, {DSQ_R_EXP_UP, 0},
    };
    *out = NULL;
    char rec[200];
    if (dsq_fold_record(cfg, norm, layer, rec, sizeof rec)) return 0;
    int moe = dsq_config_is_moe_layer(cfg, layer), n = 0;
    dsq_fold_name *v = dsq_calloc((size_t)(10 + 2 * cfg->n_routed_experts), sizeof *v);
    if (!v) return -1;
    for (size_t k = 0; k < sizeof proj / sizeof proj[0]; k++) {
        dsq_role ro = proj[k].role;
        if (dsq_fold_norm_of(ro) != norm || (proj[k].indexer && !cfg->has_indexer)) continue;
        int dense = ro == DSQ_R_DENSE_GATE || ro == DSQ_R_DENSE_UP, routed = ro == DSQ_R_EXP_GATE || ro == DSQ_R_EXP_UP;
        if (norm == DSQ_R_POST_ATTN_NORM && (moe ? dense : !dense)) continue;
        if ((ro == DSQ_R_SHEXP_GATE || ro == DSQ_R_SHEXP_UP) && !cfg->n_shared_experts) continue;
        for (int e = 0; e < (routed ? cfg->n_routed_experts : 1); e++, n++) {
            v[n].role = ro;
            dsq_layer_weight_name(v[n].name, sizeof v[n].name, layer, routed ? e : -1, ro);
            dsq_layer_weight_name(v[n].match, sizeof v[n].match, layer, -1, ro);
        }
    }
    *out = v;
    return n;
}

int dsq_fold_group(const dsq_recipe *r, const dsq_config *cfg, dsq_role norm, int layer) {
    dsq_fold_name *v;
    int n = dsq_fold_members(cfg, norm, layer, &v), ok = n > 0;
    for (int k = 0; k < n && ok; k++) {
        const dsq_rule *u = dsq_recipe_match(r, v[k].match, v[k].role, layer);
        if (!u || strcmp(u->method, "awq") || u->scheme < 0 || dsq_q_scheme(u->scheme)->kind == DSQ_QK_FLOAT) ok = 0;
    }
    free(v);
    return ok;
}

void dsq_method_fold(const dsq_recipe *r, const dsq_config *cfg, dsq_role role, int layer, dsq_method *m,
                      char *rec, size_t n) {
    int is_norm = role == DSQ_R_INPUT_NORM || role == DSQ_R_ATTN_Q_A_NORM || role == DSQ_R_ATTN_KV_A_NORM ||
                  role == DSQ_R_POST_ATTN_NORM;
    dsq_role norm = is_norm ? role : dsq_fold_norm_of(role);
    if (norm == DSQ_R_UNKNOWN || !dsq_fold_group(r, cfg, norm, layer)) return;
    dsq_fold_record(cfg, norm, layer, rec, n);
    const char *mn;
    if (is_norm || m->method != DSQ_METHOD_AWQ) {
        /* the norm, the router, the indexer's weights_proj: exact, in f32 */
        m->scheme = DSQ_Q_F32;
        m->method = is_norm ? DSQ_METHOD_FOLD_NORM : DSQ_METHOD_FOLD_SCALE;
        m->opts.clip_steps = 0;
        mn = is_norm ? "awq-fold-norm" : "awq-fold-scale";
    } else {
        m->method = DSQ_METHOD_AWQ_FOLD;
        mn = "awq-fold";
    }
    m->copy = 0;
    int o = snprintf(m->recipe, sizeof m->recipe, "{\"scheme\":\"%s\",\"method\":\"%s\"", dsq_q_scheme(m->scheme)->name, mn);
    if (m->method == DSQ_METHOD_AWQ_FOLD && m->opts.clip_steps >= 2)
        o += snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"clip_steps\":%d", m->opts.clip_steps);
    snprintf(m->recipe + o, sizeof m->recipe - (size_t)o, ",\"calib\":true}");
}

void dsq_method_uncalibrated(dsq_method *m, int src_scheme) {
    if (!dsq_method_needs_stats(m->method)) return;
    m->method = DSQ_METHOD_PLAIN;
    m->opts.clip_steps = 0;
    m->copy = m->scheme == src_scheme;
    snprintf(m->recipe, sizeof m->recipe, "{\"scheme\":\"%s\",\"method\":\"%s\",\"note\":\"no calibration data\"}",
             dsq_q_scheme(m->scheme)->name, m->copy ? "copy" : "absmax");
}

int dsq_quantize_matrix(struct dsq_pool *pool, const dsq_method *m, const dsq_qmat *src_in,
                        const void *colscale_in, const dsq_cstat *st, const dsq_qmat *dst,
                        float *colscale_out, dsq_matrix_scratch *w, const char *what, dsq_err *err) {
    int rc;
    dsq_qmat src = *src_in;
    int64_t rows = src.rows, cols = src.cols;
    if (colscale_in || dsq_method_needs_stats(m->method)) {
        uint64_t n = (uint64_t)(rows * cols);
        if (n > w->wf_cap) {
            free(w->wf);
            w->wf = dsq_malloc(sizeof *w->wf * n);
            w->wf_cap = w->wf ? n : 0;
            if (!w->wf) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        }
        if ((rc = dsq_q_dequantize(src_in, 0, rows, w->wf, err))) return rc;
        if (colscale_in)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) w->wf[r * cols + j] *= dsq_lef32((const uint8_t *)colscale_in + 4 * j);
        src = (dsq_qmat){DSQ_Q_F32, rows, cols, w->wf, NULL, NULL};
    }
    if (st && st->cols != cols)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: calibration statistics have %lld columns, the weight %lld", what,
                        (long long)st->cols, (long long)cols);
    if (!st && dsq_method_needs_stats(m->method))
        return dsq_fail(err, DSQ_E_NOTFOUND, "%s: no calibration statistics for it", what);
    /* per-column E[x^2] and E|x|: the weights of mse and awq */
    if (st && (m->method == DSQ_METHOD_MSE || m->method == DSQ_METHOD_AWQ || m->method == DSQ_METHOD_AWQ_GPTQ)) {
        if ((uint64_t)cols * 2 > w->imp_cap) {
            free(w->imp);
            w->imp = dsq_malloc(sizeof *w->imp * (size_t)cols * 2);
            w->imp_cap = w->imp ? (uint64_t)cols * 2 : 0;
            if (!w->imp) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", what);
        }
        dsq_cstat_mean_sq(st, w->imp);
        dsq_cstat_mean_abs(st, w->imp + cols);
    }
    dsq_qopts qo = m->opts;
    if (st && m->method == DSQ_METHOD_MSE) qo.imp = w->imp;
    if (dsq_method_is_fold(m->method)) {
        if (!st->fold)
            return dsq_fail(err, DSQ_E_NOTFOUND, "%s: the calibration file has no folded AWQ scales for it (calibrate with the same recipe)", what);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) {
                if (m->method == DSQ_METHOD_FOLD_NORM) w->wf[r * cols + j] /= st->fold[j];
                else w->wf[r * cols + j] *= st->fold[j];
            }
        return dsq_q_quantize_pool(pool, &src, dst, &qo, err); /* clip search as the rule says (0 for norm / scale) */
    }
    switch (m->method) {
    case DSQ_METHOD_GPTQ: {
        double *H = dsq_malloc(sizeof *H * (size_t)(cols * cols));
        if (!H) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory for the Hessian", what);
        if (dsq_cstat_hessian_stored(st, H)) {
            free(H);
            return dsq_fail(err, DSQ_E_NOTFOUND, "%s: the calibration file has no Hessian for it (calibrate with a gptq recipe)", what);
        }
        dsq_gptq_opts go = {m->damp, m->act_order, 128, pool, m->opts.clip_steps, m->opts.clip_min, m->refine};
        rc = DSQ_OK;
        const float *tw = w->wf;
        float *wt = NULL;
        if (m->ref_target > 0 && st->xcov) {
            /* asymmetric target: reproduce the reference outputs from the quantized inputs */
            double *C = dsq_malloc(sizeof *C * (size_t)(cols * cols));
            wt = dsq_malloc(sizeof *wt * (size_t)(rows * cols));
            if (!C || !wt) rc = dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory for the cross moment", what);
            else {
                dsq_cstat_xcov(st, C);
                rc = dsq_gptq_target(w->wf, rows, cols, H, C, m->damp, m->ref_target, wt, err);
            }
            free(C);
            tw = wt;
        }
        if (!rc) rc = gptq_factor(w, H, cols, &go, what, err);
        free(H);
        if (!rc) rc = dsq_gptq_apply(tw, rows, NULL, w->gf, &go, dst, NULL, err);
        free(wt);
        return rc;
    }
    case DSQ_METHOD_AWQ: {
        float alpha;
        return dsq_awq(w->wf, rows, cols, w->imp + cols, w->imp, m->grid, m->opts.clip_steps, dst, colscale_out,
                       &alpha, NULL, err);
    }
    case DSQ_METHOD_AWQ_GPTQ: {
        /* GPTQ of W diag(s) against the Hessian of x / s (H'_ij = H_ij /
         * (s_i s_j)) for channel scales s_j = E|x_j|^alpha (normalised as in
         * AWQ), alpha in {0, 1/8, ..., 1/2}; alpha = 0 is plain GPTQ.  The
         * output error tr(dW H dW^T) is the same in both spaces, so the
         * candidate with the smallest one wins. */
        double *H = dsq_malloc(sizeof *H * (size_t)(cols * cols)), *Hs = dsq_malloc(sizeof *Hs * (size_t)(cols * cols));
        float *Ws = dsq_malloc(sizeof *Ws * (size_t)(rows * cols)), *sc = dsq_malloc(sizeof *sc * (size_t)cols);
        dsq_qsizes qz;
        uint8_t *best = NULL;
        if (!H || !Hs || !Ws || !sc || dsq_q_sizes(dst->type, rows, cols, &qz, NULL) ||
            !(best = dsq_malloc(qz.data + qz.scale + qz.zero + 1))) {
            free(H); free(Hs); free(Ws); free(sc); free(best);
            return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory for the Hessian", what);
        }
        if (dsq_cstat_hessian_stored(st, H)) {
            free(H); free(Hs); free(Ws); free(sc); free(best);
            return dsq_fail(err, DSQ_E_NOTFOUND, "%s: the calibration file has no Hessian for it (calibrate with a gptq recipe)", what);
        }
        double best_e = INFINITY;
        dsq_gptq_opts go = {m->damp, m->act_order, 128, pool, m->opts.clip_steps, m->opts.clip_min, m->refine};
        for (int k = 0; k <= 4 && !rc; k++) {
            float alpha = 0.125f * (float)k;
            dsq_awq_scales(w->imp + cols, cols, alpha, sc);
            for (int64_t i = 0; i < cols; i++)
                for (int64_t j = 0; j < cols; j++) Hs[i * cols + j] = H[i * cols + j] / ((double)sc[i] * sc[j]);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) Ws[r * cols + j] = w->wf[r * cols + j] * sc[j];
            double e;
            if ((rc = dsq_gptq(Ws, rows, cols, Hs, &go, dst, &e, err))) break;
            if (e < best_e) {
                best_e = e;
                memcpy(best, dst->data, qz.data);
                if (qz.scale) memcpy(best + qz.data, dst->scale, qz.scale);
                if (qz.zero) memcpy(best + qz.data + qz.scale, dst->zero, qz.zero);
                for (int64_t j = 0; j < cols; j++) colscale_out[j] = 1.0f / sc[j];
            }
        }
        if (!rc) {
            memcpy(dst->data, best, qz.data);
            if (qz.scale) memcpy(dst->scale, best + qz.data, qz.scale);
            if (qz.zero) memcpy(dst->zero, best + qz.data + qz.scale, qz.zero);
        }
        free(H); free(Hs); free(Ws); free(sc); free(best);
        return rc;
    }
    default:
        return dsq_q_quantize_pool(pool, &src, dst, &qo, err);
    }
}
