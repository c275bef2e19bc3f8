/*
 * forward.c -- reference forward pass of DeepSeek-V3.2 (spec
 * deepseek-v32.md §4): MLA attention (non-absorbed, §4.4) with YaRN RoPE
 * (§4.3), the DSA lightning indexer and its top-k mask (§4.5, §4.6), dense
 * SwiGLU (§4.8), the grouped sigmoid MoE router and experts (§4.9), final
 * norm and lm_head (§4.10).  Optional FP8 activation simulation (§3.6).
 *
 * This is the accuracy oracle the quantized models are measured against:
 * plain f32, every operation in the order the spec writes it.
 *
 * Dimension names (the spec's symbols of §0; fields of struct dsq_fwd):
 *
 *   T    tokens of the window (buffers hold max_T; the first T rows are used)
 *   V    vocab_size                    L    num_hidden_layers
 *   D    hidden_size                   H    num_attention_heads
 *   dn   qk_nope_head_dim              dr   qk_rope_head_dim
 *   dqk  dn + dr, query/key width      dv   v_head_dim
 *   rq   q_lora_rank (query latent)    rkv  kv_lora_rank (KV latent)
 *   HI   index_n_heads                 dI   index_head_dim
 *   KI   index_topk (keys per query)   G    n_group
 *   E    n_routed_experts              ke   num_experts_per_tok
 *   F    intermediate_size (dense)     Fe   moe_intermediate_size
 *   Fs   n_shared_experts * Fe         Fmax max(F, Fs, Fe)
 *
 * HI, dI, KI are 0 without an indexer; E, ke, Fe, Fs 0 without MoE layers;
 * F 0 without dense layers.  Shapes are row-major: [T, H, dqk] is T rows
 * of H head vectors of dqk values each.
 *
 * Layout of the work:
 *   - every linear layer goes through lin(): its weight rows are fetched a
 *     tile at a time (rows_f32) into the calling worker's scratch and
 *     multiplied against all T tokens with the blocked kernel of gemm.c;
 *   - parallel loops hand out items (row tiles, heads, query-row blocks,
 *     experts) from an atomic counter to one job per worker, each with its
 *     own scratch; an item is always computed whole by one worker with the
 *     same code, which is why results do not depend on the thread count.
 */
#include "verify/forward.h"
#include "verify/gemm.h"

#include "common.h"
#include "pool.h"
#include "quant/dtype.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#define ATT_ROWS 64           /* query rows per attention block          */
#define IDX_ROWS 16           /* query rows per indexer work item        */
#define WTILE_MIN (128 * 1024) /* floats of weight tile per worker (512 KB) */
#define ACT_GROUP 128         /* activation quantization group (§3.6)    */
#define LN_EPS 1e-6f          /* indexer LayerNorm epsilon, fixed upstream */
#define DIM_MAX (1 << 24)     /* sanity bound for any single dimension   */

/* ==== model description =================================================== */

/* One decoder layer's weights: tensor ids of dsq_weights (shapes [out, in]),
 * and the small vectors, copied once into dsq_fwd.vecs. */
typedef struct fwd_layer {
    int moe;             /* MoE FFN, else dense (dsq_config_is_moe_layer) */
    int q_a;             /* [rq, D]             q_a_proj                  */
    int q_b;             /* [H * dqk, rq]       q_b_proj                  */
    int kv_a;            /* [rkv + dr, D]       kv_a_proj_with_mqa        */
    int kv_b;            /* [H * (dn + dv), rkv] kv_b_proj                */
    int o;               /* [D, H * dv]         o_proj                    */
    int iq;              /* [HI * dI, rq]       indexer wq_b              */
    int ik;              /* [dI, D]             indexer wk                */
    int iw;              /* [HI, D]             indexer weights_proj      */
    int gate, up, down;  /* dense FFN [F, D], [F, D], [D, F]; in an MoE
                            layer the shared expert, with Fs for F        */
    int router;          /* [E, D]              mlp.gate                  */
    const int *exp;      /* [E, 3] ids of each routed expert's gate [Fe, D],
                            up [Fe, D], down [D, Fe]                      */
    const float *in_norm;     /* [D]   input_layernorm                   */
    const float *post_norm;   /* [D]   post_attention_layernorm          */
    const float *q_a_norm;    /* [rq]  q_a_layernorm                     */
    const float *kv_a_norm;   /* [rkv] kv_a_layernorm                    */
    const float *k_norm_w;    /* [dI]  indexer k_norm weight             */
    const float *k_norm_b;    /* [dI]  indexer k_norm bias               */
    const float *router_bias; /* [E]   e_score_correction_bias, or NULL  */
} fwd_layer;

typedef struct fwd_par fwd_par;

/* One per pool worker: its scratch and its error slot. */
typedef struct fwd_worker {
    dsq_fwd *f;
    fwd_par *par;
    int rc;
    dsq_err err;
    float *wtile;  /* [wcap] weight rows: a tile of rows of one tensor      */
    float *pack;   /* [DSQ_GEMM_PACK] packed panel of the gemm kernel       */
    float *xa;     /* [T, max(D, dqk)] keys of one head [T, dqk]; an expert's
                      gathered input rows [n, D]                            */
    float *xd;     /* [T, max(D, dqk)] an expert's output rows [n, D]       */
    float *xb, *xc;/* [T, Fe] an expert's gate and up products              */
    float *s;      /* [ATT_ROWS, T] scores of a query block (indexer: one
                      head's scores, [IDX_ROWS, T])                         */
    float *rs;     /* [2E + G] router scratch                               */
    float *vt;     /* [dv, T] values of one head, transposed                */
    float *ib;     /* [IDX_ROWS, T] index scores                            */
    void *pairs;   /* [T] (score, position) pairs for top-k                 */
} fwd_worker;

struct dsq_fwd {
    const dsq_weights *w;
    dsq_config cfg;
    int max_T;                    /* longest window; every buffer is sized for it */
    int act_fp8;                  /* simulate FP8 activations                  */
    unsigned trace;               /* DSQ_TRACE_* bits                          */
    dsq_fwd_observe_fn observe;   /* calibration hook, or NULL */
    void *observe_arg;
    int cur_layer;                /* layer being run, for the hook */
    dsq_pool *pool;
    int n_workers;
    fwd_worker *workers; /* [n_workers] */
    int64_t wcap;        /* floats in each worker's weight tile */

    /* dimensions (the table at the top) */
    int D, V, L, H, dn, dr, dqk, dv, rq, rkv;
    int HI, dI, KI;
    int E, ke, Fe, Fs, F, Fmax;
    int n_moe;             /* MoE layers among the L                     */
    float eps;             /* rms_norm_eps                               */
    float sm_scale;        /* attention scale (dsq_fwd_softmax_scale)    */
    float idx_scale_h;     /* HI^-1/2, folded into the indexer weights   */
    float idx_scale_d;     /* dI^-1/2, likewise                          */

    /* weights */
    int embed;             /* [V, D] model.embed_tokens                  */
    int head;              /* [V, D] lm_head                             */
    const float *final_norm; /* [D] model.norm                           */
    fwd_layer *layers;     /* [L]                                        */
    int *exp_ids;          /* [n_moe, E, 3] what fwd_layer.exp points to */
    float *vecs;           /* every small vector, one block (fwd_layer)  */

    /* RoPE tables for positions 0..max_T-1 */
    float *theta;          /* [dr/2] frequencies (dsq_fwd_rope_freqs)    */
    float *cos_t, *sin_t;  /* [max_T, dr/2] cos and sin of t * theta     */

    /* window state */
    int T, next_layer, ready;

    /* activations (kmax: the widest input of any linear layer) */
    float *h;              /* [T, D] residual stream                     */
    float *x;              /* [T, D] input_layernorm output (final norm
                              output before the head)                    */
    float *x2;             /* [T, D] post_attention_layernorm output      */
    float *xq;             /* [T, kmax] FP8 round trip of a linear layer's
                              input                                      */
    float *xq2;            /* [T, D] FP8 round trip of x2 for the routed
                              experts; gather buffer of the hook after   */
    float *cq;             /* [T, rq] query latent after q_a_layernorm   */
    float *q;              /* [T, H, dqk] queries, per head [nope | rope] */
    float *kva;            /* [T, rkv + dr] kv_a output: [latent | rope key] */
    float *c;              /* [T, rkv] normalised KV latent, kv_b's input */
    float *kvb;            /* [T, H, dn + dv] kv_b output, per head
                              [key nope | value]                         */
    float *o;              /* [T, H, dv] attention output, o_proj's input */
    float *attn_out;       /* [T, D] o_proj output                       */
    float *ffn_out;        /* [T, D] dense FFN or MoE output             */
    float *g, *u;          /* [T, Fmax] gate and up products; g then
                              holds SiLU(g) * u                          */
    /* indexer */
    float *qi;             /* [T, HI, dI] queries, per head [rope | nope] */
    float *ki;             /* [T, dI] keys (a single head)               */
    float *wi;             /* [T, HI] head weights                       */
    uint8_t *mask;         /* [T, T] 1: query t attends key s            */
    int mask_on;           /* the mask applies to this layer (T > KI)    */
    int32_t *topk;         /* [T, KI] selections, sorted, -1 padded      */
    int topk_on;           /* topk is kept (DSQ_TRACE_TOPK, max_T > KI)  */
    /* MoE */
    float *z;              /* [T, E] router logits                       */
    float *rweights;       /* [T, ke] combine weights                    */
    int32_t *rexperts;     /* [T, ke] chosen experts                     */
    int32_t *ecount;       /* [E] (token, slot) pairs routed to each expert */
    int32_t *eoff;         /* [E] each expert's first entry in elist     */
    int32_t *elist;        /* [T * ke] pairs t * ke + slot, by expert    */
    int32_t *eorder;       /* [E] experts with tokens, most tokens first */
    float *eo;             /* [T, ke, D] each chosen expert's output     */
    float *sh_out;         /* [T, D] shared expert output                */
    float *eact;           /* [T * ke, Fe] expert SwiGLU products in
                              elist order, kept for the hook only        */
};

/* ==== small utilities ===================================================== */

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* 64-byte aligned f32 buffer of a*b elements, or NULL (also on overflow). */
static float *falloc2(int64_t a, int64_t b) {
    uint64_t n;
    if (a < 0 || b < 0 || dsq_mul_ovf((uint64_t)a, (uint64_t)b, &n) ||
        dsq_mul_ovf(n, sizeof(float), &n) || n > (uint64_t)SIZE_MAX / 2)
        return NULL;
    return dsq_aalloc((size_t)n ? (size_t)n : 1);
}

/* SiLU(z) = z * sigmoid(z), the gate nonlinearity of every SwiGLU (§4.8). */
static float silu(float v) { return v / (1.0f + expf(-v)); }

/* ==== building blocks (public for tests) ================================== */

void dsq_fwd_rope_freqs(const dsq_config *cfg, float *theta) {
    int d = cfg->qk_rope_head_dim;
    float base = (float)cfg->rope_theta;
    /* upstream: 1 / base ** (arange(0, d, 2, float32) / d), all fp32 */
    for (int i = 0; i < d / 2; i++) theta[i] = 1.0f / powf(base, (float)(2 * i) / (float)d);
    if (!cfg->has_yarn || !(cfg->yarn_factor > 1.0)) return;
    /* YaRN (§4.3): the correction range is computed on the scale of the full
     * width d, the ramp is indexed by the frequency index; that mismatch is
     * how the reference code defines it. */
    double L0 = cfg->yarn_original_max_pos, lb = log(cfg->rope_theta);
    double cf = d * log(L0 / (cfg->yarn_beta_fast * 2 * M_PI)) / (2 * lb);
    double cs = d * log(L0 / (cfg->yarn_beta_slow * 2 * M_PI)) / (2 * lb);
    double lo = floor(cf), hi = ceil(cs);
    if (lo < 0) lo = 0;
    if (hi > d - 1) hi = d - 1;
    float flo = (float)lo, fhi = (float)hi, fac = (float)cfg->yarn_factor;
    if (flo == fhi) fhi += 0.001f;
    for (int i = 0; i < d / 2; i++) {
        float ramp = ((float)i - flo) / (fhi - flo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float smooth = 1.0f - ramp;
        theta[i] = theta[i] / fac * (1.0f - smooth) + theta[i] * smooth;
    }
}

double dsq_fwd_softmax_scale(const dsq_config *cfg) {
    double s = 1.0 / sqrt((double)(cfg->qk_nope_head_dim + cfg->qk_rope_head_dim));
    if (cfg->has_yarn && cfg->yarn_factor > 1.0 && cfg->yarn_mscale_all_dim > 0) {
        double m = 0.1 * cfg->yarn_mscale_all_dim * log(cfg->yarn_factor) + 1.0;
        s *= m * m;
    }
    return s;
}

void dsq_fwd_rope(float *x, int d, const float *cos_t, const float *sin_t, int interleaved) {
    int half = d / 2;
    for (int i = 0; i < half; i++) {
        int ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
        float a = x[ia], b = x[ib], c = cos_t[i], s = sin_t[i];
        x[ia] = a * c - b * s;
        x[ib] = a * s + b * c;
    }
}

void dsq_fwd_rmsnorm(const float *x, const float *w, int n, float eps, float *y) {
    /* the mean square is summed in double: n reaches 18432 in the dense
     * FFN of the large model, where an f32 running sum loses digits */
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

void dsq_fwd_layernorm(const float *x, const float *w, const float *b, int n, float eps,
                       float *y) {
    /* two passes (mean, then biased variance), as torch's layer_norm */
    double s = 0, v = 0;
    for (int i = 0; i < n; i++) s += x[i];
    float mu = (float)(s / n);
    for (int i = 0; i < n; i++) v += (double)(x[i] - mu) * (x[i] - mu);
    float r = 1.0f / sqrtf((float)(v / n) + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mu) * r * w[i] + b[i];
}

void dsq_fwd_act_fp8(const float *x, float *y, int64_t n, int group) {
    for (int64_t g0 = 0; g0 < n; g0 += group) {
        int64_t g1 = g0 + group < n ? g0 + group : n;
        float amax = 0;
        for (int64_t i = g0; i < g1; i++) {
            float a = fabsf(x[i]);
            if (a > amax) amax = a;
        }
        if (amax < 1e-4f) amax = 1e-4f; /* floor: no zero or denormal scales */
        /* upstream multiplies by fp32(1/448), then rounds the scale up to a
         * power of two, so |x / s| <= 448 always */
        float s = dsq_pow2_ceil(amax * (1.0f / 448.0f));
        for (int64_t i = g0; i < g1; i++) {
            float v = x[i] / s; /* exact: s is a power of two */
            if (v > 448.0f) v = 448.0f;
            if (v < -448.0f) v = -448.0f;
            y[i] = dsq_e4m3_to_f32(dsq_f32_to_e4m3(v)) * s;
        }
    }
}

/* Butterfly of spec §4.5: log2(n) passes of (a + b, a - b) over pairs h
 * apart give the Sylvester-ordered matrix (-1)^popcount(i & j); the final
 * 1/sqrt(n) makes it orthonormal, so scores are unchanged in exact
 * arithmetic and only the FP8 rounding sees the rotation. */
void dsq_fwd_hadamard(float *v, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int a = 0; a < n; a += 2 * h)
            for (int i = a; i < a + h; i++) {
                float p = v[i], q = v[i + h];
                v[i] = p + q;
                v[i + h] = p - q;
            }
    float s = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) v[i] *= s;
}

/* Index of the best of a[0..n) not yet in taken[0..nt): largest value, ties
 * toward the smaller index; NaN never wins against a number. */
static int argmax_skip(const float *a, int n, const int32_t *taken, int nt) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        int skip = 0;
        for (int j = 0; j < nt; j++) skip |= taken[j] == i;
        if (skip) continue;
        if (best < 0 || a[i] > a[best] || (isnan(a[best]) && !isnan(a[i]))) best = i;
    }
    return best;
}

void dsq_fwd_route(const dsq_config *cfg, const float *z, const float *bias, int32_t *experts,
                   float *weights, float *scratch) {
    int E = cfg->n_routed_experts, G = cfg->n_group > 0 ? cfg->n_group : 1;
    int gk = cfg->topk_group, ke = cfg->n_experts_per_tok, per = E / G;
    float *sig = scratch, *b = scratch + E, *gs = scratch + 2 * E;
    for (int e = 0; e < E; e++) {
        sig[e] = 1.0f / (1.0f + expf(-z[e]));
        b[e] = sig[e] + (bias ? bias[e] : 0.0f); /* for selection only */
    }
    /* With one group, or all groups kept, group-limited routing selects
     * nothing away and is skipped. */
    if (G > 1 && gk < G) {
        /* group score: sum of the two best biased scores in the group
         * (a one-expert group scores its only expert) */
        for (int g = 0; g < G; g++) {
            const float *bg = b + g * per;
            int32_t t1 = argmax_skip(bg, per, NULL, 0);
            int32_t t2 = per > 1 ? argmax_skip(bg, per, &t1, 1) : -1;
            gs[g] = bg[t1] + (t2 >= 0 ? bg[t2] : 0.0f);
        }
        int32_t keep[64], nk = 0; /* gk <= 64 checked in dsq_fwd_new */
        while (nk < gk) {
            keep[nk] = argmax_skip(gs, G, keep, nk);
            nk++;
        }
        /* -inf, not 0: biased scores can be negative, and a 0 would let an
         * expert of a discarded group win (spec §7 pitfall 27) */
        for (int g = 0; g < G; g++) {
            int kept = 0;
            for (int j = 0; j < nk; j++) kept |= keep[j] == g;
            if (!kept)
                for (int e = g * per; e < (g + 1) * per; e++) b[e] = -INFINITY;
        }
    }
    /* experts come out by descending biased score; their weights use the
     * unbiased sigmoid (the bias only steers selection) */
    float sum = 0;
    for (int k = 0; k < ke; k++) {
        experts[k] = argmax_skip(b, E, experts, k);
        sum += sig[experts[k]];
    }
    float alpha = (float)cfg->routed_scaling_factor;
    for (int k = 0; k < ke; k++)
        weights[k] = (cfg->norm_topk_prob ? sig[experts[k]] / sum : sig[experts[k]]) * alpha;
}

/* ==== parallel loops ====================================================== */

/* A parallel loop hands out items from an atomic counter instead of fixed
 * ranges: workers that finish early (or were descheduled less) take more
 * items, and since an item's result does not depend on which worker ran it,
 * the balancing never shows in the output. */
typedef int (*item_fn)(fwd_worker *w, int item, void *ctx);

struct fwd_par {
    item_fn fn;
    void *ctx;
    int n;
    atomic_int next, failed;
};

static void par_job(void *arg) {
    fwd_worker *w = arg;
    fwd_par *p = w->par;
    while (!atomic_load(&p->failed)) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) break;
        int rc = p->fn(w, i, p->ctx);
        if (rc < 0) {
            w->rc = rc;
            atomic_store(&p->failed, 1);
            break;
        }
    }
}

/* Run fn(worker, i, ctx) for i in [0, n) over the pool; the first failing
 * worker's error is returned. */
static int par_run(dsq_fwd *f, int n, item_fn fn, void *ctx, dsq_err *err) {
    if (n <= 0) return DSQ_OK;
    fwd_par p;
    p.fn = fn;
    p.ctx = ctx;
    p.n = n;
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    int nw = imin(f->n_workers, n);
    for (int i = 0; i < nw; i++) {
        f->workers[i].par = &p;
        f->workers[i].rc = 0;
    }
    dsq_pool_for(f->pool, nw, par_job, f->workers, sizeof(fwd_worker));
    for (int i = 0; i < nw; i++)
        if (f->workers[i].rc < 0) {
            if (err) *err = f->workers[i].err;
            return f->workers[i].rc;
        }
    return DSQ_OK;
}

/* ==== linear layers ======================================================= */

/* Rows per weight tile for an input width K: as many as fit the scratch,
 * but no more than keeps every worker busy; a multiple of 48, which the
 * kernel's 16-row panels and 6-row groups both divide. */
#define TILE_UNIT 48
static int tile_rows(const dsq_fwd *f, int N, int K, int parallel) {
    int64_t nb = f->wcap / (K > 0 ? K : 1);
    nb -= nb % TILE_UNIT;
    if (nb > DSQ_GEMM_CHUNK) nb = DSQ_GEMM_CHUNK; /* one transposed block per tile */
    if (parallel) {
        int64_t bal = ((int64_t)N + 4 * f->n_workers - 1) / (4 * f->n_workers);
        bal = (bal + TILE_UNIT - 1) / TILE_UNIT * TILE_UNIT;
        if (bal < nb) nb = bal;
    }
    if (nb < TILE_UNIT) nb = TILE_UNIT;
    return (int)nb;
}

/* Y[n x N] = X[n x K] * W[rows r0..r0+N)^T, one worker, tile by tile. */
static int lin_rows(fwd_worker *w, int id, const float *X, int n, int K, float *Y, int ldy,
                    int N0, int N1, int nb) {
    dsq_fwd *f = w->f;
    for (int r0 = N0; r0 < N1; r0 += nb) {
        int r1 = imin(N1, r0 + nb);
        int rc = f->w->rows_f32(f->w->ctx, id, r0, r1, w->wtile, &w->err);
        if (rc < 0) return rc;
        dsq_gemm_nt(n, r1 - r0, K, X, K, w->wtile, K, Y + r0, ldy, 0, w->pack);
    }
    return DSQ_OK;
}

typedef struct {
    int id, n, K, N, nb;
    const float *X;
    float *Y;
} lin_ctx;

static int lin_item(fwd_worker *w, int item, void *vc) {
    lin_ctx *c = vc;
    int r0 = item * c->nb;
    return lin_rows(w, c->id, c->X, c->n, c->K, c->Y, c->N, r0, imin(c->N, r0 + c->nb), c->nb);
}

/* Quantize each row of X [n x K] in 128-groups into f->xq when simulating
 * FP8 activations; returns the matrix the product should read. */
static const float *act_input(dsq_fwd *f, const float *X, int n, int K, float *buf) {
    if (!f->act_fp8) return X;
    for (int t = 0; t < n; t++)
        dsq_fwd_act_fp8(X + (int64_t)t * K, buf + (int64_t)t * K, K, ACT_GROUP);
    return buf;
}

/* Y [n x N] = X [n x K] * W^T over all workers.  fp8: the weight is an FP8
 * linear of the upstream model, whose input is quantized (§3.6). */
static int lin(dsq_fwd *f, int id, const float *X, int n, int K, float *Y, int N, int fp8,
               dsq_err *err) {
    lin_ctx c;
    c.id = id;
    c.n = n;
    c.K = K;
    c.N = N;
    c.X = fp8 ? act_input(f, X, n, K, f->xq) : X;
    c.Y = Y;
    c.nb = tile_rows(f, N, K, 1);
    return par_run(f, (N + c.nb - 1) / c.nb, lin_item, &c, err);
}

/* Report the input of a linear layer to the calibration hook. */
static void observe(dsq_fwd *f, dsq_role role, int expert, const float *x, int n, int cols) {
    if (f->observe && n > 0) f->observe(f->observe_arg, f->cur_layer, role, expert, x, n, cols);
}

/* ==== attention =========================================================== */

/* Attention of head h for every query (§4.4), ATT_ROWS queries at a time:
 * scores of the block against the keys it can see (0 .. last row of the
 * block), softmax over the keys the mask keeps, then P * V.  Entries of P
 * that are masked or in the future are exact zeros, so they add nothing to
 * the sums and the block shape does not change the result. */
static int att_head(fwd_worker *w, int h, void *vc) {
    dsq_fwd *f = w->f;
    (void)vc;
    int T = f->T, dn = f->dn, dr = f->dr, dqk = f->dqk, dv = f->dv;
    int64_t ldq = (int64_t)f->H * dqk, ldkv = (int64_t)f->H * (dn + dv), lda = f->rkv + dr;
    int64_t ldo = (int64_t)f->H * dv;
    float *Kh = w->xa, *Vt = w->vt, *S = w->s;
    /* keys of head h: [k_nope | k_pe] in the order of the query halves */
    for (int s = 0; s < T; s++) {
        memcpy(Kh + (int64_t)s * dqk, f->kvb + s * ldkv + (int64_t)h * (dn + dv),
               (size_t)dn * sizeof(float));
        memcpy(Kh + (int64_t)s * dqk + dn, f->kva + s * lda + f->rkv, (size_t)dr * sizeof(float));
    }
    for (int j = 0; j < dv; j++)
        for (int s = 0; s < T; s++)
            Vt[(int64_t)j * T + s] = f->kvb[s * ldkv + (int64_t)h * (dn + dv) + dn + j];
    for (int t0 = 0; t0 < T; t0 += ATT_ROWS) {
        int rows = imin(ATT_ROWS, T - t0), nk = t0 + rows; /* keys visible to the block */
        dsq_gemm_nt(rows, nk, dqk, f->q + t0 * ldq + (int64_t)h * dqk, ldq, Kh, dqk, S, T, 0,
                    w->pack);
        for (int r = 0; r < rows; r++) {
            int t = t0 + r;
            float *srow = S + (int64_t)r * T;
            const uint8_t *m = f->mask_on ? f->mask + (int64_t)t * T : NULL;
            float mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++)
                if (!m || m[s]) {
                    srow[s] *= f->sm_scale;
                    if (srow[s] > mx) mx = srow[s];
                }
            for (int s = 0; s <= t; s++) {
                if (!m || m[s]) {
                    srow[s] = expf(srow[s] - mx);
                    sum += srow[s];
                } else {
                    srow[s] = 0;
                }
            }
            for (int s = 0; s <= t; s++) srow[s] /= sum;
            for (int s = t + 1; s < nk; s++) srow[s] = 0; /* causal */
        }
        dsq_gemm_nt(rows, dv, nk, S, T, Vt, T, f->o + t0 * ldo + (int64_t)h * dv, ldo, 0, w->pack);
    }
    return DSQ_OK;
}

/* ---- DSA lightning indexer ----------------------------------------------- */

typedef struct {
    float v;
    int32_t i;
} sc_pair;

/* Strict total order: larger score first, then smaller position; NaN scores
 * were mapped to -inf before. */
static int better(sc_pair a, sc_pair b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }

static int pair_cmp(const void *pa, const void *pb) {
    sc_pair a = *(const sc_pair *)pa, b = *(const sc_pair *)pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Reorder a[0..n) so that a[0..k) are the k best (in any order). */
static void select_best(sc_pair *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        /* median of three as pivot, moved to hi */
        int mid = lo + (hi - lo) / 2;
        if (better(a[mid], a[lo])) { sc_pair t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (better(a[hi], a[lo])) { sc_pair t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (better(a[mid], a[hi])) { sc_pair t = a[mid]; a[mid] = a[hi]; a[hi] = t; }
        sc_pair piv = a[hi];
        int st = lo;
        for (int i = lo; i < hi; i++)
            if (better(a[i], piv)) { sc_pair t = a[i]; a[i] = a[st]; a[st] = t; st++; }
        { sc_pair t = a[st]; a[st] = a[hi]; a[hi] = t; }
        if (st == k - 1 || st == k) return;
        if (st < k) lo = st + 1;
        else hi = st - 1;
    }
}

/* Index scores of IDX_ROWS queries against their visible keys, then the
 * selection (§4.6): k_t = min(index_topk, t + 1) keys with the largest
 * score, ties toward the smaller position, always within 0..t (the causal
 * mask is part of the definition, so no second pass is needed). */
static int idx_rows(fwd_worker *w, int item, void *vc) {
    dsq_fwd *f = w->f;
    (void)vc;
    int T = f->T, HI = f->HI, dI = f->dI, t0 = item * IDX_ROWS;
    int rows = imin(IDX_ROWS, T - t0), nk = t0 + rows;
    int64_t ldq = (int64_t)HI * dI;
    float *I = w->ib, *Sj = w->s;
    /* I[t,s] = sum_j w'[t,j] * ReLU(qI[t,j] . kI[s]), heads in order */
    for (int j = 0; j < HI; j++) {
        dsq_gemm_nt(rows, nk, dI, f->qi + t0 * ldq + (int64_t)j * dI, ldq, f->ki, dI, Sj, T, 0,
                    w->pack);
        for (int r = 0; r < rows; r++) {
            int t = t0 + r;
            float wt = f->wi[(int64_t)t * HI + j];
            float *ir = I + (int64_t)r * T;
            const float *sr = Sj + (int64_t)r * T;
            for (int s = 0; s <= t; s++) {
                float v = sr[s] > 0 ? sr[s] : 0.0f;
                ir[s] = j == 0 ? wt * v : ir[s] + wt * v;
            }
        }
    }
    sc_pair *pr = w->pairs;
    for (int r = 0; r < rows; r++) {
        int t = t0 + r, k = imin(f->KI, t + 1);
        const float *ir = I + (int64_t)r * T;
        uint8_t *m = f->mask + (int64_t)t * T;
        int32_t *tk = f->topk_on ? f->topk + (int64_t)t * f->KI : NULL;
        memset(m, 0, (size_t)T);
        if (k == t + 1 && !tk) {
            memset(m, 1, (size_t)(t + 1)); /* every visible key */
            continue;
        }
        for (int s = 0; s <= t; s++) {
            pr[s].v = isnan(ir[s]) ? -INFINITY : ir[s];
            pr[s].i = s;
        }
        if (k < t + 1) select_best(pr, t + 1, k);
        for (int i = 0; i < k; i++) m[pr[i].i] = 1;
        if (tk) {
            qsort(pr, (size_t)k, sizeof *pr, pair_cmp);
            for (int i = 0; i < f->KI; i++) tk[i] = i < k ? pr[i].i : -1;
        }
    }
    return DSQ_OK;
}

/* Scores every visible key of every query and fills f->mask (§4.5, §4.6). */
static int indexer(dsq_fwd *f, const fwd_layer *L, dsq_err *err) {
    int rc, T = f->T, HI = f->HI, dI = f->dI, dr = f->dr, half = dr / 2;
    int il = f->cfg.indexer_rope_interleave;
    DSQ_TRY(lin(f, L->iq, f->cq, T, f->rq, f->qi, HI * dI, 1, err));
    DSQ_TRY(lin(f, L->ik, f->x, T, f->D, f->ki, dI, 1, err));
    DSQ_TRY(lin(f, L->iw, f->x, T, f->D, f->wi, HI, 0, err));
    for (int t = 0; t < T; t++) {
        const float *ct = f->cos_t + (int64_t)t * half, *st = f->sin_t + (int64_t)t * half;
        float *kt = f->ki + (int64_t)t * dI;
        dsq_fwd_layernorm(kt, L->k_norm_w, L->k_norm_b, dI, LN_EPS, kt);
        dsq_fwd_rope(kt, dr, ct, st, il); /* rope part first in the indexer */
        for (int j = 0; j < HI; j++)
            dsq_fwd_rope(f->qi + ((int64_t)t * HI + j) * dI, dr, ct, st, il);
        /* both constant factors are folded into the head weights, where the
         * official code applies them (H_I^-1/2 and d_I^-1/2) */
        for (int j = 0; j < HI; j++) f->wi[(int64_t)t * HI + j] *= f->idx_scale_h * f->idx_scale_d;
        if (f->act_fp8) {
            /* rotation spreads outliers before the per-vector FP8 cast */
            dsq_fwd_hadamard(kt, dI);
            dsq_fwd_act_fp8(kt, kt, dI, dI);
            for (int j = 0; j < HI; j++) {
                float *qv = f->qi + ((int64_t)t * HI + j) * dI;
                dsq_fwd_hadamard(qv, dI);
                dsq_fwd_act_fp8(qv, qv, dI, dI);
            }
        }
    }
    DSQ_TRY(par_run(f, (T + IDX_ROWS - 1) / IDX_ROWS, idx_rows, NULL, err));
    return DSQ_OK;
fail:
    return rc;
}

static int attention(dsq_fwd *f, const fwd_layer *L, dsq_err *err) {
    int rc, T = f->T, half = f->dr / 2, il = f->cfg.rope_interleave;
    int64_t lda = f->rkv + f->dr, ldq = (int64_t)f->H * f->dqk;
    /* query path: cq -> q_a_layernorm (kept in cq: the indexer reads it) -> q_b */
    observe(f, DSQ_R_ATTN_Q_A, -1, f->x, T, f->D);
    DSQ_TRY(lin(f, L->q_a, f->x, T, f->D, f->cq, f->rq, 1, err));
    for (int t = 0; t < T; t++)
        dsq_fwd_rmsnorm(f->cq + (int64_t)t * f->rq, L->q_a_norm, f->rq, f->eps,
                        f->cq + (int64_t)t * f->rq);
    observe(f, DSQ_R_ATTN_Q_B, -1, f->cq, T, f->rq);
    DSQ_TRY(lin(f, L->q_b, f->cq, T, f->rq, f->q, f->H * f->dqk, 1, err));
    /* key/value path: kva = [latent | k_pe]; only the latent is normalised */
    DSQ_TRY(lin(f, L->kv_a, f->x, T, f->D, f->kva, (int)lda, 1, err));
    for (int t = 0; t < T; t++) {
        const float *ct = f->cos_t + (int64_t)t * half, *st = f->sin_t + (int64_t)t * half;
        dsq_fwd_rmsnorm(f->kva + t * lda, L->kv_a_norm, f->rkv, f->eps, f->c + (int64_t)t * f->rkv);
        dsq_fwd_rope(f->kva + t * lda + f->rkv, f->dr, ct, st, il);
        for (int h = 0; h < f->H; h++)
            dsq_fwd_rope(f->q + t * ldq + (int64_t)h * f->dqk + f->dn, f->dr, ct, st, il);
    }
    observe(f, DSQ_R_ATTN_KV_B, -1, f->c, T, f->rkv);
    DSQ_TRY(lin(f, L->kv_b, f->c, T, f->rkv, f->kvb, f->H * (f->dn + f->dv), 1, err));
    /* With T <= index_topk every visible key is selected: plain causal
     * attention, so the indexer is not run at all. */
    f->mask_on = f->cfg.has_indexer && T > f->KI;
    if (f->mask_on) DSQ_TRY(indexer(f, L, err));
    DSQ_TRY(par_run(f, f->H, att_head, NULL, err));
    observe(f, DSQ_R_ATTN_O, -1, f->o, T, f->H * f->dv);
    DSQ_TRY(lin(f, L->o, f->o, T, f->H * f->dv, f->attn_out, f->D, 1, err));
    return DSQ_OK;
fail:
    return rc;
}

/* ==== feed-forward ======================================================== */

/* g = SiLU(g) * u elementwise. */
static void swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
}

/* SwiGLU MLP over n rows of width Fw: y = down(SiLU(gate x) * up x).
 * role: DSQ_R_DENSE_GATE or DSQ_R_SHEXP_GATE for the calibration hook,
 * DSQ_R_UNKNOWN when not observed. */
static int mlp(dsq_fwd *f, int gate, int up, int down, int Fw, const float *x, int n, float *y,
               dsq_role role, dsq_err *err) {
    int rc;
    if (role != DSQ_R_UNKNOWN) observe(f, role, -1, x, n, f->D);
    DSQ_TRY(lin(f, gate, x, n, f->D, f->g, Fw, 1, err));
    DSQ_TRY(lin(f, up, x, n, f->D, f->u, Fw, 1, err));
    swiglu(f->g, f->u, (int64_t)n * Fw);
    if (role != DSQ_R_UNKNOWN)
        observe(f, role == DSQ_R_DENSE_GATE ? DSQ_R_DENSE_DOWN : DSQ_R_SHEXP_DOWN, -1, f->g, n, Fw);
    DSQ_TRY(lin(f, down, f->g, n, Fw, y, f->D, 1, err));
    return DSQ_OK;
fail:
    return rc;
}

/* Routed experts run only on their tokens: the (token, slot) pairs are
 * grouped per expert, each expert gathers its rows, runs its SwiGLU and
 * writes each row's output to that pair's slot of f->eo.  The weighted sum
 * happens afterwards per token in a fixed order, so no two workers ever add
 * into the same output. */
typedef struct {
    const fwd_layer *L;
    const float *X; /* x2, or its FP8 round trip */
} moe_ctx;

/* One routed expert on the tokens routed to it (gathered rows). */
static int expert_item(fwd_worker *w, int item, void *vc) {
    moe_ctx *m = vc;
    dsq_fwd *f = w->f;
    int rc, e = f->eorder[item], n = f->ecount[e], D = f->D, Fe = f->Fe;
    const int32_t *ent = f->elist + f->eoff[e];
    for (int i = 0; i < n; i++)
        memcpy(w->xa + (int64_t)i * D, m->X + (int64_t)(ent[i] / f->ke) * D,
               (size_t)D * sizeof(float));
    int nb_in = tile_rows(f, Fe, D, 0), nb_out = tile_rows(f, D, Fe, 0);
    if ((rc = lin_rows(w, m->L->exp[3 * e], w->xa, n, D, w->xb, Fe, 0, Fe, nb_in)) < 0) return rc;
    if ((rc = lin_rows(w, m->L->exp[3 * e + 1], w->xa, n, D, w->xc, Fe, 0, Fe, nb_in)) < 0)
        return rc;
    swiglu(w->xb, w->xc, (int64_t)n * Fe);
    if (f->eact) /* kept for the calibration hook; each expert owns its rows */
        memcpy(f->eact + (int64_t)f->eoff[e] * Fe, w->xb, (size_t)n * (size_t)Fe * sizeof(float));
    if (f->act_fp8)
        for (int i = 0; i < n; i++)
            dsq_fwd_act_fp8(w->xb + (int64_t)i * Fe, w->xb + (int64_t)i * Fe, Fe, ACT_GROUP);
    if ((rc = lin_rows(w, m->L->exp[3 * e + 2], w->xb, n, Fe, w->xd, D, 0, D, nb_out)) < 0)
        return rc;
    for (int i = 0; i < n; i++)
        memcpy(f->eo + (int64_t)ent[i] * D, w->xd + (int64_t)i * D, (size_t)D * sizeof(float));
    return DSQ_OK;
}

#define TOK_ROWS 16 /* tokens per item of the per-token loops */

static int route_item(fwd_worker *w, int item, void *vc) {
    const fwd_layer *L = vc;
    dsq_fwd *f = w->f;
    int E = f->E, ke = f->ke;
    for (int t = item * TOK_ROWS; t < imin(f->T, (item + 1) * TOK_ROWS); t++)
        dsq_fwd_route(&f->cfg, f->z + (int64_t)t * E, L->router_bias, f->rexperts + (int64_t)t * ke,
                      f->rweights + (int64_t)t * ke, w->rs);
    return DSQ_OK;
}

/* y[t] = sum over the chosen experts in increasing id order of w * out,
 * then + shared (the upstream accumulation order). */
static int combine_item(fwd_worker *w, int item, void *vc) {
    dsq_fwd *f = w->f;
    int D = f->D, ke = f->ke;
    (void)vc;
    for (int t = item * TOK_ROWS; t < imin(f->T, (item + 1) * TOK_ROWS); t++) {
        float *y = f->ffn_out + (int64_t)t * D;
        const int32_t *ex = f->rexperts + (int64_t)t * ke;
        memset(y, 0, (size_t)D * sizeof(float));
        int done[64] = {0}; /* ke <= 64 checked at open */
        for (int k = 0; k < ke; k++) {
            int sl = -1;
            for (int j = 0; j < ke; j++)
                if (!done[j] && (sl < 0 || ex[j] < ex[sl])) sl = j;
            done[sl] = 1;
            float wt = f->rweights[(int64_t)t * ke + sl];
            const float *src = f->eo + ((int64_t)t * ke + sl) * D;
            for (int i = 0; i < D; i++) y[i] += wt * src[i];
        }
        if (f->Fs > 0)
            for (int i = 0; i < D; i++) y[i] += f->sh_out[(int64_t)t * D + i];
    }
    return DSQ_OK;
}

static int moe(dsq_fwd *f, const fwd_layer *L, dsq_err *err) {
    int rc, T = f->T, E = f->E, ke = f->ke, D = f->D, n_tok = (T + TOK_ROWS - 1) / TOK_ROWS;
    /* router in f32 on the unquantized input (it is not an FP8 linear) */
    DSQ_TRY(lin(f, L->router, f->x2, T, D, f->z, E, 0, err));
    DSQ_TRY(par_run(f, n_tok, route_item, (void *)L, err));
    /* group the (token, slot) pairs by expert, tokens in increasing order */
    memset(f->ecount, 0, (size_t)E * sizeof(int32_t));
    for (int64_t i = 0; i < (int64_t)T * ke; i++) f->ecount[f->rexperts[i]]++;
    int n_used = 0;
    for (int e = 0, o = 0; e < E; e++) {
        f->eoff[e] = o;
        o += f->ecount[e];
        if (f->ecount[e]) f->eorder[n_used++] = e;
    }
    for (int e = 0; e < E; e++) f->ecount[e] = 0;
    for (int64_t i = 0; i < (int64_t)T * ke; i++) {
        int e = f->rexperts[i];
        f->elist[f->eoff[e] + f->ecount[e]++] = (int32_t)i;
    }
    /* largest experts first, so the last items handed out are the short ones */
    for (int i = 1; i < n_used; i++)
        for (int j = i; j > 0 && f->ecount[f->eorder[j]] > f->ecount[f->eorder[j - 1]]; j--) {
            int32_t t = f->eorder[j]; f->eorder[j] = f->eorder[j - 1]; f->eorder[j - 1] = t;
        }
    moe_ctx m;
    m.L = L;
    m.X = act_input(f, f->x2, T, D, f->xq2);
    DSQ_TRY(par_run(f, n_used, expert_item, &m, err));
    if (f->observe) {
        /* per expert: its tokens' inputs (gathered in token order) and products */
        float *xs = f->xq2; /* free again: the experts are done */
        for (int e = 0; e < E; e++) {
            int n = f->ecount[e];
            if (!n) continue;
            const int32_t *ent = f->elist + f->eoff[e];
            for (int i = 0; i < n; i++)
                memcpy(xs + (int64_t)i * D, f->x2 + (int64_t)(ent[i] / ke) * D, (size_t)D * sizeof(float));
            observe(f, DSQ_R_EXP_GATE, e, xs, n, D);
            observe(f, DSQ_R_EXP_DOWN, e, f->eact + (int64_t)f->eoff[e] * f->Fe, n, f->Fe);
        }
    }
    if (f->Fs > 0) DSQ_TRY(mlp(f, L->gate, L->up, L->down, f->Fs, f->x2, T, f->sh_out, DSQ_R_SHEXP_GATE, err));
    DSQ_TRY(par_run(f, n_tok, combine_item, NULL, err));
    return DSQ_OK;
fail:
    return rc;
}

/* ==== layers ============================================================== */

/* One decoder layer (§4.1): h += Attn(RMSNorm(h)); h += FFN(RMSNorm(h)).
 * The residual stays in f32 (the official code stores it in BF16). */
static int run_layer(dsq_fwd *f, int l, dsq_err *err) {
    const fwd_layer *L = &f->layers[l];
    f->cur_layer = l;
    int rc, T = f->T, D = f->D;
    int64_t n = (int64_t)T * D;
    for (int t = 0; t < T; t++)
        dsq_fwd_rmsnorm(f->h + (int64_t)t * D, L->in_norm, D, f->eps, f->x + (int64_t)t * D);
    DSQ_TRY(attention(f, L, err));
    for (int64_t i = 0; i < n; i++) f->h[i] += f->attn_out[i];
    for (int t = 0; t < T; t++)
        dsq_fwd_rmsnorm(f->h + (int64_t)t * D, L->post_norm, D, f->eps, f->x2 + (int64_t)t * D);
    if (L->moe) DSQ_TRY(moe(f, L, err));
    else DSQ_TRY(mlp(f, L->gate, L->up, L->down, f->F, f->x2, T, f->ffn_out, DSQ_R_DENSE_GATE, err));
    for (int64_t i = 0; i < n; i++) f->h[i] += f->ffn_out[i];
    return DSQ_OK;
fail:
    return rc;
}

int dsq_fwd_begin(dsq_fwd *f, const int32_t *tok, int T, dsq_err *err) {
    f->ready = 0;
    if (T < 1 || T > f->max_T)
        return dsq_fail(err, DSQ_E_ARG, "forward: %d tokens, window holds 1..%d", T, f->max_T);
    for (int t = 0; t < T; t++) {
        if (tok[t] < 0 || tok[t] >= f->V)
            return dsq_fail(err, DSQ_E_ARG, "forward: token %d at position %d outside vocab 0..%d",
                            tok[t], t, f->V - 1);
        int rc = f->w->rows_f32(f->w->ctx, f->embed, tok[t], tok[t] + 1, f->h + (int64_t)t * f->D,
                                err);
        if (rc < 0) return rc;
    }
    f->T = T;
    f->next_layer = 0;
    f->ready = 1;
    return DSQ_OK;
}

int dsq_fwd_begin_at(dsq_fwd *f, int layer, const float *resid, int T, dsq_err *err) {
    f->ready = 0;
    if (T < 1 || T > f->max_T)
        return dsq_fail(err, DSQ_E_ARG, "forward: %d tokens, window holds 1..%d", T, f->max_T);
    if (layer < 0 || layer > f->L)
        return dsq_fail(err, DSQ_E_ARG, "forward: no layer %d", layer);
    memcpy(f->h, resid, (size_t)T * (size_t)f->D * sizeof(float));
    f->T = T;
    f->next_layer = layer;
    f->ready = 1;
    return DSQ_OK;
}

int dsq_fwd_layer(dsq_fwd *f, dsq_fwd_view *v, dsq_err *err) {
    if (!f->ready) return dsq_fail(err, DSQ_E_ARG, "forward: dsq_fwd_layer before dsq_fwd_begin");
    if (f->next_layer >= f->L) return DSQ_EOF;
    int l = f->next_layer, rc = run_layer(f, l, err);
    if (rc < 0) {
        f->ready = 0;
        return rc;
    }
    f->next_layer++;
    if (v) {
        memset(v, 0, sizeof *v);
        v->layer = l;
        v->n_tokens = f->T;
        v->hidden = f->D;
        v->resid = f->h;
        v->attn_out = f->attn_out;
        v->ffn_in = f->x2;
        v->ffn_out = f->ffn_out;
        if (f->mask_on && f->topk_on) {
            v->topk = f->topk;
            v->topk_k = f->KI;
        }
        if (f->layers[l].moe) {
            v->n_slots = f->ke;
            v->experts = f->rexperts;
            v->weights = f->rweights;
            v->expert_out = f->eo;
            v->shared_out = f->Fs > 0 ? f->sh_out : NULL;
        }
    }
    return DSQ_OK;
}

int dsq_fwd_logits(dsq_fwd *f, float *logits, dsq_err *err) {
    if (!f->ready || f->next_layer != f->L)
        return dsq_fail(err, DSQ_E_ARG, "forward: logits requested before the last layer ran");
    for (int t = 0; t < f->T; t++)
        dsq_fwd_rmsnorm(f->h + (int64_t)t * f->D, f->final_norm, f->D, f->eps,
                        f->x + (int64_t)t * f->D);
    return lin(f, f->head, f->x, f->T, f->D, logits, f->V, 0, err);
}

int dsq_fwd_run(dsq_fwd *f, const int32_t *tok, int T, float *logits, dsq_err *err) {
    int rc = dsq_fwd_begin(f, tok, T, err);
    while (rc == DSQ_OK) rc = dsq_fwd_layer(f, NULL, err);
    if (rc < 0) return rc;
    return logits ? dsq_fwd_logits(f, logits, err) : DSQ_OK;
}

int dsq_fwd_expert(dsq_fwd *f, int layer, int expert, const float *x, int n, float *y,
                   dsq_err *err) {
    if (layer < 0 || layer >= f->L || !f->layers[layer].moe)
        return dsq_fail(err, DSQ_E_ARG, "forward: layer %d has no experts", layer);
    if (expert >= f->E || n < 0 || n > f->max_T || (expert < 0 && f->Fs <= 0))
        return dsq_fail(err, DSQ_E_ARG, "forward: bad expert %d or row count %d", expert, n);
    if (n == 0) return DSQ_OK;
    /* uses only scratch (g, u, xq): a window in progress is not disturbed */
    const fwd_layer *L = &f->layers[layer];
    if (expert < 0) return mlp(f, L->gate, L->up, L->down, f->Fs, x, n, y, DSQ_R_UNKNOWN, err);
    return mlp(f, L->exp[3 * expert], L->exp[3 * expert + 1], L->exp[3 * expert + 2], f->Fe, x, n,
               y, DSQ_R_UNKNOWN, err);
}

const dsq_config *dsq_fwd_config(const dsq_fwd *f) { return &f->cfg; }

/* ==== scoring ============================================================= */

typedef struct {
    const float *logits;
    const int32_t *next;
    int n;
    double *nll;
} nll_ctx;

static int nll_item(fwd_worker *w, int item, void *vc) {
    nll_ctx *c = vc;
    int V = w->f->V;
    for (int t = item * TOK_ROWS; t < imin(c->n, (item + 1) * TOK_ROWS); t++) {
        const float *r = c->logits + (int64_t)t * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++)
            if (r[i] > mx) mx = r[i];
        /* exp of a non-positive f32 difference is accurate to an ulp; the
         * sum runs in double so V terms add no visible error */
        double s = 0;
        for (int i = 0; i < V; i++) s += expf(r[i] - mx);
        c->nll[t] = (double)mx + log(s) - r[c->next[t]];
    }
    return DSQ_OK;
}

int dsq_fwd_nll(dsq_fwd *f, const float *logits, const int32_t *next, int n, double *nll,
                dsq_err *err) {
    if (n < 0 || n > f->max_T) return dsq_fail(err, DSQ_E_ARG, "forward: %d positions to score", n);
    for (int t = 0; t < n; t++)
        if (next[t] < 0 || next[t] >= f->V)
            return dsq_fail(err, DSQ_E_ARG, "forward: target %d outside vocab", next[t]);
    nll_ctx c = {logits, next, n, nll};
    return par_run(f, (n + TOK_ROWS - 1) / TOK_ROWS, nll_item, &c, err);
}

/* ==== opening ============================================================= */

/* Resolve a tensor by name and check its shape ([d0] or [d0, d1]). */
static int need(dsq_fwd *f, int *id, const char *name, int nd, int64_t d0, int64_t d1,
                dsq_err *err) {
    int64_t sh[4] = {0};
    *id = f->w->find(f->w->ctx, name);
    if (*id < 0) return dsq_fail(err, DSQ_E_NOTFOUND, "%s: tensor missing", name);
    int n = f->w->shape(f->w->ctx, *id, sh);
    if (n != nd || sh[0] != d0 || (nd == 2 && sh[1] != d1)) {
        if (nd == 2)
            return dsq_fail(err, DSQ_E_FORMAT, "%s: shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                            name, (long long)sh[0], (long long)sh[1], n, (long long)d0,
                            (long long)d1);
        return dsq_fail(err, DSQ_E_FORMAT, "%s: shape [%lld] (%d dims), expected [%lld]", name,
                        (long long)sh[0], n, (long long)d0);
    }
    return DSQ_OK;
}

/* Resolve a 1-D tensor of n elements and copy it into *cursor. */
static int need_vec(dsq_fwd *f, const float **out, float **cursor, const char *name, int n,
                    dsq_err *err) {
    int id, rc = need(f, &id, name, 1, n, 0, err);
    if (rc < 0) return rc;
    if ((rc = f->w->rows_f32(f->w->ctx, id, 0, 1, *cursor, err)) < 0) return rc;
    *out = *cursor;
    *cursor += n;
    return DSQ_OK;
}

/* The configuration decides every allocation and loop bound, so it is
 * checked before anything is sized from it: dimensions positive and
 * bounded, experts splitting evenly into groups, enough candidates for the
 * experts per token, an indexer key wide enough for its RoPE part. */
static int check_config(const dsq_config *c, dsq_err *err) {
    const struct { const char *name; int v; } dims[] = {
        {"vocab_size", c->vocab_size}, {"hidden_size", c->hidden_size},
        {"num_hidden_layers", c->n_layers}, {"num_attention_heads", c->n_heads},
        {"q_lora_rank", c->q_lora_rank}, {"kv_lora_rank", c->kv_lora_rank},
        {"qk_nope_head_dim", c->qk_nope_head_dim}, {"qk_rope_head_dim", c->qk_rope_head_dim},
        {"v_head_dim", c->v_head_dim},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v < 1 || dims[i].v > DIM_MAX)
            return dsq_fail(err, DSQ_E_CONFIG, "config: %s = %d is outside 1..%d", dims[i].name,
                            dims[i].v, DIM_MAX);
    if (c->qk_rope_head_dim % 2)
        return dsq_fail(err, DSQ_E_CONFIG, "config: qk_rope_head_dim %d is odd", c->qk_rope_head_dim);
    if (!(c->rms_norm_eps >= 0) || !(c->rope_theta > 1) || !isfinite(c->rope_theta) ||
        !isfinite(c->routed_scaling_factor))
        return dsq_fail(err, DSQ_E_CONFIG, "config: rms_norm_eps, rope_theta or "
                                           "routed_scaling_factor out of range");
    if (c->has_yarn && c->yarn_factor > 1.0 &&
        !(c->yarn_original_max_pos > 0 && c->yarn_beta_fast > 0 && c->yarn_beta_slow > 0 &&
          isfinite(c->yarn_factor) && c->yarn_mscale_all_dim >= 0))
        return dsq_fail(err, DSQ_E_CONFIG, "config: rope_scaling parameters out of range");
    int any_dense = 0, any_moe = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (dsq_config_is_moe_layer(c, l)) any_moe = 1;
        else any_dense = 1;
    }
    if (any_dense && (c->intermediate_size < 1 || c->intermediate_size > DIM_MAX))
        return dsq_fail(err, DSQ_E_CONFIG, "config: intermediate_size %d", c->intermediate_size);
    if (any_moe) {
        int E = c->n_routed_experts, G = c->n_group > 0 ? c->n_group : 1;
        if (E > DIM_MAX || c->moe_intermediate_size < 1 || c->moe_intermediate_size > DIM_MAX ||
            c->n_shared_experts < 0 || c->n_shared_experts > 64)
            return dsq_fail(err, DSQ_E_CONFIG, "config: MoE sizes out of range");
        if (E % G || c->topk_group < 1 || c->topk_group > G || c->topk_group > 64)
            return dsq_fail(err, DSQ_E_CONFIG, "config: %d experts do not split into %d groups "
                            "keeping %d", E, G, c->topk_group);
        int cand = G > 1 && c->topk_group < G ? c->topk_group * (E / G) : E;
        if (c->n_experts_per_tok < 1 || c->n_experts_per_tok > 64 || c->n_experts_per_tok > cand)
            return dsq_fail(err, DSQ_E_CONFIG, "config: num_experts_per_tok %d with %d candidates",
                            c->n_experts_per_tok, cand);
    }
    if (c->has_indexer &&
        (c->index_n_heads < 1 || c->index_n_heads > DIM_MAX || c->index_head_dim < 1 ||
         c->index_head_dim > DIM_MAX || c->index_head_dim < c->qk_rope_head_dim ||
         c->index_topk < 1))
        return dsq_fail(err, DSQ_E_CONFIG, "config: indexer sizes out of range");
    return DSQ_OK;
}

/* ---- dimensions ---------------------------------------------------------- */

/* The table at the top of this file, from f->cfg (checked by check_config). */
static void set_dims(dsq_fwd *f) {
    const dsq_config *c = &f->cfg;
    f->D = c->hidden_size; f->V = c->vocab_size; f->H = c->n_heads; f->L = c->n_layers;
    f->dn = c->qk_nope_head_dim; f->dr = c->qk_rope_head_dim; f->dqk = f->dn + f->dr;
    f->dv = c->v_head_dim; f->rq = c->q_lora_rank; f->rkv = c->kv_lora_rank;
    f->HI = c->has_indexer ? c->index_n_heads : 0;
    f->dI = c->has_indexer ? c->index_head_dim : 0;
    f->KI = c->has_indexer ? c->index_topk : 0;
    f->n_moe = 0;
    for (int l = 0; l < f->L; l++) f->n_moe += dsq_config_is_moe_layer(c, l);
    int n_moe = f->n_moe;
    f->E = n_moe ? c->n_routed_experts : 0;
    f->ke = n_moe ? c->n_experts_per_tok : 0;
    f->Fe = n_moe ? c->moe_intermediate_size : 0;
    f->Fs = n_moe ? c->n_shared_experts * c->moe_intermediate_size : 0;
    f->F = n_moe < f->L ? c->intermediate_size : 0;
    f->Fmax = imax(f->F, imax(f->Fs, f->Fe));
    f->eps = (float)c->rms_norm_eps;
    f->sm_scale = (float)dsq_fwd_softmax_scale(c);
    f->idx_scale_h = f->HI ? (float)(1.0 / sqrt((double)f->HI)) : 0;
    f->idx_scale_d = f->dI ? (float)(1.0 / sqrt((double)f->dI)) : 0;
}

/* kmax: the widest input of any linear layer (the columns of xq). */
static int widest_input(const dsq_fwd *f) {
    return imax(imax(f->D, f->rq), imax(f->rkv, imax(f->H * f->dv, f->Fmax)));
}

static int out_of_memory(const dsq_fwd *f, dsq_err *err) {
    return dsq_fail(err, DSQ_E_NOMEM, "forward: out of memory for a %d-token window", f->max_T);
}

/* ---- weights ------------------------------------------------------------- */

/* need() for the 2-D weight `role` of layer l (routed experts: expert e);
 * names come from formats/roles.c. */
static int need_w(dsq_fwd *f, int *id, int l, int e, dsq_role role, int64_t d0, int64_t d1,
                  dsq_err *err) {
    char nm[256];
    dsq_layer_weight_name(nm, sizeof nm, l, e, role);
    return need(f, id, nm, 2, d0, d1, err);
}

/* need_vec() for the vector `role` of layer l. */
static int need_lvec(dsq_fwd *f, const float **out, float **cursor, int l, dsq_role role, int n,
                     dsq_err *err) {
    char nm[256];
    dsq_layer_weight_name(nm, sizeof nm, l, -1, role);
    return need_vec(f, out, cursor, nm, n, err);
}

/* MLA attention of layer l (spec §2.3), with its latent norms. */
static int load_attention(dsq_fwd *f, int l, fwd_layer *L, float **vcur, dsq_err *err) {
    int rc, D = f->D;
    DSQ_TRY(need_w(f, &L->q_a, l, -1, DSQ_R_ATTN_Q_A, f->rq, D, err));
    DSQ_TRY(need_lvec(f, &L->q_a_norm, vcur, l, DSQ_R_ATTN_Q_A_NORM, f->rq, err));
    DSQ_TRY(need_w(f, &L->q_b, l, -1, DSQ_R_ATTN_Q_B, (int64_t)f->H * f->dqk, f->rq, err));
    DSQ_TRY(need_w(f, &L->kv_a, l, -1, DSQ_R_ATTN_KV_A, f->rkv + f->dr, D, err));
    DSQ_TRY(need_lvec(f, &L->kv_a_norm, vcur, l, DSQ_R_ATTN_KV_A_NORM, f->rkv, err));
    DSQ_TRY(need_w(f, &L->kv_b, l, -1, DSQ_R_ATTN_KV_B, (int64_t)f->H * (f->dn + f->dv), f->rkv,
                   err));
    DSQ_TRY(need_w(f, &L->o, l, -1, DSQ_R_ATTN_O, D, (int64_t)f->H * f->dv, err));
    return DSQ_OK;
fail:
    return rc;
}

/* The DSA indexer of layer l (spec §2.3). */
static int load_indexer(dsq_fwd *f, int l, fwd_layer *L, float **vcur, dsq_err *err) {
    int rc, D = f->D;
    DSQ_TRY(need_w(f, &L->iq, l, -1, DSQ_R_IDX_WQ_B, (int64_t)f->HI * f->dI, f->rq, err));
    DSQ_TRY(need_w(f, &L->ik, l, -1, DSQ_R_IDX_WK, f->dI, D, err));
    DSQ_TRY(need_lvec(f, &L->k_norm_w, vcur, l, DSQ_R_IDX_K_NORM, f->dI, err));
    DSQ_TRY(need_lvec(f, &L->k_norm_b, vcur, l, DSQ_R_IDX_K_NORM_BIAS, f->dI, err));
    DSQ_TRY(need_w(f, &L->iw, l, -1, DSQ_R_IDX_WEIGHTS_PROJ, f->HI, D, err));
    return DSQ_OK;
fail:
    return rc;
}

/* The FFN of layer l: dense SwiGLU (spec §2.4), or router, shared expert
 * and routed experts (§2.5), whose ids go to *exp_cursor. */
static int load_ffn(dsq_fwd *f, int l, fwd_layer *L, int **exp_cursor, float **vcur,
                    dsq_err *err) {
    int rc, D = f->D;
    if (!L->moe) {
        DSQ_TRY(need_w(f, &L->gate, l, -1, DSQ_R_DENSE_GATE, f->F, D, err));
        DSQ_TRY(need_w(f, &L->up, l, -1, DSQ_R_DENSE_UP, f->F, D, err));
        DSQ_TRY(need_w(f, &L->down, l, -1, DSQ_R_DENSE_DOWN, D, f->F, err));
        return DSQ_OK;
    }
    DSQ_TRY(need_w(f, &L->router, l, -1, DSQ_R_ROUTER, f->E, D, err));
    /* the correction bias is optional: older routers have none */
    char nm[256];
    dsq_layer_weight_name(nm, sizeof nm, l, -1, DSQ_R_ROUTER_BIAS);
    L->router_bias = NULL;
    if (f->w->find(f->w->ctx, nm) >= 0) DSQ_TRY(need_vec(f, &L->router_bias, vcur, nm, f->E, err));
    if (f->Fs > 0) {
        DSQ_TRY(need_w(f, &L->gate, l, -1, DSQ_R_SHEXP_GATE, f->Fs, D, err));
        DSQ_TRY(need_w(f, &L->up, l, -1, DSQ_R_SHEXP_UP, f->Fs, D, err));
        DSQ_TRY(need_w(f, &L->down, l, -1, DSQ_R_SHEXP_DOWN, D, f->Fs, err));
    }
    int *ex = *exp_cursor;
    for (int e = 0; e < f->E; e++) {
        DSQ_TRY(need_w(f, &ex[3 * e], l, e, DSQ_R_EXP_GATE, f->Fe, D, err));
        DSQ_TRY(need_w(f, &ex[3 * e + 1], l, e, DSQ_R_EXP_UP, f->Fe, D, err));
        DSQ_TRY(need_w(f, &ex[3 * e + 2], l, e, DSQ_R_EXP_DOWN, D, f->Fe, err));
    }
    L->exp = ex;
    *exp_cursor += 3 * f->E;
    return DSQ_OK;
fail:
    return rc;
}

static int load_layer(dsq_fwd *f, int l, int **exp_cursor, float **vcur, dsq_err *err) {
    fwd_layer *L = &f->layers[l];
    int rc, D = f->D;
    L->moe = dsq_config_is_moe_layer(&f->cfg, l);
    DSQ_TRY(need_lvec(f, &L->in_norm, vcur, l, DSQ_R_INPUT_NORM, D, err));
    DSQ_TRY(need_lvec(f, &L->post_norm, vcur, l, DSQ_R_POST_ATTN_NORM, D, err));
    DSQ_TRY(load_attention(f, l, L, vcur, err));
    if (f->cfg.has_indexer) DSQ_TRY(load_indexer(f, l, L, vcur, err));
    DSQ_TRY(load_ffn(f, l, L, exp_cursor, vcur, err));
    return DSQ_OK;
fail:
    return rc;
}

/* Every tensor the pass reads: ids resolved and shapes checked, the small
 * vectors copied into f->vecs. */
static int load_weights(dsq_fwd *f, dsq_err *err) {
    int rc;
    int64_t n_vec = (int64_t)f->D + (int64_t)f->L * (2 * f->D + f->rq + f->rkv + 2 * f->dI + f->E);
    f->vecs = falloc2(n_vec, 1);
    f->layers = dsq_calloc((size_t)f->L, sizeof *f->layers);
    f->exp_ids = dsq_calloc((size_t)f->n_moe * 3 * (size_t)(f->E ? f->E : 1), sizeof(int));
    if (!f->vecs || !f->layers || !f->exp_ids) return out_of_memory(f, err);
    float *vcur = f->vecs;
    int *ecur = f->exp_ids;
    DSQ_TRY(need(f, &f->embed, dsq_top_weight_name(DSQ_R_EMBED), 2, f->V, f->D, err));
    DSQ_TRY(need(f, &f->head, dsq_top_weight_name(DSQ_R_HEAD), 2, f->V, f->D, err));
    DSQ_TRY(need_vec(f, &f->final_norm, &vcur, dsq_top_weight_name(DSQ_R_FINAL_NORM), f->D, err));
    for (int l = 0; l < f->L; l++) DSQ_TRY(load_layer(f, l, &ecur, &vcur, err));
    return DSQ_OK;
fail:
    return rc;
}

/* ---- RoPE tables ---------------------------------------------------------- */

/* cos and sin for positions 0..max_T-1 (fp32 angle, as upstream). */
static int make_rope_tables(dsq_fwd *f, dsq_err *err) {
    int half = f->dr / 2, T = f->max_T;
    f->theta = falloc2(half, 1);
    f->cos_t = falloc2(T, half);
    f->sin_t = falloc2(T, half);
    if (!f->theta || !f->cos_t || !f->sin_t) return out_of_memory(f, err);
    dsq_fwd_rope_freqs(&f->cfg, f->theta);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float a = (float)t * f->theta[i];
            f->cos_t[(int64_t)t * half + i] = cosf(a);
            f->sin_t[(int64_t)t * half + i] = sinf(a);
        }
    return DSQ_OK;
}

/* ---- activations ------------------------------------------------------------ */

/* Everything a window needs, sized once for max_T, so the per-window path
 * never allocates (shapes beside the fields of struct dsq_fwd). */
static int alloc_activations(dsq_fwd *f, dsq_err *err) {
    int T = f->max_T, D = f->D, kmax = widest_input(f);
    f->h = falloc2(T, D); f->x = falloc2(T, D); f->x2 = falloc2(T, D);
    f->xq = falloc2(T, kmax); f->xq2 = falloc2(T, D);
    f->cq = falloc2(T, f->rq);
    f->q = falloc2(T, (int64_t)f->H * f->dqk);
    f->kva = falloc2(T, f->rkv + f->dr);
    f->c = falloc2(T, f->rkv);
    f->kvb = falloc2(T, (int64_t)f->H * (f->dn + f->dv));
    f->o = falloc2(T, (int64_t)f->H * f->dv);
    f->attn_out = falloc2(T, D); f->ffn_out = falloc2(T, D);
    f->g = falloc2(T, f->Fmax); f->u = falloc2(T, f->Fmax);
    if (!f->h || !f->x || !f->x2 || !f->xq || !f->xq2 || !f->cq || !f->q || !f->kva || !f->c ||
        !f->kvb || !f->o || !f->attn_out || !f->ffn_out || !f->g || !f->u)
        return out_of_memory(f, err);
    if (f->cfg.has_indexer) {
        f->qi = falloc2(T, (int64_t)f->HI * f->dI);
        f->ki = falloc2(T, f->dI);
        f->wi = falloc2(T, f->HI);
        f->mask = dsq_malloc((size_t)T * (size_t)T);
        if (!f->qi || !f->ki || !f->wi || !f->mask) return out_of_memory(f, err);
        if ((f->trace & DSQ_TRACE_TOPK) && T > f->KI) {
            f->topk = (int32_t *)falloc2(T, f->KI);
            if (!f->topk) return out_of_memory(f, err);
            f->topk_on = 1;
        }
    }
    if (f->n_moe) {
        f->z = falloc2(T, f->E);
        f->rweights = falloc2(T, f->ke);
        f->rexperts = (int32_t *)falloc2(T, f->ke);
        f->eo = falloc2((int64_t)T * f->ke, D);
        f->sh_out = falloc2(T, D);
        f->ecount = dsq_calloc((size_t)f->E, sizeof(int32_t));
        f->eoff = dsq_calloc((size_t)f->E, sizeof(int32_t));
        f->eorder = dsq_calloc((size_t)f->E, sizeof(int32_t));
        f->elist = (int32_t *)falloc2(T, f->ke);
        if (!f->z || !f->rweights || !f->rexperts || !f->eo || !f->sh_out ||
            !f->ecount || !f->eoff || !f->eorder || !f->elist)
            return out_of_memory(f, err);
        if (f->observe && !(f->eact = falloc2((int64_t)T * f->ke, f->Fe))) return out_of_memory(f, err);
    }
    return DSQ_OK;
}

/* ---- workers ------------------------------------------------------------- */

/* The pool and each worker's scratch (shapes beside fwd_worker's fields). */
static int start_workers(dsq_fwd *f, int n_threads, dsq_err *err) {
    int T = f->max_T, D = f->D;
    int nt = n_threads > 0 ? n_threads : dsq_default_threads();
    f->pool = dsq_pool_new(nt);
    if (!f->pool) return out_of_memory(f, err);
    f->n_workers = dsq_pool_size(f->pool);
    f->workers = dsq_calloc((size_t)f->n_workers, sizeof *f->workers);
    if (!f->workers) return out_of_memory(f, err);
    int kw = imax(widest_input(f), D); /* widest weight row */
    f->wcap = (int64_t)kw * TILE_UNIT > WTILE_MIN ? (int64_t)kw * TILE_UNIT : WTILE_MIN;
    int wa = imax(D, f->dqk);
    for (int i = 0; i < f->n_workers; i++) {
        fwd_worker *wk = &f->workers[i];
        wk->f = f;
        wk->wtile = falloc2(f->wcap, 1);
        wk->pack = falloc2(DSQ_GEMM_PACK, 1);
        wk->xa = falloc2(T, wa);
        wk->xd = falloc2(T, wa);
        wk->xb = falloc2(T, imax(f->Fe, 1));
        wk->xc = falloc2(T, imax(f->Fe, 1));
        wk->s = falloc2(ATT_ROWS, T);
        wk->vt = falloc2(f->dv, T);
        wk->ib = falloc2(IDX_ROWS, T);
        wk->pairs = dsq_malloc((size_t)T * sizeof(sc_pair));
        wk->rs = falloc2(2 * (int64_t)f->E + (f->cfg.n_group > 0 ? f->cfg.n_group : 1), 1);
        if (!wk->rs || !wk->wtile || !wk->pack || !wk->xa || !wk->xd || !wk->xb || !wk->xc || !wk->s ||
            !wk->vt || !wk->ib || !wk->pairs)
            return out_of_memory(f, err);
    }
    return DSQ_OK;
}

/* ---- the constructor ------------------------------------------------------- */

int dsq_fwd_new(dsq_fwd **out, const dsq_weights *w, const dsq_fwd_opts *opts, dsq_err *err) {
    int rc;
    *out = NULL;
    if (!w || !w->cfg || !opts || opts->max_tokens < 1 || opts->max_tokens > (1 << 20))
        return dsq_fail(err, DSQ_E_ARG, "forward: bad arguments (window must be 1..%d tokens)",
                        1 << 20);
    if ((rc = check_config(w->cfg, err)) < 0) return rc;
    dsq_codecs_init();
    dsq_fwd *f = dsq_calloc(1, sizeof *f);
    if (!f) return dsq_fail(err, DSQ_E_NOMEM, "forward: out of memory");
    f->w = w;
    f->cfg = *w->cfg;
    f->max_T = opts->max_tokens;
    f->act_fp8 = opts->act_fp8 != 0;
    f->trace = opts->trace;
    f->observe = opts->observe;
    f->observe_arg = opts->observe_arg;
    set_dims(f);
    if (f->act_fp8 && f->dI && (f->dI & (f->dI - 1))) {
        rc = dsq_fail(err, DSQ_E_UNSUPPORTED, "forward: FP8 indexer simulation needs a power-of-two "
                      "index_head_dim (Hadamard), got %d", f->dI);
        goto fail;
    }
    DSQ_TRY(load_weights(f, err));
    DSQ_TRY(make_rope_tables(f, err));
    DSQ_TRY(alloc_activations(f, err));
    DSQ_TRY(start_workers(f, opts->n_threads, err));
    *out = f;
    return DSQ_OK;
fail:
    dsq_fwd_free(f);
    return rc;
}

void dsq_fwd_free(dsq_fwd *f) {
    if (!f) return;
    dsq_pool_free(f->pool);
    if (f->workers)
        for (int i = 0; i < f->n_workers; i++) {
            fwd_worker *wk = &f->workers[i];
            dsq_afree(wk->wtile); dsq_afree(wk->pack); dsq_afree(wk->xa); dsq_afree(wk->xd);
            dsq_afree(wk->xb); dsq_afree(wk->xc); dsq_afree(wk->s); dsq_afree(wk->vt);
            dsq_afree(wk->ib); dsq_afree(wk->rs); free(wk->pairs);
        }
    free(f->workers);
    float *bufs[] = {f->theta, f->cos_t, f->sin_t, f->vecs, f->h, f->x, f->x2, f->xq, f->xq2,
                     f->cq, f->q, f->kva, f->c, f->kvb, f->o, f->attn_out, f->ffn_out, f->g,
                     f->u, f->qi, f->ki, f->wi, f->z, f->rweights, f->eo, f->sh_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dsq_afree(bufs[i]);
    dsq_afree(f->rexperts);
    dsq_afree(f->elist);
    dsq_afree(f->eact);
    dsq_afree(f->topk);
    free(f->mask);
    free(f->ecount);
    free(f->eoff);
    free(f->eorder);
    free(f->layers);
    free(f->exp_ids);
    free(f);
}
