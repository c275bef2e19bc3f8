/*
 * json.c -- JSON parsing and the typed checks every reader shares (json.h).
 *
 * cJSON stores every number as a double.  An "integer" is therefore a
 * number equal to its floor, compared with the bounds as doubles before it
 * is converted: converting a double outside the target type is undefined
 * behaviour, and (double)INT64_MAX rounds up to 2^63, which passes
 * "<= hi" without fitting an int64_t, so 2^63 is refused explicitly.
 */
#include "formats/json.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ------------------------------------------------------------ */

/* ---- the strict pass -------------------------------------------------------
 * cJSON checks the grammar; this pass walks the same bytes beside the tree
 * cJSON built (values in document order are the tree in pre-order) and
 * refuses what cJSON lets through: bytes after the top-level value, strings
 * that are not valid UTF-8 or hold NUL (\u0000) or a lone surrogate,
 * duplicate keys in one object.  Numbers written with a fraction or an
 * exponent are marked (DSQ_JSON_FRACTION) so dsq_json_int refuses them. */

static char g_why[200] = "syntax error";

const char *dsq_json_why(void) { return g_why; }

typedef struct sp {
    const unsigned char *s;
    size_t n, i;
} sp;

static void sp_ws(sp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int hex4(const unsigned char *h, unsigned *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = h[k];
        unsigned d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
        if (d > 15) return 0;
        *v = *v << 4 | d;
    }
    return 1;
}

/* The string at p->i (its opening quote): 0 when acceptable. */
static int sp_string(sp *p) {
    size_t st = p->i++;
    while (p->i < p->n && p->s[p->i] != '"') {
        unsigned c = p->s[p->i];
        if (c == '\\') {
            if (p->i + 1 < p->n && p->s[p->i + 1] == 'u') {
                unsigned v, w;
                if (p->i + 6 > p->n || !hex4(p->s + p->i + 2, &v)) return -1; /* cJSON refused it already */
                if (v == 0) {
                    snprintf(g_why, sizeof g_why, "a string holds \\u0000 (byte %zu)", p->i);
                    return -1;
                }
                if (v >= 0xD800 && v <= 0xDBFF) { /* a high surrogate needs its low half */
                    if (p->i + 12 > p->n || p->s[p->i + 6] != '\\' || p->s[p->i + 7] != 'u' ||
                        !hex4(p->s + p->i + 8, &w) || w < 0xDC00 || w > 0xDFFF) {
                        snprintf(g_why, sizeof g_why, "a string holds a lone surrogate \\u%04X (byte %zu)", v, p->i);
                        return -1;
                    }
                    p->i += 12;
                    continue;
                }
                if (v >= 0xDC00 && v <= 0xDFFF) {
                    snprintf(g_why, sizeof g_why, "a string holds a lone surrogate \\u%04X (byte %zu)", v, p->i);
                    return -1;
                }
                p->i += 6;
            } else p->i += 2;
            continue;
        }
        if (c < 0x80) { p->i++; continue; }
        /* UTF-8: the shortest form of a scalar value */
        int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        int ok = len > 0 && p->i + (size_t)len <= p->n;
        for (int k = 1; ok && k < len; k++) ok = (p->s[p->i + k] & 0xC0) == 0x80;
        if (ok && len == 3) {
            unsigned c1 = p->s[p->i + 1];
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0); /* overlong; surrogates */
        }
        if (ok && len == 4) {
            unsigned c1 = p->s[p->i + 1];
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90); /* overlong; beyond U+10FFFF */
        }
        if (!ok) {
            snprintf(g_why, sizeof g_why, "a string is not valid UTF-8 (byte %zu)", p->i);
            return -1;
        }
        p->i += (size_t)len;
    }
    (void)st;
    p->i++; /* the closing quote */
    return 0;
}

/* The first repeated name among o's children, pairwise: small objects, and
 * the fallback when the hash table below cannot be had. */
static int dup_pairwise(const cJSON *o) {
    for (const cJSON *a = o->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) {
                snprintf(g_why, sizeof g_why, "duplicate key '%.120s'", a->string);
                return -1;
            }
    return 0;
}

/* Duplicate keys among the children of object o (decoded names). */
static int dup_keys(const cJSON *o) {
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next) n++;
    if (n <= 16) return dup_pairwise(o);
    size_t cap = 32;
    while (cap < 2 * n) cap *= 2;
    /* plain calloc: a scratch table, not data (when it fails, the pairwise
     * search gives the same answer, slowly) */
    const cJSON **t = calloc(cap, sizeof *t);
    if (!t) return dup_pairwise(o);
    int rc = 0;
    for (const cJSON *c = o->child; c && !rc; c = c->next) {
        if (!c->string) continue;
        uint64_t h = 1469598103934665603ull;
        for (const unsigned char *q = (const unsigned char *)c->string; *q; q++) h = (h ^ *q) * 1099511628211ull;
        size_t k = (size_t)h & (cap - 1);
        while (t[k] && strcmp(t[k]->string, c->string)) k = (k + 1) & (cap - 1);
        if (t[k]) {
            snprintf(g_why, sizeof g_why, "duplicate key '%.120s'", c->string);
            rc = -1;
        } else t[k] = c;
    }
    free(t);
    return rc;
}

/* The value at p->i, whose tree node is v. */
static int sp_value(sp *p, cJSON *v) {
    sp_ws(p);
    if (p->i >= p->n || !v) return -1;
    unsigned c = p->s[p->i];
    if (c == '{' || c == '[') {
        p->i++;
        if (c == '{' && dup_keys(v)) return -1;
        for (cJSON *ch = v->child; ch; ch = ch->next) {
            sp_ws(p);
            if (c == '{') {
                if (sp_string(p)) return -1;
                sp_ws(p);
                p->i++; /* ':' */
            }
            if (sp_value(p, ch)) return -1;
            sp_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') p->i++;
        }
        sp_ws(p);
        p->i++; /* the closing bracket */
        return 0;
    }
    if (c == '"') return sp_string(p);
    if (c == '-' || (c >= '0' && c <= '9')) {
        int frac = 0;
        while (p->i < p->n && strchr("+-0123456789.eE", p->s[p->i])) {
            frac |= p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E';
            p->i++;
        }
        if (frac) v->type |= DSQ_JSON_FRACTION;
        return 0;
    }
    while (p->i < p->n && p->s[p->i] >= 'a' && p->s[p->i] <= 'z') p->i++; /* true, false, null */
    return 0;
}

cJSON *dsq_json_parse(const char *text, size_t len, long *at) {
    const char *end = NULL;
    snprintf(g_why, sizeof g_why, "syntax error");
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (at) *at = end ? (long)(end - text) : -1L;
    if (!root) return NULL;
    sp p = {(const unsigned char *)text, len, 0};
    int rc = sp_value(&p, root);
    if (!rc) {
        sp_ws(&p);
        while (p.i < p.n && p.s[p.i] == 0 && p.i + 1 == p.n) p.i++; /* a terminating NUL counted in len */
        if (p.i < p.n) {
            snprintf(g_why, sizeof g_why, "content after the JSON value (byte %zu)", p.i);
            rc = -1;
        }
    }
    if (rc) {
        if (at) *at = (long)p.i;
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- value checks ------------------------------------------------------- */

const cJSON *dsq_json_get(const cJSON *obj, const char *key) {
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

int dsq_json_absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

const char *dsq_json_str(const cJSON *v) { return cJSON_IsString(v) ? v->valuestring : NULL; }

const char *dsq_json_key_str(const cJSON *obj, const char *key, const char *dflt) {
    const char *s = dsq_json_str(dsq_json_get(obj, key));
    return s ? s : dflt;
}

int dsq_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v) || (v->type & DSQ_JSON_FRACTION)) return 0; /* 136.0 is not an integer field's form */
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d >= 9223372036854775808.0 || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

int dsq_json_u64(const cJSON *v, uint64_t lo, uint64_t hi, uint64_t *out) {
    int64_t x;
    if (hi > (uint64_t)INT64_MAX) hi = (uint64_t)INT64_MAX;
    if (lo > hi || !dsq_json_int(v, (int64_t)lo, (int64_t)hi, &x)) return 0;
    *out = (uint64_t)x;
    return 1;
}

int dsq_json_key_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    return dsq_json_int(dsq_json_get(obj, key), lo, hi, out);
}

int dsq_json_key_u64(const cJSON *obj, const char *key, uint64_t lo, uint64_t hi, uint64_t *out) {
    return dsq_json_u64(dsq_json_get(obj, key), lo, hi, out);
}

int dsq_json_num(const cJSON *v, double lo, double hi, double *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || !(d >= lo && d <= hi)) return 0;
    *out = d;
    return 1;
}

int dsq_json_bool(const cJSON *v, int *out) {
    if (!cJSON_IsBool(v)) return 0;
    *out = cJSON_IsTrue(v);
    return 1;
}

int dsq_json_hex64(const cJSON *v, uint64_t *out) { return cJSON_IsString(v) && dsq_unhex16(v->valuestring, out); }

int dsq_json_ints(const cJSON *v, int64_t lo, int64_t hi, int64_t *out, int cap) {
    int n = 0;
    for (const cJSON *e = cJSON_IsArray(v) ? v->child : NULL; e && n < cap; e = e->next, n++)
        if (!dsq_json_int(e, lo, hi, &out[n])) break;
    return n;
}

/* ---- field getters ------------------------------------------------------ */

/* obj[key]: 1 with *v set when present, 0 when absent (the caller applies
 * its default), -1 after recording "missing key". */
static int lookup(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, const cJSON **v) {
    *v = dsq_json_get(obj, key);
    if (!dsq_json_absent(*v)) return 1;
    if (!(flags & DSQ_JSON_REQUIRED)) return 0;
    dsq_fail(c->err, c->code, "%s: missing key '%s'", c->what, key);
    return -1;
}

int dsq_json_field_int(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, int64_t def,
                       int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *v;
    int k = lookup(c, obj, key, flags, &v);
    *out = def;
    if (k <= 0) return k ? c->code : DSQ_OK;
    if (!dsq_json_int(v, lo, hi, out))
        return dsq_fail(c->err, c->code, "%s: key '%s' must be an integer in [%lld, %lld]", c->what, key,
                        (long long)lo, (long long)hi);
    return DSQ_OK;
}

int dsq_json_field_num(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, double def,
                       double lo, double hi, double *out) {
    const cJSON *v;
    int k = lookup(c, obj, key, flags, &v);
    *out = def;
    if (k <= 0) return k ? c->code : DSQ_OK;
    if (!dsq_json_num(v, lo, hi, out))
        return dsq_fail(c->err, c->code, "%s: key '%s' must be a number in [%g, %g]", c->what, key, lo, hi);
    return DSQ_OK;
}

int dsq_json_field_bool(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, int def, int *out) {
    const cJSON *v;
    int k = lookup(c, obj, key, flags, &v);
    *out = def;
    if (k <= 0) return k ? c->code : DSQ_OK;
    if (!dsq_json_bool(v, out))
        return dsq_fail(c->err, c->code, "%s: key '%s' must be true or false", c->what, key);
    return DSQ_OK;
}

int dsq_json_field_str(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, const char *def,
                       const char **out) {
    const cJSON *v;
    int k = lookup(c, obj, key, flags, &v);
    *out = def;
    if (k <= 0) return k ? c->code : DSQ_OK;
    if (!(*out = dsq_json_str(v))) {
        *out = def;
        return dsq_fail(c->err, c->code, "%s: key '%s' must be a string", c->what, key);
    }
    return DSQ_OK;
}
