/*
 * cmd_calib.c -- `dsq calib`: activation statistics for calibrated
 * quantization, and optionally the quantized model written in the same pass
 * (see pipeline/calib_run.h and docs/CALIB.md).
 */
#include "calib/stats.h"
#include "pipeline/calib_run.h"
#include "convert/cli.h"
#include "formats/source.h"
#include "verify/weights.h"
#include "pipeline/pipeline.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f, "usage: dsq calib SRC (--text FILE | --tokens FILE.json | --random-tokens N)\n"
               "                 (-o CAL.dsqcal | --quant-out OUT.dsq|OUT.gguf | both)\n"
               "                 [--ctx N] [--samples N] [--recipe R.json | --preset P] [--min-tokens N]\n"
               "                 [--hessian] [--act-fp8] [--threads N] [--force] [--json]\n\n"
               "Run the reference forward pass over calibration text layer by layer, each layer fed by the\n"
               "already-quantized layers before it, and record per input channel of every linear layer\n"
               "the mean of x^2 and |x|, max |x|, token counts and (for gptq rules) the Hessian X^T X.\n"
               "Routed experts count only the tokens routed to them; experts with fewer than --min-tokens\n"
               "(default 16) use statistics pooled over their layer's experts.  Statistics are kept only\n"
               "while their layer is being quantized, so memory stays near one layer's working set.\n"
               "gptq rules with ref_target also run the unquantized model beside the quantized one\n"
               "(cross moments E[r x^T]); groups of awq weights reading one norm get shared scales\n"
               "folded into that norm.  Methods and their options: docs/CALIB.md.\n\n"
               "  -o CAL.dsqcal  write the statistics, for `dsq quant --calib`\n"
               "  --quant-out OUT.dsq|OUT.gguf|DIR/  write the quantized model itself, layer by layer as\n"
               "                 calibration goes: the same file `dsq quant SRC --recipe R --calib CAL.dsqcal`\n"
               "                 (or --preset P) would write, without storing the statistics; DIR/ is a\n"
               "                 compressed-tensors folder\n"
               "  --to F         the --quant-out format: dsq, gguf, compressed-tensors or hf (DeepSeek's\n"
               "                 FP8 layout: a recipe of fp8-block-ue8m0 rules; see dsq export --help)\n"
               "  --ctx N        tokens per window (default 256, capped by the model)\n"
               "  --samples N    windows to use (default: all the text gives)\n"
               "  --preset/--recipe  how layers are quantized while calibrating: a preset in its\n"
               "                 calibrated form (default int4-experts: GPTQ on the routed experts; int4,\n"
               "                 int8, fp8 and the GGUF presets q4_k_m, iq4_xs, ... too), so the statistics\n"
               "                 are exactly what dsq quant --preset P --calib needs;\n"
               "                 use the same one for dsq quant\n"
               "  --hessian      keep Hessians for every linear layer, not only gptq ones\n"
               "  --method M     with a GGUF preset (q4_k_m, iq4_xs, ...): gptq (default: GPTQ on the\n"
               "                 block grids, a Hessian per routed expert) or mse (importance-weighted\n"
               "                 block search, per-channel means only: far less memory); use the same\n"
               "                 with dsq quant\n"
               "  --force        overwrite existing outputs\n");
    return cli_usage_end(to, f);
}

int cmd_calib(int argc, char **argv) {
    const char *src = NULL, *out = NULL, *qout_path = NULL, *preset = NULL, *recipe = NULL, *method = "gptq";
    const char *qout_to = NULL;
    cli_window win = {0};
    dsq_calib_opts o = {0};
    int force = 0, json = 0;
    long samples = 0, min_tokens = 16;
    o.hessian = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = cli_window_opt("calib", argc, argv, &i, &win);
        if (k < 0) return 2;
        if (k) continue;
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage(stdout);
        else if (cli_is(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (cli_is(a, "--quant-out") && i + 1 < argc) qout_path = argv[++i];
        else if (cli_is(a, "--to") && i + 1 < argc) qout_to = argv[++i];
        else if (cli_is(a, "--samples") && i + 1 < argc) {
            if ((samples = cli_parse_long(argv[++i], 1, 1L << 30)) < 0) goto bad_num;
        } else if (cli_is(a, "--min-tokens") && i + 1 < argc) {
            if ((min_tokens = cli_parse_long(argv[++i], 0, 1L << 40)) < 0) goto bad_num;
        } else if (cli_is(a, "--preset") && i + 1 < argc) preset = argv[++i];
        else if (cli_is(a, "--method") && i + 1 < argc) method = argv[++i];
        else if (cli_is(a, "--recipe") && i + 1 < argc) recipe = argv[++i];
        else if (cli_is(a, "--hessian")) o.hessian = 1;
        else if (cli_is(a, "--act-fp8")) o.act_fp8 = 1;
        else if (cli_is(a, "--force")) force = 1;
        else if (cli_is(a, "--json")) json = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "dsq calib: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        } else if (!src) src = a;
        else return usage(stderr);
        continue;
    bad_num:
        fprintf(stderr, "dsq calib: bad value for %s: '%s'\n", a, argv[i]);
        return 2;
    }
    if (!src || (!out && !qout_path) || !cli_window_source_ok(&win)) return usage(stderr);
    if (strcmp(method, "gptq") && strcmp(method, "mse")) {
        fprintf(stderr, "dsq calib: --method must be gptq or mse\n");
        return 2;
    }
    if (preset && recipe) {
        fprintf(stderr, "dsq calib: give at most one of --preset and --recipe\n");
        return 2;
    }
    if (out && qout_path && !strcmp(out, qout_path)) {
        fprintf(stderr, "dsq calib: -o and --quant-out name the same file\n");
        return 2;
    }
    o.ctx = (int)win.ctx;
    o.threads = (int)win.threads;
    o.samples = (int)samples;
    o.min_tokens = min_tokens;
    dsq_err err = {0};
    dsq_recipe r;
    /* one open of the model serves the recipe (GGUF presets depend on the
     * layer count), the tokens, the calibration, the config and the tensors
     * the quantized output copies */
    dsq_src *m;
    if (dsq_src_open(&m, src, 0, &err)) return cli_err("calib", &err);
    int rc = recipe ? dsq_recipe_load(&r, recipe, &err)
           : preset && dsq_recipe_is_gguf_preset(preset) ? dsq_recipe_gguf_preset(&r, preset, m, method, &err)
           : dsq_recipe_preset_calibrated(&r, preset ? preset : "int4-experts", &err);
    if (rc) {
        dsq_src_close(m);
        return cli_err("calib", &err);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    dsq_cstats_writer *cw = NULL;
    dsq_quantjob *qo = NULL;
    char *ms = NULL, *qms = NULL;
    cJSON *meta = NULL;
    dsq_calib_report rep;
    dsq_weights probe;
    if ((rc = dsq_weights_from_src(&probe, m, &err))) goto out; /* random access, before any work */
    if ((rc = cli_window_tokens(&win, src, dsq_src_config(m), &ids, &n, &err))) goto out;
    /* outputs are opened (as temporary files) before the long part, so a bad
     * path or an existing file fails at once; a signal removes them */
    cli_install_signals();
    if (out && (rc = dsq_cstats_writer_open(&cw, out, force, &err))) goto out;
    if (qout_path) {
        dsq_pipe_opts po = {0};
        po.src = src;
        po.out = qout_path;
        po.out_format = cli_out_format("calib", qout_to, qout_path);
        if (po.out_format < 0) return 2;
        po.recipe = &r;
        po.force = force;
        po.threads = (int)win.threads;
        po.argc = argc;
        po.argv = argv;
        if ((rc = dsq_quantjob_open(&qo, &po, m, &err))) goto out;
    }
    cli_progress pr;
    cli_progress_init(&pr, 0);
    o.src = m;
    o.recipe = &r;
    o.tokens = ids;
    o.n_tokens = n;
    o.on_progress = cli_progress_draw;
    o.on_progress_arg = &pr;
    o.cal_out = cw;
    o.quant_out = qo;
    if ((rc = dsq_calib_run(&o, NULL, &rep, &err))) goto out;
    meta = cJSON_CreateObject();
    if (!meta) { rc = dsq_fail(&err, DSQ_E_NOMEM, "out of memory"); goto out; }
    cJSON_AddStringToObject(meta, "model", dsq_basename(src));
    cJSON_AddStringToObject(meta, "recipe", r.name);
    cJSON_AddNumberToObject(meta, "windows", rep.windows);
    cJSON_AddNumberToObject(meta, "ctx", rep.ctx);
    cJSON_AddNumberToObject(meta, "tokens", (double)rep.tokens);
    cJSON_AddNumberToObject(meta, "min_tokens", (double)o.min_tokens);
    cJSON *fb = cJSON_AddArrayToObject(meta, "fallback_experts");
    for (int i = 0; i < rep.n_fallback && i < 256; i++) cJSON_AddItemToArray(fb, cJSON_CreateString(rep.fallback[i]));
    if (cw) {
        /* the model's config travels in the file so quant can check it matches */
        ms = cJSON_PrintUnformatted(meta);
        rc = ms ? dsq_cstats_writer_finish(cw, dsq_src_config_json(m, NULL), ms, &err)
                : dsq_fail(&err, DSQ_E_NOMEM, "out of memory");
        cw = NULL;
        if (rc) goto out;
    }
    if (qo) {
        /* the container says how its statistics were gathered */
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToObject(w, "calibration", cJSON_Duplicate(meta, 1));
        qms = cJSON_PrintUnformatted(w);
        cJSON_Delete(w);
        rc = qms ? dsq_quantjob_finish(qo, qms, &err) : dsq_fail(&err, DSQ_E_NOMEM, "out of memory");
        qo = NULL;
        if (rc) goto out;
    }
    if (json) {
        if (out) cJSON_AddStringToObject(meta, "output", out);
        if (qout_path) cJSON_AddStringToObject(meta, "quant_output", qout_path);
        cJSON_AddNumberToObject(meta, "seconds", rep.seconds);
        cJSON_AddNumberToObject(meta, "tokens_per_second", rep.seconds > 0 ? (double)rep.tokens / rep.seconds : 0);
        cJSON *ls = cJSON_AddArrayToObject(meta, "layer_seconds");
        for (int l = 0; l < rep.layers && l < 512; l++) cJSON_AddItemToArray(ls, cJSON_CreateNumber(rep.layer_seconds[l]));
        cJSON_AddNumberToObject(meta, "fallback_count", rep.n_fallback);
        char *s = cJSON_Print(meta);
        if (s) puts(s);
        free(s);
    } else {
        printf("calibrated %s: %d windows x %d tokens (%lld tokens) in %.2f s, %.0f tokens/s\n", src, rep.windows,
               rep.ctx, (long long)rep.tokens, rep.seconds, rep.seconds > 0 ? (double)rep.tokens / rep.seconds : 0);
        printf("seconds per layer:");
        for (int l = 0; l < rep.layers && l < 512; l++) printf(" %.2f", rep.layer_seconds[l]);
        /* pooled experts, counted per layer (a 671B model can have thousands) */
        const dsq_config *cc = dsq_src_config(m);
        int n_moe = 0;
        for (int l = 0; l < cc->n_layers; l++) n_moe += dsq_config_is_moe_layer(cc, l);
        long long n_exp = (long long)n_moe * cc->n_routed_experts;
        /* the records name experts' inputs (gate/up and down): count experts once */
        int per_layer[1024] = {0}, n_pooled = 0, ne = cc->n_routed_experts > 0 ? cc->n_routed_experts : 1;
        unsigned char *seen = dsq_calloc((size_t)cc->n_layers * (size_t)ne + 1, 1);
        for (int i = 0; seen && i < rep.n_fallback && i < 256; i++) {
            int l, e;
            if (sscanf(rep.fallback[i], "model.layers.%d.mlp.experts.%d.", &l, &e) != 2 || l < 0 || l >= cc->n_layers ||
                l >= 1024 || e < 0 || e >= ne || seen[(size_t)l * ne + e])
                continue;
            seen[(size_t)l * ne + e] = 1;
            per_layer[l]++;
            n_pooled++;
        }
        free(seen);
        printf("\n%d of %lld routed experts got fewer than %lld tokens and use pooled statistics", n_pooled, n_exp,
               (long long)o.min_tokens);
        const char *sep = n_pooled ? " (by layer:" : "";
        for (int l = 0; l < 1024; l++)
            if (per_layer[l]) {
                printf("%s %d: %d", sep, l, per_layer[l]);
                sep = ",";
            }
        printf("%s\n", n_pooled ? (rep.n_fallback > 256 ? "; counted over the first 256 records)" : ")") : "");
        if (rep.tokens < 4096 || (n_exp && 2LL * n_pooled > n_exp))
            fprintf(stderr, "dsq calib: warning: %lld tokens%s: the statistics are thin; calibrate on more text "
                    "(a few hundred thousand tokens for a large model)\n", (long long)rep.tokens,
                    n_exp && 2LL * n_pooled > n_exp ? ", most routed experts on pooled statistics" : "");
        if (out) printf("wrote %s\n", out);
        if (qout_path) printf("wrote %s\n", qout_path);
    }
out:
    dsq_cstats_writer_abort(cw);
    dsq_quantjob_abort(qo);
    cJSON_Delete(meta);
    free(ms);
    free(qms);
    free(ids);
    dsq_src_close(m);
    dsq_recipe_deinit(&r);
    return rc ? cli_err("calib", &err) : 0;
}
