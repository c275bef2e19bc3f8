/*
 * gen.h -- synthetic checkpoints in the exact upstream layout (config.json,
 * model.safetensors.index.json, several shards, FP8 E4M3 with 128x128
 * power-of-two block scales or BF16), so the demo, tests and benchmarks need
 * no download.  Weights follow deepseek-v32.md section 6.3.
 */
#ifndef DSQ_GEN_H
#define DSQ_GEN_H

#include "dsq.h"

typedef struct dsq_gen_opts {
    dsq_config cfg;      /* shapes; cfg.fp8 selects FP8 or BF16 storage */
    int n_shards;        /* >= 1 */
    int with_mtp;        /* write cfg.n_mtp_layers MTP layers */
    uint64_t seed;
    int force;           /* allow a non-empty output folder */
    const char *tokenizer_dir; /* copy tokenizer files from here, or NULL */
} dsq_gen_opts;

/* Presets: "tiny" (the spec's test configuration), "tiny-nomtp", "tiny-v3"
 * (model_type deepseek_v3: no indexer), "tiny-kimi-k2" (kimi_k2, BF16: dsq
 * gen-tiny stores its routed experts as Kimi-K2-Thinking's INT4), "bench-1b".
 * Returns DSQ_E_ARG for an unknown name. */
int dsq_gen_preset(dsq_config *cfg, const char *name);

/* Write the checkpoint folder `dir` (created if needed). */
int dsq_gen_ckpt(const char *dir, const dsq_gen_opts *o, dsq_err *err);


#endif
