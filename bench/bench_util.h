/*
 * bench_util.h -- shared helpers of the benchmark programs: the floors they
 * report ratios against (cat throughput for I/O, memcpy for memory) and
 * peak resident memory.
 */
#ifndef DSQ_BENCH_UTIL_H
#define DSQ_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double bu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Peak resident set size of this process, MiB. */
static inline double bu_peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Seconds for `cat FILES > /dev/null` (the files should be warm). */
static inline double bu_cat_seconds(const char *files) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cat %s > /dev/null", files);
    double t0 = bu_now();
    if (system(cmd) != 0) return -1;
    return bu_now() - t0;
}

/* memcpy GB/s over n bytes (best of 3). */
static inline double bu_memcpy_gbs(size_t n) {
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) { free(a); free(b); return -1; }
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = bu_now();
        memcpy(b, a, n);
        double t = bu_now() - t0;
        if (t < best) best = t;
    }
    volatile char sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return (double)n / best / 1e9;
}

#endif
