/*
 * cmd_eval.c -- `dsq eval MODEL --tokens FILE.json`: perplexity and mean
 * negative log-likelihood of a model over a token file, with the reference
 * forward pass (verify/eval.h describes the windows).  Optionally dumps the
 * raw logits as little-endian f32 [rows x vocab], one row per position of
 * every evaluated window, in order.
 */
#include "convert/cli.h"
#include "pipeline/model.h"
#include "common.h"
#include "formats/formats_int.h"
#include "verify/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f,
            "usage: dsq eval MODEL (--tokens FILE.json | --text FILE | --random-tokens N)\n"
            "                [--ctx N] [--threads N]\n"
            "                [--act-fp8] [--logits OUT.f32] [--max-windows N] [--score-from K] [--json]\n\n"
            "Perplexity of MODEL (a checkpoint folder or .dsq container) over the token ids in\n"
            "FILE.json (a JSON array), over a text file encoded with MODEL's tokenizer, or\n"
            "over N fixed pseudo-random ids (synthetic models: a speed or drift probe).\n"
            "The tokens are cut into non-overlapping windows of N tokens (default:\n"
            "max_position_embeddings capped at 256); each window is a fresh prefill scored on\n"
            "its N-1 next-token predictions; a trailing partial window is not scored.\n\n"
            "  --ctx N          window length\n"
            "  --threads N      worker threads (default: DSQ_THREADS or all cores)\n"
            "  --act-fp8        quantize activations to FP8 as the upstream deployment does\n"
            "  --logits OUT     write raw little-endian f32 logits [windows*N x vocab]\n"
            "  --max-windows N  evaluate only the first N windows\n"
            "  --score-from K   score only the predictions at positions >= K of each window\n"
            "  --json           print the result as JSON\n");
    return cli_usage_end(to, f);
}

typedef struct {
    dsq_afile *out;   /* --logits file, or NULL */
    int tty;
    double t0, last; /* progress: start, last log line */
} eval_ui;

static int write_logits(void *user, const float *logits, int T, int V) {
    eval_ui *ui = user;
    /* the host is little-endian (checked in the build), so f32 bytes go as is */
    return dsq_afile_write(ui->out, logits, (size_t)T * (size_t)V * sizeof(float));
}

/* One progress line, rewritten in place, only when stderr is a terminal:
 * logs and pipes stay clean. */
static void progress(void *user, int64_t done, int64_t total) {
    eval_ui *ui = user;
    cli_window_progress("eval", ui->tty, ui->t0, &ui->last, done, total);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *logits = NULL;
    int json = 0;
    cli_window win = {0};
    dsq_eval_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = cli_window_opt("eval", argc, argv, &i, &win);
        if (k < 0) return 2;
        if (k) continue;
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage(stdout);
        else if (cli_is(a, "--json")) json = 1;
        else if (cli_is(a, "--act-fp8")) o.act_fp8 = 1;
        else if (cli_is(a, "--logits") && i + 1 < argc) logits = argv[++i];
        else if (a[0] == '-') {
            fprintf(stderr, "dsq eval: unknown option or missing value '%s'\n", a);
            return usage(stderr);
        } else if (!model) model = a;
        else return usage(stderr);
    }
    if (!model || !cli_window_source_ok(&win)) return usage(stderr);
    o.score_from = (int)win.score_from;
    long ctx = win.ctx, threads = win.threads, maxw = win.max_windows;

    dsq_err err = {0};
    dsq_src *m;
    dsq_weights mw;
    int32_t *tok = NULL;
    size_t n = 0;
    eval_ui ui = {0};
    dsq_eval_result r;
    int ret = 1;
    if (dsq_model_open(&m, &mw, model, &err)) return cli_err("eval", &err);
    const dsq_config *cfg = mw.cfg;
    if (cli_window_tokens(&win, model, cfg, &tok, &n, &err)) goto fail;
    const char *src = win.tokens ? win.tokens : win.text ? win.text : "random tokens";
    o.ctx = ctx > 0 ? (int)ctx : dsq_eval_default_ctx(cfg);
    if (o.ctx > cfg->max_position_embeddings)
        fprintf(stderr, "dsq eval: warning: --ctx %d exceeds max_position_embeddings %d\n", o.ctx,
                cfg->max_position_embeddings);
    o.max_windows = maxw;
    o.n_threads = (int)threads;
    o.on_progress = progress;
    o.user = &ui;
    ui.tty = isatty(2);
    if (logits) {
        if (dsq_afile_open(&ui.out, logits, DSQ_AFILE_FORCE, &err)) goto fail;
        cli_install_signals(); /* no half-written logits file stays behind */
        o.on_logits = write_logits;
    }
    ui.t0 = dsq_now();
    if (dsq_eval_run(&mw, tok, (int64_t)n, &o, &r, &err)) {
        if (ui.out && err.code == 0) dsq_fail(&err, DSQ_E_IO, "%s: write failed", logits);
        goto fail;
    }
    double secs = dsq_now() - ui.t0;
    if (ui.out) {
        dsq_afile *out = ui.out;
        ui.out = NULL;
        if (dsq_afile_commit(out, &err)) goto fail;
    }
    /* throughput counts every token pushed through the model, scored or not */
    double tps = secs > 0 ? (double)(r.n_windows * r.ctx) / secs : 0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, win.tokens ? "tokens_file" : win.text ? "text_file" : "tokens", src);
        cJSON_AddNumberToObject(j, "n_tokens", (double)n);
        cJSON_AddNumberToObject(j, "ctx", r.ctx);
        cJSON_AddNumberToObject(j, "windows", (double)r.n_windows);
        cJSON_AddNumberToObject(j, "predicted_tokens", (double)r.n_predicted);
        cJSON_AddStringToObject(j, "activations", o.act_fp8 ? "fp8" : "f32");
        cJSON_AddNumberToObject(j, "mean_nll", r.mean_nll);
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        cJSON_AddNumberToObject(j, "first_window_loss", r.first_window_loss);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "tokens_per_second", tps);
        if (logits) cJSON_AddStringToObject(j, "logits", logits);
        char *s = cJSON_Print(j);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("model        %s\n", model);
        printf("tokens       %s (%zu tokens)\n", src, n);
        printf("windows      %lld x %d tokens, %lld predictions, %s activations\n",
               (long long)r.n_windows, r.ctx, (long long)r.n_predicted, o.act_fp8 ? "FP8" : "f32");
        printf("mean NLL     %.6f nats\n", r.mean_nll);
        printf("perplexity   %.4f\n", r.ppl);
        printf("time         %.2f s (%.0f tokens/s)\n", secs, tps);
        if (logits)
            printf("logits       %s (%lld x %d f32)\n", logits, (long long)(r.n_windows * r.ctx),
                   cfg->vocab_size);
    }
    ret = 0;
    if (!isfinite(r.ppl) || !isfinite(r.mean_nll)) {
        /* a NaN perplexity is a failure, never a result */
        dsq_fail(&err, DSQ_E_FORMAT, "%s: the perplexity is not finite (%g): the model computes NaN or infinite values",
                 model, r.ppl);
        ret = 1;
    }
fail:
    if (ret) cli_err("eval", &err);
    dsq_afile_abort(ui.out);
    free(tok);
    dsq_src_close(m);
    return ret;
}
