/*
 * gen_ckpt.c -- writes synthetic DeepSeek-V3.2 checkpoints (see gen.h).
 *
 * Values: projections N(0, 1/in), norms 1 + 0.1 N, indexer k_norm bias
 * 0.1 N, router bias 0.05 N, router N(0, 1/D), embeddings N(0, 1) -- the
 * recipe of deepseek-v32.md section 6.3.  Normal deviates come from a
 * four-uniform Irwin-Hall sum (unit variance, bounded at 3.46 sigma): cheap
 * enough to generate a 1 GB checkpoint in seconds, and the exact distribution
 * does not matter for format tests.  Every FP8 tensor's first block holds a
 * value that lands exactly on 448 after scaling and a few subnormals, to
 * exercise the decoder.  Tensors are spread over shards so that some scales
 * sit in a different shard from their weight.
 */
#include "synth/gen.h"
#include "formats/formats_int.h"
#include "synth/st_write.h"
#include "quant/dtype.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <dirent.h>

/* ---- deterministic random numbers (splitmix64 / xorshift) --------------- */
typedef struct { uint64_t s; } rng;
static uint64_t rnext(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rnorm(rng *r) {
    uint64_t u = rnext(r);
    /* four 16-bit uniforms; sum has mean 2 and variance 4/12 */
    float s = (float)(u & 0xFFFF) + (float)((u >> 16) & 0xFFFF) + (float)((u >> 32) & 0xFFFF) +
              (float)(u >> 48);
    return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}
static uint64_t hash_name(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

int dsq_gen_preset(dsq_config *c, const char *name) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "deepseek_v32");
    c->has_indexer = 1;
    c->fp8 = 1;
    c->block_rows = c->block_cols = 128;
    c->scale_ue8m0 = 1;
    c->moe_layer_freq = 1;
    c->norm_topk_prob = 1;
    c->routed_scaling_factor = 2.5;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000;
    c->rope_interleave = 1;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    c->n_shared_experts = 1;
    /* both presets: the 671B release's context and YaRN settings */
    c->max_position_embeddings = 163840;
    c->has_yarn = 1; c->yarn_factor = 40; c->yarn_original_max_pos = 4096;
    c->yarn_beta_fast = 32; c->yarn_beta_slow = 1; c->yarn_mscale = 1; c->yarn_mscale_all_dim = 1;
    if (!strcmp(name, "tiny") || !strcmp(name, "tiny-nomtp")) {
        c->vocab_size = 4096; c->hidden_size = 256; c->intermediate_size = 320;
        c->moe_intermediate_size = 96; c->n_layers = 4; c->n_mtp_layers = name[4] ? 0 : 1;
        c->first_k_dense = 1; c->n_heads = 4; c->q_lora_rank = 128; c->kv_lora_rank = 64;
        c->qk_nope_head_dim = 32; c->qk_rope_head_dim = 32; c->v_head_dim = 32;
        c->n_routed_experts = 16; c->n_experts_per_tok = 4; c->n_group = 4; c->topk_group = 2;
        c->index_n_heads = 4; c->index_head_dim = 64; c->index_topk = 64;
        return DSQ_OK;
    }
    if (!strcmp(name, "tiny-v3")) { /* DeepSeek-V3 / R1 / V3.1: no indexer, dense MLA */
        dsq_gen_preset(c, "tiny-nomtp");
        snprintf(c->model_type, sizeof c->model_type, "deepseek_v3");
        c->has_indexer = 0;
        c->index_n_heads = c->index_head_dim = c->index_topk = 0;
        return DSQ_OK;
    }
    if (!strcmp(name, "tiny-kimi-k2")) {
        /* Kimi-K2-Thinking's choices at the tiny shape: one expert group,
         * rope_theta 50000, YaRN factor 32 from 4096 with beta_fast 1, routed
         * scale 2.827; BF16 weights (the routed experts become INT4) */
        dsq_gen_preset(c, "tiny-v3");
        snprintf(c->model_type, sizeof c->model_type, "kimi_k2");
        c->fp8 = 0;
        c->n_group = 1; c->topk_group = 1;
        c->routed_scaling_factor = 2.827;
        c->rope_theta = 50000;
        c->max_position_embeddings = 262144;
        c->yarn_factor = 32; c->yarn_original_max_pos = 4096; c->yarn_beta_fast = 1; c->yarn_beta_slow = 1;
        return DSQ_OK;
    }
    if (!strcmp(name, "bench-1b")) {
        c->vocab_size = 32000; c->hidden_size = 1024; c->intermediate_size = 2816;
        c->moe_intermediate_size = 512; c->n_layers = 8; c->n_mtp_layers = 0;
        c->first_k_dense = 1; c->n_heads = 8; c->q_lora_rank = 768; c->kv_lora_rank = 512;
        c->qk_nope_head_dim = 128; c->qk_rope_head_dim = 64; c->v_head_dim = 128;
        c->n_routed_experts = 64; c->n_experts_per_tok = 8; c->n_group = 8; c->topk_group = 4;
        c->index_n_heads = 4; c->index_head_dim = 128; c->index_topk = 2048;
        return DSQ_OK;
    }
    return DSQ_E_ARG;
}

/* ---- tensor list -------------------------------------------------------- */
typedef struct { char name[160]; dsq_role role; int n_dims; int64_t shape[2]; } gt;

static int is_fp8_role(dsq_role r) {
    switch (r) {
    case DSQ_R_ATTN_Q_A: case DSQ_R_ATTN_Q_B: case DSQ_R_ATTN_KV_A: case DSQ_R_ATTN_KV_B:
    case DSQ_R_ATTN_O: case DSQ_R_IDX_WQ_B: case DSQ_R_IDX_WK: case DSQ_R_DENSE_GATE:
    case DSQ_R_DENSE_UP: case DSQ_R_DENSE_DOWN: case DSQ_R_SHEXP_GATE: case DSQ_R_SHEXP_UP:
    case DSQ_R_SHEXP_DOWN: case DSQ_R_EXP_GATE: case DSQ_R_EXP_UP: case DSQ_R_EXP_DOWN:
        return 1;
    default: return 0;
    }
}

static int add_t(gt **v, int *n, int *cap, const dsq_config *c, const char *name) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        gt *nv = realloc(*v, sizeof **v * (size_t)*cap);
        if (!nv) return DSQ_E_NOMEM;
        *v = nv;
    }
    gt *t = &(*v)[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    int l, e;
    t->role = dsq_classify(name, &l, &e);
    int64_t s[4];
    t->n_dims = dsq_config_role_shape(c, t->role, l, s);
    t->shape[0] = s[0];
    t->shape[1] = t->n_dims > 1 ? s[1] : 1;
    return DSQ_OK;
}

typedef struct { gt **v; int *n, *cap; const dsq_config *c; } list_ctx;

static int list_add(void *arg, const char *name) {
    list_ctx *x = arg;
    return add_t(x->v, x->n, x->cap, x->c, name);
}

/* Every tensor of the checkpoint, embedding first, layers, then the final
 * norm and the head (the order of the upstream files). */
static int list_tensors(const dsq_config *c, int with_mtp, gt **out, int *n) {
    gt *v = NULL;
    int cap = 0, rc;
    *n = 0;
    list_ctx x = {&v, n, &cap, c};
    rc = add_t(&v, n, &cap, c, dsq_top_weight_name(DSQ_R_EMBED));
    int last = c->n_layers + (with_mtp ? c->n_mtp_layers : 0);
    for (int l = 0; l < last && !rc; l++) rc = dsq_layer_tensor_names(c, l, list_add, &x);
    if (!rc) rc = add_t(&v, n, &cap, c, dsq_top_weight_name(DSQ_R_FINAL_NORM));
    if (!rc) rc = add_t(&v, n, &cap, c, dsq_top_weight_name(DSQ_R_HEAD));
    *out = v;
    return rc ? DSQ_E_NOMEM : DSQ_OK;
}

/* Fill one tensor's values (f32) per its role. */
static void fill(const gt *t, const dsq_config *c, rng *r, float *x, int64_t n) {
    float sd;
    switch (t->role) {
    case DSQ_R_INPUT_NORM: case DSQ_R_POST_ATTN_NORM: case DSQ_R_ATTN_Q_A_NORM:
    case DSQ_R_ATTN_KV_A_NORM: case DSQ_R_FINAL_NORM: case DSQ_R_IDX_K_NORM:
    case DSQ_R_MTP_ENORM: case DSQ_R_MTP_HNORM: case DSQ_R_MTP_HEAD_NORM:
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f + 0.1f * rnorm(r);
        return;
    case DSQ_R_IDX_K_NORM_BIAS:
        for (int64_t i = 0; i < n; i++) x[i] = 0.1f * rnorm(r);
        return;
    case DSQ_R_ROUTER_BIAS:
        for (int64_t i = 0; i < n; i++) x[i] = 0.05f * rnorm(r);
        return;
    case DSQ_R_EMBED: case DSQ_R_MTP_EMBED:
        sd = 1.0f;
        break;
    case DSQ_R_ROUTER:
        sd = 1.0f / sqrtf((float)c->hidden_size);
        break;
    default:
        sd = 1.0f / sqrtf((float)t->shape[1]);
    }
    for (int64_t i = 0; i < n; i++) x[i] = sd * rnorm(r);
}

/* FP8 block quantization with power-of-two scales (section 3.5). */
static void fp8_quantize(float *x, int64_t rows, int64_t cols, int br, int bc, uint8_t *q, float *scale) {
    int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    for (int64_t bi = 0; bi < sr; bi++)
        for (int64_t bj = 0; bj < sc; bj++) {
            int64_t i1 = (bi + 1) * br < rows ? (bi + 1) * br : rows;
            int64_t j1 = (bj + 1) * bc < cols ? (bj + 1) * bc : cols;
            float amax = 0;
            for (int64_t i = bi * br; i < i1; i++)
                for (int64_t j = bj * bc; j < j1; j++) amax = fmaxf(amax, fabsf(x[i * cols + j]));
            float s = dsq_pow2_ceil(fmaxf(amax, 1e-4f) / 448.0f);
            if (bi == 0 && bj == 0) {
                /* exercise the decoder: one value exactly at 448 after scaling, subnormals */
                x[0] = -448.0f * s;
                int64_t n = (i1) * cols;
                for (int k = 1; k <= 3 && k < n; k++) x[k * 7 % n] = (float)k * 0.001953125f * s;
            }
            scale[bi * sc + bj] = s;
            for (int64_t i = bi * br; i < i1; i++)
                for (int64_t j = bj * bc; j < j1; j++) q[i * cols + j] = dsq_f32_to_e4m3(x[i * cols + j] / s);
        }
}

static int ensure_dir(const char *dir, int force, dsq_err *err) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return dsq_fail(err, DSQ_E_IO, "%s: exists and is not a directory", dir);
        DIR *d = opendir(dir);
        struct dirent *de;
        int empty = 1;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
        if (d) closedir(d);
        if (!empty && !force)
            return dsq_fail(err, DSQ_E_EXISTS, "%s: folder is not empty (use --force)", dir);
        return DSQ_OK;
    }
    if (mkdir(dir, 0755) != 0) return dsq_fail(err, DSQ_E_IO, "%s: cannot create: %s", dir, strerror(errno));
    return DSQ_OK;
}

static int write_text(const char *dir, const char *name, const char *text, size_t len, dsq_err *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    dsq_afile *f;
    int rc = dsq_afile_open(&f, p, DSQ_AFILE_FORCE, err);
    if (rc) return rc;
    dsq_afile_write(f, text, len);
    return dsq_afile_commit(f, err);
}

int dsq_gen_ckpt(const char *dir, const dsq_gen_opts *o, dsq_err *err) {
    const dsq_config *c = &o->cfg;
    gt *ts = NULL;
    int n = 0, rc;
    st_writer **ws = NULL;
    cJSON *idx = NULL;
    float *x = NULL;
    uint8_t *buf = NULL;
    float *sc = NULL;
    int ns = o->n_shards < 1 ? 1 : o->n_shards;
    dsq_codecs_init();
    if ((rc = ensure_dir(dir, o->force, err))) return rc;
    if ((rc = list_tensors(c, o->with_mtp, &ts, &n))) return dsq_fail(err, rc, "out of memory");
    /* bytes per shard: split the total evenly */
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = ts[i].shape[0] * ts[i].shape[1];
        total += (uint64_t)numel * (c->fp8 && is_fp8_role(ts[i].role) ? 1 : (ts[i].n_dims == 1 || ts[i].role == DSQ_R_ROUTER_BIAS ? 4 : 2));
    }
    uint64_t per = total / (uint64_t)ns + 1, acc = 0;
    ws = calloc((size_t)ns, sizeof *ws);
    idx = cJSON_CreateObject();
    cJSON *wm = cJSON_CreateObject();
    if (!ws || !idx || !wm) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int s = 0; s < ns; s++)
        if (!(ws[s] = st_writer_new())) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    char shard_names[64][64];
    if (ns > 64) { rc = dsq_fail(err, DSQ_E_ARG, "at most 64 shards"); goto out; }
    for (int s = 0; s < ns; s++)
        snprintf(shard_names[s], sizeof shard_names[s], "model-%05d-of-%06d.safetensors", s + 1, ns);
    uint64_t total_size = 0;
    for (int i = 0; i < n; i++) {
        gt *t = &ts[i];
        int64_t rows = t->shape[0], cols = t->shape[1], numel = rows * cols;
        int shard = (int)(acc / per);
        if (shard >= ns) shard = ns - 1;
        rng r = {hash_name(t->name, o->seed)};
        x = realloc(x, sizeof *x * (size_t)numel);
        buf = realloc(buf, (size_t)numel * 4);
        if (!x || !buf) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
        fill(t, c, &r, x, numel);
        int64_t shp[2] = {rows, cols};
        int fp8 = c->fp8 && is_fp8_role(t->role);
        dsq_dtype dt;
        uint64_t nb;
        if (fp8) {
            int64_t sr = (rows + c->block_rows - 1) / c->block_rows, scn = (cols + c->block_cols - 1) / c->block_cols;
            sc = realloc(sc, sizeof *sc * (size_t)(sr * scn));
            if (!sc) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
            fp8_quantize(x, rows, cols, c->block_rows, c->block_cols, buf, sc);
            dt = DSQ_DT_F8_E4M3;
            nb = (uint64_t)numel;
            /* the scale goes to the next shard every third weight, as real releases do */
            int sshard = (i % 3 == 0) ? (shard + 1) % ns : shard;
            char sn[200];
            dsq_scale_name(sn, sizeof sn, t->name);
            int64_t ssh[2] = {sr, scn};
            if (st_writer_add(ws[sshard], sn, DSQ_DT_F32, 2, ssh, sc, (uint64_t)(sr * scn) * 4)) {
                rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
                goto out;
            }
            cJSON_AddStringToObject(wm, sn, shard_names[sshard]);
            total_size += (uint64_t)(sr * scn) * 4;
        } else if (t->n_dims == 1) {
            dt = DSQ_DT_F32;
            memcpy(buf, x, (size_t)numel * 4);
            nb = (uint64_t)numel * 4;
        } else {
            dt = DSQ_DT_BF16;
            for (int64_t k = 0; k < numel; k++) dsq_st16(buf + 2 * k, dsq_f32_to_bf16(x[k]));
            nb = (uint64_t)numel * 2;
        }
        if (st_writer_add(ws[shard], t->name, dt, t->n_dims, shp, buf, nb)) {
            rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
            goto out;
        }
        cJSON_AddStringToObject(wm, t->name, shard_names[shard]);
        total_size += nb;
        acc += nb;
    }
    for (int s = 0; s < ns; s++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, shard_names[s]);
        if ((rc = st_writer_save(ws[s], p, DSQ_AFILE_FORCE, err))) goto out;
    }
    cJSON *md = cJSON_AddObjectToObject(idx, "metadata");
    cJSON_AddNumberToObject(md, "total_size", (double)total_size);
    cJSON_AddItemToObject(idx, "weight_map", wm);
    wm = NULL;
    char *js = cJSON_Print(idx);
    rc = js ? write_text(dir, "model.safetensors.index.json", js, strlen(js), err)
            : dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    free(js);
    if (rc) goto out;
    char *cj = dsq_config_to_json(c);
    rc = cj ? write_text(dir, "config.json", cj, strlen(cj), err) : dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    free(cj);
    if (rc) goto out;
    if (o->tokenizer_dir) {
        static const char *const tf[] = {"tokenizer.json", "tokenizer_config.json"};
        for (int k = 0; k < 2; k++) {
            char p[4096], *data;
            size_t len;
            snprintf(p, sizeof p, "%s/%s", o->tokenizer_dir, tf[k]);
            if ((rc = dsq_read_file(p, 256u << 20, &data, &len, err))) goto out;
            rc = write_text(dir, tf[k], data, len, err);
            free(data);
            if (rc) goto out;
        }
    }
out:
    cJSON_Delete(wm);
    cJSON_Delete(idx);
    for (int s = 0; ws && s < ns; s++) st_writer_free(ws[s]);
    free(ws);
    free(ts);
    free(x);
    free(buf);
    free(sc);
    return rc;
}
