/*
 * tokenizer.h -- the byte-level BPE tokenizer that DeepSeek-V3-family
 * checkpoints ship as a HuggingFace "fast" tokenizer.json, read and applied
 * the way the HuggingFace `tokenizers` library does it:
 *
 *   1) added tokens (special tokens such as <｜begin▁of▁sentence｜>) are found
 *      first, leftmost-longest, and split out with their own ids;
 *   2) the normalizer (only null / an empty Sequence: identity);
 *   3) the pre-tokenizer: a Sequence of regex Split steps and a final
 *      ByteLevel step (optionally with its own GPT-2 regex), regexes run by
 *      PCRE2 with Unicode properties (JIT when available);
 *   4) each pre-token is BPE-merged by merge rank on the GPT-2
 *      bytes-to-unicode alphabet (tokens are stored here as raw bytes);
 *   5) decoding maps every token back to its bytes (the ByteLevel decoder).
 *
 * Outline:
 *   dsq_tok_new_from_json(&tok, json, len, "tokenizer.json", &err);
 *   dsq_tok_set_config(tok, cfg, cfg_len, "tokenizer_config.json", &err); // optional
 *   dsq_tok_encode(tok, text, n, &ids, &n_ids, &err);  ... free(ids);
 *   dsq_tok_decode(tok, ids, n_ids, &text, &n_text, &err); ... free(text);
 *   dsq_tok_free(tok);
 *
 * A dsq_tok is read-only after loading (dsq_tok_set_config aside): encode and
 * decode may run on several threads at once.  One thread at a time gets the
 * handle's word cache; concurrent callers use a private one.
 */
#ifndef DSQ_TOKENIZER_H
#define DSQ_TOKENIZER_H

#include "dsq.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dsq_tok dsq_tok;

/* Flags for dsq_tok_new_from_json_ex. */
enum {
    DSQ_TOK_NO_JIT = 1 /* run every regex in the PCRE2 interpreter (tests) */
};

/* Parse a tokenizer.json held in memory (need not be NUL-terminated).  `what`
 * names the file in error messages.  On success *out must be released with
 * dsq_tok_free.  Errors: DSQ_E_FORMAT (malformed file, unknown token in a
 * merge, invalid regex), DSQ_E_UNSUPPORTED (a model, normalizer,
 * pre-tokenizer or decoder type this reader does not implement),
 * DSQ_E_NOMEM. */
int dsq_tok_new_from_json(dsq_tok **out, const char *json, size_t len, const char *what,
                          dsq_err *err);
int dsq_tok_new_from_json_ex(dsq_tok **out, const char *json, size_t len, const char *what,
                             unsigned flags, dsq_err *err);
void dsq_tok_free(dsq_tok *tok); /* NULL is a no-op */

/* Apply a tokenizer_config.json: add_bos_token, bos_token and eos_token
 * (a string or an {"content": ...} object; null clears it).  Not thread-safe
 * against concurrent encodes. */
int dsq_tok_set_config(dsq_tok *tok, const char *json, size_t len, const char *what,
                       dsq_err *err);

/* Encode `len` bytes of text.  Never adds BOS/EOS (prepend dsq_tok_bos_id()
 * yourself).  Bytes that are not valid UTF-8 (which HuggingFace cannot take
 * at all) become pre-tokens of their own, so any byte string round-trips.
 * *ids comes from malloc (free() it), *n may be 0. */
int dsq_tok_encode(const dsq_tok *tok, const char *text, size_t len, int32_t **ids,
                   size_t *n, dsq_err *err);

/* Decode ids to bytes.  *text comes from malloc (free() it) and is
 * NUL-terminated after *len bytes.  Unlike HuggingFace, invalid UTF-8 (for
 * example half of a character) is kept byte for byte rather than replaced by
 * U+FFFD, so decoding pieces and concatenating gives the decoding of the
 * whole.  An id outside the vocabulary is DSQ_E_FORMAT naming its index. */
int dsq_tok_decode(const dsq_tok *tok, const int32_t *ids, size_t n, char **text,
                   size_t *len, dsq_err *err);

/* Bytes of one token (borrowed, valid until dsq_tok_free); NULL if id is
 * not a token. */
const char *dsq_tok_token_bytes(const dsq_tok *tok, int32_t id, size_t *len);

int32_t dsq_tok_bos_id(const dsq_tok *tok); /* -1 if none is known */
int32_t dsq_tok_eos_id(const dsq_tok *tok); /* -1 if none is known */
/* 1 if the configuration asks for a BOS in front of every sequence
 * (tokenizer_config add_bos_token, or a TemplateProcessing post-processor). */
int dsq_tok_add_bos(const dsq_tok *tok);
/* Largest id + 1 over the model vocabulary and the added tokens. */
int32_t dsq_tok_vocab_size(const dsq_tok *tok);
/* 1 if the pre-tokenizer regexes run through the PCRE2 JIT. */
int dsq_tok_uses_jit(const dsq_tok *tok);

/* Read a token file: a JSON array of integers (whitespace allowed, nothing
 * else), or decimal ids separated by white space (what `dsq tokenize`
 * prints).  Every element must be an integer in int32 range; errors name the
 * file, the element index and the byte offset.  *ids comes from malloc
 * (free() it); *n may be 0. */
int dsq_tokens_load_json(const char *path, int32_t **ids, size_t *n, dsq_err *err);
/* The same for a buffer; `what` names it in messages. */
int dsq_tokens_parse_json(const char *buf, size_t len, const char *what, int32_t **ids,
                          size_t *n, dsq_err *err);

#endif
