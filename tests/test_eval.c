/*
 * test_eval.c -- perplexity evaluation: the token-file loader and its
 * rejections, the window plan, the eval loop against the forward pass, the
 * reference figures of the shared tiny model (first window always; the full
 * 298-window perplexity only with DSQ_FULL_EVAL=1, it takes a while), and
 * the `dsq eval` command on a generated checkpoint.
 */
#include "test.h"
#include "pipeline/model.h"
#include "test_ckpt_util.h"
#include "tmodel.h"
#include "formats/tokenizer.h"
#include "verify/eval.h"
#include "verify/forward.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

TEST(test_eval_tokens_loader) {
    const char *d = t_tmpdir();
    int32_t *tok = NULL;
    size_t n = 99;
    dsq_err err = {0};
    const char *good = "[0, 5, 4095,\n 2147483647 ]";
    CHECK(t_write_file(t_path(d, "a.json"), good, strlen(good)) == 0);
    CHECKF(dsq_tokens_load_json(t_path(d, "a.json"), &tok, &n, &err) == 0, "%s", err.msg);
    CHECK(n == 4 && tok[0] == 0 && tok[1] == 5 && tok[2] == 4095 && tok[3] == 2147483647);
    free(tok);
    CHECK(t_write_file(t_path(d, "e.json"), "[]", 2) == 0);
    CHECK(dsq_tokens_load_json(t_path(d, "e.json"), &tok, &n, &err) == 0 && n == 0);
    free(tok);
    static const char *bad[] = {"{\"a\": 1}", "[1, 2", "[1, 2.5]", "[1, \"7\"]",
                                "[2147483648]", "[1, null]", "[[1]]", "", "[1e400]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(t_write_file(t_path(d, "b.json"), bad[i], strlen(bad[i])) == 0);
        int rc = dsq_tokens_load_json(t_path(d, "b.json"), &tok, &n, &err);
        CHECKF(rc == DSQ_E_FORMAT && tok == NULL && n == 0, "case %zu: rc %d", i, rc);
        CHECKF(strstr(err.msg, "b.json") != NULL, "%s", err.msg);
    }
    CHECK(dsq_tokens_load_json(t_path(d, "missing.json"), &tok, &n, &err) == DSQ_E_IO);
}

TEST(test_eval_plan) {
    int64_t nw;
    int T;
    dsq_err err;
    CHECK(dsq_eval_plan(76337, 256, 0, &nw, &T, &err) == 0 && nw == 298 && T == 256);
    CHECK(dsq_eval_plan(76337, 256, 5, &nw, &T, &err) == 0 && nw == 5 && T == 256);
    CHECK(dsq_eval_plan(512, 256, 0, &nw, &T, &err) == 0 && nw == 2 && T == 256);
    CHECK(dsq_eval_plan(100, 256, 0, &nw, &T, &err) == 0 && nw == 1 && T == 100);
    CHECK(dsq_eval_plan(1, 256, 0, &nw, &T, &err) == DSQ_E_ARG);
    CHECK(dsq_eval_plan(100, 1, 0, &nw, &T, &err) == DSQ_E_ARG);
    dsq_config c;
    tm_small_config(&c);
    c.max_position_embeddings = 64;
    CHECK(dsq_eval_default_ctx(&c) == 64);
    c.max_position_embeddings = 163840;
    CHECK(dsq_eval_default_ctx(&c) == 256);
}

/* The eval loop equals NLLs computed by hand from dsq_fwd_run. */
typedef struct {
    float *all;
    int64_t rows;
} grab;

static int grab_logits(void *user, const float *lg, int T, int V) {
    grab *g = user;
    memcpy(g->all + g->rows * V, lg, sizeof(float) * (size_t)T * V);
    g->rows += T;
    return 0;
}

TEST(test_eval_matches_forward) {
    dsq_config c;
    tmodel m;
    tm_small_config(&c);
    CHECK(tm_build(&m, &c, 11) == 0);
    enum { N = 45, CTX = 10 };
    int32_t tok[N];
    uint64_t s = 8;
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((tm_rand(&s) + 1) * 0.5f * (c.vocab_size - 1));
    grab g = {malloc(sizeof(float) * N * c.vocab_size), 0};
    dsq_eval_opts o = {.ctx = CTX, .n_threads = 2, .on_logits = grab_logits, .user = &g};
    dsq_eval_result r;
    dsq_err err;
    CHECKF(dsq_eval_run(&m.w, tok, N, &o, &r, &err) == 0, "%s", err.msg);
    CHECK(r.n_windows == 4 && r.n_predicted == 36 && r.ctx == CTX && g.rows == 40);
    dsq_fwd *f;
    dsq_fwd_opts fo = {.max_tokens = CTX, .n_threads = 1};
    CHECK(dsq_fwd_new(&f, &m.w, &fo, &err) == 0);
    float *lg = malloc(sizeof(float) * CTX * c.vocab_size);
    double sum = 0, first = 0;
    for (int w = 0; w < 4; w++) {
        CHECK(dsq_fwd_run(f, tok + w * CTX, CTX, lg, &err) == 0);
        CHECK(memcmp(lg, g.all + (int64_t)w * CTX * c.vocab_size, sizeof(float) * CTX * c.vocab_size) == 0);
        for (int t = 0; t + 1 < CTX; t++) {
            const float *row = lg + t * c.vocab_size;
            double mx = row[0], z = 0;
            for (int i = 0; i < c.vocab_size; i++) mx = fmax(mx, row[i]);
            for (int i = 0; i < c.vocab_size; i++) z += exp(row[i] - mx);
            double nll = log(z) + mx - row[tok[w * CTX + t + 1]];
            sum += nll;
            if (w == 0) first += nll / (CTX - 1);
        }
    }
    /* the eval sums f32 exponentials in double: agreement to ~1e-7 */
    CHECK(fabs(r.mean_nll - sum / 36) < 1e-6 && fabs(r.ppl - exp(sum / 36)) < 1e-6 * r.ppl);
    CHECK(fabs(r.first_window_loss - first) < 1e-6);
    dsq_fwd_free(f);
    free(lg);
    free(g.all);
    tm_free(&m);
}

/* Reference figures: reference/eval_result.json of the shared model. */
TEST(test_eval_tiny_v32_reference) {
    const char *dir = t_shared_model("tiny-v32");
    if (!dir) SKIP("../shared/models/tiny-v32 absent");
    dsq_src *ck = NULL;
    dsq_err err = {0};
    dsq_weights w;
    CHECKF(dsq_model_open(&ck, &w, dir, &err) == 0, "%s", err.msg);
    int32_t *tok;
    size_t n;
    CHECKF(dsq_tokens_load_json(t_path(dir, "eval.tokens.json"), &tok, &n, &err) == 0, "%s", err.msg);
    const char *full = getenv("DSQ_FULL_EVAL");
    int all = full && *full && strcmp(full, "0");
    dsq_eval_opts o = {.max_windows = all ? 0 : 2, .n_threads = 2};
    dsq_eval_result r;
    CHECKF(dsq_eval_run(&w, tok, (int64_t)n, &o, &r, &err) == 0, "%s", err.msg);
    CHECK(r.ctx == 256);
    CHECKF(fabs(r.first_window_loss - 4.608680725097656) < 1e-5, "first window loss %.9f",
           r.first_window_loss);
    if (all) {
        fprintf(stderr, "  %lld windows, %lld predictions, mean NLL %.7f, ppl %.5f\n",
                (long long)r.n_windows, (long long)r.n_predicted, r.mean_nll, r.ppl);
        CHECK(r.n_windows == 298 && r.n_predicted == 75990);
        /* 50.98430686213979 to 4 significant digits */
        CHECKF(fabs(r.ppl - 50.98430686213979) < 0.005, "ppl %.5f", r.ppl);
    } else {
        CHECK(r.n_windows == 2 && r.n_predicted == 510);
    }
    free(tok);
    dsq_src_close(ck);
}

TEST(test_eval_cli) {
    const char *d = t_tmpdir();
    char model[700], toks[700], cmd[3000], *out = NULL;
    snprintf(model, sizeof model, "%s", t_path(d, "m"));
    CHECK(tu_gen_micro(model, 0, 2) == 0);
    snprintf(toks, sizeof toks, "%s", t_path(d, "t.json"));
    char js[2000];
    int k = snprintf(js, sizeof js, "[0");
    for (int i = 1; i < 100; i++) k += snprintf(js + k, sizeof js - (size_t)k, ", %d", (i * 37) % 300);
    snprintf(js + k, sizeof js - (size_t)k, "]");
    CHECK(t_write_file(toks, js, strlen(js)) == 0);
    /* 100 tokens in windows of 32: 3 windows, 93 predictions */
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s --ctx 32 --threads 2 --json --logits %s",
             t_dsq(), model, toks, t_path(d, "l.f32"));
    CHECK(t_run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(strchr(out, '{'));
    CHECKF(j != NULL, "%s", out);
    CHECK(cJSON_GetObjectItem(j, "windows")->valuedouble == 3);
    CHECK(cJSON_GetObjectItem(j, "predicted_tokens")->valuedouble == 93);
    double ppl = cJSON_GetObjectItem(j, "ppl")->valuedouble;
    CHECK(ppl > 1 && isfinite(ppl));
    cJSON_Delete(j);
    free(out);
    size_t sz = 0;
    void *lg = t_read_file(t_path(d, "l.f32"), &sz);
    CHECK(lg && sz == (size_t)96 * 300 * sizeof(float));
    free(lg);
    /* --act-fp8 runs and changes the figure; text output names the perplexity */
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s --ctx 32 --act-fp8 --max-windows 1", t_dsq(),
             model, toks);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, "perplexity") && strstr(out, "FP8"), "%s", out);
    free(out);
    /* pseudo-random ids: fixed, so two runs agree */
    char *out2 = NULL;
    snprintf(cmd, sizeof cmd, "%s eval %s --random-tokens 70 --ctx 32 --json", t_dsq(), model);
    CHECK(t_run(cmd, &out) == 0 && t_run(cmd, &out2) == 0);
    cJSON *j1 = cJSON_Parse(strchr(out, '{')), *j2 = cJSON_Parse(strchr(out2, '{'));
    CHECK(j1 && j2);
    CHECK(cJSON_GetObjectItem(j1, "windows")->valuedouble == 2);
    CHECK(cJSON_GetObjectItem(j1, "ppl")->valuedouble == cJSON_GetObjectItem(j2, "ppl")->valuedouble);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    free(out);
    free(out2);
    int32_t r[5];
    dsq_eval_random_tokens(r, 5, 300, 0);
    CHECK(r[0] == 0);
    for (int i = 1; i < 5; i++) CHECK(r[i] >= 0 && r[i] < 300);
    /* usage errors exit 2, bad inputs 1 */
    snprintf(cmd, sizeof cmd, "%s eval %s --random-tokens 70 --tokens %s", t_dsq(), model, toks);
    CHECK(t_run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s eval %s", t_dsq(), model);
    CHECK(t_run(cmd, NULL) == 2);
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s --ctx 1", t_dsq(), model, toks);
    CHECK(t_run(cmd, NULL) == 2);
    CHECK(t_write_file(toks, "[0, -3]", 7) == 0);
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s", t_dsq(), model, toks);
    CHECK(t_run(cmd, NULL) == 1);
    CHECK(t_write_file(toks, "[0, 300]", 8) == 0);
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s", t_dsq(), model, toks);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "outside the vocabulary"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s", t_dsq(), t_path(d, "nope"), toks);
    CHECK(t_run(cmd, NULL) == 1);
}

/* --score-from K scores only the predictions at positions >= K: the count
 * and the mean follow from the per-window losses of the full run. */
TEST(test_eval_score_from) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models absent");
    char cmd[2048], *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s/eval.tokens.json --max-windows 2 --json", t_dsq(), m, m);
    CHECK(t_run(cmd, &a) == 0);
    snprintf(cmd, sizeof cmd, "%s eval %s --tokens %s/eval.tokens.json --max-windows 2 --score-from 128 --json", t_dsq(), m, m);
    CHECK(t_run(cmd, &b) == 0);
    const char *pa = strstr(a, "\"predicted_tokens\""), *pb = strstr(b, "\"predicted_tokens\"");
    CHECKF(pa && pb, "%s", b);
    CHECK(atoll(strchr(pa, ':') + 1) == 2 * 255 && atoll(strchr(pb, ':') + 1) == 2 * 127);
    free(a);
    free(b);
}
