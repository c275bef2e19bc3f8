/*
 * gguf_bench.c -- GGUF block quantization on the real DeepSeek-V3.2 tensor
 * shapes (hidden 7168, routed expert 2048, q_lora 1536, kv_lora 512, 128
 * heads, indexer 64 x 128), all cores:
 *   - importance-weighted block search (the presets' `mse` and llama.cpp's
 *     imatrix way) of each shape into q4_k, iq4_xs and q6_k, as M weights/s
 *     and as a ratio to memcpy of the same f32 matrix in the same run;
 *   - GPTQ on the block grids (the presets' calibrated default) of one
 *     routed expert's down_proj [7168, 2048] and gate_proj [2048, 7168]
 *     into q4_k: the Hessian factor and the pass, in seconds and GFLOP/s
 *     (cols^3 / 3 for the factor, rows * cols^2 for the pass) as a ratio to
 *     an FMA loop of the same thread count measured in the same run;
 *   - peak RSS.
 * Data: Gaussian weights with 1 % outliers; a banded Hessian of correlated,
 * unequally scaled columns (the memcpy floor is single-threaded).
 *
 * usage: gguf_bench [threads]
 */
#include "dsq.h"
#include "bench_util.h"
#include "calib/methods.h"
#include "common/pool.h"
#include "quant/quant.h"

#include <math.h>

static double u01(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(uint64_t *s) {
    double u = u01(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * u01(s));
}

typedef struct fjob { double gflops; } fjob;
/* One thread's scalar-visible FMA rate (the compiler vectorises the 16
 * independent chains), GFLOP/s. */
static void fma_job(void *p) {
    fjob *j = p;
    float a[16], b = 0.999999f, c = 1e-7f;
    for (int i = 0; i < 16; i++) a[i] = 1.0f + 0.01f * (float)i;
    long n = 20000000;
    double t0 = bu_now();
    for (long it = 0; it < n; it++)
        for (int i = 0; i < 16; i++) a[i] = a[i] * b + c;
    double dt = bu_now() - t0;
    volatile float sink = a[0] + a[15];
    (void)sink;
    j->gflops = (double)n * 16 * 2 / dt / 1e9;
}

static void die(const char *what, const dsq_err *err) {
    fprintf(stderr, "gguf_bench: %s: %s\n", what, err ? err->msg : "out of memory");
    exit(1);
}

static float *weights(int64_t rows, int64_t cols, uint64_t seed) {
    float *x = malloc(sizeof *x * (size_t)(rows * cols));
    if (!x) die("weights", NULL);
    for (int64_t k = 0; k < rows * cols; k++) {
        double g = gauss(&seed);
        if (u01(&seed) < 0.01) g *= 6;
        x[k] = (float)(g * 0.02);
    }
    return x;
}

/* H = D S D: S the exact covariance of x_j = z_j + (z_{j+1} + z_{j+2} +
 * z_{j+3}) / 2 for independent unit z (1.75 on the diagonal, 1, 0.75, 0.5
 * on the next three), D a log-normal per-column scale, so columns are
 * correlated and unequally important, as activations are. */
static double *hessian(int64_t cols, uint64_t seed) {
    double *H = calloc((size_t)(cols * cols), sizeof *H), *d = malloc(sizeof *d * (size_t)cols);
    if (!H || !d) die("hessian", NULL);
    static const double band[4] = {1.75, 1.0, 0.75, 0.5};
    for (int64_t j = 0; j < cols; j++) d[j] = exp(0.75 * gauss(&seed));
    for (int64_t i = 0; i < cols; i++)
        for (int64_t k = -3; k <= 3; k++) {
            int64_t j = i + k;
            if (j >= 0 && j < cols) H[i * cols + j] = d[i] * d[j] * band[k < 0 ? -k : k];
        }
    free(d);
    return H;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : dsq_default_threads();
    if (nt < 1) nt = 1;
    dsq_pool *pool = dsq_pool_new(nt);
    if (!pool) die("pool", NULL);
    fjob fj[64];
    int nf = nt < 64 ? nt : 64;
    for (int i = 0; i < nf; i++) dsq_pool_add(pool, fma_job, &fj[i]);
    dsq_pool_join(pool);
    double fma = 0;
    for (int i = 0; i < nf; i++) fma += fj[i].gflops;
    printf("gguf_bench: kernels %s, %d threads; FMA loop %.1f GFLOP/s\n", dsq_q_simd_name(), nt, fma);
    static const struct { const char *name; int64_t rows, cols; } shapes[] = {
        {"routed expert gate/up", 2048, 7168}, {"routed expert down", 7168, 2048}, {"attn q_a", 1536, 7168},
        {"attn q_b", 24576, 1536},            {"attn kv_b", 32768, 512},          {"attn o", 7168, 16384},
        {"indexer wq_b", 8192, 1536},         {"dense down", 7168, 18432},
    };
    static const int types[] = {DSQ_Q_GGML_Q4_K, DSQ_Q_GGML_IQ4_XS, DSQ_Q_GGML_Q6_K};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t R = shapes[s].rows, C = shapes[s].cols;
        float *x = weights(R, C, 0x9E3779B97F4A7C15ull + s), *y = malloc(sizeof *y * (size_t)(R * C));
        float *imp = malloc(sizeof *imp * (size_t)C);
        uint8_t *q = malloc((size_t)(R * C));
        if (!y || !imp || !q) die("buffers", NULL);
        uint64_t rs = 7 + s;
        for (int64_t c = 0; c < C; c++) imp[c] = (float)exp(1.5 * gauss(&rs));
        double gbs = bu_memcpy_gbs(sizeof *y * (size_t)(R * C)), tc = 4.0 * (double)(R * C) / 1e9 / gbs, t0;
        printf("%-22s [%5lld, %5lld]  memcpy %.2f GB/s", shapes[s].name, (long long)R, (long long)C, gbs);
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            dsq_qmat src = {DSQ_Q_F32, R, C, x, NULL, NULL}, dst = {types[k], R, C, q, NULL, NULL};
            dsq_qopts o = {imp, 0, 0, 0};
            dsq_err err;
            t0 = bu_now();
            if (dsq_q_quantize_pool(pool, &src, &dst, &o, &err)) die(shapes[s].name, &err);
            double tq = bu_now() - t0;
            printf("  %s %.1f Mw/s (%.3f x memcpy)", dsq_q_scheme(types[k])->name, (double)(R * C) / tq / 1e6, tc / tq);
        }
        printf("\n");
        fflush(stdout);
        free(x);
        free(y);
        free(imp);
        free(q);
    }
    /* GPTQ on the q4_k grid, one routed expert's down and gate */
    static const struct { const char *name; int64_t rows, cols; } gq[] = {{"expert down", 7168, 2048},
                                                                        {"expert gate", 2048, 7168}};
    double tfs[2], tas[2];
    for (size_t s = 0; s < sizeof gq / sizeof gq[0]; s++) {
        int64_t R = gq[s].rows, C = gq[s].cols;
        float *W = weights(R, C, 0xC0FFEEull + s);
        double *H = hessian(C, 99 + s), t0;
        uint8_t *q = malloc((size_t)(R * C));
        if (!q) die("gptq", NULL);
        dsq_qmat dst = {DSQ_Q_GGML_Q4_K, R, C, q, NULL, NULL};
        dsq_gptq_opts go = {0.01, 0, 128, pool, 0, 0, 0};
        dsq_gptq_factor *f;
        dsq_err err;
        t0 = bu_now();
        if (dsq_gptq_factor_new(&f, H, C, &go, &err)) die("gptq factor", &err);
        double tf = bu_now() - t0;
        t0 = bu_now();
        if (dsq_gptq_apply(W, R, NULL, f, &go, &dst, NULL, &err)) die("gptq apply", &err);
        double ta = bu_now() - t0;
        double ff = (double)C * C * C / 3 / tf / 1e9, fa = (double)R * C * C / ta / 1e9;
        printf("gptq q4_k %-12s [%5lld, %5lld]  factor %.2f s (%.1f GFLOP/s = %.3f x FMA), pass %.2f s "
               "(%.1f GFLOP/s = %.3f x FMA)\n",
               gq[s].name, (long long)R, (long long)C, tf, ff, ff / fma, ta, fa, fa / fma);
        tfs[s] = tf;
        tas[s] = ta;
        dsq_gptq_factor_free(f);
        free(H);
        free(W);
        free(q);
    }
    /* gate and up share one factor (one input) */
    double per = tfs[0] + tas[0] + tfs[1] + 2 * tas[1];
    printf("gptq q4_k, one routed expert (gate, up, down): %.1f s; 256 experts x 58 MoE layers: %.1f h on %d threads\n",
           per, per * 256 * 58 / 3600, nt);
    printf("peak RSS %.0f MiB\n", bu_peak_rss_mib());
    dsq_pool_free(pool);
    return 0;
}
