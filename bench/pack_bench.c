/*
 * pack_bench.c -- `dsq pack` / `dsq unpack` / `dsq check` of a pack on a
 * container of at least 1 GB: throughput as a ratio to `cat` of the same
 * container measured in the same run (to /dev/null, into a file in the
 * output folder, and into a file followed by sync, since pack and unpack
 * fsync their output before the rename), and peak RSS.  Each job runs in a
 * child process so its peak RSS is its own; dirty pages are synced before
 * every timed step so one step's writeback does not land in the next.
 * Floors are the best of three runs and jobs the best of two.
 * Unpacked containers are compared with the original by xxh3.
 *
 * usage: pack_bench CONTAINER.dsq OUT_DIR [gzip]
 */
#include "dsq.h"
#include "bench_util.h"
#include "common.h"
#include "common/pool.h"
#include "formats/pack.h"
#include "pipeline/card.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct job {
    const char *name;
    int unpack;            /* 0 pack, 1 unpack, 2 check */
    int compress;
    char archive[4096];
} job;

static double cpu_of(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static int run_job(const job *j, const char *src, const char *out_dir, uint64_t part, double *secs,
                   double *rss_mib, double *cpu) {
    int fds[2];
    if (pipe(fds)) return -1;
    /* every timed step starts without its previous output, like the floors */
    char prev[8300];
    snprintf(prev, sizeof prev, "%s/%s", out_dir, dsq_basename(src));
    if (j->unpack == 0) unlink(j->archive);
    if (j->unpack == 1) unlink(prev);
    sync();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dsq_err err = {0};
        dsq_pack_info info;
        int rc;
        double t0 = bu_now();
        if (j->unpack == 0) {
            dsq_pack_opts o = {0};
            o.src = src;
            o.out = j->archive;
            o.part_size = part;
            o.compress = j->compress;
            o.threads = dsq_default_threads();
            o.force = 1;
            rc = dsq_pack_with_card(&o, NULL, &info, &err);
        } else if (j->unpack == 1) {
            rc = dsq_unpack(j->archive, out_dir, DSQ_UNPACK_FORCE, NULL, NULL, &info, &err);
        } else {
            rc = dsq_pack_check(j->archive, &info, &err);
        }
        double res[3] = {bu_now() - t0, bu_peak_rss_mib(), cpu_of(RUSAGE_SELF)};
        if (rc) fprintf(stderr, "%s: %s\n", j->name, err.msg);
        if (write(fds[1], res, sizeof res) != (ssize_t)sizeof res) rc = 1;
        _exit(rc ? 1 : 0);
    }
    close(fds[1]);
    double res[3] = {0, 0, 0};
    ssize_t got = read(fds[0], res, sizeof res);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof res || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    *secs = res[0];
    *rss_mib = res[1];
    *cpu = res[2];
    return 0;
}

/* Best of three: the floors are cheap and the machine is shared.  *cpu
 * receives the CPU seconds (user + system) of that run.  `out` (may be
 * NULL) is removed before each run: writing a new file costs more than
 * overwriting one whose pages the kernel can reuse, and pack and unpack
 * always write a new (temporary) file. */
static double best_of(const char *cmd, const char *out, double *cpu) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        if (out) unlink(out);
        sync();
        double c0 = cpu_of(RUSAGE_CHILDREN), t0 = bu_now();
        if (system(cmd) != 0) return -1;
        double t = bu_now() - t0;
        if (t < best) {
            best = t;
            *cpu = cpu_of(RUSAGE_CHILDREN) - c0;
        }
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pack_bench CONTAINER.dsq OUT_DIR [gzip]\n");
        return 2;
    }
    const char *src = argv[1], *dir = argv[2];
    int with_gzip = argc > 3 && !strcmp(argv[3], "gzip");
    struct stat st;
    if (stat(src, &st) != 0) {
        perror(src);
        return 1;
    }
    uint64_t bytes = (uint64_t)st.st_size, want;
    if (bytes < 1000000000ull) fprintf(stderr, "warning: %s is under 1 GB\n", src);
    dsq_err err = {0};
    if (dsq_file_xxh3(src, &want, NULL, &err)) { /* also warms the page cache */
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char cmd[12288], floor[4096], out_dir[4096];
    snprintf(floor, sizeof floor, "%s/cat-floor.bin", dir);
    snprintf(out_dir, sizeof out_dir, "%s/pack-bench-out", dir);
    double cpu_null, cpu_file, cpu_sync;
    snprintf(cmd, sizeof cmd, "cat '%s' > /dev/null", src);
    double cat_null = best_of(cmd, NULL, &cpu_null);
    snprintf(cmd, sizeof cmd, "cat '%s' > '%s'", src, floor);
    double cat_file = best_of(cmd, floor, &cpu_file);
    snprintf(cmd, sizeof cmd, "cat '%s' > '%s' && sync '%s'", src, floor, floor);
    double cat_sync = best_of(cmd, floor, &cpu_sync);
    unlink(floor);
    if (cat_null <= 0 || cat_file <= 0 || cat_sync <= 0) return 1;
    /* four parts, so part boundaries are crossed */
    uint64_t part = (bytes + 3) / 4;
    printf("container %s: %.3f GB in parts of %.0f MiB\n"
           "floors (best of 3): cat > /dev/null %.2f GB/s (cpu %.2f s), cat > file %.2f GB/s (cpu %.2f s), "
           "cat > file + sync %.2f GB/s (cpu %.2f s)\n",
           src, (double)bytes / 1e9, (double)part / 1048576.0, (double)bytes / cat_null / 1e9, cpu_null,
           (double)bytes / cat_file / 1e9, cpu_file, (double)bytes / cat_sync / 1e9, cpu_sync);
    job jobs[9];
    int nj = 0;
    static const char *const ext[3] = {"tar", "tar.gz", "tar.zst"};
    for (int c = 0; c < 3; c++) {
        if (c == DSQ_PACK_GZIP && !with_gzip) continue;
        char an[4096];
        snprintf(an, sizeof an, "%s/pack-bench.%s", dir, ext[c]);
        static const char *const names[3][3] = {{"pack", "check", "unpack"},
                                                {"pack gzip", "check gzip", "unpack gzip"},
                                                {"pack zstd", "check zstd", "unpack zstd"}};
        static const int kind[3] = {0, 2, 1};
        for (int k = 0; k < 3; k++) {
            job *j = &jobs[nj++];
            j->name = names[c][k];
            j->unpack = kind[k];
            j->compress = c;
            snprintf(j->archive, sizeof j->archive, "%s", an);
        }
    }
    int failed = 0;
    for (int i = 0; i < nj; i++) {
        /* best of two runs (the machine is shared); the larger peak RSS */
        double secs = 1e30, rss = 0, cpu = 0;
        int bad = 0;
        for (int r = 0; r < 2 && !bad; r++) {
            double s = 1e30, m = 0, c = 0;
            if (run_job(&jobs[i], src, out_dir, part, &s, &m, &c)) bad = 1;
            if (s < secs) {
                secs = s;
                cpu = c;
            }
            if (m > rss) rss = m;
        }
        if (bad) {
            printf("%-12s failed\n", jobs[i].name);
            failed = 1;
            continue;
        }
        char extra[160] = "";
        struct stat as;
        if (jobs[i].unpack == 0 && stat(jobs[i].archive, &as) == 0)
            snprintf(extra, sizeof extra, "; archive %.1f%% of the container", 100.0 * (double)as.st_size / (double)bytes);
        if (jobs[i].unpack == 1) {
            char p[4200];
            uint64_t h;
            snprintf(p, sizeof p, "%s/%s", out_dir, dsq_basename(src));
            if (dsq_file_xxh3(p, &h, NULL, &err) || h != want) {
                printf("%-12s output differs from the container\n", jobs[i].name);
                failed = 1;
            } else {
                snprintf(extra, sizeof extra, "; bit-identical");
            }
            unlink(p);
            rmdir(out_dir);
            unlink(jobs[i].archive);
        }
        printf("%-12s %6.2f s = %.2f GB/s (cpu %.2f s); ratio to cat>/dev/null %.2f, cat>file %.2f, "
               "cat>file+sync %.2f; peak RSS %.0f MiB%s\n",
               jobs[i].name, secs, (double)bytes / secs / 1e9, cpu, cat_null / secs, cat_file / secs, cat_sync / secs,
               rss, extra);
        fflush(stdout);
    }
    return failed;
}
