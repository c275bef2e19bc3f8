/*
 * tokenizer.c -- fuzz target: tokenizer.json (dsq_tok_new_from_json in
 * formats/tokenizer.c: vocabulary, merges, added tokens, normalizer,
 * pre-tokenizer regexes compiled by PCRE2, decoder, post-processor).
 *
 * Input: the JSON text.  A tokenizer that loads encodes a few fixed strings
 * (ASCII, UTF-8, special-token text, invalid UTF-8); every id it emits must
 * be a token of the vocabulary and decode again, and the decoded length must
 * be the sum of the token lengths.  A fixed tokenizer_config.json is applied
 * last.
 */
#include "fuzz.h"
#include "formats/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *s; size_t n; } g_text[] = {
#define S(x) {x, sizeof x - 1}
    S("Hello, world! It's 2025 -- don't   stop.\n\tx"),
    S("<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82"),
    S("\xff\xfe half \xc3 of \xe2\x82 chars\x00 nul"),
    S(""),
#undef S
};

static const char g_cfg[] =
    "{\"add_bos_token\": true, \"bos_token\": {\"content\": \"<\xef\xbd\x9c" "begin\xe2\x96\x81of"
    "\xe2\x96\x81sentence\xef\xbd\x9c>\"}, \"eos_token\": null}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size ? size : 1);
    if (!json) return 0;
    memcpy(json, data, size);
    dsq_tok *tok = NULL;
    dsq_err err = {0};
    int rc = dsq_tok_new_from_json(&tok, json, size, "fuzz/tokenizer.json", &err);
    free(json);
    if (rc != DSQ_OK) {
        FUZZ_CHECK(rc < 0 && tok == NULL && err.msg[0]);
        return 0;
    }
    int32_t nv = dsq_tok_vocab_size(tok);
    FUZZ_CHECK(nv >= 0);
    for (size_t k = 0; k < sizeof g_text / sizeof g_text[0]; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = dsq_tok_encode(tok, g_text[k].s, g_text[k].n, &ids, &n, &err);
        if (rc != DSQ_OK) {
            FUZZ_CHECK(rc < 0 && ids == NULL);
            continue;
        }
        size_t want = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = 0;
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv);
            FUZZ_CHECK(dsq_tok_token_bytes(tok, ids[i], &len) != NULL);
            want += len;
        }
        char *text = NULL;
        size_t tl = 0;
        FUZZ_CHECK(dsq_tok_decode(tok, ids, n, &text, &tl, &err) == DSQ_OK);
        FUZZ_CHECK(tl == want && text[tl] == 0);
        free(text);
        free(ids);
    }
    int32_t bad = nv;
    char *text = NULL;
    FUZZ_CHECK(dsq_tok_decode(tok, &bad, 1, &text, NULL, &err) == DSQ_E_FORMAT && text == NULL);
    rc = dsq_tok_set_config(tok, g_cfg, sizeof g_cfg - 1, "fuzz/tokenizer_config.json", &err);
    if (rc == DSQ_OK) FUZZ_CHECK(dsq_tok_bos_id(tok) >= 0 && dsq_tok_eos_id(tok) == -1);
    dsq_tok_free(tok);
    return 0;
}
