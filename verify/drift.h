/*
 * drift.h -- how far a candidate model (e.g. a quantized one) drifts from a
 * reference, measured by running both through the reference forward pass in
 * lockstep on the same token windows (windows as in verify/eval.h).
 *
 * Per layer: relative L2 error and cosine similarity of the residual stream
 * after the layer; relative error of the attention output and of the FFN/MoE
 * output; the indexer's mean recall of REF's top-k set within CAND's; for
 * MoE layers the fraction of tokens routed to the identical expert set, the
 * mean set overlap and the routing-weight error.  Per expert: the output
 * error of CAND's expert against REF's on REF's own inputs (so it isolates
 * that expert's weights from upstream drift).  Overall: perplexity of both,
 * KL(REF || CAND) per predicted position (mean and 99th percentile), top-1
 * agreement.
 *
 * Attribution (optional): for every layer and part (attention with its
 * indexer; dense FFN; or shared expert and routed experts with the router
 * apart), REF is run with only that part's weights taken from CAND, from the
 * layer's REF input onwards, and compared with REF: delta perplexity and mean
 * KL.  Norm vectors always come from REF.
 *
 * Definitions (sums run over every token of every window):
 *   relerr(a, b)   = sqrt(sum |a - b|^2 / sum |b|^2), b the REF side
 *   cosine         = mean over tokens of a.b / (|a| |b|)
 *   recall         = mean over queries with a sparse selection (t+1 >
 *                    index_topk) of |REF set & CAND set| / |REF set|
 *   route weight error = mean over tokens of sum_e |w_ref(e) - w_cand(e)| /
 *                    sum_e w_ref(e), with w = 0 for experts not chosen
 */
#ifndef DSQ_DRIFT_H
#define DSQ_DRIFT_H

#include "dsq.h"
#include "verify/weights.h"

#include <stdint.h>

typedef struct dsq_drift_layer {
    int layer, moe;
    double resid_relerr, resid_cos, attn_relerr, ffn_relerr;
    double idx_recall;     /* NaN when no query had a sparse selection */
    int64_t idx_queries;
    double route_same, route_overlap, route_werr; /* NaN on dense layers */
    int64_t route_tokens;
} dsq_drift_layer;

typedef struct dsq_drift_expert {
    int layer, expert;  /* expert -1: the shared expert */
    int64_t tokens;     /* REF tokens routed to it (all tokens for the shared one) */
    double relerr;
} dsq_drift_expert;

enum { DSQ_PART_ATTN = 0, DSQ_PART_FFN, DSQ_PART_SHARED, DSQ_PART_ROUTED, DSQ_PART_COUNT };
const char *dsq_drift_part_name(int part); /* "attn", "ffn", "shared", "routed" */

typedef struct dsq_drift_part {
    int layer, part;
    double ppl, dppl, kl_mean; /* REF with this part from CAND */
} dsq_drift_part;

typedef struct dsq_drift_report {
    int n_layers, ctx, act_fp8;
    int64_t n_windows, n_positions;
    dsq_drift_layer *layers;   /* [n_layers] */
    dsq_drift_expert *experts; /* [n_experts], layer then expert order */
    int n_experts;
    double nll_ref, nll_cand, ppl_ref, ppl_cand, kl_mean, kl_p99, top1;
    dsq_drift_part *parts;     /* [n_parts], by decreasing dppl */
    int n_parts;
} dsq_drift_report;

typedef struct dsq_drift_opts {
    int ctx;             /* <= 0: dsq_eval_default_ctx of REF */
    int64_t max_windows; /* 0: all */
    int n_threads;
    int act_fp8;         /* both models with FP8 activation simulation */
    int experts;         /* per-expert errors */
    int attribution;
    int score_from;      /* score only predictions at positions >= this in each
                            window (ctx/2 is llama-perplexity's convention); 0: all */
    void (*on_progress)(void *user, int64_t done, int64_t total);
    void *user;
} dsq_drift_opts;

/* Run the comparison.  Both models must share every shape of the
 * configuration.  *out is freed with dsq_drift_free. */
int dsq_drift_run(const dsq_weights *ref, const dsq_weights *cand, const int32_t *tok, int64_t n,
                  const dsq_drift_opts *o, dsq_drift_report **out, dsq_err *err);
void dsq_drift_free(dsq_drift_report *r);

#endif
