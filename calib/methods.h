/*
 * methods.h -- calibrated weight quantization: GPTQ (Hessian-based error
 * compensation) and AWQ (activation-aware per-input-channel scaling), on
 * top of the storage schemes of quant/quant.h.  Both take statistics of the
 * layer's input activations (calib/stats.h) and write a destination matrix
 * in the scheme's documented layout, so every reader decodes them as usual.
 */
#ifndef DSQ_CALIB_METHODS_H
#define DSQ_CALIB_METHODS_H

#include "dsq.h"
#include "quant/quant.h"

typedef struct dsq_gptq_opts {
    double damp;     /* added to the Hessian diagonal, relative to its mean (0.01) */
    int act_order;   /* quantize columns by decreasing Hessian diagonal */
    int block;       /* columns per lazy-update block (128) */
    struct dsq_pool *pool; /* rows split over its workers (same result), or NULL */
    int clip_steps;  /* >= 2: each group's scale by a clip-ratio search weighted by
                        the Hessian diagonal (as the mse method, on the updated weights) */
    float clip_min;  /* smallest ratio tried (0: 0.5) */
    int refine;      /* int schemes with group / channel scales: rounds of
                        (code coordinate descent, least-squares scales) on the
                        same damped objective after the GPTQ pass (0: none;
                        ignored for the ggml block schemes) */
} dsq_gptq_opts;

/* GPTQ of one [rows, cols] f32 matrix W with input Hessian H = E[x x^T]
 * ([cols x cols], row-major, symmetric positive semi-definite) into dst
 * (scheme of any non-float kind except the *-tensor ones; data/scale/zero
 * buffers sized by dsq_q_sizes).  Group parameters are computed from the
 * error-updated weights as each group is reached (with act_order, from the
 * original weights of each group: "static groups", so the stored layout is
 * unchanged).  Columns whose Hessian diagonal is 0 (never activated) are
 * quantized plainly.  Allocates O(cols^2) scratch.
 * ggml block schemes (q4_k, iq4_xs, ...): a block's parameters come from
 * the block quantizer run on its error-updated weights with the Hessian
 * diagonal as importance when its first column is reached; in super-blocks
 * each sub-block's integer scale (and min) is chosen again, d and dmin
 * kept, when its first column is; each element then takes the value of the
 * block's grid nearest its updated weight.  With act_order every block is
 * chosen from the original weights first (static groups).  clip_steps,
 * clip_min and refine do not apply to them.
 * *out_err (may be NULL) receives tr(dW H dW^T) / tr(W H W^T). */
int dsq_gptq(const float *W, int64_t rows, int64_t cols, const double *H,
             const dsq_gptq_opts *o, const dsq_qmat *dst, double *out_err, dsq_err *err);

/* dsq_gptq in two parts, for matrices that read the same input (an
 * expert's gate and up): the factor depends only on H and o (damping,
 * act_order: the column order, the Cholesky factor of the damped H^-1;
 * O(cols^2) memory, O(cols^3) work), and apply quantizes one matrix with
 * it, giving exactly the bytes dsq_gptq would.  apply takes the same o
 * (it refuses a factor made with another damp / act_order); H is only read
 * for *out_err and may be NULL when out_err is. */
typedef struct dsq_gptq_factor dsq_gptq_factor;
int dsq_gptq_factor_new(dsq_gptq_factor **out, const double *H, int64_t cols, const dsq_gptq_opts *o, dsq_err *err);
void dsq_gptq_factor_free(dsq_gptq_factor *f); /* NULL ok */
int dsq_gptq_apply(const float *W, int64_t rows, const double *H, const dsq_gptq_factor *f,
                   const dsq_gptq_opts *o, const dsq_qmat *dst, double *out_err, dsq_err *err);

/* The target GPTQ should reproduce when the quantized model's inputs x
 * differ from the reference model's r (asymmetric calibration, as in
 * GPTAQ): the least-squares solution of  min_V sum_t |W r_t - V x_t|^2,
 * V = W C Hd^-1  (C = E[r x^T], Hd = H + damp * mean(diag H) * I), blended
 * as out = W + alpha (V - W).  out may not alias W. */
int dsq_gptq_target(const float *W, int64_t rows, int64_t cols, const double *H, const double *C, double damp,
                    double alpha, float *out, dsq_err *err);

/* AWQ: choose per-input-column scales s_j = m_j^alpha / mean over j (m_j =
 * mean |x_j|), alpha on a grid of n_grid values in [0, 1], quantize
 * W diag(s) (absmax, or the clip search when clip_steps >= 2) and keep the
 * alpha minimising the activation-weighted error
 *     sum_ij msq_j (W_ij - Q(W diag s)_ij / s_j)^2      (msq_j = mean x_j^2).
 * dst receives the quantized W diag(s); colscale[cols] receives 1/s_j, the
 * multiplier a reader applies to column j after dequantizing.
 * *alpha_out receives the chosen alpha (0 means plain quantization). */
int dsq_awq(const float *W, int64_t rows, int64_t cols, const float *mean_abs, const float *mean_sq,
            int n_grid, int clip_steps, const dsq_qmat *dst, float *colscale, float *alpha_out,
            double *out_err, dsq_err *err);

/* AWQ channel scales: s_j = max(m_j, 1e-8)^alpha, normalised so that
 * sqrt(max_j s_j * min_j s_j) = 1 (keeps W diag(s) in the range of W). */
void dsq_awq_scales(const float *mean_abs, int64_t cols, float alpha, float *s);

/* Activation-weighted relative error of a quantized matrix against W:
 * sum_ij msq_j (W_ij - Wq_ij)^2 / sum_ij msq_j W_ij^2 (colscale may be NULL). */
double dsq_weighted_err(const float *W, const dsq_qmat *q, const float *colscale, const float *mean_sq);

#endif
