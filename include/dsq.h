/*
 * dsq.h -- the public interface of libdsq, the library behind the `dsq` tool.
 *
 * dsq reads DeepSeek-V3.2-family checkpoints (safetensors shards, FP8 E4M3
 * with 128x128 block scales, or BF16), converts and quantizes them, writes the
 * .dsq single-file container and runs a reference forward pass to measure the
 * accuracy lost by quantization.
 *
 * Every model dsq reads -- a .dsq container, a checkpoint folder or archive,
 * a GGUF file -- is opened through one model source, formats/source.h
 * (dsq_src_open: the backends bid on the path; one tensor list in upstream
 * naming; streaming or random access), and every model it writes goes
 * through formats/writer.h.  This header holds what they share and the
 * checkpoint backend's own reader.
 *
 * Basic outline for reading a checkpoint with that reader:
 *   1) dsq_ckpt_open() on a checkpoint folder, a single .safetensors file or
 *      a .tar / .zip archive of a checkpoint folder.
 *   2) dsq_ckpt_config() gives the validated model configuration and
 *      dsq_ckpt_n_tensors() / dsq_ckpt_tensor() every tensor's header.
 *   3) For random access (folders only), dsq_ckpt_view() returns a zero-copy
 *      pointer into the mapped shard.
 *   4) For streaming (any source, including archives), dsq_ckpt_stream_open() then
 *      dsq_ckpt_stream_next() until DSQ_EOF, dsq_ckpt_stream_data() for each tensor's bytes.
 *   5) dsq_ckpt_stream_close() / dsq_ckpt_close().
 *
 * Errors: every fallible function returns DSQ_OK (0), DSQ_EOF (1) where noted,
 * or a negative DSQ_E_* code, and fills the caller's dsq_err with one line that
 * names the file and the tensor or field.  Library code never exits.
 */
#ifndef DSQ_H
#define DSQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSQ_VERSION_STRING "0.1.0"

/* ---- errors (values are stable) ---------------------------------------- */
enum {
    DSQ_OK = 0,
    DSQ_EOF = 1,
    DSQ_E_IO = -1,          /* open/read/write/mmap failed            */
    DSQ_E_FORMAT = -2,      /* malformed input file                    */
    DSQ_E_NOMEM = -3,       /* allocation failed                       */
    DSQ_E_ARG = -4,         /* bad argument from the caller            */
    DSQ_E_UNSUPPORTED = -5, /* valid but not handled (dtype, feature)  */
    DSQ_E_CHECKSUM = -6,    /* data does not match its checksum        */
    DSQ_E_CONFIG = -7,      /* config.json missing key / inconsistent  */
    DSQ_E_EXISTS = -8,      /* output exists and --force not given     */
    DSQ_E_INTERRUPTED = -9, /* stopped by a signal                     */
    DSQ_E_NOTFOUND = -10    /* tensor / key not present                */
};

typedef struct dsq_err {
    int code;
    char msg[512];
} dsq_err;

const char *dsq_strerror(int code);

/* ---- element types ------------------------------------------------------ */
typedef enum dsq_dtype {
    DSQ_DT_INVALID = 0,
    DSQ_DT_F32,
    DSQ_DT_F16,
    DSQ_DT_BF16,
    DSQ_DT_F8_E4M3, /* the "FN" variant: no inf, 0x7F/0xFF NaN, max 448 */
    DSQ_DT_F8_E5M2,
    DSQ_DT_F8_E8M0, /* unsigned exponent-only scale, 2^(b-127)          */
    DSQ_DT_F64,
    DSQ_DT_BOOL,
    DSQ_DT_U8,
    DSQ_DT_I8,
    DSQ_DT_U16,
    DSQ_DT_I16,
    DSQ_DT_U32,
    DSQ_DT_I32,
    DSQ_DT_U64,
    DSQ_DT_I64,
    DSQ_DT_COUNT
} dsq_dtype;

const char *dsq_dtype_name(dsq_dtype t);        /* safetensors spelling */
dsq_dtype dsq_dtype_from_name(const char *name); /* DSQ_DT_INVALID if unknown */
size_t dsq_dtype_size(dsq_dtype t);              /* bytes per element */

/* ---- tensor roles ------------------------------------------------------- */
typedef enum dsq_role {
    DSQ_R_UNKNOWN = 0,
    DSQ_R_EMBED, DSQ_R_HEAD, DSQ_R_FINAL_NORM,
    DSQ_R_INPUT_NORM, DSQ_R_POST_ATTN_NORM,
    DSQ_R_ATTN_Q_A, DSQ_R_ATTN_Q_A_NORM, DSQ_R_ATTN_Q_B,
    DSQ_R_ATTN_KV_A, DSQ_R_ATTN_KV_A_NORM, DSQ_R_ATTN_KV_B, DSQ_R_ATTN_O,
    DSQ_R_IDX_WQ_B, DSQ_R_IDX_WK, DSQ_R_IDX_K_NORM, DSQ_R_IDX_K_NORM_BIAS,
    DSQ_R_IDX_WEIGHTS_PROJ,
    DSQ_R_DENSE_GATE, DSQ_R_DENSE_UP, DSQ_R_DENSE_DOWN,
    DSQ_R_ROUTER, DSQ_R_ROUTER_BIAS,
    DSQ_R_SHEXP_GATE, DSQ_R_SHEXP_UP, DSQ_R_SHEXP_DOWN,
    DSQ_R_EXP_GATE, DSQ_R_EXP_UP, DSQ_R_EXP_DOWN,
    DSQ_R_MTP_EMBED, DSQ_R_MTP_ENORM, DSQ_R_MTP_HNORM, DSQ_R_MTP_EH_PROJ,
    DSQ_R_MTP_HEAD_NORM, DSQ_R_MTP_HEAD,
    DSQ_R_SCALE, /* a *_scale_inv companion of an FP8 weight */
    DSQ_R_COUNT
} dsq_role;

/* Coarse classes used for the per-role summaries of `dsq inspect`. */
typedef enum dsq_class {
    DSQ_C_ATTN = 0, DSQ_C_INDEXER, DSQ_C_DENSE, DSQ_C_SHARED, DSQ_C_ROUTED,
    DSQ_C_ROUTER, DSQ_C_EMBED_HEAD, DSQ_C_NORM, DSQ_C_MTP, DSQ_C_SCALE,
    DSQ_C_COUNT
} dsq_class;

const char *dsq_role_name(dsq_role r);   /* e.g. "attn.q_a", "exp.down" */
dsq_role dsq_role_from_name(const char *name);
const char *dsq_class_name(dsq_class c); /* e.g. "attention" */
dsq_class dsq_role_class(dsq_role r);    /* class of a non-MTP role */

/* Classify an upstream tensor name.  *layer and *expert receive -1 when not
 * applicable.  Returns DSQ_R_UNKNOWN for names outside the grammar.
 * MTP layers (layer >= n_layers) are classified as their ordinary role; the
 * caller decides with dsq_is_mtp(). */
dsq_role dsq_classify(const char *name, int *layer, int *expert);

/* Upstream name of routed expert `expert`'s projection `role` (DSQ_R_EXP_GATE,
 * _UP or _DOWN) in layer `layer`; with expert < 0 the name of the stacked
 * tensor of all experts that .dsq containers use
 * ("model.layers.L.mlp.experts.up_proj.weight"). */
void dsq_expert_name(char *out, size_t cap, int layer, int expert, dsq_role role);
/* Upstream name of the weight `role` of layer `layer`, a main or an MTP
 * layer ("model.layers.L.self_attn.q_a_proj.weight",
 * "model.layers.L.eh_proj.weight"; routed experts as dsq_expert_name, the
 * other roles ignore `expert`).  0, or -1 when the role has no per-layer
 * name (top-level tensors, scales). */
int dsq_layer_weight_name(char *out, size_t cap, int layer, int expert, dsq_role role);
/* Name of a top-level tensor: DSQ_R_EMBED "model.embed_tokens.weight",
 * DSQ_R_FINAL_NORM "model.norm.weight", DSQ_R_HEAD "lm_head.weight"; NULL for
 * any other role.  The string is static. */
const char *dsq_top_weight_name(dsq_role role);
/* Name of the block-scale companion of FP8 weight `weight`
 * ("<weight>_scale_inv"). */
void dsq_scale_name(char *out, size_t cap, const char *weight);

/* ---- model configuration ----------------------------------------------- */
struct dsq_config;
/* Call fn(arg, name) for every weight name (no *_scale_inv companions) the
 * configuration requires in layer `layer` -- a main layer, or an MTP layer
 * (layer >= num_hidden_layers, with its MTP-only tensors); layer -1 gives the
 * top-level tensors (embedding, final norm, head).  Stops at and returns the
 * first non-zero value fn returns. */
int dsq_layer_tensor_names(const struct dsq_config *cfg, int layer,
                           int (*fn)(void *arg, const char *name), void *arg);

typedef struct dsq_config {
    int vocab_size, hidden_size, intermediate_size, moe_intermediate_size;
    int n_layers, n_mtp_layers, first_k_dense, moe_layer_freq;
    int n_heads, q_lora_rank, kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts, n_shared_experts, n_experts_per_tok;
    int n_group, topk_group;
    int index_n_heads, index_head_dim, index_topk;
    int norm_topk_prob;        /* bool */
    double routed_scaling_factor, rms_norm_eps, rope_theta;
    int max_position_embeddings;
    /* YaRN (rope_scaling); factor 1.0 and no rope_scaling both mean "off". */
    int has_yarn;
    double yarn_factor, yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    int yarn_original_max_pos;
    int rope_interleave, indexer_rope_interleave; /* DeepSeek defaults 1 / 0 */
    int has_indexer;            /* model_type deepseek_v32 */
    int fp8;                    /* quantization_config fp8 present */
    int ctensors;               /* quantization_config compressed-tensors */
    int block_rows, block_cols; /* weight_block_size, 128x128 by default */
    int scale_ue8m0;            /* scale_fmt == "ue8m0" */
    int bos_token_id, eos_token_id;
    char model_type[32];
} dsq_config;

/* Parse and validate a config.json held in memory. `what` names the file in
 * error messages. */
int dsq_config_parse(dsq_config *cfg, const char *json, size_t len,
                     const char *what, dsq_err *err);
/* config.json text for cfg in the upstream key names (from malloc; NULL
 * when out of memory).  dsq_config_parse reads it back to the same cfg. */
char *dsq_config_to_json(const dsq_config *cfg);

/* Expected [out, in] (or [n]) shape of a role for layer `layer`; returns the
 * number of dims (0 if the role has no fixed shape, e.g. SCALE). */
int dsq_config_role_shape(const dsq_config *cfg, dsq_role r, int layer,
                          int64_t shape[4]);
/* Does layer `layer` have the MoE FFN (router, routed and shared experts)
 * rather than the dense one?  The upstream rule: the model has routed
 * experts, layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
 * MTP layers (layer >= num_hidden_layers) follow the same rule, which makes
 * them MoE layers (moe_layer_freq is 1 in every release and parsed config). */
int dsq_config_is_moe_layer(const dsq_config *cfg, int layer);

/* ---- checkpoint --------------------------------------------------------- */
typedef struct dsq_ckpt dsq_ckpt;

/* A tensor as described by its header.  Strings are owned by the handle. */
typedef struct dsq_tinfo {
    const char *name;
    dsq_dtype dtype;
    int n_dims;
    int64_t shape[4];
    int64_t numel;
    uint64_t nbytes;
    dsq_role role;
    int layer;      /* -1 if none */
    int expert;     /* -1 if none */
    int is_mtp;     /* layer >= n_layers */
    int scale_idx;  /* index of the weight_scale_inv companion, or -1 */
    int weight_idx; /* for SCALE tensors: the weight it belongs to, or -1 */
    int shard;      /* shard number in the checkpoint */
    uint64_t offset;/* absolute byte offset inside the shard file */
} dsq_tinfo;

enum { DSQ_OPEN_ALLOW_UNKNOWN = 1 };

/* Open a checkpoint folder, a single model.safetensors, or an archive of a
 * checkpoint folder.  On success *out must be closed with dsq_ckpt_close. */
int dsq_ckpt_open(dsq_ckpt **out, const char *path, int flags, dsq_err *err);
void dsq_ckpt_close(dsq_ckpt *ck); /* NULL is a no-op */

const dsq_config *dsq_ckpt_config(const dsq_ckpt *ck);
int dsq_ckpt_n_tensors(const dsq_ckpt *ck);
const dsq_tinfo *dsq_ckpt_tensor(const dsq_ckpt *ck, int i);
int dsq_ckpt_find(const dsq_ckpt *ck, const char *name); /* index or -1 */
int dsq_ckpt_is_archive(const dsq_ckpt *ck);
const char *dsq_ckpt_path(const dsq_ckpt *ck);

/* Raw bytes of a side file ("config.json", "tokenizer.json",
 * "tokenizer_config.json", "generation_config.json"); NULL if absent. */
const void *dsq_ckpt_blob(const dsq_ckpt *ck, const char *name, size_t *len);

/* Inconsistencies that do not stop reading (e.g. a wrong index total_size,
 * a declared but absent MTP layer), one line each. */
int dsq_ckpt_n_warnings(const dsq_ckpt *ck);
const char *dsq_ckpt_warning(const dsq_ckpt *ck, int i);

/* Shard files: count, basename and size (for provenance). */
int dsq_ckpt_n_shards(const dsq_ckpt *ck);
const char *dsq_ckpt_shard_name(const dsq_ckpt *ck, int i);
uint64_t dsq_ckpt_shard_size(const dsq_ckpt *ck, int i);

/* Zero-copy view of tensor i (folder / file sources only; DSQ_E_UNSUPPORTED
 * for archives).  The pointer is valid until dsq_ckpt_close and may be
 * unaligned. */
int dsq_ckpt_view(const dsq_ckpt *ck, int i, const void **data, dsq_err *err);

/* f32 copy of the block scales of FP8 weight i ([srows * scols]), loaded at
 * open for every source; NULL if the tensor has no companion. */
const float *dsq_ckpt_scales(const dsq_ckpt *ck, int i, int64_t *srows, int64_t *scols);

/* Dequantize rows [r0, r1) of a 2-D tensor (any float dtype, FP8 with its
 * block scales) into dst (row-major, (r1-r0) x cols f32). Folder sources. */
int dsq_ckpt_rows_f32(const dsq_ckpt *ck, int i, int64_t r0, int64_t r1,
                      float *dst, dsq_err *err);

/* ---- streaming source --------------------------------------------------- */
typedef struct dsq_ckpt_stream dsq_ckpt_stream;

/* Stream the tensors of a checkpoint in storage order (shard by shard, by
 * offset), never seeking back.  Works for folders and archives alike.
 * Scale companions are yielded like any tensor. */
int dsq_ckpt_stream_open(dsq_ckpt_stream **out, dsq_ckpt *ck, dsq_err *err);
/* DSQ_OK with *idx = index of the next tensor in dsq_ckpt_tensor(), DSQ_EOF
 * at the end, or < 0. */
int dsq_ckpt_stream_next(dsq_ckpt_stream *s, int *idx, dsq_err *err);
/* Bytes of the current tensor, valid until the next dsq_ckpt_stream_next. */
int dsq_ckpt_stream_data(dsq_ckpt_stream *s, const void **data, dsq_err *err);
void dsq_ckpt_stream_close(dsq_ckpt_stream *s);

/* ---- progress ------------------------------------------------------------
 * Long jobs report how far they are through a callback; the command line
 * renders it (the library never prints). */
typedef struct dsq_progress {
    const char *stage;      /* "quant", "calib" */
    uint64_t done, total;   /* units of work done and in all (bytes; calib: layers) */
    int layer, n_layers;    /* calib: the layer just finished (0-based), else -1 */
    double seconds;         /* calib: that layer's time */
    int final;              /* the job's last report */
} dsq_progress;
typedef void (*dsq_progress_fn)(void *arg, const dsq_progress *p);

/* ---- misc ----------------------------------------------------------------*/
/* xxh3-64 of a whole file (streamed). */
int dsq_file_xxh3(const char *path, uint64_t *out, uint64_t *size, dsq_err *err);

#ifdef __cplusplus
}
#endif
#endif /* DSQ_H */
