/*
 * qmatrix.h -- quantize one matrix the way a recipe says: the scheme and
 * method a tensor gets (shared by `dsq quant` and `dsq calib`, so both make
 * the same choice) and the quantization itself, plain, clip-searched,
 * GPTQ or AWQ.
 */
#ifndef DSQ_QMATRIX_H
#define DSQ_QMATRIX_H

#include "calib/stats.h"
#include "pipeline/recipe.h"
#include "quant/quant.h"

/* FOLD_*: AWQ scales folded into the norm before a group of weights
 * (calib/fold.h): the norm divided by them (FOLD_NORM, stored f32), float
 * consumers multiplied by them exactly (FOLD_SCALE, stored f32), quantized
 * consumers multiplied then quantized (AWQ_FOLD, no colscale). */
enum { DSQ_METHOD_PLAIN = 0, DSQ_METHOD_MSE, DSQ_METHOD_GPTQ, DSQ_METHOD_AWQ, DSQ_METHOD_AWQ_GPTQ,
       DSQ_METHOD_FOLD_NORM, DSQ_METHOD_FOLD_SCALE, DSQ_METHOD_AWQ_FOLD };

/* Methods that cannot run without calibration statistics. */
static inline int dsq_method_needs_stats(int method) {
    return method == DSQ_METHOD_GPTQ || method == DSQ_METHOD_AWQ || method == DSQ_METHOD_AWQ_GPTQ || method >= DSQ_METHOD_FOLD_NORM;
}
static inline int dsq_method_is_fold(int method) { return method >= DSQ_METHOD_FOLD_NORM; }
/* Methods whose result carries per-column multipliers (colscale). */
static inline int dsq_method_has_colscale(int method) { return method == DSQ_METHOD_AWQ || method == DSQ_METHOD_AWQ_GPTQ; }

typedef struct dsq_method {
    int scheme;         /* destination scheme (dsq_qtype) */
    int fallback_from;  /* the ggml type asked for when its block did not fit the rows, else -1 */
    int method;         /* DSQ_METHOD_* */
    int copy;           /* scheme equals the source's and nothing to compute */
    dsq_qopts opts;     /* clip search (imp filled per matrix from statistics) */
    double damp;        /* gptq */
    int act_order;      /* gptq */
    int refine;         /* gptq */
    double ref_target;  /* gptq */
    int grid;           /* awq */
    char recipe[256];   /* JSON of the decision, for the container */
} dsq_method;

/* Scheme and method of tensor `name` (role, layer; rows of `cols` columns)
 * whose source is stored as src_scheme.  A ggml block type whose block does
 * not divide the rows falls back as llama.cpp's tensor_type_fallback does
 * (dsq_ggml_fallback; m->fallback_from says what was asked, the method
 * stays).  Errors for methods that need statistics when have_calib is 0,
 * and for impossible combinations. */
int dsq_method_for(const dsq_recipe *r, const char *name, dsq_role role, int layer, int64_t cols, int src_scheme,
                    int have_calib, dsq_method *m, dsq_err *err);
/* The scheme rows of `cols` columns store instead of ggml block type s:
 * Q2_K / Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, IQ4_XS ->
 * IQ4_NL, then F16 when even that block does not divide them; s itself
 * for every other scheme. */
int dsq_ggml_fallback(int s, int64_t cols);

/* AWQ folding.  The norm whose output weight `role` reads when that input
 * can take folded scales (DSQ_R_UNKNOWN otherwise). */
dsq_role dsq_fold_norm_of(dsq_role role);
/* The projections reading norm `norm` of main layer `layer` (routed
 * experts one by one: upstream name per expert, match = their stacked name
 * recipes see).  Returns their number (*out from malloc) or -1. */
typedef struct dsq_fold_name { char name[160], match[160]; dsq_role role; } dsq_fold_name;
int dsq_fold_members(const dsq_config *cfg, dsq_role norm, int layer, dsq_fold_name **out);
/* Is the group reading norm `norm` of main layer `layer` folded under r:
 * every projection reading it has an awq rule with a quantized scheme (the
 * router and the indexer's weights_proj are scaled exactly in f32). */
int dsq_fold_group(const dsq_recipe *r, const dsq_config *cfg, dsq_role norm, int layer);
/* Name of the statistics record of that group's input, which carries the
 * folded scales; 0, or -1 when the layer has no such group. */
int dsq_fold_record(const dsq_config *cfg, dsq_role norm, int layer, char *out, size_t n);
/* Turn m (from dsq_method_for) into its folded form when tensor (role,
 * layer) belongs to a folded group; *rec receives the record holding the
 * scales (unchanged otherwise). */
void dsq_method_fold(const dsq_recipe *r, const dsq_config *cfg, dsq_role role, int layer, dsq_method *m,
                      char *rec, size_t n);

/* Downgrade a calibrated method to plain absmax (tensors calibration never
 * sees, such as the MTP layer's), rewriting the recipe note. */
void dsq_method_uncalibrated(dsq_method *m, int src_scheme);

/* Reusable scratch of dsq_quantize_matrix. */
typedef struct dsq_matrix_scratch {
    float *wf;          /* f32 copy of the source */
    uint64_t wf_cap;
    float *imp;         /* mean x^2 then mean |x|, 2 x cols */
    uint64_t imp_cap;
    /* the GPTQ factor of the last Hessian seen, reused when the next matrix
     * reads the same input (gate then up): keyed by the Hessian's content */
    struct dsq_gptq_factor *gf;
    uint64_t gf_key;
    int64_t gf_cols;
    double gf_damp;
    int gf_act, gf_refine;
} dsq_matrix_scratch;
void dsq_matrix_scratch_deinit(dsq_matrix_scratch *w);

/* Quantize src (its values times colscale_in[j] when not NULL) into dst,
 * whose arrays the caller sized with dsq_q_sizes.  st: the statistics of the
 * matrix's input (needed by gptq/awq, optional for mse).  colscale_out
 * ([cols] f32) receives the column multipliers of an AWQ result. */
int dsq_quantize_matrix(struct dsq_pool *pool, const dsq_method *m, const dsq_qmat *src,
                        const void *colscale_in, const dsq_cstat *st, const dsq_qmat *dst,
                        float *colscale_out, dsq_matrix_scratch *w, const char *what, dsq_err *err);

#endif
