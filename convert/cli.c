/*
 * cli.c -- option helpers shared by the subcommands.
 */
#include "convert/cli.h"
#include "formats/writer.h"
#include "common.h"
#include "pipeline/model.h"
#include "verify/eval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

int cli_is(const char *arg, const char *opt) { return strcmp(arg, opt) == 0; }

int cli_err(const char *cmd, const dsq_err *err) {
    fprintf(stderr, "dsq %s: %s\n", cmd, err->msg[0] ? err->msg : dsq_strerror(err->code));
    return 1;
}

long long cli_parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    long long m = 1;
    switch (*end) {
    case 'k': case 'K': m = 1LL << 10; end++; break;
    case 'm': case 'M': m = 1LL << 20; end++; break;
    case 'g': case 'G': m = 1LL << 30; end++; break;
    case 0: break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return -1;
    return (long long)(v * (double)m);
}

long cli_parse_long(const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    return (end == s || *end || v < lo || v > hi) ? -1 : v;
}

int cli_window_opt(const char *cmd, int argc, char **argv, int *i, cli_window *w) {
    static const struct { const char *opt; long lo, hi; size_t off; } nums[] = {
        {"--ctx", 2, 1 << 20, offsetof(cli_window, ctx)},
        {"--threads", 1, 4096, offsetof(cli_window, threads)},
        {"--random-tokens", 2, 1L << 30, offsetof(cli_window, n_random)},
        {"--max-windows", 1, 1L << 40, offsetof(cli_window, max_windows)},
        {"--score-from", 0, 1 << 20, offsetof(cli_window, score_from)},
    };
    const char *a = argv[*i];
    if (*i + 1 >= argc) return 0; /* every one of them takes a value */
    if (cli_is(a, "--tokens")) { w->tokens = argv[++*i]; return 1; }
    if (cli_is(a, "--text")) { w->text = argv[++*i]; return 1; }
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        if (!cli_is(a, nums[k].opt)) continue;
        long v = cli_parse_long(argv[++*i], nums[k].lo, nums[k].hi);
        if (v < 0) {
            fprintf(stderr, "dsq %s: bad value for %s: '%s'\n", cmd, a, argv[*i]);
            return -1;
        }
        *(long *)((char *)w + nums[k].off) = v;
        return 1;
    }
    return 0;
}

int cli_window_source_ok(const cli_window *w) { return !!w->tokens + !!w->text + !!w->n_random == 1; }

int cli_window_tokens(const cli_window *w, const char *model, const dsq_config *cfg, int32_t **ids,
                      size_t *n, dsq_err *err) {
    *ids = NULL;
    *n = 0;
    if (w->n_random) {
        /* synthetic models have no text: fixed pseudo-random ids */
        if (!(*ids = dsq_malloc(sizeof **ids * (size_t)w->n_random))) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        *n = (size_t)w->n_random;
        dsq_eval_random_tokens(*ids, w->n_random, cfg->vocab_size, cfg->bos_token_id);
        return DSQ_OK;
    }
    int rc = dsq_model_load_tokens(model, w->tokens, w->text, 0, ids, n, err);
    if (rc) return rc;
    const char *src = w->tokens ? w->tokens : w->text;
    for (size_t k = 0; k < *n; k++)
        if ((*ids)[k] < 0 || (*ids)[k] >= cfg->vocab_size) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: token %zu is %d, outside the vocabulary (%d)", src, k, (*ids)[k],
                          cfg->vocab_size);
            free(*ids);
            *ids = NULL;
            *n = 0;
            return rc;
        }
    return DSQ_OK;
}

/* ---- progress ------------------------------------------------------------ */
void cli_progress_init(cli_progress *p, int quiet) {
    p->quiet = quiet;
    p->tty = isatty(2);
    p->t0 = dsq_now();
    p->last = 0;
}

void cli_progress_draw(void *arg, const dsq_progress *p) {
    cli_progress *c = arg;
    if (c->quiet) return;
    if (!strcmp(p->stage, "calib")) {
        /* a terminal sees the line rewritten, a log one line per layer */
        fprintf(stderr, c->tty ? "\rcalib: layer %d/%d done (%.2f s)" : "calib: layer %d/%d done (%.2f s)\n",
                p->layer + 1, p->n_layers, p->seconds);
        if (p->final && c->tty) fputc('\n', stderr);
        return;
    }
    double now = dsq_now();
    /* a terminal is redrawn five times a second, a log gets a line every ten seconds */
    if (!p->final && now - c->last < (c->tty ? 0.2 : CLI_LOG_SECONDS)) return;
    /* a log hears nothing of a job shorter than one interval, and one final line */
    if (!c->tty && (c->last < 0 || (c->last == 0 && now - c->t0 < CLI_LOG_SECONDS))) return;
    c->last = p->final && !c->tty ? -1 : now;
    double el = now - c->t0, rate = el > 0 ? (double)p->done / el : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 1;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : 0;
    if (!c->tty) {
        fprintf(stderr, "%s: %5.1f%% %.1f/%.1f MiB, %.1f MiB/s, %.0f s, ETA %.0f s\n", p->stage, frac * 100,
                (double)p->done / 1048576.0, (double)p->total / 1048576.0, rate / 1048576.0, el, eta);
        return;
    }
    int bar = (int)(frac * 30);
    fprintf(stderr, "\r[%.*s%*s] %5.1f%% %8.1f/%.1f MiB %7.1f MiB/s ETA %4.0fs", bar,
            "##############################", 30 - bar, "", frac * 100, (double)p->done / 1048576.0,
            (double)p->total / 1048576.0, rate / 1048576.0, eta);
    if (p->final) fputc('\n', stderr);
}

void cli_window_progress(const char *cmd, int tty, double t0, double *last, int64_t done, int64_t total) {
    double now = dsq_now(), el = now - t0, left = done ? el / (double)done * (double)(total - done) : 0.0;
    if (tty) {
        fprintf(stderr, "\r  window %lld/%lld  %.1f s, about %.0f s left   ", (long long)done, (long long)total, el, left);
        if (done == total) fprintf(stderr, "\r%60s\r", "");
        return;
    }
    if (now - (*last > 0 ? *last : t0) < CLI_LOG_SECONDS && (done < total || *last == 0)) return;
    *last = now;
    fprintf(stderr, "%s: window %lld/%lld (%.1f%%), %.0f s, about %.0f s left\n", cmd, (long long)done, (long long)total,
            total ? 100.0 * (double)done / (double)total : 100.0, el, left);
}

/* ---- usage ------------------------------------------------------------------ */

static char *g_usage_buf;
static size_t g_usage_len;

FILE *cli_usage_begin(FILE *to) {
    if (to != stderr) return to;
    /* a usage error shows the synopsis line, not the whole help: collect
     * the text to cut it */
    free(g_usage_buf);
    g_usage_buf = NULL;
    FILE *m = open_memstream(&g_usage_buf, &g_usage_len);
    return m ? m : to;
}

int cli_usage_end(FILE *to, FILE *f) {
    if (f == to) return to == stdout ? 0 : 2;
    fclose(f);
    const char *txt = g_usage_buf ? g_usage_buf : "";
    char cmd[64] = "";
    const char *nl = strchr(txt, '\n');
    if (sscanf(txt, "usage: dsq %63s", cmd) == 1)
        fprintf(stderr, "%.*s\nsee dsq %s --help\n", nl ? (int)(nl - txt) : (int)strlen(txt), txt, cmd);
    else fputs(txt, stderr);
    free(g_usage_buf);
    g_usage_buf = NULL;
    return 2;
}

int cli_out_format(const char *cmd, const char *to, const char *out) {
    if (!to) return dsq_mwriter_format_of(out);
    if (!strcmp(to, "dsq")) return DSQ_OUT_DSQ;
    if (!strcmp(to, "gguf")) return DSQ_OUT_GGUF;
    if (!strcmp(to, "compressed-tensors") || !strcmp(to, "ct")) return DSQ_OUT_CT;
    if (!strcmp(to, "hf")) return DSQ_OUT_HF;
    fprintf(stderr, "dsq %s: --to takes dsq, gguf, compressed-tensors (ct) or hf, not '%s'\n", cmd, to);
    return -1;
}

int cli_shard_size(const char *cmd, const char *arg, uint64_t *out) {
    long long v = cli_parse_size(arg);
    if (v < 1) {
        fprintf(stderr, "dsq %s: --shard-size takes a size such as 5G, 500M or 1000000\n", cmd);
        return 2;
    }
    *out = (uint64_t)v;
    return 0;
}
