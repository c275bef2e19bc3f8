/*
 * test_calib_run.c -- the calibration pipeline: statistics against a direct
 * computation, per-expert token counts, sequential inputs (layer l sees the
 * quantized layers before it), the .dsqcal round trip into dsq quant,
 * calibrated int4 beating round-to-nearest on the trained tiny model, and
 * --quant-out writing the very container calib + quant would.
 */
#include "test.h"
#include "test_ckpt_util.h"
#include "calib/stats.h"
#include "pipeline/calib_run.h"
#include "synth/gen.h"
#include "pipeline/model.h"
#include "pipeline/pipeline.h"
#include "formats/container.h"
#include "verify/forward.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int32_t *synth_tokens(int64_t n, int vocab) {
    int32_t *t = malloc(sizeof *t * (size_t)n);
    uint64_t s = 99;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        t[i] = (int32_t)(s % (uint64_t)vocab);
    }
    return t;
}

static int run_calib(const char *model, const char *preset, const int32_t *tok, size_t n, int T,
                     int64_t min_tokens, dsq_cstats **cs) {
    dsq_recipe r;
    dsq_err err = {0};
    if (preset[0] == '{' ? dsq_recipe_parse(&r, preset, strlen(preset), "recipe", &err) : dsq_recipe_preset(&r, preset, &err))
        return -1;
    dsq_src *m;
    dsq_weights mw;
    if (dsq_model_open(&m, &mw, model, &err)) {
        dsq_recipe_deinit(&r);
        return -1;
    }
    dsq_calib_opts o = {0};
    o.src = m;
    o.recipe = &r;
    o.tokens = tok;
    o.n_tokens = n;
    o.ctx = T;
    o.threads = 2;
    o.min_tokens = min_tokens;
    o.hessian = 1;
    dsq_calib_report rep;
    int rc = dsq_calib_run(&o, cs, &rep, &err);
    if (rc) fprintf(stderr, "  calib: %s\n", err.msg);
    dsq_src_close(m);
    dsq_recipe_deinit(&r);
    return rc;
}

TEST(test_calib_run_statistics) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    dsq_config c;
    tu_micro_config(&c);
    int T = 32, W = 3;
    int32_t *tok = synth_tokens(W * T, c.vocab_size);
    dsq_cstats *cs = NULL;
    CHECK(run_calib(d, "lossless", tok, (size_t)(W * T), T, 0, &cs) == 0);
    /* layer 0's attention input is input_layernorm(embedding): compute it here */
    dsq_src *m;
    dsq_weights mw;
    dsq_err err = {0};
    CHECK(dsq_model_open(&m, &mw, d, &err) == 0);
    int64_t D = c.hidden_size;
    float *e = malloc(sizeof *e * (size_t)D), *x = malloc(sizeof *x * (size_t)D), *g = malloc(sizeof *g * (size_t)D);
    double *sq = calloc((size_t)D, sizeof *sq);
    int eid = mw.find(mw.ctx, "model.embed_tokens.weight"), nid = mw.find(mw.ctx, "model.layers.0.input_layernorm.weight");
    CHECK(mw.rows_f32(mw.ctx, nid, 0, 1, g, &err) == 0);
    for (int i = 0; i < W * T; i++) {
        CHECK(mw.rows_f32(mw.ctx, eid, tok[i], tok[i] + 1, e, &err) == 0);
        dsq_fwd_rmsnorm(e, g, (int)D, (float)c.rms_norm_eps, x);
        for (int64_t j = 0; j < D; j++) sq[j] += (double)x[j] * x[j];
    }
    const dsq_cstat *s = dsq_cstats_find(cs, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"); /* an alias */
    CHECK(s && s->count == W * T && s->cols == D && s->hess);
    for (int64_t j = 0; j < D; j++) CHECKF(fabs(s->sum_sq[j] - sq[j]) <= 1e-4 * sq[j] + 1e-6, "col %lld", (long long)j);
    /* every linear has statistics; routed experts count their own tokens */
    for (int l = 1; l < c.n_layers; l++) {
        int64_t total = 0;
        char nm[160];
        for (int ex = 0; ex < c.n_routed_experts; ex++) {
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, ex);
            const dsq_cstat *se = dsq_cstats_find(cs, nm);
            CHECKF(se != NULL, "%s", nm);
            total += se->count;
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, ex);
            CHECK(dsq_cstats_find(cs, nm) && dsq_cstats_find(cs, nm)->cols == c.moe_intermediate_size);
        }
        CHECK(total == (int64_t)W * T * c.n_experts_per_tok);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.o_proj.weight", l);
        CHECK(dsq_cstats_find(cs, nm) && dsq_cstats_find(cs, nm)->cols == c.n_heads * c.v_head_dim);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.indexer.wq_b.weight", l);
        CHECK(dsq_cstats_find(cs, nm) && dsq_cstats_find(cs, nm)->cols == c.q_lora_rank);
    }
    /* sequential: with int4 quantization, layer 1 sees quantized layer-0 outputs */
    dsq_cstats *cq = NULL;
    CHECK(run_calib(d, "int4", tok, (size_t)(W * T), T, 0, &cq) == 0);
    const dsq_cstat *a0 = dsq_cstats_find(cs, "model.layers.0.self_attn.q_a_proj.weight"),
                    *b0 = dsq_cstats_find(cq, "model.layers.0.self_attn.q_a_proj.weight"),
                    *a1 = dsq_cstats_find(cs, "model.layers.1.self_attn.q_a_proj.weight"),
                    *b1 = dsq_cstats_find(cq, "model.layers.1.self_attn.q_a_proj.weight");
    CHECK(a0 && b0 && a1 && b1);
    CHECK(!memcmp(a0->sum_sq, b0->sum_sq, sizeof(double) * (size_t)D)); /* same inputs to layer 0 */
    CHECK(memcmp(a1->sum_sq, b1->sum_sq, sizeof(double) * (size_t)D) != 0);
    /* the output head reads the final norm: per token mean_j (x_j / g_j)^2 = 1
     * (RMS normalisation, up to eps) */
    const dsq_cstat *hs = dsq_cstats_find(cs, "lm_head.weight");
    CHECK(hs && hs->count == W * T && hs->cols == D && hs->hess);
    int fid = mw.find(mw.ctx, "model.norm.weight");
    CHECK(mw.rows_f32(mw.ctx, fid, 0, 1, g, &err) == 0);
    double unit = 0;
    for (int64_t j = 0; hs && j < D; j++) unit += hs->sum_sq[j] / ((double)g[j] * g[j]);
    unit /= (double)(W * T) * (double)D;
    CHECKF(fabs(unit - 1) < 1e-3, "head input mean square %.6f", unit);
    /* starved experts: with a high threshold every expert falls back to pooled statistics */
    dsq_cstats *cp = NULL;
    CHECK(run_calib(d, "lossless", tok, (size_t)(W * T), T, 1000000, &cp) == 0);
    const dsq_cstat *p1 = dsq_cstats_find(cp, "model.layers.1.mlp.experts.0.gate_proj.weight");
    CHECK(p1 && p1->fallback && p1->count == (int64_t)W * T * c.n_experts_per_tok);
    dsq_cstats_free(cs);
    dsq_cstats_free(cq);
    dsq_cstats_free(cp);
    dsq_src_close(m);
    free(e); free(x); free(g); free(sq); free(tok);
}

TEST(test_calib_run_reference_moment) {
    /* with asymmetric targets calibration also runs the reference model and
     * keeps E[r x^T]: equal to the Hessian where nothing before the input
     * is quantized (layer 0's attention input, embedding kept), different
     * after quantized layers, and a GPTQ target that moves toward it */
    const char *d = t_path(t_tmpdir(), "mref");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    dsq_config c;
    tu_micro_config(&c);
    int T = 32, W = 3;
    int32_t *tok = synth_tokens(W * T, c.vocab_size);
    dsq_cstats *cs = NULL;
    const char *rec = "{\"name\":\"t\",\"rules\":[{\"roles\":[\"attention\",\"dense_ffn\",\"shared_experts\",\"routed_experts\"],"
                      "\"scheme\":\"int4-g32-sym\",\"method\":\"gptq\",\"ref_target\":0.5}]}";
    CHECK(run_calib(d, rec, tok, (size_t)(W * T), T, 0, &cs) == 0);
    const dsq_cstat *a0 = dsq_cstats_find(cs, "model.layers.0.self_attn.q_a_proj.weight"),
                    *a1 = dsq_cstats_find(cs, "model.layers.1.self_attn.q_a_proj.weight"),
                    *d0 = dsq_cstats_find(cs, "model.layers.0.mlp.down_proj.weight"),
                    *e1 = dsq_cstats_find(cs, "model.layers.1.mlp.experts.0.up_proj.weight");
    CHECK(a0 && a1 && d0 && e1);
    CHECK(a0->xcov && a1->xcov && d0->xcov);
    CHECK(!e1->xcov); /* routed experts: tokens differ between the two models */
    int64_t n0 = a0->cols * a0->cols, n1 = a1->cols * a1->cols;
    double diff0 = 0, diff1 = 0, norm0 = 0, norm1 = 0;
    for (int64_t k = 0; k < n0; k++) {
        diff0 = fmax(diff0, fabs(a0->xcov[k] - a0->hess[k]));
        norm0 = fmax(norm0, fabs(a0->hess[k]));
    }
    for (int64_t k = 0; k < n1; k++) {
        diff1 = fmax(diff1, fabs(a1->xcov[k] - a1->hess[k]));
        norm1 = fmax(norm1, fabs(a1->hess[k]));
    }
    fprintf(stderr, "  max |E[r x^T] - E[x x^T]| / max |E[x x^T]|: layer 0 %.2e, layer 1 %.2e\n", diff0 / norm0, diff1 / norm1);
    CHECK(diff0 <= 1e-5 * norm0);
    CHECK(diff1 > 1e-3 * norm1);
    /* the .dsqcal keeps it */
    char *cj = dsq_config_to_json(&c);
    const char *p = t_path(t_tmpdir(), "mref.dsqcal");
    dsq_err err = {0};
    CHECKF(dsq_cstats_save(cs, p, cj, NULL, 1, &err) == 0, "%s", err.msg);
    dsq_cstats *r = NULL;
    CHECKF(dsq_cstats_load(&r, p, &err) == 0, "%s", err.msg);
    const dsq_cstat *ra1 = r ? dsq_cstats_find(r, a1->name) : NULL;
    CHECK(ra1 && ra1->xcov);
    if (ra1 && ra1->xcov)
        for (int64_t k = 0; k < n1; k++) CHECK(fabs(ra1->xcov[k] - a1->xcov[k]) <= 1e-5 * norm1);
    free(cj);
    dsq_cstats_free(r);
    dsq_cstats_free(cs);
    free(tok);
}

TEST(test_calib_run_cli_and_quant) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    const char *dir = t_tmpdir();
    char cmd[4096], *out = NULL;
    /* tokens file */
    dsq_config c;
    tu_micro_config(&c);
    int32_t *tok = synth_tokens(200, c.vocab_size);
    FILE *f = fopen(t_path(dir, "tok.json"), "w");
    fputc('[', f);
    for (int i = 0; i < 200; i++) fprintf(f, "%s%d", i ? "," : "", tok[i]);
    fputs("]\n", f);
    fclose(f);
    free(tok);
    snprintf(cmd, sizeof cmd,
             "printf '{\"name\":\"g\",\"default\":\"fp8-block\",\"rules\":[{\"roles\":[\"routed_experts\",\"attention\"],"
             "\"scheme\":\"int4-g32-sym\",\"method\":\"gptq\"},{\"roles\":[\"dense_ffn\"],\"scheme\":\"int4-g32-asym\",\"method\":\"awq\"}]}' > %s/g.json && "
             "%s calib %s --tokens %s/tok.json --ctx 50 -o %s/c.dsqcal --recipe %s/g.json && "
             "%s quant %s -o %s/q.dsq --recipe %s/g.json --calib %s/c.dsqcal --no-error && %s check %s/q.dsq",
             dir, t_dsq(), d, dir, dir, dir, t_dsq(), d, dir, dir, dir, t_dsq(), dir);
    int rc = t_run(cmd, &out);
    CHECKF(rc == 0, "%s", out);
    CHECKF(strstr(out, "4 windows x 50 tokens"), "%s", out);
    free(out);
    /* the container records the method; AWQ tensors carry column multipliers */
    dsq_ctr *q;
    dsq_err err = {0};
    CHECK(dsq_ctr_open(&q, t_path(dir, "q.dsq"), &err) == 0);
    int i = dsq_ctr_find(q, "model.layers.0.mlp.down_proj.weight");
    CHECK(i >= 0 && dsq_ctr_colscale(q, i, 0) != NULL && strstr(dsq_ctr_tensor(q, i)->recipe, "awq"));
    i = dsq_ctr_find(q, "model.layers.1.mlp.experts.up_proj.weight");
    CHECK(i >= 0 && strstr(dsq_ctr_tensor(q, i)->recipe, "gptq") && dsq_ctr_colscale(q, i, 0) == NULL);
    dsq_ctr_close(q);
    /* gptq without statistics, and statistics of another model, are refused */
    snprintf(cmd, sizeof cmd, "%s quant %s -o %s/x.dsq --recipe %s/g.json", t_dsq(), d, dir, dir);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "needs calibration statistics"), "%s", out);
    free(out);
    const char *m = t_shared_model("tiny-v32");
    if (m) {
        snprintf(cmd, sizeof cmd, "%s quant %s -o %s/x.dsq --recipe %s/g.json --calib %s/c.dsqcal", t_dsq(), m, dir, dir, dir);
        CHECK(t_run(cmd, &out) == 1);
        CHECKF(strstr(out, "calibration statistics have") || strstr(out, "no calibration statistics"), "%s", out);
        free(out);
    }
    CHECK(!t_file_exists(t_path(dir, "x.dsq")));
}

/* On the trained model, calibrated GPTQ for the routed experts lowers the
 * KL divergence from the original below round-to-nearest's. */
TEST(test_calib_gptq_beats_rtn_on_tiny) {
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models absent");
    const char *dir = t_tmpdir();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "printf '{\"name\":\"g\",\"default\":\"fp8-block\",\"rules\":[{\"roles\":[\"routed_experts\"],"
             "\"scheme\":\"int4-g128-sym\",\"method\":\"gptq\",\"act_order\":true}]}' > %s/g.json && "
             "%s calib %s --text %s/calib.txt --samples 8 -o %s/c.dsqcal --recipe %s/g.json >/dev/null && "
             "%s quant %s -o %s/g.dsq --recipe %s/g.json --calib %s/c.dsqcal --no-error >/dev/null && "
             "%s quant %s -o %s/r.dsq --preset int4-experts --no-error >/dev/null && "
             "%s verify %s %s/g.dsq --tokens %s/eval.tokens.json --max-windows 6 --no-experts --json %s/g.json.v >/dev/null && "
             "%s verify %s %s/r.dsq --tokens %s/eval.tokens.json --max-windows 6 --no-experts --json %s/r.json.v >/dev/null && "
             "grep -o '\"kl_mean\":[^,]*' %s/g.json.v %s/r.json.v",
             dir, t_dsq(), m, m, dir, dir, t_dsq(), m, dir, dir, dir, t_dsq(), m, dir, t_dsq(), m, dir, m, dir,
             t_dsq(), m, dir, m, dir, dir, dir);
    CHECK(t_run(cmd, &out) == 0);
    char *a = strstr(out, "kl_mean\":"), *b = a ? strstr(a + 1, "kl_mean\":") : NULL;
    CHECKF(a && b, "%s", out);
    double kg = atof(a + 9), kr = atof(b + 9);
    fprintf(stderr, "  KL gptq %.3e rtn %.3e (ratio %.2f)\n", kg, kr, kg / kr);
    CHECKF(kg < 0.8 * kr, "gptq KL %.3e not clearly below rtn %.3e", kg, kr);
    free(out);
}

/* ---- dsq calib --quant-out ----------------------------------------------- */

/* Two containers hold the same tensors with the same bytes: every array of
 * every tensor (and expert), the recipe notes, the side files, the config. */
static void same_containers(const char *pa, const char *pb) {
    dsq_ctr *a, *b;
    dsq_err err = {0};
    CHECKF(dsq_ctr_open(&a, pa, &err) == 0, "%s", err.msg);
    CHECKF(dsq_ctr_open(&b, pb, &err) == 0, "%s", err.msg);
    CHECK(dsq_ctr_verify(a, NULL, &err) == 0 && dsq_ctr_verify(b, NULL, &err) == 0);
    CHECK(dsq_ctr_n_tensors(a) == dsq_ctr_n_tensors(b));
    for (int i = 0; i < dsq_ctr_n_tensors(a); i++) {
        const dsq_ctensor *ta = dsq_ctr_tensor(a, i);
        int j = dsq_ctr_find(b, ta->name);
        CHECKF(j >= 0, "%s missing", ta->name);
        const dsq_ctensor *tb = dsq_ctr_tensor(b, j);
        CHECKF(ta->scheme == tb->scheme && ta->experts == tb->experts && ta->rows == tb->rows && ta->cols == tb->cols &&
               !strcmp(ta->recipe, tb->recipe), "%s: %s vs %s", ta->name, ta->recipe, tb->recipe);
        dsq_qsizes z;
        CHECK(dsq_q_sizes(ta->scheme, ta->rows, ta->cols, &z, &err) == 0);
        for (int e = 0; e < (ta->experts ? ta->experts : 1); e++) {
            dsq_qmat qa, qb;
            CHECK(dsq_ctr_qmat(a, i, e, &qa, &err) == 0 && dsq_ctr_qmat(b, j, e, &qb, &err) == 0);
            CHECKF(!memcmp(qa.data, qb.data, z.data), "%s expert %d: data differs", ta->name, e);
            CHECKF(!z.scale || !memcmp(qa.scale, qb.scale, z.scale), "%s expert %d: scales differ", ta->name, e);
            CHECKF(!z.zero || !memcmp(qa.zero, qb.zero, z.zero), "%s expert %d: zeros differ", ta->name, e);
            const void *ca = dsq_ctr_colscale(a, i, e), *cb = dsq_ctr_colscale(b, j, e);
            CHECKF(!ca == !cb && (!ca || !memcmp(ca, cb, (size_t)ta->cols * 4)), "%s expert %d: colscale differs", ta->name, e);
        }
    }
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (int k = 0; k < 3; k++) {
        char *fa = NULL, *fb = NULL;
        size_t la = 0, lb = 0;
        int ra = dsq_ctr_file(a, side[k], &fa, &la, NULL), rb = dsq_ctr_file(b, side[k], &fb, &lb, NULL);
        CHECKF(ra == rb && la == lb && (!fa || !memcmp(fa, fb, la)), "side file %s differs", side[k]);
        free(fa);
        free(fb);
    }
    cJSON *ma = cJSON_Parse(dsq_ctr_meta(a)), *mb = cJSON_Parse(dsq_ctr_meta(b));
    static const char *const keys[] = {"config", "config_json", "recipe", "stats"};
    for (int k = 0; k < 4; k++)
        CHECKF(cJSON_Compare(cJSON_GetObjectItem(ma, keys[k]), cJSON_GetObjectItem(mb, keys[k]), 1), "metadata '%s' differs", keys[k]);
    CHECK(cJSON_GetObjectItem(mb, "provenance") && cJSON_GetObjectItem(mb, "calibration"));
    cJSON_Delete(ma);
    cJSON_Delete(mb);
    dsq_ctr_close(a);
    dsq_ctr_close(b);
}

/* calib -o CAL then quant --calib CAL, against calib --quant-out in one pass */
static void quant_out_vs_two_steps(const char *model, const char *src_opts, const char *recipe, const char *tag) {
    const char *dir = t_tmpdir();
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s calib %s %s --recipe %s -o %s/%s.dsqcal --quant-out %s/%s.one.dsq --threads 2 && "
             "%s quant %s --recipe %s --calib %s/%s.dsqcal -o %s/%s.two.dsq --threads 2 --no-error >/dev/null && "
             "%s check %s/%s.one.dsq",
             t_dsq(), model, src_opts, recipe, dir, tag, dir, tag, t_dsq(), model, recipe, dir, tag, dir, tag, t_dsq(), dir, tag);
    int rc = t_run(cmd, &out);
    CHECKF(rc == 0, "%s", out);
    CHECKF(strstr(out, ": ok ("), "%s", out);
    free(out);
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/%s.two.dsq", dir, tag);
    snprintf(b, sizeof b, "%s/%s.one.dsq", dir, tag);
    same_containers(a, b);
}

TEST(test_calib_quant_out_matches_quant) {
    const char *d = t_path(t_tmpdir(), "m");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    /* every method at once: gptq (with act-order and clip search), awq,
     * mse with statistics, mse without (head), and the MTP layer, which
     * calibration never sees */
    const char *rf = t_path(t_tmpdir(), "mix.json");
    static const char recipe[] =
        "{\"name\":\"mix\",\"default\":\"fp8-block\",\"rules\":["
            "{\"roles\":[\"routed_experts\",\"attention\"],\"scheme\":\"int4-g32-sym\",\"method\":\"gptq\",\"act_order\":true,\"clip_steps\":6,\"refine\":1,\"ref_target\":0.5},"
            "{\"roles\":[\"dense_ffn\"],\"scheme\":\"int4-g32-asym\",\"method\":\"awq\",\"grid\":6},"
            "{\"roles\":[\"shared_experts\"],\"scheme\":\"int4-g32-sym\",\"method\":\"mse\",\"clip_steps\":6},"
            "{\"roles\":[\"head\"],\"scheme\":\"int8-channel\",\"method\":\"mse\",\"clip_steps\":6}]}\n";
    CHECK(t_write_file(rf, recipe, sizeof recipe - 1) == 0);
    quant_out_vs_two_steps(d, "--random-tokens 200 --ctx 50", rf, "micro");
    const char *m = t_shared_model("tiny-v32");
    if (!m) SKIP("../shared/models absent (generated model checked)");
    if (!t_file_exists("tools/recipes/int4-gptq.json")) SKIP("no tools/recipes (run from the source tree)");
    /* the shipped recipes on the trained model, few windows */
    char opts[2048], rp[1024];
    snprintf(opts, sizeof opts, "--text %s/calib.txt --samples 2 --ctx 128", m);
    static const char *const recipes[] = {"int4-gptq", "int4-awq"};
    for (int k = 0; k < 2; k++) {
        snprintf(rp, sizeof rp, "tools/recipes/%s.json", recipes[k]);
        quant_out_vs_two_steps(m, opts, rp, recipes[k]);
    }
}

/* AWQ scales are folded into the norm before each group of awq weights:
 * those weights carry no colscale, the norm is divided and the router
 * multiplied by the group's scales (kept in the .dsqcal), exactly in f32;
 * o_proj and down_proj, with no norm before them, keep their colscale. */
TEST(test_calib_awq_folded) {
    const char *d = t_path(t_tmpdir(), "mf");
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    const char *rf = t_path(t_tmpdir(), "awq.json");
    static const char recipe[] =
        "{\"name\":\"awq\",\"default\":\"int4-g32-sym\",\"rules\":[{\"roles\":[\"attention\",\"indexer.wq_b\",\"indexer.wk\","
            "\"dense_ffn\",\"shared_experts\",\"routed_experts\"],\"scheme\":\"int4-g32-sym\",\"method\":\"awq\",\"grid\":8}]}\n";
    CHECK(t_write_file(rf, recipe, sizeof recipe - 1) == 0);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s calib %s --random-tokens 200 --ctx 50 --recipe %s -o %s/f.dsqcal --quant-out %s/f.dsq --threads 2",
             t_dsq(), d, rf, t_tmpdir(), t_tmpdir());
    CHECKF(t_run(cmd, &out) == 0, "%s", out);
    free(out);
    dsq_ctr *c;
    dsq_cstats *cs;
    dsq_src *m;
    dsq_weights mw;
    dsq_err err = {0};
    CHECKF(dsq_ctr_open(&c, t_path(t_tmpdir(), "f.dsq"), &err) == 0, "%s", err.msg);
    CHECKF(dsq_cstats_load(&cs, t_path(t_tmpdir(), "f.dsqcal"), &err) == 0, "%s", err.msg);
    CHECK(dsq_model_open(&m, &mw, d, &err) == 0);
    static const struct { const char *name; int colscale; } w[] = {
        {"model.layers.0.self_attn.q_a_proj.weight", 0}, {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 0},
        {"model.layers.0.self_attn.q_b_proj.weight", 0}, {"model.layers.0.self_attn.kv_b_proj.weight", 0},
        {"model.layers.0.self_attn.indexer.wq_b.weight", 0}, {"model.layers.0.self_attn.indexer.wk.weight", 0},
        {"model.layers.0.self_attn.o_proj.weight", 1}, {"model.layers.0.mlp.gate_proj.weight", 0},
        {"model.layers.0.mlp.up_proj.weight", 0}, {"model.layers.0.mlp.down_proj.weight", 1},
        {"model.layers.1.mlp.shared_experts.gate_proj.weight", 0}, {"model.layers.1.mlp.shared_experts.down_proj.weight", 1},
        {"model.layers.1.mlp.experts.up_proj.weight", 0}, {"model.layers.1.mlp.experts.down_proj.weight", 1},
    };
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
        int i = dsq_ctr_find(c, w[k].name);
        CHECKF(i >= 0, "%s", w[k].name);
        if (i >= 0) CHECKF(!dsq_ctr_colscale(c, i, 0) == !w[k].colscale, "%s: colscale %s", w[k].name, w[k].colscale ? "missing" : "present");
    }
    /* norms and router against the source and the stored scales */
    static const struct { const char *norm, *rec; int mul; } g[] = {
        {"model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_a_proj.weight", 0},
        {"model.layers.0.self_attn.q_a_layernorm.weight", "model.layers.0.self_attn.q_b_proj.weight", 0},
        {"model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.shared_experts.gate_proj.weight", 0},
        {"model.layers.1.mlp.gate.weight", "model.layers.1.mlp.shared_experts.gate_proj.weight", 1},
    };
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        const dsq_cstat *s = dsq_cstats_find(cs, g[k].rec);
        CHECKF(s && s->fold, "%s: no folded scales", g[k].rec);
        int i = dsq_ctr_find(c, g[k].norm), id = mw.find(mw.ctx, g[k].norm);
        CHECK(i >= 0 && id >= 0);
        if (!s || !s->fold || i < 0 || id < 0) continue;
        const dsq_ctensor *t = dsq_ctr_tensor(c, i);
        CHECK(t->scheme == DSQ_Q_F32 && t->cols == s->cols);
        int64_t n = t->rows * t->cols;
        float *src = malloc(sizeof *src * (size_t)n);
        CHECK(mw.rows_f32(mw.ctx, id, 0, t->rows, src, &err) == 0);
        dsq_qmat q;
        CHECK(dsq_ctr_qmat(c, i, 0, &q, &err) == 0);
        int bad = 0, unit = 1;
        for (int64_t j = 0; j < n; j++) {
            float want = g[k].mul ? src[j] * s->fold[j % t->cols] : src[j] / s->fold[j % t->cols];
            bad += dsq_lef32((const uint8_t *)q.data + 4 * j) != want;
            unit &= s->fold[j % t->cols] == 1.0f;
        }
        CHECKF(!bad, "%s: %d values differ from the folded source", g[k].norm, bad);
        if (unit) fprintf(stderr, "  %s: alpha 0 chosen (unit scales)\n", g[k].norm);
        free(src);
    }
    dsq_src_close(m);
    dsq_cstats_free(cs);
    dsq_ctr_close(c);
}

/* A bad or existing --quant-out path fails before calibration starts and
 * leaves nothing behind, nor does it leave the .dsqcal; --force replaces. */
TEST(test_calib_quant_out_bad_path) {
    const char *d = t_path(t_tmpdir(), "m"), *dir = t_tmpdir();
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    char cmd[4096], *out = NULL;
    const char *base = "%s calib %s --random-tokens 120 --ctx 40 --preset int4 -o %s/c.dsqcal --quant-out %s";
    char qo[1024];
    snprintf(qo, sizeof qo, "%s/no/such/dir/q.dsq", dir);
    snprintf(cmd, sizeof cmd, base, t_dsq(), d, dir, qo);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "q.dsq") && strstr(out, "dsq calib:"), "%s", out);
    free(out);
    /* an existing file without --force: untouched */
    snprintf(qo, sizeof qo, "%s/q.dsq", dir);
    CHECK(t_write_file(qo, "keep", 4) == 0);
    snprintf(cmd, sizeof cmd, base, t_dsq(), d, dir, qo);
    CHECK(t_run(cmd, &out) == 1);
    CHECKF(strstr(out, "already exists (use --force"), "%s", out);
    free(out);
    size_t n;
    char *b = t_read_file(qo, &n);
    CHECK(b && n == 4 && !memcmp(b, "keep", 4));
    free(b);
    CHECK(!t_file_exists(t_path(dir, "c.dsqcal")));
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp || true", dir);
    t_run(cmd, &out);
    CHECKF(atoi(out) == 0, "temporary file left behind: %s", out);
    free(out);
    /* the same path twice is a usage error */
    snprintf(cmd, sizeof cmd, "%s calib %s --random-tokens 120 --ctx 40 -o %s/x.dsq --quant-out %s/x.dsq", t_dsq(), d, dir, dir);
    CHECK(t_run(cmd, NULL) == 2);
    /* neither output: usage */
    snprintf(cmd, sizeof cmd, "%s calib %s --random-tokens 120 --ctx 40", t_dsq(), d);
    CHECK(t_run(cmd, NULL) == 2);
    /* --force replaces it with a valid container */
    snprintf(cmd, sizeof cmd, "%s calib %s --random-tokens 120 --ctx 40 --preset int4 --quant-out %s --force >/dev/null && %s check %s",
             t_dsq(), d, qo, t_dsq(), qo);
    CHECK(t_run(cmd, &out) == 0);
    CHECKF(strstr(out, ": ok ("), "%s", out);
    free(out);
    CHECK(!t_file_exists(t_path(dir, "c.dsqcal")));
}

/* Killed part-way (SIGTERM after some tensors are written), calibration
 * leaves neither output nor a temporary file. */
TEST(test_calib_quant_out_interrupted) {
    const char *d = t_path(t_tmpdir(), "m"), *dir = t_tmpdir();
    CHECK(tu_gen_micro(d, 0, 2) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        extern void cli_install_signals(void);
        cli_install_signals();
        dsq_recipe r;
        dsq_err err = {0};
        dsq_src *m;
        dsq_weights mw;
        dsq_quantjob *q = NULL;
        dsq_cstats_writer *cw = NULL;
        if (dsq_recipe_preset(&r, "int4", &err) || dsq_model_open(&m, &mw, d, &err)) _exit(3);
        dsq_pipe_opts po = {0};
        po.src = d;
        po.out = t_path(dir, "q.dsq");
        po.recipe = &r;
        po.threads = 1;
        if (dsq_quantjob_open(&q, &po, m, &err) || dsq_cstats_writer_open(&cw, t_path(dir, "c.dsqcal"), 0, &err) ||
            dsq_quantjob_fill(q, -1, &err))
            _exit(4);
        raise(SIGTERM);
        _exit(0); /* not reached */
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child status %d", st);
    CHECK(!t_file_exists(t_path(dir, "q.dsq")) && !t_file_exists(t_path(dir, "c.dsqcal")));
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c tmp || true", dir);
    t_run(cmd, &out);
    CHECKF(atoi(out) == 0, "temporary file left behind after SIGTERM");
    free(out);
}
