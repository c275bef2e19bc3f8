/*
 * tokens.c -- fuzz target: token files, a JSON array of integer ids
 * (dsq_tokens_parse_json in formats/tokenizer.c, a hand-written reader).
 *
 * Input: the file bytes.  When the reader accepts them, an independent
 * check reads the same array with strtod on each whole element and must get
 * the same ids.
 */
#include "fuzz.h"
#include "formats/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    int32_t *ids = NULL;
    size_t n = 0;
    dsq_err err = {0};
    int rc = dsq_tokens_parse_json(buf, size, "fuzz.tokens.json", &ids, &n, &err);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && ids == NULL && n == 0 && err.msg[0]);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(ids != NULL);
    /* accepted: the bytes are ws '[' ws (number ws (',' ws number ws)*)? ']' ws */
    buf[size] = 0;
    char *p = memchr(buf, '[', size);
    FUZZ_CHECK(p != NULL);
    p++;
    size_t k = 0;
    for (;;) {
        while (is_ws(*p)) p++;
        if (*p == ']') break;
        char *end = p;
        while (*end && *end != ',' && *end != ']' && !is_ws(*end)) end++;
        char save = *end;
        *end = 0;
        double d = strtod(p, NULL);
        *end = save;
        FUZZ_CHECK(k < n);
        FUZZ_CHECK(d == (double)ids[k]);
        k++;
        p = end;
        while (is_ws(*p)) p++;
        if (*p == ',') p++;
    }
    FUZZ_CHECK(k == n);
    free(ids);
    free(buf);
    return 0;
}
