/*
 * test_fuzz_replay.c -- the regression half of fuzzing: every file of
 * tests/fuzz/corpus/<target>/ runs through that target's entry point, built
 * into this runner as fuzz_<target> (the Makefile compiles tests/fuzz/X.c
 * with -DLLVMFuzzerTestOneInput=fuzz_X).  Seeds and every input that once
 * crashed live there, so `make test` and `make sanitize` replay them
 * without libFuzzer, like zstd's tests/fuzz/regression_driver.c.
 *
 * Each target runs in a child process: a crash or a failed FUZZ_CHECK fails
 * this test and names the target and file, instead of ending the runner.
 * DSQ_FUZZ_CORPUS overrides the corpus folder; DSQ_FUZZ_TARGET limits the
 * run to the targets whose name contains it.
 */
#include "test.h"
#include "fuzz/fuzz.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_list.h" /* generated: F(target) for every tests/fuzz/<target>.c */

#define F(name) int fuzz_##name(const uint8_t *data, size_t size);
FUZZ_TARGETS
#undef F

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
} g_targets[] = {
#define F(name) {#name, fuzz_##name},
    FUZZ_TARGETS
#undef F
};

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted regular file names of dir (malloc'd array of malloc'd strings). */
static char **list_files(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, sizeof *v * (size_t)cap);
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (v) qsort(v, (size_t)*n, sizeof *v, cmp_name);
    return v;
}

/* Replay one target's corpus in a child; the child records the file it is
 * on in shared memory so the parent can name it after a crash. */
static int replay(int t, const char *dir, char *cur, int *n_files) {
    int n;
    char **files = list_files(dir, &n);
    *n_files = n;
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        for (int i = 0; i < n; i++) {
            snprintf(cur, 1024, "%s", files[i]);
            size_t len;
            void *data = t_read_file(t_path(dir, files[i]), &len);
            if (!data) _exit(3);
            /* an exact-size copy, so reads past the end are caught */
            uint8_t *exact = malloc(len ? len : 1);
            memcpy(exact, data, len);
            free(data);
            g_targets[t].fn(exact, len);
            free(exact);
        }
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {}
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(test_fuzz_replay) {
    const char *root = getenv("DSQ_FUZZ_CORPUS");
    if (!root || !*root) root = "tests/fuzz/corpus";
    const char *only = getenv("DSQ_FUZZ_TARGET");
    DIR *d = opendir(root);
    if (!d) SKIP("no tests/fuzz/corpus (run from the source tree)");
    closedir(d);
    /* the scratch folder is made here so every child shares (and the
     * parent removes) it */
    fuzz_tmpdir();
    char *cur = mmap(NULL, 1024, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(cur != MAP_FAILED);
    int bad = 0, total = 0;
    for (size_t t = 0; t < sizeof g_targets / sizeof g_targets[0]; t++) {
        if (only && *only && !strstr(g_targets[t].name, only)) continue;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, g_targets[t].name);
        int n_files = 0;
        cur[0] = 0;
        int rc = replay((int)t, dir, cur, &n_files);
        total += n_files;
        if (n_files == 0) {
            t_fail(__FILE__, __LINE__, "fuzz target %s has no corpus in %s", g_targets[t].name, dir);
            bad++;
        } else if (rc != 0) {
            t_fail(__FILE__, __LINE__, "fuzz target %s failed (status %d) on %s/%s", g_targets[t].name,
                   rc, dir, cur);
            bad++;
        }
    }
    munmap(cur, 1024);
    fuzz_cleanup();
    fprintf(stderr, "  %d corpus files replayed\n", total);
    CHECK(bad == 0);
}
