/*
 * writer.h -- one interface to every model file dsq writes.  A job
 * declares every tensor first (name, role, shape, storage scheme, column
 * multipliers), fixes the layout, then hands over each tensor's quantized
 * bytes as a quant view (dsq_qmat) in any order -- routed experts one by
 * one into their stacked tensor -- and finishes with the metadata.  The
 * output appears complete under its name at finish, or not at all.
 *
 *   format    writes                                   file
 *   dsq       a .dsq container (FORMAT.md)             wr_dsq.c (over container.c)
 *   gguf      a GGUF v3 file llama.cpp loads           wr_gguf.c (over gguf.c)
 *             (deepseek32 with the indexer, else deepseek2; tensor names,
 *             metadata and tokenizer as llama.cpp's converter writes them)
 *   ct        a Hugging Face folder in compressed-tensors  wr_hf.c
 *             (what vLLM / SGLang serve from llm-compressor's files)
 *   hf        a Hugging Face folder in DeepSeek's own FP8  wr_hf.c
 *             release format (E4M3, power-of-two block scales)
 *
 * Outline:
 *   1) dsq_mwriter_open(&w, path, DSQ_OUT_AUTO, force, &err)
 *   2) dsq_mwriter_add_tensor() for every tensor, dsq_mwriter_add_file()
 *      for side files (tokenizer.json ...), then dsq_mwriter_layout()
 *   3) dsq_mwriter_put() for every tensor (expert) slice, in any order
 *   4) dsq_mwriter_finish(w, meta_json, &err), or dsq_mwriter_abort(w)
 */
#ifndef DSQ_WRITER_H
#define DSQ_WRITER_H

#include "dsq.h"
#include "quant/quant.h"

enum { DSQ_OUT_AUTO = 0, DSQ_OUT_DSQ = 1, DSQ_OUT_GGUF = 2, DSQ_OUT_CT = 3, DSQ_OUT_HF = 4 };

/* Parts of a tensor that a format stores as several: GGUF keeps MLA's
 * kv_b_proj [H*(nope+v), kv_lora] as attn_k_b [H, kv_lora, nope] (the key
 * half of each head, transposed) and attn_v_b [H, v, kv_lora]. */
enum { DSQ_PART_WHOLE = 0, DSQ_PART_K_B = 1, DSQ_PART_V_B = 2 };

/* A tensor of the output. */
typedef struct dsq_mw_tensor {
    const char *name;      /* upstream name; stacked routed experts:
                              "model.layers.L.mlp.experts.up_proj.weight" */
    dsq_role role;
    int layer, is_mtp;
    int n_dims;
    int64_t shape[4];      /* logical shape ([experts, out, in] when stacked) */
    int experts;           /* 0: not stacked */
    int scheme;            /* dsq_qtype */
    int64_t rows, cols;    /* one (expert's) matrix; a vector is 1 x n */
    int colscale;          /* has column multipliers ([cols] f32) */
    const char *recipe;    /* JSON object text of the rule that chose it, or NULL */
    int part;              /* DSQ_PART_*: which part of the upstream tensor */
} dsq_mw_tensor;

typedef struct dsq_mwriter dsq_mwriter;

/* Open path for writing (format DSQ_OUT_AUTO: from the name, "*.gguf" is
 * GGUF, a name ending in '/' a compressed-tensors folder, anything else a
 * .dsq container) for the model configured as cfg (borrowed until finish).
 * An existing path is refused unless force.  shard_size: bytes per shard
 * of the folder formats (0: 5 GB, Hugging Face's default). */
int dsq_mwriter_open(dsq_mwriter **out, const char *path, int format, const dsq_config *cfg, int force,
                     dsq_err *err);
int dsq_mwriter_open_sharded(dsq_mwriter **out, const char *path, int format, const dsq_config *cfg, int force,
                             uint64_t shard_size, dsq_err *err);
/* The format DSQ_OUT_AUTO gives path. */
int dsq_mwriter_format_of(const char *path);
/* The scheme nearest to `scheme` that format stores for a matrix of cols
 * columns (itself when it can), or -1. */
int dsq_mwriter_nearest(int format, int scheme, int64_t cols);
/* The format of an open writer (DSQ_OUT_DSQ, DSQ_OUT_GGUF). */
int dsq_mwriter_format(const dsq_mwriter *w);
/* Can the format store tensor t as declared (its scheme, shape, column
 * multipliers)?  DSQ_OK, or the reason naming the tensor. */
int dsq_mwriter_check(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err);
/* Does the format store kv_b_proj as its two parts (DSQ_PART_K_B, _V_B)? */
int dsq_mwriter_splits_kv_b(const dsq_mwriter *w);
/* Declare a tensor; returns its index (>= 0) or an error.  Tensors
 * declared after the layout are appended. */
int dsq_mwriter_add_tensor(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err);
/* A side file that travels with the model (before the layout). */
int dsq_mwriter_add_file(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err);
int dsq_mwriter_layout(dsq_mwriter *w, dsq_err *err);
/* The bytes of tensor i, expert e (0 when not stacked): m in the declared
 * scheme and shape; colscale ([cols] little-endian f32) exactly when the
 * tensor was declared with column multipliers.  Each slice once. */
int dsq_mwriter_put(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err);
/* Stored bytes of one slice of tensor i (data, scales, zero points and
 * column multipliers). */
uint64_t dsq_mwriter_slice_bytes(const dsq_mwriter *w, int i);
/* Write the metadata (a JSON object text) and rename the file into place;
 * *size receives the file's size (may be NULL).  Frees w whatever the
 * outcome. */
int dsq_mwriter_finish(dsq_mwriter *w, const char *meta_json, uint64_t *size, dsq_err *err);
void dsq_mwriter_abort(dsq_mwriter *w); /* NULL ok; removes the temporary file */

#endif
