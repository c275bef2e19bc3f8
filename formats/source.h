/*
 * source.h -- one interface to every model dsq reads, whatever stores it.
 *
 * A model source is opened from a path; each backend bids on it (the first
 * bytes, or what kind of file or folder it is) and the highest bid opens it:
 *
 *   backend   reads                                               file
 *   dsq       a .dsq container (docs/FORMAT.md)                   src_dsq.c
 *   ckpt      an upstream checkpoint: a folder of safetensors     src_ckpt.c
 *             shards, one .safetensors file, or a .tar / .zip
 *             archive of such a folder (read forward only)
 *
 * Every source gives the same things:
 *   - the validated configuration and the verbatim config.json text;
 *   - side files that travel with the model (tokenizer.json,
 *     tokenizer_config.json, generation_config.json);
 *   - a list of tensors in storage order, each one matrix (or vector) in
 *     upstream naming: routed experts are one tensor per expert
 *     ("model.layers.3.mlp.experts.7.up_proj.weight") whether the file stores
 *     them one by one or stacked.  Block-scale companions (*_scale_inv) are
 *     not tensors of their own: they are the scale array of their weight;
 *   - the stored bytes of a tensor as a quant view (dsq_qmat: scheme, data,
 *     scale, zero point) plus optional column multipliers, either streamed
 *     in storage order (any source) or at random (sources with random
 *     access: everything but archives);
 *   - f32 rows of any tensor (random access), for the forward pass.
 *
 * Outline:
 *   1) dsq_src_open(&s, path, 0, &err)
 *   2) dsq_src_config(s), dsq_src_n_tensors(s), dsq_src_tensor(s, i)
 *   3) either dsq_src_next(s, &i, &err) until DSQ_EOF with dsq_src_data()
 *      for the tensors wanted, or dsq_src_qmat(s, i, ...) in any order
 *   4) dsq_src_close(s)
 */
#ifndef DSQ_SOURCE_H
#define DSQ_SOURCE_H

#include "dsq.h"
#include "quant/quant.h"

/* One tensor of a source.  Strings are owned by the source. */
typedef struct dsq_stensor {
    const char *name;      /* upstream name (routed experts: one per expert) */
    dsq_role role;
    int layer, expert;     /* -1 when not applicable */
    int is_mtp;            /* layer >= num_hidden_layers */
    int n_dims;            /* 1 or 2 (upstream shape of this tensor) */
    int64_t shape[4];
    int64_t rows, cols;    /* as a matrix; a vector is 1 x n */
    int scheme;            /* dsq_qtype of the stored bytes, -1 when no scheme
                              describes them (dsq_src_scheme says why) */
    dsq_dtype dtype;       /* checkpoint element type (DSQ_DT_INVALID for .dsq) */
    int colscale;          /* has column multipliers ([cols] f32) */
    uint64_t nbytes;       /* stored bytes, scales and multipliers included */
    const char *recipe;    /* .dsq: the recipe object that stored it, else NULL */
} dsq_stensor;

typedef struct dsq_src dsq_src;

enum { DSQ_SRC_ALLOW_UNKNOWN = 1 }; /* keep tensors outside the DeepSeek grammar */

/* Open the model at path.  On success *out must be closed with
 * dsq_src_close. */
int dsq_src_open(dsq_src **out, const char *path, int flags, dsq_err *err);
void dsq_src_close(dsq_src *s); /* NULL is a no-op */

const char *dsq_src_path(const dsq_src *s);
/* "dsq", "folder" (a checkpoint folder or one .safetensors file) or
 * "archive". */
const char *dsq_src_kind(const dsq_src *s);
int dsq_src_random_access(const dsq_src *s);
const dsq_config *dsq_src_config(const dsq_src *s);
/* The config.json text exactly as the source holds it (NUL-terminated). */
const char *dsq_src_config_json(const dsq_src *s, size_t *len);
/* A side file's bytes (NUL-terminated), or NULL when the model has none.
 * Borrowed until dsq_src_close.  A damaged side file gives NULL with *err
 * set; err may be NULL when the caller only asks whether it is there. */
const void *dsq_src_file(dsq_src *s, const char *name, size_t *len, dsq_err *err);
/* The files the model was read from, for provenance: path i (the source
 * itself for single-file sources; the side files present and every shard
 * of a folder), DSQ_EOF past the last. */
int dsq_src_part(const dsq_src *s, int i, char *path, size_t cap);

int dsq_src_n_tensors(const dsq_src *s);
const dsq_stensor *dsq_src_tensor(const dsq_src *s, int i);
int dsq_src_find(const dsq_src *s, const char *name); /* index or -1 */
/* t->scheme, or the error saying why the bytes of tensor i fit no scheme. */
int dsq_src_scheme(const dsq_src *s, int i, dsq_err *err);

/* Random access: the stored bytes of tensor i (pointers into the source,
 * valid until dsq_src_close) and its column multipliers ([cols]
 * little-endian f32, possibly unaligned) or NULL.  DSQ_E_UNSUPPORTED for
 * archives. */
int dsq_src_qmat(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err);
/* Rows [r0, r1) of tensor i (a vector: r0 = 0, r1 = 1) as f32, column
 * multipliers applied; (r1 - r0) x cols, row-major.  Thread-safe. */
int dsq_src_rows_f32(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err);

/* Streaming in storage order, never seeking back (archives are read
 * forward once; mapped pages already streamed are released).  One stream
 * per source at a time: next gives the index of the next tensor (DSQ_OK) or
 * DSQ_EOF; data gives the current tensor's bytes, valid until the next
 * call of next.  Tensors whose data is never asked for cost no reading. */
int dsq_src_next(dsq_src *s, int *i, dsq_err *err);
int dsq_src_data(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err);

/* The backend's own handle, for the commands that report what only that
 * format has (inspect's FP8 scale statistics, check's checksums); NULL
 * when the source is of another kind. */
dsq_ckpt *dsq_src_ckpt(const dsq_src *s);
struct dsq_ctr *dsq_src_ctr(const dsq_src *s);

#endif
