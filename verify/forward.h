/*
 * forward.h -- the reference forward pass of DeepSeek-V3.2 (spec
 * deepseek-v32.md §4) in plain f32: embedding, RMSNorm, MLA attention in its
 * non-absorbed form with YaRN RoPE, the DSA lightning indexer and its top-k
 * mask, dense SwiGLU and the sigmoid-routed MoE, final norm and lm_head.
 *
 * How to use it:
 *   1) dsq_fwd_new() on a dsq_weights (verify/weights.h) with the longest
 *      window you will run; it checks every tensor's shape and loads the
 *      small vectors (norms, biases).
 *   2) dsq_fwd_run() runs one causal prefill of T tokens at positions
 *      0..T-1 and writes logits [T x vocab].  Or, to watch the layers:
 *      dsq_fwd_begin(), then dsq_fwd_layer() once per layer (each fills a
 *      dsq_fwd_view of that layer), then dsq_fwd_logits().
 *   3) dsq_fwd_free().
 *
 * Memory is bounded by the window, not the model: weights are fetched
 * through dsq_weights.rows_f32 a tile of rows at a time into per-thread
 * scratch and multiplied against the activations of all T tokens, so each
 * weight tile is dequantized once per window.  Routed experts run only on
 * the tokens routed to them.
 *
 * Work is split over a thread pool by output rows, heads, query rows or
 * experts; each output value is computed by exactly one thread with a fixed
 * summation order, so results are bit-identical for any thread count.
 *
 * Numerics: f32 everywhere (the "fp32 reference" of spec §4.11): no BF16
 * rounding is simulated.  With act_fp8 the inputs of every FP8 linear layer
 * are quantized per token in 128-element groups with power-of-two scales
 * (spec §3.4, §3.6; a short last group when the width is not a multiple of
 * 128), and the indexer's q and k are Hadamard-rotated and quantized per
 * head vector (§4.5), as the official deployment does.  The Revision-B FP8
 * round trip of the KV latent is implied: the latent is exactly kv_b_proj's
 * input, and quantizing it twice gives the same values.
 */
#ifndef DSQ_FORWARD_H
#define DSQ_FORWARD_H

#include "dsq.h"
#include "verify/weights.h"

#include <stdint.h>

typedef struct dsq_fwd dsq_fwd;

/* Items the forward pass keeps for dsq_fwd_view beyond what it needs anyway. */
enum {
    DSQ_TRACE_TOPK = 1 /* indexer selections as sorted lists (T x index_topk ints) */
};

/* Observer of the inputs of the linear layers (calibration).  Called on
 * the calling thread of dsq_fwd_layer / dsq_fwd_run, once per input per
 * layer, with the activations before any FP8 simulation: x is [n x cols].
 * `role` names the first weight that reads x: DSQ_R_ATTN_Q_A (the
 * input_layernorm output, also read by kv_a and the indexer's wk and
 * weights_proj), DSQ_R_ATTN_Q_B (q_a_layernorm output, also the indexer's
 * wq_b), DSQ_R_ATTN_KV_B, DSQ_R_ATTN_O, DSQ_R_DENSE_GATE / DSQ_R_SHEXP_GATE
 * (post_attention_layernorm output, also read by up), DSQ_R_DENSE_DOWN /
 * DSQ_R_SHEXP_DOWN (the SwiGLU product), and per routed expert
 * DSQ_R_EXP_GATE / DSQ_R_EXP_DOWN with only the tokens routed to it
 * (expert >= 0; -1 otherwise). */
typedef void (*dsq_fwd_observe_fn)(void *arg, int layer, dsq_role role, int expert, const float *x,
                                   int n, int cols);

typedef struct dsq_fwd_opts {
    int max_tokens; /* longest window dsq_fwd_run will see (>= 1)        */
    int n_threads;  /* worker threads; <= 0 means dsq_default_threads() */
    int act_fp8;    /* simulate FP8 activation quantization (see above)  */
    unsigned trace; /* DSQ_TRACE_* bits                                  */
    dsq_fwd_observe_fn observe; /* NULL: no observation                  */
    void *observe_arg;
} dsq_fwd_opts;

/* What one layer computed.  Pointers are borrowed from the dsq_fwd and stay
 * valid until its next dsq_fwd_layer / dsq_fwd_begin / dsq_fwd_free. */
typedef struct dsq_fwd_view {
    int layer, n_tokens, hidden;
    const float *resid;    /* [T x D] residual stream after the layer             */
    const float *attn_out; /* [T x D] attention output (o_proj), before the add  */
    const float *ffn_in;   /* [T x D] post_attention_layernorm output             */
    const float *ffn_out;  /* [T x D] dense FFN or MoE output, before the add     */
    /* Indexer selection (needs DSQ_TRACE_TOPK): row t holds the selected key
     * positions by descending index score, ties toward the smaller position,
     * padded with -1.  NULL when every visible key was selected (T <=
     * index_topk, or a model without indexer). */
    const int32_t *topk;   /* [T x topk_k] */
    int topk_k;
    /* MoE layers only; NULL / 0 on dense layers. */
    int n_slots;              /* experts per token                                 */
    const int32_t *experts;   /* [T x n_slots] chosen experts, by descending biased score */
    const float *weights;     /* [T x n_slots] combine weights                     */
    const float *expert_out;  /* [T x n_slots x D] unweighted output of each chosen expert */
    const float *shared_out;  /* [T x D] shared expert output, NULL without one     */
} dsq_fwd_view;

/* Create a forward pass over `w` (which must outlive it).  *out is freed
 * with dsq_fwd_free. */
int dsq_fwd_new(dsq_fwd **out, const dsq_weights *w, const dsq_fwd_opts *opts, dsq_err *err);
void dsq_fwd_free(dsq_fwd *f); /* NULL is a no-op */
const dsq_config *dsq_fwd_config(const dsq_fwd *f);

/* One causal prefill: tok[0..T-1] at positions 0..T-1, 1 <= T <= max_tokens.
 * logits receives T x vocab_size floats (may be NULL to skip the head). */
int dsq_fwd_run(dsq_fwd *f, const int32_t *tok, int T, float *logits, dsq_err *err);

/* Step by step.  dsq_fwd_begin embeds the tokens; dsq_fwd_begin_at instead
 * starts at layer `layer` from a given residual stream [T x D] (the input of
 * that layer).  dsq_fwd_layer runs the next layer and, if view is not NULL,
 * describes it; it returns DSQ_EOF when no layer is left.  dsq_fwd_logits
 * applies the final norm and lm_head once every layer has run. */
int dsq_fwd_begin(dsq_fwd *f, const int32_t *tok, int T, dsq_err *err);
int dsq_fwd_begin_at(dsq_fwd *f, int layer, const float *resid, int T, dsq_err *err);
int dsq_fwd_layer(dsq_fwd *f, dsq_fwd_view *view, dsq_err *err);
int dsq_fwd_logits(dsq_fwd *f, float *logits, dsq_err *err);

/* Run routed expert `expert` of MoE layer `layer` (or its shared expert when
 * expert < 0) alone on n rows x [n x D] (n <= max_tokens), into y [n x D];
 * the same arithmetic as inside the MoE block.  May be called between two
 * dsq_fwd_layer steps: the window state and the last view are left intact. */
int dsq_fwd_expert(dsq_fwd *f, int layer, int expert, const float *x, int n, float *y,
                   dsq_err *err);

/* Negative log-likelihood of each target: nll[t] = -log softmax(logits[t])
 * [next[t]] for t < n (n <= max_tokens), logits [n x vocab], split over the
 * workers (each position by one worker, so the values do not depend on the
 * thread count). */
int dsq_fwd_nll(dsq_fwd *f, const float *logits, const int32_t *next, int n, double *nll,
                dsq_err *err);

/* ---- building blocks, exposed for tests ---------------------------------- */

/* RoPE frequencies theta'[i], i < qk_rope_head_dim/2, with YaRN when
 * cfg->has_yarn and factor > 1 (spec §4.3); fp32 arithmetic as upstream. */
void dsq_fwd_rope_freqs(const dsq_config *cfg, float *theta);
/* MLA softmax scale: d_qk^-1/2, times m(mscale_all_dim)^2 under YaRN. */
double dsq_fwd_softmax_scale(const dsq_config *cfg);
/* Rotate the d-element RoPE vector x (d even) by pos * theta with the
 * interleaved (2i, 2i+1) or half-split (i, i + d/2) pair layout. */
void dsq_fwd_rope(float *x, int d, const float *cos_t, const float *sin_t, int interleaved);
/* y = w * x / sqrt(mean(x^2) + eps) over n elements (y may alias x). */
void dsq_fwd_rmsnorm(const float *x, const float *w, int n, float eps, float *y);
/* y = w * (x - mean) / sqrt(var + eps) + b, biased variance (y may alias x). */
void dsq_fwd_layernorm(const float *x, const float *w, const float *b, int n, float eps, float *y);
/* FP8 activation round trip (spec §3.4, §3.6): per group of `group`
 * consecutive elements (the last may be shorter), amax floored at 1e-4,
 * s = pow2_ceil(amax / 448), y = e4m3(clamp(x / s, +-448)) * s.  y may alias x. */
void dsq_fwd_act_fp8(const float *x, float *y, int64_t n, int group);
/* Orthonormal Sylvester Hadamard transform in place; n a power of two. */
void dsq_fwd_hadamard(float *v, int n);
/* Sigmoid router of one token (spec §4.9): logits z[E] -> k experts (by
 * descending biased score, ties toward the smaller index) and weights.
 * scratch holds 2*E + n_group floats. */
void dsq_fwd_route(const dsq_config *cfg, const float *z, const float *bias, int32_t *experts,
                   float *weights, float *scratch);

#endif
