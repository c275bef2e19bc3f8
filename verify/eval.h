/*
 * eval.h -- perplexity of a model over a token file, with the reference
 * forward pass (verify/forward.h).
 *
 * Windows: the tokens are cut into non-overlapping windows of `ctx` tokens;
 * each window is a fresh causal prefill from position 0 and is scored on its
 * ctx - 1 next-token predictions.  A trailing partial window is not scored,
 * so every window sees the same context length (this is how the reference
 * figures of the shared tiny models were computed: 298 windows of 256 over
 * eval.tokens.json, 75990 predictions).  An input shorter than ctx is scored
 * as one window of all its tokens.
 */
#ifndef DSQ_EVAL_H
#define DSQ_EVAL_H

#include "dsq.h"
#include "verify/weights.h"

#include <stdint.h>

/* n pseudo-random token ids for models without text (synthetic
 * checkpoints): out[0] = bos (if >= 0), the rest uniform in [0, vocab) from
 * a fixed xorshift64 sequence, the same on every machine. */
void dsq_eval_random_tokens(int32_t *out, int64_t n, int vocab, int bos);

/* Default window: max_position_embeddings capped at 256 (long enough for a
 * stable figure, short enough to be quick on a CPU). */
int dsq_eval_default_ctx(const dsq_config *cfg);

/* Window plan for n tokens (see above): *n_windows windows of *win_len
 * tokens (max_windows > 0 caps the count).  DSQ_E_ARG if fewer than 2 tokens
 * or ctx < 2. */
int dsq_eval_plan(int64_t n, int ctx, int64_t max_windows, int64_t *n_windows, int *win_len,
                  dsq_err *err);

typedef struct dsq_eval_opts {
    int ctx;             /* window length; <= 0: dsq_eval_default_ctx */
    int64_t max_windows; /* 0: every window */
    int score_from;      /* score only predictions at positions >= this in each
                            window (ctx/2: llama-perplexity's convention); 0: all */
    int n_threads;       /* <= 0: dsq_default_threads() */
    int act_fp8;         /* simulate FP8 activations (forward.h) */
    /* Optional observers, called on the calling thread.  on_logits gets
     * each window's logits [T x V]; a negative return stops the run with that
     * code. */
    int (*on_logits)(void *user, const float *logits, int T, int V);
    void (*on_progress)(void *user, int64_t done, int64_t total);
    void *user;
} dsq_eval_opts;

typedef struct dsq_eval_result {
    int ctx;                  /* window length used */
    int64_t n_windows, n_predicted;
    double nll_sum, mean_nll, ppl;
    double first_window_loss; /* mean NLL of window 0 */
} dsq_eval_result;

int dsq_eval_run(const dsq_weights *w, const int32_t *tok, int64_t n, const dsq_eval_opts *o,
                 dsq_eval_result *r, dsq_err *err);

#endif
