/*
 * tmodel.c -- in-memory random DeepSeek-V3.2 weights behind the dsq_weights
 * vtable (see tmodel.h).  Distributions follow spec §6.3 in spirit: linear
 * weights uniform with std 1/sqrt(in), norm weights around 1, small biases.
 */
#include "tmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float tm_rand(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

void tm_small_config(dsq_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 64;
    c->hidden_size = 32;
    c->intermediate_size = 40;
    c->moe_intermediate_size = 20;
    c->n_layers = 3;
    c->first_k_dense = 1;
    c->moe_layer_freq = 1;
    c->n_heads = 2;
    c->q_lora_rank = 24;
    c->kv_lora_rank = 16;
    c->qk_nope_head_dim = 8;
    c->qk_rope_head_dim = 8;
    c->v_head_dim = 12;
    c->n_routed_experts = 8;
    c->n_shared_experts = 1;
    c->n_experts_per_tok = 2;
    c->n_group = 4;
    c->topk_group = 2;
    c->index_n_heads = 2;
    c->index_head_dim = 16;
    c->index_topk = 5;
    c->norm_topk_prob = 1;
    c->routed_scaling_factor = 2.5;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000;
    c->max_position_embeddings = 64;
    c->has_yarn = 1;
    c->yarn_factor = 4;
    c->yarn_beta_fast = 32;
    c->yarn_beta_slow = 1;
    c->yarn_mscale = 1;
    c->yarn_mscale_all_dim = 1;
    c->yarn_original_max_pos = 16;
    c->rope_interleave = 1;
    c->indexer_rope_interleave = 0;
    c->has_indexer = 1;
    c->block_rows = c->block_cols = 128;
    c->eos_token_id = 1;
    snprintf(c->model_type, sizeof c->model_type, "deepseek_v32");
}

static int add(tmodel *m, uint64_t *rng, const char *name, int nd, int64_t d0, int64_t d1,
               float center, float spread) {
    if (m->n == m->cap) {
        int nc = m->cap ? m->cap * 2 : 64;
        tm_tensor *t = realloc(m->t, (size_t)nc * sizeof *t);
        if (!t) return -1;
        m->t = t;
        m->cap = nc;
    }
    tm_tensor *t = &m->t[m->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nd = nd;
    t->shape[0] = d0;
    t->shape[1] = nd == 2 ? d1 : 1;
    size_t n = (size_t)(d0 * t->shape[1]);
    t->data = malloc(n * sizeof(float));
    if (!t->data) return -1;
    /* uniform on [-a, a] has std a / sqrt(3) */
    for (size_t i = 0; i < n; i++) t->data[i] = center + spread * sqrtf(3.0f) * tm_rand(rng);
    m->n++;
    return 0;
}

static int v_find(void *ctx, const char *name) {
    tmodel *m = ctx;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

static int v_shape(void *ctx, int id, int64_t shape[4]) {
    tmodel *m = ctx;
    if (id < 0 || id >= m->n) return 0;
    shape[0] = m->t[id].shape[0];
    shape[1] = m->t[id].nd == 2 ? m->t[id].shape[1] : 0;
    return m->t[id].nd;
}

static int v_rows(void *ctx, int id, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    tmodel *m = ctx;
    if (id < 0 || id >= m->n) {
        if (err) { err->code = DSQ_E_ARG; snprintf(err->msg, sizeof err->msg, "bad id %d", id); }
        return DSQ_E_ARG;
    }
    tm_tensor *t = &m->t[id];
    if (id == m->fail_id) {
        if (err) { err->code = DSQ_E_IO; snprintf(err->msg, sizeof err->msg, "%s: injected read failure", t->name); }
        return DSQ_E_IO;
    }
    int64_t cols = t->nd == 2 ? t->shape[1] : t->shape[0], rows = t->nd == 2 ? t->shape[0] : 1;
    if (r0 < 0 || r1 > rows || r0 > r1) {
        if (err) { err->code = DSQ_E_ARG; snprintf(err->msg, sizeof err->msg, "%s: rows %lld..%lld", t->name, (long long)r0, (long long)r1); }
        return DSQ_E_ARG;
    }
    memcpy(dst, t->data + r0 * cols, (size_t)((r1 - r0) * cols) * sizeof(float));
    return DSQ_OK;
}

int tm_build(tmodel *m, const dsq_config *c, uint64_t seed) {
    char nm[128];
    uint64_t rng = seed;
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->fail_id = -1;
    int D = c->hidden_size, H = c->n_heads, dqk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int rq = c->q_lora_rank, rkv = c->kv_lora_rank, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
#define L2(name, o, i) if (add(m, &rng, name, 2, o, i, 0, 1.0f / sqrtf((float)(i)))) goto fail
#define NRM(name, n) if (add(m, &rng, name, 1, n, 0, 1.0f, 0.1f)) goto fail
#define P(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
    if (add(m, &rng, "model.embed_tokens.weight", 2, c->vocab_size, D, 0, 1.0f)) goto fail;
    L2("lm_head.weight", c->vocab_size, D);
    NRM("model.norm.weight", D);
    for (int l = 0; l < c->n_layers; l++) {
        NRM(P("model.layers.%d.input_layernorm.weight", l), D);
        NRM(P("model.layers.%d.post_attention_layernorm.weight", l), D);
        L2(P("model.layers.%d.self_attn.q_a_proj.weight", l), rq, D);
        NRM(P("model.layers.%d.self_attn.q_a_layernorm.weight", l), rq);
        L2(P("model.layers.%d.self_attn.q_b_proj.weight", l), H * dqk, rq);
        L2(P("model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l), rkv + c->qk_rope_head_dim, D);
        NRM(P("model.layers.%d.self_attn.kv_a_layernorm.weight", l), rkv);
        L2(P("model.layers.%d.self_attn.kv_b_proj.weight", l), H * (dn + dv), rkv);
        L2(P("model.layers.%d.self_attn.o_proj.weight", l), D, H * dv);
        if (c->has_indexer) {
            int HI = c->index_n_heads, dI = c->index_head_dim;
            L2(P("model.layers.%d.self_attn.indexer.wq_b.weight", l), HI * dI, rq);
            L2(P("model.layers.%d.self_attn.indexer.wk.weight", l), dI, D);
            NRM(P("model.layers.%d.self_attn.indexer.k_norm.weight", l), dI);
            if (add(m, &rng, P("model.layers.%d.self_attn.indexer.k_norm.bias", l), 1, dI, 0, 0, 0.1f)) goto fail;
            L2(P("model.layers.%d.self_attn.indexer.weights_proj.weight", l), HI, D);
        }
        if (l < c->first_k_dense) {
            L2(P("model.layers.%d.mlp.gate_proj.weight", l), c->intermediate_size, D);
            L2(P("model.layers.%d.mlp.up_proj.weight", l), c->intermediate_size, D);
            L2(P("model.layers.%d.mlp.down_proj.weight", l), D, c->intermediate_size);
            continue;
        }
        int E = c->n_routed_experts, Fe = c->moe_intermediate_size, Fs = c->n_shared_experts * Fe;
        L2(P("model.layers.%d.mlp.gate.weight", l), E, D);
        if (add(m, &rng, P("model.layers.%d.mlp.gate.e_score_correction_bias", l), 1, E, 0, 0, 0.05f)) goto fail;
        if (Fs > 0) {
            L2(P("model.layers.%d.mlp.shared_experts.gate_proj.weight", l), Fs, D);
            L2(P("model.layers.%d.mlp.shared_experts.up_proj.weight", l), Fs, D);
            L2(P("model.layers.%d.mlp.shared_experts.down_proj.weight", l), D, Fs);
        }
        for (int e = 0; e < E; e++) {
            L2(P("model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e), Fe, D);
            L2(P("model.layers.%d.mlp.experts.%d.up_proj.weight", l, e), Fe, D);
            L2(P("model.layers.%d.mlp.experts.%d.down_proj.weight", l, e), D, Fe);
        }
    }
#undef L2
#undef NRM
#undef P
    m->w.cfg = &m->cfg;
    m->w.ctx = m;
    m->w.find = v_find;
    m->w.shape = v_shape;
    m->w.rows_f32 = v_rows;
    return 0;
fail:
    tm_free(m);
    return -1;
}

void tm_free(tmodel *m) {
    for (int i = 0; i < m->n; i++) free(m->t[i].data);
    free(m->t);
    m->t = NULL;
    m->n = m->cap = 0;
}

tm_tensor *tm_find(tmodel *m, const char *name) {
    int i = v_find(m, name);
    return i < 0 ? NULL : &m->t[i];
}

const float *tm_get(const tmodel *m, const char *fmt, ...) {
    char nm[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nm, sizeof nm, fmt, ap);
    va_end(ap);
    int i = v_find((void *)m, nm);
    return i < 0 ? NULL : m->t[i].data;
}
