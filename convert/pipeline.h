/*
 * pipeline.h -- the streaming job behind `dsq convert` and `dsq quant`:
 * read a checkpoint (folder or archive) or a .dsq container tensor by
 * tensor, store or quantize each one as the recipe says, and write one .dsq
 * container.  Memory stays near the largest tensor: nothing is held beyond
 * the tensor being processed.
 */
#ifndef DSQ_PIPELINE_H
#define DSQ_PIPELINE_H

#include "convert/recipe.h"

typedef struct dsq_pipe_opts {
    const char *src, *out;
    const dsq_recipe *recipe;   /* "lossless" preset for convert */
    const struct dsq_cstats *calib; /* activation statistics (dsq quant --calib), or NULL */
    int force, drop_mtp, threads;
    int progress;               /* draw a progress line on stderr */
    int measure_error;          /* compute per-tensor weight error */
    /* called after each source tensor (may be NULL) */
    void (*on_tensor)(void *arg, uint64_t done_bytes, uint64_t total_bytes);
    void *on_tensor_arg;
    int argc;                   /* command line, for provenance */
    char **argv;
} dsq_pipe_opts;

typedef struct dsq_pipe_tensor {
    char name[160];
    dsq_role role;
    int scheme, experts;
    int64_t params;
    uint64_t bytes;             /* stored bytes (data + scale + zero) */
    double rel_err, max_abs;    /* -1 when not measured (copied tensors: 0) */
} dsq_pipe_tensor;

typedef struct dsq_pipe_report {
    uint64_t src_bytes, out_bytes;  /* tensor bytes read / container file size */
    uint64_t out_tensor_bytes;
    int64_t params;
    double seconds;
    uint64_t role_params[DSQ_R_COUNT], role_bytes[DSQ_R_COUNT];
    dsq_pipe_tensor *t;             /* from malloc; free with dsq_pipe_report_free */
    int n;
} dsq_pipe_report;

int dsq_pipeline_run(const dsq_pipe_opts *o, dsq_pipe_report *rep, dsq_err *err);
void dsq_pipe_report_free(dsq_pipe_report *rep);

#endif
