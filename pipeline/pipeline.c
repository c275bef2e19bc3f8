/*
 * pipeline.c -- convert / quantize one model source into one output model
 * (see pipeline.h).
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
#include "formats/source.h"
#include "formats/writer.h"
#include "quant/quant.h"
#include "pipeline/qmatrix.h"
#include "calib/stats.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

typedef struct plan {
    dsq_mw_tensor d;
    char name[160];
    int src_scheme;      /* scheme of the source matrices, -1 until known */
    int src_colscale;    /* source (a container) has column multipliers */
    dsq_method m;       /* scheme and method from the recipe */
    char fold_rec[200];  /* folded AWQ: the statistics record holding the scales */
    int out;             /* writer index */
    int next;            /* the plan of the source tensor's next part, or -1 */
    int fallback_from;   /* the scheme the recipe asked for when its blocks did
                            not divide the rows, else -1 */
    int transcode;       /* stored through dsq_q_transcode (the source's exact twin) */
    int converted_from;  /* the scheme asked for when the output format could not hold it, or -1 */
    int rerounded;       /* a transcode was impossible (bf16 scale outside f16):
                            those matrices were quantized from their values */
    int slot;            /* its first slice in ctx.slot_src / slot_done */
    double se, sx, maxabs; /* error accumulators */
} plan;

typedef struct ctx {
    const dsq_pipe_opts *o;
    dsq_err *err;
    dsq_src *src;
    const dsq_config *cfg;
    plan *p;
    int n_plan;
    int own_src;                /* src opened here, closed with the job */
    int have_calib;             /* methods that need statistics are allowed */
    int *map_plan, *map_expert; /* source tensor -> plan (-1: not stored), expert */
    int *slot_src;              /* slice (plan slot + expert) -> source tensor */
    uint8_t *slot_done;         /* slice written (random-order writing only) */
    dsq_mwriter *w;
    dsq_pool *pool;
    uint8_t *buf[3];            /* quantized matrix: data, scale, zero point */
    uint64_t cap[3];
    float *cs_buf;              /* its column multipliers */
    int64_t cs_cap;
    dsq_matrix_scratch work;             /* scratch of dsq_quantize_matrix */
    struct src_hashes *hashes;  /* provenance hashes, computed beside the stream */
    uint64_t done_bytes, total_bytes;
    double t0;
} ctx;

/* ---- planning ------------------------------------------------------------ */
/* A ggml block type whose blocks do not divide a row falls back, as
 * llama.cpp's quantizer does, to a 32-column type of at least its bits,
 * then to f16. */
static int choose_scheme(ctx *c, plan *p) {
    int rc = dsq_method_for(c->o->recipe, p->name, p->d.role, p->d.layer, p->d.cols, p->src_scheme, c->have_calib,
                             &p->m, c->err);
    if (rc) return rc;
    p->fallback_from = p->m.fallback_from;
    /* a source scheme GGUF holds exactly (ggml blocks, int4 groups of 32):
     * kept with keep_twins, and transcoded, not re-rounded, when the recipe
     * asks for that twin without a calibrated method */
    int twin = p->d.part ? -1 : dsq_q_ggml_twin(p->src_scheme);
    if (twin >= 0 && c->o->keep_twins && p->m.method == DSQ_METHOD_PLAIN && dsq_ggml_fallback(twin, p->d.cols) == twin &&
        dsq_q_ggml_type(p->m.scheme) >= 0) {
        p->m.scheme = twin;
        p->m.fallback_from = p->fallback_from = -1;
        p->m.copy = twin == p->src_scheme;
        snprintf(p->m.recipe, sizeof p->m.recipe, "{\"scheme\":\"%s\",\"method\":\"copy\"}", dsq_q_scheme(twin)->name);
    }
    /* a scheme the output format cannot hold becomes the nearest one it can
     * (compressed-tensors: bf16-scaled int4 / int8; DeepSeek's FP8:
     * fp8-block-ue8m0), transcoded when that keeps every value */
    if (!p->d.part) {
        dsq_mw_tensor probe = p->d;
        probe.scheme = p->m.scheme;
        probe.colscale = p->m.copy ? p->src_colscale : dsq_method_has_colscale(p->m.method);
        dsq_err ce = {0};
        if (dsq_mwriter_check(c->w, &probe, &ce)) {
            int near = dsq_mwriter_nearest(dsq_mwriter_format(c->w), p->m.scheme, p->d.cols);
            probe.scheme = near;
            dsq_err ce2 = {0};
            if (near < 0 || near == p->m.scheme || dsq_mwriter_check(c->w, &probe, &ce2)) return dsq_fail(c->err, ce.code, "%s", ce.msg);
            p->converted_from = p->m.scheme;
            p->m.scheme = near;
            if (p->m.copy) p->m.method = DSQ_METHOD_PLAIN;
            p->m.copy = 0;
            snprintf(p->m.recipe, sizeof p->m.recipe, "{\"scheme\":\"%s\",\"method\":\"absmax\",\"converted_from\":\"%s\"}",
                     dsq_q_scheme(near)->name, dsq_q_scheme(p->converted_from)->name);
        }
    }
    if (!p->m.copy && p->m.method == DSQ_METHOD_PLAIN && !p->d.part && dsq_q_transcodable(p->src_scheme, p->m.scheme)) {
        p->transcode = 1;
        snprintf(p->m.recipe, sizeof p->m.recipe, "{\"scheme\":\"%s\",\"method\":\"transcode\",\"from\":\"%s\"}",
                 dsq_q_scheme(p->m.scheme)->name, dsq_q_scheme(p->src_scheme)->name);
    }
    /* calibration runs the main layers only: the MTP layer has no statistics */
    if (p->d.is_mtp || p->d.part) dsq_method_uncalibrated(&p->m, p->src_scheme);
    else dsq_method_fold(c->o->recipe, c->cfg, p->d.role, p->d.layer, &p->m, p->fold_rec, sizeof p->fold_rec);
    p->d.scheme = p->m.scheme;
    p->d.colscale = p->m.copy ? p->src_colscale : dsq_method_has_colscale(p->m.method);
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
    (*out)->next = -1;
    (*out)->fallback_from = -1;
    (*out)->converted_from = -1;
    return DSQ_OK;
}

/* kv_b_proj [H*(nope+v), kv_lora] stored as its key part, transposed per
 * head ([H, kv_lora, nope]), and its value part ([H, v, kv_lora]): the plan
 * just added becomes the key part, a second plan follows it.  Both are
 * quantized from the f32 values of the parts (derive_part). */
static int plan_kv_b_parts(ctx *c, int i) {
    const dsq_config *cfg = c->cfg;
    const dsq_stensor *t = dsq_src_tensor(c->src, i);
    int64_t H = cfg->n_heads, dn = cfg->qk_nope_head_dim, dv = cfg->v_head_dim, r = cfg->kv_lora_rank;
    if (t->rows != H * (dn + dv) || t->cols != r)
        return dsq_fail(c->err, DSQ_E_FORMAT, "%s: shape [%lld, %lld], not [%lld, %lld]", t->name, (long long)t->rows,
                        (long long)t->cols, (long long)(H * (dn + dv)), (long long)r);
    plan *v;
    int rc = add_plan(c, &v);
    if (rc) return rc;
    plan *k = &c->p[c->n_plan - 2];
    *v = *k;
    k->next = c->n_plan - 1;
    k->src_scheme = v->src_scheme = DSQ_Q_F32;
    k->d.part = DSQ_PART_K_B;
    k->d.n_dims = 3;
    k->d.shape[0] = H, k->d.shape[1] = r, k->d.shape[2] = dn;
    k->d.rows = H * r, k->d.cols = dn;
    v->d.part = DSQ_PART_V_B;
    v->d.n_dims = 3;
    v->d.shape[0] = H, v->d.shape[1] = dv, v->d.shape[2] = r;
    v->d.rows = H * dv, v->d.cols = r;
    v->next = -1;
    return DSQ_OK;
}

/* Part p->d.part of kv_b, given as f32 [H*(nope+v), kv_lora] with its
 * column multipliers applied, into dst ([p->d.rows, p->d.cols]). */
static void derive_part(const ctx *c, const plan *p, const float *kv, float *dst) {
    const dsq_config *cfg = c->cfg;
    int64_t H = cfg->n_heads, dn = cfg->qk_nope_head_dim, dv = cfg->v_head_dim, r = cfg->kv_lora_rank;
    for (int64_t h = 0; h < H; h++) {
        const float *head = kv + h * (dn + dv) * r;
        if (p->d.part == DSQ_PART_K_B) /* [h][ri][c] = kv[h*(dn+dv) + c][ri] */
            for (int64_t ri = 0; ri < r; ri++)
                for (int64_t cc = 0; cc < dn; cc++) dst[(h * r + ri) * dn + cc] = head[cc * r + ri];
        else /* [h][v][ri] = kv[h*(dn+dv) + dn + v][ri] */
            memcpy(dst + h * dv * r, head + dn * r, sizeof *dst * (size_t)(dv * r));
    }
}

/* One output tensor per source tensor, in source order, except routed
 * experts: the experts of one projection and layer stack into one
 * [experts, out, in] tensor, planned where its first expert appears. */
static int plan_src(ctx *c) {
    const dsq_config *cfg = c->cfg;
    int n = dsq_src_n_tensors(c->src), rc;
    int nl = cfg->n_layers + cfg->n_mtp_layers;
    int *stack = dsq_malloc(sizeof *stack * (size_t)(nl * 3 + 1));
    c->map_plan = dsq_malloc(sizeof *c->map_plan * (size_t)(n + 1));
    c->map_expert = dsq_malloc(sizeof *c->map_expert * (size_t)(n + 1));
    if (!stack || !c->map_plan || !c->map_expert) { free(stack); return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory"); }
    for (int i = 0; i < nl * 3; i++) stack[i] = -1;
    for (int i = 0; i < n; i++) {
        const dsq_stensor *t = dsq_src_tensor(c->src, i);
        c->map_plan[i] = -1;
        c->map_expert[i] = 0;
        if (t->is_mtp && c->o->drop_mtp) continue;
        int ss = dsq_src_scheme(c->src, i, c->err);
        if (ss < 0) { free(stack); return ss; }
        int is_exp = t->expert >= 0 && (t->role == DSQ_R_EXP_GATE || t->role == DSQ_R_EXP_UP || t->role == DSQ_R_EXP_DOWN);
        int slot = is_exp ? t->layer * 3 + (int)(t->role - DSQ_R_EXP_GATE) : -1;
        plan *p = NULL;
        if (is_exp && stack[slot] >= 0) {
            p = &c->p[stack[slot]];
            if (p->src_scheme != ss) {
                free(stack);
                return dsq_fail(c->err, DSQ_E_FORMAT, "%s: experts of one projection differ in dtype", t->name);
            }
        } else {
            if ((rc = add_plan(c, &p))) { free(stack); return rc; }
            p->src_scheme = ss;
            p->src_colscale = t->colscale;
            p->d.role = t->role;
            p->d.layer = t->layer;
            p->d.is_mtp = t->is_mtp;
            p->d.rows = t->rows;
            p->d.cols = t->cols;
            if (is_exp) {
                dsq_expert_name(p->name, sizeof p->name, t->layer, -1, t->role);
                p->d.experts = cfg->n_routed_experts;
                p->d.n_dims = 3;
                p->d.shape[0] = cfg->n_routed_experts;
                p->d.shape[1] = t->rows;
                p->d.shape[2] = t->cols;
                stack[slot] = c->n_plan - 1;
            } else {
                snprintf(p->name, sizeof p->name, "%s", t->name);
                p->d.n_dims = t->n_dims;
                for (int k = 0; k < t->n_dims; k++) p->d.shape[k] = t->shape[k];
            }
            p->d.name = p->name;
            int pi = c->n_plan - 1; /* p moves when the parts are added */
            if (t->role == DSQ_R_ATTN_KV_B && dsq_mwriter_splits_kv_b(c->w) && (rc = plan_kv_b_parts(c, i))) {
                free(stack);
                return rc;
            }
            p = &c->p[pi];
        }
        if (is_exp && t->expert >= p->d.experts) {
            free(stack);
            return dsq_fail(c->err, DSQ_E_FORMAT, "%s: expert %d of %d", t->name, t->expert, p->d.experts);
        }
        c->map_plan[i] = (int)(p - c->p);
        c->map_expert[i] = is_exp ? t->expert : 0;
    }
    free(stack);
    return DSQ_OK;
}

/* ---- progress ------------------------------------------------------------- */
static void report(ctx *c, int final) {
    if (!c->o->on_progress) return;
    dsq_progress pr = {"quant", c->done_bytes, c->total_bytes, -1, 0, 0, final};
    c->o->on_progress(c->o->on_progress_arg, &pr);
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

static int process_one(ctx *c, plan *p, int e, const dsq_qmat *src, const void *colscale);

/* Store source matrix src as plan p says; a tensor stored in parts
 * (kv_b) is dequantized once, then each part is derived and stored. */
/* Non-finite source values are never used silently: refused (copies pass
 * them through unchanged with allow_nonfinite; quantizing would turn them
 * into numbers, so it is refused either way). */
static int check_finite(ctx *c, const plan *p, int e, const dsq_qmat *src, const void *colscale) {
    int64_t r, col;
    int rc = dsq_q_find_nonfinite(src, &r, &col, c->err);
    if (rc < 0) return rc;
    if (!rc && colscale)
        for (int64_t j = 0; j < src->cols && !rc; j++)
            if (!isfinite(dsq_lef32((const uint8_t *)colscale + 4 * j))) rc = 1, r = -2, col = j;
    if (!rc || (c->o->allow_nonfinite && p->m.copy)) return DSQ_OK;
    char what[224], where[96];
    if (p->d.experts) snprintf(what, sizeof what, "%s (expert %d)", p->name, e);
    else snprintf(what, sizeof what, "%s", p->name);
    if (r >= 0) snprintf(where, sizeof where, "element [%lld, %lld]", (long long)r, (long long)col);
    else if (r == -2) snprintf(where, sizeof where, "column multiplier %lld", (long long)col);
    else snprintf(where, sizeof where, "a scale");
    return dsq_fail(c->err, DSQ_E_FORMAT, "%s: %s is NaN or infinite (%s)", what, where,
                    p->m.copy ? "non-finite weights are refused; --allow-nonfinite copies them unchanged"
                              : "it cannot be quantized without turning it into a number");
}

static int process(ctx *c, plan *p, int e, const dsq_qmat *src, const void *colscale) {
    int rc0 = check_finite(c, p, e, src, colscale);
    if (rc0) return rc0;
    if (!p->d.part) return process_one(c, p, e, src, colscale);
    int64_t n = src->rows * src->cols;
    float *kv = dsq_malloc(sizeof *kv * (size_t)n), *f = dsq_malloc(sizeof *f * (size_t)n);
    int rc = kv && f ? dsq_q_dequantize(src, 0, src->rows, kv, c->err) : dsq_fail(c->err, DSQ_E_NOMEM, "%s: out of memory", p->name);
    if (!rc && colscale)
        for (int64_t row = 0; row < src->rows; row++)
            for (int64_t j = 0; j < src->cols; j++) kv[row * src->cols + j] *= dsq_lef32((const uint8_t *)colscale + 4 * j);
    for (; !rc; p = &c->p[p->next]) { /* the parts together hold every element once */
        dsq_qmat part = {DSQ_Q_F32, p->d.rows, p->d.cols, f, NULL, NULL};
        derive_part(c, p, kv, f);
        rc = process_one(c, p, e, &part, NULL);
        if (p->next < 0) break;
    }
    free(kv);
    free(f);
    return rc;
}

static int process_one(ctx *c, plan *p, int e, const dsq_qmat *src, const void *colscale) {
    int rc;
    if (p->m.copy) return dsq_mwriter_put(c->w, p->out, e, src, colscale, c->err);
    dsq_qsizes sz;
    if ((rc = dsq_q_sizes(p->d.scheme, src->rows, src->cols, &sz, c->err))) return rc;
    const uint64_t need[3] = {sz.data, sz.scale, sz.zero};
    for (int k = 0; k < 3; k++)
        if (need[k] > c->cap[k]) {
            free(c->buf[k]);
            c->buf[k] = dsq_malloc(need[k]);
            c->cap[k] = c->buf[k] ? need[k] : 0;
            if (!c->buf[k]) return dsq_fail(c->err, DSQ_E_NOMEM, "%s: out of memory", p->name);
        }
    float *cs_out = NULL;
    if (p->d.colscale) {
        if (src->cols > c->cs_cap) {
            free(c->cs_buf);
            c->cs_buf = dsq_malloc(sizeof *c->cs_buf * (size_t)src->cols);
            c->cs_cap = c->cs_buf ? src->cols : 0;
            if (!c->cs_buf) return dsq_fail(c->err, DSQ_E_NOMEM, "%s: out of memory", p->name);
        }
        cs_out = c->cs_buf;
    }
    dsq_qmat dst = {p->d.scheme, src->rows, src->cols, c->buf[0], sz.scale ? c->buf[1] : NULL,
                    sz.zero ? c->buf[2] : NULL};
    if (p->transcode) {
        dsq_err te = {0};
        rc = colscale ? DSQ_E_UNSUPPORTED : dsq_q_transcode(src, &dst, &te);
        if (rc == DSQ_OK) return dsq_mwriter_put(c->w, p->out, e, &dst, NULL, c->err);
        if (rc != DSQ_E_UNSUPPORTED) return dsq_fail(c->err, rc, "%s: %s", p->name, te.msg);
        p->rerounded = 1; /* quantized from its values below, and reported */
    }
    const dsq_cstat *st = NULL;
    char nm[200];
    stat_name(p, e, nm, sizeof nm);
    if (c->o->calib && p->m.method != DSQ_METHOD_PLAIN && !p->d.part) /* kv_b parts read other inputs */
        st = dsq_cstats_find(c->o->calib, dsq_method_is_fold(p->m.method) ? p->fold_rec : nm);
    if ((rc = dsq_quantize_matrix(c->pool, &p->m, src, colscale, st, &dst, cs_out, &c->work, nm, c->err))) return rc;
    {
        /* what is written decodes to finite numbers (absurd statistics or
         * scales beyond a type's range would not) */
        int64_t br, bc;
        int nf = dsq_q_find_nonfinite(&dst, &br, &bc, c->err);
        if (nf < 0) return nf;
        for (int64_t j = 0; !nf && cs_out && j < src->cols; j++) nf = !isfinite(cs_out[j]);
        if (nf)
            return dsq_fail(c->err, DSQ_E_FORMAT, "%s: quantized as %s, it decodes to a NaN or infinite value (row %lld): "
                            "not written", nm, dsq_q_scheme(dst.type)->name, (long long)br);
    }
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
    return dsq_mwriter_put(c->w, p->out, e, &dst, cs_out, c->err);
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

/* List the files the source was read from and start hashing them. */
static int hashes_start(src_hashes *h, const dsq_src *src) {
    memset(h, 0, sizeof *h);
    char tmp[4096];
    int cap = 1;
    while (dsq_src_part(src, cap - 1, tmp, sizeof tmp) == DSQ_OK) cap++;
    h->path = dsq_calloc((size_t)cap, sizeof *h->path);
    h->size = dsq_calloc((size_t)cap, sizeof *h->size);
    h->xxh3 = dsq_calloc((size_t)cap, sizeof *h->xxh3);
    h->ok = dsq_calloc((size_t)cap, sizeof *h->ok);
    if (!h->path || !h->size || !h->xxh3 || !h->ok) return DSQ_E_NOMEM;
    while (dsq_src_part(src, h->n, h->path[h->n], sizeof h->path[0]) == DSQ_OK) h->n++;
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
    cJSON_AddStringToObject(pv, "source_kind", dsq_src_kind(c->src));
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
    dsq_mwriter_abort(c->w);
    for (int k = 0; k < 3; k++) free(c->buf[k]);
    free(c->cs_buf);
    dsq_matrix_scratch_deinit(&c->work);
    free(c->p);
    free(c->map_plan);
    free(c->map_expert);
    free(c->slot_src);
    free(c->slot_done);
    dsq_pool_free(c->pool);
    if (c->own_src) dsq_src_close(c->src);
    memset(c, 0, sizeof *c);
}

/* Plan every tensor of the source (c->src, already open), start
 * hashing the source files, open the output and declare every tensor and
 * side file; the layout is fixed on return. */
static int job_open(ctx *c) {
    const dsq_pipe_opts *o = c->o;
    int rc;
    c->t0 = dsq_now();
    c->cfg = dsq_src_config(c->src);
    /* the output first: its format decides how some tensors are stored */
    if ((rc = dsq_mwriter_open_sharded(&c->w, o->out, o->out_format, c->cfg, o->force, o->shard_size, c->err))) return rc;
    if ((rc = plan_src(c))) return rc;
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
    for (int i = 0; i < dsq_src_n_tensors(c->src); i++)
        if (c->map_plan[i] >= 0) c->slot_src[c->p[c->map_plan[i]].slot + c->map_expert[i]] = i;
    if (hashes_start(c->hashes, c->src)) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    c->pool = dsq_pool_new(o->threads > 0 ? o->threads : dsq_default_threads());
    if (!c->pool) return dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_plan; i++) {
        plan *p = &c->p[i];
        if ((rc = choose_scheme(c, p))) return rc;
        p->d.name = p->name; /* c->p moved while planning */
        int idx = dsq_mwriter_add_tensor(c->w, &p->d, c->err);
        if (idx < 0) return idx;
        p->out = idx;
    }
    /* side files: tokenizer and generation config travel with the model */
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (size_t k = 0; k < 3; k++) {
        size_t len;
        dsq_err e2 = {0};
        const void *b = dsq_src_file(c->src, side[k], &len, &e2);
        if (!b && e2.code) return dsq_fail(c->err, e2.code, "%s", e2.msg);
        if (b && (rc = dsq_mwriter_add_file(c->w, side[k], b, len, c->err))) return rc;
    }
    return dsq_mwriter_layout(c->w, c->err);
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
        snprintf(r->name, sizeof r->name, "%s%s", p->name, p->d.part == DSQ_PART_K_B ? " (k_b)" : p->d.part == DSQ_PART_V_B ? " (v_b)" : "");
        r->role = p->d.role;
        r->scheme = p->d.scheme;
        r->fallback_from = p->fallback_from;
        r->converted_from = p->converted_from;
        r->experts = p->d.experts;
        r->params = p->d.rows * p->d.cols * (p->d.experts ? p->d.experts : 1);
        r->bytes = dsq_mwriter_slice_bytes(c->w, p->out) * (uint64_t)(p->d.experts ? p->d.experts : 1);
        r->stored = p->m.copy ? DSQ_STORED_COPIED : p->rerounded ? DSQ_STORED_REROUNDED
                  : p->transcode ? DSQ_STORED_TRANSCODED : DSQ_STORED_QUANTIZED;
        int exact = r->stored == DSQ_STORED_COPIED || r->stored == DSQ_STORED_TRANSCODED;
        r->rel_err = exact ? 0 : c->o->measure_error ? (p->sx > 0 ? sqrt(p->se / p->sx) : 0) : -1;
        r->max_abs = exact ? 0 : c->o->measure_error ? p->maxabs : -1;
        rep->role_params[r->role] += (uint64_t)r->params;
        rep->role_bytes[r->role] += r->bytes;
        rep->params += r->params;
        rep->out_tensor_bytes += r->bytes;
    }
    rep->src_bytes = c->total_bytes;
    char *meta = build_meta(c, dsq_src_config_json(c->src, NULL), rep->params, rep->out_tensor_bytes, extra_meta);
    if (!meta) rc = dsq_fail(c->err, DSQ_E_NOMEM, "out of memory");
    else {
        rc = dsq_mwriter_finish(c->w, meta, &rep->out_bytes, c->err);
        c->w = NULL;
        free(meta);
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
    if ((rc = dsq_src_open(&c.src, o->src, 0, err)) || (rc = job_open(&c))) goto out;
    /* stream, in storage order */
    for (int i = 0; i < dsq_src_n_tensors(c.src); i++) c.total_bytes += dsq_src_tensor(c.src, i)->nbytes;
    int idx;
    while ((rc = dsq_src_next(c.src, &idx, err)) == DSQ_OK) {
        c.done_bytes += dsq_src_tensor(c.src, idx)->nbytes;
        if (c.map_plan[idx] < 0) continue;
        dsq_qmat m;
        const void *colscale;
        if ((rc = dsq_src_data(c.src, &m, &colscale, err))) break;
        if ((rc = process(&c, &c.p[c.map_plan[idx]], c.map_expert[idx], &m, colscale))) break;
        report(&c, 0);
    }
    if (rc == DSQ_EOF) rc = DSQ_OK;
    if (rc) goto out;
    rc = job_finish(&c, rep, NULL);
    if (!rc) report(&c, 1);
out:
    job_free(&c);
    return rc;
}

/* ---- writing in any order (dsq calib --quant-out) ---------------------------- */
struct dsq_quantjob {
    ctx c;
    dsq_pipe_opts o;    /* copy: the caller's may not outlive the handle */
};

int dsq_quantjob_open(dsq_quantjob **out, const dsq_pipe_opts *o, dsq_src *src, dsq_err *err) {
    *out = NULL;
    dsq_quantjob *q = dsq_calloc(1, sizeof *q);
    if (!q) return dsq_fail(err, DSQ_E_NOMEM, "out of memory");
    q->o = *o;
    q->o.calib = NULL;
    q->o.measure_error = 0;
    q->o.on_progress = NULL;
    q->o.drop_mtp = 0;
    q->c.o = &q->o;
    q->c.err = err;
    q->c.src = src;
    q->c.have_calib = 1;
    int rc = job_open(&q->c);
    if (rc) {
        dsq_quantjob_abort(q);
        return rc;
    }
    *out = q;
    return DSQ_OK;
}

void dsq_quantjob_abort(dsq_quantjob *q) {
    if (!q) return;
    job_free(&q->c);
    free(q);
}

/* The plan and expert of weight `name` (upstream naming), or -1. */
static int find_slice(ctx *c, const char *name, plan **pp, int *e) {
    int i = dsq_src_find(c->src, name);
    if (i < 0 || c->map_plan[i] < 0) return -1;
    *pp = &c->p[c->map_plan[i]];
    *e = c->map_expert[i];
    return 0;
}

int dsq_quantjob_put(dsq_quantjob *q, const char *name, const dsq_qmat *m, const float *colscale, dsq_err *err) {
    ctx *c = &q->c;
    plan *p;
    int e, rc;
    c->err = err;
    if (find_slice(c, name, &p, &e)) return dsq_fail(err, DSQ_E_NOTFOUND, "%s: not a tensor of the output", name);
    /* a tensor the writer stores in parts (kv_b in GGUF) reads other inputs
     * than the whole matrix calibration quantized: dsq_quantjob_fill stores
     * its parts from the source, as dsq quant does */
    if (p->d.part) return DSQ_OK;
    if (p->m.copy || m->type != p->d.scheme || m->rows != p->d.rows || m->cols != p->d.cols || !colscale != !p->d.colscale)
        return dsq_fail(err, DSQ_E_ARG, "%s: quantized as %s, planned as %s", name, dsq_q_scheme(m->type)->name,
                        p->m.copy ? "a copy" : dsq_q_scheme(p->d.scheme)->name);
    if (c->slot_done[p->slot + e]) return dsq_fail(err, DSQ_E_ARG, "%s: written twice", name);
    if ((rc = dsq_mwriter_put(c->w, p->out, e, m, colscale, err))) return rc;
    c->slot_done[p->slot + e] = 1;
    return DSQ_OK;
}

int dsq_quantjob_fill(dsq_quantjob *q, int layer, dsq_err *err) {
    ctx *c = &q->c;
    int rc;
    c->err = err;
    for (int i = 0; i < c->n_plan; i++) {
        plan *p = &c->p[i];
        int outside = p->d.layer < 0 || p->d.is_mtp;
        if (layer >= 0 ? outside || p->d.layer != layer : !outside) continue;
        if (p->d.part == DSQ_PART_V_B) continue; /* stored with its k_b part, from one source tensor */
        for (int e = 0; e < (p->d.experts ? p->d.experts : 1); e++) {
            if (c->slot_done[p->slot + e]) continue;
            dsq_qmat m;
            const void *colscale;
            if ((rc = dsq_src_qmat(c->src, c->slot_src[p->slot + e], &m, &colscale, err))) return rc;
            if ((rc = process(c, p, e, &m, colscale))) return rc;
            c->slot_done[p->slot + e] = 1;
            for (int q = p->next; q >= 0; q = c->p[q].next) c->slot_done[c->p[q].slot + e] = 1;
        }
    }
    /* the scratch grew to the largest matrix (the embedding, the head):
     * give it back rather than hold it through the calibration */
    for (int k = 0; k < 3; k++) {
        free(c->buf[k]);
        c->buf[k] = NULL;
        c->cap[k] = 0;
    }
    free(c->cs_buf);
    c->cs_buf = NULL;
    c->cs_cap = 0;
    dsq_matrix_scratch_deinit(&c->work);
    return DSQ_OK;
}

int dsq_quantjob_finish(dsq_quantjob *q, const char *extra_meta, dsq_err *err) {
    q->c.err = err;
    int rc = job_finish(&q->c, NULL, extra_meta);
    dsq_quantjob_abort(q);
    return rc;
}
