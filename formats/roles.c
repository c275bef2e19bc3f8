/*
 * roles.c -- tensor-name grammar of DeepSeek-V3 / V3.2 checkpoints
 * (deepseek-v32.md section 2.1): classify every upstream name into a role,
 * a layer and an expert index, build the name of a role back (the one place
 * that spells the upstream names: every other module asks here), and name
 * roles and classes for reports.
 */
#include "common.h"

#include <ctype.h>
#include <stdio.h>

static const char *const g_role_names[DSQ_R_COUNT] = {
    [DSQ_R_UNKNOWN] = "unknown",
    [DSQ_R_EMBED] = "embed", [DSQ_R_HEAD] = "head", [DSQ_R_FINAL_NORM] = "final_norm",
    [DSQ_R_INPUT_NORM] = "input_norm", [DSQ_R_POST_ATTN_NORM] = "post_attn_norm",
    [DSQ_R_ATTN_Q_A] = "attn.q_a", [DSQ_R_ATTN_Q_A_NORM] = "attn.q_a_norm",
    [DSQ_R_ATTN_Q_B] = "attn.q_b", [DSQ_R_ATTN_KV_A] = "attn.kv_a",
    [DSQ_R_ATTN_KV_A_NORM] = "attn.kv_a_norm", [DSQ_R_ATTN_KV_B] = "attn.kv_b",
    [DSQ_R_ATTN_O] = "attn.o",
    [DSQ_R_IDX_WQ_B] = "indexer.wq_b", [DSQ_R_IDX_WK] = "indexer.wk",
    [DSQ_R_IDX_K_NORM] = "indexer.k_norm", [DSQ_R_IDX_K_NORM_BIAS] = "indexer.k_norm_bias",
    [DSQ_R_IDX_WEIGHTS_PROJ] = "indexer.weights_proj",
    [DSQ_R_DENSE_GATE] = "dense.gate", [DSQ_R_DENSE_UP] = "dense.up",
    [DSQ_R_DENSE_DOWN] = "dense.down",
    [DSQ_R_ROUTER] = "router", [DSQ_R_ROUTER_BIAS] = "router.bias",
    [DSQ_R_SHEXP_GATE] = "shexp.gate", [DSQ_R_SHEXP_UP] = "shexp.up",
    [DSQ_R_SHEXP_DOWN] = "shexp.down",
    [DSQ_R_EXP_GATE] = "exp.gate", [DSQ_R_EXP_UP] = "exp.up", [DSQ_R_EXP_DOWN] = "exp.down",
    [DSQ_R_MTP_EMBED] = "mtp.embed", [DSQ_R_MTP_ENORM] = "mtp.enorm",
    [DSQ_R_MTP_HNORM] = "mtp.hnorm", [DSQ_R_MTP_EH_PROJ] = "mtp.eh_proj",
    [DSQ_R_MTP_HEAD_NORM] = "mtp.head_norm", [DSQ_R_MTP_HEAD] = "mtp.head",
    [DSQ_R_SCALE] = "scale",
};

static const char *const g_class_names[DSQ_C_COUNT] = {
    [DSQ_C_ATTN] = "attention", [DSQ_C_INDEXER] = "indexer", [DSQ_C_DENSE] = "dense_ffn",
    [DSQ_C_SHARED] = "shared_experts", [DSQ_C_ROUTED] = "routed_experts",
    [DSQ_C_ROUTER] = "router", [DSQ_C_EMBED_HEAD] = "embed_head", [DSQ_C_NORM] = "norms",
    [DSQ_C_MTP] = "mtp", [DSQ_C_SCALE] = "scales",
};

const char *dsq_role_name(dsq_role r) {
    return (unsigned)r < DSQ_R_COUNT && g_role_names[r] ? g_role_names[r] : "unknown";
}
dsq_role dsq_role_from_name(const char *name) {
    for (int r = 1; r < DSQ_R_COUNT; r++)
        if (g_role_names[r] && !strcmp(g_role_names[r], name)) return (dsq_role)r;
    return DSQ_R_UNKNOWN;
}
const char *dsq_class_name(dsq_class c) {
    return (unsigned)c < DSQ_C_COUNT ? g_class_names[c] : "unknown";
}

dsq_class dsq_role_class(dsq_role r) {
    switch (r) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_Q_B: case DSQ_R_ATTN_KV_A: case DSQ_R_ATTN_KV_B:
    case DSQ_R_ATTN_O: return DSQ_C_ATTN;
    case DSQ_R_IDX_WQ_B: case DSQ_R_IDX_WK: case DSQ_R_IDX_K_NORM: case DSQ_R_IDX_K_NORM_BIAS:
    case DSQ_R_IDX_WEIGHTS_PROJ: return DSQ_C_INDEXER;
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: case DSQ_R_DENSE_DOWN: return DSQ_C_DENSE;
    case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP: case DSQ_R_SHEXP_DOWN: return DSQ_C_SHARED;
    case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: case DSQ_R_EXP_DOWN: return DSQ_C_ROUTED;
    case DSQ_R_ROUTER: case DSQ_R_ROUTER_BIAS: return DSQ_C_ROUTER;
    case DSQ_R_EMBED: case DSQ_R_HEAD: return DSQ_C_EMBED_HEAD;
    case DSQ_R_FINAL_NORM: case DSQ_R_INPUT_NORM: case DSQ_R_POST_ATTN_NORM:
    case DSQ_R_ATTN_Q_A_NORM: case DSQ_R_ATTN_KV_A_NORM: return DSQ_C_NORM;
    case DSQ_R_MTP_EMBED: case DSQ_R_MTP_ENORM: case DSQ_R_MTP_HNORM: case DSQ_R_MTP_EH_PROJ:
    case DSQ_R_MTP_HEAD_NORM: case DSQ_R_MTP_HEAD: return DSQ_C_MTP;
    case DSQ_R_SCALE: return DSQ_C_SCALE;
    default: return DSQ_C_NORM;
    }
}

/* Parse a decimal index without sign or leading zeros; advances *p. */
static int parse_index(const char **p, int *out) {
    const char *s = *p;
    if (!isdigit((unsigned char)*s)) return 0;
    if (*s == '0' && isdigit((unsigned char)s[1])) return 0;
    long v = 0;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (*s - '0');
        if (v > 1000000) return 0;
        s++;
    }
    *out = (int)v;
    *p = s;
    return 1;
}

static int eat(const char **p, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n)) return 0;
    *p += n;
    return 1;
}

struct suffix_role { const char *suffix; dsq_role role; };

/* Suffix of the block-scale companion of an FP8 weight (spec section 2.1). */
static const char g_scale_suffix[] = "_scale_inv";

/* The tensors outside the layers (spec section 2.2), full names. */
static const struct suffix_role g_top[] = {
    {"model.embed_tokens.weight", DSQ_R_EMBED},
    {"model.norm.weight", DSQ_R_FINAL_NORM},
    {"lm_head.weight", DSQ_R_HEAD},
};

/* Suffixes after "model.layers.<l>." (weights only; scales handled apart). */
static const struct suffix_role g_layer_suffixes[] = {
    {"input_layernorm.weight", DSQ_R_INPUT_NORM},
    {"post_attention_layernorm.weight", DSQ_R_POST_ATTN_NORM},
    {"self_attn.q_a_proj.weight", DSQ_R_ATTN_Q_A},
    {"self_attn.q_a_layernorm.weight", DSQ_R_ATTN_Q_A_NORM},
    {"self_attn.q_b_proj.weight", DSQ_R_ATTN_Q_B},
    {"self_attn.kv_a_proj_with_mqa.weight", DSQ_R_ATTN_KV_A},
    {"self_attn.kv_a_layernorm.weight", DSQ_R_ATTN_KV_A_NORM},
    {"self_attn.kv_b_proj.weight", DSQ_R_ATTN_KV_B},
    {"self_attn.o_proj.weight", DSQ_R_ATTN_O},
    {"self_attn.indexer.wq_b.weight", DSQ_R_IDX_WQ_B},
    {"self_attn.indexer.wk.weight", DSQ_R_IDX_WK},
    {"self_attn.indexer.k_norm.weight", DSQ_R_IDX_K_NORM},
    {"self_attn.indexer.k_norm.bias", DSQ_R_IDX_K_NORM_BIAS},
    {"self_attn.indexer.weights_proj.weight", DSQ_R_IDX_WEIGHTS_PROJ},
    {"mlp.gate_proj.weight", DSQ_R_DENSE_GATE},
    {"mlp.up_proj.weight", DSQ_R_DENSE_UP},
    {"mlp.down_proj.weight", DSQ_R_DENSE_DOWN},
    {"mlp.gate.weight", DSQ_R_ROUTER},
    {"mlp.gate.e_score_correction_bias", DSQ_R_ROUTER_BIAS},
    {"mlp.shared_experts.gate_proj.weight", DSQ_R_SHEXP_GATE},
    {"mlp.shared_experts.up_proj.weight", DSQ_R_SHEXP_UP},
    {"mlp.shared_experts.down_proj.weight", DSQ_R_SHEXP_DOWN},
    {"embed_tokens.weight", DSQ_R_MTP_EMBED},
    {"enorm.weight", DSQ_R_MTP_ENORM},
    {"hnorm.weight", DSQ_R_MTP_HNORM},
    {"eh_proj.weight", DSQ_R_MTP_EH_PROJ},
    {"shared_head.norm.weight", DSQ_R_MTP_HEAD_NORM},
    {"shared_head.head.weight", DSQ_R_MTP_HEAD},
};

dsq_role dsq_classify(const char *name, int *layer, int *expert) {
    int l = -1, e = -1;
    dsq_role r = DSQ_R_UNKNOWN;
    const char *p = name;
    size_t n = strlen(name);
    size_t ns = sizeof g_scale_suffix - 1;
    if (n > ns + 1 && !strcmp(name + n - ns, g_scale_suffix)) {
        /* "<weight name>_scale_inv": classify the weight to get layer/expert */
        char buf[512];
        if (n - ns >= sizeof buf) goto done;
        memcpy(buf, name, n - ns);
        buf[n - ns] = 0;
        dsq_role wr = dsq_classify(buf, &l, &e);
        r = wr == DSQ_R_UNKNOWN ? DSQ_R_UNKNOWN : DSQ_R_SCALE;
        goto done;
    }
    for (size_t i = 0; i < sizeof g_top / sizeof g_top[0]; i++)
        if (!strcmp(p, g_top[i].suffix)) { r = g_top[i].role; goto done; }
    if (!eat(&p, "model.layers.") || !parse_index(&p, &l) || !eat(&p, ".")) { l = -1; goto done; }
    if (eat(&p, "mlp.experts.")) {
        if (!parse_index(&p, &e) || !eat(&p, ".")) { e = -1; goto done; }
        if (!strcmp(p, "gate_proj.weight")) r = DSQ_R_EXP_GATE;
        else if (!strcmp(p, "up_proj.weight")) r = DSQ_R_EXP_UP;
        else if (!strcmp(p, "down_proj.weight")) r = DSQ_R_EXP_DOWN;
        goto done;
    }
    for (size_t i = 0; i < sizeof g_layer_suffixes / sizeof g_layer_suffixes[0]; i++)
        if (!strcmp(p, g_layer_suffixes[i].suffix)) { r = g_layer_suffixes[i].role; break; }
done:
    if (r == DSQ_R_UNKNOWN) l = e = -1;
    if (layer) *layer = l;
    if (expert) *expert = e;
    return r;
}

/* ---- names from roles ------------------------------------------------------ */

static const char *const g_proj[3] = {"gate_proj", "up_proj", "down_proj"};

const char *dsq_top_weight_name(dsq_role role) {
    for (size_t i = 0; i < sizeof g_top / sizeof g_top[0]; i++)
        if (g_top[i].role == role) return g_top[i].suffix;
    return NULL;
}

void dsq_expert_name(char *out, size_t cap, int layer, int expert, dsq_role role) {
    int k = role == DSQ_R_EXP_UP ? 1 : role == DSQ_R_EXP_DOWN ? 2 : 0;
    if (expert < 0) snprintf(out, cap, "model.layers.%d.mlp.experts.%s.weight", layer, g_proj[k]);
    else snprintf(out, cap, "model.layers.%d.mlp.experts.%d.%s.weight", layer, expert, g_proj[k]);
}

int dsq_layer_weight_name(char *out, size_t cap, int layer, int expert, dsq_role role) {
    if (role == DSQ_R_EXP_GATE || role == DSQ_R_EXP_UP || role == DSQ_R_EXP_DOWN) {
        dsq_expert_name(out, cap, layer, expert, role);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_layer_suffixes / sizeof g_layer_suffixes[0]; i++)
        if (g_layer_suffixes[i].role == role) {
            snprintf(out, cap, "model.layers.%d.%s", layer, g_layer_suffixes[i].suffix);
            return 0;
        }
    return -1;
}

void dsq_scale_name(char *out, size_t cap, const char *weight) {
    snprintf(out, cap, "%s%s", weight, g_scale_suffix);
}

/* ---- expected tensors ----------------------------------------------------- */

int dsq_layer_tensor_names(const dsq_config *c, int l, int (*fn)(void *arg, const char *name), void *arg) {
    /* in the order of the upstream files (spec sections 2.3 to 2.6) */
    static const dsq_role attn[] = {
        DSQ_R_INPUT_NORM, DSQ_R_POST_ATTN_NORM, DSQ_R_ATTN_Q_A, DSQ_R_ATTN_Q_A_NORM, DSQ_R_ATTN_Q_B,
        DSQ_R_ATTN_KV_A, DSQ_R_ATTN_KV_A_NORM, DSQ_R_ATTN_KV_B, DSQ_R_ATTN_O};
    static const dsq_role idx[] = {DSQ_R_IDX_WQ_B, DSQ_R_IDX_WK, DSQ_R_IDX_K_NORM, DSQ_R_IDX_K_NORM_BIAS,
                                   DSQ_R_IDX_WEIGHTS_PROJ};
    static const dsq_role dense[] = {DSQ_R_DENSE_GATE, DSQ_R_DENSE_UP, DSQ_R_DENSE_DOWN};
    static const dsq_role router[] = {DSQ_R_ROUTER, DSQ_R_ROUTER_BIAS};
    static const dsq_role shexp[] = {DSQ_R_SHEXP_GATE, DSQ_R_SHEXP_UP, DSQ_R_SHEXP_DOWN};
    static const dsq_role mtp[] = {DSQ_R_MTP_EMBED, DSQ_R_MTP_ENORM, DSQ_R_MTP_HNORM, DSQ_R_MTP_EH_PROJ,
                                   DSQ_R_MTP_HEAD_NORM, DSQ_R_MTP_HEAD};
    char nm[256];
    int rc;
#define EMIT_ALL(arr)                                                                \
    for (size_t k = 0; k < sizeof arr / sizeof arr[0]; k++) {                        \
        dsq_layer_weight_name(nm, sizeof nm, l, -1, arr[k]);                         \
        if ((rc = fn(arg, nm))) return rc;                                           \
    }
    if (l < 0) {
        for (size_t k = 0; k < sizeof g_top / sizeof g_top[0]; k++)
            if ((rc = fn(arg, g_top[k].suffix))) return rc;
        return 0;
    }
    EMIT_ALL(attn);
    if (c->has_indexer) EMIT_ALL(idx);
    if (l < c->n_layers && !dsq_config_is_moe_layer(c, l)) {
        EMIT_ALL(dense);
    } else {
        EMIT_ALL(router);
        for (int e = 0; e < c->n_routed_experts; e++)
            for (int k = 0; k < 3; k++) {
                dsq_expert_name(nm, sizeof nm, l, e, (dsq_role)(DSQ_R_EXP_GATE + k));
                if ((rc = fn(arg, nm))) return rc;
            }
        if (c->n_shared_experts > 0) EMIT_ALL(shexp);
    }
    if (l >= c->n_layers) EMIT_ALL(mtp);
#undef EMIT_ALL
    return 0;
}
