/*
 * test_forward_ref.c -- acceptance of the forward pass on the trained tiny
 * model in ../shared/models/tiny-v32 against its independently computed
 * reference outputs (reference/README.md there): per-layer residual stream
 * and logits within 1e-4 relative error, indexer top-k sets and router
 * expert sets identical for at least 99.9% of (token, layer) pairs.
 * Skipped when ../shared is absent.
 */
#include "test.h"
#include "pipeline/model.h"
#include "npy.h"
#include "slowref.h"
#include "verify/forward.h"
#include "verify/weights.h"

#include <math.h>
#include <stdlib.h>

static int load(npy *a, const char *dir, const char *name) {
    char why[128];
    if (npy_load(a, t_path(dir, name), why)) {
        fprintf(stderr, "  %s: %s\n", name, why);
        return -1;
    }
    return 0;
}

static double relerr_d(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

/* Does row `got` (k entries, -1 padded) hold the same set as `want`? */
static int same_set(const int32_t *got, const double *want, int k) {
    for (int i = 0; i < k; i++) {
        if (want[i] < 0) continue;
        int found = 0;
        for (int j = 0; j < k; j++) found |= got[j] == (int32_t)want[i];
        if (!found) return 0;
    }
    int ng = 0, nw = 0;
    for (int i = 0; i < k; i++) {
        ng += got[i] >= 0;
        nw += want[i] >= 0;
    }
    return ng == nw;
}

TEST(test_forward_ref_tiny_v32) {
    const char *dir = t_shared_model("tiny-v32");
    if (!dir) SKIP("../shared/models/tiny-v32 absent");
    char ref[600];
    snprintf(ref, sizeof ref, "%s/reference", dir);
    npy ids, hid, lg, topk, rex, rw;
    CHECK(load(&ids, ref, "input_ids.npy") == 0 && load(&hid, ref, "hidden_states.npy") == 0 &&
          load(&lg, ref, "logits.npy") == 0 && load(&topk, ref, "indexer_topk.npy") == 0 &&
          load(&rex, ref, "router_experts.npy") == 0 && load(&rw, ref, "router_weights.npy") == 0);
    dsq_src *ck = NULL;
    dsq_err err = {0};
    dsq_weights w;
    CHECKF(dsq_model_open(&ck, &w, dir, &err) == 0, "%s", err.msg);
    const dsq_config *c = w.cfg;
    int T = (int)ids.n, D = c->hidden_size, V = c->vocab_size, K = c->index_topk;
    int ke = c->n_experts_per_tok, L = c->n_layers;
    CHECK(T == 256 && hid.shape[0] == L + 1 && topk.shape[2] == K && rex.shape[2] == ke);
    int32_t *tok = malloc(sizeof(int32_t) * T);
    float *logits = malloc(sizeof(float) * T * V);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)ids.v[t];
    dsq_fwd_opts o = {.max_tokens = T, .n_threads = 2, .trace = DSQ_TRACE_TOPK};
    dsq_fwd *f = NULL;
    CHECKF(dsq_fwd_new(&f, &w, &o, &err) == 0, "%s", err.msg);
    CHECK(dsq_fwd_begin(f, tok, T, &err) == 0);
    int topk_same = 0, topk_n = 0, route_same = 0, route_n = 0;
    double werr = 0;
    for (int l = 0; l < L; l++) {
        dsq_fwd_view v;
        CHECKF(dsq_fwd_layer(f, &v, &err) == 0, "%s", err.msg);
        double e = relerr_d(v.resid, hid.v + (int64_t)(l + 1) * T * D, (int64_t)T * D);
        fprintf(stderr, "  layer %d: hidden rel err %.2e\n", l, e);
        CHECKF(e < 1e-4, "layer %d hidden state rel err %g", l, e);
        CHECK(v.topk != NULL);
        for (int t = 0; t < T; t++, topk_n++)
            topk_same += same_set(v.topk + (int64_t)t * K, topk.v + ((int64_t)l * T + t) * K, K);
        if (v.experts) {
            int m = l - c->first_k_dense;
            for (int t = 0; t < T; t++, route_n++) {
                const double *want = rex.v + ((int64_t)m * T + t) * ke;
                int same = 1;
                for (int k = 0; k < ke; k++) same &= v.experts[t * ke + k] == (int32_t)want[k];
                route_same += same;
                for (int k = 0; k < ke && same; k++)
                    werr = fmax(werr, fabs(v.weights[t * ke + k] - rw.v[((int64_t)m * T + t) * ke + k]));
            }
        }
    }
    CHECK(dsq_fwd_logits(f, logits, &err) == 0);
    double e = relerr_d(logits, lg.v, (int64_t)T * V);
    fprintf(stderr, "  logits rel err %.2e; indexer sets %d/%d, router sets %d/%d identical; "
                    "max routing weight diff %.1e\n", e, topk_same, topk_n, route_same, route_n, werr);
    CHECKF(e < 1e-4, "logits rel err %g", e);
    CHECKF(topk_same >= 0.999 * topk_n, "indexer sets identical %d/%d", topk_same, topk_n);
    CHECKF(route_same >= 0.999 * route_n, "router sets identical %d/%d", route_same, route_n);
    CHECK(werr < 1e-4);
    /* loss of the first eval window (reference/eval_result.json) */
    double nll = 0;
    for (int t = 0; t + 1 < T; t++) {
        const float *r = logits + (int64_t)t * V;
        double mx = r[0], s = 0;
        for (int i = 1; i < V; i++) mx = fmax(mx, r[i]);
        for (int i = 0; i < V; i++) s += exp(r[i] - mx);
        nll += mx + log(s) - r[tok[t + 1]];
    }
    nll /= T - 1;
    fprintf(stderr, "  first window loss %.9f (reference 4.608680725097656)\n", nll);
    CHECKF(fabs(nll - 4.608680725097656) < 1e-5, "first window loss %.9f", nll);
    dsq_fwd_free(f);
    dsq_src_close(ck);
    free(tok);
    free(logits);
    npy_free(&ids); npy_free(&hid); npy_free(&lg); npy_free(&topk); npy_free(&rex); npy_free(&rw);
}
