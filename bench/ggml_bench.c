/*
 * ggml_bench.c -- throughput of the ggml block schemes (q8_0 ... iq4_xs):
 * quantize from f32 (without and with per-column importance) and
 * dequantize to f32, on 1 thread and on all cores.
 *
 * Data: one [1024, 4096] f32 matrix of weight-like values (Gaussian with 1%
 * outliers, per-row spread; 16 MiB) and a log-normal importance vector.
 * Every figure is also given as a ratio to memcpy of the f32 matrix with the
 * same thread count, measured in the same run (quantize reads the f32
 * matrix once, dequantize writes it once; > 1 would be faster than memcpy).
 *
 * usage: ggml_bench [threads [scheme]]   (default: all cores or DSQ_THREADS,
 *        every ggml block scheme)
 */
#include "dsq.h"
#include "bench_util.h"
#include "common/pool.h"
#include "quant/quant.h"

#include <math.h>

#define ROWS 1024
#define COLS 4096

typedef struct djob {
    const dsq_qmat *m;
    float *out;
    int64_t r0, r1;
} djob;

static void dq_job(void *p) {
    djob *j = p;
    dsq_err err;
    if (dsq_q_dequantize(j->m, j->r0, j->r1, j->out + j->r0 * COLS, &err) != DSQ_OK) {
        fprintf(stderr, "ggml_bench: %s\n", err.msg);
        exit(1);
    }
}

typedef struct cjob {
    const uint8_t *a;
    uint8_t *b;
    size_t n;
} cjob;

static void copy_job(void *p) {
    cjob *j = p;
    memcpy(j->b, j->a, j->n);
}

enum { NJ = 64 };

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

/* Best of `reps` runs of `passes` repetitions of fn over NJ jobs, seconds per pass. */
static double timed(dsq_pool *pool, void (*fn)(void *), void *jobs, size_t stride, int passes, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bu_now();
        for (int p = 0; p < passes; p++) dsq_pool_for(pool, NJ, fn, jobs, stride);
        double t = (bu_now() - t0) / passes;
        if (t < best) best = t;
    }
    return best;
}

static double memcpy_seconds(dsq_pool *pool, const void *a, void *b, size_t n) {
    cjob jobs[NJ];
    for (int i = 0; i < NJ; i++) {
        size_t o = n * (size_t)i / NJ, e = n * (size_t)(i + 1) / NJ;
        jobs[i] = (cjob){(const uint8_t *)a + o, (uint8_t *)b + o, e - o};
    }
    return timed(pool, copy_job, jobs, sizeof jobs[0], 10, 3);
}

static double quant_seconds(dsq_pool *pool, const dsq_qmat *src, const dsq_qmat *dst, const dsq_qopts *o) {
    double best = 1e30;
    for (int r = 0; r < 2; r++) {
        double t0 = bu_now();
        dsq_err err;
        if (dsq_q_quantize_pool(pool, src, dst, o, &err) != DSQ_OK) {
            fprintf(stderr, "ggml_bench: %s\n", err.msg);
            exit(1);
        }
        double t = bu_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int all = argc > 1 ? atoi(argv[1]) : dsq_default_threads();
    if (all < 1) all = 1;
    const size_t nf = (size_t)ROWS * COLS;
    float *x = malloc(sizeof(float) * nf), *y = malloc(sizeof(float) * nf), *imp = malloc(sizeof(float) * COLS);
    uint8_t *q = malloc(nf * 2);
    if (!x || !y || !imp || !q) {
        fprintf(stderr, "ggml_bench: out of memory\n");
        return 1;
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < nf; k++) {
        double g = gauss(&rng);
        if (u01(&rng) < 0.01) g *= 6;
        x[k] = (float)(g * 0.02 * (1 + (double)(k / COLS % 7) / 7));
    }
    for (int c = 0; c < COLS; c++) imp[c] = (float)exp(1.5 * gauss(&rng));
    memset(y, 0, sizeof(float) * nf);
    memset(q, 0, nf * 2);
    const double gb = (double)sizeof(float) * nf / 1e9;
    printf("ggml_bench: kernels %s, [%d, %d] f32 weights (%.0f MiB)\n", dsq_q_simd_name(), ROWS, COLS,
           sizeof(float) * nf / 1048576.0);
    dsq_qmat src = {DSQ_Q_F32, ROWS, COLS, x, NULL, NULL};
    dsq_qopts with_imp = {imp, 0, 0, 0};
    int tcounts[2] = {1, all};
    for (int ti = 0; ti < (all > 1 ? 2 : 1); ti++) {
        int nt = tcounts[ti];
        dsq_pool *pool = dsq_pool_new(nt);
        if (!pool) return 1;
        double tc = memcpy_seconds(pool, x, y, sizeof(float) * nf);
        printf("memcpy of the f32 matrix   threads %d  %6.2f GB/s\n", nt, gb / tc);
        for (int t = DSQ_Q_GGML_Q8_0; t <= DSQ_Q_GGML_IQ4_XS; t++) {
            if (argc > 2 && dsq_q_from_name(argv[2]) != t) continue;
            const char *name = dsq_q_scheme(t)->name;
            dsq_qmat dst = {t, ROWS, COLS, q, NULL, NULL};
            double tq = quant_seconds(pool, &src, &dst, NULL), ti2 = quant_seconds(pool, &src, &dst, &with_imp);
            djob jobs[NJ];
            for (int i = 0; i < NJ; i++) jobs[i] = (djob){&dst, y, (int64_t)ROWS * i / NJ, (int64_t)ROWS * (i + 1) / NJ};
            double td = timed(pool, dq_job, jobs, sizeof jobs[0], 10, 3);
            printf("%-7s threads %d  quantize %7.2f Mw/s (%.4f x memcpy), with importance %7.2f Mw/s (%.4f x);"
                   "  dequantize %6.2f GB/s f32 (%.2f x memcpy)\n",
                   name, nt, nf / tq / 1e6, tc / tq, nf / ti2 / 1e6, tc / ti2, gb / td, tc / td);
        }
        dsq_pool_free(pool);
    }
    free(x);
    free(y);
    free(imp);
    free(q);
    return 0;
}
