/*
 * err.c -- error buffer, allocation wrappers with fault injection, and small
 * utilities (clock, basename, whole-file read).
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int dsq_fail(dsq_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

const char *dsq_strerror(int code) {
    switch (code) {
    case DSQ_OK: return "ok";
    case DSQ_EOF: return "end of stream";
    case DSQ_E_IO: return "I/O error";
    case DSQ_E_FORMAT: return "malformed input";
    case DSQ_E_NOMEM: return "out of memory";
    case DSQ_E_ARG: return "invalid argument";
    case DSQ_E_UNSUPPORTED: return "unsupported";
    case DSQ_E_CHECKSUM: return "checksum mismatch";
    case DSQ_E_CONFIG: return "inconsistent model configuration";
    case DSQ_E_EXISTS: return "output exists";
    case DSQ_E_INTERRUPTED: return "interrupted";
    case DSQ_E_NOTFOUND: return "not found";
    default: return "unknown error";
    }
}

/* ---- allocation with fault injection ----------------------------------- */
/* <0: unlimited; tests only.  Atomic because pool workers and the
 * provenance-hash thread allocate too; relaxed, since the count orders
 * nothing else. */
static atomic_long g_alloc_budget = -1;

static int alloc_allowed(void) {
    long b = atomic_load_explicit(&g_alloc_budget, memory_order_relaxed);
    /* take one from a positive budget; a failed exchange reloads b */
    while (b > 0 && !atomic_compare_exchange_weak_explicit(&g_alloc_budget, &b, b - 1, memory_order_relaxed,
                                                           memory_order_relaxed)) {
    }
    return b != 0;
}
void dsq_fault_alloc_after(long n) { atomic_store_explicit(&g_alloc_budget, n, memory_order_relaxed); }

void *dsq_malloc(size_t n) { return alloc_allowed() ? malloc(n ? n : 1) : NULL; }
void *dsq_calloc(size_t n, size_t sz) {
    return alloc_allowed() ? calloc(n ? n : 1, sz ? sz : 1) : NULL;
}
void *dsq_realloc(void *p, size_t n) {
    return alloc_allowed() ? realloc(p, n ? n : 1) : NULL;
}
char *dsq_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dsq_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
void *dsq_aalloc(size_t n) {
    void *p = NULL;
    if (!alloc_allowed()) return NULL;
    /* round up: aligned_alloc wants a multiple of the alignment */
    if (posix_memalign(&p, 64, (n + 63) & ~(size_t)63 ? (n + 63) & ~(size_t)63 : 64)) return NULL;
    return p;
}
void dsq_afree(void *p) { free(p); }

/* ---- misc ----------------------------------------------------------------*/
void dsq_hex16(char out[17], uint64_t v) { snprintf(out, 17, "%016llx", (unsigned long long)v); }

int dsq_unhex16(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return 0;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return 0;
        x = x << 4 | (uint64_t)d;
    }
    *out = x;
    return 1;
}

double dsq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *dsq_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int dsq_read_file(const char *path, size_t cap, char **out, size_t *len, dsq_err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dsq_fail(err, DSQ_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dsq_fail(err, DSQ_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > cap) {
        close(fd);
        return dsq_fail(err, DSQ_E_FORMAT, "%s: file too large (%lld bytes, limit %zu)", path,
                        (long long)st.st_size, cap);
    }
    size_t n = (size_t)st.st_size;
    char *buf = dsq_malloc(n + 1);
    if (!buf) {
        close(fd);
        return dsq_fail(err, DSQ_E_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return dsq_fail(err, DSQ_E_IO, "%s: read failed", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return DSQ_OK;
}
