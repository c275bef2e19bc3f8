/*
 * run.c -- the test runner: runs every TEST in build order (or only those
 * whose name contains argv[1]) and ends with "N passed, N failed, N skipped".
 */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests_list.h" /* generated: T(test_name) lines */

#define T(name) void name(void);
TESTS
#undef T

static const struct { const char *name; void (*fn)(void); } g_tests[] = {
#define T(name) {#name, name},
    TESTS
#undef T
};

static int g_state; /* 0 pass, 1 fail, 2 skip */
static char g_tmp[600];
static char g_root[512];

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_state = 1;
}
void t_skip(const char *reason) {
    fprintf(stderr, "  skip: %s\n", reason);
    if (g_state == 0) g_state = 2;
}
int t_failed(void) { return g_state == 1; }

const char *t_shared_root(void) {
    static char buf[512];
    const char *e = getenv("DSQ_SHARED");
    snprintf(buf, sizeof buf, "%s", e && *e ? e : "../shared");
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return buf;
}

const char *t_shared_model(const char *name) {
    static char buf[4][512];
    static int k;
    const char *root = t_shared_root();
    if (!root) return NULL;
    char *b = buf[k++ & 3];
    snprintf(b, 512, "%s/models/%s", root, name);
    struct stat st;
    if (stat(b, &st) != 0) return NULL;
    return b;
}

const char *t_path(const char *dir, const char *name) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

const char *t_tmpdir(void) {
    if (!g_tmp[0]) {
        snprintf(g_tmp, sizeof g_tmp, "%s/t.XXXXXX", g_root);
        if (!mkdtemp(g_tmp)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return g_tmp;
}

int t_run(const char *cmd, char **out) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

const char *t_dsq(void) {
    const char *e = getenv("DSQ_BIN");
    return e && *e ? e : "build/dsq";
}

int t_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int t_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

void *t_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

static void rm_rf(const char *path) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *bd = getenv("DSQ_TEST_TMP");
    snprintf(g_root, sizeof g_root, "%s", bd && *bd ? bd : "build/tmp");
    mkdir(g_root, 0755);
    int np = 0, nf = 0, ns = 0;
    for (size_t i = 0; i < sizeof g_tests / sizeof g_tests[0]; i++) {
        if (filter && !strstr(g_tests[i].name, filter)) continue;
        g_state = 0;
        g_tmp[0] = 0;
        fprintf(stderr, "%s\n", g_tests[i].name);
        g_tests[i].fn();
        if (g_tmp[0] && g_state != 1) rm_rf(g_tmp);
        if (g_state == 0) np++;
        else if (g_state == 1) nf++;
        else ns++;
    }
    fflush(stderr);
    printf("%d passed, %d failed, %d skipped\n", np, nf, ns);
    return nf ? 1 : 0;
}
