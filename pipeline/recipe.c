/*
 * recipe.c -- recipes and presets (see recipe.h and docs/RECIPES.md).
 *
 * A recipe file:
 *   {"name": "mine",
 *    "default": "fp8-block",                       (optional)
 *    "rules": [
 *      {"roles": ["exp.gate", "exp.up", "exp.down"], "scheme": "int4-g128-sym",
 *       "method": "mse", "clip_steps": 20},
 *      {"roles": ["attn.*"], "layers": [0, 2], "scheme": "bf16"},
 *      {"match": "model.layers.*.self_attn.o_proj.weight", "scheme": "int8-channel"}]}
 * The first rule that matches a tensor wins.  A role pattern is a role name,
 * a prefix ending in ".*" ("attn.*") or a class name ("routed_experts").
 * "scheme": "keep" stores the tensor as the source does.
 */
#include "pipeline/recipe.h"
#include "common.h"
#include "formats/json.h"
#include "formats/source.h"
#include "pipeline/qmatrix.h"
#include "quant/quant.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>

int dsq_role_is_projection(dsq_role r) {
    switch (r) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_Q_B: case DSQ_R_ATTN_KV_A: case DSQ_R_ATTN_KV_B:
    case DSQ_R_ATTN_O: case DSQ_R_IDX_WQ_B: case DSQ_R_IDX_WK:
    case DSQ_R_DENSE_GATE: case DSQ_R_DENSE_UP: case DSQ_R_DENSE_DOWN: case DSQ_R_SHEXP_GATE:
    case DSQ_R_SHEXP_UP: case DSQ_R_SHEXP_DOWN: case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP:
    case DSQ_R_EXP_DOWN:
        return 1;
    default: return 0;
    }
}

static unsigned long long bit(dsq_role r) { return 1ull << (unsigned)r; }

/* roles of one pattern; 0 if it names nothing */
static unsigned long long role_pattern(const char *p) {
    unsigned long long m = 0;
    size_t n = strlen(p);
    if (n >= 2 && !strcmp(p + n - 2, ".*")) {
        for (int r = 1; r < DSQ_R_COUNT; r++)
            if (!strncmp(dsq_role_name((dsq_role)r), p, n - 1)) m |= bit((dsq_role)r);
        return m;
    }
    dsq_role r = dsq_role_from_name(p);
    if (r != DSQ_R_UNKNOWN) return bit(r);
    for (int c = 0; c < DSQ_C_COUNT; c++)
        if (!strcmp(dsq_class_name((dsq_class)c), p))
            for (int k = 1; k < DSQ_R_COUNT; k++)
                if (dsq_role_class((dsq_role)k) == (dsq_class)c && k != DSQ_R_SCALE) m |= bit((dsq_role)k);
    return m;
}

static void rule_init(dsq_rule *u) {
    memset(u, 0, sizeof *u);
    u->layer_lo = u->layer_hi = -1;
    u->scheme = -1;
    u->fallback = -1;
    snprintf(u->method, sizeof u->method, "absmax");
}

int dsq_rule_needs_calib(const dsq_rule *u) {
    return u && (!strcmp(u->method, "gptq") || !strcmp(u->method, "awq") || !strcmp(u->method, "awq-gptq"));
}

static int scheme_arg(const char *s) { return !strcmp(s, "keep") ? -1 : dsq_q_from_name(s); }

int dsq_recipe_parse(dsq_recipe *r, const char *json, size_t len, const char *what, dsq_err *err) {
    memset(r, 0, sizeof *r);
    r->default_scheme = -1;
    long at;
    int rc = DSQ_E_FORMAT;
    cJSON *root = dsq_json_parse(json, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: invalid JSON near byte %ld (%s)", what, at, dsq_json_why());
    if (!cJSON_IsObject(root)) { dsq_fail(err, DSQ_E_FORMAT, "%s: recipe must be a JSON object", what); goto fail; }
    for (const cJSON *k = root->child; k; k = k->next)
        if (strcmp(k->string, "name") && strcmp(k->string, "rules") && strcmp(k->string, "default") &&
            strcmp(k->string, "description")) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: unknown key '%s'", what, k->string);
            goto fail;
        }
    snprintf(r->name, sizeof r->name, "%s", dsq_json_key_str(root, "name", dsq_basename(what)));
    const cJSON *df = dsq_json_get(root, "default");
    if (df) {
        const char *ds = dsq_json_str(df);
        if (!ds || (r->default_scheme = scheme_arg(ds)) < -1 || (r->default_scheme == -1 && strcmp(ds, "keep"))) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: unknown scheme '%s' in \"default\"", what, ds ? ds : "?");
            goto fail;
        }
    }
    const cJSON *rules = dsq_json_get(root, "rules");
    if (rules && !cJSON_IsArray(rules)) { dsq_fail(err, DSQ_E_FORMAT, "%s: \"rules\" must be an array", what); goto fail; }
    int i = 0;
    for (const cJSON *ru = rules ? rules->child : NULL; ru; ru = ru->next, i++) {
        if (r->n_rules == DSQ_RECIPE_MAX_RULES) { dsq_fail(err, DSQ_E_FORMAT, "%s: more than %d rules", what, DSQ_RECIPE_MAX_RULES); goto fail; }
        dsq_rule *u = &r->rules[r->n_rules];
        rule_init(u);
        if (!cJSON_IsObject(ru)) { dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d is not an object", what, i); goto fail; }
        for (const cJSON *k = ru->child; k; k = k->next) {
            const char *key = k->string;
            if (!strcmp(key, "roles")) {
                if (!cJSON_IsArray(k)) { dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"roles\" must be an array", what, i); goto fail; }
                if (!k->child) { /* would match every tensor */
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"roles\" is empty (leave it out to match every role)", what, i);
                    goto fail;
                }
                for (const cJSON *p = k->child; p; p = p->next) {
                    const char *ps = dsq_json_str(p);
                    unsigned long long m = ps ? role_pattern(ps) : 0;
                    if (!m) {
                        dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown role '%s'", what, i, ps ? ps : "?");
                        goto fail;
                    }
                    u->roles |= m;
                }
            } else if (!strcmp(key, "match")) {
                if (!dsq_json_str(k)) { dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"match\" must be a string", what, i); goto fail; }
                snprintf(u->match, sizeof u->match, "%s", k->valuestring);
            } else if (!strcmp(key, "layers")) {
                /* integers written as integers; the upper bound keeps the
                 * (int) conversions defined */
                int64_t lo, hi;
                if (!cJSON_IsArray(k) || cJSON_GetArraySize(k) != 2 ||
                    !dsq_json_int(cJSON_GetArrayItem(k, 0), 0, INT_MAX, &lo) ||
                    !dsq_json_int(cJSON_GetArrayItem(k, 1), lo, INT_MAX, &hi)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"layers\" must be [first, last], two integers", what, i);
                    goto fail;
                }
                u->layer_lo = (int)lo;
                u->layer_hi = (int)hi;
            } else if (!strcmp(key, "scheme")) {
                const char *ks = dsq_json_str(k);
                if (!ks || ((u->scheme = scheme_arg(ks)) < 0 && strcmp(ks, "keep"))) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown scheme '%s'", what, i, ks ? ks : "?");
                    goto fail;
                }
            } else if (!strcmp(key, "fallback")) {
                const char *ks = dsq_json_str(k);
                if (!ks || (u->fallback = dsq_q_from_name(ks)) < 0) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown fallback scheme '%s'", what, i, ks ? ks : "?");
                    goto fail;
                }
            } else if (!strcmp(key, "method")) {
                const char *ks = dsq_json_str(k);
                if (!ks || (strcmp(ks, "absmax") && strcmp(ks, "mse") && strcmp(ks, "rtn") && strcmp(ks, "gptq") &&
                            strcmp(ks, "awq") && strcmp(ks, "awq-gptq"))) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown method '%s' (absmax, rtn, mse, gptq, awq, awq-gptq)", what, i,
                             ks ? ks : "?");
                    goto fail;
                }
                snprintf(u->method, sizeof u->method, "%s", ks);
                if (!strcmp(ks, "mse") && !u->clip_steps) u->clip_steps = 20;
            } else if (!strcmp(key, "clip_steps")) {
                /* clip_steps and grid take any number in range and truncate it */
                double d;
                if (!dsq_json_num(k, 0, 64, &d)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: clip_steps must be in [0, 64]", what, i);
                    goto fail;
                }
                u->clip_steps = (int)d;
            } else if (!strcmp(key, "damp")) {
                double d;
                if (!dsq_json_num(k, 0, 10, &d) || d == 0 || d == 10) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: damp must be in (0, 10)", what, i);
                    goto fail;
                }
                u->damp = d;
            } else if (!strcmp(key, "act_order")) {
                if (!dsq_json_bool(k, &u->act_order)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: act_order must be true or false", what, i);
                    goto fail;
                }
            } else if (!strcmp(key, "refine")) {
                int64_t v;
                if (!dsq_json_int(k, 0, 16, &v)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: refine must be an integer in [0, 16]", what, i);
                    goto fail;
                }
                u->refine = (int)v;
            } else if (!strcmp(key, "ref_target")) {
                if (!dsq_json_num(k, 0, 1, &u->ref_target)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: ref_target must be in [0, 1]", what, i);
                    goto fail;
                }
            } else if (!strcmp(key, "grid")) {
                double d;
                if (!dsq_json_num(k, 1, 100, &d)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: grid must be in [1, 100]", what, i);
                    goto fail;
                }
                u->grid = (int)d;
            } else if (!strcmp(key, "clip_min")) {
                double d;
                if (!dsq_json_num(k, 0, 1, &d) || d == 0 || d == 1) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: clip_min must be in (0, 1)", what, i);
                    goto fail;
                }
                u->clip_min = (float)d;
            } else {
                dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown key '%s'", what, i, key);
                goto fail;
            }
        }
        if (!dsq_json_get(ru, "scheme")) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: missing \"scheme\"", what, i);
            goto fail;
        }
        r->n_rules++;
    }
    r->json = dsq_malloc(len + 1);
    if (!r->json) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    memcpy(r->json, json, len);
    r->json[len] = 0;
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    cJSON_Delete(root);
    return rc;
}

int dsq_recipe_load(dsq_recipe *r, const char *path, dsq_err *err) {
    char *s;
    size_t n;
    int rc = dsq_read_file(path, 1u << 20, &s, &n, err);
    if (rc) return rc;
    rc = dsq_recipe_parse(r, s, n, path, err);
    free(s);
    return rc;
}

int dsq_recipe_preset(dsq_recipe *r, const char *name, dsq_err *err) {
    static const struct { const char *name, *json; } presets[] = {
        {"lossless", "{\"name\":\"lossless\",\"rules\":[]}"},
        {"fp8", "{\"name\":\"fp8\",\"rules\":["
                "{\"roles\":[\"routed_experts\"],\"scheme\":\"fp8-channel\"}],"
                "\"default\":\"fp8-block\"}"},
        {"int4-experts", "{\"name\":\"int4-experts\",\"rules\":["
                         "{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g128-sym\"}],"
                         "\"default\":\"fp8-block\"}"},
        {"int4", "{\"name\":\"int4\",\"rules\":[],\"default\":\"int4-g128-sym\"}"},
        {"int8", "{\"name\":\"int8\",\"rules\":[],\"default\":\"int8-channel\"}"},
        /* llm-compressor's schemes, as compressed-tensors writes them */
        {"w4a16", "{\"name\":\"w4a16\",\"rules\":[],\"default\":\"int4-g128-sym\"}"},
        {"w4a16-g32", "{\"name\":\"w4a16-g32\",\"rules\":[],\"default\":\"int4-g32-sym\"}"},
        {"w4a16-asym", "{\"name\":\"w4a16-asym\",\"rules\":[],\"default\":\"int4-g128-asym\"}"},
        {"w8a16", "{\"name\":\"w8a16\",\"rules\":[],\"default\":\"int8-channel-bf16\"}"},
        {"fp8-block", "{\"name\":\"fp8-block\",\"rules\":[],\"default\":\"fp8-block\"}"},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return dsq_recipe_parse(r, presets[i].json, strlen(presets[i].json), name, err);
    return dsq_fail(err, DSQ_E_ARG, "unknown preset '%s' (lossless, fp8, int4-experts, int4, int8; compressed-tensors: "
                    "w4a16, w4a16-g32, w4a16-asym, w8a16, fp8-block; GGUF: %s)", name, dsq_recipe_gguf_presets());
}

/* The calibrated form of each preset, what `--calib` turns on: int4 with
 * the GPTQ settings chosen on held-out text (docs/CALIB.md: act_order, a
 * clip search, and for every projection ref_target 0.5 and one refinement
 * round), int8 with GPTQ, fp8's requantized experts with scales searched
 * against the activations (mse); what a preset keeps as stored stays so. */
int dsq_recipe_preset_calibrated(dsq_recipe *r, const char *name, dsq_err *err) {
    static const struct { const char *name, *json; } presets[] = {
        {"fp8", "{\"name\":\"fp8-calibrated\",\"rules\":["
                "{\"roles\":[\"routed_experts\"],\"scheme\":\"fp8-channel\",\"method\":\"mse\",\"clip_steps\":20}],"
                "\"default\":\"fp8-block\"}"},
        {"int4-experts", "{\"name\":\"int4-experts-calibrated\",\"rules\":["
                         "{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g128-sym\",\"method\":\"gptq\","
                         "\"act_order\":true,\"clip_steps\":20}],\"default\":\"fp8-block\"}"},
        {"int4", "{\"name\":\"int4-calibrated\",\"rules\":["
                 "{\"roles\":[\"attention\",\"indexer.wq_b\",\"indexer.wk\",\"dense_ffn\",\"shared_experts\","
                 "\"routed_experts\"],\"scheme\":\"int4-g128-sym\",\"method\":\"gptq\",\"act_order\":true,"
                 "\"clip_steps\":20,\"ref_target\":0.5,\"refine\":1}],\"default\":\"int4-g128-sym\"}"},
        {"int8", "{\"name\":\"int8-calibrated\",\"rules\":["
                 "{\"roles\":[\"attention\",\"indexer.wq_b\",\"indexer.wk\",\"dense_ffn\",\"shared_experts\","
                 "\"routed_experts\"],\"scheme\":\"int8-channel\",\"method\":\"gptq\",\"act_order\":true}],"
                 "\"default\":\"int8-channel\"}"},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return dsq_recipe_parse(r, presets[i].json, strlen(presets[i].json), name, err);
    if (!strcmp(name, "lossless"))
        return dsq_fail(err, DSQ_E_ARG, "preset lossless stores every tensor as it is: calibration has nothing to do");
    return dsq_recipe_preset(r, name, err); /* unknown: its error */
}

int dsq_recipe_uses_calib(const dsq_recipe *r) {
    for (int i = 0; i < r->n_rules; i++)
        if (strcmp(r->rules[i].method, "absmax") && strcmp(r->rules[i].method, "rtn")) return 1;
    return 0;
}

void dsq_recipe_deinit(dsq_recipe *r) {
    free(r->json);
    r->json = NULL;
}

const dsq_rule *dsq_recipe_match(const dsq_recipe *r, const char *name, dsq_role role, int layer) {
    for (int i = 0; i < r->n_rules; i++) {
        const dsq_rule *u = &r->rules[i];
        if (u->roles && !(u->roles & bit(role))) continue;
        if (u->match[0] && fnmatch(u->match, name, 0)) continue;
        if (u->layer_lo >= 0 && (layer < u->layer_lo || layer > u->layer_hi)) continue;
        return u;
    }
    return NULL;
}

/* GGUF export at one type: llama.cpp's loader takes norms, biases, the
 * router and the indexer's weights_proj and k_norm in f32 (formats.md
 * A.9.5), every other tensor at the type asked for. */
int dsq_recipe_gguf(dsq_recipe *r, const char *type, dsq_err *err) {
    char js[1024];
    int n = snprintf(js, sizeof js,
                     "{\"name\":\"gguf-%s\",\"rules\":["
                     "{\"roles\":[\"input_norm\",\"post_attn_norm\",\"attn.q_a_norm\",\"attn.kv_a_norm\","
                     "\"final_norm\",\"indexer.k_norm\",\"indexer.k_norm_bias\",\"indexer.weights_proj\","
                     "\"router\",\"router.bias\",\"mtp.enorm\",\"mtp.hnorm\",\"mtp.head_norm\"],\"scheme\":\"f32\"},"
                     "{\"roles\":[\"embed\",\"head\",\"mtp.embed\",\"mtp.head\",\"mtp.eh_proj\"],\"scheme\":\"%s\"}],"
                     "\"default\":\"%s\"}", type, type, type);
    if (n < 0 || (size_t)n >= sizeof js || strpbrk(type, "\"\\"))
        return dsq_fail(err, DSQ_E_ARG, "unknown GGUF type '%.40s'", type);
    return dsq_recipe_parse(r, js, (size_t)n, "--type", err);
}

int dsq_recipe_hf_fp8(dsq_recipe *r, dsq_err *err) {
    static const char js[] =
        "{\"name\":\"hf-fp8\",\"rules\":["
        "{\"roles\":[\"input_norm\",\"post_attn_norm\",\"attn.q_a_norm\",\"attn.kv_a_norm\",\"final_norm\","
        "\"indexer.k_norm\",\"indexer.k_norm_bias\",\"indexer.weights_proj\",\"router\",\"router.bias\","
        "\"embed\",\"head\",\"mtp.embed\",\"mtp.head\",\"mtp.eh_proj\",\"mtp.enorm\",\"mtp.hnorm\","
        "\"mtp.head_norm\"],\"scheme\":\"keep\"}],"
        "\"default\":\"fp8-block-ue8m0\"}";
    return dsq_recipe_parse(r, js, sizeof js - 1, "hf-fp8", err);
}

/* ---- GGUF presets ------------------------------------------------------------
 * llama.cpp's file types as recipes.  Two policies:
 *
 * llama.cpp's, the per-tensor choices of its llama_tensor_get_type
 * (src/llama-quant.cpp of de3ff815ea7d) for the deepseek2 / deepseek32
 * layout, where kv_b is stored as attn_k_b / attn_v_b (so no tensor is
 * "attn_v"-like), the MoE has more than 8 experts and no layer is Falcon's:
 * head Q6_K (Q8_0 at q8_0), embedding at the default type, ffn_down of the
 * layers its use_more_bits picks at Q6_K for q4_k_m / q5_k_m, the first n/16
 * at Q5_K and the rest at Q4_K for q3_k_m, Q3_K for q2_k, the first n/8 at
 * Q5_K for iq4_xs / iq4_nl without an importance matrix, Q4_1 for q4_0 with
 * one; attn_output Q3_K at q2_k and Q4_K at q3_k_m; everything else at the
 * default type; rows that a type's block does not divide fall back
 * (dsq_ggml_fallback).
 *
 * dsq's, the presets: llama.cpp's, plus
 *   - the indexer's q_b and k at Q8_0 and its weights_proj in F32 (the top-k
 *     selection is sensitive, the tensors small), norms, biases and router F32;
 *   - the dense FFN layers (before first_k_dense_replace) one type up (Q6_K
 *     for the 4-bit types): every token passes them, and on the trained tiny
 *     model they carry most of the 4-bit loss;
 *   - a Q6_K ffn_down whose rows do not fit 256-blocks at Q5_1 (6 bits, as
 *     meant), not llama.cpp's Q8_0
 *   (a rule's "fallback");
 * and then, to stay within llama.cpp's bytes for the same type, routed
 * experts' gate, then up, of whole MoE layers one type down (Q3_K for the
 * 4-bit types), middle layers first, until the tensors take no more bytes
 * than llama.cpp's policy gives them. */
static const struct { const char *name, *deflt, *up, *down; } g_gguf_presets[] = {
    {"q8_0", "q8_0", "q8_0", "q6_k"},     {"q6_k", "q6_k", "q8_0", "q5_k"},
    {"q5_k_m", "q5_k", "q6_k", "q4_k"},   {"q4_k_m", "q4_k", "q6_k", "q3_k"},
    {"q4_0", "q4_0", "q6_k", "q3_k"},     {"iq4_xs", "iq4_xs", "q6_k", "q3_k"},
    {"iq4_nl", "iq4_nl", "q6_k", "q3_k"}, {"q3_k_m", "q3_k", "q5_k", "q2_k"},
    {"q2_k", "q2_k", "q4_k", ""},
};
#define N_GGUF_PRESETS (int)(sizeof g_gguf_presets / sizeof g_gguf_presets[0])

int dsq_recipe_is_gguf_preset(const char *name) {
    for (int i = 0; i < N_GGUF_PRESETS; i++)
        if (!strcmp(g_gguf_presets[i].name, name)) return 1;
    return 0;
}

const char *dsq_recipe_gguf_presets(void) { return "q8_0, q6_k, q5_k_m, q4_k_m, q4_0, iq4_xs, iq4_nl, q3_k_m, q2_k"; }

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third in between. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's ffn_down type of layer i of n for preset k. */
static const char *down_type(int k, int i, int n, int calib) {
    const char *nm = g_gguf_presets[k].name, *def = g_gguf_presets[k].deflt;
    if (!strcmp(nm, "q4_k_m") || !strcmp(nm, "q5_k_m")) return more_bits(i, n) ? "q6_k" : def;
    if (!strcmp(nm, "q3_k_m")) return i < n / 16 ? "q5_k" : "q4_k";
    if (!strcmp(nm, "q2_k")) return "q3_k";
    if ((!strcmp(nm, "iq4_xs") || !strcmp(nm, "iq4_nl")) && !calib) return i < n / 8 ? "q5_k" : def;
    if (!strcmp(nm, "q4_0") && calib) return i < n / 8 ? "q4_1" : def;
    return def;
}

typedef struct { char *s; size_t n, cap; } sbuf;
static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, b->n < b->cap ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    b->n += k > 0 ? (size_t)k : 0;
}

/* The recipe JSON of preset k: llama.cpp's policy (ours = 0) or dsq's with
 * the routed experts of MoE layer l one type down: gate when demote[l] is 1,
 * gate and up when 2. */
static void preset_json(sbuf *b, int k, const dsq_config *cfg, const char *method, int ours, const char *demote) {
    const char *nm = g_gguf_presets[k].name, *def = g_gguf_presets[k].deflt;
    int calib = method && *method, n = cfg->n_layers + cfg->n_mtp_layers;
    char meth[48] = "";
    if (calib) snprintf(meth, sizeof meth, ",\"method\":\"%.20s\"", method);
    b->n = 0;
    put(b, "{\"name\":\"%s%s\",\"description\":\"%s policy for llama.cpp file type %s\",\"rules\":[", nm,
        calib ? "-calibrated" : "", ours ? "dsq" : "llama.cpp", nm);
    put(b, "{\"roles\":[\"input_norm\",\"post_attn_norm\",\"attn.q_a_norm\",\"attn.kv_a_norm\",\"final_norm\","
           "\"indexer.k_norm\",\"indexer.k_norm_bias\",%s\"router\",\"router.bias\","
           "\"mtp.enorm\",\"mtp.hnorm\",\"mtp.head_norm\"],\"scheme\":\"f32\"}",
        ours ? "\"indexer.weights_proj\"," : "");
    put(b, ",{\"roles\":[\"head\",\"mtp.head\"],\"scheme\":\"%s\"%s}", !strcmp(def, "q8_0") ? "q8_0" : "q6_k", meth);
    /* the embedding is looked up, not multiplied: no activation statistics */
    put(b, ",{\"roles\":[\"embed\",\"mtp.embed\"],\"scheme\":\"%s\"}", def);
    if (ours) {
        put(b, ",{\"roles\":[\"indexer.wq_b\",\"indexer.wk\"],\"scheme\":\"q8_0\"%s}", meth);
        if (cfg->first_k_dense > 0)
            put(b, ",{\"roles\":[\"dense.gate\",\"dense.up\",\"dense.down\"],\"layers\":[0,%d],\"scheme\":\"%s\"%s}",
                cfg->first_k_dense - 1, g_gguf_presets[k].up, meth);
        for (int l = 0; demote && l < n; l++)
            if (demote[l])
                put(b, ",{\"roles\":[%s],\"layers\":[%d,%d],\"scheme\":\"%s\"%s}",
                    demote[l] > 1 ? "\"exp.gate\",\"exp.up\"" : "\"exp.gate\"", l, l, g_gguf_presets[k].down, meth);
    }
    /* ffn_down by layer, runs of equal types in one rule; a Q6_K bump on
     * rows of other than 256-multiples is Q5_1 in dsq's policy */
    const char *down = "\"roles\":[\"dense.down\",\"shexp.down\",\"exp.down\"]";
    for (int l0 = 0; l0 < n;) {
        const char *t = down_type(k, l0, n, calib);
        int l1 = l0;
        while (l1 + 1 < n && !strcmp(down_type(k, l1 + 1, n, calib), t)) l1++;
        if (strcmp(t, def)) {
            put(b, ",{%s,\"layers\":[%d,%d],\"scheme\":\"%s\"%s%s}", down, l0, l1, t,
                ours && !strcmp(t, "q6_k") ? ",\"fallback\":\"q5_1\"" : "", meth);
        }
        l0 = l1 + 1;
    }
    if (!strcmp(nm, "q2_k") || !strcmp(nm, "q3_k_m"))
        put(b, ",{\"roles\":[\"attn.o\"],\"scheme\":\"%s\"%s}", !strcmp(nm, "q2_k") ? "q3_k" : "q4_k", meth);
    /* llama.cpp quantizes every 2-D weight but the router, weights_proj included */
    put(b, ",{\"roles\":[\"mtp.eh_proj\"%s],\"scheme\":\"%s\"}", ours ? "" : ",\"indexer.weights_proj\"", def);
    if (calib) put(b, ",{\"scheme\":\"%s\"%s}", def, meth); /* every other projection */
    put(b, "],\"default\":\"%s\"}", def);
}

/* Bytes the GGUF tensors of src take under recipe r: kv_b as its two parts
 * attn_k_b [heads x kv_lora, qk_nope] and attn_v_b [heads x v_head, kv_lora]. */
static int recipe_bytes(const dsq_recipe *r, const dsq_src *src, uint64_t *out, dsq_err *err) {
    const dsq_config *c = dsq_src_config(src);
    uint64_t tot = 0;
    for (int i = 0; i < dsq_src_n_tensors(src); i++) {
        const dsq_stensor *t = dsq_src_tensor(src, i);
        int64_t shp[2][2] = {{t->rows, t->cols}, {0, 0}};
        int np = 1;
        if (t->role == DSQ_R_ATTN_KV_B) {
            shp[0][0] = (int64_t)c->n_heads * c->kv_lora_rank;
            shp[0][1] = c->qk_nope_head_dim;
            shp[1][0] = (int64_t)c->n_heads * c->v_head_dim;
            shp[1][1] = c->kv_lora_rank;
            np = 2;
        }
        for (int k = 0; k < np; k++) {
            dsq_method m;
            int rc = dsq_method_for(r, t->name, t->role, t->layer, shp[k][1], t->scheme >= 0 ? t->scheme : DSQ_Q_F32, 1,
                                    &m, err);
            if (rc) return rc;
            dsq_qsizes z;
            if ((rc = dsq_q_sizes(m.scheme, shp[k][0], shp[k][1], &z, err))) return rc;
            tot += z.data + z.scale + z.zero;
        }
    }
    *out = tot;
    return DSQ_OK;
}

int dsq_recipe_gguf_preset(dsq_recipe *r, const char *name, const dsq_src *src, const char *method, dsq_err *err) {
    int k = -1;
    for (int i = 0; i < N_GGUF_PRESETS; i++)
        if (!strcmp(g_gguf_presets[i].name, name)) k = i;
    if (k < 0) return dsq_fail(err, DSQ_E_ARG, "unknown GGUF preset '%s' (%s)", name, dsq_recipe_gguf_presets());
    const dsq_config *cfg = dsq_src_config(src);
    int n = cfg->n_layers + cfg->n_mtp_layers, rc;
    sbuf b = {dsq_malloc(65536), 0, 65536};
    char *demote = dsq_calloc((size_t)n + 1, 1);
    if (!b.s || !demote) {
        free(b.s);
        free(demote);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    uint64_t budget = 0, bytes = 0;
    dsq_recipe t;
    preset_json(&b, k, cfg, method, 0, NULL);
    if (b.n >= b.cap) { rc = dsq_fail(err, DSQ_E_ARG, "preset %s: too many layers", name); goto out; }
    if ((rc = dsq_recipe_parse(&t, b.s, b.n, name, err))) goto out;
    rc = recipe_bytes(&t, src, &budget, err);
    dsq_recipe_deinit(&t);
    if (rc) goto out;
    /* MoE main layers (not MTP), middle first: the order their gate / up go one type down */
    int *order = dsq_malloc(sizeof *order * (size_t)(n + 1)), no = 0;
    if (!order) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int d = 0; d <= cfg->n_layers; d++)
        for (int side = 0; side < 2; side++) {
            int l = side ? (cfg->n_layers - 1) / 2 + d + 1 : (cfg->n_layers - 1) / 2 - d;
            if (l >= 0 && l < cfg->n_layers && (side || l == (cfg->n_layers - 1) / 2 - d) && dsq_config_is_moe_layer(cfg, l)) {
                int seen = 0;
                for (int q = 0; q < no; q++) seen |= order[q] == l;
                if (!seen) order[no++] = l;
            }
        }
    for (int step = 0;; step++) {
        preset_json(&b, k, cfg, method, 1, demote);
        if (b.n >= b.cap) { rc = dsq_fail(err, DSQ_E_ARG, "preset %s: too many layers", name); break; }
        if ((rc = dsq_recipe_parse(r, b.s, b.n, name, err))) break;
        if ((rc = recipe_bytes(r, src, &bytes, err))) { dsq_recipe_deinit(r); break; }
        /* GGUF pads each tensor to 32 bytes: room for the padding of every one of ours */
        if (bytes + 32ull * (uint64_t)dsq_src_n_tensors(src) <= budget || step >= 2 * no || !g_gguf_presets[k].down[0]) break;
        dsq_recipe_deinit(r);
        demote[order[step / 2]]++; /* gate, then up */
    }
    free(order);
out:
    free(b.s);
    free(demote);
    return rc;
}
