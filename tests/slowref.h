/*
 * slowref.h -- a deliberately slow, obvious DeepSeek-V3.2 forward pass for
 * tests: one token at a time, double accumulators, formulas transcribed from
 * spec deepseek-v32.md §4 without blocking, threads or buffers shared
 * between steps.  verify/forward.c is checked block by block against it.
 */
#ifndef DSQ_SLOWREF_H
#define DSQ_SLOWREF_H

#include "tmodel.h"

#include <stdint.h>

/* RoPE frequencies in double, straight from §4.3. */
void sr_theta(const dsq_config *c, double *theta);
double sr_softmax_scale(const dsq_config *c);
void sr_hadamard(const float *v, int n, float *y);
/* Router of one token; experts by descending biased score, weights. */
void sr_route(const dsq_config *c, const float *z, const float *bias, int32_t *ex, float *w);

/* Attention block of layer l on its normalised input x [T x D] -> out [T x D];
 * sel (optional, [T x T]) receives the mask actually used (1 = attended). */
void sr_attention(const tmodel *m, int l, const float *x, int T, int fp8, float *out, uint8_t *sel);
/* FFN block on x2 [T x D] -> out; for MoE layers also experts/weights
 * [T x k] and unweighted expert outputs eo [T x k x D] (each may be NULL). */
void sr_ffn(const tmodel *m, int l, const float *x2, int T, int fp8, float *out, int32_t *ex,
            float *w, float *eo);
/* Whole model: logits [T x V]; resid (optional) [(L+1) x T x D] residual
 * before layer 0 and after every layer. */
void sr_forward(const tmodel *m, const int32_t *tok, int T, int fp8, float *logits, float *resid);
void sr_rmsnorm(const float *x, const float *w, int n, double eps, float *y);

/* ||a - b|| / ||b|| over n values. */
double sr_relerr(const float *a, const float *b, int64_t n);

#endif
