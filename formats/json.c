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

/* ---- parsing ------------------------------------------------------------ */

cJSON *dsq_json_parse(const char *text, size_t len, long *at) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (at) *at = end ? (long)(end - text) : -1L;
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
    if (!cJSON_IsNumber(v)) return 0;
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
