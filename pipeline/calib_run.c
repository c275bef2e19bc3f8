/*
 * calib_run.c -- sequential calibration (see calib_run.h).
 *
 * For layer l: every window's residual stream (computed with the quantized
 * layers < l) goes through layer l once per stage (see stage_of) while the
 * forward pass reports the inputs of that stage's linear layers, computed
 * with the earlier stages already quantized; the statistics decide the
 * stage's quantization (qmatrix.c, the same code `dsq quant` runs).  Then
 * the windows go through the quantized layer l to give layer l+1 its
 * inputs.
 */
#include "pipeline/calib_run.h"
#include "common.h"
#include "common/pool.h"
#include "pipeline/pipeline.h"
#include "pipeline/qmatrix.h"
#include "calib/fold.h"
#include "formats/source.h"
#include "verify/forward.h"
#include "verify/weights_overlay.h"

#include <stdio.h>

typedef struct cctx {
    const dsq_calib_opts *o;
    dsq_cstats *cs;
    const dsq_config *cfg;
    int stage;          /* inputs recorded: those of this stage only (see stage_of) */
    int fail;
    dsq_err *err;
    /* asymmetric targets: the reference model's inputs of the current stage
     * for the current window, by observed role (non-routed sites only) */
    int capture;        /* 1: the observed pass is the reference model's */
    float *ref[DSQ_R_COUNT];
    int64_t ref_n[DSQ_R_COUNT], ref_cap[DSQ_R_COUNT];
} cctx;

/* Within a layer the linear layers are quantized in the order data flows
 * ("true sequential"): each stage's inputs are recorded with the earlier
 * stages already quantized.
 *   0: q_a, kv_a, indexer wk and weights_proj   (input: input_layernorm output)
 *   1: q_b, indexer wq_b, kv_b                  (q_a_layernorm output, KV latent)
 *   2: o                                        (attention output)
 *   3: gate and up of the dense FFN, shared and routed experts
 *   4: their down projections */
#define N_STAGES 5
static int stage_of(dsq_role r) {
    switch (r) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_KV_A: case DSQ_R_IDX_WK: case DSQ_R_IDX_WEIGHTS_PROJ: return 0;
    case DSQ_R_ATTN_Q_B: case DSQ_R_IDX_WQ_B: case DSQ_R_ATTN_KV_B: return 1;
    case DSQ_R_ATTN_O: return 2;
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP:
    case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: return 3;
    case DSQ_R_DENSE_DOWN: case DSQ_R_SHEXP_DOWN: case DSQ_R_EXP_DOWN: return 4;
    default: return -1;
    }
}

/* Does the recipe want a Hessian for weight `name` (role, layer)? */
static int wants_hess(cctx *c, const char *name, dsq_role role, int layer) {
    if (c->o->hessian >= 0) return c->o->hessian;
    const dsq_rule *u = dsq_recipe_match(c->o->recipe, name, role, layer);
    return u && (!strcmp(u->method, "gptq") || !strcmp(u->method, "awq-gptq"));
}

/* The weights that read each observed input; the first owns the statistics
 * record, the others are aliases of it. */
static const struct { dsq_role site; dsq_role w[4]; } g_sites[] = {
    {DSQ_R_ATTN_Q_A, {DSQ_R_ATTN_Q_A, DSQ_R_ATTN_KV_A, DSQ_R_IDX_WK, DSQ_R_IDX_WEIGHTS_PROJ}},
    {DSQ_R_ATTN_Q_B, {DSQ_R_ATTN_Q_B, DSQ_R_IDX_WQ_B}},
    {DSQ_R_ATTN_KV_B, {DSQ_R_ATTN_KV_B}},
    {DSQ_R_ATTN_O, {DSQ_R_ATTN_O}},
    {DSQ_R_DENSE_GATE, {DSQ_R_DENSE_GATE, DSQ_R_DENSE_UP}},
    {DSQ_R_DENSE_DOWN, {DSQ_R_DENSE_DOWN}},
    {DSQ_R_SHEXP_GATE, {DSQ_R_SHEXP_GATE, DSQ_R_SHEXP_UP}},
    {DSQ_R_SHEXP_DOWN, {DSQ_R_SHEXP_DOWN}},
    {DSQ_R_EXP_GATE, {DSQ_R_EXP_GATE, DSQ_R_EXP_UP}},
    {DSQ_R_EXP_DOWN, {DSQ_R_EXP_DOWN}},
};

/* Name of weight `role` in layer l (expert e), and the name recipes match
 * it by (routed experts: their stacked name; the others: the same). */
static void consumer_names(dsq_role role, int l, int e, char *name, char *match, size_t cap) {
    dsq_layer_weight_name(name, cap, l, e, role);
    dsq_layer_weight_name(match, cap, l, -1, role);
}

/* Does the recipe want an asymmetric target for weight `name`? */
static int wants_ref(cctx *c, const char *name, dsq_role role, int layer) {
    const dsq_rule *u = dsq_recipe_match(c->o->recipe, name, role, layer);
    return u && !strcmp(u->method, "gptq") && u->ref_target > 0;
}

/* Does any rule of the recipe ask for asymmetric targets? */
static int recipe_wants_ref(const dsq_recipe *r) {
    for (int i = 0; i < r->n_rules; i++)
        if (!strcmp(r->rules[i].method, "gptq") && r->rules[i].ref_target > 0) return 1;
    return 0;
}

/* File n rows of x (n may be 0: only create the record) under the
 * weights of site `site` in layer l (expert e); with ref (the same rows as
 * the reference model computes them) also their cross moment. */
static void record(cctx *c, dsq_role site, int l, int e, const float *x, int n, int cols, const float *ref) {
    for (size_t i = 0; i < sizeof g_sites / sizeof g_sites[0]; i++) {
        if (g_sites[i].site != site) continue;
        const dsq_role *w = g_sites[i].w;
        char name[4][200], match[200];
        int nw = 0, h = 0, rf = 0;
        for (int k = 0; k < 4 && w[k]; k++) {
            if (dsq_role_class(w[k]) == DSQ_C_INDEXER && !c->cfg->has_indexer) continue;
            consumer_names(w[k], l, e, name[nw], match, sizeof match);
            h = h || wants_hess(c, match, w[k], l);
            rf = rf || wants_ref(c, match, w[k], l);
            nw++;
        }
        dsq_cstat *s = dsq_cstats_get(c->cs, name[0], cols, h);
        if (!s) {
            c->fail = dsq_fail(c->err, DSQ_E_NOMEM, "calib: cannot keep statistics for %s", name[0]);
            return;
        }
        if (n > 0) dsq_cstat_add(s, x, n);
        if (n > 0 && ref && rf && s->hess && dsq_cstat_add_ref(s, ref, x, n))
            c->fail = dsq_fail(c->err, DSQ_E_NOMEM, "calib: cannot keep statistics for %s", name[0]);
        for (int k = 1; k < nw; k++)
            if (dsq_cstats_alias(c->cs, name[k], name[0])) c->fail = dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
        return;
    }
}

/* The forward pass's hook: file x under the weight(s) that read it. */
static void on_input(void *arg, int l, dsq_role role, int e, const float *x, int n, int cols) {
    cctx *c = arg;
    if (c->fail || stage_of(role) != c->stage) return;
    if (c->capture) {
        /* the reference pass: keep this window's input of the site */
        if (e >= 0) return;
        int64_t need = (int64_t)n * cols;
        if (need > c->ref_cap[role]) {
            free(c->ref[role]);
            c->ref[role] = dsq_malloc(sizeof(float) * (size_t)need);
            c->ref_cap[role] = c->ref[role] ? need : 0;
            if (!c->ref[role]) { c->fail = dsq_fail(c->err, DSQ_E_NOMEM, "calib: out of memory"); return; }
        }
        memcpy(c->ref[role], x, sizeof(float) * (size_t)need);
        c->ref_n[role] = need;
        return;
    }
    const float *ref = e < 0 && c->ref_n[role] == (int64_t)n * cols ? c->ref[role] : NULL;
    record(c, role, l, e, x, n, cols, ref);
}

/* Statistics of the output head's input: the final norm of the last
 * residual stream (and, with asymmetric targets, of the reference one). */
static int head_stats(cctx *c, const dsq_weights *w, const float *resid, const float *resid0, int64_t n, dsq_err *err) {
    const char *name = dsq_top_weight_name(DSQ_R_HEAD);
    int64_t D = c->cfg->hidden_size;
    int nid = w->find(w->ctx, dsq_top_weight_name(DSQ_R_FINAL_NORM));
    if (nid < 0 || w->find(w->ctx, name) < 0) return DSQ_OK; /* checked by the model reader */
    int h = wants_hess(c, name, DSQ_R_HEAD, -1), rf = resid0 && h && wants_ref(c, name, DSQ_R_HEAD, -1);
    dsq_cstat *s = dsq_cstats_get(c->cs, name, D, h);
    float *g = dsq_malloc(sizeof *g * (size_t)D), *x = dsq_malloc(sizeof *x * (size_t)(256 * D));
    float *r = rf ? dsq_malloc(sizeof *r * (size_t)(256 * D)) : NULL;
    int rc = DSQ_OK;
    if (!s || !g || !x || (rf && !r)) rc = dsq_fail(err, DSQ_E_NOMEM, "calib: cannot keep statistics for %s", name);
    else rc = w->rows_f32(w->ctx, nid, 0, 1, g, err);
    for (int64_t t0 = 0; !rc && t0 < n; t0 += 256) {
        int64_t k = n - t0 < 256 ? n - t0 : 256;
        for (int64_t t = 0; t < k; t++) {
            dsq_fwd_rmsnorm(resid + (t0 + t) * D, g, (int)D, (float)c->cfg->rms_norm_eps, x + t * D);
            if (rf) dsq_fwd_rmsnorm(resid0 + (t0 + t) * D, g, (int)D, (float)c->cfg->rms_norm_eps, r + t * D);
        }
        dsq_cstat_add(s, x, k);
        if (rf && dsq_cstat_add_ref(s, r, x, k)) rc = dsq_fail(err, DSQ_E_NOMEM, "calib: cannot keep statistics for %s", name);
    }
    free(g);
    free(x);
    free(r);
    return rc;
}

/* Storage scheme of a weight in the source model (f32 for element types no
 * scheme stores), or -1 when the model lacks it. */
static int src_scheme(const dsq_src *src, const char *name) {
    int i = dsq_src_find(src, name);
    if (i < 0) return -1;
    int sc = dsq_src_tensor(src, i)->scheme;
    return sc >= 0 ? sc : DSQ_Q_F32;
}

/* Columns of the source tensor `name` (0 when absent: src_scheme reports it). */
static int64_t src_cols(const dsq_src *src, const char *name) {
    int i = dsq_src_find(src, name);
    return i < 0 ? 0 : dsq_src_tensor(src, i)->cols;
}

/* Quantize one weight of the layer into the overlay, if the recipe changes it. */
/* match_name: the name recipes see (routed experts: their stacked name). */
static int quantize_weight(const dsq_calib_opts *o, const dsq_weights *w, dsq_woverlay *ov, const dsq_cstats *cs,
                           dsq_pool *pool, dsq_matrix_scratch *work, const char *name, const char *match_name,
                           dsq_role role, int layer, dsq_err *err) {
    int ss = src_scheme(o->src, name);
    if (ss < 0) return dsq_fail(err, DSQ_E_NOTFOUND, "calib: model lacks '%s'", name);
    dsq_method qm;
    char rec[200];
    int rc = dsq_method_for(o->recipe, match_name, role, layer, src_cols(o->src, name), ss, 1, &qm, err);
    if (rc) return rc;
    if (layer >= 0) dsq_method_fold(o->recipe, w->cfg, role, layer, &qm, rec, sizeof rec);
    if (qm.copy) return DSQ_OK;
    int id = w->find(w->ctx, name);
    int64_t shape[4];
    int nd = w->shape(w->ctx, id, shape);
    int64_t rows = nd == 2 ? shape[0] : 1, cols = nd == 2 ? shape[1] : shape[0];
    float *wf = dsq_malloc(sizeof *wf * (size_t)(rows * cols));
    dsq_qsizes sz;
    if (!wf) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    if ((rc = w->rows_f32(w->ctx, id, 0, rows, wf, err)) || (rc = dsq_q_sizes(qm.scheme, rows, cols, &sz, err))) {
        free(wf);
        return rc;
    }
    uint8_t *buf = dsq_calloc(1, sz.data + sz.scale + sz.zero + 1);
    int has_cs = dsq_method_has_colscale(qm.method);
    float *cs_out = has_cs ? dsq_malloc(sizeof *cs_out * (size_t)cols) : NULL;
    if (!buf || (has_cs && !cs_out)) {
        free(wf); free(buf); free(cs_out);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    dsq_qmat src = {DSQ_Q_F32, rows, cols, wf, NULL, NULL};
    dsq_qmat dst = {qm.scheme, rows, cols, buf, sz.scale ? buf + sz.data : NULL, sz.zero ? buf + sz.data + sz.scale : NULL};
    const dsq_cstat *st = qm.method == DSQ_METHOD_PLAIN ? NULL : dsq_cstats_find(cs, dsq_method_is_fold(qm.method) ? rec : name);
    rc = dsq_quantize_matrix(pool, &qm, &src, NULL, st, &dst, cs_out, work, name, err);
    free(wf);
    if (!rc && o->quant_out) rc = dsq_quantjob_put(o->quant_out, name, &dst, cs_out, err);
    if (!rc && dsq_woverlay_put(ov, name, dst, cs_out)) rc = dsq_fail(err, DSQ_E_ARG, "calib: cannot stage '%s'", name);
    if (rc) {
        free(buf);
        free(cs_out);
    }
    return rc;
}

/* AWQ folding: the scales shared by the projections reading norm `norm`
 * of layer l, searched over those members one at a time (each loaded once),
 * kept on the group's record, then the norm itself divided by them. */
static int fold_group(const dsq_calib_opts *o, const dsq_weights *w, dsq_woverlay *ov, dsq_cstats *cs, dsq_pool *pool,
                      dsq_matrix_scratch *work, dsq_role norm, int l, dsq_err *err) {
    const dsq_config *cfg = w->cfg;
    if (!dsq_fold_group(o->recipe, cfg, norm, l)) return DSQ_OK;
    char rec[200], nn[200];
    dsq_fold_record(cfg, norm, l, rec, sizeof rec);
    const dsq_cstat *gc = dsq_cstats_find(cs, rec);
    dsq_cstat *g = gc ? dsq_cstats_get(cs, gc->name, gc->cols, 0) : NULL;
    if (!g) return dsq_fail(err, DSQ_E_NOTFOUND, "calib: no statistics for %s", rec);
    int64_t cols = g->cols;
    dsq_fold_name *mem = NULL;
    int nm = dsq_fold_members(cfg, norm, l, &mem), rc = DSQ_OK, n_grid = 20;
    float *mabs = dsq_malloc(sizeof *mabs * (size_t)cols), *msq = dsq_malloc(sizeof *msq * (size_t)cols);
    float *own = dsq_malloc(sizeof *own * (size_t)cols), *wf = NULL, *s = dsq_malloc(sizeof *s * (size_t)cols);
    double *num = dsq_calloc(101, sizeof *num), den = 0;
    if (nm < 0 || !mabs || !msq || !own || !s || !num) { rc = dsq_fail(err, DSQ_E_NOMEM, "calib: out of memory"); goto out; }
    dsq_cstat_mean_abs(g, mabs);
    dsq_cstat_mean_sq(g, msq);
    for (int k = 0; k < nm && !rc; k++) {
        dsq_method qm;
        int ss = src_scheme(o->src, mem[k].name), id = w->find(w->ctx, mem[k].name);
        if (ss < 0 || id < 0) { rc = dsq_fail(err, DSQ_E_NOTFOUND, "calib: model lacks '%s'", mem[k].name); break; }
        if ((rc = dsq_method_for(o->recipe, mem[k].match, mem[k].role, l, cols, ss, 1, &qm, err))) break;
        if (k == 0) n_grid = qm.grid > 0 && qm.grid <= 100 ? qm.grid : 20;
        int64_t shape[4];
        w->shape(w->ctx, id, shape);
        free(wf);
        if (!(wf = dsq_malloc(sizeof *wf * (size_t)(shape[0] * cols)))) { rc = dsq_fail(err, DSQ_E_NOMEM, "calib: out of memory"); break; }
        if ((rc = w->rows_f32(w->ctx, id, 0, shape[0], wf, err))) break;
        /* routed experts weigh their error by their own tokens' statistics */
        const dsq_cstat *so = dsq_cstats_find(cs, mem[k].name);
        if (so && so != g && so->cols == cols) dsq_cstat_mean_sq(so, own);
        dsq_fold_member fm = {wf, shape[0], so && so != g && so->cols == cols ? own : NULL, qm.scheme,
                              qm.opts.clip_steps, qm.opts.clip_min};
        rc = dsq_fold_accum(&fm, cols, mabs, msq, n_grid, num, &den, err);
    }
    if (!rc) {
        float alpha;
        double e;
        dsq_fold_pick(num, den, n_grid, cols, mabs, s, &alpha, &e);
        free(g->fold);
        g->fold = s;
        s = NULL;
        dsq_layer_weight_name(nn, sizeof nn, l, -1, norm);
        rc = quantize_weight(o, w, ov, cs, pool, work, nn, nn, norm, l, err);
        if (!rc && norm == DSQ_R_POST_ATTN_NORM && dsq_config_is_moe_layer(cfg, l)) {
            dsq_layer_weight_name(nn, sizeof nn, l, -1, DSQ_R_ROUTER);
            rc = quantize_weight(o, w, ov, cs, pool, work, nn, nn, DSQ_R_ROUTER, l, err);
        }
    }
out:
    free(mem); free(mabs); free(msq); free(own); free(wf); free(s); free(num);
    return rc;
}

/* Quantize the weights of stage `stage` of layer l into the overlay. */
static int quantize_layer(const dsq_calib_opts *o, const dsq_weights *w, dsq_woverlay *ov, dsq_cstats *cs,
                          dsq_pool *pool, dsq_matrix_scratch *work, int l, int stage, dsq_err *err) {
    const dsq_config *c = w->cfg;
    char nm[200];
    int rc;
    /* folded AWQ scales first: the norms they go into, the router */
    static const dsq_role fold_norms[N_STAGES][2] = {{DSQ_R_INPUT_NORM, 0}, {DSQ_R_ATTN_Q_A_NORM, DSQ_R_ATTN_KV_A_NORM},
                                                     {0, 0}, {DSQ_R_POST_ATTN_NORM, 0}, {0, 0}};
    for (int k = 0; k < 2; k++)
        if (fold_norms[stage][k] && (rc = fold_group(o, w, ov, cs, pool, work, fold_norms[stage][k], l, err))) return rc;
    static const dsq_role attn[] = {DSQ_R_ATTN_Q_A, DSQ_R_ATTN_Q_B, DSQ_R_ATTN_KV_A, DSQ_R_ATTN_KV_B,
                                    DSQ_R_ATTN_O, DSQ_R_IDX_WQ_B, DSQ_R_IDX_WK, DSQ_R_IDX_WEIGHTS_PROJ};
    for (size_t k = 0; k < sizeof attn / sizeof attn[0]; k++) {
        if ((dsq_role_class(attn[k]) == DSQ_C_INDEXER && !c->has_indexer) || stage_of(attn[k]) != stage) continue;
        dsq_layer_weight_name(nm, sizeof nm, l, -1, attn[k]);
        if ((rc = quantize_weight(o, w, ov, cs, pool, work, nm, nm, attn[k], l, err))) return rc;
    }
    if (!dsq_config_is_moe_layer(c, l)) {
        for (int k = 0; k < 3; k++) {
            if (stage_of((dsq_role)(DSQ_R_DENSE_GATE + k)) != stage) continue;
            dsq_layer_weight_name(nm, sizeof nm, l, -1, (dsq_role)(DSQ_R_DENSE_GATE + k));
            if ((rc = quantize_weight(o, w, ov, cs, pool, work, nm, nm, (dsq_role)(DSQ_R_DENSE_GATE + k), l, err))) return rc;
        }
        return DSQ_OK;
    }
    if (c->n_shared_experts)
        for (int k = 0; k < 3; k++) {
            if (stage_of((dsq_role)(DSQ_R_SHEXP_GATE + k)) != stage) continue;
            dsq_layer_weight_name(nm, sizeof nm, l, -1, (dsq_role)(DSQ_R_SHEXP_GATE + k));
            if ((rc = quantize_weight(o, w, ov, cs, pool, work, nm, nm, (dsq_role)(DSQ_R_SHEXP_GATE + k), l, err))) return rc;
        }
    for (int e = 0; e < c->n_routed_experts; e++)
        for (int k = 0; k < 3; k++) {
            if (stage_of((dsq_role)(DSQ_R_EXP_GATE + k)) != stage) continue;
            dsq_expert_name(nm, sizeof nm, l, e, (dsq_role)(DSQ_R_EXP_GATE + k));
            /* recipes match routed experts by their stacked name */
            char st[200];
            dsq_expert_name(st, sizeof st, l, -1, (dsq_role)(DSQ_R_EXP_GATE + k));
            if ((rc = quantize_weight(o, w, ov, cs, pool, work, nm, st, (dsq_role)(DSQ_R_EXP_GATE + k), l, err))) return rc;
        }
    return DSQ_OK;
}

/* After a stage's weights are quantized its statistics have served: list
 * its pooled experts in the report, append the records to the .dsqcal
 * being written, and keep them (for the caller) or free them. */
static int end_stage(const dsq_calib_opts *o, dsq_cstats *cs, dsq_cstats *keep, dsq_calib_report *rep, dsq_err *err) {
    for (int i = 0; i < dsq_cstats_count(cs); i++) {
        const dsq_cstat *s = dsq_cstats_at(cs, i);
        if (!s->fallback) continue;
        if (rep->n_fallback < 256) snprintf(rep->fallback[rep->n_fallback], sizeof rep->fallback[0], "%s", s->name);
        rep->n_fallback++;
    }
    int rc = o->cal_out ? dsq_cstats_writer_add(o->cal_out, cs, err) : DSQ_OK;
    if (rc) return rc;
    if (keep && dsq_cstats_move(keep, cs)) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    dsq_cstats_clear(cs);
    return DSQ_OK;
}

int dsq_calib_run(const dsq_calib_opts *o, dsq_cstats **out, dsq_calib_report *rep, dsq_err *err) {
    if (out) *out = NULL;
    memset(rep, 0, sizeof *rep);
    dsq_weights wts;
    int rc = dsq_weights_from_src(&wts, o->src, err);
    if (rc) return rc;
    const dsq_weights *mw = &wts;
    const dsq_config *cfg = mw->cfg;
    dsq_cstats *cs = dsq_cstats_new(), *keep = out ? dsq_cstats_new() : NULL;
    dsq_woverlay *ov = dsq_woverlay_new(mw);
    dsq_fwd *f1 = NULL, *f0 = NULL;
    float *resid0 = NULL;
    int use_ref = recipe_wants_ref(o->recipe);
    cctx cc = {0};
    dsq_pool *pool = dsq_pool_new(o->threads > 0 ? o->threads : dsq_default_threads());
    float *resid = NULL, *emb = NULL;
    dsq_matrix_scratch work = {0};
    double t_start = dsq_now();
    if (!cs || (out && !keep) || !ov || !pool) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    int T = o->ctx > 0 ? o->ctx : (cfg->max_position_embeddings < 256 ? cfg->max_position_embeddings : 256);
    if ((size_t)T > o->n_tokens) T = (int)o->n_tokens;
    if (T < 2) { rc = dsq_fail(err, DSQ_E_ARG, "calib: need at least 2 tokens"); goto out; }
    int64_t W = (int64_t)(o->n_tokens / (size_t)T);
    if (o->samples > 0 && W > o->samples) W = o->samples;
    int64_t D = cfg->hidden_size;
    for (size_t i = 0; i < (size_t)(W * T); i++)
        if (o->tokens[i] < 0 || o->tokens[i] >= cfg->vocab_size) {
            rc = dsq_fail(err, DSQ_E_ARG, "calib: token %zu is %d, outside the vocabulary (%d)", i, o->tokens[i], cfg->vocab_size);
            goto out;
        }
    resid = dsq_malloc(sizeof *resid * (size_t)(W * T * D));
    emb = dsq_malloc(sizeof *emb * (size_t)D);
    if (use_ref) resid0 = dsq_malloc(sizeof *resid0 * (size_t)(W * T * D));
    if (!resid || !emb || (use_ref && !resid0)) { rc = dsq_fail(err, DSQ_E_NOMEM, "calib: out of memory for %lld windows x %d tokens", (long long)W, T); goto out; }
    /* embeddings (the embedding table is quantized too when the recipe says so) */
    const char *embed = dsq_top_weight_name(DSQ_R_EMBED);
    if ((rc = quantize_weight(o, mw, ov, cs, pool, &work, embed, embed, DSQ_R_EMBED, -1, err))) goto out;
    const dsq_weights *wq = dsq_woverlay_weights(ov);
    int eid = wq->find(wq->ctx, embed);
    for (int64_t i = 0; i < W * T; i++)
        if ((rc = wq->rows_f32(wq->ctx, eid, o->tokens[i], o->tokens[i] + 1, resid + i * D, err))) goto out;
    if (use_ref)
        for (int64_t i = 0; i < W * T; i++)
            if ((rc = mw->rows_f32(mw->ctx, eid, o->tokens[i], o->tokens[i] + 1, resid0 + i * D, err))) goto out;
    dsq_woverlay_clear(ov);
    cc = (cctx){o, cs, cfg, -1, 0, err, 0, {0}, {0}, {0}};
    dsq_fwd_opts fo = {.max_tokens = T, .n_threads = o->threads, .act_fp8 = o->act_fp8, .observe = on_input, .observe_arg = &cc};
    if ((rc = dsq_fwd_new(&f1, wq, &fo, err))) goto out;
    if (use_ref && (rc = dsq_fwd_new(&f0, mw, &fo, err))) goto out;
    rep->layers = cfg->n_layers;
    rep->windows = (int)W;
    rep->ctx = T;
    rep->tokens = W * T;
    for (int l = 0; l < cfg->n_layers; l++) {
        double t0 = dsq_now();
        for (int stage = 0; stage < N_STAGES; stage++) {
            cc.stage = stage;
            for (int64_t w = 0; w < W; w++) {
                if (use_ref) {
                    /* the reference model's inputs of this stage, for this window */
                    for (int k = 0; k < DSQ_R_COUNT; k++) cc.ref_n[k] = 0;
                    cc.capture = 1;
                    if ((rc = dsq_fwd_begin_at(f0, l, resid0 + w * T * D, T, err)) || (rc = dsq_fwd_layer(f0, NULL, err)) < 0) goto out;
                    cc.capture = 0;
                    if (cc.fail) { rc = cc.fail; goto out; }
                }
                if ((rc = dsq_fwd_begin_at(f1, l, resid + w * T * D, T, err)) || (rc = dsq_fwd_layer(f1, NULL, err)) < 0) goto out;
                if (cc.fail) { rc = cc.fail; goto out; }
            }
            if (dsq_config_is_moe_layer(cfg, l) && stage >= 3) {
                /* experts no token reached still need (pooled) statistics */
                dsq_role site = stage == 3 ? DSQ_R_EXP_GATE : DSQ_R_EXP_DOWN;
                int cols = stage == 3 ? (int)D : cfg->moe_intermediate_size;
                for (int e = 0; e < cfg->n_routed_experts; e++) record(&cc, site, l, e, NULL, 0, cols, NULL);
                if (cc.fail) { rc = cc.fail; goto out; }
                dsq_cstats_pool_starved(cs, o->min_tokens);
            }
            if ((rc = quantize_layer(o, mw, ov, cs, pool, &work, l, stage, err))) goto out;
            if ((rc = end_stage(o, cs, keep, rep, err))) goto out;
        }
        /* the layer's tensors calibration does not quantize (norms, router,
         * copies) complete it in the output */
        if (o->quant_out && (rc = dsq_quantjob_fill(o->quant_out, l, err))) goto out;
        cc.stage = -1;
        for (int64_t w = 0; w < W; w++) {
            dsq_fwd_view v;
            if ((rc = dsq_fwd_begin_at(f1, l, resid + w * T * D, T, err)) || (rc = dsq_fwd_layer(f1, &v, err)) < 0) goto out;
            memcpy(resid + w * T * D, v.resid, sizeof *resid * (size_t)(T * D));
            if (use_ref) {
                if ((rc = dsq_fwd_begin_at(f0, l, resid0 + w * T * D, T, err)) || (rc = dsq_fwd_layer(f0, &v, err)) < 0) goto out;
                memcpy(resid0 + w * T * D, v.resid, sizeof *resid0 * (size_t)(T * D));
            }
        }
        dsq_woverlay_clear(ov);
        rep->layer_seconds[l < 512 ? l : 511] = dsq_now() - t0;
        if (o->on_progress) {
            dsq_progress pr = {"calib", (uint64_t)l + 1, (uint64_t)cfg->n_layers, l, cfg->n_layers,
                               rep->layer_seconds[l < 512 ? l : 511], l + 1 == cfg->n_layers};
            o->on_progress(o->on_progress_arg, &pr);
        }
    }
    /* the output head: statistics of its input, then (with --quant-out) the
     * head itself and the other tensors outside the main layers */
    if ((rc = head_stats(&cc, mw, resid, resid0, W * T, err))) goto out;
    const char *head = dsq_top_weight_name(DSQ_R_HEAD);
    if (o->quant_out && (rc = quantize_weight(o, mw, ov, cs, pool, &work, head, head, DSQ_R_HEAD, -1, err)))
        goto out;
    if ((rc = end_stage(o, cs, keep, rep, err))) goto out;
    if (o->quant_out && (rc = dsq_quantjob_fill(o->quant_out, -1, err))) goto out;
    rep->seconds = dsq_now() - t_start;
    if (out) {
        *out = keep;
        keep = NULL;
    }
    rc = DSQ_OK;
out:
    if (rc > 0) rc = DSQ_OK;
    dsq_matrix_scratch_deinit(&work);
    dsq_fwd_free(f1);
    dsq_fwd_free(f0);
    free(resid0);
    for (int k = 0; k < DSQ_R_COUNT; k++) free(cc.ref[k]);
    dsq_woverlay_free(ov);
    dsq_pool_free(pool);
    dsq_cstats_free(cs);
    dsq_cstats_free(keep);
    free(resid);
    free(emb);
    return rc;
}
