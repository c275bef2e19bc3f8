/*
 * test_forward.c -- the reference forward pass (verify/forward.c) block by
 * block against the slow transcription of the spec in slowref.c, on small
 * random models; the spec's YaRN tables; the FP8 activation rule; thread
 * invariance; error paths.
 */
#include "test.h"
#include "slowref.h"
#include "tmodel.h"
#include "verify/forward.h"
#include "common.h"
#include "quant/dtype.h"

#include <math.h>
#include <stdlib.h>

/* ---- spec tables ---------------------------------------------------------- */

TEST(test_forward_yarn_table) {
    /* spec §6.1: d_r = 32, factor 40, original 4096, beta 32/1 */
    static const double t32[16] = {
        1.0000000e+00, 5.6234133e-01, 3.1622776e-01, 1.7782794e-01, 1.0000000e-01, 5.6234129e-02,
        2.7218176e-02, 1.2829017e-02, 5.8214283e-03, 2.4903687e-03, 9.5997716e-04, 2.9214591e-04,
        2.5000001e-05, 1.4058533e-05, 7.9056945e-06, 4.4456983e-06};
    /* spec §4.3: the 671B width d_r = 64 */
    static const double t64[32] = {
        1.0000000e+00, 7.4989420e-01, 5.6234133e-01, 4.2169651e-01, 3.1622776e-01, 2.3713736e-01,
        1.7782794e-01, 1.3335215e-01, 1.0000000e-01, 7.4989416e-02, 5.6234129e-02, 3.9006926e-02,
        2.6879361e-02, 1.8378144e-02, 1.2447956e-02, 8.3345091e-03, 5.5000004e-03, 3.5619973e-03,
        2.2493652e-03, 1.3705135e-03, 7.9056941e-04, 4.1499041e-04, 1.7782794e-04, 3.3338038e-05,
        2.5000001e-05, 1.8747354e-05, 1.4058533e-05, 1.0542412e-05, 7.9056945e-06, 5.9284348e-06,
        4.4456983e-06, 3.3338038e-06};
    dsq_config c;
    tm_small_config(&c);
    c.rope_theta = 10000;
    c.yarn_factor = 40;
    c.yarn_original_max_pos = 4096;
    c.yarn_beta_fast = 32;
    c.yarn_beta_slow = 1;
    c.yarn_mscale = c.yarn_mscale_all_dim = 1;
    float th[32];
    double sth[32];
    c.qk_rope_head_dim = 32;
    c.qk_nope_head_dim = 32;
    dsq_fwd_rope_freqs(&c, th);
    sr_theta(&c, sth);
    for (int i = 0; i < 16; i++) {
        CHECKF(fabs(th[i] - t32[i]) <= 1e-6 * t32[i], "d=32 i=%d: %.8e vs %.8e", i, th[i], t32[i]);
        CHECKF(fabs(sth[i] - t32[i]) <= 1e-6 * t32[i], "slow d=32 i=%d", i);
    }
    CHECKF(fabs(dsq_fwd_softmax_scale(&c) - 0.23423177588657831) < 1e-12, "tiny softmax scale %.17g",
           dsq_fwd_softmax_scale(&c));
    c.qk_rope_head_dim = 64;
    c.qk_nope_head_dim = 128;
    dsq_fwd_rope_freqs(&c, th);
    for (int i = 0; i < 32; i++)
        CHECKF(fabs(th[i] - t64[i]) <= 1e-6 * t64[i], "d=64 i=%d: %.8e vs %.8e", i, th[i], t64[i]);
    CHECKF(fabs(dsq_fwd_softmax_scale(&c) - 0.1352337788608801) < 1e-12, "671B softmax scale");
    /* factor 1 (the trained tiny models) or has_yarn off: plain RoPE, no mscale */
    c.yarn_factor = 1.0;
    dsq_fwd_rope_freqs(&c, th);
    for (int i = 0; i < 32; i++) CHECK(th[i] == 1.0f / powf(10000.0f, (float)(2 * i) / 64.0f));
    CHECK(fabs(dsq_fwd_softmax_scale(&c) - 1 / sqrt(192.0)) < 1e-15);
}

TEST(test_forward_rope_layouts) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8], c[4], s[4];
    for (int i = 0; i < 4; i++) {
        c[i] = cosf(0.3f * (i + 1));
        s[i] = sinf(0.3f * (i + 1));
    }
    memcpy(y, x, sizeof x);
    dsq_fwd_rope(y, 8, c, s, 1); /* pairs (0,1) (2,3) ... */
    for (int i = 0; i < 4; i++) {
        CHECK(fabsf(y[2 * i] - (x[2 * i] * c[i] - x[2 * i + 1] * s[i])) < 1e-6f);
        CHECK(fabsf(y[2 * i + 1] - (x[2 * i] * s[i] + x[2 * i + 1] * c[i])) < 1e-6f);
    }
    memcpy(y, x, sizeof x);
    dsq_fwd_rope(y, 8, c, s, 0); /* pairs (0,4) (1,5) ... */
    for (int i = 0; i < 4; i++) {
        CHECK(fabsf(y[i] - (x[i] * c[i] - x[i + 4] * s[i])) < 1e-6f);
        CHECK(fabsf(y[i + 4] - (x[i] * s[i] + x[i + 4] * c[i])) < 1e-6f);
    }
}

TEST(test_forward_norms) {
    uint64_t rng = 3;
    float x[77], w[77], b[77], y[77], z[77];
    for (int i = 0; i < 77; i++) {
        x[i] = 3 * tm_rand(&rng) + 0.5f;
        w[i] = 1 + 0.1f * tm_rand(&rng);
        b[i] = 0.1f * tm_rand(&rng);
    }
    dsq_fwd_rmsnorm(x, w, 77, 1e-6f, y);
    sr_rmsnorm(x, w, 77, 1e-6, z);
    CHECK(sr_relerr(y, z, 77) < 1e-6);
    /* LayerNorm: zero mean, unit variance before the affine part */
    float one[77], zero[77] = {0};
    for (int i = 0; i < 77; i++) one[i] = 1;
    dsq_fwd_layernorm(x, one, zero, 77, 1e-6f, y);
    double mu = 0, var = 0;
    for (int i = 0; i < 77; i++) mu += y[i];
    mu /= 77;
    for (int i = 0; i < 77; i++) var += (y[i] - mu) * (y[i] - mu);
    CHECK(fabs(mu) < 1e-6 && fabs(var / 77 - 1) < 1e-5);
    dsq_fwd_layernorm(x, w, b, 77, 1e-6f, z);
    for (int i = 0; i < 77; i++) CHECK(fabsf(z[i] - (y[i] * w[i] + b[i])) < 1e-5f);
}

/* ---- FP8 activations and the Hadamard rotation --------------------------- */

/* Independent statement of the scale rule: smallest power of two >= the
 * fp32 product max(amax, 1e-4) * fp32(1/448). */
static float rule_scale(const float *x, int n) {
    float amax = 0;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float v = fmaxf(amax, 1e-4f) * (1.0f / 448.0f);
    float s = ldexpf(1.0f, -40);
    while (s < v) s *= 2;
    return s;
}

TEST(test_forward_act_fp8_scale_rule) {
    dsq_codecs_init();
    float x[300], y[300];
    /* amax exactly 448: scale 1, E4M3 values pass unchanged */
    for (int i = 0; i < 128; i++) x[i] = dsq_e4m3_to_f32((uint8_t)(i % 126));
    x[5] = -448;
    dsq_fwd_act_fp8(x, y, 128, 128);
    CHECK(memcmp(x, y, 128 * sizeof(float)) == 0);
    /* amax 449 -> scale 2; 449/2 = 224.5 rounds to 224 (E4M3 step 16 there: 224, 240) */
    x[5] = 449;
    dsq_fwd_act_fp8(x, y, 128, 128);
    CHECK(y[5] == 448.0f);
    CHECK(y[1] == 0.0f); /* 0.001953125 / 2 is below half the smallest subnormal: flushes to 0 */
    /* all zero: amax floored at 1e-4, scale 2^-22, output zero */
    memset(x, 0, sizeof x);
    dsq_fwd_act_fp8(x, y, 128, 128);
    for (int i = 0; i < 128; i++) CHECK(y[i] == 0.0f);
    CHECK(rule_scale(x, 128) == ldexpf(1, -22));
    /* random groups, including a short last group of 44 */
    uint64_t rng = 9;
    for (int i = 0; i < 300; i++) x[i] = tm_rand(&rng) * (i < 128 ? 5.0f : i < 256 ? 0.01f : 300.0f);
    dsq_fwd_act_fp8(x, y, 300, 128);
    for (int g = 0; g < 3; g++) {
        int g0 = g * 128, n = g < 2 ? 128 : 44;
        float s = rule_scale(x + g0, n);
        for (int i = g0; i < g0 + n; i++) {
            float q = y[i] / s;
            CHECKF(fabsf(q) <= 448 && dsq_e4m3_to_f32(dsq_f32_to_e4m3(q)) == q, "group %d elt %d", g, i);
            /* nearest E4M3 value of x/s (ties aside, within half a step) */
            float r = x[i] / s;
            CHECKF(fabsf(q - r) <= fabsf(r) / 16 + ldexpf(1, -10), "group %d elt %d: %g vs %g", g, i, q, r);
        }
        /* the group maximum lands in (224, 448] */
        float mq = 0;
        for (int i = g0; i < g0 + n; i++) mq = fmaxf(mq, fabsf(y[i] / s));
        CHECKF(mq > 224 && mq <= 448, "group %d max %g", g, mq);
    }
    /* in place equals out of place */
    memcpy(y, x, sizeof x);
    dsq_fwd_act_fp8(y, y, 300, 128);
    float y2[300];
    dsq_fwd_act_fp8(x, y2, 300, 128);
    CHECK(memcmp(y, y2, sizeof y) == 0);
}

TEST(test_forward_hadamard) {
    uint64_t rng = 4;
    float v[64], a[64], b[64];
    for (int i = 0; i < 64; i++) v[i] = tm_rand(&rng);
    memcpy(a, v, sizeof v);
    dsq_fwd_hadamard(a, 64);
    sr_hadamard(v, 64, b);
    CHECK(sr_relerr(a, b, 64) < 1e-6);
    dsq_fwd_hadamard(a, 64); /* orthonormal and symmetric: applying twice is the identity */
    CHECK(sr_relerr(a, v, 64) < 1e-6);
}

/* ---- router ---------------------------------------------------------------- */

static int route_trials(dsq_config *c, float zscale, float bscale, float boff, int *bias_mattered) {
    uint64_t rng = 77;
    int E = c->n_routed_experts, ke = c->n_experts_per_tok, per = E / c->n_group;
    float z[256], bias[256], w1[16], w2[16], scratch[600];
    int32_t e1[16], e2[16], e3[16];
    for (int trial = 0; trial < 300; trial++) {
        for (int e = 0; e < E; e++) {
            z[e] = zscale * tm_rand(&rng);
            bias[e] = boff + bscale * tm_rand(&rng);
        }
        dsq_fwd_route(c, z, bias, e1, w1, scratch);
        sr_route(c, z, bias, e2, w2);
        double sum = 0;
        int groups[64] = {0}, ng = 0;
        for (int k = 0; k < ke; k++) {
            if (e1[k] != e2[k]) return 0;
            if (fabsf(w1[k] - w2[k]) > 1e-6f * fabsf(w2[k]) + 1e-7f) return 0;
            if (!(w1[k] > 0)) return 0;
            sum += w1[k];
            if (!groups[e1[k] / per]++) ng++;
        }
        if (c->norm_topk_prob && fabs(sum - c->routed_scaling_factor) > 1e-5) return 0;
        if (ng > c->topk_group) return 0;
        dsq_fwd_route(c, z, NULL, e3, w1, scratch);
        for (int k = 0; k < ke; k++) *bias_mattered |= e3[k] != e1[k];
    }
    return 1;
}

TEST(test_forward_router) {
    dsq_config c;
    tm_small_config(&c);
    int mattered = 0;
    /* tiny-v32 shape: 16 experts, 4 groups keep 2, top 4 */
    c.n_routed_experts = 16;
    c.n_experts_per_tok = 4;
    CHECK(route_trials(&c, 2.0f, 0.05f, 0, &mattered));
    CHECK(mattered);
    /* 671B shape: 256 experts, 8 groups keep 4, top 8 */
    c.n_routed_experts = 256;
    c.n_group = 8;
    c.topk_group = 4;
    c.n_experts_per_tok = 8;
    CHECK(route_trials(&c, 3.0f, 0.05f, 0, &mattered));
    /* strongly negative biased scores: discarded groups must lose even so */
    CHECK(route_trials(&c, 3.0f, 0.3f, -2.0f, &mattered));
    c.norm_topk_prob = 0;
    CHECK(route_trials(&c, 3.0f, 0.05f, 0, &mattered));
}

/* ---- whole model, block by block ------------------------------------------ */

static void random_tokens(int32_t *tok, int T, int V, uint64_t seed) {
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((tm_rand(&seed) * 0.5f + 0.5f) * V) % V;
}

static int same_set(const int32_t *row, int k, const uint8_t *sel, int t, int T) {
    int n = 0;
    for (int i = 0; i < k; i++) {
        if (row[i] < 0) continue;
        if (row[i] > t || !sel[(int64_t)t * T + row[i]]) return 0;
        n++;
    }
    int want = 0;
    for (int s = 0; s < T; s++) want += sel[(int64_t)t * T + s];
    return n == want;
}

static void blocks_case(int fp8, int T, double tol) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 42) == 0);
    int D = c.hidden_size, V = c.vocab_size, ke = c.n_experts_per_tok;
    dsq_fwd_opts o = {.max_tokens = 48, .n_threads = 2, .act_fp8 = fp8, .trace = DSQ_TRACE_TOPK};
    dsq_fwd *f = NULL;
    dsq_err err = {0};
    int32_t tok[48], ex[48 * 8];
    float *prev = malloc(sizeof(float) * T * D), *x = malloc(sizeof(float) * T * D);
    float *ref = malloc(sizeof(float) * T * D), *eo = malloc(sizeof(float) * T * ke * D);
    float *lg = malloc(sizeof(float) * T * V), *lg2 = malloc(sizeof(float) * T * V), w[48 * 8];
    uint8_t *sel = malloc((size_t)T * T);
    random_tokens(tok, T, V, 1234);
    CHECKF(dsq_fwd_new(&f, &m.w, &o, &err) == 0, "%s", err.msg);
    CHECK(dsq_fwd_begin(f, tok, T, &err) == 0);
    for (int t = 0; t < T; t++) memcpy(prev + t * D, tm_get(&m, "model.embed_tokens.weight") + tok[t] * D, sizeof(float) * D);
    for (int l = 0; l < c.n_layers; l++) {
        dsq_fwd_view v;
        CHECKF(dsq_fwd_layer(f, &v, &err) == 0, "%s", err.msg);
        CHECK(v.layer == l && v.n_tokens == T && v.hidden == D);
        for (int t = 0; t < T; t++)
            sr_rmsnorm(prev + t * D, tm_get(&m, "model.layers.%d.input_layernorm.weight", l), D, c.rms_norm_eps, x + t * D);
        sr_attention(&m, l, x, T, fp8, ref, sel);
        double e = sr_relerr(v.attn_out, ref, (int64_t)T * D);
        CHECKF(e < tol, "layer %d attention rel err %g", l, e);
        if (T > c.index_topk) {
            CHECK(v.topk && v.topk_k == c.index_topk);
            for (int t = 0; t < T; t++) CHECKF(same_set(v.topk + t * v.topk_k, v.topk_k, sel, t, T), "layer %d query %d: indexer set", l, t);
        } else {
            CHECK(v.topk == NULL);
        }
        sr_ffn(&m, l, v.ffn_in, T, fp8, ref, ex, w, eo);
        e = sr_relerr(v.ffn_out, ref, (int64_t)T * D);
        CHECKF(e < tol, "layer %d ffn rel err %g", l, e);
        if (l >= c.first_k_dense) {
            CHECK(v.n_slots == ke && v.experts && v.weights && v.expert_out && v.shared_out);
            for (int i = 0; i < T * ke; i++) {
                CHECKF(v.experts[i] == ex[i], "layer %d slot %d: expert %d vs %d", l, i, v.experts[i], ex[i]);
                CHECK(fabsf(v.weights[i] - w[i]) < 1e-5f);
            }
            e = sr_relerr(v.expert_out, eo, (int64_t)T * ke * D);
            CHECKF(e < tol, "layer %d expert outputs rel err %g", l, e);
        } else {
            CHECK(v.n_slots == 0 && v.experts == NULL);
        }
        memcpy(prev, v.resid, sizeof(float) * T * D);
    }
    CHECK(dsq_fwd_layer(f, NULL, &err) == DSQ_EOF);
    CHECKF(dsq_fwd_logits(f, lg, &err) == 0, "%s", err.msg);
    sr_forward(&m, tok, T, fp8, lg2, NULL);
    double e = sr_relerr(lg, lg2, (int64_t)T * V);
    CHECKF(e < tol * 10, "logits rel err %g", e);
    /* dsq_fwd_run gives the same bits as the step-by-step run */
    CHECK(dsq_fwd_run(f, tok, T, lg2, &err) == 0);
    CHECK(memcmp(lg, lg2, sizeof(float) * T * V) == 0);
    dsq_fwd_free(f);
    tm_free(&m);
    free(prev); free(x); free(ref); free(eo); free(lg); free(lg2); free(sel);
}

TEST(test_forward_blocks_f32) {
    blocks_case(0, 12, 1e-5); /* sparse: 12 > index_topk 5 */
    if (t_failed()) return;
    blocks_case(0, 4, 1e-5);  /* dense: every key visible */
}

TEST(test_forward_blocks_act_fp8) { blocks_case(1, 12, 1e-4); }

/* Equal index scores: the selection must break ties toward the smaller
 * position.  With wk = 0 and a k_norm bias that is zero on the RoPE part,
 * every key is the same vector (LayerNorm of 0 is its bias; rotating zeros
 * gives zeros), so every visible key of a query scores the same. */
TEST(test_forward_indexer_ties) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 9) == 0);
    for (int l = 0; l < c.n_layers; l++) {
        char nm[128];
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.indexer.wk.weight", l);
        tm_tensor *wk = tm_find(&m, nm);
        memset(wk->data, 0, sizeof(float) * (size_t)(wk->shape[0] * wk->shape[1]));
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.indexer.k_norm.bias", l);
        tm_tensor *b = tm_find(&m, nm);
        for (int i = 0; i < c.qk_rope_head_dim; i++) b->data[i] = 0;
    }
    enum { T = 16 };
    int32_t tok[T];
    random_tokens(tok, T, c.vocab_size, 17);
    dsq_fwd_opts o = {.max_tokens = T, .n_threads = 2, .trace = DSQ_TRACE_TOPK};
    dsq_fwd *f;
    dsq_err err;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == 0);
    CHECK(dsq_fwd_begin(f, tok, T, &err) == 0);
    dsq_fwd_view v;
    int K = c.index_topk;
    for (int l = 0; l < c.n_layers; l++) {
        CHECK(dsq_fwd_layer(f, &v, &err) == 0 && v.topk);
        for (int t = K; t < T; t++) {
            int seen[T] = {0};
            for (int i = 0; i < K; i++) {
                int32_t s = v.topk[t * K + i];
                CHECKF(s >= 0 && s < K, "layer %d query %d: kept position %d", l, t, s);
                seen[s] = 1;
            }
            for (int s = 0; s < K; s++) CHECK(seen[s]);
        }
    }
    dsq_fwd_free(f);
    tm_free(&m);
}

/* ---- threads, steps, experts ---------------------------------------------- */

typedef struct {
    float *logits, *resid;
    int32_t *topk, *experts;
} run_out;

static int run_threads(tmodel *m, int nt, int fp8, const int32_t *tok, int T, run_out *r) {
    const dsq_config *c = &m->cfg;
    dsq_fwd_opts o = {.max_tokens = T, .n_threads = nt, .act_fp8 = fp8, .trace = DSQ_TRACE_TOPK};
    dsq_fwd *f;
    dsq_err err;
    int D = c->hidden_size, K = c->index_topk, ke = c->n_experts_per_tok;
    if (dsq_fwd_new(&f, &m->w, &o, &err)) return -1;
    if (dsq_fwd_begin(f, tok, T, &err)) return -1;
    dsq_fwd_view v;
    for (int l = 0; l < c->n_layers; l++) {
        if (dsq_fwd_layer(f, &v, &err)) return -1;
        memcpy(r->resid + (int64_t)l * T * D, v.resid, sizeof(float) * T * D);
        memcpy(r->topk + (int64_t)l * T * K, v.topk, sizeof(int32_t) * T * K);
        if (v.experts) memcpy(r->experts + (int64_t)l * T * ke, v.experts, sizeof(int32_t) * T * ke);
    }
    int rc = dsq_fwd_logits(f, r->logits, &err);
    dsq_fwd_free(f);
    return rc;
}

TEST(test_forward_threads_identical) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    c.n_heads = 3;
    CHECK(tm_build(&m, &c, 7) == 0);
    enum { T = 40 };
    int32_t tok[T];
    random_tokens(tok, T, c.vocab_size, 99);
    int D = c.hidden_size, L = c.n_layers;
    run_out r[2];
    for (int fp8 = 0; fp8 < 2; fp8++) {
        for (int i = 0; i < 2; i++) {
            r[i].logits = calloc((size_t)T * c.vocab_size, sizeof(float));
            r[i].resid = calloc((size_t)L * T * D, sizeof(float));
            r[i].topk = calloc((size_t)L * T * c.index_topk, sizeof(int32_t));
            r[i].experts = calloc((size_t)L * T * c.n_experts_per_tok, sizeof(int32_t));
            CHECK(run_threads(&m, i ? 3 : 1, fp8, tok, T, &r[i]) == 0);
        }
        CHECK(memcmp(r[0].logits, r[1].logits, sizeof(float) * T * c.vocab_size) == 0);
        CHECK(memcmp(r[0].resid, r[1].resid, sizeof(float) * L * T * D) == 0);
        CHECK(memcmp(r[0].topk, r[1].topk, sizeof(int32_t) * L * T * c.index_topk) == 0);
        CHECK(memcmp(r[0].experts, r[1].experts, sizeof(int32_t) * L * T * c.n_experts_per_tok) == 0);
        for (int i = 0; i < 2; i++) {
            free(r[i].logits); free(r[i].resid); free(r[i].topk); free(r[i].experts);
        }
    }
    tm_free(&m);
}

TEST(test_forward_expert_and_begin_at) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 5) == 0);
    enum { T = 20 };
    int32_t tok[T];
    random_tokens(tok, T, c.vocab_size, 3);
    int D = c.hidden_size, V = c.vocab_size, ke = c.n_experts_per_tok;
    for (int fp8 = 0; fp8 < 2; fp8++) {
        dsq_fwd_opts o = {.max_tokens = T, .n_threads = 2, .act_fp8 = fp8};
        dsq_fwd *f;
        dsq_err err;
        CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == 0);
        float *lg = malloc(sizeof(float) * T * V), *lg2 = malloc(sizeof(float) * T * V);
        float *r1 = malloc(sizeof(float) * T * D), *x = malloc(sizeof(float) * T * D);
        float *y = malloc(sizeof(float) * T * D), *want = malloc(sizeof(float) * T * D);
        float *xin = malloc(sizeof(float) * T * D), *eo = malloc(sizeof(float) * T * ke * D);
        int32_t ex[T * 8];
        dsq_fwd_view v;
        CHECK(dsq_fwd_begin(f, tok, T, &err) == 0);
        CHECK(dsq_fwd_layer(f, &v, &err) == 0);
        memcpy(r1, v.resid, sizeof(float) * T * D);
        CHECK(dsq_fwd_layer(f, &v, &err) == 0);          /* layer 1: MoE */
        memcpy(xin, v.ffn_in, sizeof(float) * T * D);
        memcpy(eo, v.expert_out, sizeof(float) * T * ke * D);
        memcpy(ex, v.experts, sizeof(int32_t) * T * ke);
        /* each expert alone on its tokens reproduces the in-block outputs */
        for (int e = -1; e < c.n_routed_experts; e++) {
            int n = 0;
            for (int i = 0; i < T * ke; i++)
                if (e < 0 || ex[i] == e) {
                    if (e < 0 && i % ke) continue;
                    memcpy(x + n * D, xin + (i / ke) * D, sizeof(float) * D);
                    memcpy(want + n * D, e < 0 ? v.shared_out + (i / ke) * D : eo + i * D, sizeof(float) * D);
                    n++;
                }
            CHECKF(dsq_fwd_expert(f, 1, e, x, n, y, &err) == 0, "%s", err.msg);
            CHECKF(memcmp(y, want, sizeof(float) * n * D) == 0, "expert %d fp8 %d", e, fp8);
        }
        CHECK(dsq_fwd_expert(f, 0, 0, x, 1, y, &err) == DSQ_E_ARG); /* dense layer */
        /* full run vs a run restarted at layer 1 from the saved residual */
        CHECK(dsq_fwd_run(f, tok, T, lg, &err) == 0);
        CHECK(dsq_fwd_begin_at(f, 1, r1, T, &err) == 0);
        int rc;
        while ((rc = dsq_fwd_layer(f, NULL, &err)) == 0) {}
        CHECK(rc == DSQ_EOF);
        CHECK(dsq_fwd_logits(f, lg2, &err) == 0);
        CHECK(memcmp(lg, lg2, sizeof(float) * T * V) == 0);
        dsq_fwd_free(f);
        free(lg); free(lg2); free(r1); free(x); free(y); free(want); free(xin); free(eo);
    }
    tm_free(&m);
}

/* ---- the calibration hook ------------------------------------------------- */

typedef struct {
    int count[3][DSQ_R_COUNT][9]; /* layer, role, expert + 1 */
    int rows[3][DSQ_R_COUNT][9], cols[3][DSQ_R_COUNT][9];
    float *exp_in[3][8];          /* routed experts' gate inputs, copied */
    int bad;
} observed;

static void on_observe(void *arg, int layer, dsq_role role, int expert, const float *x, int n,
                       int cols) {
    observed *o = arg;
    if (layer < 0 || layer > 2 || role <= 0 || role >= DSQ_R_COUNT || expert < -1 || expert > 7 ||
        n < 1 || !isfinite(x[(int64_t)n * cols - 1])) {
        o->bad++;
        return;
    }
    o->count[layer][role][expert + 1]++;
    o->rows[layer][role][expert + 1] = n;
    o->cols[layer][role][expert + 1] = cols;
    if (role == DSQ_R_EXP_GATE && !o->exp_in[layer][expert]) {
        o->exp_in[layer][expert] = malloc(sizeof(float) * (size_t)n * cols);
        memcpy(o->exp_in[layer][expert], x, sizeof(float) * (size_t)n * cols);
    }
}

TEST(test_forward_observe_hook) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 12) == 0);
    enum { T = 12 };
    int32_t tok[T];
    random_tokens(tok, T, c.vocab_size, 21);
    observed *ob = calloc(1, sizeof *ob);
    dsq_fwd_opts o = {.max_tokens = T, .n_threads = 2, .observe = on_observe, .observe_arg = ob};
    dsq_fwd *f, *g;
    dsq_err err;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == 0);
    o.observe = NULL;
    CHECK(dsq_fwd_new(&g, &m.w, &o, &err) == 0);
    int D = c.hidden_size, ke = c.n_experts_per_tok;
    float *a = malloc(sizeof(float) * T * c.vocab_size), *b = malloc(sizeof(float) * T * c.vocab_size);
    float *x2 = malloc(sizeof(float) * 3 * T * D);
    int32_t ex[3][T * 8];
    CHECK(dsq_fwd_begin(f, tok, T, &err) == 0);
    dsq_fwd_view v;
    for (int l = 0; l < c.n_layers; l++) {
        CHECK(dsq_fwd_layer(f, &v, &err) == 0);
        memcpy(x2 + l * T * D, v.ffn_in, sizeof(float) * T * D);
        if (v.experts) memcpy(ex[l], v.experts, sizeof(int32_t) * T * ke);
        /* calling one expert alone (as verify does) is not observed */
        if (v.experts) CHECK(dsq_fwd_expert(f, l, 0, v.ffn_in, 1, b, &err) == 0);
    }
    CHECK(dsq_fwd_logits(f, a, &err) == 0);
    CHECK(dsq_fwd_run(g, tok, T, b, &err) == 0);
    CHECK(memcmp(a, b, sizeof(float) * T * c.vocab_size) == 0); /* observing changes nothing */
    CHECK(ob->bad == 0);
    int Fs = c.n_shared_experts * c.moe_intermediate_size;
    for (int l = 0; l < c.n_layers; l++) {
        struct { dsq_role r; int cols; } once[] = {
            {DSQ_R_ATTN_Q_A, D}, {DSQ_R_ATTN_Q_B, c.q_lora_rank}, {DSQ_R_ATTN_KV_B, c.kv_lora_rank},
            {DSQ_R_ATTN_O, c.n_heads * c.v_head_dim},
            {l ? DSQ_R_SHEXP_GATE : DSQ_R_DENSE_GATE, D},
            {l ? DSQ_R_SHEXP_DOWN : DSQ_R_DENSE_DOWN, l ? Fs : c.intermediate_size}};
        for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
            CHECKF(ob->count[l][once[i].r][0] == 1, "layer %d role %s: %d reports", l,
                   dsq_role_name(once[i].r), ob->count[l][once[i].r][0]);
            CHECK(ob->rows[l][once[i].r][0] == T && ob->cols[l][once[i].r][0] == once[i].cols);
        }
        for (int e = 0; e < c.n_routed_experts; e++) {
            int cnt = 0;
            for (int k = 0; l && k < T * ke; k++) cnt += ex[l][k] == e;
            CHECKF(ob->count[l][DSQ_R_EXP_GATE][e + 1] == (cnt > 0) &&
                       ob->count[l][DSQ_R_EXP_DOWN][e + 1] == (cnt > 0),
                   "layer %d expert %d", l, e);
            if (!cnt) continue;
            CHECK(ob->rows[l][DSQ_R_EXP_GATE][e + 1] == cnt && ob->cols[l][DSQ_R_EXP_DOWN][e + 1] == c.moe_intermediate_size);
            /* the gate input rows are the routed tokens' FFN inputs, in token order */
            for (int k = 0, r = 0; k < T * ke; k++)
                if (ex[l][k] == e) {
                    CHECK(memcmp(ob->exp_in[l][e] + r * D, x2 + (l * T + k / ke) * D, sizeof(float) * D) == 0);
                    r++;
                }
        }
    }
    for (int l = 0; l < 3; l++)
        for (int e = 0; e < 8; e++) free(ob->exp_in[l][e]);
    dsq_fwd_free(f);
    dsq_fwd_free(g);
    free(a); free(b); free(x2); free(ob);
    tm_free(&m);
}

/* ---- errors ----------------------------------------------------------------- */

TEST(test_forward_errors) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 1) == 0);
    dsq_fwd_opts o = {.max_tokens = 8, .n_threads = 2};
    dsq_fwd *f = NULL;
    dsq_err err = {0};
    int32_t tok[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float *lg = malloc(sizeof(float) * 9 * c.vocab_size);

    /* missing tensor, wrong shape */
    tm_tensor *t = tm_find(&m, "model.layers.2.mlp.experts.5.up_proj.weight");
    CHECK(t);
    t->name[0] = 'X';
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == DSQ_E_NOTFOUND && f == NULL);
    CHECKF(strstr(err.msg, "experts.5.up_proj") != NULL, "%s", err.msg);
    t->name[0] = 'm';
    t = tm_find(&m, "model.layers.0.self_attn.kv_b_proj.weight");
    t->shape[0]--;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == DSQ_E_FORMAT);
    CHECKF(strstr(err.msg, "kv_b_proj") != NULL, "%s", err.msg);
    t->shape[0]++;

    /* inconsistent configurations */
    dsq_config bad = c;
    bad.qk_rope_head_dim = 7;
    m.cfg = bad;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == DSQ_E_CONFIG);
    bad = c;
    bad.n_group = 3;
    m.cfg = bad;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == DSQ_E_CONFIG);
    bad = c;
    bad.n_experts_per_tok = 5; /* only 2 groups x 2 experts are candidates */
    m.cfg = bad;
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == DSQ_E_CONFIG);
    m.cfg = c;

    /* bad windows and tokens */
    CHECK(dsq_fwd_new(&f, &m.w, &o, &err) == 0);
    CHECK(dsq_fwd_run(f, tok, 9, lg, &err) == DSQ_E_ARG);
    CHECK(dsq_fwd_run(f, tok, 0, lg, &err) == DSQ_E_ARG);
    tok[3] = c.vocab_size;
    CHECK(dsq_fwd_run(f, tok, 8, lg, &err) == DSQ_E_ARG);
    tok[3] = -1;
    CHECK(dsq_fwd_run(f, tok, 8, lg, &err) == DSQ_E_ARG);
    tok[3] = 4;
    CHECK(dsq_fwd_layer(f, NULL, &err) == DSQ_E_ARG); /* no window begun */
    CHECK(dsq_fwd_run(f, tok, 8, lg, &err) == 0);

    /* a weight read failing inside a worker reaches the caller */
    m.fail_id = m.w.find(&m, "model.layers.1.mlp.experts.3.down_proj.weight");
    int rc = DSQ_OK;
    for (int s = 0; s < 8 && rc == DSQ_OK; s++) { /* until some token routes to expert 3 */
        for (int i = 0; i < 8; i++) tok[i] = (tok[i] * 7 + s + 3) % c.vocab_size;
        rc = dsq_fwd_run(f, tok, 8, lg, &err);
    }
    CHECK(rc == DSQ_E_IO);
    CHECKF(strstr(err.msg, "injected") != NULL, "%s", err.msg);
    m.fail_id = -1;
    dsq_fwd_free(f);

    /* every allocation failure is reported and leaks nothing */
    for (long n = 0;; n++) {
        dsq_fault_alloc_after(n);
        f = NULL;
        rc = dsq_fwd_new(&f, &m.w, &o, &err);
        dsq_fault_alloc_after(-1);
        if (rc == 0) break;
        CHECKF(rc == DSQ_E_NOMEM && f == NULL, "allocation %ld: rc %d", n, rc);
        CHECK(n < 1000);
    }
    dsq_fwd_free(f);
    dsq_fwd_free(NULL);
    free(lg);
    tm_free(&m);
}
