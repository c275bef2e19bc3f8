/*
 * slowref.c -- the obvious forward pass used as a yardstick (see slowref.h).
 * Everything is per token and per head, in double where it accumulates.
 * The only shared piece with verify/ is the FP8 activation round trip
 * dsq_fwd_act_fp8, which has its own bit-level test.
 */
#include "slowref.h"
#include "verify/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define W(...) tm_get(m, __VA_ARGS__)

double sr_relerr(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* y[N] = W[N x K] x; the input is FP8 round-tripped first when fp8. */
static void lin1(const float *Wt, int N, int K, const float *x, float *y, int fp8) {
    float *xq = malloc(sizeof(float) * (size_t)K);
    if (fp8) dsq_fwd_act_fp8(x, xq, K, 128);
    else memcpy(xq, x, sizeof(float) * (size_t)K);
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += (double)Wt[(int64_t)n * K + k] * xq[k];
        y[n] = (float)s;
    }
    free(xq);
}

void sr_rmsnorm(const float *x, const float *w, int n, double eps, float *y) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = (float)(w[i] * x[i] * r);
}

static void layernorm(const float *x, const float *w, const float *b, int n, float *y) {
    double mu = 0, var = 0;
    for (int i = 0; i < n; i++) mu += x[i];
    mu /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mu) * (x[i] - mu);
    var /= n;
    for (int i = 0; i < n; i++) y[i] = (float)((x[i] - mu) / sqrt(var + 1e-6) * w[i] + b[i]);
}

void sr_theta(const dsq_config *c, double *th) {
    int d = c->qk_rope_head_dim;
    for (int i = 0; i < d / 2; i++) th[i] = pow(c->rope_theta, -2.0 * i / d);
    if (!c->has_yarn || c->yarn_factor <= 1) return;
    double cdim_f = d * log(c->yarn_original_max_pos / (2 * M_PI * c->yarn_beta_fast)) / (2 * log(c->rope_theta));
    double cdim_s = d * log(c->yarn_original_max_pos / (2 * M_PI * c->yarn_beta_slow)) / (2 * log(c->rope_theta));
    double low = fmax(floor(cdim_f), 0), high = fmin(ceil(cdim_s), d - 1);
    if (low == high) high += 0.001;
    for (int i = 0; i < d / 2; i++) {
        double ramp = fmin(fmax((i - low) / (high - low), 0), 1);
        th[i] = th[i] * (1 - ramp) + th[i] / c->yarn_factor * ramp;
    }
}

double sr_softmax_scale(const dsq_config *c) {
    double s = 1 / sqrt((double)(c->qk_nope_head_dim + c->qk_rope_head_dim));
    if (c->has_yarn && c->yarn_factor > 1) {
        double mm = 0.1 * c->yarn_mscale_all_dim * log(c->yarn_factor) + 1;
        s *= mm * mm;
    }
    return s;
}

/* Rotate pair i of x by pos * theta[i] as a complex product. */
static void rope(float *x, int d, int pos, const double *th, int interleaved) {
    for (int i = 0; i < d / 2; i++) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + d / 2;
        double ang = pos * th[i], re = x[a], im = x[b];
        x[a] = (float)(re * cos(ang) - im * sin(ang));
        x[b] = (float)(re * sin(ang) + im * cos(ang));
    }
}

void sr_hadamard(const float *v, int n, float *y) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * v[j];
        y[i] = (float)(s / sqrt((double)n));
    }
}

void sr_attention(const tmodel *m, int l, const float *x, int T, int fp8, float *out, uint8_t *sel) {
    const dsq_config *c = &m->cfg;
    int D = c->hidden_size, H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, dqk = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
    double th[256], scale = sr_softmax_scale(c);
    sr_theta(c, th);
    float *cq = malloc(sizeof(float) * rq), *qr = malloc(sizeof(float) * (size_t)T * rq);
    float *q = malloc(sizeof(float) * (size_t)T * H * dqk);
    float *kva = malloc(sizeof(float) * (size_t)T * (rkv + dr));
    float *lat = malloc(sizeof(float) * (size_t)T * rkv);
    float *kvb = malloc(sizeof(float) * (size_t)T * H * (dn + dv));
    float *o = malloc(sizeof(float) * (size_t)H * dv);
    uint8_t *allow = malloc((size_t)T * T);
    double *p = malloc(sizeof(double) * T);
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * D;
        lin1(W("model.layers.%d.self_attn.q_a_proj.weight", l), rq, D, xt, cq, fp8);
        sr_rmsnorm(cq, W("model.layers.%d.self_attn.q_a_layernorm.weight", l), rq, c->rms_norm_eps, qr + t * rq);
        lin1(W("model.layers.%d.self_attn.q_b_proj.weight", l), H * dqk, rq, qr + t * rq, q + t * H * dqk, fp8);
        for (int h = 0; h < H; h++) rope(q + (t * H + h) * dqk + dn, dr, t, th, c->rope_interleave);
        float *kv = kva + t * (rkv + dr);
        lin1(W("model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l), rkv + dr, D, xt, kv, fp8);
        sr_rmsnorm(kv, W("model.layers.%d.self_attn.kv_a_layernorm.weight", l), rkv, c->rms_norm_eps, lat + t * rkv);
        rope(kv + rkv, dr, t, th, c->rope_interleave);
        lin1(W("model.layers.%d.self_attn.kv_b_proj.weight", l), H * (dn + dv), rkv, lat + t * rkv,
             kvb + t * H * (dn + dv), fp8);
    }
    for (int t = 0; t < T; t++)
        for (int s = 0; s < T; s++) allow[t * T + s] = s <= t;
    if (c->has_indexer && T > c->index_topk) {
        int HI = c->index_n_heads, dI = c->index_head_dim, K = c->index_topk;
        float *qi = malloc(sizeof(float) * (size_t)T * HI * dI), *ki = malloc(sizeof(float) * (size_t)T * dI);
        float *wi = malloc(sizeof(float) * (size_t)T * HI), *tmp = malloc(sizeof(float) * dI);
        double *I = malloc(sizeof(double) * T);
        for (int t = 0; t < T; t++) {
            lin1(W("model.layers.%d.self_attn.indexer.wq_b.weight", l), HI * dI, rq, qr + t * rq, qi + t * HI * dI, fp8);
            lin1(W("model.layers.%d.self_attn.indexer.wk.weight", l), dI, D, x + (int64_t)t * D, tmp, fp8);
            layernorm(tmp, W("model.layers.%d.self_attn.indexer.k_norm.weight", l),
                      W("model.layers.%d.self_attn.indexer.k_norm.bias", l), dI, ki + t * dI);
            rope(ki + t * dI, dr, t, th, c->indexer_rope_interleave); /* rope part first */
            for (int j = 0; j < HI; j++) rope(qi + (t * HI + j) * dI, dr, t, th, c->indexer_rope_interleave);
            lin1(W("model.layers.%d.self_attn.indexer.weights_proj.weight", l), HI, D, x + (int64_t)t * D, wi + t * HI, 0);
            if (fp8) {
                sr_hadamard(ki + t * dI, dI, tmp);
                dsq_fwd_act_fp8(tmp, ki + t * dI, dI, dI);
                for (int j = 0; j < HI; j++) {
                    sr_hadamard(qi + (t * HI + j) * dI, dI, tmp);
                    dsq_fwd_act_fp8(tmp, qi + (t * HI + j) * dI, dI, dI);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (int s = 0; s <= t; s++) {
                double acc = 0;
                for (int j = 0; j < HI; j++) {
                    double d = 0;
                    for (int i = 0; i < dI; i++) d += (double)qi[(t * HI + j) * dI + i] * ki[s * dI + i];
                    acc += wi[t * HI + j] / sqrt((double)HI) * (d > 0 ? d : 0);
                }
                I[s] = acc / sqrt((double)dI);
            }
            int k = t + 1 < K ? t + 1 : K;
            for (int s = 0; s <= t; s++) {
                int rank = 0;
                for (int s2 = 0; s2 <= t; s2++) rank += I[s2] > I[s] || (I[s2] == I[s] && s2 < s);
                allow[t * T + s] = rank < k;
            }
        }
        free(qi); free(ki); free(wi); free(tmp); free(I);
    }
    if (sel) memcpy(sel, allow, (size_t)T * T);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++) {
            const float *qh = q + (t * H + h) * dqk;
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                if (!allow[t * T + s]) continue;
                const float *kn = kvb + (s * H + h) * (dn + dv), *kp = kva + s * (rkv + dr) + rkv;
                double d = 0;
                for (int i = 0; i < dn; i++) d += (double)qh[i] * kn[i];
                for (int i = 0; i < dr; i++) d += (double)qh[dn + i] * kp[i];
                p[s] = d * scale;
                if (p[s] > mx) mx = p[s];
            }
            for (int s = 0; s <= t; s++)
                if (allow[t * T + s]) sum += (p[s] = exp(p[s] - mx));
            for (int j = 0; j < dv; j++) {
                double acc = 0;
                for (int s = 0; s <= t; s++)
                    if (allow[t * T + s]) acc += p[s] / sum * kvb[(s * H + h) * (dn + dv) + dn + j];
                o[h * dv + j] = (float)acc;
            }
        }
        lin1(W("model.layers.%d.self_attn.o_proj.weight", l), D, H * dv, o, out + (int64_t)t * D, fp8);
    }
    free(cq); free(qr); free(q); free(kva); free(lat); free(kvb); free(o); free(allow); free(p);
}

void sr_route(const dsq_config *c, const float *z, const float *bias, int32_t *ex, float *w) {
    int E = c->n_routed_experts, G = c->n_group, per = E / G, ke = c->n_experts_per_tok;
    double sig[512], b[512], gs[64];
    int keep[64];
    for (int e = 0; e < E; e++) {
        sig[e] = 1 / (1 + exp(-(double)z[e]));
        b[e] = sig[e] + (bias ? bias[e] : 0);
    }
    /* group score: best + second best biased score of the group */
    for (int g = 0; g < G; g++) {
        double b1 = -INFINITY, b2 = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; e++) {
            if (b[e] > b1) { b2 = b1; b1 = b[e]; }
            else if (b[e] > b2) b2 = b[e];
        }
        gs[g] = per > 1 ? b1 + b2 : b1;
    }
    for (int g = 0; g < G; g++) {
        int rank = 0;
        for (int g2 = 0; g2 < G; g2++) rank += gs[g2] > gs[g] || (gs[g2] == gs[g] && g2 < g);
        keep[g] = rank < c->topk_group;
    }
    int n = 0;
    double sum = 0;
    for (int e = 0; e < E; e++) {
        if (!keep[e / per]) continue;
        int rank = 0;
        for (int e2 = 0; e2 < E; e2++)
            if (keep[e2 / per]) rank += b[e2] > b[e] || (b[e2] == b[e] && e2 < e);
        if (rank < ke) { ex[rank] = e; n++; sum += sig[e]; }
    }
    for (int k = 0; k < n; k++)
        w[k] = (float)((c->norm_topk_prob ? sig[ex[k]] / sum : sig[ex[k]]) * c->routed_scaling_factor);
}

static void mlp1(const float *Wg, const float *Wu, const float *Wd, int F, int D, const float *x,
                 float *y, int fp8) {
    float *g = malloc(sizeof(float) * F), *u = malloc(sizeof(float) * F);
    lin1(Wg, F, D, x, g, fp8);
    lin1(Wu, F, D, x, u, fp8);
    for (int i = 0; i < F; i++) g[i] = (float)(g[i] / (1 + exp(-(double)g[i])) * u[i]);
    lin1(Wd, D, F, g, y, fp8);
    free(g); free(u);
}

void sr_ffn(const tmodel *m, const int l, const float *x2, int T, int fp8, float *out, int32_t *ex,
            float *w, float *eo) {
    const dsq_config *c = &m->cfg;
    int D = c->hidden_size;
    if (l < c->first_k_dense) {
        for (int t = 0; t < T; t++)
            mlp1(W("model.layers.%d.mlp.gate_proj.weight", l), W("model.layers.%d.mlp.up_proj.weight", l),
                 W("model.layers.%d.mlp.down_proj.weight", l), c->intermediate_size, D,
                 x2 + (int64_t)t * D, out + (int64_t)t * D, fp8);
        return;
    }
    int E = c->n_routed_experts, ke = c->n_experts_per_tok, Fe = c->moe_intermediate_size;
    float *z = malloc(sizeof(float) * E), *y = malloc(sizeof(float) * D), *wt = malloc(sizeof(float) * ke);
    int32_t *exl = malloc(sizeof(int32_t) * ke);
    for (int t = 0; t < T; t++) {
        const float *xt = x2 + (int64_t)t * D;
        lin1(W("model.layers.%d.mlp.gate.weight", l), E, D, xt, z, 0);
        sr_route(c, z, W("model.layers.%d.mlp.gate.e_score_correction_bias", l), exl, wt);
        double *acc = calloc((size_t)D, sizeof(double));
        for (int k = 0; k < ke; k++) {
            int e = exl[k];
            mlp1(W("model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e),
                 W("model.layers.%d.mlp.experts.%d.up_proj.weight", l, e),
                 W("model.layers.%d.mlp.experts.%d.down_proj.weight", l, e), Fe, D, xt, y, fp8);
            for (int i = 0; i < D; i++) acc[i] += (double)wt[k] * y[i];
            if (eo) memcpy(eo + ((int64_t)t * ke + k) * D, y, sizeof(float) * D);
        }
        if (c->n_shared_experts > 0) {
            mlp1(W("model.layers.%d.mlp.shared_experts.gate_proj.weight", l),
                 W("model.layers.%d.mlp.shared_experts.up_proj.weight", l),
                 W("model.layers.%d.mlp.shared_experts.down_proj.weight", l),
                 c->n_shared_experts * Fe, D, xt, y, fp8);
            for (int i = 0; i < D; i++) acc[i] += y[i]; /* unweighted */
        }
        for (int i = 0; i < D; i++) out[(int64_t)t * D + i] = (float)acc[i];
        if (ex) memcpy(ex + (int64_t)t * ke, exl, sizeof(int32_t) * ke);
        if (w) memcpy(w + (int64_t)t * ke, wt, sizeof(float) * ke);
        free(acc);
    }
    free(z); free(y); free(wt); free(exl);
}

void sr_forward(const tmodel *m, const int32_t *tok, int T, int fp8, float *logits, float *resid) {
    const dsq_config *c = &m->cfg;
    int D = c->hidden_size;
    int64_t n = (int64_t)T * D;
    float *h = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    for (int t = 0; t < T; t++) memcpy(h + t * D, W("model.embed_tokens.weight") + (int64_t)tok[t] * D, sizeof(float) * D);
    if (resid) memcpy(resid, h, sizeof(float) * n);
    for (int l = 0; l < c->n_layers; l++) {
        for (int t = 0; t < T; t++)
            sr_rmsnorm(h + t * D, W("model.layers.%d.input_layernorm.weight", l), D, c->rms_norm_eps, x + t * D);
        sr_attention(m, l, x, T, fp8, y, NULL);
        for (int64_t i = 0; i < n; i++) h[i] += y[i];
        for (int t = 0; t < T; t++)
            sr_rmsnorm(h + t * D, W("model.layers.%d.post_attention_layernorm.weight", l), D, c->rms_norm_eps, x + t * D);
        sr_ffn(m, l, x, T, fp8, y, NULL, NULL, NULL);
        for (int64_t i = 0; i < n; i++) h[i] += y[i];
        if (resid) memcpy(resid + (l + 1) * n, h, sizeof(float) * n);
    }
    for (int t = 0; t < T; t++) {
        sr_rmsnorm(h + t * D, W("model.norm.weight"), D, c->rms_norm_eps, x + t * D);
        lin1(W("lm_head.weight"), c->vocab_size, D, x + t * D, logits + (int64_t)t * c->vocab_size, 0);
    }
    free(h); free(x); free(y);
}
