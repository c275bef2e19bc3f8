/*
 * cmd_container.c -- the commands that write or read .dsq containers:
 *   dsq convert SRC -o OUT.dsq      lossless, streaming
 *   dsq quant   SRC -o OUT.dsq      recipe-driven quantization, with a report
 *   dsq check   FILE.dsq            structure and every checksum
 * plus `dsq inspect` on a container.
 */
#include "convert/cli.h"
#include "common.h"
#include "calib/stats.h"
#include "pipeline/pipeline.h"
#include "formats/container.h"
#include "formats/formats_int.h"
#include "formats/source.h"
#include "formats/writer.h"
#include "formats/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* On SIGINT / SIGTERM remove the temporary output, then die. */
static void on_signal(int sig) {
    dsq_afile_cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}
void cli_install_signals(void) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
}


/* ---- convert and quant ----------------------------------------------------- */
static int usage_convert(FILE *to, int quant) {
    FILE *f = cli_usage_begin(to);
    if (!quant)
        fprintf(f, "usage: dsq convert SRC -o OUT.dsq [--drop-mtp] [--threads N] [--force] [--quiet]\n"
                   "                   [--allow-nonfinite]\n\n"
                   "Store an upstream checkpoint (folder, .safetensors or .tar/.zip archive) losslessly in one\n"
                   ".dsq container: FP8 stays FP8 with its block scales, BF16/F16/F32 as stored; routed experts\n"
                   "of each projection are stacked into one [experts, out, in] tensor.  Streams tensor by\n"
                   "tensor; writes a temporary file and renames it, so OUT appears complete or not at all.\n\n"
                   "  -o OUT.dsq     output file\n"
                   "  --drop-mtp     leave the multi-token-prediction layer out\n"
                   "  --threads N    worker threads (default: all cores)\n"
                   "  --force        overwrite OUT if it exists\n"
                   "  --quiet        no progress line\n"
                   "  --allow-nonfinite  copy NaN / infinite weights unchanged (default: refuse the\n"
                   "                 model, naming the tensor and the first such element)\n");
    else
        fprintf(f, "usage: dsq quant SRC -o OUT.dsq|OUT.gguf|DIR/ (--preset P | --recipe FILE.json) [--calib FILE]\n"
                   "                 [--to F] [--shard-size S] [--threads N] [--drop-mtp] [--force] [--quiet]\n"
                   "                 [--json] [--verbose] [--report FILE] [--no-error]\n\n"
                   "Quantize a checkpoint, a .dsq container or a GGUF into a new model, streaming: a .dsq\n"
                   "container, a GGUF file (OUT.gguf) or a compressed-tensors folder for vLLM / SGLang (DIR/).\n\n"
                   "  --preset P       fp8          projections FP8 (block scales kept), routed experts\n"
                   "                                requantized per expert with per-channel FP8 scales\n"
                   "                   int4-experts routed experts int4 group 128, the rest fp8\n"
                   "                   int4         every projection int4 group 128\n"
                   "                   int8         every projection int8 per channel\n"
                   "                   Embedding and head stay bf16; norms, router and its bias f32.\n"
                   "                   GGUF (llama.cpp's file types and per-tensor policy, OUT.gguf):\n"
                   "                   q8_0 q6_k q5_k_m q4_k_m q4_0 iq4_xs iq4_nl q3_k_m q2_k; with --calib\n"
                   "                   every quantized tensor is calibrated, per routed expert\n"
                   "                   compressed-tensors (DIR/): w4a16 (int4 g128), w4a16-g32, w4a16-asym,\n"
                   "                   w8a16, fp8-block; int4-experts is experts W4A16 + FP8 blocks\n"
                   "  --method M       GGUF presets with --calib: gptq (default; GPTQ on the block grids)\n"
                   "                   or mse (importance-weighted block search); as given to dsq calib\n"
                   "  --recipe FILE    JSON recipe (see docs/RECIPES.md)\n"
                   "  --calib FILE     activation statistics from dsq calib (.dsqcal): a preset takes its\n"
                   "                   calibrated form (int4-experts, int4: GPTQ; int8: GPTQ; fp8: routed\n"
                   "                   experts' scales searched against the activations; GGUF presets: see\n"
                   "                   --method), a recipe its mse / gptq / awq rules (one without them is\n"
                   "                   an error); calibrate with the same preset or recipe\n"
                   "  --json           print the full report as JSON on stdout (default: a summary)\n"
                   "  --verbose        print every tensor's row, not only the summary\n"
                   "  --report FILE    write the full report to FILE too (JSON when it ends in .json)\n"
                   "  --no-error       skip measuring per-tensor weight error\n"
                   "  --to F           output format: dsq, gguf, compressed-tensors (ct) or hf (DeepSeek's FP8\n"
                   "                   layout); default from OUT's name (.gguf, a trailing /, else dsq)\n"
                   "  --shard-size S   folder outputs: bytes per safetensors shard (default 5G)\n"
                   "  --allow-nonfinite  copy NaN / infinite weights of tensors kept as stored\n"
                   "                   (default: refuse them; quantizing one is always refused)\n");
    return cli_usage_end(to, f);
}

static void report_json(const dsq_pipe_report *r, const char *out, FILE *f) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "output", out);
    cJSON_AddNumberToObject(o, "source_bytes", (double)r->src_bytes);
    cJSON_AddNumberToObject(o, "output_bytes", (double)r->out_bytes);
    cJSON_AddNumberToObject(o, "params", (double)r->params);
    cJSON_AddNumberToObject(o, "bits_per_weight", r->params ? 8.0 * (double)r->out_tensor_bytes / (double)r->params : 0);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON *roles = cJSON_AddObjectToObject(o, "roles");
    for (int k = 0; k < DSQ_R_COUNT; k++)
        if (r->role_params[k]) {
            cJSON *e = cJSON_AddObjectToObject(roles, dsq_role_name((dsq_role)k));
            cJSON_AddNumberToObject(e, "params", (double)r->role_params[k]);
            cJSON_AddNumberToObject(e, "bytes", (double)r->role_bytes[k]);
            cJSON_AddNumberToObject(e, "bits_per_weight", 8.0 * (double)r->role_bytes[k] / (double)r->role_params[k]);
        }
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (int i = 0; i < r->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", r->t[i].name);
        cJSON_AddStringToObject(e, "scheme", dsq_q_scheme(r->t[i].scheme)->name);
        if (r->t[i].fallback_from >= 0)
            cJSON_AddStringToObject(e, "fallback_from", dsq_q_scheme(r->t[i].fallback_from)->name);
        if (r->t[i].converted_from >= 0)
            cJSON_AddStringToObject(e, "converted_from", dsq_q_scheme(r->t[i].converted_from)->name);
        static const char *const how[] = {"quantized", "copied", "transcoded", "rerounded"};
        cJSON_AddStringToObject(e, "stored", how[r->t[i].stored & 3]);
        cJSON_AddNumberToObject(e, "params", (double)r->t[i].params);
        cJSON_AddNumberToObject(e, "bytes", (double)r->t[i].bytes);
        if (r->t[i].rel_err >= 0) {
            cJSON_AddNumberToObject(e, "rel_frobenius_error", r->t[i].rel_err);
            cJSON_AddNumberToObject(e, "max_abs_error", r->t[i].max_abs);
        }
        cJSON_AddItemToArray(ts, e);
    }
    char *s = cJSON_Print(o);
    if (s) fprintf(f, "%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static void report_table(const dsq_pipe_report *r, FILE *f) {
    fprintf(f, "%-52s %-18s %12s %8s %11s %11s\n", "tensor", "scheme", "params", "bpw", "rel_err", "max_abs");
    for (int i = 0; i < r->n; i++) {
        const dsq_pipe_tensor *t = &r->t[i];
        char re[32] = "-", ma[32] = "-";
        if (t->rel_err >= 0) {
            snprintf(re, sizeof re, "%.3e", t->rel_err);
            snprintf(ma, sizeof ma, "%.3e", t->max_abs);
        }
        fprintf(f, "%-52s %-18s %12lld %8.3f %11s %11s\n", t->name, dsq_q_scheme(t->scheme)->name,
               (long long)t->params, t->params ? 8.0 * (double)t->bytes / (double)t->params : 0, re, ma);
    }
    int n_fb = 0;
    for (int i = 0; i < r->n; i++) n_fb += r->t[i].fallback_from >= 0;
    if (n_fb) {
        fprintf(f, "\n%d tensor%s stored in a fallback type (rows not a multiple of the type's blocks):\n", n_fb, n_fb == 1 ? "" : "s");
        for (int i = 0; i < r->n; i++)
            if (r->t[i].fallback_from >= 0)
                fprintf(f, "  %-50s %s -> %s\n", r->t[i].name, dsq_q_scheme(r->t[i].fallback_from)->name,
                       dsq_q_scheme(r->t[i].scheme)->name);
    }
    int n_how[4] = {0};
    for (int i = 0; i < r->n; i++) n_how[r->t[i].stored & 3]++;
    if (n_how[DSQ_STORED_TRANSCODED] || n_how[DSQ_STORED_REROUNDED])
        fprintf(f, "\n%d tensors copied bit for bit, %d transcoded without changing a value, "
               "%d quantized%s\n", n_how[DSQ_STORED_COPIED], n_how[DSQ_STORED_TRANSCODED],
               n_how[DSQ_STORED_QUANTIZED] + n_how[DSQ_STORED_REROUNDED],
               n_how[DSQ_STORED_REROUNDED] ? " (some because a scale has no exact form in the output's scale type: re-rounded, rel_err above)" : "");
    fprintf(f, "\n%-22s %14s %14s %8s\n", "role", "params", "bytes", "bpw");
    for (int k = 0; k < DSQ_R_COUNT; k++)
        if (r->role_params[k])
            fprintf(f, "%-22s %14llu %14llu %8.3f\n", dsq_role_name((dsq_role)k), (unsigned long long)r->role_params[k],
                   (unsigned long long)r->role_bytes[k], 8.0 * (double)r->role_bytes[k] / (double)r->role_params[k]);
    fprintf(f, "\nsize %.2f MiB -> %.2f MiB (%.3f bits per weight over %lld parameters) in %.2f s\n",
           (double)r->src_bytes / 1048576.0, (double)r->out_bytes / 1048576.0,
           r->params ? 8.0 * (double)r->out_tensor_bytes / (double)r->params : 0, (long long)r->params, r->seconds);
}

/* The summary a terminal gets: totals, bits per weight by class and by
 * scheme, how tensors were stored, fallbacks by kind, the worst errors. */
static void report_summary(const dsq_pipe_report *r, const char *out, const char *full_hint) {
    uint64_t cp[DSQ_C_COUNT] = {0}, cb[DSQ_C_COUNT] = {0}, sp[DSQ_Q_COUNT] = {0}, sb[DSQ_Q_COUNT] = {0};
    int sn[DSQ_Q_COUNT] = {0}, n_how[4] = {0};
    for (int i = 0; i < r->n; i++) {
        const dsq_pipe_tensor *t = &r->t[i];
        dsq_class c = dsq_role_class(t->role);
        cp[c] += (uint64_t)t->params;
        cb[c] += t->bytes;
        sp[t->scheme] += (uint64_t)t->params;
        sb[t->scheme] += t->bytes;
        sn[t->scheme]++;
        n_how[t->stored & 3]++;
    }
    printf("%-18s %14s %14s %8s\n", "class", "params", "bytes", "bpw");
    for (int c = 0; c < DSQ_C_COUNT; c++)
        if (cp[c])
            printf("%-18s %14llu %14llu %8.3f\n", dsq_class_name((dsq_class)c), (unsigned long long)cp[c],
                   (unsigned long long)cb[c], 8.0 * (double)cb[c] / (double)cp[c]);
    printf("\n%-18s %8s %14s %8s\n", "scheme", "tensors", "params", "bpw");
    for (int k = 0; k < DSQ_Q_COUNT; k++)
        if (sn[k])
            printf("%-18s %8d %14llu %8.3f\n", dsq_q_scheme(k)->name, sn[k], (unsigned long long)sp[k],
                   sp[k] ? 8.0 * (double)sb[k] / (double)sp[k] : 0);
    printf("\nstored: %d copied bit for bit, %d transcoded without changing a value, %d quantized", n_how[DSQ_STORED_COPIED],
           n_how[DSQ_STORED_TRANSCODED], n_how[DSQ_STORED_QUANTIZED] + n_how[DSQ_STORED_REROUNDED]);
    if (n_how[DSQ_STORED_REROUNDED])
        printf(" (%d because a scale has no exact form in the output's scale type)", n_how[DSQ_STORED_REROUNDED]);
    printf("\n");
    /* schemes the output format has no form of, by (asked, stored) pair */
    {
        int cf[16], ct[16], cn[16], nc = 0;
        for (int i = 0; i < r->n; i++) {
            const dsq_pipe_tensor *t = &r->t[i];
            if (t->converted_from < 0) continue;
            int k = 0;
            while (k < nc && (cf[k] != t->converted_from || ct[k] != t->scheme)) k++;
            if (k == nc && nc < 16) cf[nc] = t->converted_from, ct[nc] = t->scheme, cn[nc++] = 0;
            if (k < nc) cn[k]++;
        }
        if (nc) {
            printf("converted to what the output format holds:");
            for (int k = 0; k < nc; k++)
                printf("%s %s -> %s x%d", k ? "," : "", dsq_q_scheme(cf[k])->name, dsq_q_scheme(ct[k])->name, cn[k]);
            printf("\n");
        }
    }
    /* fallbacks, by (asked, stored) pair */
    int fb_from[16], fb_to[16], fb_n[16], nfb = 0, n_fb = 0;
    for (int i = 0; i < r->n; i++) {
        const dsq_pipe_tensor *t = &r->t[i];
        if (t->fallback_from < 0) continue;
        n_fb++;
        int k = 0;
        while (k < nfb && (fb_from[k] != t->fallback_from || fb_to[k] != t->scheme)) k++;
        if (k == nfb && nfb < 16) {
            fb_from[nfb] = t->fallback_from;
            fb_to[nfb] = t->scheme;
            fb_n[nfb++] = 0;
        }
        if (k < nfb) fb_n[k]++;
    }
    if (n_fb) {
        printf("fallbacks (rows not a multiple of the type's block): %d tensor%s:", n_fb, n_fb == 1 ? "" : "s");
        for (int k = 0; k < nfb; k++)
            printf("%s %s -> %s x%d", k ? "," : "", dsq_q_scheme(fb_from[k])->name, dsq_q_scheme(fb_to[k])->name, fb_n[k]);
        printf("\n");
    }
    /* the five largest relative weight errors */
    int worst[5], nw = 0;
    for (int i = 0; i < r->n; i++) {
        if (!(r->t[i].rel_err > 0)) continue;
        int k;
        if (nw < 5) k = nw++;
        else if (r->t[i].rel_err > r->t[worst[4]].rel_err) k = 4;
        else continue;
        worst[k] = i;
        for (; k > 0 && r->t[worst[k]].rel_err > r->t[worst[k - 1]].rel_err; k--) {
            int x = worst[k];
            worst[k] = worst[k - 1];
            worst[k - 1] = x;
        }
    }
    if (nw) {
        printf("largest relative weight errors:\n");
        for (int k = 0; k < nw; k++)
            printf("  %-52s %-10s %.3e\n", r->t[worst[k]].name, dsq_q_scheme(r->t[worst[k]].scheme)->name,
                   r->t[worst[k]].rel_err);
    }
    printf("\nwrote %s: %d tensors, %.2f MiB -> %.2f MiB (%.3f bits per weight over %lld parameters) in %.2f s\n", out, r->n,
           (double)r->src_bytes / 1048576.0, (double)r->out_bytes / 1048576.0,
           r->params ? 8.0 * (double)r->out_tensor_bytes / (double)r->params : 0, (long long)r->params, r->seconds);
    if (full_hint) printf("%s\n", full_hint);
}

int cli_check_report_path(const char *cmd, const char *path, int *created) {
    *created = 0;
    if (!strcmp(path, "-")) return 0;
    int existed = access(path, F_OK) == 0;
    FILE *f = fopen(path, "a"); /* writable now, so hours of work are not lost at the end */
    if (!f) {
        fprintf(stderr, "dsq %s: %s: cannot write the report: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    fclose(f);
    *created = !existed;
    return 0;
}

int cli_print_pipe_report(const dsq_pipe_report *r, int mode, const char *out, const char *report_path) {
    if (report_path) {
        /* the full report into a file (JSON when its name ends in .json) */
        size_t n = strlen(report_path);
        int js = n > 5 && !strcmp(report_path + n - 5, ".json");
        FILE *f = strcmp(report_path, "-") ? fopen(report_path, "w") : stdout;
        if (!f) {
            fprintf(stderr, "dsq: %s: cannot write the report\n", report_path);
            return 1;
        }
        if (js) report_json(r, out, f);
        else report_table(r, f);
        if (f != stdout && fclose(f)) {
            fprintf(stderr, "dsq: %s: cannot write the report\n", report_path);
            return 1;
        }
    }
    if (mode == DSQ_REPORT_JSON) report_json(r, out, stdout);
    else if (mode == DSQ_REPORT_FULL) report_table(r, stdout);
    else report_summary(r, out, report_path ? NULL : "(every tensor: --verbose, or --report FILE[.json])");
    return 0;
}

static int run_pipe(int argc, char **argv, int quant) {
    const char *cmd = quant ? "quant" : "convert";
    dsq_pipe_opts o = {0};
    const char *preset = NULL, *recipe_file = NULL, *calib = NULL, *method = "gptq", *to = NULL;
    int quiet = 0, json = 0, no_error = 0, verbose = 0;
    const char *report = NULL;
    o.argc = argc;
    o.argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage_convert(stdout, quant);
        else if (cli_is(a, "-o") && i + 1 < argc) o.out = argv[++i];
        else if (cli_is(a, "--drop-mtp")) o.drop_mtp = 1;
        else if (cli_is(a, "--force")) o.force = 1;
        else if (cli_is(a, "--allow-nonfinite")) o.allow_nonfinite = 1;
        else if (cli_is(a, "--quiet")) quiet = 1;
        else if (cli_is(a, "--threads") && i + 1 < argc) {
            long t = cli_parse_long(argv[++i], 1, 4096);
            if (t < 0) {
                fprintf(stderr, "dsq %s: --threads takes a number from 1 to 4096\n", cmd);
                return 2;
            }
            o.threads = (int)t;
        }
        else if (quant && cli_is(a, "--preset") && i + 1 < argc) preset = argv[++i];
        else if (quant && cli_is(a, "--recipe") && i + 1 < argc) recipe_file = argv[++i];
        else if (quant && cli_is(a, "--calib") && i + 1 < argc) calib = argv[++i];
        else if (quant && cli_is(a, "--method") && i + 1 < argc) method = argv[++i];
        else if (quant && cli_is(a, "--json")) json = 1;
        else if (quant && cli_is(a, "--no-error")) no_error = 1;
        else if (quant && cli_is(a, "--verbose")) verbose = 1;
        else if (quant && cli_is(a, "--report") && i + 1 < argc) report = argv[++i];
        else if (cli_is(a, "--to") && i + 1 < argc) to = argv[++i];
        else if (cli_is(a, "--shard-size") && i + 1 < argc) {
            if (cli_shard_size(cmd, argv[++i], &o.shard_size)) return 2;
        }
        else if (a[0] == '-') {
            fprintf(stderr, "dsq %s: unknown option '%s'\n", cmd, a);
            return usage_convert(stderr, quant);
        } else if (!o.src) o.src = a;
        else return usage_convert(stderr, quant);
    }
    if (!o.src || !o.out) return usage_convert(stderr, quant);
    if ((o.out_format = cli_out_format(cmd, to, o.out)) < 0) return 2;
    if (!quant && o.out_format != DSQ_OUT_DSQ) {
        fprintf(stderr, "dsq convert: %s: convert writes a .dsq container; for GGUF or a Hugging Face folder use dsq "
                        "export (it reports anything the format cannot hold as stored)\n", o.out);
        return 2;
    }
    if (strcmp(method, "gptq") && strcmp(method, "mse")) {
        fprintf(stderr, "dsq quant: --method must be gptq or mse\n");
        return 2;
    }
    if (quant && !!preset == !!recipe_file) {
        fprintf(stderr, "dsq quant: give exactly one of --preset or --recipe\n");
        return 2;
    }
    int made_report = 0;
    if (report && cli_check_report_path(cmd, report, &made_report)) return 1;
    dsq_err err = {0};
    dsq_cstats *cs = NULL;
    if (calib && dsq_cstats_load(&cs, calib, &err)) {
        if (made_report) unlink(report);
        return cli_err(cmd, &err);
    }
    o.calib = cs;
    dsq_recipe r;
    int rc;
    if (quant && preset && dsq_recipe_is_gguf_preset(preset)) {
        /* llama.cpp's policies depend on the layer count: read the source's config */
        dsq_src *s;
        rc = dsq_src_open(&s, o.src, 0, &err);
        if (!rc) {
            rc = dsq_recipe_gguf_preset(&r, preset, s, cs ? method : NULL, &err);
            dsq_src_close(s);
        }
    } else if (quant && preset)
        rc = cs ? dsq_recipe_preset_calibrated(&r, preset, &err) : dsq_recipe_preset(&r, preset, &err);
    else
        rc = quant ? dsq_recipe_load(&r, recipe_file, &err) : dsq_recipe_preset(&r, "lossless", &err);
    if (!rc && cs && !dsq_recipe_uses_calib(&r)) {
        dsq_recipe_deinit(&r);
        rc = dsq_fail(&err, DSQ_E_ARG, "%s: recipe %s uses no calibrated method (mse, gptq, awq): --calib would change nothing",
                      calib, r.name);
    }
    if (rc) {
        dsq_cstats_free(cs);
        return cli_err(cmd, &err);
    }
    o.recipe = &r;
    cli_progress pr;
    cli_progress_init(&pr, quiet);
    o.on_progress = cli_progress_draw;
    o.on_progress_arg = &pr;
    o.measure_error = quant && !no_error;
    cli_install_signals();
    dsq_pipe_report rep;
    rc = dsq_pipeline_run(&o, &rep, &err);
    dsq_recipe_deinit(&r);
    dsq_cstats_free(cs);
    if (rc) {
        if (made_report) unlink(report);
        return cli_err(cmd, &err);
    }
    if (quant) {
        rc = cli_print_pipe_report(&rep, json ? DSQ_REPORT_JSON : verbose ? DSQ_REPORT_FULL : DSQ_REPORT_SUMMARY, o.out,
                                   report);
        dsq_pipe_report_free(&rep);
        return rc;
    }
    if (!quiet)
        fprintf(stderr, "wrote %s: %d tensors, %.2f MiB in %.2f s (%.0f MiB/s)\n", o.out, rep.n,
                (double)rep.out_bytes / 1048576.0, rep.seconds,
                (double)rep.src_bytes / 1048576.0 / (rep.seconds > 0 ? rep.seconds : 1));
    dsq_pipe_report_free(&rep);
    return 0;
}

int cmd_convert(int argc, char **argv) { return run_pipe(argc, argv, 0); }
int cmd_quant(int argc, char **argv) { return run_pipe(argc, argv, 1); }

/* ---- check ------------------------------------------------------------------ */
int cmd_check(int argc, char **argv) {
    const char *path = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is(argv[i], "--help") || cli_is(argv[i], "-h")) {
            printf("usage: dsq check FILE.dsq [--quiet]\n"
                   "       dsq check PACK.tar [--quiet]     (a `dsq pack` archive, or a folder of its parts)\n\n"
                   "Verify a container: header, section and directory structure, then the xxh3-64 of every\n"
                   "array and side file.  Names the first bad tensor.  For a pack: the manifest, the card and\n"
                   "every part's size and xxh3, the whole container's xxh3, streaming, without extracting;\n"
                   "names the first bad part.  Exit 0 when intact, 1 otherwise.\n");
            return 0;
        } else if (cli_is(argv[i], "--quiet")) quiet = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "dsq check: unknown option '%s'\n", argv[i]);
            return 2;
        } else path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: dsq check FILE.dsq\n");
        return 2;
    }
    if (!dsq_ctr_sniff(path)) return cmd_check_pack(path, quiet); /* a pack archive or folder */
    dsq_err err = {0};
    dsq_ctr *c;
    if (dsq_ctr_open(&c, path, &err)) return cli_err("check", &err);
    int64_t n = 0;
    int rc = dsq_ctr_verify(c, &n, &err);
    if (rc) {
        dsq_ctr_close(c);
        return cli_err("check", &err);
    }
    if (!quiet) printf("%s: ok (%d tensors, %lld checksums verified)\n", path, dsq_ctr_n_tensors(c), (long long)n);
    dsq_ctr_close(c);
    return 0;
}

/* ---- inspect on a container --------------------------------------------------- */
int cmd_inspect_container(const dsq_ctr *c, const char *path, int json) {
    const dsq_config *cfg = dsq_ctr_config(c);
    int64_t params = 0, cls_params[DSQ_C_COUNT] = {0}, sch_params[DSQ_Q_COUNT] = {0};
    uint64_t bytes = 0, cls_bytes[DSQ_C_COUNT] = {0}, sch_bytes[DSQ_Q_COUNT] = {0};
    int64_t cls_n[DSQ_C_COUNT] = {0}, n_mtp = 0;
    for (int i = 0; i < dsq_ctr_n_tensors(c); i++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c, i);
        int64_t np = t->rows * t->cols * (t->experts ? t->experts : 1);
        uint64_t nb = t->arr[0].size + t->arr[1].size + t->arr[2].size;
        dsq_class cl = t->is_mtp ? DSQ_C_MTP : dsq_role_class(t->role);
        params += np;
        bytes += nb;
        cls_params[cl] += np;
        cls_bytes[cl] += nb;
        cls_n[cl] += t->experts ? t->experts : 1;
        sch_params[t->scheme] += np;
        sch_bytes[t->scheme] += nb;
        n_mtp += t->is_mtp;
    }
    cJSON *meta = cJSON_Parse(dsq_ctr_meta(c));
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "recipe"), "name");
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(meta, "provenance");
    const char *rname = cJSON_IsString(rec) ? rec->valuestring : "?";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "source", "dsq");
        cJSON_AddNumberToObject(o, "tensors", dsq_ctr_n_tensors(c));
        cJSON_AddNumberToObject(o, "mtp_tensors", (double)n_mtp);
        cJSON_AddNumberToObject(o, "params", (double)params);
        cJSON_AddNumberToObject(o, "bytes", (double)bytes);
        cJSON_AddNumberToObject(o, "file_bytes", (double)dsq_ctr_file_size(c));
        cJSON_AddNumberToObject(o, "bits_per_weight", params ? 8.0 * (double)bytes / (double)params : 0);
        cJSON_AddStringToObject(o, "recipe", rname);
        cJSON *cl = cJSON_AddObjectToObject(o, "classes");
        for (int k = 0; k < DSQ_C_COUNT; k++) {
            if (k == DSQ_C_SCALE) continue;
            cJSON *e = cJSON_AddObjectToObject(cl, dsq_class_name((dsq_class)k));
            cJSON_AddNumberToObject(e, "tensors", (double)cls_n[k]);
            cJSON_AddNumberToObject(e, "params", (double)cls_params[k]);
            cJSON_AddNumberToObject(e, "bytes", (double)cls_bytes[k]);
            cJSON_AddNumberToObject(e, "bits_per_weight", cls_params[k] ? 8.0 * (double)cls_bytes[k] / (double)cls_params[k] : 0);
        }
        cJSON *sc = cJSON_AddObjectToObject(o, "schemes");
        for (int k = 0; k < DSQ_Q_COUNT; k++)
            if (sch_params[k]) {
                cJSON *e = cJSON_AddObjectToObject(sc, dsq_q_scheme(k)->name);
                cJSON_AddNumberToObject(e, "params", (double)sch_params[k]);
                cJSON_AddNumberToObject(e, "bytes", (double)sch_bytes[k]);
            }
        if (pv) cJSON_AddItemToObject(o, "provenance", cJSON_Duplicate(pv, 1));
        /* the model's config.json as stored, like inspect of a checkpoint shows it */
        const char *cj = dsq_ctr_config_json(c);
        cJSON *cfgo = cj ? dsq_json_parse(cj, strlen(cj), NULL) : NULL;
        if (cfgo) cJSON_AddItemToObject(o, "config", cfgo);
        char *s = cJSON_Print(o);
        if (s) puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("%s (dsq container, %.2f MiB, recipe %s)\n", path, (double)dsq_ctr_file_size(c) / 1048576.0, rname);
        printf("model      %s%s, %d layers (%d dense) + %d MTP, hidden %d, vocab %d\n", cfg->model_type,
               cfg->fp8 ? " fp8" : "", cfg->n_layers, cfg->first_k_dense, cfg->n_mtp_layers,
               cfg->hidden_size, cfg->vocab_size);
        printf("tensors    %d (%lld MTP; routed experts stacked)\n", dsq_ctr_n_tensors(c), (long long)n_mtp);
        printf("params     %lld\nbytes      %llu (%.3f bits per weight)\n\n", (long long)params,
               (unsigned long long)bytes, params ? 8.0 * (double)bytes / (double)params : 0);
        printf("%-16s %8s %16s %16s %8s\n", "class", "matrices", "params", "bytes", "bpw");
        for (int k = 0; k < DSQ_C_COUNT; k++)
            if (cls_n[k])
                printf("%-16s %8lld %16lld %16llu %8.3f\n", dsq_class_name((dsq_class)k), (long long)cls_n[k],
                       (long long)cls_params[k], (unsigned long long)cls_bytes[k],
                       8.0 * (double)cls_bytes[k] / (double)cls_params[k]);
        printf("\n%-20s %16s %16s\n", "scheme", "params", "bytes");
        for (int k = 0; k < DSQ_Q_COUNT; k++)
            if (sch_params[k])
                printf("%-20s %16lld %16llu\n", dsq_q_scheme(k)->name, (long long)sch_params[k], (unsigned long long)sch_bytes[k]);
        const cJSON *cr = cJSON_GetObjectItemCaseSensitive(pv, "created");
        if (cJSON_IsString(cr)) printf("\ncreated %s", cr->valuestring);
        const cJSON *sk = cJSON_GetObjectItemCaseSensitive(pv, "source_kind");
        if (cJSON_IsString(sk)) printf(" from a %s", sk->valuestring);
        printf("\n");
    }
    cJSON_Delete(meta);
    return 0;
}
