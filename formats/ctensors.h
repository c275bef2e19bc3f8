/*
 * ctensors.h -- the quantization_config of compressed-tensors checkpoints
 * (llm-compressor's format, what vLLM and SGLang serve;
 * ../shared/spec/formats.md Part C): parse it, say which group (if any)
 * quantizes a module, and build it for a model dsq writes.
 *
 * Modules are Hugging Face module names without the parameter
 * ("model.layers.3.mlp.experts.7.up_proj").  A group's targets and the ignore
 * list hold "Linear" (any linear layer), exact module names, or "re:"
 * regular expressions matched from the start of the name (Python re.match:
 * anchored at the start only).
 */
#ifndef DSQ_CTENSORS_H
#define DSQ_CTENSORS_H

#include "common.h"

/* The storage format of a group (C.1 "format"). */
enum { DSQ_CT_DENSE = 0, DSQ_CT_PACK, DSQ_CT_INT, DSQ_CT_FLOAT, DSQ_CT_OTHER };
/* QuantizationArgs.strategy */
enum { DSQ_CT_S_TENSOR = 0, DSQ_CT_S_CHANNEL, DSQ_CT_S_GROUP, DSQ_CT_S_BLOCK, DSQ_CT_S_OTHER };

typedef struct dsq_ct_args {
    int fmt;             /* DSQ_CT_* */
    char fmt_name[32];   /* as written, for messages */
    int num_bits, is_float, sym, strategy;
    char strategy_name[16];
    int group_size;      /* 0 when null */
    int block[2];        /* block_structure, 0 0 when null */
    int actorder_group;  /* actorder "group": weight_g_idx tensors */
} dsq_ct_args;

typedef struct dsq_ct_config dsq_ct_config;

/* Parse config.json's quantization_config when its quant_method is
 * "compressed-tensors" (*out = NULL when the config has none or another
 * method).  what names the file in messages. */
int dsq_ct_parse(dsq_ct_config **out, const char *config_json, size_t len, const char *what, dsq_err *err);
void dsq_ct_free(dsq_ct_config *c); /* NULL ok */
/* The weight arguments of the first group whose targets match module (is
 * a linear layer: "Linear" targets match it), or NULL when none does or
 * the ignore list matches it. */
const dsq_ct_args *dsq_ct_match(const dsq_ct_config *c, const char *module, int linear);
/* "pack-quantized" ... of the config, for inspect. */
const char *dsq_ct_format(const dsq_ct_config *c);

/* ---- writing ------------------------------------------------------------- */
/* compressed-tensors' QuantizationArgs of a dsq scheme (int4 groups, int8
 * channel, fp8 tensor / channel / block with f32 or bf16 scales), or
 * DSQ_E_UNSUPPORTED when the format has no exact form of it. */
int dsq_ct_scheme_args(int scheme, dsq_ct_args *a);
/* The quantization_config object text for a model whose modules are given
 * one by one (module name, dsq scheme; float schemes are unquantized):
 * one config group per quantized scheme, targets as re: patterns over the
 * module names with layer numbers generalized where every layer agrees,
 * the unquantized linear modules in the ignore list.  From malloc, NULL
 * when out of memory. */
typedef struct dsq_ct_builder dsq_ct_builder;
dsq_ct_builder *dsq_ct_builder_new(void);
int dsq_ct_builder_add(dsq_ct_builder *b, const char *module, int scheme);
char *dsq_ct_builder_json(dsq_ct_builder *b);
void dsq_ct_builder_free(dsq_ct_builder *b);

#endif
