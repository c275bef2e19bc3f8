/*
 * stats.h -- activation statistics of the inputs of every linear layer,
 * collected by `dsq calib` and consumed by `dsq quant --calib`.
 *
 * One dsq_cstat per weight (upstream name; routed experts per expert,
 * "model.layers.L.mlp.experts.E.up_proj.weight"): per input column the
 * sum of x^2, the sum of |x|, the max |x|, the token count, and optionally
 * the Hessian sum of x x^T.  Weights that read the same input (q_a, kv_a and
 * the indexer's wk and weights_proj; gate and up) share one record through
 * an alias.  Saved as a .dsqcal file, documented in docs/CALIB.md.
 */
#ifndef DSQ_CALIB_STATS_H
#define DSQ_CALIB_STATS_H

#include "dsq.h"

typedef struct dsq_cstat {
    char name[160];
    int64_t cols;
    int64_t count;      /* tokens accumulated */
    double *sum_sq;     /* [cols], from malloc */
    double *sum_abs;    /* [cols] */
    float *max_abs;     /* [cols] */
    double *hess;       /* [cols x cols] sum of x x^T, or NULL */
    double *xcov;       /* [cols x cols] sum of r x^T, r the same input computed by
                           the unquantized model (dsq_cstat_add_ref), or NULL */
    float *fold;        /* [cols] AWQ scales folded into the norm before this input
                           (calib/fold.h), or NULL */
    int fallback;       /* 1: replaced by statistics pooled over the layer's experts */
} dsq_cstat;

typedef struct dsq_cstats dsq_cstats;

dsq_cstats *dsq_cstats_new(void);
void dsq_cstats_free(dsq_cstats *cs);
/* Free every record and alias; cs stays usable. */
void dsq_cstats_clear(dsq_cstats *cs);
/* Move every record and alias of src to the end of dst (src is left empty).
 * DSQ_E_NOMEM leaves both unchanged. */
int dsq_cstats_move(dsq_cstats *dst, dsq_cstats *src);
int dsq_cstats_count(const dsq_cstats *cs);
dsq_cstat *dsq_cstats_at(dsq_cstats *cs, int i);
/* The record for `name` (created with `cols` columns and, if want_hess, a
 * Hessian), or NULL when out of memory / cols differs. */
dsq_cstat *dsq_cstats_get(dsq_cstats *cs, const char *name, int64_t cols, int want_hess);
/* Record `alias` as reading the same input as `target`. */
int dsq_cstats_alias(dsq_cstats *cs, const char *alias, const char *target);
/* Lookup through aliases; NULL if absent. */
const dsq_cstat *dsq_cstats_find(const dsq_cstats *cs, const char *name);

/* Accumulate n rows x [n x cols] of activations. */
void dsq_cstat_add(dsq_cstat *s, const float *x, int64_t n);

/* Accumulate the cross moment sum r x^T of n token pairs (r: the input as
 * the reference model computes it, x: as the partly quantized model does;
 * both [n x cols]).  The record must have a Hessian; the moment is
 * allocated on first use.  DSQ_E_NOMEM / DSQ_E_ARG. */
int dsq_cstat_add_ref(dsq_cstat *s, const float *r, const float *x, int64_t n);

/* Experts of MoE layers whose count is below min_tokens get the statistics
 * pooled over every expert of the same projection and layer (sums added,
 * counts added).  Returns the number of experts replaced; their names are
 * marked with fallback = 1. */
int dsq_cstats_pool_starved(dsq_cstats *cs, int64_t min_tokens);

/* Derived values.  A .dsqcal file stores f32 means; quantizers read the
 * means exactly as stored, so that a record in memory (dsq calib) and the
 * same record loaded from its file (dsq quant --calib) quantize alike.
 * Per column (n = cols): the mean of x^2 and of |x| (1 without tokens). */
void dsq_cstat_mean_sq(const dsq_cstat *s, float *out);
void dsq_cstat_mean_abs(const dsq_cstat *s, float *out);
/* Mean Hessian E[x x^T] (cols x cols doubles): exact, and as stored (each
 * value rounded to f32, what quantizers use).  DSQ_E_NOTFOUND without one. */
int dsq_cstat_hessian(const dsq_cstat *s, double *out);
int dsq_cstat_hessian_stored(const dsq_cstat *s, double *out);
/* Mean cross moment E[r x^T] as stored (f32-rounded); DSQ_E_NOTFOUND without one. */
int dsq_cstat_xcov(const dsq_cstat *s, double *out);

/* .dsqcal files: a .dsq container of f32 statistics (docs/CALIB.md).
 * meta_json: extra metadata object text (may be NULL). */
int dsq_cstats_save(const dsq_cstats *cs, const char *path, const char *config_json,
                    const char *meta_json, int force, dsq_err *err);

/* The same file written in pieces, so statistics can be freed as soon as
 * they are used: open (creates the temporary file, fails early on a bad or
 * existing path), add the records and aliases of cs as often as needed
 * (each record once), then finish (metadata, rename) or abort (removes the
 * temporary file).  finish and abort free the writer. */
typedef struct dsq_cstats_writer dsq_cstats_writer;
int dsq_cstats_writer_open(dsq_cstats_writer **out, const char *path, int force, dsq_err *err);
int dsq_cstats_writer_add(dsq_cstats_writer *w, const dsq_cstats *cs, dsq_err *err);
int dsq_cstats_writer_finish(dsq_cstats_writer *w, const char *config_json, const char *meta_json, dsq_err *err);
void dsq_cstats_writer_abort(dsq_cstats_writer *w); /* NULL ok */
int dsq_cstats_load(dsq_cstats **out, const char *path, dsq_err *err);

#endif
