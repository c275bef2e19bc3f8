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
#include "quant/quant.h"

#include <fnmatch.h>
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
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s: invalid JSON near byte %ld", what, at);
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
                /* numbers, not necessarily integers (truncated); the upper
                 * bound keeps the (int) conversions defined */
                double lo, hi;
                if (!cJSON_IsArray(k) || cJSON_GetArraySize(k) != 2 ||
                    !dsq_json_num(cJSON_GetArrayItem(k, 0), 0, INT_MAX, &lo) ||
                    !dsq_json_num(cJSON_GetArrayItem(k, 1), lo, INT_MAX, &hi)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"layers\" must be [first, last]", what, i);
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
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return dsq_recipe_parse(r, presets[i].json, strlen(presets[i].json), name, err);
    return dsq_fail(err, DSQ_E_ARG, "unknown preset '%s' (lossless, fp8, int4-experts, int4, int8)", name);
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
