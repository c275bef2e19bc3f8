/*
 * read_bench.c -- read + dequantize throughput of a checkpoint: stream every
 * tensor (dsq_ckpt_stream) and widen it to f32 (FP8 with its block scales, BF16),
 * reported as a ratio to `cat` of the same shard files measured in the same
 * run, plus peak RSS.
 *
 * usage: read_bench CKPT_DIR [threads]
 */
#include "dsq.h"
#include "bench_util.h"
#include "common/pool.h"
#include "quant/dtype.h"

typedef struct {
    const dsq_tinfo *t;
    const void *data;
    const float *scale;
    int64_t cols, r0, r1;
    int br, bc;
    float *out;
} job;

static void run_job(void *vp) {
    job *j = vp;
    if (j->scale) {
        dsq_fp8_block_dequant(j->data, j->scale, j->cols, j->r0, j->r1, j->br, j->bc, j->out);
    } else {
        size_t es = dsq_dtype_size(j->t->dtype);
        dsq_to_f32(j->t->dtype, (const uint8_t *)j->data + (size_t)(j->r0 * j->cols) * es, j->out,
                   (j->r1 - j->r0) * j->cols);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: read_bench CKPT_DIR [threads]\n");
        return 2;
    }
    int nt = argc > 2 ? atoi(argv[2]) : dsq_default_threads();
    dsq_err err = {0};
    dsq_ckpt *ck;
    if (dsq_ckpt_open(&ck, argv[1], 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* the files, for the cat floor (and to warm the page cache first) */
    char files[8192] = "";
    uint64_t file_bytes = 0;
    for (int s = 0; s < dsq_ckpt_n_shards(ck); s++) {
        size_t o = strlen(files);
        snprintf(files + o, sizeof files - o, "'%s/%s' ", argv[1], dsq_ckpt_shard_name(ck, s));
        file_bytes += dsq_ckpt_shard_size(ck, s);
    }
    bu_cat_seconds(files);
    double cat_s = bu_cat_seconds(files);
    dsq_pool *pool = dsq_pool_new(nt);
    size_t cap = 0;
    float *out = NULL;
    job jobs[64];
    double t0 = bu_now();
    dsq_ckpt_stream *src;
    if (dsq_ckpt_stream_open(&src, ck, &err)) return 1;
    int idx;
    uint64_t weights = 0;
    const dsq_config *cfg = dsq_ckpt_config(ck);
    while (dsq_ckpt_stream_next(src, &idx, &err) == DSQ_OK) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, idx);
        if (t->role == DSQ_R_SCALE) continue;
        const void *p;
        if (dsq_ckpt_stream_data(src, &p, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        if ((size_t)t->numel > cap) {
            free(out);
            cap = (size_t)t->numel;
            out = malloc(cap * sizeof *out);
        }
        int64_t rows = t->n_dims == 2 ? t->shape[0] : 1, cols = t->numel / (rows ? rows : 1);
        int nj = rows >= 256 ? (nt * 4 < 64 ? nt * 4 : 64) : 1;
        for (int k = 0; k < nj; k++) {
            jobs[k] = (job){t, p, dsq_ckpt_scales(ck, idx, NULL, NULL), cols,
                            rows * k / nj, rows * (k + 1) / nj, cfg->block_rows, cfg->block_cols,
                            out + (rows * k / nj) * cols};
            dsq_pool_add(pool, run_job, &jobs[k]);
        }
        dsq_pool_join(pool);
        weights += (uint64_t)t->numel;
    }
    double dt = bu_now() - t0;
    dsq_ckpt_stream_close(src);
    printf("read+dequant %s: %.3f GB in %.3f s = %.2f GB/s (%.0f M weights/s, %d threads); "
           "cat %.2f GB/s; ratio %.2f; peak RSS %.0f MiB\n",
           argv[1], (double)file_bytes / 1e9, dt, (double)file_bytes / dt / 1e9,
           (double)weights / dt / 1e6, nt, (double)file_bytes / cat_s / 1e9, cat_s / dt,
           bu_peak_rss_mib());
    free(out);
    dsq_pool_free(pool);
    dsq_ckpt_close(ck);
    return 0;
}
