/*
 * test_json.c -- formats/json.c: parsing offsets, the value checks every
 * reader shares (integers as cJSON's doubles, ranges, 2^63, fractions,
 * overflowing literals, checksums) and the field getters' messages.
 */
#include "test.h"
#include "common.h"
#include "formats/json.h"

#include <stdlib.h>

static cJSON *parse(const char *s) { return dsq_json_parse(s, strlen(s), NULL); }

TEST(test_json_parse) {
    long at = 0;
    /* not NUL-terminated: only len bytes are read */
    char buf[8] = {'{', '"', 'a', '"', ':', '1', '}', 'x'};
    cJSON *r = dsq_json_parse(buf, 7, &at);
    CHECK(cJSON_IsObject(r) && at == 7);
    cJSON_Delete(r);
    CHECK(dsq_json_parse("{\"a\": ", 6, &at) == NULL && at == 5);
    CHECK(dsq_json_parse("", 0, &at) == NULL && at == 0);
    /* strict: bytes after the value (their offset is reported) */
    CHECK(dsq_json_parse("[1] [2]", 7, &at) == NULL && at == 4 && strstr(dsq_json_why(), "after the JSON value"));
    r = dsq_json_parse("[1] \n", 5, &at); /* white space after it is fine */
    CHECK(cJSON_IsArray(r));
    cJSON_Delete(r);
    /* duplicate keys, in small and large objects, nested too */
    CHECK(!dsq_json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, &at) && strstr(dsq_json_why(), "duplicate key 'a'"));
    char big[4096];
    int o = snprintf(big, sizeof big, "{\"x\":{");
    for (int i = 0; i < 100; i++) o += snprintf(big + o, sizeof big - (size_t)o, "\"k%d\":%d,", i, i);
    o += snprintf(big + o, sizeof big - (size_t)o, "\"k42\":0}}");
    CHECK(!dsq_json_parse(big, (size_t)o, &at) && strstr(dsq_json_why(), "duplicate key 'k42'"));
    /* NUL escapes, lone surrogates, invalid UTF-8 in strings */
    CHECK(!dsq_json_parse("{\"na\\u0000me\":1}", 18, &at) && strstr(dsq_json_why(), "\\u0000"));
    CHECK(!dsq_json_parse("[\"\\ud800\"]", 10, &at)); /* cJSON refuses this one itself */
    CHECK(!dsq_json_parse("[\"\\udc00x\"]", 11, &at));
    r = dsq_json_parse("[\"\\ud83d\\ude00\"]", 16, &at); /* a surrogate pair is one character */
    CHECK(cJSON_IsArray(r));
    cJSON_Delete(r);
    CHECK(!dsq_json_parse("[\"\xC0\xAF\"]", 6, &at) && strstr(dsq_json_why(), "UTF-8"));     /* overlong */
    CHECK(!dsq_json_parse("[\"\xED\xA0\x80\"]", 7, &at) && strstr(dsq_json_why(), "UTF-8")); /* a surrogate */
    r = dsq_json_parse("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"]", 13, &at);
    CHECK(cJSON_IsArray(r));
    cJSON_Delete(r);
}

TEST(test_json_values) {
    cJSON *r = parse("{\"i\": 42, \"neg\": -7, \"f\": 1.5, \"whole\": 3.0, \"big\": 9223372036854775807,"
                     " \"p63\": 9223372036854775808, \"p53\": 9007199254740992, \"inf\": 1e999, \"s\": \"abc\","
                     " \"t\": true, \"n\": null, \"h\": \"00112233445566af\", \"h2\": \"0011\", \"hU\": \"00112233445566AF\","
                     " \"arr\": [1, 2, 3.5, 4], \"e\": []}");
    CHECK(r);
    int64_t v = 0;
    uint64_t u = 0;
    double d = 0;
    int b = -1;
    CHECK(dsq_json_key_int(r, "i", 0, 42, &v) && v == 42);
    CHECK(!dsq_json_key_int(r, "i", 0, 41, &v) && v == 42);
    CHECK(dsq_json_key_int(r, "neg", -7, 0, &v) && v == -7);
    CHECK(!dsq_json_key_u64(r, "neg", 0, 10, &u));
    CHECK(!dsq_json_key_int(r, "f", 0, 10, &v));
    CHECK(!dsq_json_key_int(r, "whole", 0, 10, &v));        /* 3.0 is not how an integer is written */
    CHECK(dsq_json_num(dsq_json_get(r, "whole"), 0, 10, &d) && d == 3); /* as a number it is fine */
    /* (double)INT64_MAX is 2^63: both literals read as 2^63 and neither fits */
    CHECK(!dsq_json_key_int(r, "big", 0, INT64_MAX, &v) && !dsq_json_key_int(r, "p63", 0, INT64_MAX, &v));
    CHECK(!dsq_json_key_u64(r, "p63", 0, UINT64_MAX, &u));
    CHECK(dsq_json_key_u64(r, "p53", 0, 1ull << 53, &u) && u == 1ull << 53);
    CHECK(!dsq_json_key_int(r, "inf", 0, INT64_MAX, &v) && !dsq_json_num(dsq_json_get(r, "inf"), 0, 1e308, &d));
    CHECK(!dsq_json_key_int(r, "s", 0, 10, &v) && !dsq_json_key_int(r, "missing", 0, 10, &v));
    CHECK(dsq_json_num(dsq_json_get(r, "f"), 1.5, 1.5, &d) && d == 1.5);
    CHECK(!dsq_json_num(dsq_json_get(r, "f"), 0, 1.4, &d));
    CHECK(dsq_json_bool(dsq_json_get(r, "t"), &b) && b == 1);
    CHECK(!dsq_json_bool(dsq_json_get(r, "i"), &b));
    CHECK(dsq_json_absent(dsq_json_get(r, "n")) && dsq_json_absent(dsq_json_get(r, "missing")) &&
          !dsq_json_absent(dsq_json_get(r, "t")));
    CHECK(!strcmp(dsq_json_str(dsq_json_get(r, "s")), "abc") && !dsq_json_str(dsq_json_get(r, "i")));
    CHECK(!strcmp(dsq_json_key_str(r, "i", "dflt"), "dflt"));
    CHECK(dsq_json_hex64(dsq_json_get(r, "h"), &u) && u == 0x00112233445566afull);
    CHECK(!dsq_json_hex64(dsq_json_get(r, "h2"), &u) && !dsq_json_hex64(dsq_json_get(r, "i"), &u));
    CHECK(!dsq_json_hex64(dsq_json_get(r, "hU"), &u)); /* lower-case only, as written */
    /* lookups into non-objects find nothing */
    CHECK(!dsq_json_get(dsq_json_get(r, "arr"), "i") && !dsq_json_get(NULL, "i"));
    int64_t a[4] = {0};
    CHECK(dsq_json_ints(dsq_json_get(r, "arr"), 0, 10, a, 4) == 2 && a[0] == 1 && a[1] == 2);
    CHECK(dsq_json_ints(dsq_json_get(r, "arr"), 0, 1, a, 4) == 1);
    CHECK(dsq_json_ints(dsq_json_get(r, "arr"), 0, 10, a, 1) == 1);
    CHECK(dsq_json_ints(dsq_json_get(r, "e"), 0, 10, a, 4) == 0 && dsq_json_ints(dsq_json_get(r, "i"), 0, 10, a, 4) == 0);
    cJSON_Delete(r);
}

TEST(test_json_fields) {
    cJSON *r = parse("{\"i\": 5, \"f\": 0.5, \"s\": \"x\", \"b\": false, \"n\": null}");
    CHECK(r);
    dsq_err err = {0};
    const dsq_json_ctx c = {"cfg.json", &err, DSQ_E_CONFIG};
    int64_t v;
    double d;
    int b;
    const char *s;
    CHECK(dsq_json_field_int(&c, r, "i", DSQ_JSON_REQUIRED, 0, 1, 9, &v) == DSQ_OK && v == 5);
    CHECK(dsq_json_field_int(&c, r, "n", 0, 77, 1, 9, &v) == DSQ_OK && v == 77); /* null is "not given" */
    CHECK(dsq_json_field_int(&c, r, "zz", 0, 78, 1, 9, &v) == DSQ_OK && v == 78);
    CHECK(dsq_json_field_int(&c, r, "zz", DSQ_JSON_REQUIRED, 0, 1, 9, &v) == DSQ_E_CONFIG);
    CHECKF(!strcmp(err.msg, "cfg.json: missing key 'zz'") && err.code == DSQ_E_CONFIG, "%s", err.msg);
    CHECK(dsq_json_field_int(&c, r, "n", DSQ_JSON_REQUIRED, 0, 1, 9, &v) == DSQ_E_CONFIG);
    CHECK(dsq_json_field_int(&c, r, "f", 0, 0, 1, 9, &v) == DSQ_E_CONFIG);
    CHECKF(!strcmp(err.msg, "cfg.json: key 'f' must be an integer in [1, 9]"), "%s", err.msg);
    CHECK(dsq_json_field_num(&c, r, "f", 0, 0, 0, 1, &d) == DSQ_OK && d == 0.5);
    CHECK(dsq_json_field_num(&c, r, "s", 0, 0, 0, 1e6, &d) == DSQ_E_CONFIG);
    CHECKF(!strcmp(err.msg, "cfg.json: key 's' must be a number in [0, 1e+06]"), "%s", err.msg);
    CHECK(dsq_json_field_bool(&c, r, "b", 0, 1, &b) == DSQ_OK && b == 0);
    CHECK(dsq_json_field_bool(&c, r, "zz", 0, 1, &b) == DSQ_OK && b == 1);
    CHECK(dsq_json_field_bool(&c, r, "i", 0, 1, &b) == DSQ_E_CONFIG);
    CHECKF(!strcmp(err.msg, "cfg.json: key 'i' must be true or false"), "%s", err.msg);
    CHECK(dsq_json_field_str(&c, r, "s", DSQ_JSON_REQUIRED, NULL, &s) == DSQ_OK && !strcmp(s, "x"));
    CHECK(dsq_json_field_str(&c, r, "i", 0, "d", &s) == DSQ_E_CONFIG && !strcmp(s, "d"));
    CHECKF(!strcmp(err.msg, "cfg.json: key 'i' must be a string"), "%s", err.msg);
    cJSON_Delete(r);
}
