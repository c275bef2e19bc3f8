/*
 * model.h -- open "a model" the way every command names one: a checkpoint
 * folder (or .safetensors file, or archive of a folder), a .dsq container,
 * or -- for the tokenizer only -- a tokenizer.json.
 */
#ifndef DSQ_MODEL_H
#define DSQ_MODEL_H

#include "dsq.h"
#include "formats/tokenizer.h"
#include "verify/weights.h"

typedef struct dsq_model {
    dsq_ckpt *ck;          /* one of these two is set */
    struct dsq_ctr *ctr;
    dsq_weights w;
} dsq_model;

/* Open MODEL for the forward pass (folders and containers; archives cannot
 * be read at random and get a clear error). */
int dsq_model_open(dsq_model *m, const char *path, dsq_err *err);
void dsq_model_close(dsq_model *m);

/* The verbatim config.json of a checkpoint or a container (exactly one of
 * ck / ctr set); from malloc, NULL when out of memory. */
char *dsq_config_json_of(const dsq_ckpt *ck, const struct dsq_ctr *ctr);

/* The tokenizer that travels with MODEL (tokenizer.json plus
 * tokenizer_config.json when present).  Free with dsq_tok_free. */
int dsq_model_tokenizer(const char *path, dsq_tok **out, dsq_err *err);

/* Token ids for --tokens FILE.json or --text FILE (encoded with MODEL's
 * tokenizer, BOS prepended when its tokenizer_config asks for it or
 * force_bos is set).  *ids from malloc. */
int dsq_model_load_tokens(const char *model, const char *tokens_path, const char *text_path,
                          int force_bos, int32_t **ids, size_t *n, dsq_err *err);

#endif
