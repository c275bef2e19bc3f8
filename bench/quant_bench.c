/*
 * quant_bench.c -- re-quantization throughput of routed-expert weights from
 * the upstream FP8 block-scaled layout, on 1 thread and on all cores.
 *
 * Data: one MoE layer of the "bench-1b" shape generated in memory: 64 experts
 * x {gate [512, 1024], up [512, 1024], down [1024, 512]}, E4M3 with f32
 * power-of-two 128x128 block scales (~100 MB of FP8), processed PASSES times
 * so each measurement moves ~0.5 GB of source bytes.  Jobs are whole expert
 * matrices, the way per-expert quantization is scheduled.
 *
 * Reported per measurement (one line each): source GB/s, weights/s, and the
 * ratio to memcpy of the same number of bytes with the same thread count,
 * measured in the same run.
 *
 * usage: quant_bench [threads [scheme]]   (default: all cores or DSQ_THREADS,
 *        int4-g128-sym, int4-g128-asym, fp8-block-ue8m0 and fp8-block)
 */
#include "dsq.h"
#include "bench_util.h"
#include "common/pool.h"
#include "quant/quant.h"

#include <math.h>

#define N_EXP 64
#define N_MAT (3 * N_EXP)
#define PASSES 5

typedef struct mat {
    dsq_qmat src;          /* FP8 block source (views into one buffer)  */
    dsq_qmat dst;          /* destination of the current measurement    */
} mat;

typedef struct cjob {
    const uint8_t *a;
    uint8_t *b;
    size_t n;
} cjob;

static void copy_job(void *p) {
    cjob *j = p;
    memcpy(j->b, j->a, j->n);
}

static void quant_job(void *p) {
    mat *m = p;
    dsq_err err;
    if (dsq_q_quantize(&m->src, &m->dst, 0, m->src.rows, NULL, &err) != DSQ_OK) {
        fprintf(stderr, "quant_bench: %s\n", err.msg);
        exit(1);
    }
}

/* Seconds for PASSES copies of n bytes split over the pool (best of 3). */
static double memcpy_seconds(dsq_pool *pool, const uint8_t *a, uint8_t *b, size_t n) {
    enum { NJ = 64 };
    cjob jobs[NJ];
    for (int i = 0; i < NJ; i++) {
        size_t o = n * (size_t)i / NJ, e = n * (size_t)(i + 1) / NJ;
        jobs[i] = (cjob){a + o, b + o, e - o};
    }
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bu_now();
        for (int p = 0; p < PASSES; p++) dsq_pool_for(pool, NJ, copy_job, jobs, sizeof jobs[0]);
        double t = bu_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* Seconds for PASSES quantizations of every matrix into scheme t (best of 2). */
static double quant_seconds(dsq_pool *pool, mat *m, int t, uint8_t *out) {
    size_t off = 0;
    for (int i = 0; i < N_MAT; i++) {
        dsq_qsizes z;
        dsq_q_sizes(t, m[i].src.rows, m[i].src.cols, &z, NULL);
        m[i].dst = (dsq_qmat){t, m[i].src.rows, m[i].src.cols, out + off, out + off + z.data,
                              z.zero ? out + off + z.data + z.scale : NULL};
        off += z.data + z.scale + z.zero;
    }
    double best = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = bu_now();
        for (int p = 0; p < PASSES; p++) dsq_pool_for(pool, N_MAT, quant_job, m, sizeof m[0]);
        double s = bu_now() - t0;
        if (s < best) best = s;
    }
    return best;
}

int main(int argc, char **argv) {
    int all = argc > 1 ? atoi(argv[1]) : dsq_default_threads();
    if (all < 1) all = 1;
    static mat m[N_MAT];
    size_t nbytes = 0, nscale = 0;
    for (int i = 0; i < N_MAT; i++) {
        int down = i % 3 == 2;
        m[i].src = (dsq_qmat){DSQ_Q_FP8_BLOCK, down ? 1024 : 512, down ? 512 : 1024, NULL, NULL, NULL};
        nbytes += 512 * 1024;
        nscale += 4 * 4 * 8 + 512 * 8; /* f32 block scales, or room for INT4 zero points */
    }
    uint8_t *fp8 = malloc(nbytes), *copy = malloc(nbytes), *out = malloc(nbytes + nscale);
    float *scales = malloc(nscale), *w = malloc(sizeof(float) * 512 * 1024);
    uint8_t ue[32];
    if (!fp8 || !copy || !out || !scales || !w) {
        fprintf(stderr, "quant_bench: out of memory\n");
        return 1;
    }
    /* Generate: weights with a per-row spread, quantized by the library to
     * FP8 with UE8M0 block scales, scales widened to the upstream f32 grid. */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N_MAT; i++) {
        dsq_qmat *s = &m[i].src;
        for (int64_t k = 0; k < s->rows * s->cols; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            w[k] = ((float)(rng >> 40) / 16777216.0f - 0.5f) * 0.02f * (float)(1 + (k / s->cols) % 7);
        }
        s->data = fp8 + (size_t)i * 512 * 1024;
        s->scale = scales + (size_t)i * 32;
        dsq_qmat f = {DSQ_Q_F32, s->rows, s->cols, w, NULL, NULL};
        dsq_qmat q = {DSQ_Q_FP8_BLOCK_UE8M0, s->rows, s->cols, s->data, ue, NULL};
        if (dsq_q_quantize(&f, &q, 0, s->rows, NULL, NULL) != DSQ_OK) return 1;
        for (int k = 0; k < 32; k++) ((float *)s->scale)[k] = ldexpf(1.0f, ue[k] - 127);
    }
    free(w);
    memset(out, 0, nbytes + nscale); /* no first-touch page faults inside a measurement */
    memset(copy, 0, nbytes);
    double src_gb = (double)nbytes * PASSES / 1e9, gw = (double)nbytes * PASSES / 1e9;
    printf("quant_bench: kernels %s, %d expert matrices, %.2f GB of FP8 source per measurement\n",
           dsq_q_simd_name(), N_MAT, src_gb);
    int tcounts[2] = {1, all};
    for (int ti = 0; ti < (all > 1 ? 2 : 1); ti++) {
        int nt = tcounts[ti];
        dsq_pool *pool = dsq_pool_new(nt);
        if (!pool) return 1;
        double tc = memcpy_seconds(pool, fp8, copy, nbytes);
        printf("memcpy                              threads %d  %6.2f GB/s\n", nt, src_gb / tc);
        const int ts[] = {DSQ_Q_INT4_G128_SYM, DSQ_Q_INT4_G128_ASYM, DSQ_Q_FP8_BLOCK_UE8M0, DSQ_Q_FP8_BLOCK};
        for (int k = 0; k < 4; k++) {
            if (argc > 2 && dsq_q_from_name(argv[2]) != ts[k]) continue;
            double tq = quant_seconds(pool, m, ts[k], out);
            printf("fp8-block -> %-20s   threads %d  %6.2f GB/s  %6.3f Gweights/s  %.2f x memcpy\n",
                   dsq_q_scheme(ts[k])->name, nt, src_gb / tq, gw / tq, tc / tq);
        }
        dsq_pool_free(pool);
    }
    free(fp8);
    free(copy);
    free(out);
    free(scales);
    return 0;
}
