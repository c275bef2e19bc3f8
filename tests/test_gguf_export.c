/*
 * test_gguf_export.c -- `dsq export` to GGUF, held against the real
 * llama.cpp (tests/llama/, skipped and counted when npm is unreachable) and
 * against dsq's own reading of the file:
 *   - the f32 export of ../shared/models/tiny-v32 run by llama.cpp over all
 *     298 windows of eval.tokens.json gives the reference perplexity 50.984
 *     within 3e-4 (relative), and its window-0 logits are within 1e-4 of the
 *     largest |logit| of reference/logits.npy;
 *   - dsq reads the GGUF back as a model source: every tensor (kv_b joined
 *     from attn_k_b / attn_v_b, experts unstacked) equals the checkpoint's
 *     f32 values bit for bit, so dsq's eval of the file is the checkpoint's;
 *   - for the block types, dsq's eval of the file and llama.cpp's agree
 *     within the bound measured for them (llama.cpp rounds activations to
 *     8 bits for its quantized dot products; dsq keeps them f32).
 */
#include "test.h"
#include "llama_util.h"
#include "npy.h"
#include "formats/source.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int export_to(const char *model, const char *out, const char *type) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --type %s --quiet --force > /dev/null", t_dsq(), model, out, type);
    return t_run(cmd, NULL);
}

/* llama.cpp's figures for a GGUF over the first max_windows windows (0: all);
 * logits_out: write them there too.  Returns the parsed JSON or NULL. */
static cJSON *llama_eval(const char *dir, const char *gguf, const char *tokens, int max_windows, const char *logits_out) {
    char cmd[4096], *out = NULL;
    int n = snprintf(cmd, sizeof cmd, "'%s/llama_logits' '%s' '%s'", dir, gguf, tokens);
    if (max_windows) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --max-windows %d", max_windows);
    if (logits_out) snprintf(cmd + n, sizeof cmd - (size_t)n, " --logits '%s'", logits_out);
    int rc = t_run(cmd, &out);
    cJSON *j = rc == 0 && out ? cJSON_Parse(strrchr(out, '{') ? strrchr(out, '{') : out) : NULL;
    if (!j) fprintf(stderr, "  llama_logits: status %d: %s\n", rc, out ? out : "");
    free(out);
    return j;
}

static double jnum(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* dsq eval's perplexity over max_windows windows. */
static double dsq_ppl(const char *model, const char *tokens, int max_windows) {
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s eval '%s' --tokens '%s' --max-windows %d --json", t_dsq(), model, tokens, max_windows);
    int rc = t_run(cmd, &out);
    cJSON *j = rc == 0 && out ? cJSON_Parse(strchr(out, '{') ? strchr(out, '{') : out) : NULL;
    double p = j ? jnum(j, "ppl") : NAN;
    if (!j) fprintf(stderr, "  dsq eval: status %d: %s\n", rc, out ? out : "");
    cJSON_Delete(j);
    free(out);
    return p;
}

TEST(test_gguf_export_f32_matches_llama_cpp) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *dir = tl_llama_dir(1);
    if (!dir) return;
    char gguf[1024], lg[1024], tok[1024], ref[1024];
    snprintf(gguf, sizeof gguf, "%s", t_path(t_tmpdir(), "f32.gguf"));
    snprintf(lg, sizeof lg, "%s", t_path(t_tmpdir(), "w0.f32"));
    snprintf(tok, sizeof tok, "%s", t_path(m, "eval.tokens.json"));
    snprintf(ref, sizeof ref, "%s/reference/logits.npy", m);
    CHECK(export_to(m, gguf, "f32") == 0);
    /* every window: the perplexity of reference/eval_result.json */
    cJSON *all = llama_eval(dir, gguf, tok, 0, NULL);
    CHECK(all != NULL);
    double ppl = jnum(all, "ppl");
    CHECKF(jnum(all, "windows") == 298 && fabs(ppl / 50.98430686213979 - 1) < 3e-4, "llama.cpp ppl %.6f over %g windows",
           ppl, jnum(all, "windows"));
    cJSON_Delete(all);
    /* window 0: the reference logits */
    cJSON *w0 = llama_eval(dir, gguf, tok, 1, lg);
    CHECK(w0 != NULL);
    cJSON_Delete(w0);
    npy r;
    char why[128];
    CHECKF(npy_load(&r, ref, why) == 0, "%s", why);
    size_t n;
    float *got = t_read_file(lg, &n);
    CHECK(got && n == (size_t)r.n * 4);
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < r.n; i++) mx = fabs(r.v[i]) > mx ? fabs(r.v[i]) : mx;
    for (int64_t i = 0; got && n == (size_t)r.n * 4 && i < r.n; i++) {
        double d = fabs((double)got[i] - r.v[i]) / mx;
        worst = d > worst ? d : worst;
    }
    CHECKF(worst < 1e-4, "window-0 logits differ by %.3e of the largest", worst);
    fprintf(stderr, "  llama.cpp on the f32 export: ppl %.6f (reference 50.984307), window-0 logits within %.2e\n", ppl, worst);
    free(got);
    npy_free(&r);
}

/* Read back by dsq: the same f32 values as the checkpoint, tensor by tensor. */
TEST(test_gguf_export_reads_back_exactly) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *gguf = t_path(t_tmpdir(), "f32.gguf");
    char g[1024];
    snprintf(g, sizeof g, "%s", gguf);
    CHECK(export_to(m, g, "f32") == 0);
    dsq_err err = {0};
    dsq_src *a, *b;
    CHECKF(dsq_src_open(&a, m, 0, &err) == 0, "%s", err.msg);
    CHECKF(dsq_src_open(&b, g, 0, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(dsq_src_kind(b), "gguf") && dsq_src_n_tensors(a) == dsq_src_n_tensors(b));
    CHECK(dsq_src_config(b)->has_indexer && dsq_src_config(b)->n_layers == dsq_src_config(a)->n_layers);
    int bad = 0;
    for (int i = 0; i < dsq_src_n_tensors(a) && !bad; i++) {
        const dsq_stensor *t = dsq_src_tensor(a, i);
        int k = dsq_src_find(b, t->name);
        if (k < 0) {
            fprintf(stderr, "  %s missing from the GGUF\n", t->name);
            bad = 1;
            break;
        }
        const dsq_stensor *u = dsq_src_tensor(b, k);
        size_t cnt = (size_t)(t->rows * t->cols);
        float *x = malloc(cnt * 4 + 4), *y = malloc(cnt * 4 + 4);
        bad = u->rows != t->rows || u->cols != t->cols || dsq_src_rows_f32(a, i, 0, t->rows, x, &err) ||
              dsq_src_rows_f32(b, k, 0, t->rows, y, &err) || memcmp(x, y, cnt * 4);
        if (bad) fprintf(stderr, "  %s differs %s\n", t->name, err.msg);
        free(x);
        free(y);
    }
    CHECK(!bad);
    dsq_src_close(a);
    dsq_src_close(b);
    /* and so the forward pass gives the checkpoint's perplexity */
    char tok[1024];
    snprintf(tok, sizeof tok, "%s", t_path(m, "eval.tokens.json"));
    double pa = dsq_ppl(m, tok, 2), pb = dsq_ppl(g, tok, 2);
    CHECKF(pa == pb && isfinite(pa), "ppl %.9g vs %.9g", pa, pb);
}

/* Block types: dsq's eval of the GGUF against llama.cpp's, 8 windows.
 * Measured (2 windows of slack in the bound): q8_0 0.07 %, q4_0 0.11 %,
 * q4_k 0.01 %, iq4_xs 0.28 %; the bound is 1 %. */
TEST(test_gguf_export_blocks_agree_with_llama_cpp) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *dir = tl_llama_dir(1);
    if (!dir) return;
    static const char *const types[] = {"q8_0", "q4_0", "q4_k", "iq4_xs"};
    char tok[1024];
    snprintf(tok, sizeof tok, "%s", t_path(m, "eval.tokens.json"));
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char g[1024], name[64];
        snprintf(name, sizeof name, "%s.gguf", types[k]);
        snprintf(g, sizeof g, "%s", t_path(t_tmpdir(), name));
        CHECKF(export_to(m, g, types[k]) == 0, "export %s", types[k]);
        cJSON *j = llama_eval(dir, g, tok, 8, NULL);
        double pl = j ? jnum(j, "ppl") : NAN, pd = dsq_ppl(g, tok, 8);
        cJSON_Delete(j);
        double rel = fabs(pd / pl - 1);
        fprintf(stderr, "  %-7s llama.cpp ppl %.4f, dsq %.4f (%.3f %%)\n", types[k], pl, pd, 100 * rel);
        CHECKF(rel < 0.01, "%s: dsq %.4f vs llama.cpp %.4f", types[k], pd, pl);
    }
}
