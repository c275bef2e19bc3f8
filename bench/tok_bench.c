/*
 * tok_bench.c -- encode throughput of the byte-level BPE tokenizer
 * (formats/tokenizer.c) on one core, with the real DeepSeek-V3 tokenizer and
 * the tiny model's, over a few MB of English text (the tiny model's eval.txt
 * and calib.txt, repeated).  Not part of the library or the tests.
 *
 *   make build/bench/tok_bench && build/bench/tok_bench [SHARED_DIR] [MB]
 *
 * SHARED_DIR defaults to $DSQ_SHARED or ../shared; MB (default 4) is the
 * text size.  One line per measurement, e.g.
 *   tokenize deepseek-v3: 12.3 MB/s (1234567 tokens, 4.0 MB)
 * The best of three runs is reported (the machine may be shared).  The text
 * repeats every 0.4 MB, so the per-word cache is warm after the first pass;
 * the "cold" line encodes the 0.4 MB of unique text once with a freshly
 * loaded tokenizer, the speed on text whose words have not been seen.
 */
#include "common.h"
#include "formats/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[1024];
    char *buf = NULL;
    dsq_err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (dsq_read_file(path, (size_t)1 << 31, &buf, len, &err) < 0) {
        fprintf(stderr, "tok_bench: %s\n", err.msg);
        return NULL;
    }
    return buf;
}

/* Load dir/tokenizer.json; prints the load time unless quiet. */
static dsq_tok *load(const char *dir, const char *label, unsigned flags, int quiet) {
    size_t len;
    char *json = slurp(dir, "tokenizer.json", &len);
    if (!json) return NULL;
    dsq_tok *t = NULL;
    dsq_err err = {0};
    double t0 = dsq_now();
    int rc = dsq_tok_new_from_json_ex(&t, json, len, "tokenizer.json", flags, &err);
    double dt = dsq_now() - t0;
    free(json);
    if (rc < 0) {
        fprintf(stderr, "tok_bench: %s: %s\n", dir, err.msg);
        return NULL;
    }
    if (!quiet) printf("load %s: %.3f s (%.1f MB of JSON)\n", label, dt, (double)len / 1e6);
    return t;
}

static int measure(const char *label, const dsq_tok *t, const char *text, size_t len) {
    double best = 1e30;
    size_t n = 0;
    for (int rep = 0; rep < 3; rep++) {
        int32_t *ids;
        dsq_err err = {0};
        double t0 = dsq_now();
        if (dsq_tok_encode(t, text, len, &ids, &n, &err) < 0) {
            fprintf(stderr, "tok_bench: %s: %s\n", label, err.msg);
            return 1;
        }
        double dt = dsq_now() - t0;
        if (dt < best) best = dt;
        free(ids);
    }
    printf("tokenize %s: %.1f MB/s (%zu tokens, %.1f MB)\n", label, (double)len / best / 1e6, n,
           (double)len / 1e6);
    return 0;
}

/* Fresh tokenizer, one pass over the unique text: an empty word cache. */
static int measure_cold(const char *dir, const char *label, const char *text, size_t len) {
    double best = 1e30;
    size_t n = 0;
    for (int rep = 0; rep < 3; rep++) {
        dsq_tok *t = load(dir, label, 0, 1);
        if (!t) return 1;
        int32_t *ids;
        dsq_err err = {0};
        double t0 = dsq_now();
        int rc = dsq_tok_encode(t, text, len, &ids, &n, &err);
        double dt = dsq_now() - t0;
        dsq_tok_free(t);
        if (rc < 0) {
            fprintf(stderr, "tok_bench: %s: %s\n", label, err.msg);
            return 1;
        }
        free(ids);
        if (dt < best) best = dt;
    }
    printf("tokenize %s (cold cache): %.1f MB/s (%zu tokens, %.2f MB)\n", label,
           (double)len / best / 1e6, n, (double)len / 1e6);
    return 0;
}

int main(int argc, char **argv) {
    const char *env = getenv("DSQ_SHARED");
    const char *shared = argc > 1 ? argv[1] : env && *env ? env : "../shared";
    double mb = argc > 2 ? atof(argv[2]) : 4.0;
    char tiny[1024], ds[1024];
    snprintf(tiny, sizeof tiny, "%s/models/tiny-v32", shared);
    snprintf(ds, sizeof ds, "%s/tokenizers/deepseek-v3", shared);
    if (mb <= 0 || mb > 1024) {
        fprintf(stderr, "usage: tok_bench [SHARED_DIR] [MB]\n");
        return 2;
    }

    size_t le, lc;
    char *ev = slurp(tiny, "eval.txt", &le), *ca = slurp(tiny, "calib.txt", &lc);
    if (!ev || !ca) return 1;
    size_t want = (size_t)(mb * 1e6), len = 0;
    char *text = malloc(want + le + lc);
    if (!text) return 1;
    while (len < want) {
        memcpy(text + len, ev, le);
        memcpy(text + len + le, ca, lc);
        len += le + lc;
    }
    free(ev);
    free(ca);
    /* text[0, le + lc) is the unique part */

    int rc = 0;
    struct { const char *dir, *label; } which[] = {{ds, "deepseek-v3"}, {tiny, "tiny-v32"}};
    for (int i = 0; i < 2; i++) {
        dsq_tok *t = load(which[i].dir, which[i].label, 0, 0);
        if (!t) return 1;
        rc |= measure(which[i].label, t, text, len);
        dsq_tok_free(t);
        rc |= measure_cold(which[i].dir, which[i].label, text, le + lc);
        char label[64];
        snprintf(label, sizeof label, "%s (PCRE2 interpreter)", which[i].label);
        t = load(which[i].dir, label, DSQ_TOK_NO_JIT, 1);
        if (!t) return 1;
        rc |= measure(label, t, text, len);
        dsq_tok_free(t);
    }
    free(text);
    return rc;
}
