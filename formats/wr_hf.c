/*
 * wr_hf.c -- Hugging Face model folders as output formats (writer.h): the
 * layouts vLLM and SGLang serve.
 *
 *   compressed-tensors  (DSQ_OUT_CT; ../shared/spec/formats.md Part C)
 *     int4 groups (BF16 scales)   pack-quantized: P.weight_packed I32 [out, in/8],
 *                                 P.weight_scale BF16 [out, in/G], P.weight_shape
 *                                 I64 [2], P.weight_zero_point I32 [out/8, in/G]
 *     int8-channel-bf16           pack-quantized 8-bit: weight_packed [out, in/4]
 *                                 (codes + 128), weight_scale BF16 [out, 1]
 *     fp8 tensor / channel / block  float-quantized: P.weight F8_E4M3, P.weight_scale
 *                                 F32 [1] / [out, 1] / [out/128, in/128]
 *     f32 / f16 / bf16            P.weight as it is (in the ignore list when linear)
 *   native FP8 (DSQ_OUT_HF; DeepSeek's release format)
 *     fp8-block-ue8m0             P.weight F8_E4M3 + P.weight_scale_inv F32 powers of two
 *     f32 / f16 / bf16            as they are
 *
 * Tensors keep their upstream names, routed experts one per expert.  The
 * shards (model-0000i-of-0000n.safetensors, at most --shard-size bytes
 * each unless one tensor is larger) are laid out when every tensor is
 * declared, so slices are written at their offsets in any order.
 * config.json is the source's with its quantization_config replaced;
 * model.safetensors.index.json and the tokenizer and generation files go
 * beside it.  Everything is written into a temporary folder beside the
 * target, renamed into place at finish.
 */
#include "formats/writer_int.h"
#include "formats/formats_int.h"
#include "formats/ctensors.h"
#include "formats/json.h"
#include "quant/dtype.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* One tensor of a shard file. */
typedef struct ftensor {
    char *name;
    dsq_dtype dtype;
    int n_dims;
    int64_t shape[2];
    uint64_t bytes;
    int shard;
    uint64_t off;     /* absolute offset in its shard file */
} ftensor;

/* One declared tensor (slice = one expert of a stacked one). */
typedef struct htensor {
    dsq_mw_tensor d;
    char *name;
    int first;        /* its first file tensor; each slice has n_parts */
    int n_parts;
    uint64_t slice;   /* bytes of one slice */
} htensor;

typedef struct hfbe {
    int ct;                  /* compressed-tensors, else native FP8 */
    char target[PATH_MAX];
    char tmpdir[PATH_MAX + 32];
    int force;
    uint64_t shard_size;
    htensor *t;
    int n, cap;
    ftensor *f;
    int nf, fcap;
    int n_shards;
    dsq_afile **sh;
    struct { char *name; char *data; size_t len; } side[8];
    int n_side;
    uint8_t *buf;            /* conversion scratch */
    size_t buf_cap;
} hfbe;

static int is_float(int scheme) { return dsq_q_scheme(scheme)->kind == DSQ_QK_FLOAT; }

/* ---- open / check / declare ---------------------------------------------------- */

static int h_open_common(dsq_mwriter *w, const char *path, int force, int ct, dsq_err *err) {
    hfbe *b = dsq_calloc(1, sizeof *b);
    if (!b) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    b->ct = ct;
    b->force = force;
    b->shard_size = w->shard_size ? w->shard_size : 5000000000ull;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n >= sizeof b->target) { free(b); return dsq_fail(err, DSQ_E_ARG, "output path too long"); }
    memcpy(b->target, path, n);
    b->target[n] = 0;
    struct stat st;
    int rc = DSQ_OK;
    if (lstat(b->target, &st) == 0) {
        if (!force) rc = dsq_fail(err, DSQ_E_EXISTS, "%s: already exists (use --force to replace it)", b->target);
        else if (!S_ISDIR(st.st_mode)) rc = dsq_fail(err, DSQ_E_IO, "%s: exists and is not a folder", b->target);
    }
    if (rc) {
        free(b);
        return rc;
    }
    rc = dsq_afile_mkdtemp(b->target, b->tmpdir, sizeof b->tmpdir, err);
    if (rc) { free(b); return rc; }
    w->be = b;
    return DSQ_OK;
}
static int h_open_ct(dsq_mwriter *w, const char *path, int force, dsq_err *err) { return h_open_common(w, path, force, 1, err); }
static int h_open_hf(dsq_mwriter *w, const char *path, int force, dsq_err *err) { return h_open_common(w, path, force, 0, err); }

static int h_check(const dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    const hfbe *b = w->be;
    const dsq_qscheme *q = dsq_q_scheme(t->scheme);
    if (!q) return dsq_fail(err, DSQ_E_ARG, "%s: %s: bad scheme", b->target, t->name);
    if (t->colscale)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: Hugging Face layouts cannot store column multipliers (use a "
                        "recipe without them)", b->target, t->name);
    if (q->kind == DSQ_QK_FLOAT) return DSQ_OK;
    if (t->n_dims < 2)
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: a vector cannot be quantized", b->target, t->name);
    if (!b->ct) {
        if (t->scheme == DSQ_Q_FP8_BLOCK_UE8M0) return DSQ_OK;
        return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: DeepSeek's FP8 format stores fp8-block-ue8m0 (E4M3 with "
                        "power-of-two 128x128 block scales) or plain floats, not %s", b->target, t->name, q->name);
    }
    dsq_ct_args a;
    if (dsq_ct_scheme_args(t->scheme, &a) == DSQ_OK) return DSQ_OK;
    return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s: compressed-tensors has no exact form of %s", b->target, t->name,
                    q->name);
}

static int h_add_tensor(dsq_mwriter *w, const dsq_mw_tensor *t, dsq_err *err) {
    hfbe *b = w->be;
    if (t->part != DSQ_PART_WHOLE) return dsq_fail(err, DSQ_E_ARG, "%s: %s: tensors are written whole", b->target, t->name);
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 256;
        htensor *np = dsq_realloc(b->t, sizeof *np * (size_t)nc);
        if (!np) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        b->t = np;
        b->cap = nc;
    }
    htensor *h = &b->t[b->n];
    memset(h, 0, sizeof *h);
    h->d = *t;
    h->name = dsq_strdup(t->name);
    if (!h->name) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    h->d.name = h->name;
    h->d.recipe = NULL;
    return b->n++;
}

static int h_add_file(dsq_mwriter *w, const char *name, const void *data, size_t len, dsq_err *err) {
    hfbe *b = w->be;
    if (b->n_side >= 8) return dsq_fail(err, DSQ_E_ARG, "%s: too many side files", b->target);
    if (!strcmp(name, "config.json") || !strcmp(name, "model.safetensors.index.json")) return DSQ_OK; /* written here */
    char *c = dsq_malloc(len + 1), *nm = dsq_strdup(name);
    if (!c || !nm) { free(c); free(nm); return dsq_fail(err, DSQ_E_NOMEM, "out of memory"); }
    memcpy(c, data, len);
    c[len] = 0;
    b->side[b->n_side].name = nm;
    b->side[b->n_side].data = c;
    b->side[b->n_side].len = len;
    b->n_side++;
    return DSQ_OK;
}

/* ---- layout ------------------------------------------------------------------ */

static int add_f(hfbe *b, const char *name, dsq_dtype dt, int nd, int64_t d0, int64_t d1, dsq_err *err) {
    if (b->nf == b->fcap) {
        int nc = b->fcap ? b->fcap * 2 : 1024;
        ftensor *np = dsq_realloc(b->f, sizeof *np * (size_t)nc);
        if (!np) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        b->f = np;
        b->fcap = nc;
    }
    ftensor *f = &b->f[b->nf];
    memset(f, 0, sizeof *f);
    if (!(f->name = dsq_strdup(name))) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    f->dtype = dt;
    f->n_dims = nd;
    f->shape[0] = d0;
    f->shape[1] = d1;
    f->bytes = dsq_dtype_size(dt) * (uint64_t)d0 * (uint64_t)(nd > 1 ? d1 : 1);
    b->nf++;
    return DSQ_OK;
}

/* The file tensors of one slice named `name` ("P.weight"). */
static int slice_parts(hfbe *b, const htensor *h, const char *name, dsq_err *err) {
    const dsq_mw_tensor *t = &h->d;
    const dsq_qscheme *q = dsq_q_scheme(t->scheme);
    int64_t R = t->rows, C = t->cols;
    char mod[600], nm[700];
    size_t L = strlen(name);
    if (L > 7 && !strcmp(name + L - 7, ".weight")) snprintf(mod, sizeof mod, "%.*s", (int)(L - 7), name);
    else snprintf(mod, sizeof mod, "%s", name);
    int rc;
    if (q->kind == DSQ_QK_FLOAT) {
        int nd = t->experts ? 2 : t->n_dims;
        int64_t d0 = t->experts ? R : t->shape[0], d1 = t->experts ? C : t->shape[1];
        return add_f(b, name, q->elem, nd, d0, nd > 1 ? d1 : 0, err);
    }
    if (q->kind == DSQ_QK_INT4 || q->kind == DSQ_QK_INT8) {
        int p = q->kind == DSQ_QK_INT4 ? 8 : 4;
        int64_t ng = q->kind == DSQ_QK_INT4 ? (C + q->group - 1) / q->group : 1;
        snprintf(nm, sizeof nm, "%s.weight_packed", mod);
        if ((rc = add_f(b, nm, DSQ_DT_I32, 2, R, (C + p - 1) / p, err))) return rc;
        snprintf(nm, sizeof nm, "%s.weight_scale", mod);
        if ((rc = add_f(b, nm, DSQ_DT_BF16, 2, R, ng, err))) return rc;
        snprintf(nm, sizeof nm, "%s.weight_shape", mod);
        if ((rc = add_f(b, nm, DSQ_DT_I64, 1, 2, 0, err))) return rc;
        if (!q->sym) {
            snprintf(nm, sizeof nm, "%s.weight_zero_point", mod);
            if ((rc = add_f(b, nm, DSQ_DT_I32, 2, (R + p - 1) / p, ng, err))) return rc;
        }
        return DSQ_OK;
    }
    /* FP8 */
    if ((rc = add_f(b, name, DSQ_DT_F8_E4M3, 2, R, C, err))) return rc;
    snprintf(nm, sizeof nm, "%s%s", name, b->ct ? "_scale" : "_scale_inv");
    if (q->gran == DSQ_QG_TENSOR) return add_f(b, nm, DSQ_DT_F32, 1, 1, 0, err);
    if (q->gran == DSQ_QG_CHANNEL) return add_f(b, nm, DSQ_DT_F32, 2, R, 1, err);
    return add_f(b, nm, DSQ_DT_F32, 2, (R + 127) / 128, (C + 127) / 128, err);
}

static int slice_name(const htensor *h, int e, char *out, size_t cap) {
    if (!h->d.experts) return snprintf(out, cap, "%s", h->name) >= (int)cap;
    dsq_expert_name(out, cap, h->d.layer, e, h->d.role);
    return 0;
}

/* vLLM loads q_a with kv_a, and gate with up, as one fused module: both
 * must share a scheme (C.8). */
static int check_fused(const hfbe *b, dsq_err *err) {
    static const dsq_role pairs[][2] = {{DSQ_R_ATTN_Q_A, DSQ_R_ATTN_KV_A}, {DSQ_R_DENSE_GATE, DSQ_R_DENSE_UP},
                                        {DSQ_R_SHEXP_GATE, DSQ_R_SHEXP_UP}, {DSQ_R_EXP_GATE, DSQ_R_EXP_UP}};
    for (int i = 0; i < b->n; i++)
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
            if (b->t[i].d.role != pairs[k][0]) continue;
            for (int j = 0; j < b->n; j++)
                if (b->t[j].d.role == pairs[k][1] && b->t[j].d.layer == b->t[i].d.layer &&
                    b->t[j].d.scheme != b->t[i].d.scheme)
                    return dsq_fail(err, DSQ_E_UNSUPPORTED, "%s: %s is %s but %s is %s: vLLM loads them as one fused "
                                    "module, which needs one scheme", b->target, b->t[i].name,
                                    dsq_q_scheme(b->t[i].d.scheme)->name, b->t[j].name, dsq_q_scheme(b->t[j].d.scheme)->name);
        }
    return DSQ_OK;
}

/* The safetensors header of shard s (entries in file order, offsets
 * relative to its data section), padded with spaces to a multiple of 8. */
static char *shard_header(const hfbe *b, int s, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(o, "__metadata__");
    cJSON_AddStringToObject(md, "format", "pt");
    for (int i = 0; i < b->nf; i++) {
        const ftensor *f = &b->f[i];
        if (f->shard != s) continue;
        cJSON *e = cJSON_AddObjectToObject(o, f->name);
        cJSON_AddStringToObject(e, "dtype", dsq_dtype_name(f->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < f->n_dims; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)f->shape[k]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)f->off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(f->off + f->bytes)));
    }
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!j) return NULL;
    size_t n = strlen(j), pad = (8 - n % 8) % 8;
    char *r = dsq_realloc(j, n + pad + 1);
    if (!r) { free(j); return NULL; }
    memset(r + n, ' ', pad);
    r[n + pad] = 0;
    *len = n + pad;
    return r;
}

/* Every slice's file tensors, their shards and offsets; each shard file is
 * opened with its header written (offsets within the data section, which
 * starts after it). */
static int h_layout(dsq_mwriter *w, dsq_err *err) {
    hfbe *b = w->be;
    int rc;
    if (b->ct && (rc = check_fused(b, err))) return rc;
    char nm[700];
    for (int i = 0; i < b->n; i++) {
        htensor *h = &b->t[i];
        h->first = b->nf;
        int ne = h->d.experts ? h->d.experts : 1;
        for (int e = 0; e < ne; e++) {
            if (slice_name(h, e, nm, sizeof nm)) return dsq_fail(err, DSQ_E_ARG, "%s: name too long", h->name);
            int before = b->nf;
            if ((rc = slice_parts(b, h, nm, err))) return rc;
            h->n_parts = b->nf - before;
        }
        h->slice = 0;
        for (int k = 0; k < h->n_parts; k++) h->slice += b->f[h->first + k].bytes;
    }
    /* shards: slices in declaration order, a slice never split */
    int s = 0;
    uint64_t used = 0;
    for (int i = 0; i < b->n; i++) {
        htensor *h = &b->t[i];
        int ne = h->d.experts ? h->d.experts : 1;
        for (int e = 0; e < ne; e++) {
            if (used && used + h->slice > b->shard_size) s++, used = 0;
            for (int k = 0; k < h->n_parts; k++) {
                ftensor *f = &b->f[h->first + e * h->n_parts + k];
                f->shard = s;
                f->off = used; /* within the data section for now */
                used += f->bytes;
            }
        }
    }
    b->n_shards = s + 1;
    b->sh = dsq_calloc((size_t)b->n_shards, sizeof *b->sh);
    if (!b->sh) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (s = 0; s < b->n_shards; s++) {
        size_t hl;
        char *hdr = shard_header(b, s, &hl);
        if (!hdr) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        uint64_t start = 8 + hl;
        for (int i = 0; i < b->nf; i++)
            if (b->f[i].shard == s) b->f[i].off += start;
        char path[PATH_MAX + 128];
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", b->tmpdir, s + 1, b->n_shards);
        if ((rc = dsq_afile_open(&b->sh[s], path, 0, err))) { free(hdr); return rc; }
        uint8_t len8[8];
        for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)hl >> (8 * k));
        rc = dsq_afile_write(b->sh[s], len8, 8) || dsq_afile_write(b->sh[s], hdr, hl);
        free(hdr);
        if (rc) return dsq_fail(err, DSQ_E_IO, "%s: write failed", path);
    }
    return DSQ_OK;
}

/* ---- put ------------------------------------------------------------------------ */

static uint8_t *scratch(hfbe *b, size_t n) {
    if (n > b->buf_cap) {
        free(b->buf);
        b->buf = dsq_malloc(n);
        b->buf_cap = b->buf ? n : 0;
    }
    return b->buf;
}

static int write_f(hfbe *b, const ftensor *f, const void *p, dsq_err *err) {
    if (dsq_afile_pwrite(b->sh[f->shard], p, (size_t)f->bytes, f->off))
        return dsq_fail(err, DSQ_E_IO, "%s: writing %s failed", b->target, f->name);
    return DSQ_OK;
}

static int h_put(dsq_mwriter *w, int i, int e, const dsq_qmat *m, const void *colscale, dsq_err *err) {
    hfbe *b = w->be;
    (void)colscale; /* refused at declaration */
    if (i < 0 || i >= b->n) return dsq_fail(err, DSQ_E_ARG, "%s: tensor %d out of range", b->target, i);
    const htensor *h = &b->t[i];
    if (e < 0 || e >= (h->d.experts ? h->d.experts : 1) || m->type != h->d.scheme || m->rows != h->d.rows ||
        m->cols != h->d.cols)
        return dsq_fail(err, DSQ_E_ARG, "%s: %s: slice does not match its declaration", b->target, h->name);
    const ftensor *f = &b->f[h->first + e * h->n_parts];
    const dsq_qscheme *q = dsq_q_scheme(m->type);
    int64_t R = m->rows, C = m->cols;
    int rc;
    if (q->kind == DSQ_QK_FLOAT) return write_f(b, f, m->data, err);
    if (q->kind == DSQ_QK_FP8) {
        if ((rc = write_f(b, &f[0], m->data, err))) return rc;
        if (q->sdt == DSQ_DT_F32) return write_f(b, &f[1], m->scale, err);
        uint64_t ns = f[1].bytes / 4;
        float *v = (float *)scratch(b, ns * 4);
        if (!v) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        const uint8_t *sb = m->scale;
        for (uint64_t k = 0; k < ns; k++) {
            if (sb[k] == 0xFF) return dsq_fail(err, DSQ_E_FORMAT, "%s: %s: a NaN scale", b->target, f[0].name);
            v[k] = dsq_ue8m0_to_f32(sb[k]);
            /* little-endian hosts only write their floats as they are */
        }
        return write_f(b, &f[1], v, err);
    }
    /* integer codes into I32 words, LSB first */
    int p = q->kind == DSQ_QK_INT4 ? 8 : 4;
    int64_t words = (C + p - 1) / p;
    uint8_t *o = scratch(b, (size_t)(R * words * 4));
    if (!o) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    const uint8_t *d = m->data;
    if (q->kind == DSQ_QK_INT4) {
        int64_t rb = (C + 1) / 2;
        if (C % 8 == 0) {
            if ((rc = write_f(b, &f[0], d, err))) return rc;
        } else {
            memset(o, 0, (size_t)(R * words * 4));
            for (int64_t r = 0; r < R; r++) memcpy(o + r * words * 4, d + r * rb, (size_t)rb);
            if ((rc = write_f(b, &f[0], o, err))) return rc;
        }
    } else {
        memset(o, 0, (size_t)(R * words * 4));
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) o[r * words * 4 + c] = d[r * C + c] ^ 0x80;
        if ((rc = write_f(b, &f[0], o, err))) return rc;
    }
    if ((rc = write_f(b, &f[1], m->scale, err))) return rc;
    uint8_t shp[16];
    for (int k = 0; k < 8; k++) shp[k] = (uint8_t)((uint64_t)R >> (8 * k)), shp[8 + k] = (uint8_t)((uint64_t)C >> (8 * k));
    if ((rc = write_f(b, &f[2], shp, err))) return rc;
    if (!q->sym) { /* zero points: [rows, ceil(ng/2)] nibbles into [ceil(rows/8), ng] words along the rows */
        int64_t ng = (C + q->group - 1) / q->group, zb = (ng + 1) / 2, zr = (R + 7) / 8;
        uint8_t *z = scratch(b, (size_t)(zr * ng * 4));
        if (!z) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
        memset(z, 0, (size_t)(zr * ng * 4));
        const uint8_t *zs = m->zero;
        for (int64_t r = 0; r < R; r++)
            for (int64_t g = 0; g < ng; g++) {
                unsigned u = (zs[r * zb + g / 2] >> (g % 2 ? 4 : 0)) & 15;
                uint64_t wi = (uint64_t)((r / 8) * ng + g) * 4;
                int sh = (int)(4 * (r % 8));
                z[wi + (uint64_t)(sh / 8)] |= (uint8_t)(u << (sh % 8));
            }
        if ((rc = write_f(b, &f[3], z, err))) return rc;
    }
    return DSQ_OK;
}

static uint64_t h_slice_bytes(const dsq_mwriter *w, int i) {
    const hfbe *b = w->be;
    return i >= 0 && i < b->n ? b->t[i].slice : 0;
}

/* ---- finish ------------------------------------------------------------------------ */

static void h_free(hfbe *b) {
    for (int i = 0; i < b->n; i++) free(b->t[i].name);
    free(b->t);
    for (int i = 0; i < b->nf; i++) free(b->f[i].name);
    free(b->f);
    free(b->sh);
    for (int i = 0; i < b->n_side; i++) {
        free(b->side[i].name);
        free(b->side[i].data);
    }
    free(b->buf);
    free(b);
}

static void h_abort(dsq_mwriter *w) {
    hfbe *b = w->be;
    if (!b) return;
    for (int s = 0; s < b->n_shards; s++) dsq_afile_abort(b->sh[s]);
    dsq_afile_remove_dir(b->tmpdir);
    h_free(b);
    w->be = NULL;
}

static int write_small(const hfbe *b, const char *name, const void *data, size_t len, dsq_err *err) {
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s", b->tmpdir, name);
    dsq_afile *f;
    int rc = dsq_afile_open(&f, path, 0, err);
    if (rc) return rc;
    if (dsq_afile_write(f, data, len)) {
        dsq_afile_abort(f);
        return dsq_fail(err, DSQ_E_IO, "%s: write failed", path);
    }
    return dsq_afile_commit(f, err);
}

/* The release's quantization_config of DeepSeek's FP8 checkpoints. */
static cJSON *fp8_qconfig(void) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
    cJSON_AddStringToObject(q, "fmt", "e4m3");
    cJSON_AddStringToObject(q, "quant_method", "fp8");
    cJSON_AddStringToObject(q, "scale_fmt", "ue8m0");
    cJSON *bs = cJSON_AddArrayToObject(q, "weight_block_size");
    cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
    cJSON_AddItemToArray(bs, cJSON_CreateNumber(128));
    return q;
}

static int any_quantized(const hfbe *b) {
    for (int i = 0; i < b->n; i++)
        if (!is_float(b->t[i].d.scheme)) return 1;
    return 0;
}

/* config.json: the source's (the metadata's config_json) with its
 * quantization_config replaced. */
static char *config_text(const hfbe *b, const char *meta_json, dsq_err *err) {
    cJSON *meta = meta_json ? cJSON_Parse(meta_json) : NULL;
    const char *src = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "config_json"));
    cJSON *cfg = src ? cJSON_Parse(src) : NULL;
    cJSON_Delete(meta);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        dsq_fail(err, DSQ_E_ARG, "%s: no source config.json to carry over", b->target);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    if (any_quantized(b)) {
        cJSON *q = NULL;
        if (b->ct) {
            dsq_ct_builder *cb = dsq_ct_builder_new();
            int rc = cb ? DSQ_OK : DSQ_E_NOMEM;
            char nm[700];
            for (int i = 0; i < b->n && !rc; i++) {
                const htensor *h = &b->t[i];
                int linear = h->d.n_dims >= 2 && h->d.role != DSQ_R_EMBED && h->d.role != DSQ_R_MTP_EMBED;
                if (!linear) continue;
                for (int e = 0; e < (h->d.experts ? h->d.experts : 1) && !rc; e++) {
                    slice_name(h, e, nm, sizeof nm);
                    size_t L = strlen(nm);
                    if (L > 7 && !strcmp(nm + L - 7, ".weight")) nm[L - 7] = 0;
                    rc = dsq_ct_builder_add(cb, nm, h->d.scheme);
                }
            }
            char *qs = rc ? NULL : dsq_ct_builder_json(cb);
            dsq_ct_builder_free(cb);
            q = qs ? cJSON_Parse(qs) : NULL;
            free(qs);
        } else {
            q = fp8_qconfig();
        }
        if (!q) {
            cJSON_Delete(cfg);
            dsq_fail(err, DSQ_E_NOMEM, "out of memory");
            return NULL;
        }
        cJSON_AddItemToObject(cfg, "quantization_config", q);
    }
    char *s = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    if (!s) dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    return s;
}

static int cmp_fname(const void *a, const void *b) {
    return strcmp((*(const ftensor *const *)a)->name, (*(const ftensor *const *)b)->name);
}

static char *index_text(const hfbe *b) {
    const ftensor **v = dsq_malloc(sizeof *v * ((size_t)b->nf + 1));
    if (!v) return NULL;
    uint64_t total = 0;
    for (int i = 0; i < b->nf; i++) v[i] = &b->f[i], total += b->f[i].bytes;
    qsort(v, (size_t)b->nf, sizeof *v, cmp_fname);
    cJSON *o = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddNumberToObject(md, "total_size", (double)total);
    cJSON *wm = cJSON_AddObjectToObject(o, "weight_map");
    char sn[64];
    for (int i = 0; i < b->nf; i++) {
        snprintf(sn, sizeof sn, "model-%05d-of-%05d.safetensors", v[i]->shard + 1, b->n_shards);
        cJSON_AddStringToObject(wm, v[i]->name, sn);
    }
    free(v);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* An existing target is replaced only when it holds nothing but the files
 * of a model folder (no subfolders, nothing else): --force never deletes a
 * folder of other things. */
static int replaceable(const char *dir, dsq_err *err) {
    DIR *d = opendir(dir);
    if (!d) return dsq_fail(err, DSQ_E_IO, "%s: cannot read: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = DSQ_OK;
    while ((de = readdir(d)) && !rc) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
        size_t L = strlen(n);
        int ok = !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
                 !strcmp(n, "tokenizer.json") || !strcmp(n, "tokenizer_config.json") ||
                 !strcmp(n, "generation_config.json") || (L > 12 && !strcmp(n + L - 12, ".safetensors"));
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", dir, n);
        struct stat st;
        if (!ok || lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
            rc = dsq_fail(err, DSQ_E_EXISTS, "%s: --force replaces a model folder only, and '%s' is not a model file: "
                          "remove it or choose another output", dir, n);
    }
    closedir(d);
    return rc;
}

static int h_finish(dsq_mwriter *w, const char *meta_json, dsq_err *err) {
    hfbe *b = w->be;
    int rc = DSQ_OK;
    char *cfg = config_text(b, meta_json, err), *idx = cfg ? index_text(b) : NULL;
    if (!cfg) rc = err->code ? err->code : DSQ_E_NOMEM;
    else if (!idx) rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    for (int s = 0; s < b->n_shards && !rc; s++) {
        rc = dsq_afile_commit(b->sh[s], err);
        b->sh[s] = NULL;
    }
    if (!rc) rc = write_small(b, "config.json", cfg, strlen(cfg), err);
    if (!rc) rc = write_small(b, "model.safetensors.index.json", idx, strlen(idx), err);
    for (int i = 0; i < b->n_side && !rc; i++) rc = write_small(b, b->side[i].name, b->side[i].data, b->side[i].len, err);
    free(cfg);
    free(idx);
    struct stat st;
    char old[PATH_MAX + 32] = "";
    if (!rc && lstat(b->target, &st) == 0) {
        /* --force: the old folder moves aside, the new one in, the old one goes */
        if ((rc = replaceable(b->target, err)) == DSQ_OK) {
            snprintf(old, sizeof old, "%s.old.XXXXXX", b->tmpdir);
            if (!mkdtemp(old) || rename(b->target, old) != 0) {
                rc = dsq_fail(err, DSQ_E_IO, "%s: cannot move the old folder aside: %s", b->target, strerror(errno));
                if (old[0]) rmdir(old);
                old[0] = 0;
            }
        }
    }
    if (!rc && rename(b->tmpdir, b->target) != 0) {
        rc = dsq_fail(err, DSQ_E_IO, "%s: cannot rename the finished folder into place: %s", b->target, strerror(errno));
        if (old[0]) rename(old, b->target);
        old[0] = 0;
    }
    if (rc) {
        for (int s = 0; s < b->n_shards; s++) dsq_afile_abort(b->sh[s]);
        dsq_afile_remove_dir(b->tmpdir);
    } else {
        dsq_afile_dir_done(b->tmpdir);
        if (old[0]) dsq_afile_remove_dir(old);
        dsq_afile_sync_parent(b->target);
    }
    h_free(b);
    w->be = NULL;
    return rc;
}

const wr_ops dsq_wr_ops_ct = {DSQ_OUT_CT, 0, h_open_ct, h_check, h_add_tensor, h_add_file, h_layout,
                              h_put, h_slice_bytes, h_finish, h_abort};
const wr_ops dsq_wr_ops_hf = {DSQ_OUT_HF, 0, h_open_hf, h_check, h_add_tensor, h_add_file, h_layout,
                              h_put, h_slice_bytes, h_finish, h_abort};
