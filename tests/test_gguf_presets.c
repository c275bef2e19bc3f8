/*
 * test_gguf_presets.c -- `dsq quant --preset T -o X.gguf` for llama.cpp's
 * file types, held against llama.cpp's own quantizer and runtime
 * (tests/llama/, skipped and counted when npm is unreachable):
 *   - for every preset, the file dsq writes from ../shared/models/tiny-v32
 *     is no larger than the one llama.cpp's llama_model_quantize makes of
 *     the same type from dsq's F32 export (dsq's policy spends bits on the
 *     indexer and the dense FFN and pays for them inside llama.cpp's bytes;
 *     q2_k, with no lower type to pay with, within 6 %);
 *   - llama.cpp loads it, and its perplexity and dsq eval's agree within 1 %
 *     (measured: under 0.3 %; llama.cpp rounds activations to 8 bits in its
 *     quantized dot products, dsq keeps them f32);
 *   - the policy's choices are the ones documented: indexer q_b / k Q8_0,
 *     weights_proj and router F32, head Q6_K, dense FFN one type up;
 *   - with --calib (GPTQ on the block grids, the default method), the
 *     calibrated q4_k_m file differs from the plain one, is the same size,
 *     and `dsq verify` finds it closer to the original; `dsq calib
 *     --quant-out X.gguf` writes the same bytes in one pass;
 *   - dsq export keeps what GGUF holds exactly: int4 groups of 32 become
 *     Q4_0 with every value unchanged; legacy attn_kv_b files are read;
 * and the command-line habits around them: the quant report summary and
 * --report, presets' calibrated forms, outputs checked before the work,
 * GNU option forms and two-line usage errors.
 */
#include "test.h"
#include "llama_util.h"
#include "formats/source.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static long long fsize(const char *p) {
    struct stat st;
    return stat(p, &st) ? -1 : (long long)st.st_size;
}

static double jnum(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Run cmd and parse the last JSON object it prints (first when first). */
static cJSON *run_json(const char *cmd, int first) {
    char *out = NULL;
    int rc = t_run(cmd, &out);
    const char *b = out ? (first ? strchr(out, '{') : strrchr(out, '{')) : NULL;
    cJSON *j = rc == 0 && b ? cJSON_Parse(b) : NULL;
    if (!j) fprintf(stderr, "  %s: status %d: %.300s\n", cmd, rc, out ? out : "");
    free(out);
    return j;
}

/* dsq verify's mean KL of cand against ref over the first `windows` windows
 * of text (scored from position score_from), from its JSON on stdout. */
static double verify_kl(const char *ref, const char *cand, const char *text, int windows, int score_from) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s verify '%s' '%s' --text '%s' --max-windows %d --score-from %d --no-experts --json - 2>/dev/null",
             t_dsq(), ref, cand, text, windows, score_from);
    cJSON *j = run_json(cmd, 1);
    double kl = j ? jnum(j, "kl_mean") : NAN;
    cJSON_Delete(j);
    return kl;
}

/* The stored scheme name of tensor `name` in a GGUF dsq reads. */
static const char *scheme_of(const dsq_src *s, const char *name) {
    int i = dsq_src_find(s, name);
    return i < 0 ? "?" : dsq_q_scheme(dsq_src_tensor(s, i)->scheme)->name;
}

TEST(test_gguf_presets_llama_cpp) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *dir = tl_llama_dir(1);
    if (!dir) return;
    char cmd[4096], f32[1024], tok[1024];
    snprintf(tok, sizeof tok, "%s", t_path(m, "eval.tokens.json"));
    snprintf(f32, sizeof f32, "%s", t_path(t_tmpdir(), "preset-f32.gguf"));
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --type f32 --quiet --force > /dev/null", t_dsq(), m, f32);
    CHECK(t_run(cmd, NULL) == 0);
    static const char *const presets[] = {"q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "iq4_xs", "iq4_nl", "q3_k_m", "q2_k"};
    for (size_t k = 0; k < sizeof presets / sizeof presets[0]; k++) {
        char g[1024], l[1024], name[64];
        snprintf(name, sizeof name, "preset-%s.gguf", presets[k]);
        snprintf(g, sizeof g, "%s", t_path(t_tmpdir(), name));
        snprintf(name, sizeof name, "llama-%s.gguf", presets[k]);
        snprintf(l, sizeof l, "%s", t_path(t_tmpdir(), name));
        snprintf(cmd, sizeof cmd, "%s quant '%s' --preset %s -o '%s' --force --no-error > /dev/null", t_dsq(), m, presets[k], g);
        CHECKF(t_run(cmd, NULL) == 0, "dsq quant --preset %s", presets[k]);
        snprintf(cmd, sizeof cmd, "'%s/llama_quant' '%s' '%s' %s", dir, f32, l, presets[k]);
        CHECKF(t_run(cmd, NULL) == 0, "llama_quant %s", presets[k]);
        long long sd = fsize(g), sl = fsize(l);
        /* q2_k has no lower type to pay for the indexer's Q8_0 with: within 6 % */
        int q2 = !strcmp(presets[k], "q2_k");
        CHECKF(sd > 0 && sl > 0 && (q2 ? sd <= sl * 106 / 100 : sd <= sl), "%s: dsq %lld bytes, llama.cpp %lld", presets[k],
               sd, sl);
        snprintf(cmd, sizeof cmd, "'%s/llama_logits' '%s' '%s' --max-windows 8", dir, g, tok);
        cJSON *jl = run_json(cmd, 0);
        snprintf(cmd, sizeof cmd, "%s eval '%s' --tokens '%s' --max-windows 8 --json", t_dsq(), g, tok);
        cJSON *jd = run_json(cmd, 1);
        double pl = jl ? jnum(jl, "ppl") : NAN, pd = jd ? jnum(jd, "ppl") : NAN, rel = fabs(pd / pl - 1);
        fprintf(stderr, "  %-7s %9lld bytes (llama.cpp's %9lld)  ppl llama.cpp %.4f dsq %.4f (%.3f %%)\n", presets[k], sd,
                sl, pl, pd, 100 * rel);
        CHECKF(rel < 0.01, "%s: dsq %.4f vs llama.cpp %.4f", presets[k], pd, pl);
        cJSON_Delete(jl);
        cJSON_Delete(jd);
        if (!strcmp(presets[k], "q4_k_m")) {
            dsq_src *s;
            dsq_err err = {0};
            CHECK(dsq_src_open(&s, g, 0, &err) == 0);
            if (s) {
                CHECK(!strcmp(scheme_of(s, "model.layers.1.self_attn.indexer.wq_b.weight"), "q8_0"));
                CHECK(!strcmp(scheme_of(s, "model.layers.1.self_attn.indexer.wk.weight"), "q8_0"));
                CHECK(!strcmp(scheme_of(s, "model.layers.1.self_attn.indexer.weights_proj.weight"), "f32"));
                CHECK(!strcmp(scheme_of(s, "model.layers.1.mlp.gate.weight"), "f32"));
                CHECK(!strcmp(scheme_of(s, "lm_head.weight"), "q6_k"));
                CHECK(!strcmp(scheme_of(s, "model.layers.0.mlp.gate_proj.weight"), "q6_k"));
                CHECK(!strcmp(scheme_of(s, "model.layers.1.mlp.experts.0.gate_proj.weight"), "q4_k"));
                /* use_more_bits layer 2's ffn_down: Q6_K wanted, 128-column rows: Q5_1 */
                CHECK(!strcmp(scheme_of(s, "model.layers.2.mlp.experts.0.down_proj.weight"), "q5_1"));
                CHECK(!strcmp(scheme_of(s, "model.layers.1.mlp.experts.0.down_proj.weight"), "q5_0"));
                dsq_src_close(s);
            }
        }
    }
}

TEST(test_gguf_presets_calibrated) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], cal[1024], plain[1024], cg[1024];
    snprintf(cal, sizeof cal, "%s", t_path(t_tmpdir(), "preset-q4km.dsqcal"));
    snprintf(plain, sizeof plain, "%s", t_path(t_tmpdir(), "preset-plain-q4km.gguf"));
    snprintf(cg, sizeof cg, "%s", t_path(t_tmpdir(), "preset-calib-q4km.gguf"));
    snprintf(cmd, sizeof cmd, "%s calib '%s' --text '%s' --samples 16 --preset q4_k_m -o '%s' --force > /dev/null 2>&1",
             t_dsq(), m, t_path(m, "calib.txt"), cal);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q4_k_m -o '%s' --force --no-error > /dev/null", t_dsq(), m, plain);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q4_k_m --calib '%s' -o '%s' --force --no-error > /dev/null", t_dsq(), m,
             cal, cg);
    CHECK(t_run(cmd, NULL) == 0);
    CHECK(fsize(plain) > 0 && fsize(plain) == fsize(cg));
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", plain, cg);
    CHECK(t_run(cmd, NULL) != 0);
    /* calibrating and writing the GGUF in one pass gives the same file */
    char qo[1024];
    snprintf(qo, sizeof qo, "%s", t_path(t_tmpdir(), "preset-quant-out-q4km.gguf"));
    snprintf(cmd, sizeof cmd, "%s calib '%s' --text '%s' --samples 16 --preset q4_k_m --quant-out '%s' --force > /dev/null 2>&1",
             t_dsq(), m, t_path(m, "calib.txt"), qo);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", qo, cg);
    CHECKF(t_run(cmd, NULL) == 0, "calib --quant-out %s differs from quant --calib %s", qo, cg);
    double kl[2] = {verify_kl(m, plain, t_path(m, "eval.txt"), 16, 128), verify_kl(m, cg, t_path(m, "eval.txt"), 16, 128)};
    fprintf(stderr, "  q4_k_m KL over 16 eval windows: plain %.6f, calibrated %.6f\n", kl[0], kl[1]);
    CHECKF(kl[1] < kl[0], "calibrated KL %.6f not below plain %.6f", kl[1], kl[0]);
}

/* dsq export of a container whose projections are int4 groups of 32:
 * they reach the GGUF as Q4_0 without one value changing (the report says
 * "transcoded" and dsq reads the same floats back from both files); the
 * tensors GGUF cannot hold as stored (bf16 embedding, the kv_b parts) are
 * converted at --type and reported as quantized. */
TEST(test_gguf_export_transcodes_int4) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], rec[1024], d[1024], g[1024];
    snprintf(rec, sizeof rec, "%s", t_path(t_tmpdir(), "int4g32.json"));
    snprintf(d, sizeof d, "%s", t_path(t_tmpdir(), "int4g32.dsq"));
    snprintf(g, sizeof g, "%s", t_path(t_tmpdir(), "int4g32.gguf"));
    FILE *f = fopen(rec, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("{\"name\":\"i4\",\"rules\":[{\"roles\":[\"routed_experts\",\"attention\",\"dense_ffn\",\"shared_experts\"],"
          "\"scheme\":\"int4-g32-sym\"}],\"default\":\"keep\"}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --recipe '%s' -o '%s' --force --no-error > /dev/null", t_dsq(), m, rec, d);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --type q8_0 --force --quiet --json", t_dsq(), d, g);
    cJSON *j = run_json(cmd, 1);
    CHECK(j != NULL);
    if (!j) return;
    dsq_src *a = NULL, *b = NULL;
    dsq_err err = {0};
    CHECK(dsq_src_open(&a, d, 0, &err) == 0 && dsq_src_open(&b, g, 0, &err) == 0);
    int n_tc = 0, n_q = 0, bad = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "tensors")) {
        const char *how = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "stored"));
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        if (!how || !nm) { bad++; continue; }
        if (strcmp(how, "transcoded")) { n_q += !strcmp(how, "quantized"); continue; }
        n_tc++;
        if (!a || !b) continue;
        /* routed experts are reported stacked: compare expert 0 and the last */
        char nms[2][200];
        int ne = 0;
        if (strstr(nm, ".experts.")) {
            int L;
            char proj[32];
            if (sscanf(nm, "model.layers.%d.mlp.experts.%31[a-z_]", &L, proj) == 2) {
                snprintf(nms[ne++], sizeof nms[0], "model.layers.%d.mlp.experts.0.%s.weight", L, proj);
                snprintf(nms[ne++], sizeof nms[0], "model.layers.%d.mlp.experts.15.%s.weight", L, proj);
            }
        } else snprintf(nms[ne++], sizeof nms[0], "%s", nm);
        for (int k = 0; k < ne; k++) {
            int ia = dsq_src_find(a, nms[k]), ib = dsq_src_find(b, nms[k]);
            if (ia < 0 || ib < 0) { bad++; fprintf(stderr, "  %s missing\n", nms[k]); continue; }
            const dsq_stensor *ta = dsq_src_tensor(a, ia);
            int64_t n = ta->rows * ta->cols;
            float *fa = malloc(sizeof *fa * (size_t)n), *fb = malloc(sizeof *fb * (size_t)n);
            if (dsq_src_rows_f32(a, ia, 0, ta->rows, fa, &err) || dsq_src_rows_f32(b, ib, 0, ta->rows, fb, &err) ||
                memcmp(fa, fb, sizeof *fa * (size_t)n)) {
                bad++;
                fprintf(stderr, "  %s: values differ after transcoding\n", nms[k]);
            }
            if (strcmp(dsq_q_scheme(dsq_src_tensor(b, ib)->scheme)->name, "q4_0")) bad++;
            free(fa);
            free(fb);
        }
    }
    fprintf(stderr, "  %d tensors transcoded to q4_0, %d quantized at q8_0\n", n_tc, n_q);
    CHECK(n_tc > 30 && n_q > 0 && bad == 0);
    dsq_src_close(a);
    dsq_src_close(b);
    cJSON_Delete(j);
}

/* GGUF files of the layout older converters wrote (kv_b whole as
 * attn_kv_b, no *_mla keys; deepseek2, which llama.cpp still runs): made
 * from dsq's F32 export by ggml's own GGUF writer (ggml_gguf legacy), dsq
 * reads them (its perplexity is llama.cpp's on the same file), and dsq
 * export writes them back in the MLA layout llama.cpp runs the same. */
TEST(test_gguf_reads_legacy_kv_b) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    const char *dir = tl_llama_dir(1);
    if (!dir) return;
    char cmd[4096], f32[1024], leg[1024], mla[1024], tok[1024];
    snprintf(tok, sizeof tok, "%s", t_path(m, "eval.tokens.json"));
    snprintf(f32, sizeof f32, "%s", t_path(t_tmpdir(), "legacy-src-f32.gguf"));
    snprintf(leg, sizeof leg, "%s", t_path(t_tmpdir(), "legacy.gguf"));
    snprintf(mla, sizeof mla, "%s", t_path(t_tmpdir(), "legacy-mla.gguf"));
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --type f32 --quiet --force > /dev/null", t_dsq(), m, f32);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "'%s/ggml_gguf' legacy '%s' '%s'", dir, f32, leg);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s export '%s' -o '%s' --type f32 --quiet --force > /dev/null", t_dsq(), leg, mla);
    CHECK(t_run(cmd, NULL) == 0);
    double p[4];
    const char *files[2] = {leg, mla};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "'%s/llama_logits' '%s' '%s' --max-windows 8", dir, files[k], tok);
        cJSON *jl = run_json(cmd, 0);
        snprintf(cmd, sizeof cmd, "%s eval '%s' --tokens '%s' --max-windows 8 --json", t_dsq(), files[k], tok);
        cJSON *jd = run_json(cmd, 1);
        p[2 * k] = jl ? jnum(jl, "ppl") : NAN;
        p[2 * k + 1] = jd ? jnum(jd, "ppl") : NAN;
        cJSON_Delete(jl);
        cJSON_Delete(jd);
    }
    fprintf(stderr, "  legacy file: llama.cpp ppl %.6f, dsq %.6f; exported to MLA: llama.cpp %.6f, dsq %.6f\n", p[0], p[1],
            p[2], p[3]);
    for (int k = 1; k < 4; k++) CHECKF(fabs(p[k] / p[0] - 1) < 1e-4, "ppl %d: %.6f vs %.6f", k, p[k], p[0]);
    /* the layout is checked: a legacy kv_b of the wrong shape is refused */
    dsq_src *s = NULL;
    dsq_err err = {0};
    CHECK(dsq_src_open(&s, leg, 0, &err) == 0);
    if (s) {
        int i = dsq_src_find(s, "model.layers.0.self_attn.kv_b_proj.weight");
        CHECK(i >= 0 && dsq_src_tensor(s, i)->scheme == DSQ_Q_F32);
        dsq_src_close(s);
    }
}

/* dsq quant's report: a summary by default (a few dozen lines whatever the
 * tensor count), every tensor with --report FILE.json, and a report path
 * that cannot be written is refused before any work, writing nothing. */
TEST(test_quant_report_summary_and_file) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], g[1024], js[1024], *out = NULL;
    snprintf(g, sizeof g, "%s", t_path(t_tmpdir(), "report-q4km.gguf"));
    snprintf(js, sizeof js, "%s", t_path(t_tmpdir(), "report-q4km.json"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q4_k_m -o '%s' --force --quiet --report '%s'", t_dsq(), m, g, js);
    CHECK(t_run(cmd, &out) == 0);
    int lines = 0;
    for (const char *p = out ? out : ""; *p; p++) lines += *p == '\n';
    CHECKF(lines > 5 && lines < 50, "summary of %d lines", lines);
    CHECK(out && strstr(out, "routed_experts") && strstr(out, "fallbacks") && strstr(out, "wrote "));
    free(out);
    char *txt = NULL;
    size_t n = 0;
    dsq_err err = {0};
    cJSON *j = dsq_read_file(js, 1u << 24, &txt, &n, &err) == 0 ? cJSON_Parse(txt) : NULL;
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "tensors")) == 90);
    cJSON_Delete(j);
    free(txt);
    char g2[1024];
    snprintf(g2, sizeof g2, "%s", t_path(t_tmpdir(), "report-never.gguf"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q4_k_m -o '%s' --force --quiet --report '%s/no/such/dir/r.json' 2>/dev/null",
             t_dsq(), m, g2, t_tmpdir());
    CHECK(t_run(cmd, NULL) != 0);
    CHECK(fsize(g2) < 0);
}

/* --calib turns a preset into its calibrated form: int4-experts with a
 * calibration differs from plain rounding (GPTQ on the routed experts) and
 * is closer to the original; lossless, or a recipe without a calibrated
 * rule, given --calib is an error that writes nothing. */
TEST(test_quant_preset_calibrated_forms) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], cal[1024], a[1024], b[1024], rec[1024];
    snprintf(cal, sizeof cal, "%s", t_path(t_tmpdir(), "forms.dsqcal"));
    snprintf(a, sizeof a, "%s", t_path(t_tmpdir(), "forms-plain.dsq"));
    snprintf(b, sizeof b, "%s", t_path(t_tmpdir(), "forms-calib.dsq"));
    snprintf(rec, sizeof rec, "%s", t_path(t_tmpdir(), "forms-rtn.json"));
    snprintf(cmd, sizeof cmd, "%s calib '%s' --text '%s' --samples 8 -o '%s' --force > /dev/null 2>&1", t_dsq(), m,
             t_path(m, "calib.txt"), cal);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset int4-experts -o '%s' --force --quiet --no-error > /dev/null", t_dsq(), m, a);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset int4-experts --calib '%s' -o '%s' --force --quiet --no-error > /dev/null",
             t_dsq(), m, cal, b);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    CHECK(t_run(cmd, NULL) != 0);
    double kl[2] = {verify_kl(m, a, t_path(m, "eval.txt"), 8, 0), verify_kl(m, b, t_path(m, "eval.txt"), 8, 0)};
    fprintf(stderr, "  int4-experts KL over 8 eval windows: plain %.6f, with --calib %.6f\n", kl[0], kl[1]);
    CHECK(kl[1] < kl[0]);
    char never[1024];
    snprintf(never, sizeof never, "%s", t_path(t_tmpdir(), "forms-never.dsq"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset lossless --calib '%s' -o '%s' --force 2>/dev/null", t_dsq(), m, cal, never);
    CHECK(t_run(cmd, NULL) != 0 && fsize(never) < 0);
    FILE *f = fopen(rec, "w");
    if (f) {
        fputs("{\"name\":\"rtn\",\"rules\":[{\"roles\":[\"routed_experts\"],\"scheme\":\"int4-g128-sym\"}]}", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s quant '%s' --recipe '%s' --calib '%s' -o '%s' --force 2>/dev/null", t_dsq(), m, rec, cal, never);
    CHECK(t_run(cmd, NULL) != 0 && fsize(never) < 0);
}

/* verify opens its --json / --svg outputs before the run: a path that
 * cannot be written fails at once (nothing of the report printed). */
TEST(test_verify_checks_outputs_first) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s verify '%s' '%s' --text '%s' --max-windows 1 --svg '%s/no/such/dir/v.svg' 2>/dev/null",
             t_dsq(), m, m, t_path(m, "eval.txt"), t_tmpdir());
    int rc = t_run(cmd, &out);
    CHECK(rc != 0 && (!out || !strstr(out, "perplexity")));
    free(out);
}

/* The command line's GNU forms (--opt=value, -oFILE, --) mean what the
 * separate forms mean, and a usage error is two lines: the synopsis and
 * where the help is, not the whole help. */
TEST(test_cli_gnu_forms_and_usage_errors) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], *a = NULL, *b = NULL, g1[1024], g2[1024];
    snprintf(cmd, sizeof cmd, "%s eval --max-windows=2 --tokens='%s' --json -- '%s' 2>/dev/null", t_dsq(),
             t_path(m, "eval.tokens.json"), m);
    CHECK(t_run(cmd, &a) == 0);
    snprintf(cmd, sizeof cmd, "%s eval '%s' --max-windows 2 --tokens '%s' --json 2>/dev/null", t_dsq(), m,
             t_path(m, "eval.tokens.json"));
    CHECK(t_run(cmd, &b) == 0);
    const char *pa = a ? strstr(a, "\"ppl\"") : NULL, *pb = b ? strstr(b, "\"ppl\"") : NULL;
    CHECK(pa && pb && strtod(strchr(pa, ':') + 1, NULL) == strtod(strchr(pb, ':') + 1, NULL));
    free(a);
    free(b);
    snprintf(g1, sizeof g1, "%s", t_path(t_tmpdir(), "gnu-1.gguf"));
    snprintf(g2, sizeof g2, "%s", t_path(t_tmpdir(), "gnu-2.gguf"));
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset=q8_0 '-o%s' --force --quiet --no-error > /dev/null", t_dsq(), m, g1);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q8_0 -o '%s' --force --quiet --no-error > /dev/null", t_dsq(), m, g2);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", g1, g2);
    CHECK(t_run(cmd, NULL) == 0);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s quant '%s' --preset q8_0", t_dsq(), m);
    CHECK(t_run(cmd, &out) == 2);
    int lines = 0;
    for (const char *p = out ? out : ""; *p; p++) lines += *p == '\n';
    CHECKF(lines == 2 && strstr(out, "usage: dsq quant") && strstr(out, "see dsq quant --help"), "%s", out ? out : "");
    free(out);
}

/* `dsq tokenize`'s plain output (ids separated by spaces) is a token file
 * eval reads as it reads the JSON array of the same ids. */
TEST(test_tokenize_plain_ids_read_back) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], plain[1024], js[1024], *a = NULL, *b = NULL;
    snprintf(plain, sizeof plain, "%s", t_path(t_tmpdir(), "plain.ids"));
    snprintf(js, sizeof js, "%s", t_path(t_tmpdir(), "plain.json"));
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' --text '%s' > '%s' 2>/dev/null && %s tokenize '%s' --text '%s' --json > '%s'",
             t_dsq(), m, t_path(m, "calib.txt"), plain, t_dsq(), m, t_path(m, "calib.txt"), js);
    CHECK(t_run(cmd, NULL) == 0);
    snprintf(cmd, sizeof cmd, "%s eval '%s' --tokens '%s' --max-windows 3 --json 2>/dev/null", t_dsq(), m, plain);
    CHECK(t_run(cmd, &a) == 0);
    snprintf(cmd, sizeof cmd, "%s eval '%s' --tokens '%s' --max-windows 3 --json 2>/dev/null", t_dsq(), m, js);
    CHECK(t_run(cmd, &b) == 0);
    const char *pa = a ? strstr(a, "\"ppl\"") : NULL, *pb = b ? strstr(b, "\"ppl\"") : NULL;
    CHECK(pa && pb && strtod(strchr(pa, ':') + 1, NULL) == strtod(strchr(pb, ':') + 1, NULL));
    free(a);
    free(b);
}

/* JSON shapes a script can rely on: inspect --json of a container carries
 * the model's config as inspect of a checkpoint does; eval and verify name
 * their input the same way (text_file for --text). */
TEST(test_json_shapes_consistent) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models/tiny-v32 absent");
    char cmd[4096], d[1024], *out = NULL;
    snprintf(d, sizeof d, "%s", t_path(t_tmpdir(), "shapes.dsq"));
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --force --quiet > /dev/null && %s inspect '%s' --json", t_dsq(), m, d,
             t_dsq(), d);
    CHECK(t_run(cmd, &out) == 0);
    cJSON *j = out && strchr(out, '{') ? cJSON_Parse(strchr(out, '{')) : NULL;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    CHECK(cJSON_IsObject(cfg) && jnum(cfg, "hidden_size") == 256);
    cJSON_Delete(j);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s verify '%s' '%s' --text '%s' --max-windows 1 --no-experts --json - 2>/dev/null", t_dsq(), m, d,
             t_path(m, "eval.txt"));
    CHECK(t_run(cmd, &out) == 0);
    j = out && strchr(out, '{') ? cJSON_Parse(strchr(out, '{')) : NULL;
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "text_file")) && !cJSON_GetObjectItemCaseSensitive(j, "tokens_file"));
    cJSON_Delete(j);
    free(out);
}
