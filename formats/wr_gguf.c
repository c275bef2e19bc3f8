/*
 * wr_gguf.c -- GGUF as an output format (writer.h over gguf.c): a
 * DeepSeek-V3 / V3.2 model as llama.cpp's loader reads it
 * (../shared/spec/formats.md A.9):
 *
 *   architecture   deepseek32 when the model has the lightning indexer,
 *                  else deepseek2; always the MLA layout (attn_k_b /
 *                  attn_v_b, head_count_kv 1, key_length kv_lora + rope)
 *   tensors        token_embd, output_norm, output; blk.N.<name> for layer N
 *                  (MTP layers keep their index and the nextn.* names); the
 *                  routed experts of a projection stacked, ne = {in, out, E}
 *   metadata       {arch}.* from config.json; tokenizer.ggml.* from
 *                  tokenizer.json and tokenizer_config.json
 *
 * Every tensor is stored in a ggml type whose bytes dsq's scheme already
 * has: f32, f16, bf16 and ggml's block types (q8_0 ... iq4_xs), which are
 * dsq schemes of their own.  The
 * payload of a slice is the quant view's data array as it is, so routed
 * experts are written one by one at their offset in the stacked tensor.
 */
#include "formats/writer_int.h"
#include "formats/gguf.h"
#include "formats/json.h"
#include "formats/gguf_arch.h"

#include <cjson/cJSON.h>
#include <stdio.h>

typedef struct gt {
    int gi;             /* index in the GGUF writer */
    uint64_t slice;     /* bytes of one expert's (or the whole) payload */
    int is_mtp;
} gt;

typedef struct ggbe {
    dsq_ggufw *g;
    gt *t;
    int n, cap;
    char *tok, *tokcfg; /* tokenizer.json, tokenizer_config.json; from malloc */
    size_t tok_len, tokcfg_len;
    int any_quant, any_mtp;
} ggbe;

/* ---- names ------------------------------------------------------------------ */

static int gguf_name(const dsq_mw_tensor *t, char *out, size_t cap) {
    return dsq_gguf_tensor_name(t->role, t->layer, t->part, out, cap);
}

/* ggml type holding a scheme's bytes exactly, or -1 (quant/ knows). */
static int ggml_type_of(int scheme) { return dsq_q_ggml_type(scheme); }

/* ---- backend ---------------------------------------------------------------- */

static int g_open(dsq_mwriter *w, const char *path, int force, dsq_err *err) {
    if (!w->cfg) return dsq_fail(err, DSQ_E_ARG, "%s: a GGUF file needs the model's configuration", path);
    const dsq_config *c = w->cfg;
    if (c->moe_layer_freq != 1)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: moe_layer_freq %d: llama.cpp's DeepSeek architectures need 1", path,
                        c->moe_layer_freq);
    ggbe *b = dsq_calloc(1, sizeof *b);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    int rc = dsq_ggufw_open(&b->g, path, force, err);
    if (rc) {
        free(b);
        return rc;
    }
    w->be = b;
    return DSQ_OK;
}

static int g_check(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    char nm[128];
    if (gguf_name(t, nm, sizeof nm))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: no GGUF name for this tensor", w->path, t->name);
    int type = ggml_type_of(t->scheme);
    if (type < 0)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: scheme %s has no GGUF type (GGUF takes the ggml types: "
                        "a GGUF preset such as q4_k_m, or dsq export --type)", w->path, t->name,
                        dsq_q_scheme(t->scheme)->name);
    if (t->colscale)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: GGUF cannot store column multipliers (use a recipe "
                        "without them)", w->path, t->name);
    int blck, bytes;
    if (!dsq_ggml_type_block(type, &blck, &bytes) || t->cols % blck)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: rows of %lld do not split into %s blocks", w->path, t->name,
                        (long long)t->cols, dsq_ggml_type_name(type));
    return DSQ_OK;
}

static int g_add_tensor(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    ggbe *b = w->be;
    char nm[128];
    gguf_name(t, nm, sizeof nm);
    int type = ggml_type_of(t->scheme);
    /* ne is the upstream shape reversed: ne[0] the contiguous dimension */
    int64_t ne[4] = {1, 1, 1, 1};
    int nd = t->n_dims;
    if (nd < 1 || nd > 3) return dsq_fail(err, DSQ_E_ARG, "%s: %s: %d dimensions", w->path, t->name, nd);
    for (int k = 0; k < nd; k++) ne[k] = t->shape[nd - 1 - k];
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 256;
        gt *np = dsq_realloc(b->t, sizeof *np * (size_t)nc);
        if (!np) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        b->t = np;
        b->cap = nc;
    }
    int gi = dsq_ggufw_add_tensor(b->g, nm, type, nd, ne, err);
    if (gi < 0) return gi;
    int ne_ = t->experts ? t->experts : 1;
    b->t[b->n] = (gt){gi, dsq_ggufw_nbytes(b->g, gi) / (uint64_t)ne_, t->is_mtp};
    b->any_quant |= dsq_ggml_type_is_quantized(type);
    b->any_mtp |= t->is_mtp;
    return b->n++;
}

static int g_add_file(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err) {
    ggbe *b = w->be;
    char **dst = !strcmp(name, "tokenizer.json") ? &b->tok : !strcmp(name, "tokenizer_config.json") ? &b->tokcfg : NULL;
    if (!dst) return DSQ_OK; /* generation_config.json: llama.cpp takes its sampling from the command line */
    char *c = dsq_malloc(len + 1);
    if (!c) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    memcpy(c, data, len);
    c[len] = 0;
    free(*dst);
    *dst = c;
    if (dst == &b->tok) b->tok_len = len;
    else b->tokcfg_len = len;
    return DSQ_OK;
}

/* ---- metadata ----------------------------------------------------------- */

typedef struct kvctx {
    dsq_ggufw *g;
    dsq_err *err;
    const char *arch;
    int rc;
} kvctx;

static void ku32(kvctx *k, const char *key, int64_t v) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = dsq_ggufw_set_u32(k->g, full, (uint32_t)v, k->err);
}
static void kf32(kvctx *k, const char *key, double v) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!k->rc) k->rc = dsq_ggufw_set_f32(k->g, full, (float)v, k->err);
}

static void arch_keys(kvctx *k, const dsq_config *c, int with_mtp) {
    ku32(k, "block_count", c->n_layers + (with_mtp ? c->n_mtp_layers : 0));
    ku32(k, "nextn_predict_layers", with_mtp ? c->n_mtp_layers : 0);
    ku32(k, "context_length", c->max_position_embeddings);
    ku32(k, "embedding_length", c->hidden_size);
    ku32(k, "feed_forward_length", c->intermediate_size);
    ku32(k, "attention.head_count", c->n_heads);
    ku32(k, "attention.head_count_kv", 1);
    ku32(k, "attention.key_length", c->kv_lora_rank + c->qk_rope_head_dim);
    ku32(k, "attention.value_length", c->kv_lora_rank);
    ku32(k, "attention.key_length_mla", c->qk_nope_head_dim + c->qk_rope_head_dim);
    ku32(k, "attention.value_length_mla", c->v_head_dim);
    ku32(k, "attention.q_lora_rank", c->q_lora_rank);
    ku32(k, "attention.kv_lora_rank", c->kv_lora_rank);
    kf32(k, "attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    ku32(k, "rope.dimension_count", c->qk_rope_head_dim);
    kf32(k, "rope.freq_base", c->rope_theta);
    if (c->has_yarn) {
        char full[160];
        snprintf(full, sizeof full, "%s.rope.scaling.type", k->arch);
        if (!k->rc) k->rc = dsq_ggufw_set_str(k->g, full, "yarn", k->err);
        kf32(k, "rope.scaling.factor", c->yarn_factor);
        ku32(k, "rope.scaling.original_context_length", c->yarn_original_max_pos);
        /* llama.cpp divides this by 0.1 again to get mscale_all_dim back */
        kf32(k, "rope.scaling.yarn_log_multiplier", 0.1 * c->yarn_mscale_all_dim);
        kf32(k, "rope.scaling.yarn_beta_fast", c->yarn_beta_fast);
        kf32(k, "rope.scaling.yarn_beta_slow", c->yarn_beta_slow);
    }
    ku32(k, "leading_dense_block_count", c->first_k_dense);
    ku32(k, "vocab_size", c->vocab_size);
    ku32(k, "expert_feed_forward_length", c->moe_intermediate_size);
    ku32(k, "expert_count", c->n_routed_experts);
    ku32(k, "expert_used_count", c->n_experts_per_tok);
    ku32(k, "expert_shared_count", c->n_shared_experts);
    kf32(k, "expert_weights_scale", c->routed_scaling_factor);
    char full[160];
    snprintf(full, sizeof full, "%s.expert_weights_norm", k->arch);
    if (!k->rc) k->rc = dsq_ggufw_set_bool(k->g, full, c->norm_topk_prob, k->err);
    ku32(k, "expert_gating_func", 2); /* sigmoid, the only scoring config.c accepts */
    ku32(k, "expert_group_count", c->n_group);
    ku32(k, "expert_group_used_count", c->topk_group);
    if (c->has_indexer) {
        ku32(k, "attention.indexer.head_count", c->index_n_heads);
        ku32(k, "attention.indexer.key_length", c->index_head_dim);
        ku32(k, "attention.indexer.top_k", c->index_topk);
    }
}

/* The pre-tokenizer name llama.cpp knows for tokenizer.json's pre_tokenizer:
 * ByteLevel with its own (GPT-2) regex is "gpt-2"; DeepSeek-V3's Sequence of
 * Splits (digits in threes, CJK runs, then its word pattern) is
 * "deepseek-v3".  NULL for anything else. */
static const char *pre_name(const cJSON *pt) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(ty)) return NULL;
    if (!strcmp(ty->valuestring, "ByteLevel")) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        return !ur || cJSON_IsTrue(ur) ? "gpt-2" : NULL;
    }
    if (strcmp(ty->valuestring, "Sequence")) return NULL;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *first = cJSON_IsArray(seq) ? cJSON_GetArrayItem(seq, 0) : NULL;
    const cJSON *pat = first ? cJSON_GetObjectItemCaseSensitive(first, "pattern") : NULL;
    const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
    if (cJSON_GetArraySize(seq) == 4 && cJSON_IsString(re) && !strcmp(re->valuestring, "\\p{N}{1,3}")) return "deepseek-v3";
    return NULL;
}

/* tokenizer.ggml.* from tokenizer.json: the vocabulary in id order
 * (ids the file lacks become "[PAD<id>]", unused), token types (added
 * tokens: control when special, else user-defined), the merges as
 * "left right", BOS/EOS from config.json, add_bos and the padding token
 * from tokenizer_config.json.  A model without tokenizer.json gets
 * llama.cpp's "no_vocab". */
static int tokenizer_keys(dsq_mwriter *w, dsq_err *err) {
    ggbe *b = w->be;
    const dsq_config *c = w->cfg;
    /* no tokenizer: llama.cpp runs such a model from token ids
     * ({arch}.vocab_size dummy tokens) */
    if (!b->tok) return dsq_ggufw_set_str(b->g, "tokenizer.ggml.model", "no_vocab", err);
    int64_t V = c->vocab_size;
    int rc = DSQ_E_FORMAT;
    long at = -1;
    cJSON *root = dsq_json_parse(b->tok, b->tok_len, &at), *cfgj = NULL;
    char **tokens = dsq_calloc((size_t)V + 1, sizeof *tokens);
    int32_t *types = dsq_calloc((size_t)V + 1, sizeof *types);
    char **merges = NULL;
    int64_t n_merges = 0;
    if (!tokens || !types) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    if (!root) { dsq_fail(err, rc, "%s: tokenizer.json: invalid JSON near byte %ld (%s)", w->path, at, dsq_json_why()); goto out; }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *mg = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(mg)) {
        dsq_fail(err, rc, "%s: tokenizer.json: not a byte-level BPE model (model.type, vocab, merges)", w->path);
        goto out;
    }
    const char *pre = pre_name(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    if (!pre) { dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tokenizer.json: a pre_tokenizer llama.cpp has no name for", w->path); goto out; }
    for (const cJSON *v = vocab->child; v; v = v->next) {
        double id = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (id < 0 || id >= (double)V || id != (double)(int64_t)id) {
            dsq_fail(err, rc, "%s: tokenizer.json: token '%.40s' has id outside the vocabulary of %lld", w->path, v->string,
                     (long long)V);
            goto out;
        }
        if (tokens[(int64_t)id]) { dsq_fail(err, rc, "%s: tokenizer.json: id %lld given twice", w->path, (long long)id); goto out; }
        tokens[(int64_t)id] = v->string;
        types[(int64_t)id] = 1;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id"), *ct = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(ct) || id->valuedouble < 0 || id->valuedouble >= (double)V ||
            id->valuedouble != (double)(int64_t)id->valuedouble) {
            dsq_fail(err, rc, "%s: tokenizer.json: an added token without a valid id and content", w->path);
            goto out;
        }
        int64_t i = (int64_t)id->valuedouble;
        if (tokens[i] && strcmp(tokens[i], ct->valuestring)) {
            dsq_fail(err, rc, "%s: tokenizer.json: added token %lld differs from the vocabulary's", w->path, (long long)i);
            goto out;
        }
        tokens[i] = ct->valuestring;
        types[i] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")) ? 3 : 4;
    }
    char pad[32];
    n_merges = cJSON_GetArraySize(mg);
    merges = dsq_calloc((size_t)n_merges + 1, sizeof *merges);
    if (!merges) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    int64_t k = 0;
    for (const cJSON *m = mg->child; m; m = m->next, k++) {
        const char *l = NULL, *r = NULL;
        if (cJSON_IsString(m)) {
            merges[k] = dsq_strdup(m->valuestring);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            l = m->child->valuestring;
            r = m->child->next->valuestring;
            size_t n = strlen(l) + strlen(r) + 2;
            if ((merges[k] = dsq_malloc(n))) snprintf(merges[k], n, "%s %s", l, r);
        } else {
            dsq_fail(err, rc, "%s: tokenizer.json: merge %lld is neither \"a b\" nor [a, b]", w->path, (long long)k);
            goto out;
        }
        if (!merges[k]) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    }
    /* fillers for ids the tokenizer does not use */
    for (int64_t i = 0; i < V; i++)
        if (!tokens[i]) {
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            if (!(tokens[i] = dsq_strdup(pad))) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
            types[i] = -5; /* 5 (unused), negative: the string is ours to free */
        }
    int32_t *tt = dsq_malloc(sizeof *tt * ((size_t)V + 1));
    if (!tt) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int64_t i = 0; i < V; i++) tt[i] = types[i] < 0 ? -types[i] : types[i];
    int add_bos = 1;
    int64_t pad_id = -1;
    if (b->tokcfg && (cfgj = dsq_json_parse(b->tokcfg, b->tokcfg_len, NULL))) {
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfgj, "add_bos_token");
        if (cJSON_IsBool(ab)) add_bos = cJSON_IsTrue(ab);
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(cfgj, "pad_token");
        if (cJSON_IsObject(pt)) pt = cJSON_GetObjectItemCaseSensitive(pt, "content");
        for (int64_t i = 0; cJSON_IsString(pt) && i < V && pad_id < 0; i++)
            if (!strcmp(tokens[i], pt->valuestring)) pad_id = i;
    }
    dsq_ggufw *g = b->g;
    rc = dsq_ggufw_set_str(g, "tokenizer.ggml.model", "gpt2", err);
    if (!rc) rc = dsq_ggufw_set_str(g, "tokenizer.ggml.pre", pre, err);
    if (!rc) rc = dsq_ggufw_set_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)tokens, NULL, (uint64_t)V, err);
    if (!rc) rc = dsq_ggufw_set_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_I32, tt, (uint64_t)V, err);
    if (!rc) rc = dsq_ggufw_set_arr_str(g, "tokenizer.ggml.merges", (const char *const *)merges, NULL, (uint64_t)n_merges, err);
    if (!rc && c->bos_token_id >= 0) rc = dsq_ggufw_set_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token_id, err);
    if (!rc && c->eos_token_id >= 0) rc = dsq_ggufw_set_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token_id, err);
    if (!rc && pad_id >= 0) rc = dsq_ggufw_set_u32(g, "tokenizer.ggml.padding_token_id", (uint32_t)pad_id, err);
    if (!rc) rc = dsq_ggufw_set_bool(g, "tokenizer.ggml.add_bos_token", add_bos, err);
    if (!rc) rc = dsq_ggufw_set_bool(g, "tokenizer.ggml.add_eos_token", 0, err);
    const cJSON *tmpl = cfgj ? cJSON_GetObjectItemCaseSensitive(cfgj, "chat_template") : NULL;
    if (!rc && cJSON_IsString(tmpl)) rc = dsq_ggufw_set_str(g, "tokenizer.chat_template", tmpl->valuestring, err);
    free(tt);
out:
    for (int64_t i = 0; tokens && types && i < V; i++)
        if (types[i] < 0) free(tokens[i]);
    for (int64_t i = 0; merges && i < n_merges; i++) free(merges[i]);
    free(merges);
    free(tokens);
    free(types);
    cJSON_Delete(root);
    cJSON_Delete(cfgj);
    return rc;
}

static int g_layout(dsq_mwriter *w, dsq_err *err) {
    ggbe *b = w->be;
    const dsq_config *c = w->cfg;
    const char *arch = c->has_indexer ? "deepseek32" : "deepseek2";
    int rc = dsq_ggufw_set_str(b->g, "general.architecture", arch, err);
    if (!rc) rc = dsq_ggufw_set_str(b->g, "general.name", c->model_type, err);
    if (!rc && b->any_quant) rc = dsq_ggufw_set_u32(b->g, "general.quantization_version", 2, err);
    kvctx k = {b->g, err, arch, rc};
    arch_keys(&k, c, b->any_mtp);
    if ((rc = k.rc)) return rc;
    if ((rc = tokenizer_keys(w, err))) return rc;
    return dsq_ggufw_layout(b->g, err);
}

static int g_put(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err) {
    ggbe *b = w->be;
    if (i < 0 || i >= b->n) return dsq_fail(err, DSQ_E_ARG, "%s: tensor %d out of range", w->path, i);
    (void)colscale; /* refused at declaration */
    const gt *t = &b->t[i];
    return dsq_ggufw_write(b->g, t->gi, t->slice * (uint64_t)e, m->data, t->slice, err);
}

static uint64_t g_slice_bytes(const dsq_mwriter *w, int i) {
    const ggbe *b = w->be;
    return i >= 0 && i < b->n ? b->t[i].slice : 0;
}

static void g_free(ggbe *b) {
    free(b->t);
    free(b->tok);
    free(b->tokcfg);
    free(b);
}

static int g_finish(dsq_mwriter *w, const char *meta_json, dsq_err *err) {
    (void)meta_json; /* the metadata llama.cpp reads was written at layout */
    ggbe *b = w->be;
    int rc = dsq_ggufw_finish(b->g, err);
    g_free(b);
    w->be = NULL;
    return rc;
}

static void g_abort(dsq_mwriter *w) {
    ggbe *b = w->be;
    if (!b) return;
    dsq_ggufw_abort(b->g);
    g_free(b);
    w->be = NULL;
}

const wr_ops dsq_wr_ops_gguf = {DSQ_OUT_GGUF, 1, g_open, g_check, g_add_tensor, g_add_file, g_layout,
                                g_put, g_slice_bytes, g_finish, g_abort};
