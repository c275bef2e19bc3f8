/*
 * eval.c -- perplexity over non-overlapping windows (see eval.h).
 */
#include "verify/eval.h"
#include "verify/forward.h"

#include "common.h"

#include <math.h>

void dsq_eval_random_tokens(int32_t *out, int64_t n, int vocab, int bos) {
    uint64_t s = 0x9E3779B97F4A7C15ull; /* fixed: runs are comparable */
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out[i] = (int32_t)((s >> 11) % (uint64_t)(vocab > 0 ? vocab : 1));
    }
    if (n > 0 && bos >= 0 && bos < vocab) out[0] = bos;
}

int dsq_eval_default_ctx(const dsq_config *cfg) {
    int m = cfg->max_position_embeddings;
    return m > 0 && m < 256 ? m : 256;
}

int dsq_eval_plan(int64_t n, int ctx, int64_t max_windows, int64_t *n_windows, int *win_len,
                  dsq_err *err) {
    if (ctx < 2) return dsq_fail(err, DSQ_E_ARG, "eval: window of %d tokens (need >= 2)", ctx);
    if (n < 2)
        return dsq_fail(err, DSQ_E_ARG, "%lld token%s: a window needs at least 2 to score a prediction", (long long)n,
                        n == 1 ? "" : "s");
    int64_t nw = n / ctx;
    *win_len = ctx;
    if (nw == 0) { /* shorter than one window: score what there is */
        nw = 1;
        *win_len = (int)n;
    }
    if (max_windows > 0 && nw > max_windows) nw = max_windows;
    *n_windows = nw;
    return DSQ_OK;
}

int dsq_eval_run(const dsq_weights *w, const int32_t *tok, int64_t n, const dsq_eval_opts *o,
                 dsq_eval_result *r, dsq_err *err) {
    int rc, T;
    int64_t nw;
    dsq_fwd *f = NULL;
    float *logits = NULL;
    double *nll = NULL;
    memset(r, 0, sizeof *r);
    int ctx = o->ctx > 0 ? o->ctx : dsq_eval_default_ctx(w->cfg);
    DSQ_TRY(dsq_eval_plan(n, ctx, o->max_windows, &nw, &T, err));
    dsq_fwd_opts fo = {.max_tokens = T, .n_threads = o->n_threads, .act_fp8 = o->act_fp8};
    DSQ_TRY(dsq_fwd_new(&f, w, &fo, err));
    int V = w->cfg->vocab_size;
    logits = dsq_malloc((size_t)T * (size_t)V * sizeof(float));
    nll = dsq_malloc((size_t)T * sizeof(double));
    if (!logits || !nll) {
        rc = dsq_fail(err, DSQ_E_NOMEM, "eval: out of memory for %d x %d logits", T, V);
        goto fail;
    }
    r->ctx = T;
    for (int64_t wi = 0; wi < nw; wi++) {
        const int32_t *wt = tok + wi * T;
        DSQ_TRY(dsq_fwd_run(f, wt, T, logits, err));
        if (o->on_logits) DSQ_TRY(o->on_logits(o->user, logits, T, V));
        DSQ_TRY(dsq_fwd_nll(f, logits, wt + 1, T - 1, nll, err));
        double s = 0;
        int t0 = o->score_from > 0 && o->score_from < T - 1 ? o->score_from : 0;
        for (int t = t0; t + 1 < T; t++) s += nll[t]; /* in order: reproducible */
        if (wi == 0) r->first_window_loss = s / (T - 1 - t0);
        r->nll_sum += s;
        r->n_predicted += T - 1 - t0;
        r->n_windows++;
        if (o->on_progress) o->on_progress(o->user, wi + 1, nw);
    }
    r->mean_nll = r->nll_sum / (double)r->n_predicted;
    r->ppl = exp(r->mean_nll);
    rc = DSQ_OK;
fail:
    free(logits);
    free(nll);
    dsq_fwd_free(f);
    return rc;
}
