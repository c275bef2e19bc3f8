/*
 * fold.h -- AWQ scales folded into the norm that precedes a group of linear
 * layers.
 *
 * Several weights read the output of one RMS norm (q_a, kv_a and the
 * indexer's wk and weights_proj read input_layernorm; q_b and the indexer's
 * wq_b read q_a_layernorm; kv_b reads kv_a_layernorm; the router, the dense
 * FFN or shared and routed experts' gate and up read post_attention_layernorm).
 * With per-input-channel scales s shared by the whole group,
 *     W x = (W diag(s)) (x / s),   and   x / s = rmsnorm(h) * (g / s),
 * so dividing the norm weight g by s and multiplying every consumer's
 * columns by s leaves the model unchanged in exact arithmetic while the
 * quantized consumers see weights scaled as AWQ wants.  Nothing extra is
 * stored and any reader decodes the result: no colscale arrays.
 */
#ifndef DSQ_CALIB_FOLD_H
#define DSQ_CALIB_FOLD_H

#include "dsq.h"
#include "quant/quant.h"

/* One consumer of the folded input. */
typedef struct dsq_fold_member {
    const float *W;        /* [rows x cols] f32 weights (unscaled) */
    int64_t rows;
    const float *mean_sq;  /* [cols] E[x_j^2] of this consumer's own tokens (routed
                              experts see a subset); NULL: the group's */
    int scheme;            /* destination scheme; float schemes are scaled exactly
                              and add no error */
    int clip_steps;        /* clip search of the quantized scaled weights (0: absmax) */
    float clip_min;
} dsq_fold_member;

/* Search alpha on a grid of n_grid + 1 values in [0, 1] for the group's
 * scales s = dsq_awq_scales(mean_abs, alpha) minimising
 *     sum_m sum_ij msq_mj (W_ij - Q(W diag s)_ij / s_j)^2 / sum_m sum_ij msq_mj W_ij^2
 * over the quantized members (alpha = 0 gives s = 1: plain quantization).
 * s_out[cols] receives the scales (all 1 when alpha = 0 wins), *alpha_out
 * and *err_out (may be NULL) the choice and its error. */
int dsq_fold_search(const dsq_fold_member *m, int n, int64_t cols, const float *mean_abs, const float *mean_sq,
                    int n_grid, float *s_out, float *alpha_out, double *err_out, dsq_err *err);

/* The same search one member at a time (members can be loaded one by one):
 * dsq_fold_accum adds member m's weighted error for every alpha of the grid
 * to num[0..n_grid] and its weighted norm to *den; dsq_fold_pick then
 * chooses as dsq_fold_search does. */
int dsq_fold_accum(const dsq_fold_member *m, int64_t cols, const float *mean_abs, const float *mean_sq, int n_grid,
                   double *num, double *den, dsq_err *err);
void dsq_fold_pick(const double *num, double den, int n_grid, int64_t cols, const float *mean_abs, float *s_out,
                   float *alpha_out, double *err_out);

#endif
