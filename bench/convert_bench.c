/*
 * convert_bench.c -- end-to-end `dsq convert` (lossless), `dsq quant`
 * (presets), `dsq export` to GGUF (bf16, q8_0, q4_k) and the GGUF presets
 * (q4_k_m, iq4_xs) on a checkpoint: throughput as a ratio to `cat` of the same
 * shard files measured in the same run (both to /dev/null and into a file
 * in the output folder, the write-side floor), peak RSS against the largest
 * tensor.  Peak RSS is measured in a child process per job, so one job's
 * high-water mark does not hide the next one's.
 *
 * usage: convert_bench CKPT_DIR OUT_DIR [threads]
 */
#include "dsq.h"
#include "bench_util.h"
#include "pipeline/pipeline.h"

#include "formats/source.h"
#include <sys/wait.h>
#include <unistd.h>

static int run_job(const char *src, const char *out, const char *preset, int threads, double *secs,
                   double *rss_mib) {
    int fds[2];
    if (pipe(fds)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dsq_recipe r;
        dsq_err err = {0};
        if (!strncmp(preset, "gguf:", 5)) dsq_recipe_gguf(&r, preset + 5, &err); /* dsq export --type */
        else if (dsq_recipe_is_gguf_preset(preset)) { /* dsq quant --preset q4_k_m -o X.gguf */
            dsq_src *s;
            if (dsq_src_open(&s, src, 0, &err) || dsq_recipe_gguf_preset(&r, preset, s, NULL, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                _exit(1);
            }
            dsq_src_close(s);
        } else dsq_recipe_preset(&r, preset, &err);
        dsq_pipe_opts o = {0};
        o.src = src;
        o.out = out;
        o.recipe = &r;
        o.force = 1;
        o.threads = threads;
        dsq_pipe_report rep;
        double t0 = bu_now();
        int rc = dsq_pipeline_run(&o, &rep, &err);
        double res[2] = {bu_now() - t0, bu_peak_rss_mib()};
        if (rc) fprintf(stderr, "%s\n", err.msg);
        if (write(fds[1], res, sizeof res) != (ssize_t)sizeof res) rc = 1;
        _exit(rc ? 1 : 0);
    }
    close(fds[1]);
    double res[2] = {0, 0};
    ssize_t got = read(fds[0], res, sizeof res);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof res || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    *secs = res[0];
    *rss_mib = res[1];
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: convert_bench CKPT_DIR OUT_DIR [threads]\n");
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    dsq_err err = {0};
    dsq_ckpt *ck;
    if (dsq_ckpt_open(&ck, argv[1], 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char files[8192] = "";
    uint64_t bytes = 0, largest = 0, weights = 0;
    for (int s = 0; s < dsq_ckpt_n_shards(ck); s++) {
        size_t o = strlen(files);
        snprintf(files + o, sizeof files - o, "'%s/%s' ", argv[1], dsq_ckpt_shard_name(ck, s));
        bytes += dsq_ckpt_shard_size(ck, s);
    }
    for (int i = 0; i < dsq_ckpt_n_tensors(ck); i++) {
        const dsq_tinfo *t = dsq_ckpt_tensor(ck, i);
        if (t->nbytes > largest) largest = t->nbytes;
        if (t->role != DSQ_R_SCALE) weights += (uint64_t)t->numel;
    }
    dsq_ckpt_close(ck);
    bu_cat_seconds(files); /* warm the page cache */
    double cat_null = bu_cat_seconds(files);
    char out[4096], cmd[12288];
    snprintf(out, sizeof out, "%s/cat-floor.bin", argv[2]);
    /* write-side floors: cat into a file in the output folder, without and
     * with fsync (convert fsyncs its output before renaming it) */
    snprintf(cmd, sizeof cmd, "cat %s > '%s'", files, out);
    double t0 = bu_now();
    if (system(cmd) != 0) return 1;
    double cat_write = bu_now() - t0;
    unlink(out);
    snprintf(cmd, sizeof cmd, "cat %s > '%s' && sync '%s'", files, out, out);
    t0 = bu_now();
    if (system(cmd) != 0) return 1;
    double cat_file = bu_now() - t0;
    unlink(out);
    printf("source %s: %.3f GB in shards, largest tensor %.1f MiB; cat > /dev/null %.2f GB/s, "
           "cat > file %.2f GB/s, cat > file + sync %.2f GB/s\n",
           argv[1], (double)bytes / 1e9, (double)largest / 1048576.0, (double)bytes / cat_null / 1e9,
           (double)bytes / cat_write / 1e9, (double)bytes / cat_file / 1e9);
    static const char *const jobs[] = {"lossless", "int4-experts", "fp8", "int4", "gguf:bf16", "gguf:q8_0", "gguf:q4_k",
                                       "q4_k_m", "iq4_xs"};
    for (size_t j = 0; j < sizeof jobs / sizeof jobs[0]; j++) {
        double secs, rss;
        if (!strncmp(jobs[j], "gguf:", 5)) snprintf(out, sizeof out, "%s/bench-%s.gguf", argv[2], jobs[j] + 5);
        else if (dsq_recipe_is_gguf_preset(jobs[j])) snprintf(out, sizeof out, "%s/bench-%s.gguf", argv[2], jobs[j]);
        else snprintf(out, sizeof out, "%s/bench-%s.dsq", argv[2], jobs[j]);
        if (run_job(argv[1], out, jobs[j], threads, &secs, &rss)) {
            printf("%s: failed\n", jobs[j]);
            continue;
        }
        printf("%-13s %.2f s = %.2f GB/s source (%.0f M weights/s); ratio to cat>/dev/null %.2f, "
               "cat>file %.2f, cat>file+sync %.2f; peak RSS %.0f MiB = %.2f x largest tensor\n",
               jobs[j], secs, (double)bytes / secs / 1e9, (double)weights / secs / 1e6, cat_null / secs,
               cat_write / secs, cat_file / secs, rss, rss * 1048576.0 / (double)largest);
        unlink(out);
    }
    return 0;
}
