/*
 * calib_run.h -- the calibration job behind `dsq calib`: run the reference
 * forward pass over calibration windows layer by layer, collect the input
 * statistics of every linear layer (routed experts from their own tokens),
 * quantize the layer as the recipe says with those statistics, and feed the
 * next layer with the output of the quantized layer (as sequential GPTQ
 * pipelines do).  Memory: the residual stream of the windows, one layer's
 * quantized weights and one stage's statistics.
 */
#ifndef DSQ_CALIB_RUN_H
#define DSQ_CALIB_RUN_H

#include "calib/stats.h"
#include "pipeline/recipe.h"

struct dsq_src;
typedef struct dsq_calib_opts {
    const struct dsq_src *src; /* the model, opened by the caller (formats/source.h) */
    const dsq_recipe *recipe;
    const int32_t *tokens;
    size_t n_tokens;
    int ctx;            /* tokens per window (0: 256 capped by the model) */
    int samples;        /* windows used (0: as many as the tokens give) */
    int threads;
    int64_t min_tokens; /* routed experts with fewer tokens use pooled statistics */
    int act_fp8;
    int hessian;        /* -1: where a gptq rule needs one; 0 never; 1 always */
    dsq_progress_fn on_progress; /* after each layer (stage "calib"); may be NULL */
    void *on_progress_arg;
    struct dsq_cstats_writer *cal_out; /* each stage's statistics appended here, or NULL */
    struct dsq_quantjob *quant_out;        /* the quantized model written here as layers finish,
                                          or NULL (pipeline/pipeline.h; finished by the caller) */
} dsq_calib_opts;

typedef struct dsq_calib_report {
    int layers, windows, ctx;
    int64_t tokens;
    double seconds, layer_seconds[512];
    int n_fallback;
    char fallback[256][96]; /* first 256 pooled experts */
} dsq_calib_report;

/* Statistics live only as long as calibration needs them: each stage's
 * records are created, used to quantize that stage's weights, appended to
 * o->cal_out and freed, so memory holds at most one stage's Hessians.  With
 * out not NULL every record is also kept and returned in *out (small models
 * and tests; free with dsq_cstats_free). */
int dsq_calib_run(const dsq_calib_opts *o, dsq_cstats **out, dsq_calib_report *rep, dsq_err *err);

#endif
