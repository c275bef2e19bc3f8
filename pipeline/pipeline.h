/*
 * pipeline.h -- the streaming job behind `dsq convert` and `dsq quant`:
 * read any model source (formats/source.h) tensor by tensor in storage
 * order, store or quantize each one as the recipe says, and write one
 * output model (formats/writer.h).  Memory stays near the largest tensor: nothing is held beyond
 * the tensor being processed.
 */
#ifndef DSQ_PIPELINE_H
#define DSQ_PIPELINE_H

#include "pipeline/recipe.h"
#include "quant/quant.h"

typedef struct dsq_pipe_opts {
    const char *src, *out;
    int out_format;             /* DSQ_OUT_* of formats/writer.h; 0: from the output's name */
    uint64_t shard_size;        /* folder outputs: bytes per shard (0: 5 GB) */
    const dsq_recipe *recipe;   /* "lossless" preset for convert */
    const struct dsq_cstats *calib; /* activation statistics (dsq quant --calib), or NULL */
    int force, drop_mtp, threads;
    int measure_error;          /* compute per-tensor weight error */
    int allow_nonfinite;        /* copy NaN / inf weights unchanged instead of refusing them
                                   (quantizing them is refused either way) */
    int keep_twins;             /* store every tensor whose scheme GGUF holds exactly (ggml
                                   blocks, int4-g32-sym) as that twin, whatever the recipe's
                                   type (dsq export) */
    /* called after each source tensor is stored, and once at the end
     * (stage "quant", bytes of the source); may be NULL */
    dsq_progress_fn on_progress;
    void *on_progress_arg;
    int argc;                   /* command line, for provenance */
    char **argv;
} dsq_pipe_opts;

typedef struct dsq_pipe_tensor {
    char name[160];
    dsq_role role;
    int scheme, experts;
    int fallback_from;          /* scheme asked for whose blocks did not fit, or -1 */
    int converted_from;         /* scheme asked for (or stored) that the output format has no form of, or -1 */
    int64_t params;
    uint64_t bytes;             /* stored bytes (data + scale + zero) */
    double rel_err, max_abs;    /* -1 when not measured (copied tensors: 0) */
    int stored;                 /* DSQ_STORED_* */
} dsq_pipe_tensor;

/* How a tensor was stored: bit for bit, losslessly into its exact twin
 * (dsq_q_transcode), quantized (re-rounded) from its values, or quantized
 * because its twin could not hold it (a bf16 scale outside f16). */
enum { DSQ_STORED_QUANTIZED = 0, DSQ_STORED_COPIED, DSQ_STORED_TRANSCODED, DSQ_STORED_REROUNDED };

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

/* The same container written in any order, for a job that quantizes the
 * weights itself (dsq calib --quant-out): the tensors, their schemes and
 * methods are planned from the recipe exactly as dsq_pipeline_run plans
 * them with statistics (o->calib itself is not used: statistics-driven
 * matrices are handed in by put), and the output file (temporary until
 * finish) is laid out at open.
 *   put   stores a matrix the caller quantized: weight `name` in upstream
 *         naming (routed experts per expert), in the planned scheme, with
 *         colscale ([cols] f32) exactly when the plan has column multipliers;
 *   fill  quantizes from the source, as dsq quant would, every slice not put
 *         yet of main layer `layer`, or with layer < 0 of every tensor outside
 *         the main layers (embedding, final norm, head, MTP layers);
 *   finish writes the metadata (extra_meta: JSON object text whose members
 *         are added, or NULL) and renames the file into place; it fails if
 *         any slice was never written.  finish and abort free the handle;
 *         abort removes the temporary file.
 * src: the source model (random access), open for the whole life of the
 * handle. */
typedef struct dsq_quantjob dsq_quantjob;
struct dsq_src;
int dsq_quantjob_open(dsq_quantjob **out, const dsq_pipe_opts *o, struct dsq_src *src, dsq_err *err);
int dsq_quantjob_put(dsq_quantjob *q, const char *name, const dsq_qmat *m, const float *colscale, dsq_err *err);
int dsq_quantjob_fill(dsq_quantjob *q, int layer, dsq_err *err);
int dsq_quantjob_finish(dsq_quantjob *q, const char *extra_meta, dsq_err *err);
void dsq_quantjob_abort(dsq_quantjob *q); /* NULL ok */

#endif
