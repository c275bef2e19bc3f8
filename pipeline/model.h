/*
 * model.h -- what travels with a model besides its weights: its tokenizer
 * (from any model source, or a tokenizer.json or a folder holding one) and
 * the token ids of a text or token file.  Weights are read through a model
 * source (formats/source.h).
 */
#ifndef DSQ_MODEL_H
#define DSQ_MODEL_H

#include "dsq.h"
#include "formats/tokenizer.h"
#include "formats/source.h"
#include "verify/weights.h"

/* Open the model at path for the forward pass: *src (close with
 * dsq_src_close) and the weights over it.  Sources without random access
 * (archives) are refused with a line saying what to do. */
int dsq_model_open(dsq_src **src, dsq_weights *w, const char *path, dsq_err *err);

/* The tokenizer that travels with MODEL (tokenizer.json plus
 * tokenizer_config.json when present).  Free with dsq_tok_free. */
int dsq_model_tokenizer(const char *path, dsq_tok **out, dsq_err *err);

/* Token ids for --tokens FILE.json or --text FILE (encoded with MODEL's
 * tokenizer, BOS prepended when its tokenizer_config asks for it or
 * force_bos is set).  *ids from malloc. */
int dsq_model_load_tokens(const char *model, const char *tokens_path, const char *text_path,
                          int force_bos, int32_t **ids, size_t *n, dsq_err *err);

#endif
