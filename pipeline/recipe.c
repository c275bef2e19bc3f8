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
#include "quant/quant.h"

#include <cjson/cJSON.h>
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
    const char *end = NULL;
    int rc = DSQ_E_FORMAT;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: invalid JSON near byte %ld", what, end ? (long)(end - json) : -1L);
    if (!cJSON_IsObject(root)) { dsq_fail(err, DSQ_E_FORMAT, "%s: recipe must be a JSON object", what); goto fail; }
    for (const cJSON *k = root->child; k; k = k->next)
        if (strcmp(k->string, "name") && strcmp(k->string, "rules") && strcmp(k->string, "default") &&
            strcmp(k->string, "description")) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: unknown key '%s'", what, k->string);
            goto fail;
        }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");
    snprintf(r->name, sizeof r->name, "%s", cJSON_IsString(nm) ? nm->valuestring : dsq_basename(what));
    const cJSON *df = cJSON_GetObjectItemCaseSensitive(root, "default");
    if (df) {
        if (!cJSON_IsString(df) || (r->default_scheme = scheme_arg(df->valuestring)) < -1 ||
            (r->default_scheme == -1 && strcmp(df->valuestring, "keep"))) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: unknown scheme '%s' in \"default\"", what,
                     cJSON_IsString(df) ? df->valuestring : "?");
            goto fail;
        }
    }
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(root, "rules");
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
                    unsigned long long m = cJSON_IsString(p) ? role_pattern(p->valuestring) : 0;
                    if (!m) {
                        dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown role '%s'", what, i,
                                 cJSON_IsString(p) ? p->valuestring : "?");
                        goto fail;
                    }
                    u->roles |= m;
                }
            } else if (!strcmp(key, "match")) {
                if (!cJSON_IsString(k)) { dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"match\" must be a string", what, i); goto fail; }
                snprintf(u->match, sizeof u->match, "%s", k->valuestring);
            } else if (!strcmp(key, "layers")) {
                const cJSON *a = cJSON_GetArrayItem(k, 0), *b = cJSON_GetArrayItem(k, 1);
                /* the upper bound keeps the (int) conversions below defined */
                if (!cJSON_IsArray(k) || cJSON_GetArraySize(k) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
                    a->valuedouble < 0 || b->valuedouble < a->valuedouble || b->valuedouble > INT_MAX) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: \"layers\" must be [first, last]", what, i);
                    goto fail;
                }
                u->layer_lo = (int)a->valuedouble;
                u->layer_hi = (int)b->valuedouble;
            } else if (!strcmp(key, "scheme")) {
                if (!cJSON_IsString(k) || ((u->scheme = scheme_arg(k->valuestring)) < 0 && strcmp(k->valuestring, "keep"))) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown scheme '%s'", what, i,
                             cJSON_IsString(k) ? k->valuestring : "?");
                    goto fail;
                }
            } else if (!strcmp(key, "method")) {
                if (!cJSON_IsString(k) || (strcmp(k->valuestring, "absmax") && strcmp(k->valuestring, "mse") &&
                                           strcmp(k->valuestring, "rtn") && strcmp(k->valuestring, "gptq") &&
                                           strcmp(k->valuestring, "awq") && strcmp(k->valuestring, "awq-gptq"))) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown method '%s' (absmax, rtn, mse, gptq, awq, awq-gptq)", what, i,
                             cJSON_IsString(k) ? k->valuestring : "?");
                    goto fail;
                }
                snprintf(u->method, sizeof u->method, "%s", k->valuestring);
                if (!strcmp(k->valuestring, "mse") && !u->clip_steps) u->clip_steps = 20;
            } else if (!strcmp(key, "clip_steps")) {
                if (!cJSON_IsNumber(k) || k->valuedouble < 0 || k->valuedouble > 64) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: clip_steps must be in [0, 64]", what, i);
                    goto fail;
                }
                u->clip_steps = (int)k->valuedouble;
            } else if (!strcmp(key, "damp")) {
                if (!cJSON_IsNumber(k) || !(k->valuedouble > 0 && k->valuedouble < 10)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: damp must be in (0, 10)", what, i);
                    goto fail;
                }
                u->damp = k->valuedouble;
            } else if (!strcmp(key, "act_order")) {
                if (!cJSON_IsBool(k)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: act_order must be true or false", what, i);
                    goto fail;
                }
                u->act_order = cJSON_IsTrue(k);
            } else if (!strcmp(key, "refine")) {
                if (!cJSON_IsNumber(k) || k->valuedouble < 0 || k->valuedouble > 16 || k->valuedouble != (int)k->valuedouble) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: refine must be an integer in [0, 16]", what, i);
                    goto fail;
                }
                u->refine = (int)k->valuedouble;
            } else if (!strcmp(key, "ref_target")) {
                if (!cJSON_IsNumber(k) || !(k->valuedouble >= 0 && k->valuedouble <= 1)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: ref_target must be in [0, 1]", what, i);
                    goto fail;
                }
                u->ref_target = k->valuedouble;
            } else if (!strcmp(key, "grid")) {
                if (!cJSON_IsNumber(k) || k->valuedouble < 1 || k->valuedouble > 100) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: grid must be in [1, 100]", what, i);
                    goto fail;
                }
                u->grid = (int)k->valuedouble;
            } else if (!strcmp(key, "clip_min")) {
                if (!cJSON_IsNumber(k) || !(k->valuedouble > 0 && k->valuedouble < 1)) {
                    dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: clip_min must be in (0, 1)", what, i);
                    goto fail;
                }
                u->clip_min = (float)k->valuedouble;
            } else {
                dsq_fail(err, DSQ_E_FORMAT, "%s: rule %d: unknown key '%s'", what, i, key);
                goto fail;
            }
        }
        if (!cJSON_GetObjectItemCaseSensitive(ru, "scheme")) {
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
