/*
 * stats.c -- activation statistics and the .dsqcal file (see stats.h and
 * docs/CALIB.md).
 *
 * A .dsqcal file is a .dsq container (docs/FORMAT.md) whose metadata has
 * "kind": "calibration" and whose tensors are f32 arrays named
 * "<weight>:mean_sq", "<weight>:mean_abs", "<weight>:max_abs" ([cols]) and
 * "<weight>:hessian" ([cols, cols], E[x x^T]) and "<weight>:xcov" ([cols,
 * cols], E[r x^T], r the reference model's input), with per-record token counts,
 * fallback flags and aliases in the metadata.  Reusing the container gives
 * the file checksums, validation and atomic writing for free, and its
 * writer's appending lets the file be written record by record as
 * calibration finishes with them.
 */
#include "calib/stats.h"
#include "common.h"
#include "formats/container.h"
#include "formats/json.h"
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>

typedef struct { char *alias, *target; } alias_t;

struct dsq_cstats {
    dsq_cstat *s;
    int n, cap;
    alias_t *al;
    int n_al;
};

dsq_cstats *dsq_cstats_new(void) { return dsq_calloc(1, sizeof(dsq_cstats)); }

void dsq_cstats_free(dsq_cstats *cs) {
    if (!cs) return;
    dsq_cstats_clear(cs);
    free(cs->al);
    free(cs->s);
    free(cs);
}

void dsq_cstats_clear(dsq_cstats *cs) {
    for (int i = 0; i < cs->n; i++) {
        free(cs->s[i].sum_sq);
        free(cs->s[i].sum_abs);
        free(cs->s[i].max_abs);
        free(cs->s[i].hess);
        free(cs->s[i].xcov);
        free(cs->s[i].fold);
    }
    for (int i = 0; i < cs->n_al; i++) {
        free(cs->al[i].alias);
        free(cs->al[i].target);
    }
    cs->n = cs->n_al = 0;
}

int dsq_cstats_move(dsq_cstats *dst, dsq_cstats *src) {
    if (dst->n + src->n > dst->cap) {
        int nc = dst->n + src->n + 64;
        dsq_cstat *ns = dsq_realloc(dst->s, sizeof *ns * (size_t)nc);
        if (!ns) return DSQ_E_NOMEM;
        dst->s = ns;
        dst->cap = nc;
    }
    alias_t *na = dsq_realloc(dst->al, sizeof *na * (size_t)(dst->n_al + src->n_al + 1));
    if (!na) return DSQ_E_NOMEM;
    dst->al = na;
    memcpy(dst->s + dst->n, src->s, sizeof *src->s * (size_t)src->n);
    memcpy(dst->al + dst->n_al, src->al, sizeof *src->al * (size_t)src->n_al);
    dst->n += src->n;
    dst->n_al += src->n_al;
    src->n = src->n_al = 0;
    return DSQ_OK;
}

int dsq_cstats_count(const dsq_cstats *cs) { return cs->n; }
dsq_cstat *dsq_cstats_at(dsq_cstats *cs, int i) { return &cs->s[i]; }

static dsq_cstat *lookup(const dsq_cstats *cs, const char *name) {
    for (int i = cs->n - 1; i >= 0; i--)
        if (!strcmp(cs->s[i].name, name)) return &cs->s[i];
    return NULL;
}

const dsq_cstat *dsq_cstats_find(const dsq_cstats *cs, const char *name) {
    const dsq_cstat *s = lookup(cs, name);
    if (s) return s;
    for (int i = 0; i < cs->n_al; i++)
        if (!strcmp(cs->al[i].alias, name)) return lookup(cs, cs->al[i].target);
    return NULL;
}

dsq_cstat *dsq_cstats_get(dsq_cstats *cs, const char *name, int64_t cols, int want_hess) {
    dsq_cstat *s = lookup(cs, name);
    if (s) return s->cols == cols ? s : NULL;
    if (cols <= 0 || strlen(name) >= sizeof s->name) return NULL;
    if (cs->n == cs->cap) {
        int nc = cs->cap ? cs->cap * 2 : 64;
        dsq_cstat *ns = dsq_realloc(cs->s, sizeof *ns * (size_t)nc);
        if (!ns) return NULL;
        cs->s = ns;
        cs->cap = nc;
    }
    s = &cs->s[cs->n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->cols = cols;
    s->sum_sq = dsq_calloc((size_t)cols, sizeof *s->sum_sq);
    s->sum_abs = dsq_calloc((size_t)cols, sizeof *s->sum_abs);
    s->max_abs = dsq_calloc((size_t)cols, sizeof *s->max_abs);
    if (want_hess) s->hess = dsq_calloc((size_t)(cols * cols), sizeof *s->hess);
    if (!s->sum_sq || !s->sum_abs || !s->max_abs || (want_hess && !s->hess)) {
        free(s->sum_sq);
        free(s->sum_abs);
        free(s->max_abs);
        free(s->hess);
        return NULL;
    }
    cs->n++;
    return s;
}

int dsq_cstats_alias(dsq_cstats *cs, const char *alias, const char *target) {
    for (int i = 0; i < cs->n_al; i++)
        if (!strcmp(cs->al[i].alias, alias)) return DSQ_OK;
    alias_t *na = dsq_realloc(cs->al, sizeof *na * (size_t)(cs->n_al + 1));
    if (!na) return DSQ_E_NOMEM;
    cs->al = na;
    na[cs->n_al].alias = dsq_strdup(alias);
    na[cs->n_al].target = dsq_strdup(target);
    if (!na[cs->n_al].alias || !na[cs->n_al].target) {
        free(na[cs->n_al].alias);
        free(na[cs->n_al].target);
        return DSQ_E_NOMEM;
    }
    cs->n_al++;
    return DSQ_OK;
}

void dsq_cstat_add(dsq_cstat *s, const float *x, int64_t n) {
    int64_t c = s->cols;
    for (int64_t t = 0; t < n; t++) {
        const float *r = x + t * c;
        for (int64_t j = 0; j < c; j++) {
            float a = fabsf(r[j]);
            s->sum_sq[j] += (double)r[j] * r[j];
            s->sum_abs[j] += a;
            if (a > s->max_abs[j]) s->max_abs[j] = a;
        }
    }
    if (s->hess) {
        /* tmp[i][j] (j >= i) += x_i x_j over the rows, in f32 for a batch of at
         * most a window of tokens at a time (the running total stays in
         * double), with the kernel table's X^T X */
        float *tmp = calloc((size_t)(c * c), sizeof *tmp);
        if (tmp) {
            const dsq_qkern *K = dsq_qkern_best();
            for (int64_t t0 = 0; t0 < n; t0 += 256) K->xtx_acc(tmp, x + t0 * c, n - t0 < 256 ? n - t0 : 256, c);
            for (int64_t i = 0; i < c; i++)
                for (int64_t j = i; j < c; j++) {
                    double v = tmp[i * c + j];
                    s->hess[i * c + j] += v;
                    if (j != i) s->hess[j * c + i] += v;
                }
            free(tmp);
        } else {
            /* no scratch: exact but slow double accumulation */
            for (int64_t t = 0; t < n; t++) {
                const float *r = x + t * c;
                for (int64_t i = 0; i < c; i++)
                    for (int64_t j = 0; j < c; j++) s->hess[i * c + j] += (double)r[i] * r[j];
            }
        }
    }
    s->count += n;
}

/* A mean as a .dsqcal file stores it (f32; 0 without tokens).  The values
 * quantization reads are these stored ones whether the statistics are in
 * memory (dsq calib) or loaded from the file (dsq quant --calib), so both
 * quantize alike: a loaded record holds sum = mean * tokens, and
 * (float)(sum / tokens) gives the stored f32 back exactly (the product is
 * exact for any realistic count and the quotient is within 2^-52 of it). */
static float stored_mean(double sum, int64_t count) { return count ? (float)(sum / (double)count) : 0.0f; }

void dsq_cstat_mean_sq(const dsq_cstat *s, float *out) {
    for (int64_t j = 0; j < s->cols; j++) out[j] = s->count ? stored_mean(s->sum_sq[j], s->count) : 1.0f;
}
void dsq_cstat_mean_abs(const dsq_cstat *s, float *out) {
    for (int64_t j = 0; j < s->cols; j++) out[j] = s->count ? stored_mean(s->sum_abs[j], s->count) : 1.0f;
}
int dsq_cstat_hessian(const dsq_cstat *s, double *out) {
    if (!s->hess) return DSQ_E_NOTFOUND;
    for (int64_t k = 0; k < s->cols * s->cols; k++) out[k] = s->count ? s->hess[k] / (double)s->count : 0;
    return DSQ_OK;
}
int dsq_cstat_add_ref(dsq_cstat *s, const float *r, const float *x, int64_t n) {
    int64_t c = s->cols;
    if (!s->hess) return DSQ_E_ARG;
    if (!s->xcov && !(s->xcov = dsq_calloc((size_t)(c * c), sizeof *s->xcov))) return DSQ_E_NOMEM;
    float *tmp = dsq_calloc((size_t)(c * c), sizeof *tmp);
    if (!tmp) return DSQ_E_NOMEM;
    for (int64_t t0 = 0; t0 < n; t0 += 256) {
        int64_t t1 = t0 + 256 < n ? t0 + 256 : n;
        for (int64_t t = t0; t < t1; t++) {
            const float *rt = r + t * c, *xt = x + t * c;
            for (int64_t i = 0; i < c; i++) {
                float ri = rt[i];
                if (ri == 0) continue;
                float *ti = tmp + i * c;
                for (int64_t j = 0; j < c; j++) ti[j] += ri * xt[j];
            }
        }
        for (int64_t k = 0; k < c * c; k++) {
            s->xcov[k] += tmp[k];
            tmp[k] = 0;
        }
    }
    free(tmp);
    return DSQ_OK;
}

int dsq_cstat_xcov(const dsq_cstat *s, double *out) {
    if (!s->xcov) return DSQ_E_NOTFOUND;
    for (int64_t k = 0; k < s->cols * s->cols; k++) out[k] = stored_mean(s->xcov[k], s->count);
    return DSQ_OK;
}

int dsq_cstat_hessian_stored(const dsq_cstat *s, double *out) {
    if (!s->hess) return DSQ_E_NOTFOUND;
    for (int64_t k = 0; k < s->cols * s->cols; k++) out[k] = stored_mean(s->hess[k], s->count);
    return DSQ_OK;
}

/* "model.layers.L.mlp.experts.E.<proj>.weight" -> layer, expert, proj suffix */
static int expert_name(const char *name, int *layer, int *expert, const char **proj) {
    int l, e;
    dsq_role r = dsq_classify(name, &l, &e);
    if (e < 0 || (r != DSQ_R_EXP_GATE && r != DSQ_R_EXP_UP && r != DSQ_R_EXP_DOWN)) return 0;
    *layer = l;
    *expert = e;
    *proj = strrchr(name, '.');
    for (const char *p = *proj - 1; p > name; p--)
        if (*p == '.') { *proj = p + 1; break; }
    return 1;
}

int dsq_cstats_pool_starved(dsq_cstats *cs, int64_t min_tokens) {
    /* Pools are computed from the original sums of every expert of the
     * group (starved ones included) before any record is replaced, so all
     * starved experts of a group get the same pool.  Records pooled by an
     * earlier call are left alone. */
    typedef struct { int idx; double *sq, *ab, *h; float *mx; int64_t count; } repl;
    repl *rp = dsq_calloc((size_t)cs->n + 1, sizeof *rp);
    int nr = 0;
    if (!rp) return 0;
    for (int i = 0; i < cs->n; i++) {
        dsq_cstat *s = &cs->s[i];
        int l, e;
        const char *proj;
        if (s->fallback || s->count >= min_tokens || !expert_name(s->name, &l, &e, &proj)) continue;
        int64_t c = s->cols, count = 0;
        double *sq = dsq_calloc((size_t)c, sizeof *sq), *ab = dsq_calloc((size_t)c, sizeof *ab);
        float *mx = dsq_calloc((size_t)c, sizeof *mx);
        double *h = s->hess ? dsq_calloc((size_t)(c * c), sizeof *h) : NULL;
        if (!sq || !ab || !mx || (s->hess && !h)) {
            free(sq); free(ab); free(mx); free(h);
            continue;
        }
        for (int k = 0; k < cs->n; k++) {
            const dsq_cstat *o = &cs->s[k];
            int l2, e2;
            const char *p2;
            if (o->fallback || o->cols != c || !expert_name(o->name, &l2, &e2, &p2) || l2 != l || strcmp(p2, proj)) continue;
            count += o->count;
            for (int64_t j = 0; j < c; j++) {
                sq[j] += o->sum_sq[j];
                ab[j] += o->sum_abs[j];
                if (o->max_abs[j] > mx[j]) mx[j] = o->max_abs[j];
            }
            if (h && o->hess)
                for (int64_t j = 0; j < c * c; j++) h[j] += o->hess[j];
        }
        rp[nr++] = (repl){i, sq, ab, h, mx, count};
    }
    for (int k = 0; k < nr; k++) {
        dsq_cstat *s = &cs->s[rp[k].idx];
        free(s->sum_sq); free(s->sum_abs); free(s->max_abs); free(s->hess); free(s->xcov);
        s->xcov = NULL;
        s->sum_sq = rp[k].sq;
        s->sum_abs = rp[k].ab;
        s->max_abs = rp[k].mx;
        s->hess = rp[k].h;
        s->count = rp[k].count;
        s->fallback = 1;
    }
    free(rp);
    return nr;
}

/* ---- .dsqcal ---------------------------------------------------------------- */

static const char *const g_fields[6] = {"mean_sq", "mean_abs", "max_abs", "hessian", "xcov", "fold"};

/* The file is written record by record: the container writer appends each
 * record's tensors to the data section as they come, and the metadata that
 * describes them (records, aliases) is kept here until finish. */
struct dsq_cstats_writer {
    dsq_ctrw *w;
    cJSON *records, *aliases;
    float *buf;        /* one f32 array, from malloc */
    size_t cap;
};

void dsq_cstats_writer_abort(dsq_cstats_writer *cw) {
    if (!cw) return;
    dsq_ctrw_abort(cw->w);
    cJSON_Delete(cw->records);
    cJSON_Delete(cw->aliases);
    free(cw->buf);
    free(cw);
}

int dsq_cstats_writer_open(dsq_cstats_writer **out, const char *path, int force, dsq_err *err) {
    *out = NULL;
    dsq_cstats_writer *cw = dsq_calloc(1, sizeof *cw);
    if (!cw) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    cw->records = cJSON_CreateArray();
    cw->aliases = cJSON_CreateObject();
    int rc = cw->records && cw->aliases ? dsq_ctrw_open(&cw->w, path, force, err) : dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    if (!rc && (rc = dsq_ctrw_layout(cw->w, err)) == DSQ_OK) {
        *out = cw;
        return DSQ_OK;
    }
    dsq_cstats_writer_abort(cw);
    return rc;
}

/* Append one record: its tensors, then its entry in the metadata. */
static int put_record(dsq_cstats_writer *cw, const dsq_cstat *s, dsq_err *err) {
    char nm[200];
    int l, e, rc;
    dsq_role r = dsq_classify(s->name, &l, &e);
    size_t need = (size_t)(s->hess ? s->cols * s->cols : s->cols);
    if (need > cw->cap) {
        free(cw->buf);
        cw->buf = dsq_malloc(sizeof *cw->buf * need);
        cw->cap = cw->buf ? need : 0;
        if (!cw->buf) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    for (int f = 0; f < 6; f++) {
        if ((f == 3 && !s->hess) || (f == 4 && !s->xcov) || (f == 5 && !s->fold)) continue;
        snprintf(nm, sizeof nm, "%s:%s", s->name, g_fields[f]);
        dsq_ctw_tensor d = {0};
        d.name = nm;
        d.role = r;
        d.layer = l;
        d.scheme = DSQ_Q_F32;
        int sq = f == 3 || f == 4;
        d.rows = sq ? s->cols : 1;
        d.cols = s->cols;
        d.n_dims = sq ? 2 : 1;
        d.shape[0] = s->cols;
        d.shape[1] = s->cols;
        int idx = dsq_ctrw_add_tensor(cw->w, &d, err);
        if (idx < 0) return idx;
        int64_t n = sq ? s->cols * s->cols : s->cols;
        for (int64_t j = 0; j < n; j++)
            cw->buf[j] = f == 0 ? stored_mean(s->sum_sq[j], s->count) : f == 1 ? stored_mean(s->sum_abs[j], s->count)
                       : f == 2 ? s->max_abs[j] : f == 3 ? stored_mean(s->hess[j], s->count)
                       : f == 4 ? stored_mean(s->xcov[j], s->count) : s->fold[j];
        if ((rc = dsq_ctrw_write(cw->w, idx, 0, DSQ_ARR_DATA, cw->buf, (uint64_t)n * 4, err))) return rc;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    cJSON_AddItemToArray(cw->records, o);
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddNumberToObject(o, "tokens", (double)s->count);
    cJSON_AddBoolToObject(o, "fallback", s->fallback);
    cJSON_AddBoolToObject(o, "hessian", s->hess != NULL);
    return DSQ_OK;
}

int dsq_cstats_writer_add(dsq_cstats_writer *cw, const dsq_cstats *cs, dsq_err *err) {
    int rc;
    for (int i = 0; i < cs->n; i++)
        if ((rc = put_record(cw, &cs->s[i], err))) return rc;
    for (int i = 0; i < cs->n_al; i++)
        if (!cJSON_AddStringToObject(cw->aliases, cs->al[i].alias, cs->al[i].target))
            return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    return DSQ_OK;
}

int dsq_cstats_writer_finish(dsq_cstats_writer *cw, const char *config_json, const char *meta_json, dsq_err *err) {
    cJSON *m = meta_json ? cJSON_Parse(meta_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(m)) { cJSON_Delete(m); m = cJSON_CreateObject(); }
    char *ms = NULL;
    if (m) {
        cJSON_DeleteItemFromObject(m, "kind");
        cJSON_AddStringToObject(m, "kind", "calibration");
        cJSON_AddStringToObject(m, "config_json", config_json);
        cJSON_AddItemToObject(m, "records", cw->records);
        cJSON_AddItemToObject(m, "aliases", cw->aliases);
        cw->records = cw->aliases = NULL;
        ms = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
    }
    if (!ms) {
        dsq_cstats_writer_abort(cw);
        return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    }
    int rc = dsq_ctrw_finish(cw->w, ms, err);
    cw->w = NULL;
    free(ms);
    dsq_cstats_writer_abort(cw);
    return rc;
}

int dsq_cstats_save(const dsq_cstats *cs, const char *path, const char *config_json, const char *meta_json,
                    int force, dsq_err *err) {
    dsq_cstats_writer *cw;
    int rc = dsq_cstats_writer_open(&cw, path, force, err);
    if (rc) return rc;
    if ((rc = dsq_cstats_writer_add(cw, cs, err))) {
        dsq_cstats_writer_abort(cw);
        return rc;
    }
    return dsq_cstats_writer_finish(cw, config_json, meta_json, err);
}

int dsq_cstats_load(dsq_cstats **out, const char *path, dsq_err *err) {
    *out = NULL;
    dsq_ctr *c;
    if (!dsq_ctr_sniff(path)) /* not even a container: say what is expected, not "truncated" */
        return dsq_fail(err, DSQ_E_FORMAT, "%s: not a .dsqcal file (dsq calib -o writes them)", path);
    int rc = dsq_ctr_open(&c, path, err);
    if (rc) return rc;
    dsq_cstats *cs = dsq_cstats_new();
    cJSON *m = dsq_json_parse(dsq_ctr_meta(c), strlen(dsq_ctr_meta(c)), NULL);
    float *tmp = NULL;
    if (!cs || !m) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
    if (strcmp(dsq_json_key_str(m, "kind", ""), "calibration")) {
        rc = dsq_fail(err, DSQ_E_FORMAT, "%s: not a calibration file (metadata kind is not \"calibration\")", path);
        goto fail;
    }
    if ((rc = dsq_ctr_verify(c, NULL, err))) goto fail;
    const cJSON *recs = dsq_json_get(m, "records");
    if (!cJSON_IsArray(recs)) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: metadata lacks 'records'", path); goto fail; }
    for (const cJSON *r = recs->child; r; r = r->next) {
        const cJSON *nm = dsq_json_get(r, "name");
        double tokens;
        /* a number, not necessarily an integer: counts are truncated */
        if (!cJSON_IsString(nm) || !dsq_json_num(dsq_json_get(r, "tokens"), 0, 9e15, &tokens)) {
            rc = dsq_fail(err, DSQ_E_FORMAT, "%s: malformed record in metadata", path);
            goto fail;
        }
        char tn[200];
        snprintf(tn, sizeof tn, "%s:mean_sq", nm->valuestring);
        int ti = dsq_ctr_find(c, tn);
        if (ti < 0) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: record '%s' has no statistics", path, nm->valuestring); goto fail; }
        int64_t cols = dsq_ctr_tensor(c, ti)->cols;
        snprintf(tn, sizeof tn, "%s:hessian", nm->valuestring);
        int hi = dsq_ctr_find(c, tn);
        dsq_cstat *s = dsq_cstats_get(cs, nm->valuestring, cols, hi >= 0);
        if (!s) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: record '%s' duplicated or invalid", path, nm->valuestring); goto fail; }
        s->count = (int64_t)tokens;
        s->fallback = cJSON_IsTrue(dsq_json_get(r, "fallback"));
        snprintf(tn, sizeof tn, "%s:xcov", nm->valuestring);
        int xi = dsq_ctr_find(c, tn);
        if (xi >= 0 && hi < 0) { rc = dsq_fail(err, DSQ_E_FORMAT, "%s: record '%s' has a cross moment but no Hessian", path, nm->valuestring); goto fail; }
        if (xi >= 0 && !(s->xcov = dsq_calloc((size_t)(cols * cols), sizeof *s->xcov))) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
        snprintf(tn, sizeof tn, "%s:fold", nm->valuestring);
        int fi = dsq_ctr_find(c, tn);
        if (fi >= 0 && !(s->fold = dsq_calloc((size_t)cols, sizeof *s->fold))) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
        for (int f = 0; f < 6; f++) {
            if ((f == 3 && hi < 0) || (f == 4 && xi < 0) || (f == 5 && fi < 0)) continue;
            snprintf(tn, sizeof tn, "%s:%s", nm->valuestring, g_fields[f]);
            int k = dsq_ctr_find(c, tn);
            const dsq_ctensor *t = k >= 0 ? dsq_ctr_tensor(c, k) : NULL;
            int64_t n = f == 3 || f == 4 ? cols * cols : cols;
            if (!t || t->scheme != DSQ_Q_F32 || t->rows * t->cols != n || t->experts) {
                rc = dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s' missing or mis-shaped", path, tn);
                goto fail;
            }
            dsq_qmat q;
            dsq_ctr_qmat(c, k, 0, &q, NULL);
            free(tmp);
            tmp = dsq_malloc(sizeof *tmp * (size_t)n);
            if (!tmp) { rc = dsq_fail(err, DSQ_E_NOMEM, "out of memory"); goto fail; }
            memcpy(tmp, q.data, (size_t)n * 4);
            /* finite, signed as they must be, and within what activations
             * can be (absurd values would overflow the scales made from them):
             * moments |v| <= 1e24, means and maxima <= 1e12, fold scales in
             * [1e-12, 1e12]; a Hessian's diagonal is not negative */
            for (int64_t j = 0; j < n; j++) {
                double v = tmp[j], lim = f == 0 || f == 3 || f == 4 ? 1e24 : 1e12;
                int bad = !isfinite(v) || (f < 3 && v < 0) || (f == 5 && !(v >= 1e-12)) || fabs(v) > lim ||
                          (f == 3 && j % (cols + 1) == 0 && v < 0);
                if (bad) {
                    rc = dsq_fail(err, DSQ_E_FORMAT, "%s: tensor '%s': value %lld is %g, outside what activations give", path,
                                  tn, (long long)j, v);
                    goto fail;
                }
            }
            double cnt = (double)s->count;
            for (int64_t j = 0; j < n; j++) {
                if (f == 0) s->sum_sq[j] = tmp[j] * cnt;
                else if (f == 1) s->sum_abs[j] = tmp[j] * cnt;
                else if (f == 2) s->max_abs[j] = tmp[j];
                else if (f == 3) s->hess[j] = tmp[j] * cnt;
                else if (f == 4) s->xcov[j] = tmp[j] * cnt;
                else s->fold[j] = tmp[j];
            }
        }
    }
    const cJSON *al = dsq_json_get(m, "aliases");
    for (const cJSON *a = cJSON_IsObject(al) ? al->child : NULL; a; a = a->next)
        if (cJSON_IsString(a) && (rc = dsq_cstats_alias(cs, a->string, a->valuestring))) {
            rc = dsq_fail(err, rc, "out of memory");
            goto fail;
        }
    free(tmp);
    cJSON_Delete(m);
    dsq_ctr_close(c);
    *out = cs;
    return DSQ_OK;
fail:
    free(tmp);
    cJSON_Delete(m);
    dsq_ctr_close(c);
    dsq_cstats_free(cs);
    return rc;
}
