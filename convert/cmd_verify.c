/*
 * cmd_verify.c -- `dsq verify REF CAND --tokens FILE`: run a reference and a
 * candidate model in lockstep over the same token windows and report the
 * drift per layer (verify/drift.h defines every metric): a table on stdout,
 * the same as JSON (--json OUT.json) and an SVG chart of the per-layer
 * metrics and of the attribution (--svg OUT.svg).
 */
#include "convert/cli.h"
#include "pipeline/model.h"
#include "common.h"
#include "formats/formats_int.h"
#include "verify/drift.h"
#include "verify/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int usage(FILE *to) {
    FILE *f = cli_usage_begin(to);
    fprintf(f,
            "usage: dsq verify REF CAND (--tokens FILE.json | --text FILE | --random-tokens N)\n"
            "                  [--ctx N] [--max-windows N]\n"
            "                  [--threads N] [--act-fp8] [--json OUT.json] [--svg OUT.svg]\n"
            "                  [--attribution] [--no-experts] [--score-from K]\n\n"
            "Run REF and CAND (checkpoint folders or .dsq containers of the same shape) in\n"
            "lockstep over the token windows of FILE.json, of a text file encoded with REF's\n"
            "tokenizer, or of N fixed pseudo-random ids (windows as dsq eval cuts them), and\n"
            "report, per layer, the drift of the residual stream, attention and FFN outputs,\n"
            "indexer selections and expert routing; per expert, CAND's output error on REF's\n"
            "inputs; overall, both perplexities,\n"
            "KL(REF||CAND) and top-1 agreement.\n\n"
            "  --attribution    also run REF with one part (attention, dense FFN, shared\n"
            "                   or routed experts) of one layer taken from CAND, for every\n"
            "                   part, and rank the parts by the perplexity they cost\n"
            "  --no-experts     skip the per-expert errors (saves one pass over CAND's experts)\n"
            "  --score-from K   score only the predictions at positions >= K of each window\n"
            "                   (K = ctx/2 is how llama-perplexity scores KL)\n"
            "  --json OUT       write the report as JSON (- : on standard output, instead of the\n"
            "                   table);  --svg OUT  write charts\n");
    return cli_usage_end(to, f);
}

static int g_tty;
static double g_t0;

static void progress(void *user, int64_t done, int64_t total) {
    (void)user;
    static double last;
    cli_window_progress("verify", g_tty, g_t0, &last, done, total);
}

/* ---- text ------------------------------------------------------------------ */

static void fmt_or_dash(char *buf, size_t n, const char *fmt, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, v);
}

static int cmp_expert(const void *a, const void *b) {
    const dsq_drift_expert *x = a, *y = b;
    if (x->relerr != y->relerr) return x->relerr > y->relerr ? -1 : 1;
    return x->layer != y->layer ? x->layer - y->layer : x->expert - y->expert;
}

/* The stdout report: one row per layer, the worst experts (the full list
 * can be long: 58 layers x 256 experts for the large model), the overall
 * figures, and the attribution ranking when it was run. */
static void print_table(const dsq_drift_report *r, const char *ref, const char *cand) {
    printf("reference   %s\ncandidate   %s\n", ref, cand);
    printf("windows     %lld x %d tokens, %lld predictions, %s activations\n\n",
           (long long)r->n_windows, r->ctx, (long long)r->n_positions, r->act_fp8 ? "FP8" : "f32");
    printf("layer  resid_err  resid_cos    attn_err   ffn_err    idx_recall  route_same  overlap  w_err\n");
    for (int l = 0; l < r->n_layers; l++) {
        const dsq_drift_layer *d = &r->layers[l];
        char rec[16], same[16], ov[16], we[16];
        fmt_or_dash(rec, sizeof rec, "%.4f", d->idx_recall);
        fmt_or_dash(same, sizeof same, "%.4f", d->route_same);
        fmt_or_dash(ov, sizeof ov, "%.4f", d->route_overlap);
        fmt_or_dash(we, sizeof we, "%.2e", d->route_werr);
        printf("%5d  %9.2e  %9.6f  %10.2e  %9.2e  %10s  %10s  %7s  %8s\n", l, d->resid_relerr,
               d->resid_cos, d->attn_relerr, d->ffn_relerr, rec, same, ov, we);
    }
    if (r->n_experts) {
        dsq_drift_expert *ex = malloc(sizeof *ex * (size_t)r->n_experts);
        if (ex) {
            memcpy(ex, r->experts, sizeof *ex * (size_t)r->n_experts);
            qsort(ex, (size_t)r->n_experts, sizeof *ex, cmp_expert);
            int show = r->n_experts < 10 ? r->n_experts : 10;
            printf("\nexperts: output error on REF's inputs, worst %d of %d (all in the JSON)\n", show,
                   r->n_experts);
            printf("layer  expert  tokens   rel_err\n");
            for (int i = 0; i < show; i++) {
                char e[16];
                if (ex[i].expert < 0) snprintf(e, sizeof e, "shared");
                else snprintf(e, sizeof e, "%d", ex[i].expert);
                printf("%5d  %6s  %6lld  %8.2e\n", ex[i].layer, e, (long long)ex[i].tokens, ex[i].relerr);
            }
            free(ex);
        }
    }
    printf("\nperplexity  ref %.4f  cand %.4f  delta %+.4f (%+.3f%%)\n", r->ppl_ref, r->ppl_cand,
           r->ppl_cand - r->ppl_ref, 100.0 * (r->ppl_cand / r->ppl_ref - 1));
    printf("KL(REF||CAND)  mean %.3e nats, p99 %.3e\n", r->kl_mean, r->kl_p99);
    printf("top-1 agreement  %.4f\n", r->top1);
    if (r->n_parts) {
        printf("\nattribution: REF with one part taken from CAND, by perplexity cost\n");
        printf(" rank  layer  part       delta_ppl     kl_mean\n");
        for (int i = 0; i < r->n_parts; i++) {
            const dsq_drift_part *p = &r->parts[i];
            printf("%5d  %5d  %-7s  %+11.4f  %10.3e\n", i + 1, p->layer, dsq_drift_part_name(p->part),
                   p->dppl, p->kl_mean);
        }
    }
}

/* ---- JSON ------------------------------------------------------------------- */

/* JSON has no NaN: metrics that do not apply (routing of a dense layer,
 * recall without a sparse query) are written as null. */
static void num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

/* key: what the windows came from, as eval names it ("tokens_file",
 * "text_file" or "tokens" for pseudo-random ids). */
static char *report_json(const dsq_drift_report *r, const char *ref, const char *cand, const char *key,
                         const char *tokens) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "reference", ref);
    cJSON_AddStringToObject(j, "candidate", cand);
    cJSON_AddStringToObject(j, key, tokens);
    cJSON_AddNumberToObject(j, "ctx", r->ctx);
    cJSON_AddNumberToObject(j, "windows", (double)r->n_windows);
    cJSON_AddNumberToObject(j, "positions", (double)r->n_positions);
    cJSON_AddStringToObject(j, "activations", r->act_fp8 ? "fp8" : "f32");
    num(j, "ppl_ref", r->ppl_ref);
    num(j, "ppl_cand", r->ppl_cand);
    num(j, "delta_ppl", r->ppl_cand - r->ppl_ref);
    num(j, "nll_ref", r->nll_ref);
    num(j, "nll_cand", r->nll_cand);
    num(j, "kl_mean", r->kl_mean);
    num(j, "kl_p99", r->kl_p99);
    num(j, "top1_agreement", r->top1);
    cJSON *ls = cJSON_AddArrayToObject(j, "layers");
    for (int l = 0; l < r->n_layers; l++) {
        const dsq_drift_layer *d = &r->layers[l];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddBoolToObject(o, "moe", d->moe);
        num(o, "resid_relerr", d->resid_relerr);
        num(o, "resid_cos", d->resid_cos);
        num(o, "attn_relerr", d->attn_relerr);
        num(o, "ffn_relerr", d->ffn_relerr);
        num(o, "indexer_recall", d->idx_recall);
        cJSON_AddNumberToObject(o, "indexer_queries", (double)d->idx_queries);
        num(o, "route_same", d->route_same);
        num(o, "route_overlap", d->route_overlap);
        num(o, "route_weight_err", d->route_werr);
        cJSON_AddNumberToObject(o, "route_tokens", (double)d->route_tokens);
        cJSON_AddItemToArray(ls, o);
    }
    cJSON *es = cJSON_AddArrayToObject(j, "experts");
    for (int i = 0; i < r->n_experts; i++) {
        const dsq_drift_expert *e = &r->experts[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", e->layer);
        if (e->expert < 0) cJSON_AddStringToObject(o, "expert", "shared");
        else cJSON_AddNumberToObject(o, "expert", e->expert);
        cJSON_AddNumberToObject(o, "tokens", (double)e->tokens);
        num(o, "relerr", e->relerr);
        cJSON_AddItemToArray(es, o);
    }
    if (r->n_parts) {
        cJSON *ps = cJSON_AddArrayToObject(j, "attribution");
        for (int i = 0; i < r->n_parts; i++) {
            const dsq_drift_part *p = &r->parts[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "layer", p->layer);
            cJSON_AddStringToObject(o, "part", dsq_drift_part_name(p->part));
            num(o, "ppl", p->ppl);
            num(o, "delta_ppl", p->dppl);
            num(o, "kl_mean", p->kl_mean);
            cJSON_AddItemToArray(ps, o);
        }
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

/* ---- SVG ---------------------------------------------------------------------
 * Hand-written: one panel of per-layer errors on a log axis, one of per-layer
 * agreement scores on [0, 1], and, with attribution, horizontal bars of the
 * perplexity cost of each part. */

/* A growing string for the SVG text; out of memory is sticky and checked
 * once at the end. */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->s, nc);
        if (!p) { b->oom = 1; return; }
        b->s = p;
        b->cap = nc;
    }
}

#define SVG_W 820
#define PLOT_X0 70
#define PLOT_X1 600
#define PANEL_H 250

typedef struct {
    const char *name, *color;
    double v[4096];
} series;

/* x position of layer l on the shared horizontal axis of the panels. */
static double layer_x(int l, int L) {
    return L <= 1 ? (PLOT_X0 + PLOT_X1) / 2.0 : PLOT_X0 + (PLOT_X1 - PLOT_X0) * (double)l / (L - 1);
}

/* One panel: frame, grid and labels, then each series as a polyline with a
 * dot per layer carrying its value as a tooltip.  Log panels span whole
 * decades around the data; linear panels show [lo, 1] with lo stepped down
 * (0.9, 0.5, 0) until every value fits. */
static void svg_panel(sbuf *b, double y0, const char *title, int logy, const series *s, int ns,
                      int L) {
    double lo = 1, hi = 1, top = y0 + 30, bot = y0 + PANEL_H - 40;
    if (logy) {
        lo = INFINITY;
        hi = -INFINITY;
        for (int i = 0; i < ns; i++)
            for (int l = 0; l < L; l++)
                if (s[i].v[l] > 0 && isfinite(s[i].v[l])) {
                    lo = fmin(lo, s[i].v[l]);
                    hi = fmax(hi, s[i].v[l]);
                }
        if (!isfinite(lo)) { lo = 1e-9; hi = 1; }
        lo = pow(10, floor(log10(lo)));
        hi = pow(10, ceil(log10(hi)));
        if (hi <= lo) hi = lo * 10;
    } else {
        lo = 1;
        for (int i = 0; i < ns; i++)
            for (int l = 0; l < L; l++)
                if (isfinite(s[i].v[l])) lo = fmin(lo, s[i].v[l]);
        lo = lo >= 0.9 ? 0.9 : lo >= 0.5 ? 0.5 : 0;
        hi = 1;
    }
#define YPOS(v) (logy ? bot - (bot - top) * (log10(v) - log10(lo)) / (log10(hi) - log10(lo)) \
                      : bot - (bot - top) * ((v) - lo) / (hi - lo))
    sb(b, "<text x=\"%d\" y=\"%.0f\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", PLOT_X0,
       y0 + 18, title);
    sb(b, "<rect x=\"%d\" y=\"%.0f\" width=\"%d\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
       PLOT_X0, top, PLOT_X1 - PLOT_X0, bot - top);
    /* horizontal grid: decades, or quarters of the linear range */
    if (logy) {
        for (double g = lo; g <= hi * 1.001; g *= 10)
            sb(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0e</text>\n",
               PLOT_X0, PLOT_X1, YPOS(g), YPOS(g), PLOT_X0 - 6, YPOS(g) + 4, g);
    } else {
        for (int k = 0; k <= 4; k++) {
            double g = lo + (hi - lo) * k / 4;
            sb(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                  "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
               PLOT_X0, PLOT_X1, YPOS(g), YPOS(g), PLOT_X0 - 6, YPOS(g) + 4, g);
        }
    }
    int step = L > 32 ? (L + 15) / 16 : 1;
    for (int l = 0; l < L; l += step)
        sb(b, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%d</text>\n",
           layer_x(l, L), bot + 15, l);
    sb(b, "<text x=\"%d\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">layer</text>\n",
       (PLOT_X0 + PLOT_X1) / 2, bot + 30);
    for (int i = 0; i < ns; i++) {
        sb(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s[i].color);
        for (int l = 0; l < L; l++) {
            double v = s[i].v[l];
            if (!isfinite(v) || (logy && v <= 0)) continue;
            v = logy ? fmin(fmax(v, lo), hi) : fmin(fmax(v, lo), hi);
            sb(b, "%.1f,%.1f ", layer_x(l, L), YPOS(v));
        }
        sb(b, "\"/>\n");
        for (int l = 0; l < L; l++) {
            double v = s[i].v[l];
            if (!isfinite(v) || (logy && v <= 0)) continue;
            v = fmin(fmax(v, lo), hi);
            sb(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s layer %d: %.4g"
                  "</title></circle>\n", layer_x(l, L), YPOS(v), s[i].color, s[i].name, l, s[i].v[l]);
        }
        sb(b, "<rect x=\"%d\" y=\"%.0f\" width=\"14\" height=\"4\" fill=\"%s\"/>"
              "<text x=\"%d\" y=\"%.0f\" font-size=\"12\">%s</text>\n",
           PLOT_X1 + 20, top + 10 + 18 * i, s[i].color, PLOT_X1 + 40, top + 15 + 18 * i, s[i].name);
    }
#undef YPOS
}

static char *report_svg(const dsq_drift_report *r) {
    sbuf b = {0};
    int L = r->n_layers < 4096 ? r->n_layers : 4096;
    int nbar = r->n_parts < 40 ? r->n_parts : 40;
    double h = 2 * PANEL_H + 40 + (nbar ? 60 + 18.0 * nbar : 0);
    series *s = calloc(4, sizeof *s);
    if (!s) return NULL;
    sb(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
           "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
       SVG_W, h);
    sb(&b, "<text x=\"10\" y=\"22\" font-size=\"13\">ppl ref %.4f, cand %.4f (delta %+.4f); "
           "KL mean %.3g, p99 %.3g; top-1 agreement %.4f</text>\n",
       r->ppl_ref, r->ppl_cand, r->ppl_cand - r->ppl_ref, r->kl_mean, r->kl_p99, r->top1);
    s[0].name = "residual"; s[0].color = "#1f77b4";
    s[1].name = "attention"; s[1].color = "#ff7f0e";
    s[2].name = "ffn / moe"; s[2].color = "#2ca02c";
    for (int l = 0; l < L; l++) {
        s[0].v[l] = r->layers[l].resid_relerr;
        s[1].v[l] = r->layers[l].attn_relerr;
        s[2].v[l] = r->layers[l].ffn_relerr;
    }
    svg_panel(&b, 30, "relative error per layer (log scale)", 1, s, 3, L);
    s[0].name = "residual cosine"; s[0].color = "#1f77b4";
    s[1].name = "indexer recall"; s[1].color = "#9467bd";
    s[2].name = "same experts"; s[2].color = "#d62728";
    s[3].name = "expert overlap"; s[3].color = "#8c564b";
    for (int l = 0; l < L; l++) {
        s[0].v[l] = r->layers[l].resid_cos;
        s[1].v[l] = r->layers[l].idx_recall;
        s[2].v[l] = r->layers[l].route_same;
        s[3].v[l] = r->layers[l].route_overlap;
    }
    svg_panel(&b, 30 + PANEL_H, "agreement per layer", 0, s, 4, L);
    free(s);
    if (nbar) {
        double y0 = 30 + 2 * PANEL_H + 10, mx = 0;
        for (int i = 0; i < nbar; i++) mx = fmax(mx, fabs(r->parts[i].dppl));
        if (!(mx > 0)) mx = 1;
        sb(&b, "<text x=\"10\" y=\"%.0f\" font-size=\"14\" font-weight=\"bold\">perplexity cost of "
               "each part taken from the candidate (largest %d)</text>\n", y0 + 18, nbar);
        double zero = 300, width = 400;
        for (int i = 0; i < nbar; i++) {
            const dsq_drift_part *p = &r->parts[i];
            double y = y0 + 35 + 18 * i, wbar = width / 2 * fabs(p->dppl) / mx;
            double x = p->dppl >= 0 ? zero : zero - wbar;
            sb(&b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"end\">layer %d %s</text>"
                   "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"13\" fill=\"%s\">"
                   "<title>delta ppl %+.4g, KL %.3g</title></rect>"
                   "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">%+.4g</text>\n",
               zero - 210, y + 11, p->layer, dsq_drift_part_name(p->part), x, y, wbar,
               p->dppl >= 0 ? "#d62728" : "#2ca02c", p->dppl, p->kl_mean, zero + width / 2 + 10,
               y + 11, p->dppl);
        }
        sb(&b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#444\"/>\n", zero, zero,
           y0 + 30, y0 + 35 + 18.0 * nbar);
    }
    sb(&b, "</svg>\n");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* Reports go through the atomic file layer like every output: a reader
 * never sees half a JSON or SVG file. */
static int write_text(dsq_afile **f, const char *path, const char *text, dsq_err *err) {
    if (!text) return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    if (dsq_afile_write(*f, text, strlen(text))) return dsq_fail(err, DSQ_E_IO, "%s: write failed", path);
    int rc = dsq_afile_commit(*f, err);
    *f = NULL;
    return rc;
}

int cmd_verify(int argc, char **argv) {
    const char *ref = NULL, *cand = NULL, *json = NULL, *svg = NULL;
    cli_window win = {0};
    dsq_drift_opts o = {0};
    o.experts = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = cli_window_opt("verify", argc, argv, &i, &win);
        if (k < 0) return 2;
        if (k) continue;
        if (cli_is(a, "--help") || cli_is(a, "-h")) return usage(stdout);
        else if (cli_is(a, "--act-fp8")) o.act_fp8 = 1;
        else if (cli_is(a, "--attribution")) o.attribution = 1;
        else if (cli_is(a, "--no-experts")) o.experts = 0;
        else if (cli_is(a, "--json") && i + 1 < argc) json = argv[++i];
        else if (cli_is(a, "--svg") && i + 1 < argc) svg = argv[++i];
        else if (a[0] == '-') {
            fprintf(stderr, "dsq verify: unknown option or missing value '%s'\n", a);
            return usage(stderr);
        } else if (!ref) ref = a;
        else if (!cand) cand = a;
        else return usage(stderr);
    }
    if (!ref || !cand || !cli_window_source_ok(&win)) return usage(stderr);
    o.score_from = (int)win.score_from;
    long ctx = win.ctx, threads = win.threads, maxw = win.max_windows;

    dsq_err err = {0};
    dsq_src *mr = NULL, *mc = NULL;
    dsq_weights wr, wc;
    int32_t *tok = NULL;
    size_t n = 0;
    dsq_drift_report *rep = NULL;
    char *js = NULL, *sv = NULL;
    int ret = 1;
    /* the outputs are opened (as temporary files) before hours of work, so
     * a path that cannot be written fails now */
    dsq_afile *fj = NULL, *fs = NULL;
    int json_stdout = json && !strcmp(json, "-"); /* the JSON alone on stdout */
    if (json && !json_stdout && dsq_afile_open(&fj, json, DSQ_AFILE_FORCE, &err)) goto fail;
    if (svg && dsq_afile_open(&fs, svg, DSQ_AFILE_FORCE, &err)) goto fail;
    if (dsq_model_open(&mr, &wr, ref, &err)) goto fail;
    if (dsq_model_open(&mc, &wc, cand, &err)) goto fail;
    if (cli_window_tokens(&win, ref, wr.cfg, &tok, &n, &err)) goto fail;
    o.ctx = ctx > 0 ? (int)ctx : dsq_eval_default_ctx(wr.cfg);
    o.max_windows = maxw;
    o.n_threads = (int)threads;
    o.on_progress = progress;
    g_tty = isatty(2);
    g_t0 = dsq_now();
    cli_install_signals();
    if (dsq_drift_run(&wr, &wc, tok, (int64_t)n, &o, &rep, &err)) {
        if (err.code == DSQ_E_CONFIG) { /* name the two models */
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            dsq_fail(&err, DSQ_E_CONFIG, "%s and %s: %s", ref, cand, msg);
        }
        goto fail;
    }
    if (!json_stdout) {
        print_table(rep, ref, cand);
        printf("time  %.2f s\n", dsq_now() - g_t0);
    }
    if (!isfinite(rep->ppl_ref) || !isfinite(rep->ppl_cand) || !isfinite(rep->kl_mean)) {
        /* shown in the table above, but a NaN is a failure, never a result */
        dsq_fail(&err, DSQ_E_FORMAT, "%s: perplexity or KL is not finite (ppl %g, KL %g): a model computes NaN or "
                 "infinite values", isfinite(rep->ppl_ref) ? cand : ref, isfinite(rep->ppl_ref) ? rep->ppl_cand : rep->ppl_ref,
                 rep->kl_mean);
        goto fail; /* and no report file is written */
    }

    if (json) {
        js = report_json(rep, ref, cand, win.tokens ? "tokens_file" : win.text ? "text_file" : "tokens",
                         win.tokens ? win.tokens : win.text ? win.text : "random tokens");
        if (json_stdout) {
            if (!js) { dsq_fail(&err, DSQ_E_NOMEM, "out of memory"); goto fail; }
            fputs(js, stdout);
        } else if (write_text(&fj, json, js, &err)) goto fail;
    }
    if (svg) {
        sv = report_svg(rep);
        if (write_text(&fs, svg, sv, &err)) goto fail;
    }
    ret = 0;
fail:
    if (ret) cli_err("verify", &err);
    dsq_afile_abort(fj);
    dsq_afile_abort(fs);
    free(js);
    free(sv);
    dsq_drift_free(rep);
    free(tok);
    dsq_src_close(mc);
    dsq_src_close(mr);
    return ret;
}
