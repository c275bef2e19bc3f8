/*
 * eval_bench.c -- speed of the reference forward pass:
 *   1) the f32 GEMM kernel (verify/gemm.c) on the tile shapes the forward
 *      pass feeds it, as GFLOP/s and as a ratio to a tight FMA loop measured
 *      in the same run (one thread each: the kernel's efficiency, not the
 *      machine's core count);
 *   2) eval throughput, tokens/s of prefill over windows of CTX tokens, on
 *      each checkpoint given (e.g. the shared tiny model and bench-1b).
 *
 * usage: eval_bench [--threads N] [--ctx N] [--windows N] [--no-gemm] [CKPT_DIR...]
 *
 * The machine may be shared: the FMA peak is the best of three runs and
 * every GEMM figure the best of three, so the ratio compares good moments.
 */
#include "dsq.h"
#include "bench_util.h"
#include "common/common.h"
#include "common/pool.h"
#include "formats/tokenizer.h"
#include "verify/eval.h"
#include "verify/gemm.h"
#include "verify/weights.h"
#include "pipeline/model.h"
#include "quant/quant_int.h"

#if defined(__x86_64__) && !defined(DSQ_NO_SIMD)
#include <immintrin.h>
/* 12 independent FMA chains: enough to cover FMA latency x pipes. */
__attribute__((target("avx2,fma"))) static double fma_peak_avx2(void) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + 0.01f * (float)i);
    long n = 10000000;
    double t0 = bu_now();
    for (long it = 0; it < n; it++) {
        a[0] = _mm256_fmadd_ps(a[0], b, c); a[1] = _mm256_fmadd_ps(a[1], b, c);
        a[2] = _mm256_fmadd_ps(a[2], b, c); a[3] = _mm256_fmadd_ps(a[3], b, c);
        a[4] = _mm256_fmadd_ps(a[4], b, c); a[5] = _mm256_fmadd_ps(a[5], b, c);
        a[6] = _mm256_fmadd_ps(a[6], b, c); a[7] = _mm256_fmadd_ps(a[7], b, c);
        a[8] = _mm256_fmadd_ps(a[8], b, c); a[9] = _mm256_fmadd_ps(a[9], b, c);
        a[10] = _mm256_fmadd_ps(a[10], b, c); a[11] = _mm256_fmadd_ps(a[11], b, c);
    }
    double dt = bu_now() - t0;
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return (double)n * 12 * 8 * 2 / dt / 1e9;
}
#endif
static double fma_peak_scalar(void) {
    float a[12] = {0}, b = 0.999999f, c = 1e-7f;
    long n = 20000000;
    double t0 = bu_now();
    for (long it = 0; it < n; it++)
        for (int i = 0; i < 12; i++) a[i] = a[i] * b + c;
    double dt = bu_now() - t0;
    volatile float sink = a[0] + a[11];
    (void)sink;
    return (double)n * 12 * 2 / dt / 1e9;
}
/* The floor of the kernel the GEMM runs: AVX2+FMA when the library's CPU
 * probe has it. */
static double fma_peak_gflops(void) {
#if defined(__x86_64__) && !defined(DSQ_NO_SIMD)
    const dsq_cpu *cpu = dsq_cpu_get();
    if (cpu->avx2 && cpu->fma) return fma_peak_avx2();
#endif
    return fma_peak_scalar();
}

/* One thread, the way lin() uses the kernel: T tokens against a weight
 * matrix walked in tiles of `nb` rows (best of 3). */
static double gemm_gflops(int T, int N, int K, int nb) {
    float *X = dsq_aalloc(sizeof(float) * (size_t)T * K), *W = dsq_aalloc(sizeof(float) * (size_t)N * K);
    float *Y = dsq_aalloc(sizeof(float) * (size_t)T * N), *pack = dsq_aalloc(DSQ_GEMM_PACK * sizeof(float));
    for (size_t i = 0; i < (size_t)T * K; i++) X[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 7) * 0.01f;
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bu_now();
        for (int n0 = 0; n0 < N; n0 += nb)
            dsq_gemm_nt(T, N - n0 < nb ? N - n0 : nb, K, X, K, W + (size_t)n0 * K, K, Y + n0, N, 0, pack);
        double dt = bu_now() - t0;
        if (dt < best) best = dt;
    }
    dsq_afree(X); dsq_afree(W); dsq_afree(Y); dsq_afree(pack);
    return 2.0 * T * N * (double)K / best / 1e9;
}

/* Tokens for the eval run: the model's own eval.tokens.json when present,
 * else a fixed pseudo-random sequence (speed does not depend on the text). */
static int32_t *bench_tokens(const char *dir, int V, int64_t want, int64_t *n) {
    size_t got = 0;
    char path[4096];
    dsq_err err;
    int32_t *tok = NULL;
    snprintf(path, sizeof path, "%s/eval.tokens.json", dir);
    if (dsq_tokens_load_json(path, &tok, &got, &err) == DSQ_OK && (int64_t)got >= want) {
        *n = (int64_t)got;
        return tok;
    }
    free(tok);
    tok = malloc(sizeof *tok * (size_t)want);
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < want; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        tok[i] = i ? (int32_t)(s % (uint64_t)V) : 0;
    }
    *n = want;
    return tok;
}

int main(int argc, char **argv) {
    int threads = dsq_default_threads(), ctx = 256, windows = 8, gemm = 1;
    const char *dirs[16];
    int nd = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--windows") && i + 1 < argc) windows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-gemm")) gemm = 0;
        else if (nd < 16) dirs[nd++] = argv[i];
    }
    double peak = 0;
    for (int r = 0; gemm && r < 3; r++) {
        double p = fma_peak_gflops();
        if (p > peak) peak = p;
    }
    if (gemm) printf("fma peak (1 thread): %.1f GFLOP/s; gemm kernel: %s\n", peak, dsq_gemm_kernel());
    /* bench-1b shapes with the tile heights the forward pass picks */
    static const int shapes[][4] = {
        {256, 2048, 1024, 96},  /* q/kv/o projections, lm_head (hidden 1024) */
        {256, 1536, 768, 144},  /* q_b */
        {32, 512, 1024, 96},    /* routed experts with 32, 72 and 120 tokens */
        {72, 512, 1024, 96},
        {120, 512, 1024, 96},
        {256, 1024, 2816, 48},  /* dense down projection */
    };
    for (size_t i = 0; gemm && i < sizeof shapes / sizeof shapes[0]; i++) {
        double g = gemm_gflops(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
        printf("gemm T=%d N=%d K=%d (tiles of %d rows): %.1f GFLOP/s = %.2f of fma peak\n",
               shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], g, g / peak);
    }
    for (int d = 0; d < nd; d++) {
        dsq_err err = {0};
        dsq_src *m; /* checkpoint folder or .dsq container in any scheme */
        dsq_weights w;
        if (dsq_model_open(&m, &w, dirs[d], &err)) {
            fprintf(stderr, "%s\n", err.msg);
            continue;
        }
        int64_t n;
        int32_t *tok = bench_tokens(dirs[d], w.cfg->vocab_size, (int64_t)ctx * windows, &n);
        dsq_eval_opts o = {.ctx = ctx, .max_windows = windows, .n_threads = threads};
        dsq_eval_result r;
        /* one window first: page the shards in and touch every buffer once */
        dsq_eval_opts warm = o;
        warm.max_windows = 1;
        dsq_eval_run(&w, tok, n, &warm, &r, &err);
        double dt = 1e30;
        int rc = 0;
        for (int rep = 0; rep < 2 && !rc; rep++) { /* best of two */
            double t0 = bu_now();
            rc = dsq_eval_run(&w, tok, n, &o, &r, &err);
            if (bu_now() - t0 < dt) dt = bu_now() - t0;
        }
        if (rc) {
            fprintf(stderr, "%s\n", err.msg);
        } else {
            printf("eval %s: %lld windows x %d tokens, %d threads: %.0f tokens/s (ppl %.4f); "
                   "peak RSS %.0f MiB\n", dirs[d], (long long)r.n_windows, r.ctx, threads,
                   (double)(r.n_windows * r.ctx) / dt, r.ppl, bu_peak_rss_mib());
        }
        free(tok);
        dsq_src_close(m);
    }
    return 0;
}
