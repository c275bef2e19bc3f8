/*
 * test_calib_methods.c -- GPTQ and AWQ on synthetic layers: both must
 * beat plain round-to-nearest on the error they optimise, write the
 * documented layout (any reader decodes them), and GPTQ with an identity
 * Hessian must not be worse than RTN.
 */
#include "test.h"
#include "calib/methods.h"
#include "calib/linalg.h"
#include "common/pool.h"

#include <math.h>
#include <stdlib.h>

static uint64_t g_s = 12345;
static float urand(void) {
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_s >> 40) & 0xFFFFFF) / 16777216.0f;
}
static float nrand(void) {
    float a = urand() + 1e-7f, b = urand();
    return sqrtf(-2 * logf(a)) * cosf(6.2831853f * b);
}

/* Output error ||(W - Wq) X^T||^2 / ||W X^T||^2 for activations X [N x cols]. */
static double out_err(const float *W, const dsq_qmat *q, const float *colscale, const float *X, int64_t N) {
    int64_t rows = q->rows, cols = q->cols;
    float *Wq = malloc(sizeof *Wq * (size_t)(rows * cols));
    dsq_q_dequantize(q, 0, rows, Wq, NULL);
    if (colscale)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++) Wq[r * cols + j] *= colscale[j];
    double num = 0, den = 0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t r = 0; r < rows; r++) {
            double a = 0, b = 0;
            for (int64_t j = 0; j < cols; j++) {
                a += (double)W[r * cols + j] * X[t * cols + j];
                b += (double)Wq[r * cols + j] * X[t * cols + j];
            }
            num += (a - b) * (a - b);
            den += a * a;
        }
    free(Wq);
    return num / den;
}

typedef struct { float *W, *X, *mabs, *msq; double *H; int64_t rows, cols, N; } layer;

static void make_layer(layer *L, int64_t rows, int64_t cols, int64_t N) {
    L->rows = rows; L->cols = cols; L->N = N;
    L->W = malloc(sizeof *L->W * (size_t)(rows * cols));
    L->X = malloc(sizeof *L->X * (size_t)(N * cols));
    L->mabs = calloc((size_t)cols, sizeof *L->mabs);
    L->msq = calloc((size_t)cols, sizeof *L->msq);
    L->H = calloc((size_t)(cols * cols), sizeof *L->H);
    for (int64_t i = 0; i < rows * cols; i++) L->W[i] = nrand() * 0.05f;
    /* correlated activations with a few outlier channels */
    float *f = malloc(sizeof *f * 8);
    for (int64_t t = 0; t < N; t++) {
        for (int k = 0; k < 8; k++) f[k] = nrand();
        for (int64_t j = 0; j < cols; j++) {
            float v = 0.6f * f[j % 8] + 0.4f * nrand();
            if (j % 37 == 3) v *= 12.0f;
            L->X[t * cols + j] = v;
        }
    }
    free(f);
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < cols; i++) {
            float xi = L->X[t * cols + i];
            L->mabs[i] += fabsf(xi) / (float)N;
            L->msq[i] += xi * xi / (float)N;
            for (int64_t j = 0; j < cols; j++) L->H[i * cols + j] += (double)xi * L->X[t * cols + j] / (double)N;
        }
}

static void free_layer(layer *L) { free(L->W); free(L->X); free(L->mabs); free(L->msq); free(L->H); }

static dsq_qmat qm_alloc(int t, int64_t rows, int64_t cols) {
    dsq_qsizes z;
    dsq_q_sizes(t, rows, cols, &z, NULL);
    uint8_t *b = calloc(1, z.data + z.scale + z.zero + 1);
    dsq_qmat m = {t, rows, cols, b, z.scale ? b + z.data : NULL, z.zero ? b + z.data + z.scale : NULL};
    return m;
}

TEST(test_calib_gptq_beats_rtn) {
    layer L;
    make_layer(&L, 48, 256, 512);
    const char *schemes[] = {"int4-g128-sym", "int4-g32-asym", "int8-channel"};
    for (size_t k = 0; k < 3; k++) {
        int t = dsq_q_from_name(schemes[k]);
        dsq_qmat rtn = qm_alloc(t, L.rows, L.cols), g = qm_alloc(t, L.rows, L.cols), ga = qm_alloc(t, L.rows, L.cols);
        dsq_qmat src = {DSQ_Q_F32, L.rows, L.cols, L.W, NULL, NULL};
        dsq_err err = {0};
        CHECK(dsq_q_quantize_pool(NULL, &src, &rtn, NULL, &err) == 0);
        dsq_gptq_opts o = {0.01, 0, 128, NULL, 0, 0, 0};
        double e1;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &g, &e1, &err) == 0, "%s", err.msg);
        o.act_order = 1;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &ga, NULL, &err) == 0, "%s", err.msg);
        double er = out_err(L.W, &rtn, NULL, L.X, L.N), eg = out_err(L.W, &g, NULL, L.X, L.N),
               ea = out_err(L.W, &ga, NULL, L.X, L.N);
        fprintf(stderr, "  %s: output error rtn %.3e gptq %.3e gptq+act-order %.3e\n", schemes[k], er, eg, ea);
        CHECKF(eg < 0.8 * er, "%s: gptq %.3e not below rtn %.3e", schemes[k], eg, er);
        CHECKF(ea < 0.8 * er, "%s: gptq act-order %.3e not below rtn %.3e", schemes[k], ea, er);
        CHECK(fabs(e1 - eg) < 0.05 * eg + 1e-9); /* reported error is the output error on the same data */
        free(rtn.data); free(g.data); free(ga.data);
    }
    free_layer(&L);
}

TEST(test_calib_gptq_identity_hessian) {
    /* with H = I GPTQ has nothing to compensate: codes equal plain RTN on
     * each group (parameters from the same weights) */
    int64_t rows = 8, cols = 64;
    float W[8 * 64];
    double *H = calloc((size_t)(cols * cols), sizeof *H);
    for (int64_t i = 0; i < rows * cols; i++) W[i] = nrand();
    for (int64_t i = 0; i < cols; i++) H[i * cols + i] = 1;
    int t = dsq_q_from_name("int4-g32-sym");
    dsq_qmat a = qm_alloc(t, rows, cols), b = qm_alloc(t, rows, cols);
    dsq_qmat src = {DSQ_Q_F32, rows, cols, W, NULL, NULL};
    dsq_err err = {0};
    CHECK(dsq_q_quantize_pool(NULL, &src, &a, NULL, &err) == 0);
    dsq_gptq_opts o = {1e-9, 0, 16, NULL, 0, 0, 0};
    CHECK(dsq_gptq(W, rows, cols, H, &o, &b, NULL, &err) == 0);
    dsq_qsizes z;
    dsq_q_sizes(t, rows, cols, &z, NULL);
    CHECK(!memcmp(a.data, b.data, z.data + z.scale));
    free(a.data); free(b.data); free(H);
}

TEST(test_calib_awq_never_worse) {
    layer L;
    make_layer(&L, 32, 192, 256);
    int t = dsq_q_from_name("int4-g64-sym");
    dsq_qmat rtn = qm_alloc(t, L.rows, L.cols), q = qm_alloc(t, L.rows, L.cols);
    dsq_qmat src = {DSQ_Q_F32, L.rows, L.cols, L.W, NULL, NULL};
    dsq_err err = {0};
    CHECK(dsq_q_quantize_pool(NULL, &src, &rtn, NULL, &err) == 0);
    float *cs = malloc(sizeof *cs * (size_t)L.cols), alpha;
    double e;
    CHECKF(dsq_awq(L.W, L.rows, L.cols, L.mabs, L.msq, 20, 0, &q, cs, &alpha, &e, &err) == 0, "%s", err.msg);
    double er = dsq_weighted_err(L.W, &rtn, NULL, L.msq), ea = dsq_weighted_err(L.W, &q, cs, L.msq);
    fprintf(stderr, "  awq alpha %.2f: weighted error rtn %.3e awq %.3e; output error rtn %.3e awq %.3e\n", alpha, er, ea,
            out_err(L.W, &rtn, NULL, L.X, L.N), out_err(L.W, &q, cs, L.X, L.N));
    CHECK(ea <= er * (1 + 1e-9));
    CHECK(fabs(ea - e) <= 1e-9 + 1e-6 * e);
    CHECK(alpha > 0); /* outlier channels make scaling worthwhile */
    free(rtn.data); free(q.data); free(cs);
    free_layer(&L);
}

TEST(test_calib_gptq_threads_identical) {
    layer L;
    make_layer(&L, 40, 160, 128);
    int t = dsq_q_from_name("int4-g32-asym");
    dsq_qmat a = qm_alloc(t, L.rows, L.cols), b = qm_alloc(t, L.rows, L.cols);
    dsq_err err = {0};
    struct dsq_pool *pool = dsq_pool_new(2);
    dsq_gptq_opts o1 = {0.01, 1, 64, NULL, 8, 0, 0}, o2 = {0.01, 1, 64, pool, 8, 0, 0};
    CHECK(dsq_gptq(L.W, L.rows, L.cols, L.H, &o1, &a, NULL, &err) == 0);
    CHECK(dsq_gptq(L.W, L.rows, L.cols, L.H, &o2, &b, NULL, &err) == 0);
    dsq_qsizes z;
    dsq_q_sizes(t, L.rows, L.cols, &z, NULL);
    CHECK(!memcmp(a.data, b.data, z.data + z.scale + z.zero));
    dsq_pool_free(pool);
    free(a.data); free(b.data);
    free_layer(&L);
}

/* (W - Q) Hd (W - Q)^T summed over rows, Hd = H + damp * mean(diag H) * I. */
static double damped_obj(const float *W, const dsq_qmat *q, const double *H, double damp) {
    int64_t rows = q->rows, n = q->cols;
    float *Wq = malloc(sizeof *Wq * (size_t)(rows * n));
    dsq_q_dequantize(q, 0, rows, Wq, NULL);
    double mean = 0, o = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i] / (double)n;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double ei = (double)W[r * n + i] - Wq[r * n + i], t = damp * mean * ei;
            for (int64_t k = 0; k < n; k++) t += H[i * n + k] * ((double)W[r * n + k] - Wq[r * n + k]);
            o += ei * t;
        }
    free(Wq);
    return o;
}

TEST(test_calib_gptq_refine_never_worse) {
    /* the refinement rounds only accept changes that lower the damped
     * objective, so they never end above the plain GPTQ result; rows split
     * over threads give the same bytes */
    layer L;
    make_layer(&L, 48, 256, 512);
    const char *schemes[] = {"int4-g128-sym", "int4-g32-asym", "int8-channel", "int4-g64-sym-f16"};
    struct dsq_pool *pool = dsq_pool_new(2);
    for (size_t k = 0; k < 4; k++) {
        int t = dsq_q_from_name(schemes[k]);
        dsq_qmat a = qm_alloc(t, L.rows, L.cols), b = qm_alloc(t, L.rows, L.cols), c = qm_alloc(t, L.rows, L.cols);
        dsq_err err = {0};
        dsq_gptq_opts o = {0.01, 1, 128, NULL, 8, 0, 0};
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &a, NULL, &err) == 0, "%s", err.msg);
        o.refine = 2;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &b, NULL, &err) == 0, "%s", err.msg);
        o.pool = pool;
        CHECKF(dsq_gptq(L.W, L.rows, L.cols, L.H, &o, &c, NULL, &err) == 0, "%s", err.msg);
        double ea = damped_obj(L.W, &a, L.H, 0.01), eb = damped_obj(L.W, &b, L.H, 0.01);
        fprintf(stderr, "  %s: damped objective gptq %.4e, refined %.4e (%.3fx); output error %.3e -> %.3e\n", schemes[k], ea, eb,
                eb / ea, out_err(L.W, &a, NULL, L.X, L.N), out_err(L.W, &b, NULL, L.X, L.N));
        CHECKF(eb <= ea * (1 + 1e-9), "%s: refined %.6e above %.6e", schemes[k], eb, ea);
        CHECKF(eb < ea, "%s: refinement changed nothing", schemes[k]);
        dsq_qsizes z;
        dsq_q_sizes(t, L.rows, L.cols, &z, NULL);
        CHECK(!memcmp(b.data, c.data, z.data + z.scale + z.zero));
        free(a.data); free(b.data); free(c.data);
    }
    dsq_pool_free(pool);
    free_layer(&L);
}

TEST(test_calib_gptq_target) {
    /* reference inputs r = x: the target is W H Hd^-1, W itself as damping
     * vanishes; r = x + a perturbation: the target V solves the normal
     * equations V Hd = W C of min sum_t |W r_t - V x_t|^2 (alpha = 1) and
     * alpha blends linearly */
    layer L;
    make_layer(&L, 12, 64, 400);
    int64_t n = L.cols, rows = L.rows;
    double *C = calloc((size_t)(n * n), sizeof *C);
    float *V = malloc(sizeof *V * (size_t)(rows * n)), *V2 = malloc(sizeof *V2 * (size_t)(rows * n));
    dsq_err err = {0};
    CHECK(dsq_gptq_target(L.W, rows, n, L.H, L.H, 1e-9, 1.0, V, &err) == 0);
    double md = 0, mw = 0;
    for (int64_t i = 0; i < rows * n; i++) {
        md = fmax(md, fabs(V[i] - L.W[i]));
        mw = fmax(mw, fabs(L.W[i]));
    }
    CHECKF(md < 1e-4 * mw, "target moved %.3e with identical inputs", md);
    for (int64_t t = 0; t < L.N; t++)
        for (int64_t i = 0; i < n; i++) {
            double ri = L.X[t * n + i] + 0.3 * sin((double)(t * 7 + i)); /* reference input */
            for (int64_t j = 0; j < n; j++) C[i * n + j] += ri * L.X[t * n + j] / (double)L.N;
        }
    CHECK(dsq_gptq_target(L.W, rows, n, L.H, C, 0.01, 1.0, V, &err) == 0);
    CHECK(dsq_gptq_target(L.W, rows, n, L.H, C, 0.01, 0.5, V2, &err) == 0);
    double mean = 0, worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) mean += L.H[i * n + i] / (double)n;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            double lhs = 0.01 * mean * V[r * n + j], rhs = 0;
            for (int64_t k = 0; k < n; k++) {
                lhs += (double)V[r * n + k] * L.H[k * n + j];
                rhs += (double)L.W[r * n + k] * C[k * n + j];
            }
            worst = fmax(worst, fabs(lhs - rhs));
            scale = fmax(scale, fabs(rhs));
            CHECK(fabs(V2[r * n + j] - 0.5 * (L.W[r * n + j] + V[r * n + j])) < 1e-5 * mw);
        }
    CHECKF(worst < 1e-4 * scale, "normal equations off by %.3e (scale %.3e)", worst, scale);
    free(C); free(V); free(V2);
    free_layer(&L);
}

/* The textbook loops dsq_spd_cholesky and dsq_spd_inv_chol (calib/linalg.h)
 * must match bit for bit. */
static int tb_cholesky(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int64_t k = 0; k < j; k++) s -= A[j * n + k] * A[j * n + k];
        if (!(s > 0)) return -1;
        double d = sqrt(s);
        A[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int64_t k = 0; k < j; k++) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / d;
        }
        for (int64_t i = 0; i < j; i++) A[i * n + j] = 0;
    }
    return 0;
}

static int tb_inv_chol(double *A, int64_t n, double *tmp) {
    if (tb_cholesky(A, n)) return -1;
    for (int64_t i = 0; i < n * n; i++) tmp[i] = 0;
    for (int64_t j = 0; j < n; j++) {
        tmp[j * n + j] = 1.0 / A[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0;
            for (int64_t k = j; k < i; k++) s += A[i * n + k] * tmp[k * n + j];
            tmp[i * n + j] = -s / A[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t k = i; k < n; k++) s += tmp[k * n + i] * tmp[k * n + j];
            A[i * n + j] = A[j * n + i] = s;
        }
    return tb_cholesky(A, n);
}

TEST(test_calib_spd_inv_chol_bits) {
    /* sizes around the panel (16) and row-group (4) edges and the vector widths */
    static const int64_t sizes[] = {1, 2, 5, 16, 17, 35, 64, 131};
    struct dsq_pool *pool = dsq_pool_new(3);
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        int64_t n = sizes[z];
        layer L;
        make_layer(&L, 1, n, 3 * n / 4 + 2); /* rank-deficient, as expert Hessians often are */
        double *a = malloc(sizeof *a * (size_t)(n * n)), *b = malloc(sizeof *b * (size_t)(n * n));
        double *t = malloc(sizeof *t * (size_t)(n * n));
        for (int64_t i = 0; i < n; i++) L.H[i * n + i] += 0.01;
        memcpy(b, L.H, sizeof *b * (size_t)(n * n));
        CHECK(tb_inv_chol(b, n, t) == 0);
        for (int k = 0; k < 2; k++) {
            memcpy(a, L.H, sizeof *a * (size_t)(n * n));
            CHECKF(dsq_spd_inv_chol(a, n, t, k ? pool : NULL) == 0, "n=%lld", (long long)n);
            CHECKF(!memcmp(a, b, sizeof *a * (size_t)(n * n)), "n=%lld threads %d: factor differs from the textbook loops",
                   (long long)n, k ? 3 : 1);
        }
        /* the factor alone, and a solve through it */
        memcpy(a, L.H, sizeof *a * (size_t)(n * n));
        memcpy(b, L.H, sizeof *b * (size_t)(n * n));
        CHECK(tb_cholesky(b, n) == 0);
        CHECK(dsq_spd_cholesky(a, n, pool) == 0);
        CHECKF(!memcmp(a, b, sizeof *a * (size_t)(n * n)), "n=%lld: Cholesky factor differs from the textbook loop",
               (long long)n);
        double *x = malloc(sizeof *x * (size_t)n), worst = 0, scale = 0;
        for (int64_t i = 0; i < n; i++) x[i] = (double)(i % 7) - 3;
        memcpy(a, L.H, sizeof *a * (size_t)(n * n));
        CHECK(dsq_spd_solve(a, x, n) == 0);
        for (int64_t i = 0; i < n; i++) {
            double ax = 0;
            for (int64_t k = 0; k < n; k++) ax += L.H[i * n + k] * x[k];
            worst = fmax(worst, fabs(ax - ((double)(i % 7) - 3)));
            scale = fmax(scale, fabs(ax));
        }
        CHECKF(worst < 1e-6 * (scale + 1), "n=%lld: solve residual %.3e", (long long)n, worst);
        free(x);
        /* not positive definite */
        for (int64_t i = 0; i < n * n; i++) a[i] = 0;
        a[0] = -1;
        CHECK(dsq_spd_inv_chol(a, n, t, pool) == -1);
        memcpy(b, a, sizeof *b * (size_t)(n * n));
        CHECK(dsq_spd_cholesky(b, n, NULL) == -1);
        free(a); free(b); free(t);
        free_layer(&L);
    }
    dsq_pool_free(pool);
}

/* One factor serves several matrices with the same input, byte for byte as
 * dsq_gptq, and refuses other options. */
TEST(test_calib_gptq_factor_reuse) {
    layer L, L2;
    make_layer(&L, 24, 96, 128);
    make_layer(&L2, 40, 96, 8); /* only its weights are used */
    int t = dsq_q_from_name("int4-g32-sym");
    dsq_err err = {0};
    dsq_gptq_opts o = {0.01, 1, 32, NULL, 4, 0, 0};
    dsq_gptq_factor *f;
    CHECK(dsq_gptq_factor_new(&f, L.H, L.cols, &o, &err) == 0);
    const float *W[2] = {L.W, L2.W};
    int64_t rows[2] = {L.rows, L2.rows};
    for (int k = 0; k < 2; k++) {
        dsq_qmat a = qm_alloc(t, rows[k], L.cols), b = qm_alloc(t, rows[k], L.cols);
        CHECK(dsq_gptq(W[k], rows[k], L.cols, L.H, &o, &a, NULL, &err) == 0);
        CHECK(dsq_gptq_apply(W[k], rows[k], NULL, f, &o, &b, NULL, &err) == 0);
        dsq_qsizes z;
        dsq_q_sizes(t, rows[k], L.cols, &z, NULL);
        CHECK(!memcmp(a.data, b.data, z.data + z.scale));
        free(a.data);
        free(b.data);
    }
    dsq_gptq_opts o2 = o;
    o2.act_order = 0;
    dsq_qmat c = qm_alloc(t, L.rows, L.cols);
    CHECK(dsq_gptq_apply(L.W, L.rows, NULL, f, &o2, &c, NULL, &err) == DSQ_E_ARG);
    free(c.data);
    dsq_gptq_factor_free(f);
    free_layer(&L);
    free_layer(&L2);
}
