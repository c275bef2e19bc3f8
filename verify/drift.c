/*
 * drift.c -- lockstep comparison of a candidate model with a reference
 * (see drift.h for the metrics and their definitions).
 *
 * Per window: both forward passes advance one layer at a time; after each
 * layer the two dsq_fwd_view's are compared and the sums behind every
 * metric are accumulated, so memory stays at two windows' activations.
 * Per-expert errors rerun CAND's experts on REF's inputs
 * (dsq_fwd_expert).  Attribution runs a third forward pass over a "mixing"
 * weight source that reads the tensors of one (layer, part) from CAND and
 * everything else from REF; the part is switched between runs and each run
 * restarts from REF's residual at the input of that layer.
 */
#include "verify/drift.h"
#include "verify/eval.h"
#include "verify/forward.h"

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *dsq_drift_part_name(int part) {
    static const char *names[DSQ_PART_COUNT] = {"attn", "ffn", "shared", "routed"};
    return part >= 0 && part < DSQ_PART_COUNT ? names[part] : "?";
}

/* ==== mixing weight source ================================================ */

typedef struct mix_entry {
    int rid, cid, layer, part; /* part -1: not part of any (norms, top level) */
} mix_entry;

typedef struct mix {
    const dsq_weights *ref, *cand;
    mix_entry *e;
    int n, cap;
    int sel_layer, sel_part; /* what to read from CAND; -1: nothing */
    dsq_config cfg;
} mix;

/* Which (layer, part) an upstream tensor name belongs to; -1 if none (the
 * block norms, the top-level tensors).  The attention part is everything
 * under self_attn: its latent norms and the indexer too. */
static int name_part(const char *name, int *layer) {
    dsq_role r = dsq_classify(name, layer, NULL);
    switch (r) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_Q_A_NORM: case DSQ_R_ATTN_Q_B: case DSQ_R_ATTN_KV_A:
    case DSQ_R_ATTN_KV_A_NORM: case DSQ_R_ATTN_KV_B: case DSQ_R_ATTN_O:
    case DSQ_R_IDX_WQ_B: case DSQ_R_IDX_WK: case DSQ_R_IDX_K_NORM: case DSQ_R_IDX_K_NORM_BIAS:
    case DSQ_R_IDX_WEIGHTS_PROJ:
        return DSQ_PART_ATTN;
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: case DSQ_R_DENSE_DOWN: return DSQ_PART_FFN;
    case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP: case DSQ_R_SHEXP_DOWN: return DSQ_PART_SHARED;
    case DSQ_R_ROUTER: case DSQ_R_ROUTER_BIAS:
    case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: case DSQ_R_EXP_DOWN:
        return DSQ_PART_ROUTED;
    default: return -1;
    }
}

/* Every tensor id handed to the forward pass names an entry that knows both
 * sources; which one is read is decided per call in mix_rows, so one
 * dsq_fwd serves every (layer, part) selection in turn. */
static int mix_find(void *ctx, const char *name) {
    mix *m = ctx;
    int rid = m->ref->find(m->ref->ctx, name);
    if (rid < 0) return -1;
    if (m->n == m->cap) {
        int nc = m->cap ? 2 * m->cap : 256;
        mix_entry *e = dsq_realloc(m->e, (size_t)nc * sizeof *e);
        if (!e) return -1; /* reported by the forward pass as a missing tensor */
        m->e = e;
        m->cap = nc;
    }
    mix_entry *e = &m->e[m->n];
    e->rid = rid;
    e->cid = m->cand->find(m->cand->ctx, name);
    e->part = name_part(name, &e->layer);
    return m->n++;
}

static int mix_shape(void *ctx, int id, int64_t shape[4]) {
    mix *m = ctx;
    return m->ref->shape(m->ref->ctx, m->e[id].rid, shape);
}

static int mix_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    mix *m = ctx;
    const mix_entry *e = &m->e[id];
    if (e->part >= 0 && e->layer == m->sel_layer && e->part == m->sel_part) {
        if (e->cid < 0)
            return dsq_fail(err, DSQ_E_NOTFOUND, "candidate lacks a tensor of layer %d %s", e->layer,
                            dsq_drift_part_name(e->part));
        return m->cand->rows_f32(m->cand->ctx, e->cid, r0, r1, dst, err);
    }
    return m->ref->rows_f32(m->ref->ctx, e->rid, r0, r1, dst, err);
}

/* ==== accumulators ========================================================= */

typedef struct layer_acc {
    double rd2, rr2, cos_sum, ad2, ar2, fd2, fr2;
    int64_t tokens;
    double recall_sum;
    int64_t recall_n;
    double same, overlap, werr;
    int64_t route_n;
} layer_acc;

typedef struct part_acc {
    double nll, kl;
    int ran;
} part_acc;

/* Sums of squared differences and squared REF values: the relative errors
 * of the report are ratios of these totals over all tokens and windows, so
 * tokens with larger activations weigh more, as they do in the model. */
static void acc_diff(const float *c, const float *r, int64_t n, double *d2, double *r2) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)c[i] - r[i];
        a += d * d;
        b += (double)r[i] * r[i];
    }
    *d2 += a;
    *r2 += b;
}

static double relerr(double d2, double r2) { return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2); }

/* Log-softmax of V logits into lp (double). */
static void log_softmax(const float *x, int V, double *lp) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++)
        if (x[i] > mx) mx = x[i];
    for (int i = 0; i < V; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < V; i++) lp[i] = x[i] - lse;
}

/* KL(REF || CAND) = sum_i p_ref(i) (log p_ref(i) - log p_cand(i)): the
 * expected extra nats CAND pays on text REF would produce. */
static double kl_of(const double *lpr, const double *lpc, int V) {
    double kl = 0;
    for (int i = 0; i < V; i++)
        if (lpr[i] > -INFINITY) kl += exp(lpr[i]) * (lpr[i] - lpc[i]);
    return kl;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_part(const void *a, const void *b) {
    const dsq_drift_part *x = a, *y = b;
    if (x->dppl != y->dppl) return x->dppl > y->dppl ? -1 : 1;
    return x->layer != y->layer ? x->layer - y->layer : x->part - y->part;
}

/* Every shape-defining field of the two configurations must agree: the
 * comparison is element by element, and attribution mixes their tensors. */
static int same_shape(const dsq_config *a, const dsq_config *b, dsq_err *err) {
#define F(x)                                                                                   \
    if (a->x != b->x)                                                                          \
        return dsq_fail(err, DSQ_E_CONFIG, "the models differ in " #x " (%g vs %g)",           \
                        (double)a->x, (double)b->x);
    F(vocab_size) F(hidden_size) F(intermediate_size) F(moe_intermediate_size) F(n_layers)
    F(first_k_dense) F(moe_layer_freq) F(n_heads) F(q_lora_rank) F(kv_lora_rank)
    F(qk_nope_head_dim) F(qk_rope_head_dim) F(v_head_dim) F(n_routed_experts)
    F(n_shared_experts) F(n_experts_per_tok) F(n_group) F(topk_group) F(has_indexer)
    F(index_n_heads) F(index_head_dim) F(index_topk)
#undef F
    return DSQ_OK;
}

/* ==== the run ============================================================= */

typedef struct run {
    const dsq_drift_opts *o;
    const dsq_config *c;
    int T, D, V, L, E, ke, K;
    dsq_fwd *fr, *fc, *fm;
    mix mx;
    dsq_weights mw;    /* the mixing source; fm keeps a pointer to it */
    layer_acc *la;
    double *ed2, *er2; /* [L x (E+1)] per-expert sums; index E is the shared expert */
    int64_t *en;
    part_acc *pa;      /* [L x DSQ_PART_COUNT] */
    float *lr, *lc;    /* logits [T x V] */
    double *lpr, *lpc; /* [V] */
    float *xg, *yr, *yc; /* [T x D] gather buffers */
    float *resid_in;   /* [L x T x D] REF residual at each layer's input */
    uint8_t *mark;     /* [T] */
    double *kl;        /* every position's KL, for the percentile */
    int64_t n_kl, cap_kl;
    double nll_r, nll_c, kl_sum;
    int64_t top1, npos;
} run;

/* Accumulate every per-layer metric from the two views of layer l. */
static void compare_layer(run *r, int l, const dsq_fwd_view *vr, const dsq_fwd_view *vc) {
    layer_acc *a = &r->la[l];
    int T = r->T, D = r->D, ke = r->ke;
    acc_diff(vc->resid, vr->resid, (int64_t)T * D, &a->rd2, &a->rr2);
    acc_diff(vc->attn_out, vr->attn_out, (int64_t)T * D, &a->ad2, &a->ar2);
    acc_diff(vc->ffn_out, vr->ffn_out, (int64_t)T * D, &a->fd2, &a->fr2);
    for (int t = 0; t < T; t++) {
        const float *x = vr->resid + (int64_t)t * D, *y = vc->resid + (int64_t)t * D;
        double xy = 0, xx = 0, yy = 0;
        for (int i = 0; i < D; i++) {
            xy += (double)x[i] * y[i];
            xx += (double)x[i] * x[i];
            yy += (double)y[i] * y[i];
        }
        a->cos_sum += xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : (xx == yy ? 1 : 0);
    }
    a->tokens += T;
    if (vr->topk && vc->topk) {
        int K = vr->topk_k;
        for (int t = K; t < T; t++) { /* queries with t + 1 > K: a real selection */
            const int32_t *sr = vr->topk + (int64_t)t * K, *sc = vc->topk + (int64_t)t * K;
            int hit = 0, nr = 0;
            for (int i = 0; i < K; i++)
                if (sc[i] >= 0) r->mark[sc[i]] = 1;
            for (int i = 0; i < K; i++)
                if (sr[i] >= 0) {
                    nr++;
                    hit += r->mark[sr[i]];
                }
            for (int i = 0; i < K; i++)
                if (sc[i] >= 0) r->mark[sc[i]] = 0;
            a->recall_sum += nr ? (double)hit / nr : 1.0;
            a->recall_n++;
        }
    }
    if (vr->experts && vc->experts) {
        for (int t = 0; t < T; t++) {
            const int32_t *er = vr->experts + (int64_t)t * ke, *ec = vc->experts + (int64_t)t * ke;
            const float *wr = vr->weights + (int64_t)t * ke, *wc = vc->weights + (int64_t)t * ke;
            /* weights are compared over the union of the two sets, a
             * missing expert counting as weight 0 */
            int common = 0;
            double diff = 0, tot = 0;
            for (int i = 0; i < ke; i++) {
                int j = 0;
                while (j < ke && ec[j] != er[i]) j++;
                common += j < ke;
                diff += fabs((double)wr[i] - (j < ke ? wc[j] : 0.0));
                tot += fabs((double)wr[i]);
            }
            for (int j = 0; j < ke; j++) { /* CAND's experts REF did not choose */
                int i = 0;
                while (i < ke && er[i] != ec[j]) i++;
                if (i == ke) diff += fabs((double)wc[j]);
            }
            a->same += common == ke;
            a->overlap += (double)common / ke;
            a->werr += tot > 0 ? diff / tot : diff;
            a->route_n++;
        }
    }
}

/* CAND's experts of layer l on REF's inputs against REF's outputs. */
static int compare_experts(run *r, int l, const dsq_fwd_view *vr, dsq_err *err) {
    int rc, T = r->T, D = r->D, ke = r->ke, E = r->E;
    int64_t row = (int64_t)l * (E + 1);
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < ke; k++)
                if (vr->experts[(int64_t)t * ke + k] == e) {
                    memcpy(r->xg + (int64_t)n * D, vr->ffn_in + (int64_t)t * D, (size_t)D * sizeof(float));
                    memcpy(r->yr + (int64_t)n * D, vr->expert_out + ((int64_t)t * ke + k) * D,
                           (size_t)D * sizeof(float));
                    n++;
                }
        if (!n) continue;
        DSQ_TRY(dsq_fwd_expert(r->fc, l, e, r->xg, n, r->yc, err));
        acc_diff(r->yc, r->yr, (int64_t)n * D, &r->ed2[row + e], &r->er2[row + e]);
        r->en[row + e] += n;
    }
    if (vr->shared_out) {
        DSQ_TRY(dsq_fwd_expert(r->fc, l, -1, vr->ffn_in, T, r->yc, err));
        acc_diff(r->yc, vr->shared_out, (int64_t)T * D, &r->ed2[row + E], &r->er2[row + E]);
        r->en[row + E] += T;
    }
    return DSQ_OK;
fail:
    return rc;
}

/* Every position's KL is kept for the 99th percentile: 8 bytes per
 * predicted token, small next to the logits of one window. */
static int push_kl(run *r, double v) {
    if (r->n_kl == r->cap_kl) {
        int64_t nc = r->cap_kl ? 2 * r->cap_kl : 4096;
        double *k = dsq_realloc(r->kl, (size_t)nc * sizeof *k);
        if (!k) return DSQ_E_NOMEM;
        r->kl = k;
        r->cap_kl = nc;
    }
    r->kl[r->n_kl++] = v;
    return DSQ_OK;
}

/* REF with (layer, part) from CAND, from REF's input of that layer. */
static int attribute(run *r, const int32_t *tok, dsq_err *err) {
    int rc, T = r->T, V = r->V;
    for (int l = 0; l < r->L; l++) {
        int moe = dsq_config_is_moe_layer(r->c, l);
        for (int p = 0; p < DSQ_PART_COUNT; p++) {
            if ((p == DSQ_PART_FFN) == moe && p != DSQ_PART_ATTN) continue;
            if (p == DSQ_PART_SHARED && r->c->n_shared_experts <= 0) continue;
            r->mx.sel_layer = l;
            r->mx.sel_part = p;
            if (l == 0) DSQ_TRY(dsq_fwd_begin(r->fm, tok, T, err));
            else DSQ_TRY(dsq_fwd_begin_at(r->fm, l, r->resid_in + (int64_t)l * T * r->D, T, err));
            while ((rc = dsq_fwd_layer(r->fm, NULL, err)) == DSQ_OK) {}
            if (rc < 0) goto fail;
            DSQ_TRY(dsq_fwd_logits(r->fm, r->lc, err));
            part_acc *pa = &r->pa[l * DSQ_PART_COUNT + p];
            pa->ran = 1;
            for (int t = r->o->score_from < T - 1 ? r->o->score_from : 0; t + 1 < T; t++) {
                log_softmax(r->lr + (int64_t)t * V, V, r->lpr);
                log_softmax(r->lc + (int64_t)t * V, V, r->lpc);
                pa->kl += kl_of(r->lpr, r->lpc, V);
                pa->nll -= r->lpc[tok[t + 1]];
            }
        }
    }
    r->mx.sel_layer = r->mx.sel_part = -1;
    return DSQ_OK;
fail:
    r->mx.sel_layer = r->mx.sel_part = -1;
    return rc;
}

/* One window: both models layer by layer, then their logits; REF's
 * residual at each layer's input is kept when attribution needs it. */
static int run_window(run *r, const int32_t *tok, dsq_err *err) {
    int rc, T = r->T, V = r->V, D = r->D;
    DSQ_TRY(dsq_fwd_begin(r->fr, tok, T, err));
    DSQ_TRY(dsq_fwd_begin(r->fc, tok, T, err));
    for (int l = 0; l < r->L; l++) {
        dsq_fwd_view vr, vc;
        DSQ_TRY(dsq_fwd_layer(r->fr, &vr, err));
        DSQ_TRY(dsq_fwd_layer(r->fc, &vc, err));
        compare_layer(r, l, &vr, &vc);
        if (r->o->experts && vr.experts) DSQ_TRY(compare_experts(r, l, &vr, err));
        if (r->resid_in && l + 1 < r->L)
            memcpy(r->resid_in + (int64_t)(l + 1) * T * D, vr.resid, (size_t)T * D * sizeof(float));
    }
    DSQ_TRY(dsq_fwd_logits(r->fr, r->lr, err));
    DSQ_TRY(dsq_fwd_logits(r->fc, r->lc, err));
    for (int t = r->o->score_from < T - 1 ? r->o->score_from : 0; t + 1 < T; t++) {
        const float *a = r->lr + (int64_t)t * V, *b = r->lc + (int64_t)t * V;
        log_softmax(a, V, r->lpr);
        log_softmax(b, V, r->lpc);
        double kl = kl_of(r->lpr, r->lpc, V);
        r->kl_sum += kl;
        if (push_kl(r, kl)) return dsq_fail(err, DSQ_E_NOMEM, "verify: out of memory");
        r->nll_r -= r->lpr[tok[t + 1]];
        r->nll_c -= r->lpc[tok[t + 1]];
        int ar = 0, ac = 0;
        for (int i = 1; i < V; i++) {
            if (a[i] > a[ar]) ar = i;
            if (b[i] > b[ac]) ac = i;
        }
        r->top1 += ar == ac;
        r->npos++;
    }
    if (r->o->attribution) DSQ_TRY(attribute(r, tok, err));
    return DSQ_OK;
fail:
    return rc;
}

static void run_free(run *r) {
    dsq_fwd_free(r->fr);
    dsq_fwd_free(r->fc);
    dsq_fwd_free(r->fm);
    free(r->mx.e);
    free(r->la); free(r->ed2); free(r->er2); free(r->en); free(r->pa);
    free(r->lr); free(r->lc); free(r->lpr); free(r->lpc);
    free(r->xg); free(r->yr); free(r->yc); free(r->resid_in); free(r->mark); free(r->kl);
}

static int build_report(run *r, int64_t nw, dsq_drift_report **out, dsq_err *err) {
    int L = r->L, E = r->E;
    dsq_drift_report *rep = dsq_calloc(1, sizeof *rep);
    if (!rep) return dsq_fail(err, DSQ_E_NOMEM, "verify: out of memory");
    rep->n_layers = L;
    rep->ctx = r->T;
    rep->act_fp8 = r->o->act_fp8;
    rep->n_windows = nw;
    rep->n_positions = r->npos;
    rep->layers = dsq_calloc((size_t)L, sizeof *rep->layers);
    int n_ex = 0;
    for (int64_t i = 0; i < (int64_t)L * (E + 1); i++) n_ex += r->en[i] > 0;
    rep->experts = dsq_calloc((size_t)(n_ex ? n_ex : 1), sizeof *rep->experts);
    rep->parts = dsq_calloc((size_t)L * DSQ_PART_COUNT, sizeof *rep->parts);
    if (!rep->layers || !rep->experts || !rep->parts) {
        dsq_drift_free(rep);
        return dsq_fail(err, DSQ_E_NOMEM, "verify: out of memory");
    }
    for (int l = 0; l < L; l++) {
        const layer_acc *a = &r->la[l];
        dsq_drift_layer *d = &rep->layers[l];
        d->layer = l;
        d->moe = a->route_n > 0;
        d->resid_relerr = relerr(a->rd2, a->rr2);
        d->resid_cos = a->tokens ? a->cos_sum / (double)a->tokens : NAN;
        d->attn_relerr = relerr(a->ad2, a->ar2);
        d->ffn_relerr = relerr(a->fd2, a->fr2);
        d->idx_queries = a->recall_n;
        d->idx_recall = a->recall_n ? a->recall_sum / (double)a->recall_n : NAN;
        d->route_tokens = a->route_n;
        d->route_same = a->route_n ? a->same / (double)a->route_n : NAN;
        d->route_overlap = a->route_n ? a->overlap / (double)a->route_n : NAN;
        d->route_werr = a->route_n ? a->werr / (double)a->route_n : NAN;
        for (int e = 0; e <= E; e++) {
            int64_t i = (int64_t)l * (E + 1) + e;
            if (!r->en[i]) continue;
            dsq_drift_expert *x = &rep->experts[rep->n_experts++];
            x->layer = l;
            x->expert = e == E ? -1 : e;
            x->tokens = r->en[i];
            x->relerr = relerr(r->ed2[i], r->er2[i]);
        }
    }
    double np = (double)(r->npos ? r->npos : 1);
    rep->nll_ref = r->nll_r / np;
    rep->nll_cand = r->nll_c / np;
    rep->ppl_ref = exp(rep->nll_ref);
    rep->ppl_cand = exp(rep->nll_cand);
    rep->kl_mean = r->kl_sum / np;
    rep->top1 = (double)r->top1 / np;
    if (r->n_kl) {
        qsort(r->kl, (size_t)r->n_kl, sizeof *r->kl, cmp_double);
        /* nearest-rank percentile: the smallest value with at least 99% of
         * the positions at or below it */
        int64_t k = (int64_t)ceil(0.99 * (double)r->n_kl) - 1;
        rep->kl_p99 = r->kl[k < 0 ? 0 : k];
    }
    if (r->o->attribution) {
        for (int l = 0; l < L; l++)
            for (int p = 0; p < DSQ_PART_COUNT; p++) {
                const part_acc *pa = &r->pa[l * DSQ_PART_COUNT + p];
                if (!pa->ran) continue; /* part absent in this layer */
                dsq_drift_part *x = &rep->parts[rep->n_parts++];
                x->layer = l;
                x->part = p;
                x->ppl = exp(pa->nll / np);
                x->dppl = x->ppl - rep->ppl_ref;
                x->kl_mean = pa->kl / np;
            }
        qsort(rep->parts, (size_t)rep->n_parts, sizeof *rep->parts, cmp_part);
    }
    *out = rep;
    return DSQ_OK;
}

int dsq_drift_run(const dsq_weights *ref, const dsq_weights *cand, const int32_t *tok, int64_t n,
                  const dsq_drift_opts *o, dsq_drift_report **out, dsq_err *err) {
    int rc;
    int64_t nw;
    run r;
    memset(&r, 0, sizeof r);
    r.mx.sel_layer = r.mx.sel_part = -1;
    *out = NULL;
    r.o = o;
    r.c = ref->cfg;
    DSQ_TRY(same_shape(ref->cfg, cand->cfg, err));
    int ctx = o->ctx > 0 ? o->ctx : dsq_eval_default_ctx(ref->cfg);
    DSQ_TRY(dsq_eval_plan(n, ctx, o->max_windows, &nw, &r.T, err));
    for (int64_t i = 0; i < nw * r.T; i++)
        if (tok[i] < 0 || tok[i] >= r.c->vocab_size) {
            rc = dsq_fail(err, DSQ_E_ARG, "verify: token %lld is %d, outside the vocabulary (%d)",
                          (long long)i, tok[i], r.c->vocab_size);
            goto fail;
        }
    int T = r.T;
    r.D = r.c->hidden_size;
    r.V = r.c->vocab_size;
    r.L = r.c->n_layers;
    r.E = r.c->n_routed_experts > 0 ? r.c->n_routed_experts : 0;
    r.ke = r.c->n_experts_per_tok;
    dsq_fwd_opts fo = {.max_tokens = T, .n_threads = o->n_threads, .act_fp8 = o->act_fp8,
                       .trace = DSQ_TRACE_TOPK};
    DSQ_TRY(dsq_fwd_new(&r.fr, ref, &fo, err));
    DSQ_TRY(dsq_fwd_new(&r.fc, cand, &fo, err));
    if (o->attribution) {
        r.mx.ref = ref;
        r.mx.cand = cand;
        r.mx.cfg = *ref->cfg;
        r.mw.cfg = &r.mx.cfg;
        r.mw.ctx = &r.mx;
        r.mw.find = mix_find;
        r.mw.shape = mix_shape;
        r.mw.rows_f32 = mix_rows;
        fo.trace = 0;
        DSQ_TRY(dsq_fwd_new(&r.fm, &r.mw, &fo, err));
    }
    size_t TD = (size_t)T * (size_t)r.D;
    r.la = dsq_calloc((size_t)r.L, sizeof *r.la);
    r.ed2 = dsq_calloc((size_t)r.L * (size_t)(r.E + 1), sizeof(double));
    r.er2 = dsq_calloc((size_t)r.L * (size_t)(r.E + 1), sizeof(double));
    r.en = dsq_calloc((size_t)r.L * (size_t)(r.E + 1), sizeof(int64_t));
    r.pa = dsq_calloc((size_t)r.L * DSQ_PART_COUNT, sizeof *r.pa);
    r.lr = dsq_malloc((size_t)T * (size_t)r.V * sizeof(float));
    r.lc = dsq_malloc((size_t)T * (size_t)r.V * sizeof(float));
    r.lpr = dsq_malloc((size_t)r.V * sizeof(double));
    r.lpc = dsq_malloc((size_t)r.V * sizeof(double));
    r.xg = dsq_malloc(TD * sizeof(float));
    r.yr = dsq_malloc(TD * sizeof(float));
    r.yc = dsq_malloc(TD * sizeof(float));
    r.mark = dsq_calloc((size_t)T, 1);
    if (o->attribution) r.resid_in = dsq_malloc((size_t)r.L * TD * sizeof(float));
    if (!r.la || !r.ed2 || !r.er2 || !r.en || !r.pa || !r.lr || !r.lc || !r.lpr || !r.lpc ||
        !r.xg || !r.yr || !r.yc || !r.mark || (o->attribution && !r.resid_in)) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "verify: out of memory");
        goto fail;
    }
    for (int64_t w = 0; w < nw; w++) {
        DSQ_TRY(run_window(&r, tok + w * T, err));
        if (o->on_progress) o->on_progress(o->user, w + 1, nw);
    }
    DSQ_TRY(build_report(&r, nw, out, err));
    rc = DSQ_OK;
fail:
    run_free(&r);
    return rc;
}

void dsq_drift_free(dsq_drift_report *r) {
    if (!r) return;
    free(r->layers);
    free(r->experts);
    free(r->parts);
    free(r);
}
