/*
 * ckpt.c -- an upstream DeepSeek-V3/V3.2 checkpoint: config.json,
 * model.safetensors.index.json (or one model.safetensors), the safetensors
 * shards and the tokenizer files, from a folder (mmap) or from a .tar/.zip
 * archive (libarchive, read forward only; see archive.c).
 *
 * At open every tensor header is validated and cross-checked: the index
 * against the shards, every name against the naming grammar (roles.c), every
 * shape against config.json, every FP8 weight against its weight_scale_inv
 * companion (present, F32, shape [ceil(out/128), ceil(in/128)], finite and
 * positive).  The small scale tensors are loaded at open so an FP8 weight can
 * be dequantized the moment it streams past.
 */
#include "formats_int.h"
#include "ckpt_int.h"
#include "quant/dtype.h"
#include "formats/json.h"
#include "formats/ctensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- name hash ---------------------------------------------------------- */
static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

static int ht_build(dsq_ckpt *ck) {
    free(ck->ht);
    size_t cap = 16;
    while (cap < (size_t)ck->n * 2) cap <<= 1;
    ck->ht = dsq_malloc(cap * sizeof *ck->ht);
    if (!ck->ht) return DSQ_E_NOMEM;
    for (size_t i = 0; i < cap; i++) ck->ht[i] = -1;
    ck->ht_cap = cap;
    for (int i = 0; i < ck->n; i++) {
        size_t k = fnv1a(ck->t[i].name) & (cap - 1);
        while (ck->ht[k] >= 0) k = (k + 1) & (cap - 1);
        ck->ht[k] = i;
    }
    return DSQ_OK;
}

int dsq_ckpt_find(const dsq_ckpt *ck, const char *name) {
    if (!ck->ht) return -1;
    size_t k = fnv1a(name) & (ck->ht_cap - 1);
    while (ck->ht[k] >= 0) {
        if (!strcmp(ck->t[ck->ht[k]].name, name)) return ck->ht[k];
        k = (k + 1) & (ck->ht_cap - 1);
    }
    return -1;
}

/* ---- warnings (inconsistencies that do not stop reading) ---------------- */
void ck_warn(dsq_ckpt *ck, const char *fmt, ...) {
    if (ck->n_warn >= 64) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = dsq_strdup(buf);
    if (s) ck->warn[ck->n_warn++] = s;
}
int dsq_ckpt_n_warnings(const dsq_ckpt *ck) { return ck->n_warn; }
const char *dsq_ckpt_warning(const dsq_ckpt *ck, int i) { return ck->warn[i]; }

/* ---- accessors ---------------------------------------------------------- */
const dsq_config *dsq_ckpt_config(const dsq_ckpt *ck) { return &ck->cfg; }
int dsq_ckpt_n_tensors(const dsq_ckpt *ck) { return ck->n; }
const dsq_tinfo *dsq_ckpt_tensor(const dsq_ckpt *ck, int i) { return &ck->t[i]; }
int dsq_ckpt_is_archive(const dsq_ckpt *ck) { return ck->archive; }
const char *dsq_ckpt_path(const dsq_ckpt *ck) { return ck->path; }
int dsq_ckpt_n_shards(const dsq_ckpt *ck) { return ck->n_shards; }
const char *dsq_ckpt_shard_name(const dsq_ckpt *ck, int i) { return ck->shards[i].name; }
uint64_t dsq_ckpt_shard_size(const dsq_ckpt *ck, int i) { return ck->shards[i].size; }

const void *dsq_ckpt_blob(const dsq_ckpt *ck, const char *name, size_t *len) {
    for (int i = 0; i < CK_N_BLOBS; i++)
        if (!strcmp(ck_blob_names[i], name) && ck->blob[i]) {
            if (len) *len = ck->blob_len[i];
            return ck->blob[i];
        }
    if (len) *len = 0;
    return NULL;
}

const char *const ck_blob_names[CK_N_BLOBS] = {
    "config.json", "model.safetensors.index.json", "tokenizer.json",
    "tokenizer_config.json", "generation_config.json",
};

const float *dsq_ckpt_scales(const dsq_ckpt *ck, int i, int64_t *srows, int64_t *scols) {
    int s = ck->t[i].scale_idx;
    if (s < 0) return NULL;
    if (srows) *srows = ck->t[s].shape[0];
    if (scols) *scols = ck->t[s].shape[1];
    return ck->scales[i];
}

int dsq_ckpt_view(const dsq_ckpt *ck, int i, const void **data, dsq_err *err) {
    const dsq_tinfo *t = &ck->t[i];
    const ck_shard *sh = &ck->shards[t->shard];
    if (ck->archive || !sh->map) {
        if (t->nbytes == 0) { *data = ""; return DSQ_OK; }
        return dsq_fail(err, DSQ_E_UNSUPPORTED,
                        "%s: random access needs a checkpoint folder, not an archive", ck->path);
    }
    *data = sh->map + t->offset;
    return DSQ_OK;
}

int dsq_ckpt_rows_f32(const dsq_ckpt *ck, int i, int64_t r0, int64_t r1, float *dst,
                      dsq_err *err) {
    const dsq_tinfo *t = &ck->t[i];
    const void *p;
    int rc = dsq_ckpt_view(ck, i, &p, err);
    if (rc) return rc;
    int64_t rows = t->n_dims >= 2 ? t->shape[0] : 1;
    int64_t cols = t->n_dims >= 2 ? t->numel / (rows ? rows : 1) : t->numel;
    if (r0 < 0 || r1 > rows || r0 > r1)
        return dsq_fail(err, DSQ_E_ARG, "%s: rows [%lld, %lld) outside [0, %lld)", t->name,
                        (long long)r0, (long long)r1, (long long)rows);
    if (dsq_ckpt_scheme(ck, i) >= 0) { /* compressed-tensors: through its scheme */
        dsq_qmat m;
        void *tmp;
        if ((rc = dsq_ckpt_qmat(ck, i, p, &m, &tmp, err))) return rc;
        rc = dsq_q_dequantize(&m, r0, r1, dst, err);
        free(tmp);
        return rc;
    }
    if (t->dtype == DSQ_DT_F8_E4M3 && t->scale_idx >= 0) {
        dsq_fp8_block_dequant(p, ck->scales[i], cols, r0, r1, ck->cfg.block_rows,
                              ck->cfg.block_cols, dst);
        return DSQ_OK;
    }
    size_t es = dsq_dtype_size(t->dtype);
    if (dsq_to_f32(t->dtype, (const uint8_t *)p + (size_t)(r0 * cols) * es, dst, (r1 - r0) * cols))
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: dtype %s cannot be widened to f32", t->name,
                        dsq_dtype_name(t->dtype));
    return DSQ_OK;
}

/* ---- close -------------------------------------------------------------- */
void dsq_ckpt_close(dsq_ckpt *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_shards; i++) {
        ck_shard *s = &ck->shards[i];
        if (s->map) munmap(s->map, s->size);
        if (s->fd >= 0) close(s->fd);
        if (s->edata) {
            for (int k = 0; k < s->h.n; k++) free(s->edata[k]);
            free(s->edata);
        }
        st_header_free(&s->h);
        free(s->name);
        free(s->path);
    }
    free(ck->shards);
    if (ck->scales)
        for (int i = 0; i < ck->n; i++) free(ck->scales[i]);
    free(ck->scales);
    free(ck->t);
    free(ck->t_entry);
    free(ck->ht);
    if (ck->own)
        for (int i = 0; i < ck->n; i++) free(ck->own[i]);
    free(ck->own);
    free(ck->q);
    dsq_ct_free(ck->ct);
    for (int i = 0; i < CK_N_BLOBS; i++) free(ck->blob[i]);
    for (int i = 0; i < ck->n_warn; i++) free(ck->warn[i]);
    free(ck->path);
    free(ck);
}

/* ---- folder shards ------------------------------------------------------ */
static int shard_name_ok(const char *ckpath, const char *name, dsq_err *err) {
    if (!*name) return dsq_fail(err, DSQ_E_FORMAT, "%s: empty shard name in the index", ckpath);
    if (name[0] == '/')
        return dsq_fail(err, DSQ_E_FORMAT, "%s: index names an absolute shard path '%.200s'", ckpath, name);
    if (!strncmp(name, "../", 3) || strstr(name, "/../") || !strcmp(name, ".."))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: index names a shard outside the folder '%.200s'", ckpath, name);
    if (strchr(name, '/') || strchr(name, '\\'))
        return dsq_fail(err, DSQ_E_FORMAT, "%s: shard name '%.200s' must be a plain file name", ckpath, name);
    return DSQ_OK;
}

/* Open and map one shard of a folder, parse its header. */
static int shard_open(ck_shard *s, dsq_err *err) {
    struct stat st, lst;
    if (lstat(s->path, &lst) != 0)
        return dsq_fail(err, DSQ_E_IO, "%s: missing shard", s->path);
    if (stat(s->path, &st) != 0) {
        if (errno == ELOOP) return dsq_fail(err, DSQ_E_IO, "%s: symbolic link loop", s->path);
        return dsq_fail(err, DSQ_E_IO, "%s: dangling symbolic link", s->path);
    }
    if (S_ISDIR(st.st_mode)) return dsq_fail(err, DSQ_E_IO, "%s: shard is a directory", s->path);
    if (S_ISFIFO(st.st_mode)) return dsq_fail(err, DSQ_E_IO, "%s: shard is a FIFO", s->path);
    if (!S_ISREG(st.st_mode)) return dsq_fail(err, DSQ_E_IO, "%s: shard is not a regular file", s->path);
    /* O_NONBLOCK: if the path was swapped for a FIFO after stat, do not hang */
    s->fd = open(s->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (s->fd < 0) return dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", s->path, strerror(errno));
    if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return dsq_fail(err, DSQ_E_IO, "%s: shard is not a regular file", s->path);
    s->size = (uint64_t)st.st_size;
    if (s->size < 8)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: truncated (%llu bytes, no header length)", s->path,
                        (unsigned long long)s->size);
    s->map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return dsq_fail(err, DSQ_E_IO, "%s: mmap failed: %s", s->path, strerror(errno));
    }
    uint64_t n = dsq_le64(s->map);
    if (n > ST_MAX_HEADER)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header length %llu exceeds the 100000000-byte limit",
                        s->path, (unsigned long long)n);
    if (n > s->size - 8)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: header length %llu beyond the end of the file (%llu bytes)",
                        s->path, (unsigned long long)n, (unsigned long long)s->size);
    return st_parse_header(&s->h, s->path, (const char *)s->map + 8, n, s->size - 8 - n, err);
}

/* ---- index -------------------------------------------------------------- */
/* Check weight_map against the shard headers: every entry names a listed
 * shard that really holds that tensor, and every tensor is listed. */
static int check_index(dsq_ckpt *ck, dsq_err *err) {
    const char *what = "model.safetensors.index.json";
    long at;
    int rc = DSQ_E_FORMAT;
    cJSON *root = dsq_json_parse(ck->blob[CK_INDEX], ck->blob_len[CK_INDEX], &at);
    if (!root) return dsq_fail(err, DSQ_E_FORMAT, "%s/%s: invalid JSON near byte %ld (%s)", ck->path, what, at, dsq_json_why());
    const cJSON *wm = dsq_json_get(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        dsq_fail(err, DSQ_E_FORMAT, "%s/%s: missing 'weight_map' object", ck->path, what);
        goto fail;
    }
    int n_listed = 0;
    for (const cJSON *it = wm->child; it; it = it->next, n_listed++) {
        if (!cJSON_IsString(it)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s/%s: weight_map['%.200s'] is not a string", ck->path,
                     what, it->string);
            goto fail;
        }
        int ti = dsq_ckpt_find(ck, it->string);
        if (ti < 0) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s' is absent from shard '%.200s' named by the index",
                     ck->path, it->string, it->valuestring);
            goto fail;
        }
        if (strcmp(ck->shards[ck->t[ti].shard].name, it->valuestring)) {
            dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s' is in shard '%.200s' but the index names '%.200s'",
                     ck->path, it->string, ck->shards[ck->t[ti].shard].name, it->valuestring);
            goto fail;
        }
    }
    if (n_listed != ck->n) {
        /* duplicates in weight_map or tensors missing from it */
        for (int i = 0; i < ck->n; i++)
            if (!dsq_json_get(wm, ck->t[i].name)) {
                dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%.200s' in shard '%.200s' is not listed in the index",
                         ck->path, ck->t[i].name, ck->shards[ck->t[i].shard].name);
                goto fail;
            }
        dsq_fail(err, DSQ_E_FORMAT, "%s/%s: weight_map lists %d entries for %d tensors (duplicates)",
                 ck->path, what, n_listed, ck->n);
        goto fail;
    }
    const cJSON *ts = dsq_json_get(dsq_json_get(root, "metadata"), "total_size");
    if (cJSON_IsNumber(ts)) {
        uint64_t sum = 0;
        for (int i = 0; i < ck->n; i++) sum += ck->t[i].nbytes;
        if ((double)sum != ts->valuedouble)
            ck_warn(ck, "index metadata.total_size is %.0f but the tensors hold %llu bytes",
                    ts->valuedouble, (unsigned long long)sum);
    }
    cJSON_Delete(root);
    return DSQ_OK;
fail:
    cJSON_Delete(root);
    return rc;
}

/* List the shard names of the index (unique, in order of first mention). */
int ck_index_shards(dsq_ckpt *ck, char ***names, int *n, dsq_err *err) {
    long at;
    *names = NULL;
    *n = 0;
    cJSON *root = dsq_json_parse(ck->blob[CK_INDEX], ck->blob_len[CK_INDEX], &at);
    if (!root)
        return dsq_fail(err, DSQ_E_FORMAT, "%s/model.safetensors.index.json: invalid JSON near byte %ld (%s)", ck->path, at, dsq_json_why());
    int rc = DSQ_OK;
    const cJSON *wm = dsq_json_get(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s/model.safetensors.index.json: missing 'weight_map' object",
                      ck->path);
        goto out;
    }
    int cap = 0;
    for (const cJSON *it = wm->child; it; it = it->next) {
        if (!cJSON_IsString(it)) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s/model.safetensors.index.json: weight_map['%.200s'] is not a string",
                          ck->path, it->string);
            goto out;
        }
        rc = shard_name_ok(ck->path, it->valuestring, err);
        if (rc) goto out;
        int seen = 0;
        for (int k = *n - 1; k >= 0 && !seen; k--) seen = !strcmp((*names)[k], it->valuestring);
        if (seen) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = dsq_realloc(*names, sizeof *nn * (size_t)cap);
            if (!nn) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
            *names = nn;
        }
        (*names)[*n] = dsq_strdup(it->valuestring);
        if (!(*names)[*n]) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
        (*n)++;
    }
    if (*n == 0) rc = dsq_fail(err, DSQ_E_FORMAT, "%s/model.safetensors.index.json: weight_map is empty", ck->path);
out:
    cJSON_Delete(root);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- tables and cross-checks (shared by folders and archives) ----------- */
static int load_scales(dsq_ckpt *ck, int wi, dsq_err *err) {
    dsq_tinfo *w = &ck->t[wi], *s = &ck->t[w->scale_idx];
    if (s->dtype != DSQ_DT_F32 && s->dtype != DSQ_DT_BF16 && s->dtype != DSQ_DT_F16)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': dtype %s, expected F32", ck->path,
                        s->name, dsq_dtype_name(s->dtype));
    if (w->n_dims != 2)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': FP8 weight must be 2-D", ck->path, w->name);
    int64_t er = (w->shape[0] + ck->cfg.block_rows - 1) / ck->cfg.block_rows;
    int64_t ec = (w->shape[1] + ck->cfg.block_cols - 1) / ck->cfg.block_cols;
    if (s->n_dims != 2 || s->shape[0] != er || s->shape[1] != ec)
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': shape [%lld, %lld], expected [%lld, %lld] for weight [%lld, %lld]",
                        ck->path, s->name, (long long)s->shape[0], (long long)(s->n_dims > 1 ? s->shape[1] : 0),
                        (long long)er, (long long)ec, (long long)w->shape[0], (long long)w->shape[1]);
    const ck_shard *sh = &ck->shards[s->shard];
    float *v = dsq_malloc(sizeof *v * (size_t)(er * ec));
    if (!v) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    const uint8_t *p = sh->edata ? sh->edata[ck->t_entry[w->scale_idx]] : NULL;
    uint8_t *tmp = NULL;
    if (!p && sh->fd >= 0) {
        /* pread, not the mapping: faulting in pages scattered over the
         * shards would map (and count as resident) their neighbours too */
        tmp = dsq_malloc(s->nbytes + 1);
        if (!tmp || pread(sh->fd, tmp, s->nbytes, (off_t)s->offset) != (ssize_t)s->nbytes) {
            free(tmp);
            free(v);
            return dsq_fail(err, DSQ_E_IO, "%s: tensor '%s': read failed", sh->path, s->name);
        }
        p = tmp;
    }
    if (!p) {
        free(v);
        return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': data unavailable", ck->path, s->name);
    }
    dsq_to_f32(s->dtype, p, v, er * ec);
    free(tmp);
    for (int64_t k = 0; k < er * ec; k++)
        if (!isfinite(v[k]) || !(v[k] > 0)) {
            int rc = dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': scale [%lld, %lld] is %g (must be finite and positive)",
                              ck->path, s->name, (long long)(k / ec), (long long)(k % ec), (double)v[k]);
            free(v);
            return rc;
        }
    ck->scales[wi] = v;
    return DSQ_OK;
}

typedef struct { dsq_ckpt *ck; dsq_err *err; } expect_ctx;

static int expect(void *arg, const char *name) {
    expect_ctx *x = arg;
    if (dsq_ckpt_find(x->ck, name) >= 0) return DSQ_OK;
    return dsq_fail(x->err, DSQ_E_CONFIG, "%s: missing tensor '%s' (required by config.json)", x->ck->path, name);
}

static int check_complete(dsq_ckpt *ck, dsq_err *err) {
    const dsq_config *c = &ck->cfg;
    expect_ctx x = {ck, err};
    int rc;
    for (int l = -1; l < c->n_layers; l++)
        if ((rc = dsq_layer_tensor_names(c, l, expect, &x))) return rc;
    if (c->n_mtp_layers > 0) {
        char nm[256];
        dsq_layer_weight_name(nm, sizeof nm, c->n_layers, -1, DSQ_R_MTP_EH_PROJ);
        if (dsq_ckpt_find(ck, nm) < 0)
            ck_warn(ck, "config declares %d MTP layer(s) but '%s' is absent (MTP dropped?)",
                    c->n_mtp_layers, nm);
    }
    return DSQ_OK;
}

/* Role, shape and companion checks for every tensor. */
static int check_tensors(dsq_ckpt *ck, int flags, dsq_err *err) {
    const dsq_config *c = &ck->cfg;
    int n_layers_all = c->n_layers + c->n_mtp_layers;
    for (int i = 0; i < ck->n; i++) {
        dsq_tinfo *t = &ck->t[i];
        if (ck_is_companion(ck, i)) { /* linked by ck_ct_link: its weight carries it */
            const dsq_tinfo *w = &ck->t[ck->q[i].link];
            t->role = DSQ_R_SCALE;
            t->weight_idx = ck->q[i].link;
            t->scale_idx = -1;
            dsq_classify(w->name, &t->layer, &t->expert);
            t->is_mtp = t->layer >= c->n_layers;
            continue;
        }
        int ct_scale = dsq_ckpt_scheme(ck, i) >= 0 ? t->scale_idx : -1;
        t->role = dsq_classify(t->name, &t->layer, &t->expert);
        t->scale_idx = ct_scale;
        t->weight_idx = -1;
        t->is_mtp = t->layer >= c->n_layers;
        if (t->role == DSQ_R_UNKNOWN) {
            if (flags & DSQ_OPEN_ALLOW_UNKNOWN) continue;
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': unknown name (use --allow-unknown to keep it)",
                            ck->path, t->name);
        }
        if (t->layer >= n_layers_all)
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': layer %d beyond num_hidden_layers + num_nextn_predict_layers (%d)",
                            ck->path, t->name, t->layer, n_layers_all);
        if (t->expert >= c->n_routed_experts)
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': expert %d beyond n_routed_experts (%d)",
                            ck->path, t->name, t->expert, c->n_routed_experts);
        if (t->role == DSQ_R_SCALE) continue;
        if (dsq_role_class(t->role) == DSQ_C_MTP && !t->is_mtp)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': MTP-only tensor in a main layer", ck->path, t->name);
        if (dsq_role_class(t->role) == DSQ_C_INDEXER && !c->has_indexer)
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': indexer tensor but model_type is %s",
                            ck->path, t->name, c->model_type);
        int moe = t->layer >= 0 && (t->is_mtp || dsq_config_is_moe_layer(c, t->layer));
        dsq_class cl = dsq_role_class(t->role);
        if (t->layer >= 0 && moe && cl == DSQ_C_DENSE)
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': dense FFN tensor in MoE layer %d (first_k_dense_replace = %d)",
                            ck->path, t->name, t->layer, c->first_k_dense);
        if (t->layer >= 0 && !moe && (cl == DSQ_C_ROUTED || cl == DSQ_C_SHARED || cl == DSQ_C_ROUTER))
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': MoE tensor in dense layer %d (first_k_dense_replace = %d)",
                            ck->path, t->name, t->layer, c->first_k_dense);
        int64_t es[4] = {0};
        int nd = dsq_config_role_shape(c, t->role, t->layer, es);
        int same = nd == t->n_dims;
        for (int k = 0; same && k < nd; k++) same = es[k] == t->shape[k];
        if (!same) {
            char got[96], want[96];
            int o = snprintf(got, sizeof got, "[");
            for (int k = 0; k < t->n_dims; k++) o += snprintf(got + o, sizeof got - (size_t)o, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
            snprintf(got + o, sizeof got - (size_t)o, "]");
            o = snprintf(want, sizeof want, "[");
            for (int k = 0; k < nd; k++) o += snprintf(want + o, sizeof want - (size_t)o, "%s%lld", k ? ", " : "", (long long)es[k]);
            snprintf(want + o, sizeof want - (size_t)o, "]");
            return dsq_fail(err, DSQ_E_CONFIG, "%s: tensor '%s': shape %s but config.json implies %s",
                            ck->path, t->name, got, want);
        }
        if (t->dtype != DSQ_DT_F32 && t->dtype != DSQ_DT_BF16 && t->dtype != DSQ_DT_F16 &&
            t->dtype != DSQ_DT_F8_E4M3 && dsq_ckpt_scheme(ck, i) < 0)
            return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported for weights",
                            ck->path, t->name, dsq_dtype_name(t->dtype));
    }
    /* link FP8 weights and their scales */
    char nm[600];
    for (int i = 0; i < ck->n; i++) {
        dsq_tinfo *t = &ck->t[i];
        if (t->role != DSQ_R_SCALE || ck_is_companion(ck, i)) continue;
        size_t L = strlen(t->name) - strlen("_scale_inv");
        snprintf(nm, sizeof nm, "%.*s", (int)L, t->name);
        int w = dsq_ckpt_find(ck, nm);
        if (w < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': scale without a weight '%s'", ck->path, t->name, nm);
        if (ck->t[w].dtype != DSQ_DT_F8_E4M3)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': has a weight_scale_inv but dtype %s (not F8_E4M3)",
                            ck->path, ck->t[w].name, dsq_dtype_name(ck->t[w].dtype));
        t->weight_idx = w;
        t->layer = ck->t[w].layer;
        t->expert = ck->t[w].expert;
        t->is_mtp = ck->t[w].is_mtp;
        ck->t[w].scale_idx = i;
    }
    if (!ck->scales) ck->scales = dsq_calloc((size_t)ck->n + 1, sizeof *ck->scales);
    if (!ck->scales) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < ck->n; i++) {
        dsq_tinfo *t = &ck->t[i];
        if (t->dtype != DSQ_DT_F8_E4M3 || dsq_ckpt_scheme(ck, i) >= 0) continue;
        if (t->scale_idx < 0)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': FP8 weight without '%s_scale_inv'",
                            ck->path, t->name, t->name);
        int rc = load_scales(ck, i, err);
        if (rc) return rc;
    }
    return DSQ_OK;
}

/* Build the tensor table from the parsed shard headers, then validate. */
int ck_finish(dsq_ckpt *ck, int flags, dsq_err *err) {
    int rc;
    if (!ck->blob[CK_CONFIG])
        return dsq_fail(err, DSQ_E_CONFIG, "%s: missing config.json", ck->path);
    char what[600];
    snprintf(what, sizeof what, "%s/config.json", ck->path);
    rc = dsq_config_parse(&ck->cfg, ck->blob[CK_CONFIG], ck->blob_len[CK_CONFIG], what, err);
    if (rc) return rc;
    int n = 0;
    for (int s = 0; s < ck->n_shards; s++) n += ck->shards[s].h.n;
    ck->t = dsq_calloc((size_t)n + 1, sizeof *ck->t);
    ck->t_entry = dsq_calloc((size_t)n + 1, sizeof *ck->t_entry);
    if (!ck->t || !ck->t_entry) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int s = 0; s < ck->n_shards; s++) {
        ck_shard *sh = &ck->shards[s];
        for (int k = 0; k < sh->h.n; k++) {
            const st_entry *e = &sh->h.e[k];
            dsq_tinfo *t = &ck->t[ck->n];
            t->name = e->name;
            t->dtype = e->dtype;
            t->n_dims = e->n_dims;
            memcpy(t->shape, e->shape, sizeof t->shape);
            t->numel = e->numel;
            t->nbytes = e->end - e->begin;
            t->shard = s;
            t->offset = sh->h.data_start + e->begin;
            ck->t_entry[ck->n] = k;
            ck->n++;
        }
    }
    if ((rc = ht_build(ck))) return dsq_fail(err, rc, "out of memory");
    for (int i = 0; i < ck->n; i++)
        if (dsq_ckpt_find(ck, ck->t[i].name) != i)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' appears in shards '%s' and '%s'",
                            ck->path, ck->t[i].name, ck->shards[ck->t[dsq_ckpt_find(ck, ck->t[i].name)].shard].name,
                            ck->shards[ck->t[i].shard].name);
    if (ck->blob[CK_INDEX] && (rc = check_index(ck, err))) return rc;
    if ((rc = ck_ct_link(ck, ht_build, err))) return rc;
    if ((rc = check_tensors(ck, flags, err))) return rc;
    return check_complete(ck, err);
}

static int read_blob(dsq_ckpt *ck, const char *dir, int which, int required, dsq_err *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, ck_blob_names[which]);
    struct stat st;
    if (stat(p, &st) != 0) {
        if (!required) return DSQ_OK;
        return dsq_fail(err, DSQ_E_CONFIG, "%s: missing %s", dir, ck_blob_names[which]);
    }
    return dsq_read_file(p, CK_BLOB_CAP, &ck->blob[which], &ck->blob_len[which], err);
}

static int open_folder(dsq_ckpt *ck, const char *dir, const char *single, int flags, dsq_err *err) {
    int rc;
    char **names = NULL;
    int n_names = 0;
    if ((rc = read_blob(ck, dir, CK_CONFIG, 1, err))) return rc;
    for (int b = CK_TOKENIZER; b < CK_N_BLOBS; b++)
        if ((rc = read_blob(ck, dir, b, 0, err))) return rc;
    if (!single && (rc = read_blob(ck, dir, CK_INDEX, 0, err))) return rc;
    if (ck->blob[CK_INDEX]) {
        if ((rc = ck_index_shards(ck, &names, &n_names, err))) goto out;
        qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    } else {
        names = dsq_malloc(sizeof *names);
        if (!names || !(names[0] = dsq_strdup(single ? dsq_basename(single) : "model.safetensors"))) {
            free(names);
            return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        }
        n_names = 1;
    }
    ck->shards = dsq_calloc((size_t)n_names, sizeof *ck->shards);
    if (!ck->shards) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < n_names; i++) {
        ck_shard *s = &ck->shards[ck->n_shards++];
        s->fd = -1;
        s->name = names[i];
        names[i] = NULL;
        size_t pl = strlen(dir) + strlen(s->name) + 2;
        s->path = dsq_malloc(pl);
        if (!s->path) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto out; }
        snprintf(s->path, pl, "%s/%s", dir, s->name);
        if ((rc = shard_open(s, err))) goto out;
    }
    rc = ck_finish(ck, flags, err);
out:
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    return rc;
}

int dsq_ckpt_open(dsq_ckpt **out, const char *path, int flags, dsq_err *err) {
    *out = NULL;
    dsq_codecs_init();
    struct stat st;
    if (stat(path, &st) != 0)
        return dsq_fail(err, DSQ_E_IO, "%s: %s", path, strerror(errno));
    dsq_ckpt *ck = dsq_calloc(1, sizeof *ck);
    if (!ck) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    ck->path = dsq_strdup(path);
    if (!ck->path) { free(ck); return dsq_fail(err, DSQ_E_NOMEM, "out of memory"); }
    size_t pl = strlen(path);
    while (pl > 1 && ck->path[pl - 1] == '/') ck->path[--pl] = 0;
    int rc;
    if (S_ISDIR(st.st_mode)) {
        rc = open_folder(ck, ck->path, NULL, flags, err);
    } else if (S_ISREG(st.st_mode) && pl > 12 && !strcmp(ck->path + pl - 12, ".safetensors")) {
        char dir[4096];
        const char *b = dsq_basename(ck->path);
        snprintf(dir, sizeof dir, "%.*s", b == ck->path ? 1 : (int)(b - ck->path - 1),
                 b == ck->path ? "." : ck->path);
        rc = open_folder(ck, dir, ck->path, flags, err);
    } else if (S_ISREG(st.st_mode)) {
        ck->archive = 1;
        rc = ck_open_archive(ck, flags, err);
    } else {
        rc = dsq_fail(err, DSQ_E_IO, "%s: not a checkpoint folder, safetensors file or archive", path);
    }
    if (rc) {
        dsq_ckpt_close(ck);
        return rc;
    }
    *out = ck;
    return DSQ_OK;
}
