/*
 * pipeline.c -- convert / quantize one model into a .dsq container (see
 * pipeline.h).
 *
 * Plan first, then stream: every output tensor (routed experts of one
 * projection and layer stacked into one [experts, out, in] tensor) is planned
 * with its scheme from the recipe, the container layout is fixed, and then
 * source tensors are read in storage order and each one is copied (when the
 * scheme is unchanged) or quantized straight into its place.  Quantization
 * of one matrix is split over the thread pool by row ranges, so the output
 * is byte-identical whatever the thread count.
 */
#include "pipeline/pipeline.h"
#include "common.h"
#include "common/pool.h"
#include "synth/gen.h"
#include "formats/container.h"
#include "quant/quant.h"
#include "pipeline/model.h"
#include "pipeline/qmatrix.h"
#include "calib/stats.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

typedef struct plan {
    dsq_ctw_tensor d;
    char name[160];
    int src_scheme;      /* scheme of the source matrices, -1 until known */
    int src_colscale;    /* source (a container) has column multipliers */
    dsq_qmethod m;       /* scheme and method from the recipe */
    char fold_rec[200];  /* folded AWQ: the statistics record holding the scales */
    int out;             /* writer index */
    int slot;            /* its first slice in ctx.slot_src / slot_done */
    double se, sx, maxabs; /* error accumulators */
} plan;

typedef struct ctx {
    const dsq_pipe_opts *o;
    dsq_err *err;
    dsq_ckpt *ck;
    dsq_ctr *ctr;
    const dsq_config *cfg;
    plan *p;
    int n_plan;
    int own_src;                /* ck / ctr opened here, closed with the job */
    int have_calib;             /* methods that need statistics are allowed */
    int *map_plan, *map_expert; /* source tensor -> plan, expert (-1: not stored) */
    int *slot_src;              /* slice (plan slot + expert) -> source tensor */
    uint8_t *slot_done;         /* slice written (random-order writing only) */
    dsq_ctrw *w;
    dsq_pool *pool;
    uint8_t *buf[DSQ_ARR_N];
    uint64_t cap[DSQ_ARR_N];
    dsq_qwork work;             /* scratch of dsq_quantize_matrix */
    struct src_hashes *hashes;  /* provenance hashes, computed beside the stream */
    uint64_t done_bytes, total_bytes;
    double t0, last_draw;
} ctx;

/* ---- planning ------------------------------------------------------------ */
static int src_scheme_of(ctx *c, const dsq_tinfo *t) {
    switch (t->dtype) {
    case DSQ_DT_F32: return DSQ_Q_F32;
    case DSQ_DT_F16: return DSQ_Q_F16;
    case DSQ_DT_BF16: return DSQ_Q_BF16;
    case DSQ_DT_F8_E4M3:
        if (c->cfg->block_rows != 128 || c->cfg->block_cols != 128)
            return dsq_fail(c->err, DSQ_E_UNSUPPORTED, "%s: FP8 block size %dx%d (only 128x128 is supported)",
                            t->name, c->cfg->block_rows, c->cfg->block_cols);
        return DSQ_Q_FP8_BLOCK;
    default:
        return dsq_fail(c->err, DSQ_E_UNSUPPORTED, "%s: dtype %s cannot be stored", t->name, dsq_dtype_name(t->dtype));
    }
}

static int choose_scheme(ctx *c, plan *p) {
    int rc = dsq_qmethod_for(c->o->recipe, p->name, p->d.role, p->d.layer, p->src_scheme, c->have_calib,
                             &p->m, c->err);
    if (rc) return rc;
    /* calibration runs the main layers only: the MTP layer has no statistics */
    if (p->d.is_mtp) dsq_qmethod_uncalibrated(&p->m, p->src_scheme);
    else dsq_qmethod_fold(c->o->recipe, c->cfg, p->d.role, p->d.layer, &p->m, p->fold_rec, sizeof p->fold_rec);
    p->d.scheme = p->m.scheme;
    p->d.colscale = p->m.copy ? p->src_colscale : dsq_qm_has_colscale(p->m.method);
    p->d.recipe = p->m.recipe;
    return DSQ_OK;
}

static int add_plan(ctx *c, plan **out) {
    plan *np = dsq_realloc(c->p, sizeof *np * (size_t)(c->n_plan + 1));
    if (!np) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    c->p = np;
    *out = &c->p[c->n_plan++];
    memset(*out, 0, sizeof **out);
    (*out)->src_scheme = -1;
    return DSQ_OK;
}

static int plan_ckpt(ctx *c) {
    const dsq_config *cfg = c->cfg;
    int n = dsq_ckpt_n_tensors(c->ck), rc;
    int nl = cfg->n_layers + cfg->n_mtp_layers;
    int *stack = dsq_malloc(sizeof *stack * (size_t)(nl * 3 + 1));
    c->map_plan = dsq_malloc(sizeof *c->map_plan * (size_t)(n + 1));
    c->map_expert = dsq_malloc(sizeof *c->map_expert * (size_t)(n + 1));
    if (!stack || !c->map_plan || !c->map_expert) { free(stack); return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory"); }
    for (int i = 0; i < nl * 3; i++) stack[i] = -1;
    for (int i = 0; i < n; i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(c->ck, i);
        c->map_plan[i] = -1;
        c->map_expert[i] = 0;
        if (t->role == DSQ_R_SCALE || (t->is_mtp && c->o->drop_mtp)) continue;
        int ss = src_scheme_of(c, t);
        if (ss < 0) { free(stack); return ss; }
        int is_exp = t->role == DSQ_R_EXP_GATE || t->role == DSQ_R_EXP_UP || t->role == DSQ_R_EXP_DOWN;
        int slot = is_exp ? t->layer * 3 + (int)(t->role - DSQ_R_EXP_GATE) : -1;
        plan *p;
        if (is_exp && stack[slot] >= 0) {
            p = &c->p[stack[slot]];
            if (p->src_scheme != ss) {
                free(stack);
                return dsq_fail(c->err, DSQ_E_FORMAT, "%s: experts of one projection differ in dtype", t->name);
            }
        } else {
            if ((rc = add_plan(c, &p))) { free(stack); return rc; }
            p->src_scheme = ss;
            p->d.role = t->role;
            p->d.layer = t->layer;
            p->d.is_mtp = t->is_mtp;
            p->d.rows = t->n_dims == 2 ? t->shape[0] : 1;
            p->d.cols = t->n_dims == 2 ? t->shape[1] : t->numel;
            if (is_exp) {
                dsq_expert_name(p->name, sizeof p->name, t->layer, -1, t->role);
                p->d.experts = cfg->n_routed_experts;
                p->d.n_dims = 3;
                p->d.shape[0] = cfg->n_routed_experts;
                p->d.shape[1] = t->shape[0];
                p->d.shape[2] = t->shape[1];
                stack[slot] = c->n_plan - 1;
            } else {
                snprintf(p->name, sizeof p->name, "%s", t->name);
                p->d.n_dims = t->n_dims;
                for (int k = 0; k < t->n_dims; k++) p->d.shape[k] = t->shape[k];
            }
            p->d.name = p->name;
        }
        c->map_plan[i] = (int)(p - c->p);
        c->map_expert[i] = is_exp ? t->expert : 0;
    }
    free(stack);
    return DSQ_OK;
}

static int plan_ctr(ctx *c) {
    int rc, n = dsq_ctr_n_tensors(c->ctr);
    c->map_plan = dsq_malloc(sizeof *c->map_plan * (size_t)(n + 1));
    if (!c->map_plan) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const dsq_ctensor *t = dsq_ctr_tensor(c->ctr, i);
        plan *p;
        c->map_plan[i] = -1;
        if (t->is_mtp && c->o->drop_mtp) continue;
        if ((rc = add_plan(c, &p))) return rc;
        c->map_plan[i] = c->n_plan - 1;
        snprintf(p->name, sizeof p->name, "%s", t->name);
        p->d.name = p->name;
        p->d.role = t->role;
        p->d.layer = t->layer;
        p->d.is_mtp = t->is_mtp;
        p->d.n_dims = t->n_dims;
        memcpy(p->d.shape, t->shape, sizeof p->d.shape);
        p->d.experts = t->experts;
        p->d.rows = t->rows;
        p->d.cols = t->cols;
        p->src_scheme = t->scheme;
        p->src_colscale = t->arr[DSQ_ARR_COLSCALE].size > 0;
    }
    return DSQ_OK;
}

/* ---- progress ------------------------------------------------------------- */
static void draw(ctx *c, int final) {
    if (c->o->on_tensor && !final) c->o->on_tensor(c->o->on_tensor_arg, c->done_bytes, c->total_bytes);
    if (!c->o->progress) return;
    double now = dsq_now();
    if (!final && now - c->last_draw < 0.2) return;
    c->last_draw = now;
    double el = now - c->t0, rate = el > 0 ? (double)c->done_bytes / el : 0;
    double frac = c->total_bytes ? (double)c->done_bytes / (double)c->total_bytes : 1;
    double eta = rate > 0 ? (double)(c->total_bytes - c->done_bytes) / rate : 0;
    int bar = (int)(frac * 30);
    fprintf(stderr, "\r[%.*s%*s] %5.1f%% %8.1f/%.1f MiB %7.1f MiB/s ETA %4.0fs", bar,
            "##############################", 30 - bar, "", frac * 100, (double)c->done_bytes / 1048576.0,
            (double)c->total_bytes / 1048576.0, rate / 1048576.0, eta);
    if (final) fputc('\n', stderr);
}

/* ---- processing one matrix ----------------------------------------------- */
typedef struct errjob {
    const dsq_qmat *a, *b;
    int64_t r0, r1;
    double se, sx, maxabs;
    int rc;
} errjob;

static void err_job(void *vp) {
    errjob *j = vp;
    int64_t cols = j->a->cols, step = 16;
    float *x = malloc(sizeof *x * (size_t)(cols * step)), *y = malloc(sizeof *y * (size_t)(cols * step));
    j->se = j->sx = j->maxabs = 0;
    j->rc = x && y ? 0 : -1;
    for (int64_t r = j->r0; r < j->r1 && !j->rc; r += step) {
        int64_t r1 = r + step < j->r1 ? r + step : j->r1;
        if (dsq_q_dequantize(j->a, r, r1, x, NULL) || dsq_q_dequantize(j->b, r, r1, y, NULL)) { j->rc = -1; break; }
        for (int64_t k = 0; k < (r1 - r) * cols; k++) {
            double d = (double)x[k] - y[k];
            j->se += d * d;
            j->sx += (double)x[k] * x[k];
            if (fabs(d) > j->maxabs) j->maxabs = fabs(d);
        }
    }
    free(x);
    free(y);
}

static void measure(ctx *c, plan *p, const dsq_qmat *a, const dsq_qmat *b) {
    errjob jobs[64];
    int nj = dsq_pool_size(c->pool) * 2;
    if (nj > 64) nj = 64;
    if (a->rows < nj) nj = (int)(a->rows ? a->rows : 1);
    for (int k = 0; k < nj; k++) {
        jobs[k] = (errjob){a, b, a->rows * k / nj, a->rows * (k + 1) / nj, 0, 0, 0, 0};
        dsq_pool_add(c->pool, err_job, &jobs[k]);
    }
    dsq_pool_join(c->pool);
    for (int k = 0; k < nj; k++) {
        p->se += jobs[k].se;
        p->sx += jobs[k].sx;
        if (jobs[k].maxabs > p->maxabs) p->maxabs = jobs[k].maxabs;
    }
}

/* Name of the weight whose statistics apply to expert e of plan p. */
static void stat_name(const plan *p, int e, char *out, size_t n) {
    if (!p->d.experts) {
        snprintf(out, n, "%s", p->name);
        return;
    }
    dsq_expert_name(out, n, p->d.layer, e, p->d.role);
}

static int process(ctx *c, plan *p, int e, const dsq_qmat *src, const void *colscale) {
    int rc;
    if (p->m.copy) {
        const void *arr[DSQ_ARR_N] = {src->data, src->scale, src->zero, colscale};
        for (int k = 0; k < DSQ_ARR_N; k++) {
            uint64_t n = dsq_ctrw_slice_size(c->w, p->out, k);
            if (!n) continue;
            if ((rc = dsq_ctrw_write(c->w, p->out, e, k, arr[k], n, c->err))) return rc;
        }
        return DSQ_OK;
    }
    for (int k = 0; k < DSQ_ARR_N; k++) {
        uint64_t n = dsq_ctrw_slice_size(c->w, p->out, k);
        if (n > c->cap[k]) {
            free(c->buf[k]);
            c->buf[k] = dsq_malloc(n);
            c->cap[k] = c->buf[k] ? n : 0;
            if (!c->buf[k]) return dsq_fail(c->err, DSQ_E_NOMEM, "%s: out of memory", p->name);
        }
    }
    dsq_qmat dst = {p->d.scheme, src->rows, src->cols, c->buf[0],
                    dsq_ctrw_slice_size(c->w, p->out, 1) ? c->buf[1] : NULL,
                    dsq_ctrw_slice_size(c->w, p->out, 2) ? c->buf[2] : NULL};
    const dsq_cstat *st = NULL;
    char nm[200];
    stat_name(p, e, nm, sizeof nm);
    if (c->o->calib && p->m.method != DSQ_QM_PLAIN)
        st = dsq_cstats_find(c->o->calib, dsq_qm_is_fold(p->m.method) ? p->fold_rec : nm);
    float *cs_out = p->d.colscale && !p->m.copy ? (float *)c->buf[DSQ_ARR_COLSCALE] : NULL;
    if ((rc = dsq_quantize_matrix(c->pool, &p->m, src, colscale, st, &dst, cs_out, &c->work, nm, c->err))) return rc;
    if (c->o->measure_error) {
        /* against the source's values; column multipliers (source or AWQ)
         * are applied through f32 copies */
        if (colscale || cs_out) {
            int64_t n = src->rows * src->cols;
            float *a = dsq_malloc(sizeof *a * (size_t)n), *b = dsq_malloc(sizeof *b * (size_t)n);
            if (!a || !b) { free(a); free(b); return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory"); }
            dsq_q_dequantize(src, 0, src->rows, a, NULL);
            dsq_q_dequantize(&dst, 0, src->rows, b, NULL);
            for (int64_t r = 0; r < src->rows; r++)
                for (int64_t j = 0; j < src->cols; j++) {
                    if (colscale) a[r * src->cols + j] *= dsq_lef32((const uint8_t *)colscale + 4 * j);
                    if (cs_out) b[r * src->cols + j] *= cs_out[j];
                }
            dsq_qmat qa = {DSQ_Q_F32, src->rows, src->cols, a, NULL, NULL}, qb = {DSQ_Q_F32, src->rows, src->cols, b, NULL, NULL};
            measure(c, p, &qa, &qb);
            free(a);
            free(b);
        } else {
            measure(c, p, src, &dst);
        }
    }
    for (int k = 0; k < DSQ_ARR_N; k++) {
        uint64_t n = dsq_ctrw_slice_size(c->w, p->out, k);
        if (n && (rc = dsq_ctrw_write(c->w, p->out, e, k, c->buf[k], n, c->err))) return rc;
    }
    return DSQ_OK;
}

/* ---- metadata ------------------------------------------------------------ */
/* The creation time: SOURCE_DATE_EPOCH when it is set (reproducible
 * builds' convention), else the clock. */
static char *iso_now(char *b, size_t n) {
    time_t t = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end;
        long long v = strtoll(sde, &end, 10);
        if (!*end && v >= 0) t = (time_t)v;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(b, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

/* Provenance hashes of the source files, computed by a second thread while
 * the tensors stream (one more read of every shard would otherwise sit on
 * the critical path).  The thread only reads files and fills this table;
 * JSON is built on the main thread afterwards. */
typedef struct src_hashes {
    int n;
    char (*path)[4096];
    uint64_t *size, *xxh3;
    int *ok;
    pthread_t th;
    int started;
} src_hashes;

static void *hash_thread(void *arg) {
    src_hashes *h = arg;
    for (int i = 0; i < h->n; i++) {
        dsq_err e = {0};
        h->ok[i] = dsq_file_xxh3(h->path[i], &h->xxh3[i], &h->size[i], &e) == DSQ_OK;
    }
    return NULL;
}

/* List the source files (archive or container: the file itself; folder:
 * side files and shards) and start hashing them. */
static int hashes_start(src_hashes *h, const dsq_ckpt *ck, const char *src) {
    memset(h, 0, sizeof *h);
    static const char *const side[] = {"config.json", "model.safetensors.index.json", "tokenizer.json",
                                       "tokenizer_config.json", "generation_config.json"};
    int cap = 1 + (ck ? 5 + dsq_ckpt_n_shards(ck) : 0);
    h->path = dsq_calloc((size_t)cap, sizeof *h->path);
    h->size = dsq_calloc((size_t)cap, sizeof *h->size);
    h->xxh3 = dsq_calloc((size_t)cap, sizeof *h->xxh3);
    h->ok = dsq_calloc((size_t)cap, sizeof *h->ok);
    if (!h->path || !h->size || !h->xxh3 || !h->ok) return DSQ_E_NOMEM;
    if (!ck || dsq_ckpt_is_archive(ck)) {
        snprintf(h->path[h->n++], sizeof h->path[0], "%s", src);
    } else {
        for (size_t k = 0; k < sizeof side / sizeof side[0]; k++)
            if (dsq_ckpt_blob(ck, side[k], NULL))
                snprintf(h->path[h->n++], sizeof h->path[0], "%s/%s", dsq_ckpt_path(ck), side[k]);
        for (int s = 0; s < dsq_ckpt_n_shards(ck); s++)
            snprintf(h->path[h->n++], sizeof h->path[0], "%s/%s", dsq_ckpt_path(ck), dsq_ckpt_shard_name(ck, s));
    }
    if (pthread_create(&h->th, NULL, hash_thread, h) == 0) h->started = 1;
    else hash_thread(h); /* no thread: hash inline */
    return DSQ_OK;
}

static void hashes_finish(src_hashes *h) {
    if (h->started) pthread_join(h->th, NULL);
    h->started = 0;
    free(h->path);
    free(h->size);
    free(h->xxh3);
    free(h->ok);
    memset(h, 0, sizeof *h);
}

static char *build_meta(ctx *c, const char *config_json, int64_t params, uint64_t tbytes, const char *extra) {
    cJSON *m = cJSON_CreateObject();
    char *norm = dsq_config_to_json(c->cfg);
    cJSON *nc = norm ? cJSON_Parse(norm) : NULL;
    free(norm);
    cJSON_AddItemToObject(m, "config", nc ? nc : cJSON_CreateObject());
    cJSON_AddStringToObject(m, "config_json", config_json);
    cJSON *pv = cJSON_AddObjectToObject(m, "provenance");
    char tb[32];
    cJSON_AddStringToObject(pv, "dsq_version", DSQ_VERSION_STRING);
    cJSON_AddStringToObject(pv, "created", iso_now(tb, sizeof tb));
    cJSON *cmd = cJSON_AddArrayToObject(pv, "command");
    for (int i = 0; i < c->o->argc; i++) cJSON_AddItemToArray(cmd, cJSON_CreateString(c->o->argv[i]));
    cJSON_AddStringToObject(pv, "source_kind", c->ctr ? "dsq" : dsq_ckpt_is_archive(c->ck) ? "archive" : "folder");
    cJSON *srcs = cJSON_AddArrayToObject(pv, "sources");
    src_hashes *h = c->hashes;
    if (h->started) pthread_join(h->th, NULL);
    h->started = 0;
    for (int i = 0; i < h->n; i++) {
        if (!h->ok[i]) continue;
        char hx[17];
        dsq_hex16(hx, h->xxh3[i]);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", dsq_basename(h->path[i]));
        cJSON_AddNumberToObject(o, "size", (double)h->size[i]);
        cJSON_AddStringToObject(o, "xxh3", hx);
        cJSON_AddItemToArray(srcs, o);
    }
    cJSON *rc = cJSON_AddObjectToObject(m, "recipe");
    cJSON_AddStringToObject(rc, "name", c->o->recipe->name);
    cJSON *rj = c->o->recipe->json ? cJSON_Parse(c->o->recipe->json) : NULL;
    cJSON_AddItemToObject(rc, "rules", rj ? rj : cJSON_CreateObject());
    cJSON *st = cJSON_AddObjectToObject(m, "stats");
    cJSON_AddNumberToObject(st, "params", (double)params);
    cJSON_AddNumberToObject(st, "bytes", (double)tbytes);
    cJSON *x = extra ? cJSON_Parse(extra) : NULL;
    for (cJSON *it = cJSON_IsObject(x) ? x->child : NULL; it; it = it->next)
        if (!cJSON_HasObjectItem(m, it->string)) cJSON_AddItemToObject(m, it->string, cJSON_Duplicate(it, 1));
    cJSON_Delete(x);
    char *s = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return s;
}

/* ---- the job --------------------------------------------------------------- */
void dsq_pipe_report_free(dsq_pipe_report *rep) {
    free(rep->t);
    rep->t = NULL;
}

static void job_free(ctx *c) {
    if (c->hashes) {
        hashes_finish(c->hashes);
        free(c->hashes);
    }
    if (c->w) dsq_ctrw_abort(c->w);
    for (int k = 0; k < DSQ_ARR_N; k++) free(c->buf[k]);
    dsq_qwork_deinit(&c->work);
    free(c->p);
    free(c->map_plan);
    free(c->map_expert);
    free(c->slot_src);
    free(c->slot_done);
    dsq_pool_free(c->pool);
    if (c->own_src) {
        dsq_ckpt_close(c->ck);
        dsq_ctr_close(c->ctr);
    }
    memset(c, 0, sizeof *c);
}

/* Plan every tensor of the source (c->ck or c->ctr, already open), start
 * hashing the source files, open the output and declare every tensor and
 * side file; the layout is fixed on return. */
static int job_open(ctx *c) {
    const dsq_pipe_opts *o = c->o;
    int rc;
    c->t0 = dsq_now();
    if (c->ctr) {
        c->cfg = dsq_ctr_config(c->ctr);
        rc = plan_ctr(c);
    } else {
        c->cfg = dsq_ckpt_config(c->ck);
        rc = plan_ckpt(c);
    }
    if (rc) return rc;
    /* slices: one per plan, or per expert of a stacked one */
    int n_slots = 0;
    for (int i = 0; i < c->n_plan; i++) {
        c->p[i].slot = n_slots;
        n_slots += c->p[i].d.experts ? c->p[i].d.experts : 1;
    }
    c->slot_src = dsq_malloc(sizeof *c->slot_src * (size_t)(n_slots + 1));
    c->slot_done = dsq_calloc((size_t)n_slots + 1, 1);
    c->hashes = dsq_calloc(1, sizeof *c->hashes);
    if (!c->slot_src || !c->slot_done || !c->hashes) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    int n_src = c->ctr ? dsq_ctr_n_tensors(c->ctr) : dsq_ckpt_n_tensors(c->ck);
    for (int i = 0; i < n_src; i++) {
        if (c->map_plan[i] < 0) continue;
        plan *p = &c->p[c->map_plan[i]];
        if (c->ctr)
            for (int e = 0; e < (p->d.experts ? p->d.experts : 1); e++) c->slot_src[p->slot + e] = i;
        else
            c->slot_src[p->slot + c->map_expert[i]] = i;
    }
    if (hashes_start(c->hashes, c->ck, o->src)) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    c->pool = dsq_pool_new(o->threads > 0 ? o->threads : dsq_default_threads());
    if (!c->pool) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    if ((rc = dsq_ctrw_open(&c->w, o->out, o->force, c->err))) return rc;
    for (int i = 0; i < c->n_plan; i++) {
        plan *p = &c->p[i];
        if ((rc = choose_scheme(c, p))) return rc;
        p->d.name = p->name; /* c->p moved while planning */
        int idx = dsq_ctrw_add_tensor(c->w, &p->d, c->err);
        if (idx < 0) return idx;
        p->out = idx;
    }
    /* side files: tokenizer and generation config travel with the model */
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (size_t k = 0; k < 3; k++) {
        if (c->ck) {
            size_t len;
            const void *b = dsq_ckpt_blob(c->ck, side[k], &len);
            if (b && (rc = dsq_ctrw_add_file(c->w, side[k], b, len, c->err))) return rc;
        } else {
            char *b;
            size_t len;
            dsq_err e2 = {0};
            if (dsq_ctr_file(c->ctr, side[k], &b, &len, &e2) == DSQ_OK) {
                rc = dsq_ctrw_add_file(c->w, side[k], b, len, c->err);
                free(b);
                if (rc) return rc;
            }
        }
    }
    return dsq_ctrw_layout(c->w, c->err);
}

/* The report (rep may be NULL), the metadata (extra_meta: an object whose
 * members are added, or NULL) and the commit of the output. */
static int job_finish(ctx *c, dsq_pipe_report *rep, const char *extra_meta) {
    int rc = DSQ_OK;
    dsq_pipe_report tmp;
    if (!rep) rep = &tmp;
    memset(rep, 0, sizeof *rep);
    rep->t = dsq_calloc((size_t)c->n_plan + 1, sizeof *rep->t);
    if (!rep->t) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_plan; i++) {
        plan *p = &c->p[i];
        dsq_pipe_tensor *r = &rep->t[rep->n++];
        snprintf(r->name, sizeof r->name, "%s", p->name);
        r->role = p->d.role;
        r->scheme = p->d.scheme;
        r->experts = p->d.experts;
        r->params = p->d.rows * p->d.cols * (p->d.experts ? p->d.experts : 1);
        for (int k = 0; k < DSQ_ARR_N; k++) r->bytes += dsq_ctrw_slice_size(c->w, p->out, k) * (uint64_t)(p->d.experts ? p->d.experts : 1);
        r->rel_err = p->m.copy ? 0 : c->o->measure_error ? (p->sx > 0 ? sqrt(p->se / p->sx) : 0) : -1;
        r->max_abs = p->m.copy ? 0 : c->o->measure_error ? p->maxabs : -1;
        rep->role_params[r->role] += (uint64_t)r->params;
        rep->role_bytes[r->role] += r->bytes;
        rep->params += r->params;
        rep->out_tensor_bytes += r->bytes;
    }
    rep->src_bytes = c->total_bytes;
    char *cfgjs = dsq_config_json_of(c->ck, c->ctr);
    char *meta = cfgjs ? build_meta(c, cfgjs, rep->params, rep->out_tensor_bytes, extra_meta) : NULL;
    free(cfgjs);
    if (!meta) rc = dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    else {
        rc = dsq_ctrw_finish(c->w, meta, c->err);
        c->w = NULL;
        free(meta);
    }
    if (!rc) {
        dsq_ctr *chk;
        if (dsq_ctr_open(&chk, c->o->out, NULL) == DSQ_OK) {
            rep->out_bytes = dsq_ctr_file_size(chk);
            dsq_ctr_close(chk);
        }
    }
    rep->seconds = dsq_now() - c->t0;
    if (rc || rep == &tmp) dsq_pipe_report_free(rep);
    return rc;
}

int dsq_pipeline_run(const dsq_pipe_opts *o, dsq_pipe_report *rep, dsq_err *err) {
    ctx c = {0};
    int rc = DSQ_OK;
    memset(rep, 0, sizeof *rep);
    c.o = o;
    c.err = err;
    c.own_src = 1;
    c.have_calib = o->calib != NULL;
    if (dsq_ctr_sniff(o->src)) rc = dsq_ctr_open(&c.ctr, o->src, err);
    else rc = dsq_ckpt_open(&c.ck, o->src, 0, err);
    if (rc || (rc = job_open(&c))) goto out;
    /* stream */
    if (c.ck) {
        for (int i = 0; i < dsq_ckpt_n_tensors(c.ck); i++) c.total_bytes += dsq_ckpt_tensor(c.ck, i)->nbytes;
        dsq_src *s;
        if ((rc = dsq_src_open(&s, c.ck, err))) goto out;
        int idx;
        while ((rc = dsq_src_next(s, &idx, err)) == DSQ_OK) {
            const dsq_tinfo *t = dsq_ckpt_tensor(c.ck, idx);
            c.done_bytes += t->nbytes;
            if (c.map_plan[idx] < 0) continue;
            const void *data;
            if ((rc = dsq_src_data(s, &data, err))) break;
            plan *p = &c.p[c.map_plan[idx]];
            dsq_qmat m = {p->src_scheme, p->d.rows, p->d.cols, (void *)data,
                          (void *)dsq_ckpt_scales(c.ck, idx, NULL, NULL), NULL};
            if ((rc = process(&c, p, c.map_expert[idx], &m, NULL))) break;
            draw(&c, 0);
        }
        dsq_src_close(s);
        if (rc == DSQ_EOF) rc = DSQ_OK;
        if (rc) goto out;
    } else {
        for (int i = 0; i < dsq_ctr_n_tensors(c.ctr); i++) {
            const dsq_ctensor *t = dsq_ctr_tensor(c.ctr, i);
            for (int k = 0; k < DSQ_ARR_N; k++) c.total_bytes += t->arr[k].size;
        }
        for (int i = 0; i < dsq_ctr_n_tensors(c.ctr); i++) {
            const dsq_ctensor *t = dsq_ctr_tensor(c.ctr, i);
            c.done_bytes += t->arr[0].size + t->arr[1].size + t->arr[2].size + t->arr[3].size;
            if (c.map_plan[i] < 0) continue;
            plan *p = &c.p[c.map_plan[i]];
            for (int e = 0; e < (t->experts ? t->experts : 1); e++) {
                dsq_qmat m;
                if ((rc = dsq_ctr_qmat(c.ctr, i, e, &m, err))) goto out;
                if ((rc = process(&c, p, e, &m, dsq_ctr_colscale(c.ctr, i, e)))) goto out;
            }
            draw(&c, 0);
        }
    }
    draw(&c, 1);
    rc = job_finish(&c, rep, NULL);
out:
    job_free(&c);
    return rc;
}

/* ---- writing in any order (dsq calib --quant-out) ---------------------------- */
struct dsq_qout {
    ctx c;
    dsq_pipe_opts o;    /* copy: the caller's may not outlive the handle */
};

int dsq_qout_open(dsq_qout **out, const dsq_pipe_opts *o, const struct dsq_model *m, dsq_err *err) {
    *out = NULL;
    dsq_qout *q = dsq_calloc(1, sizeof *q);
    if (!q) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    q->o = *o;
    q->o.calib = NULL;
    q->o.measure_error = 0;
    q->o.progress = 0;
    q->o.drop_mtp = 0;
    q->c.o = &q->o;
    q->c.err = err;
    q->c.ck = m->ck;
    q->c.ctr = m->ctr;
    q->c.have_calib = 1;
    int rc = job_open(&q->c);
    if (rc) {
        dsq_qout_abort(q);
        return rc;
    }
    *out = q;
    return DSQ_OK;
}

void dsq_qout_abort(dsq_qout *q) {
    if (!q) return;
    job_free(&q->c);
    free(q);
}

/* The plan and expert of weight `name` (upstream naming), or -1. */
static int find_slice(ctx *c, const char *name, plan **pp, int *e) {
    int i = -1;
    *e = 0;
    if (c->ck) {
        i = dsq_ckpt_find(c->ck, name);
        if (i >= 0) *e = c->map_expert[i];
    } else {
        int l, x;
        dsq_role r = dsq_classify(name, &l, &x);
        char st[200];
        if (x >= 0 && (r == DSQ_R_EXP_GATE || r == DSQ_R_EXP_UP || r == DSQ_R_EXP_DOWN)) {
            dsq_expert_name(st, sizeof st, l, -1, r);
            i = dsq_ctr_find(c->ctr, st);
            *e = x;
        } else {
            i = dsq_ctr_find(c->ctr, name);
        }
    }
    if (i < 0 || c->map_plan[i] < 0) return -1;
    *pp = &c->p[c->map_plan[i]];
    return *e < ((*pp)->d.experts ? (*pp)->d.experts : 1) ? 0 : -1;
}

int dsq_qout_put(dsq_qout *q, const char *name, const dsq_qmat *m, const float *colscale, dsq_err *err) {
    ctx *c = &q->c;
    plan *p;
    int e, rc;
    c->err = err;
    if (find_slice(c, name, &p, &e)) return dsq_fail(err, DSQ_E_NOTFOUND, "%s: not a tensor of the output", name);
    if (p->m.copy || m->type != p->d.scheme || m->rows != p->d.rows || m->cols != p->d.cols || !colscale != !p->d.colscale)
        return dsq_fail(err, DSQ_E_ARG, "%s: quantized as %s, planned as %s", name, dsq_q_scheme(m->type)->name,
                        p->m.copy ? "a copy" : dsq_q_scheme(p->d.scheme)->name);
    if (c->slot_done[p->slot + e]) return dsq_fail(err, DSQ_E_ARG, "%s: written twice", name);
    const void *arr[DSQ_ARR_N] = {m->data, m->scale, m->zero, colscale};
    for (int k = 0; k < DSQ_ARR_N; k++) {
        uint64_t n = dsq_ctrw_slice_size(c->w, p->out, k);
        if (n && (rc = dsq_ctrw_write(c->w, p->out, e, k, arr[k], n, err))) return rc;
    }
    c->slot_done[p->slot + e] = 1;
    return DSQ_OK;
}

int dsq_qout_fill(dsq_qout *q, int layer, dsq_err *err) {
    ctx *c = &q->c;
    int rc;
    c->err = err;
    for (int i = 0; i < c->n_plan; i++) {
        plan *p = &c->p[i];
        int outside = p->d.layer < 0 || p->d.is_mtp;
        if (layer >= 0 ? outside || p->d.layer != layer : !outside) continue;
        for (int e = 0; e < (p->d.experts ? p->d.experts : 1); e++) {
            if (c->slot_done[p->slot + e]) continue;
            int si = c->slot_src[p->slot + e];
            dsq_qmat m;
            const void *colscale = NULL;
            if (c->ck) {
                const void *data;
                if ((rc = dsq_ckpt_view(c->ck, si, &data, err))) return rc;
                m = (dsq_qmat){p->src_scheme, p->d.rows, p->d.cols, (void *)data,
                               (void *)dsq_ckpt_scales(c->ck, si, NULL, NULL), NULL};
            } else {
                if ((rc = dsq_ctr_qmat(c->ctr, si, e, &m, err))) return rc;
                colscale = dsq_ctr_colscale(c->ctr, si, e);
            }
            if ((rc = process(c, p, e, &m, colscale))) return rc;
            c->slot_done[p->slot + e] = 1;
        }
    }
    /* the scratch grew to the largest matrix (the embedding, the head):
     * give it back rather than hold it through the calibration */
    for (int k = 0; k < DSQ_ARR_N; k++) {
        free(c->buf[k]);
        c->buf[k] = NULL;
        c->cap[k] = 0;
    }
    dsq_qwork_deinit(&c->work);
    return DSQ_OK;
}

int dsq_qout_finish(dsq_qout *q, const char *extra_meta, dsq_err *err) {
    q->c.err = err;
    int rc = job_finish(&q->c, NULL, extra_meta);
    dsq_qout_abort(q);
    return rc;
}
