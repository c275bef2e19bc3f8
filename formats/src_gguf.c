/*
 * src_gguf.c -- the model-source backend of GGUF files of llama.cpp's
 * DeepSeek architectures (deepseek2, deepseek32; formats.md A.9), written by
 * dsq or by anyone else.
 *
 * The configuration is rebuilt from the {arch}.* keys and goes through
 * dsq_config_parse like any config.json, so a GGUF is held to the same rules.
 * Two layouts: MLA (key_length_mla / value_length_mla present, kv_b split
 * into attn_k_b / attn_v_b) and, for deepseek2, the legacy one older
 * converters wrote and llama.cpp still runs (no *_mla keys, key_length /
 * value_length per head, kv_b whole as attn_kv_b); a file mixing them is
 * refused.
 * Tensors take their upstream names: a stacked expert tensor
 * ffn_*_exps [E, out, in] is E tensors, and MLA's attn_k_b / attn_v_b are
 * joined back into kv_b_proj [H*(nope+v), kv_lora] -- the one tensor whose
 * values do not sit in the file as they are: it is rebuilt in f32 the first
 * time it is read and kept until close.
 */
#include "formats/source_int.h"
#include "formats/gguf.h"
#include "formats/gguf_arch.h"
#include "formats/writer.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>

typedef struct gsrc {
    int gi;              /* GGUF tensor (kv_b: the k_b part), -1 */
    int gv;              /* kv_b: the v_b part */
    int expert;          /* slice of a stacked tensor, or 0 */
    float *kvb;          /* kv_b rebuilt; from malloc, under the lock */
} gsrc;

typedef struct gbe {
    dsq_gguf *g;
    dsq_config cfg;
    char *config_json;   /* from malloc */
    gsrc *s;
    char *names;         /* NAME_CAP bytes per tensor; from malloc */
    int cur;
    pthread_mutex_t lock;
    int have_lock;
    int legacy;          /* kv_b stored whole (attn_kv_b), the layout before MLA */
} gbe;

#define NAME_CAP 160

static const src_ops g_gguf_ops;

static int g_bid(const char *path, int is_dir, const uint8_t *head, size_t n) {
    (void)path;
    return !is_dir && n >= 4 && !memcmp(head, DSQ_GGUF_MAGIC, 4) ? 100 : 0;
}

/* The dsq scheme of a ggml type whose bytes it describes as they are. */
static int scheme_of(int type) { return dsq_q_from_ggml_type(type); }

/* ---- configuration ------------------------------------------------------- */
typedef struct kr {
    const dsq_gguf *g;
    const char *arch;
    dsq_err *err;
    int rc;
} kr;

/* {arch}.key as an integer (required unless def >= 0, the default). */
static int64_t kint(kr *k, const char *key, int64_t def) {
    char full[160];
    int64_t v = def;
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (k->rc) return def;
    if (dsq_gguf_find_key(k->g, full) < 0) {
        if (def < 0) k->rc = dsq_fail(k->err, DSQ_E_CONFIG, "%s: missing key '%s'", dsq_gguf_path(k->g), full);
        return def;
    }
    if ((k->rc = dsq_gguf_get_int(k->g, full, &v, k->err))) return def;
    if (v < 0 || v > (1 << 30)) k->rc = dsq_fail(k->err, DSQ_E_CONFIG, "%s: key '%s' = %lld out of range", dsq_gguf_path(k->g), full, (long long)v);
    return v;
}

static double kflt(kr *k, const char *key, double def) {
    char full[160];
    float v;
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (k->rc || dsq_gguf_find_key(k->g, full) < 0) return def;
    if ((k->rc = dsq_gguf_get_f32(k->g, full, &v, k->err))) return def;
    return v;
}

static int read_config(gbe *b, const char *path, dsq_err *err) {
    char arch[32];
    int rc = dsq_gguf_get_cstr(b->g, "general.architecture", arch, sizeof arch, err);
    if (rc) return rc;
    int idx = !strcmp(arch, "deepseek32");
    if (!idx && strcmp(arch, "deepseek2"))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: architecture '%s' is not a DeepSeek-V3/V3.2 model (deepseek2, deepseek32)",
                        path, arch);
    kr k = {b->g, arch, err, 0};
    dsq_config *c = &b->cfg;
    memset(c, 0, sizeof *c);
    int64_t kmla = kint(&k, "attention.key_length_mla", 0), vmla = kint(&k, "attention.value_length_mla", 0);
    if (!k.rc && !kmla && !vmla && !idx) {
        /* the layout older converters wrote (llama.cpp still runs it):
         * kv_b whole as attn_kv_b, key/value lengths per head */
        kmla = kint(&k, "attention.key_length", 0);
        vmla = kint(&k, "attention.value_length", 0);
        b->legacy = 1;
    }
    if (!k.rc && (!kmla || !vmla))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: no attention key / value lengths (%s.attention.key_length_mla, "
                        "value_length_mla)", path, arch);
    int64_t blocks = kint(&k, "block_count", -1), nextn = kint(&k, "nextn_predict_layers", 0);
    c->has_indexer = idx;
    snprintf(c->model_type, sizeof c->model_type, "%s", idx ? "deepseek_v32" : "deepseek_v3");
    c->n_layers = (int)(blocks - nextn);
    c->n_mtp_layers = (int)nextn;
    c->max_position_embeddings = (int)kint(&k, "context_length", -1);
    c->hidden_size = (int)kint(&k, "embedding_length", -1);
    c->intermediate_size = (int)kint(&k, "feed_forward_length", -1);
    c->n_heads = (int)kint(&k, "attention.head_count", -1);
    c->q_lora_rank = (int)kint(&k, "attention.q_lora_rank", -1);
    c->kv_lora_rank = (int)kint(&k, "attention.kv_lora_rank", -1);
    c->qk_rope_head_dim = (int)kint(&k, "rope.dimension_count", -1);
    c->qk_nope_head_dim = (int)(kmla - c->qk_rope_head_dim);
    c->v_head_dim = (int)vmla;
    c->first_k_dense = (int)kint(&k, "leading_dense_block_count", 0);
    c->moe_layer_freq = 1;
    c->moe_intermediate_size = (int)kint(&k, "expert_feed_forward_length", -1);
    c->n_routed_experts = (int)kint(&k, "expert_count", -1);
    c->n_experts_per_tok = (int)kint(&k, "expert_used_count", -1);
    c->n_shared_experts = (int)kint(&k, "expert_shared_count", -1);
    c->n_group = (int)kint(&k, "expert_group_count", 1);
    c->topk_group = (int)kint(&k, "expert_group_used_count", 1);
    c->routed_scaling_factor = kflt(&k, "expert_weights_scale", 1.0);
    c->rms_norm_eps = kflt(&k, "attention.layer_norm_rms_epsilon", 1e-6);
    c->rope_theta = kflt(&k, "rope.freq_base", 10000.0);
    int64_t gating = kint(&k, "expert_gating_func", 0);
    if (!k.rc && gating != 2)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: expert_gating_func %lld (DeepSeek-V3 routes with sigmoid, 2)", path,
                        (long long)gating);
    char full[160];
    uint8_t norm = 0;
    snprintf(full, sizeof full, "%s.expert_weights_norm", arch);
    if (!k.rc && dsq_gguf_find_key(b->g, full) >= 0 && (k.rc = dsq_gguf_get_bool(b->g, full, &norm, err))) return k.rc;
    c->norm_topk_prob = norm != 0;
    snprintf(full, sizeof full, "%s.rope.scaling.type", arch);
    char st[32] = "";
    if (!k.rc && dsq_gguf_find_key(b->g, full) >= 0 && (k.rc = dsq_gguf_get_cstr(b->g, full, st, sizeof st, err))) return k.rc;
    if (!strcmp(st, "yarn")) {
        c->has_yarn = 1;
        c->yarn_factor = kflt(&k, "rope.scaling.factor", 1.0);
        c->yarn_original_max_pos = (int)kint(&k, "rope.scaling.original_context_length", -1);
        c->yarn_mscale_all_dim = kflt(&k, "rope.scaling.yarn_log_multiplier", 0.0) / 0.1;
        c->yarn_mscale = c->yarn_mscale_all_dim;
        c->yarn_beta_fast = kflt(&k, "rope.scaling.yarn_beta_fast", 32.0);
        c->yarn_beta_slow = kflt(&k, "rope.scaling.yarn_beta_slow", 1.0);
    } else if (st[0] && strcmp(st, "none")) {
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: rope scaling '%s' (DeepSeek-V3 uses yarn)", path, st);
    }
    if (idx) {
        c->index_n_heads = (int)kint(&k, "attention.indexer.head_count", -1);
        c->index_head_dim = (int)kint(&k, "attention.indexer.key_length", -1);
        c->index_topk = (int)kint(&k, "attention.indexer.top_k", -1);
    }
    int64_t v = kint(&k, "vocab_size", 0);
    const dsq_gguf_kv *toks = NULL;
    dsq_err e2 = {0};
    if (!v && dsq_gguf_get_arr(b->g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &toks, &e2) == DSQ_OK) v = (int64_t)toks->n;
    c->vocab_size = (int)v;
    int64_t bos = -1, eos = -1;
    if (dsq_gguf_find_key(b->g, "tokenizer.ggml.bos_token_id") >= 0) dsq_gguf_get_int(b->g, "tokenizer.ggml.bos_token_id", &bos, &e2);
    if (dsq_gguf_find_key(b->g, "tokenizer.ggml.eos_token_id") >= 0) dsq_gguf_get_int(b->g, "tokenizer.ggml.eos_token_id", &eos, &e2);
    c->bos_token_id = (int)bos;
    c->eos_token_id = (int)eos;
    c->block_rows = c->block_cols = 128;
    if (k.rc) return k.rc;
    /* through the config.json rules like any checkpoint */
    if (!(b->config_json = dsq_config_to_json(c))) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    char what[1100];
    snprintf(what, sizeof what, "%s: metadata", path);
    return dsq_config_parse(c, b->config_json, strlen(b->config_json), what, err);
}

/* ---- tensors ------------------------------------------------------------- */
static int add_tensor(dsq_src *s, gbe *b, const char *name, dsq_role role, int layer, int expert, int gi, int gv,
                      int64_t rows, int64_t cols, int n_dims, int scheme, uint64_t nbytes) {
    dsq_stensor *t = &s->t[s->n];
    gsrc *g = &b->s[s->n];
    char *nm = b->names + (size_t)s->n * NAME_CAP;
    snprintf(nm, NAME_CAP, "%s", name);
    s->n++;
    t->name = nm;
    t->role = role;
    t->layer = layer;
    t->expert = expert;
    t->is_mtp = layer >= b->cfg.n_layers;
    t->n_dims = n_dims;
    t->shape[0] = n_dims == 2 ? rows : cols;
    t->shape[1] = n_dims == 2 ? cols : 0;
    t->rows = rows;
    t->cols = cols;
    t->scheme = scheme;
    t->dtype = DSQ_DT_INVALID;
    t->nbytes = nbytes;
    *g = (gsrc){gi, gv, expert < 0 ? 0 : expert, NULL};
    return DSQ_OK;
}

static int list_tensors(dsq_src *s, gbe *b, const char *path, dsq_err *err) {
    int nt = dsq_gguf_n_tensors(b->g);
    int64_t n = 0;
    for (int i = 0; i < nt; i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(b->g, i);
        n += t->n_dims == 3 ? t->ne[2] : 1;
    }
    if (n > (1 << 24)) return dsq_fail(err, DSQ_E_FORMAT, "%s: too many tensors", path);
    s->t = dsq_calloc((size_t)n + 1, sizeof *s->t);
    b->s = dsq_calloc((size_t)n + 1, sizeof *b->s);
    b->names = dsq_malloc((size_t)(n + 1) * NAME_CAP);
    if (!s->t || !b->s || !b->names) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    const dsq_config *c = &b->cfg;
    for (int i = 0; i < nt; i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(b->g, i);
        dsq_role role;
        int layer, part;
        if (dsq_gguf_parse_name(t->name, &role, &layer, &part))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' is not one of the %s architecture", path, t->name,
                            c->has_indexer ? "deepseek32" : "deepseek2");
        if (layer >= c->n_layers + c->n_mtp_layers)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': layer %d of %d", path, t->name, layer, c->n_layers + c->n_mtp_layers);
        int scheme = scheme_of(t->type);
        if (scheme < 0)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': ggml type %s is not read yet", path, t->name,
                            dsq_ggml_type_name(t->type) ? dsq_ggml_type_name(t->type) : "?");
        char nm[NAME_CAP];
        if (role == DSQ_R_ATTN_KV_B && (part == DSQ_PART_WHOLE) != b->legacy)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' in a file of the %s layout", path, t->name,
                            b->legacy ? "legacy (attn_kv_b)" : "MLA (attn_k_b / attn_v_b)");
        if (role == DSQ_R_ATTN_KV_B && part == DSQ_PART_WHOLE) {
            int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, r = c->kv_lora_rank;
            if (t->n_dims != 2 || t->ne[0] != r || t->ne[1] != H * (dn + dv))
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' is not kv_b [%lld, %lld]", path, t->name,
                                (long long)(H * (dn + dv)), (long long)r);
        }
        if (part == DSQ_PART_V_B) continue; /* joined with its k_b part */
        if (part == DSQ_PART_K_B) {
            char vn[64];
            dsq_gguf_tensor_name(role, layer, DSQ_PART_V_B, vn, sizeof vn);
            int gv = dsq_gguf_find_tensor(b->g, vn);
            int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, r = c->kv_lora_rank;
            const dsq_gguf_tensor *tv = gv >= 0 ? dsq_gguf_tensor_at(b->g, gv) : NULL;
            if (!tv || t->n_dims != 3 || tv->n_dims != 3 || t->ne[0] != dn || t->ne[1] != r || t->ne[2] != H ||
                tv->ne[0] != r || tv->ne[1] != dv || tv->ne[2] != H || scheme_of(tv->type) < 0)
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' and its v_b part do not make kv_b [%lld, %lld]", path,
                                t->name, (long long)(H * (dn + dv)), (long long)r);
            dsq_layer_weight_name(nm, sizeof nm, layer, -1, role);
            add_tensor(s, b, nm, role, layer, -1, i, gv, H * (dn + dv), r, 2, DSQ_Q_F32, t->nbytes + tv->nbytes);
            continue;
        }
        int is_exp = role == DSQ_R_EXP_GATE || role == DSQ_R_EXP_UP || role == DSQ_R_EXP_DOWN;
        if (is_exp) {
            if (t->n_dims != 3 || t->ne[2] != c->n_routed_experts)
                return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': not %d stacked experts", path, t->name, c->n_routed_experts);
            for (int e = 0; e < c->n_routed_experts; e++) {
                dsq_expert_name(nm, sizeof nm, layer, e, role);
                add_tensor(s, b, nm, role, layer, e, i, -1, t->ne[1], t->ne[0], 2, scheme, t->nbytes / (uint64_t)t->ne[2]);
            }
            continue;
        }
        if (t->n_dims > 2) return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': %d dimensions", path, t->name, t->n_dims);
        if (layer < 0) snprintf(nm, sizeof nm, "%s", dsq_top_weight_name(role));
        else if (dsq_layer_weight_name(nm, sizeof nm, layer, -1, role))
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' has no upstream name", path, t->name);
        add_tensor(s, b, nm, role, layer, -1, i, -1, t->n_dims == 2 ? t->ne[1] : 1, t->ne[0], t->n_dims == 2 ? 2 : 1,
                   scheme, t->nbytes);
    }
    return DSQ_OK;
}

static int g_open(dsq_src *s, const char *path, int flags, dsq_err *err) {
    (void)flags;
    gbe *b = dsq_calloc(1, sizeof *b);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    s->be = b;
    s->ops = &g_gguf_ops;
    s->kind = "gguf";
    s->random_access = 1;
    b->cur = -1;
    if (pthread_mutex_init(&b->lock, NULL)) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    b->have_lock = 1;
    int rc = dsq_gguf_open(&b->g, path, err);
    if (!rc) rc = read_config(b, path, err);
    if (!rc) rc = list_tensors(s, b, path, err);
    if (rc) return rc;
    s->cfg = &b->cfg;
    s->config_json = b->config_json;
    s->config_len = strlen(b->config_json);
    return DSQ_OK;
}

static void g_close(dsq_src *s) {
    gbe *b = s->be;
    if (!b) return;
    for (int i = 0; b->s && i < s->n; i++) free(b->s[i].kvb);
    free(b->s);
    free(b->names);
    free(b->config_json);
    dsq_gguf_close(b->g);
    if (b->have_lock) pthread_mutex_destroy(&b->lock);
    free(b);
}

/* kv_b [H*(dn+dv), r] from attn_k_b [H][r][dn] and attn_v_b [H][dv][r]. */
static int build_kvb(const dsq_src *s, int i, dsq_err *err) {
    gbe *b = s->be;
    gsrc *g = &b->s[i];
    const dsq_config *c = &b->cfg;
    int64_t H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, r = c->kv_lora_rank;
    const dsq_gguf_tensor *tk = dsq_gguf_tensor_at(b->g, g->gi), *tv = dsq_gguf_tensor_at(b->g, g->gv);
    float *kv = dsq_malloc(sizeof *kv * (size_t)(H * (dn + dv) * r));
    float *k = dsq_malloc(sizeof *k * (size_t)(H * r * dn)), *v = dsq_malloc(sizeof *v * (size_t)(H * dv * r));
    int rc = !kv || !k || !v ? dsq_fail(err, DSQ_E_NOMEM, "out of memory") : DSQ_OK;
    dsq_qmat qk = {scheme_of(tk->type), H * r, dn, (void *)tk->data, NULL, NULL};
    dsq_qmat qv = {scheme_of(tv->type), H * dv, r, (void *)tv->data, NULL, NULL};
    if (!rc) rc = dsq_q_dequantize(&qk, 0, qk.rows, k, err);
    if (!rc) rc = dsq_q_dequantize(&qv, 0, qv.rows, v, err);
    for (int64_t h = 0; !rc && h < H; h++) {
        float *head = kv + h * (dn + dv) * r;
        for (int64_t cc = 0; cc < dn; cc++)
            for (int64_t ri = 0; ri < r; ri++) head[cc * r + ri] = k[(h * r + ri) * dn + cc];
        memcpy(head + dn * r, v + h * dv * r, sizeof *v * (size_t)(dv * r));
    }
    free(k);
    free(v);
    if (rc) free(kv);
    else g->kvb = kv;
    return rc;
}

static int g_qmat(const dsq_src *s, int i, dsq_qmat *m, const void **colscale, dsq_err *err) {
    gbe *b = s->be;
    gsrc *g = &b->s[i];
    const dsq_stensor *t = &s->t[i];
    *colscale = NULL;
    if (g->gv >= 0) {
        pthread_mutex_lock(&b->lock);
        int rc = g->kvb ? DSQ_OK : build_kvb(s, i, err);
        pthread_mutex_unlock(&b->lock);
        if (rc) return rc;
        *m = (dsq_qmat){DSQ_Q_F32, t->rows, t->cols, g->kvb, NULL, NULL};
        return DSQ_OK;
    }
    const dsq_gguf_tensor *gt = dsq_gguf_tensor_at(b->g, g->gi);
    *m = (dsq_qmat){t->scheme, t->rows, t->cols, (void *)(gt->data + t->nbytes * (uint64_t)g->expert), NULL, NULL};
    return DSQ_OK;
}

static int g_rows(const dsq_src *s, int i, int64_t r0, int64_t r1, float *dst, dsq_err *err) {
    dsq_qmat m;
    const void *cs;
    int rc = g_qmat(s, i, &m, &cs, err);
    return rc ? rc : dsq_q_dequantize(&m, r0, r1, dst, err);
}

/* Let the kernel drop the mapped pages of bytes [p, p + n) (whole pages
 * inside them): the mapping is read-only, so a later read faults them in
 * again from the file. */
static void drop_range(const uint8_t *p, uint64_t n) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + pg - 1) & ~(pg - 1),
              e = ((uintptr_t)p + n) & ~(pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Streaming moves past tensor i: its pages, and kv_b's rebuilt copy, are
 * not kept (a whole model streams in the memory of one tensor). */
static void release(dsq_src *s, int i) {
    gbe *b = s->be;
    gsrc *g = &b->s[i];
    const dsq_gguf_tensor *gt = dsq_gguf_tensor_at(b->g, g->gi);
    if (g->gv >= 0) {
        const dsq_gguf_tensor *tv = dsq_gguf_tensor_at(b->g, g->gv);
        pthread_mutex_lock(&b->lock);
        free(g->kvb);
        g->kvb = NULL;
        pthread_mutex_unlock(&b->lock);
        drop_range(gt->data, gt->nbytes);
        drop_range(tv->data, tv->nbytes);
        return;
    }
    drop_range(gt->data + s->t[i].nbytes * (uint64_t)g->expert, s->t[i].nbytes);
}

static int g_next(dsq_src *s, int *i, dsq_err *err) {
    (void)err;
    gbe *b = s->be;
    if (b->cur >= 0) release(s, b->cur);
    if (b->cur + 1 >= s->n) return DSQ_EOF;
    *i = ++b->cur;
    return DSQ_OK;
}

static int g_data(dsq_src *s, dsq_qmat *m, const void **colscale, dsq_err *err) {
    gbe *b = s->be;
    if (b->cur < 0) return dsq_fail(err, DSQ_E_ARG, "%s: no current tensor", s->path);
    return g_qmat(s, b->cur, m, colscale, err);
}

/* GGUF keeps its tokenizer as tokenizer.ggml.* keys, not as files. */
static const void *g_file(dsq_src *s, const char *name, size_t *len, dsq_err *err) {
    (void)s; (void)name; (void)err;
    *len = 0;
    return NULL;
}

static int g_part(const dsq_src *s, int i, char *path, size_t cap) {
    if (i > 0) return DSQ_EOF;
    snprintf(path, cap, "%s", s->path);
    return DSQ_OK;
}

static const src_ops g_gguf_ops = {g_close, g_qmat, g_rows, g_next, g_data, g_file, g_part};
const src_backend dsq_src_backend_gguf = {"gguf", g_bid, g_open};
