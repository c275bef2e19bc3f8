/*
 * json.h -- JSON input for every reader in libdsq: parsing text of a given
 * length into a cJSON tree, and the typed checks the readers share.
 *
 * Two layers:
 *   - value checks (dsq_json_int, _u64, _num, _bool, _hex64, _str, _ints):
 *     say whether one value is what the caller wants and convert it; the
 *     caller words the message (most readers name the tensor, entry or rule);
 *   - field getters (dsq_json_field_*): look a key up in an object, apply a
 *     default when it is absent, and record the standard messages
 *       "<what>: missing key 'k'"
 *       "<what>: key 'k' must be an integer in [lo, hi]"   (number, bool, string)
 *     where <what> names the file (and section).
 *
 * All JSON text goes through dsq_json_parse and every integer through
 * dsq_json_int, so a stricter reading (duplicate keys, bytes after the value,
 * NUL inside strings, integers written as 1.0 or 1e3) is a change in this
 * module only: refusals of the grammar come back from dsq_json_parse as a
 * byte offset like any syntax error, refusals of a value from the checks.
 *
 * cJSON keeps its last error in a global: parse on one thread at a time.
 */
#ifndef DSQ_JSON_H
#define DSQ_JSON_H

#include "dsq.h"
#include <cjson/cJSON.h>

/* ---- parsing ------------------------------------------------------------ */

/* Parse len bytes of text (need not be NUL-terminated).  Returns the root
 * (free with cJSON_Delete), or NULL.  *at (may be NULL) receives the byte
 * offset where reading stopped: the error, or the end of the value; -1 if
 * unknown. */
cJSON *dsq_json_parse(const char *text, size_t len, long *at);
/* Why the last dsq_json_parse returned NULL ("syntax error", "duplicate key
 * 'k'", "content after the JSON value (byte n)", "a string holds \u0000
 * ...", "... lone surrogate ...", "... not valid UTF-8 ..."). */
const char *dsq_json_why(void);
/* Set in the type of a number written with a fraction or an exponent
 * (cJSON ignores the bit): dsq_json_int refuses those. */
#define DSQ_JSON_FRACTION (1 << 14)

/* ---- value checks: 1 (and *out set) if v is what is asked, else 0 -------- */

/* obj[key], case-sensitive; NULL if obj is not an object or lacks the key. */
const cJSON *dsq_json_get(const cJSON *obj, const char *key);
/* v is missing: NULL or JSON null (readers treat both as "not given"). */
int dsq_json_absent(const cJSON *v);
/* v's text if v is a string, else NULL. */
const char *dsq_json_str(const cJSON *v);
/* The text of obj[key] if it is a string, else dflt. */
const char *dsq_json_key_str(const cJSON *obj, const char *key, const char *dflt);
/* An integer in [lo, hi].  cJSON keeps every number as a double, so this is
 * "a number with no fractional part"; exact below 2^53. */
int dsq_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);
int dsq_json_u64(const cJSON *v, uint64_t lo, uint64_t hi, uint64_t *out); /* hi capped at INT64_MAX */
/* The same for obj[key]. */
int dsq_json_key_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int64_t *out);
int dsq_json_key_u64(const cJSON *obj, const char *key, uint64_t lo, uint64_t hi, uint64_t *out);
/* A finite number in [lo, hi] (fractions allowed). */
int dsq_json_num(const cJSON *v, double lo, double hi, double *out);
int dsq_json_bool(const cJSON *v, int *out);
/* 16 hex digits, the JSON form of an xxh3-64 (common.h dsq_unhex16). */
int dsq_json_hex64(const cJSON *v, uint64_t *out);
/* The leading elements of array v that are integers in [lo, hi], at most
 * cap of them, into out[]: returns how many (so v is entirely such integers
 * iff the result equals cJSON_GetArraySize(v) <= cap); 0 if v is not an
 * array. */
int dsq_json_ints(const cJSON *v, int64_t lo, int64_t hi, int64_t *out, int cap);

/* ---- field getters ---------------------------------------------------------
 * Each returns DSQ_OK, or c->code after recording the message in c->err.
 * An absent or null key gives *out = def, or "missing key" with
 * DSQ_JSON_REQUIRED. */
typedef struct dsq_json_ctx {
    const char *what;  /* names the file (and section) in messages */
    dsq_err *err;
    int code;          /* error code of a bad field: DSQ_E_FORMAT, DSQ_E_CONFIG */
} dsq_json_ctx;

enum { DSQ_JSON_REQUIRED = 1 };

int dsq_json_field_int(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, int64_t def,
                       int64_t lo, int64_t hi, int64_t *out);
int dsq_json_field_num(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, double def,
                       double lo, double hi, double *out);
int dsq_json_field_bool(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, int def, int *out);
/* *out points into the tree. */
int dsq_json_field_str(const dsq_json_ctx *c, const cJSON *obj, const char *key, int flags, const char *def,
                       const char **out);

#endif
