/*
 * ctensors.c -- compressed-tensors' quantization_config (see ctensors.h).
 */
#include "formats/ctensors.h"
#include "formats/json.h"
#include "quant/quant.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ct_pat {
    char *text;          /* as written */
    pcre2_code *re;      /* "re:" patterns, else NULL */
    int linear;          /* "Linear" */
} ct_pat;

typedef struct ct_group {
    ct_pat *t;
    int n;
    dsq_ct_args w;
    int has_weights;
} ct_group;

struct dsq_ct_config {
    ct_group *g;
    int n_groups;
    ct_pat *ignore;
    int n_ignore;
    char format[32];
};

static void pats_free(ct_pat *p, int n) {
    for (int i = 0; i < n; i++) {
        free(p[i].text);
        if (p[i].re) pcre2_code_free(p[i].re);
    }
    free(p);
}

void dsq_ct_free(dsq_ct_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_groups; i++) pats_free(c->g[i].t, c->g[i].n);
    free(c->g);
    pats_free(c->ignore, c->n_ignore);
    free(c);
}

const char *dsq_ct_format(const dsq_ct_config *c) { return c->format; }

static int fmt_of(const char *s) {
    if (!strcmp(s, "dense")) return DSQ_CT_DENSE;
    if (!strcmp(s, "pack-quantized")) return DSQ_CT_PACK;
    if (!strcmp(s, "int-quantized")) return DSQ_CT_INT;
    if (!strcmp(s, "float-quantized")) return DSQ_CT_FLOAT;
    return DSQ_CT_OTHER;
}

/* A list of target strings into patterns. */
static int parse_pats(const cJSON *arr, const char *what, const char *key, ct_pat **out, int *n, dsq_err *err) {
    *out = NULL;
    *n = 0;
    if (dsq_json_absent(arr)) return DSQ_OK;
    if (!cJSON_IsArray(arr))
        return dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.%s must be a list of strings", what, key);
    int cap = cJSON_GetArraySize(arr);
    ct_pat *p = dsq_calloc((size_t)cap + 1, sizeof *p);
    if (!p) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (const cJSON *it = arr->child; it; it = it->next) {
        const char *s = dsq_json_str(it);
        if (!s || !*s) {
            pats_free(p, *n);
            return dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.%s holds a non-string or empty entry", what, key);
        }
        ct_pat *q = &p[(*n)++];
        if (!(q->text = dsq_strdup(s))) { pats_free(p, *n); return dsq_fail(err, DSQ_E_NOMEM, "out of memory"); }
        q->linear = !strcmp(s, "Linear");
        if (!strncmp(s, "re:", 3)) {
            int ec;
            PCRE2_SIZE eo;
            q->re = pcre2_compile((PCRE2_SPTR)(s + 3), PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_UTF, &ec, &eo, NULL);
            if (!q->re) {
                PCRE2_UCHAR msg[160];
                if (pcre2_get_error_message(ec, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", ec);
                int rc = dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.%s: pattern '%.120s': %s at offset %zu", what,
                                  key, s, (const char *)msg, (size_t)eo);
                pats_free(p, *n);
                return rc;
            }
        }
    }
    *out = p;
    return DSQ_OK;
}

static int parse_args(const cJSON *w, const char *what, const char *gname, int fmt, const char *fmt_name, dsq_ct_args *a,
                      dsq_err *err) {
    memset(a, 0, sizeof *a);
    char ctx_what[256];
    snprintf(ctx_what, sizeof ctx_what, "%s: quantization_config.config_groups.%.60s.weights", what, gname);
    const dsq_json_ctx jc = {ctx_what, err, DSQ_E_CONFIG};
    int64_t v;
    a->fmt = fmt;
    snprintf(a->fmt_name, sizeof a->fmt_name, "%s", fmt_name);
    if (dsq_json_field_int(&jc, w, "num_bits", 0, 8, 1, 64, &v)) return DSQ_E_CONFIG;
    a->num_bits = (int)v;
    const char *ty;
    if (dsq_json_field_str(&jc, w, "type", 0, "int", &ty)) return DSQ_E_CONFIG;
    if (strcmp(ty, "int") && strcmp(ty, "float"))
        return dsq_fail(err, DSQ_E_CONFIG, "%s: type '%.20s' is neither \"int\" nor \"float\"", ctx_what, ty);
    a->is_float = !strcmp(ty, "float");
    if (dsq_json_field_bool(&jc, w, "symmetric", 0, 1, &a->sym)) return DSQ_E_CONFIG;
    const char *st;
    if (dsq_json_field_str(&jc, w, "strategy", 0, "tensor", &st)) return DSQ_E_CONFIG;
    snprintf(a->strategy_name, sizeof a->strategy_name, "%s", st);
    a->strategy = !strcmp(st, "tensor") ? DSQ_CT_S_TENSOR : !strcmp(st, "channel") ? DSQ_CT_S_CHANNEL
                : !strcmp(st, "group") ? DSQ_CT_S_GROUP : !strcmp(st, "block") ? DSQ_CT_S_BLOCK : DSQ_CT_S_OTHER;
    const cJSON *gs = dsq_json_get(w, "group_size");
    if (!dsq_json_absent(gs)) {
        if (!dsq_json_int(gs, 1, 1 << 24, &v))
            return dsq_fail(err, DSQ_E_CONFIG, "%s: group_size must be a positive integer or null", ctx_what);
        a->group_size = (int)v;
    }
    const cJSON *bs = dsq_json_get(w, "block_structure");
    if (!dsq_json_absent(bs)) {
        int64_t b[2];
        if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || dsq_json_ints(bs, 1, 1 << 20, b, 2) != 2)
            return dsq_fail(err, DSQ_E_CONFIG, "%s: block_structure must be [rows, cols]", ctx_what);
        a->block[0] = (int)b[0], a->block[1] = (int)b[1];
    }
    const char *ao = dsq_json_str(dsq_json_get(w, "actorder"));
    a->actorder_group = ao && !strcmp(ao, "group");
    return DSQ_OK;
}

int dsq_ct_parse(dsq_ct_config **out, const char *config_json, size_t len, const char *what, dsq_err *err) {
    *out = NULL;
    long at;
    cJSON *root = dsq_json_parse(config_json, len, &at);
    if (!root) return dsq_fail(err, DSQ_E_CONFIG, "%s: invalid JSON near byte %ld (%s)", what, at, dsq_json_why());
    const cJSON *qc = dsq_json_get(root, "quantization_config");
    if (!cJSON_IsObject(qc) || strcmp(dsq_json_key_str(qc, "quant_method", ""), "compressed-tensors")) {
        cJSON_Delete(root);
        return DSQ_OK;
    }
    int rc = DSQ_OK;
    dsq_ct_config *c = dsq_calloc(1, sizeof *c);
    if (!c) { cJSON_Delete(root); return dsq_fail(err, DSQ_E_NOMEM, "out of memory"); }
    const char *top = dsq_json_key_str(qc, "format", "dense");
    snprintf(c->format, sizeof c->format, "%s", top);
    const char *status = dsq_json_key_str(qc, "quantization_status", "compressed");
    if (strcmp(status, "compressed")) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: quantization_config.quantization_status is \"%.20s\": only "
                      "\"compressed\" checkpoints hold their quantized codes", what, status);
        goto out;
    }
    if (!dsq_json_absent(dsq_json_get(qc, "sparsity_config")) && cJSON_IsObject(dsq_json_get(qc, "sparsity_config")) &&
        dsq_json_get(qc, "sparsity_config")->child) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: quantization_config.sparsity_config: sparse compressed-tensors "
                      "checkpoints are not supported", what);
        goto out;
    }
    if ((rc = parse_pats(dsq_json_get(qc, "ignore"), what, "ignore", &c->ignore, &c->n_ignore, err))) goto out;
    const cJSON *cg = dsq_json_get(qc, "config_groups");
    if (!dsq_json_absent(cg) && !cJSON_IsObject(cg)) {
        rc = dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.config_groups must be an object", what);
        goto out;
    }
    int ng = cg ? cJSON_GetArraySize(cg) : 0;
    c->g = dsq_calloc((size_t)ng + 1, sizeof *c->g);
    if (!c->g) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (const cJSON *g = cg ? cg->child : NULL; g; g = g->next) {
        ct_group *G = &c->g[c->n_groups++];
        char key[96];
        snprintf(key, sizeof key, "config_groups.%.60s.targets", g->string);
        if (!cJSON_IsObject(g)) {
            rc = dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.config_groups.%.60s must be an object", what, g->string);
            goto out;
        }
        if ((rc = parse_pats(dsq_json_get(g, "targets"), what, key, &G->t, &G->n, err))) goto out;
        const char *gf = dsq_json_key_str(g, "format", top);
        if (!strcmp(gf, "mixed-precision")) {
            rc = dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.config_groups.%.60s has no format of its own "
                          "under \"mixed-precision\"", what, g->string);
            goto out;
        }
        const cJSON *w = dsq_json_get(g, "weights");
        if (dsq_json_absent(w)) continue;
        if (!cJSON_IsObject(w)) {
            rc = dsq_fail(err, DSQ_E_CONFIG, "%s: quantization_config.config_groups.%.60s.weights must be an object or null",
                          what, g->string);
            goto out;
        }
        if ((rc = parse_args(w, what, g->string, fmt_of(gf), gf, &G->w, err))) goto out;
        G->has_weights = 1;
    }
out:
    cJSON_Delete(root);
    if (rc) { dsq_ct_free(c); return rc; }
    *out = c;
    return DSQ_OK;
}

static int pat_match(const ct_pat *p, const char *module, int linear) {
    if (p->linear) return linear;
    if (!p->re) return !strcmp(p->text, module);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (!md) return 0;
    int r = pcre2_match(p->re, (PCRE2_SPTR)module, strlen(module), 0, PCRE2_ANCHORED, md, NULL);
    pcre2_match_data_free(md);
    return r >= 0;
}

const dsq_ct_args *dsq_ct_match(const dsq_ct_config *c, const char *module, int linear) {
    for (int i = 0; i < c->n_ignore; i++)
        if (pat_match(&c->ignore[i], module, linear)) return NULL;
    for (int g = 0; g < c->n_groups; g++)
        for (int k = 0; k < c->g[g].n; k++)
            if (pat_match(&c->g[g].t[k], module, linear)) return c->g[g].has_weights ? &c->g[g].w : NULL;
    return NULL;
}

/* ---- writing ------------------------------------------------------------- */
int dsq_ct_scheme_args(int scheme, dsq_ct_args *a) {
    memset(a, 0, sizeof *a);
    const dsq_qscheme *q = dsq_q_scheme(scheme);
    if (!q) return DSQ_E_UNSUPPORTED;
    a->sym = q->sym;
    switch (q->kind) {
    case DSQ_QK_INT4:
        if (q->sdt != DSQ_DT_BF16) return DSQ_E_UNSUPPORTED;
        a->fmt = DSQ_CT_PACK, a->num_bits = 4, a->strategy = DSQ_CT_S_GROUP, a->group_size = q->group;
        break;
    case DSQ_QK_INT8:
        if (q->sdt != DSQ_DT_BF16) return DSQ_E_UNSUPPORTED;
        a->fmt = DSQ_CT_PACK, a->num_bits = 8, a->strategy = DSQ_CT_S_CHANNEL;
        break;
    case DSQ_QK_FP8:
        a->fmt = DSQ_CT_FLOAT, a->num_bits = 8, a->is_float = 1;
        a->strategy = q->gran == DSQ_QG_TENSOR ? DSQ_CT_S_TENSOR : q->gran == DSQ_QG_CHANNEL ? DSQ_CT_S_CHANNEL : DSQ_CT_S_BLOCK;
        if (q->gran == DSQ_QG_BLOCK) a->block[0] = a->block[1] = q->group;
        break;
    default:
        return DSQ_E_UNSUPPORTED;
    }
    static const char *const fn[] = {"dense", "pack-quantized", "int-quantized", "float-quantized"};
    static const char *const sn[] = {"tensor", "channel", "group", "block"};
    snprintf(a->fmt_name, sizeof a->fmt_name, "%s", fn[a->fmt]);
    snprintf(a->strategy_name, sizeof a->strategy_name, "%s", sn[a->strategy]);
    return DSQ_OK;
}

typedef struct ct_mod {
    char *name;
    int scheme;          /* float schemes: -1 (unquantized) */
    char *key[3];        /* level 0: every number generalized; 1: the first kept; 2: exact */
} ct_mod;

struct dsq_ct_builder {
    ct_mod *m;
    int n, cap;
};

dsq_ct_builder *dsq_ct_builder_new(void) { return dsq_calloc(1, sizeof(dsq_ct_builder)); }

void dsq_ct_builder_free(dsq_ct_builder *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        free(b->m[i].name);
        for (int k = 0; k < 3; k++) free(b->m[i].key[k]);
    }
    free(b->m);
    free(b);
}

/* The regular expression of a module name: dots escaped, numbers after the
 * first `keep` ones generalized to \d+, anchored at the end. */
static char *pattern_of(const char *name, int keep) {
    size_t n = strlen(name);
    char *o = dsq_malloc(n * 4 + 8), *p = o;
    if (!o) return NULL;
    int nums = 0;
    for (const char *s = name; *s;) {
        if (*s >= '0' && *s <= '9') {
            const char *e = s;
            while (*e >= '0' && *e <= '9') e++;
            if (keep < 0 || nums++ < keep) {
                memcpy(p, s, (size_t)(e - s));
                p += e - s;
            } else {
                memcpy(p, "\\d+", 3);
                p += 3;
            }
            s = e;
            continue;
        }
        if (*s == '.' || *s == '\\' || *s == '(' || *s == ')' || *s == '[' || *s == ']' || *s == '*' || *s == '+' ||
            *s == '?' || *s == '|' || *s == '^' || *s == '$' || *s == '{' || *s == '}')
            *p++ = '\\';
        *p++ = *s++;
    }
    *p++ = '$';
    *p = 0;
    return o;
}

int dsq_ct_builder_add(dsq_ct_builder *b, const char *module, int scheme) {
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 256;
        ct_mod *nm = dsq_realloc(b->m, sizeof *nm * (size_t)nc);
        if (!nm) return DSQ_E_NOMEM;
        b->m = nm;
        b->cap = nc;
    }
    ct_mod *m = &b->m[b->n];
    memset(m, 0, sizeof *m);
    const dsq_qscheme *q = dsq_q_scheme(scheme);
    m->scheme = !q || q->kind == DSQ_QK_FLOAT ? -1 : scheme;
    m->name = dsq_strdup(module);
    m->key[0] = pattern_of(module, 0);
    m->key[1] = pattern_of(module, 1);
    m->key[2] = pattern_of(module, -1);
    b->n++;
    if (!m->name || !m->key[0] || !m->key[1] || !m->key[2]) return DSQ_E_NOMEM;
    return DSQ_OK;
}

typedef struct { const char *key; int scheme; int idx; } kent;

static int cmp_kent(const void *a, const void *b) {
    const kent *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : x->idx - y->idx;
}

/* For every module, the coarsest level whose pattern covers only modules
 * of its scheme. */
static int levels(dsq_ct_builder *b, int *lev) {
    kent *k = dsq_malloc(sizeof *k * ((size_t)b->n + 1));
    if (!k) return DSQ_E_NOMEM;
    for (int i = 0; i < b->n; i++) lev[i] = 2;
    for (int L = 1; L >= 0; L--) {
        for (int i = 0; i < b->n; i++) k[i] = (kent){b->m[i].key[L], b->m[i].scheme, i};
        qsort(k, (size_t)b->n, sizeof *k, cmp_kent);
        for (int s = 0; s < b->n;) {
            int e = s, uniform = 1;
            while (e < b->n && !strcmp(k[e].key, k[s].key)) {
                uniform &= k[e].scheme == k[s].scheme;
                e++;
            }
            if (uniform)
                for (int j = s; j < e; j++) lev[k[j].idx] = L;
            s = e;
        }
    }
    free(k);
    return DSQ_OK;
}

/* Add "re:" + pattern to arr unless it is there already. */
static void add_target(cJSON *arr, const char *pat, int exact_name, const char *name) {
    char buf[1200];
    if (exact_name) snprintf(buf, sizeof buf, "%s", name);
    else snprintf(buf, sizeof buf, "re:%s", pat);
    for (const cJSON *it = arr->child; it; it = it->next)
        if (!strcmp(it->valuestring, buf)) return;
    cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
}

char *dsq_ct_builder_json(dsq_ct_builder *b) {
    int *lev = dsq_malloc(sizeof *lev * ((size_t)b->n + 1));
    int schemes[64], ns = 0;
    if (!lev || levels(b, lev)) { free(lev); return NULL; }
    for (int i = 0; i < b->n; i++) {
        int s = b->m[i].scheme, seen = 0;
        if (s < 0) continue;
        for (int k = 0; k < ns; k++) seen |= schemes[k] == s;
        if (!seen && ns < 64) schemes[ns++] = s;
    }
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
    cJSON *groups = cJSON_AddObjectToObject(q, "config_groups");
    int mixed = 0;
    char one_fmt[32] = "dense";
    for (int k = 0; k < ns; k++) {
        dsq_ct_args a;
        dsq_ct_scheme_args(schemes[k], &a);
        char gname[32];
        snprintf(gname, sizeof gname, "group_%d", k);
        cJSON *g = cJSON_AddObjectToObject(groups, gname);
        cJSON *t = cJSON_AddArrayToObject(g, "targets");
        for (int i = 0; i < b->n; i++)
            if (b->m[i].scheme == schemes[k]) add_target(t, b->m[i].key[lev[i]], 0, b->m[i].name);
        cJSON *w = cJSON_AddObjectToObject(g, "weights");
        cJSON_AddNumberToObject(w, "num_bits", a.num_bits);
        cJSON_AddStringToObject(w, "type", a.is_float ? "float" : "int");
        cJSON_AddBoolToObject(w, "symmetric", a.sym);
        cJSON_AddStringToObject(w, "strategy", a.strategy_name);
        if (a.group_size) cJSON_AddNumberToObject(w, "group_size", a.group_size);
        else cJSON_AddNullToObject(w, "group_size");
        if (a.block[0]) {
            cJSON *bs = cJSON_AddArrayToObject(w, "block_structure");
            cJSON_AddItemToArray(bs, cJSON_CreateNumber(a.block[0]));
            cJSON_AddItemToArray(bs, cJSON_CreateNumber(a.block[1]));
        } else {
            cJSON_AddNullToObject(w, "block_structure");
        }
        cJSON_AddBoolToObject(w, "dynamic", 0);
        cJSON_AddNullToObject(w, "actorder");
        cJSON_AddStringToObject(w, "observer", "minmax");
        /* activations as llm-compressor's FP8_BLOCK / FP8_DYNAMIC give them:
         * quantized at run time, nothing stored */
        if (a.is_float && a.strategy != DSQ_CT_S_TENSOR) {
            cJSON *ia = cJSON_AddObjectToObject(g, "input_activations");
            cJSON_AddNumberToObject(ia, "num_bits", 8);
            cJSON_AddStringToObject(ia, "type", "float");
            cJSON_AddBoolToObject(ia, "symmetric", 1);
            cJSON_AddStringToObject(ia, "strategy", a.strategy == DSQ_CT_S_BLOCK ? "group" : "token");
            if (a.strategy == DSQ_CT_S_BLOCK) cJSON_AddNumberToObject(ia, "group_size", 128);
            else cJSON_AddNullToObject(ia, "group_size");
            cJSON_AddBoolToObject(ia, "dynamic", 1);
            cJSON_AddNullToObject(ia, "observer");
        } else {
            cJSON_AddNullToObject(g, "input_activations");
        }
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddStringToObject(g, "format", a.fmt_name);
        if (!k) snprintf(one_fmt, sizeof one_fmt, "%s", a.fmt_name);
        else if (strcmp(one_fmt, a.fmt_name)) mixed = 1;
    }
    cJSON_AddStringToObject(q, "format", mixed ? "mixed-precision" : one_fmt);
    cJSON *ig = cJSON_AddArrayToObject(q, "ignore");
    for (int i = 0; i < b->n; i++)
        if (b->m[i].scheme < 0) {
            if (!strcmp(b->m[i].name, "lm_head")) add_target(ig, NULL, 1, "lm_head");
            else add_target(ig, b->m[i].key[lev[i]], 0, b->m[i].name);
        }
    cJSON_AddNullToObject(q, "kv_cache_scheme");
    cJSON_AddNullToObject(q, "sparsity_config");
    cJSON_AddStringToObject(q, "quantization_status", "compressed");
    cJSON_AddStringToObject(q, "version", "0.12.2");
    free(lev);
    char *s = cJSON_PrintUnformatted(q);
    cJSON_Delete(q);
    return s;
}
